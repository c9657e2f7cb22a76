import { ethers, time } from "./hardhat.js";
import type { Signer } from "ethers";
import { digest, typedData, type Deployment, type Message } from "../../src/eip712/index.js";
import type { DeviceKey } from "../../src/crypto/deviceKey.js";
import { ReadingsBatch, cbv, locationId, shipmentIdOf, type Reading } from "../../src/custody/index.js";
import type { CustodyLedger } from "../../typechain-types/index.js";
import { deployRegistry, makeKeys, provision } from "./registry.js";

export const HOUR = 3600;
export const EPC = "urn:epc:id:sscc:0614141.1234567890";

/**
 * The registry fixture plus the CustodyLedger and two tracker devices (secp256k1, P-256) of
 * `owner`. Custodians: `owner` ships, `other` carries, a contract wallet (ERC-1271, key `stranger`)
 * stores, `admin` receives.
 */
export async function deployCustody() {
  const ctx = await deployRegistry();
  const ledger = await ethers.deployContract("CustodyLedger", [
    await ctx.registry.getAddress(),
    await ctx.forwarder.getAddress(),
  ]);
  const trackerKeys = makeKeys(ctx, 2, ["secp256k1", "p256"]);
  const trackers = (await provision(ctx, trackerKeys)).ids;
  const wallet = await ethers.deployContract("ERC1271Wallet", [ctx.stranger.address]);
  const custodyDeployment: Deployment = {
    chainId: ctx.deployment.chainId,
    verifyingContract: await ledger.getAddress(),
  };
  return {
    ...ctx,
    ledger,
    trackerKeys,
    trackers,
    wallet,
    walletAddress: await wallet.getAddress(),
    shipper: ctx.owner,
    carrier: ctx.other,
    receiver: ctx.admin,
    custodyDeployment,
  };
}

export type CustodyContext = Awaited<ReturnType<typeof deployCustody>>;

/**
 * Creates a shipment from `shipper` (or `opts.from`) with sensible conditions (2–8 °C, 2 days, 1 h
 * silence); its id is the creator's (`shipmentIdOf(creator, epc)`).
 */
export async function createShipment(
  ctx: CustodyContext,
  opts: Partial<CustodyLedger.ShipmentParamsStruct> & { from?: Signer } = {},
) {
  const params: CustodyLedger.ShipmentParamsStruct = {
    epc: EPC,
    tracker: ctx.trackers[0],
    receiver: ctx.receiver.address,
    deadline: BigInt((await time.latest()) + 2 * 24 * HOUR),
    maxSilence: HOUR,
    minTemp: 200,
    maxTemp: 800,
    metadataHash: ethers.id("cold chain: vaccines"),
    childrenRoot: ethers.ZeroHash,
    acceptOwnerKeys: false,
    ...opts,
  };
  delete (params as { from?: Signer }).from;
  const from = opts.from ?? ctx.shipper;
  const tx = await ctx.ledger.connect(from).createShipment(params);
  return { tx, id: shipmentIdOf(await from.getAddress(), String(params.epc)), params };
}

/** The handoff message `seq` of `shipment` from `from` to `to`. */
export async function handoffMessage(
  shipment: string,
  from: string,
  to: string,
  seq: number,
  fields: Partial<Message> = {},
): Promise<CustodyLedger.HandoffDataStruct & Message> {
  return {
    shipment,
    from,
    to,
    seq,
    bizStep: cbv("shipping"),
    disposition: cbv("in_transit"),
    readPoint: locationId("urn:epc:id:sgln:0614141.00001.0"),
    at: BigInt(await time.latest()),
    deadline: BigInt((await time.latest()) + HOUR),
    ...fields,
  } as CustodyLedger.HandoffDataStruct & Message;
}

/** Signs a handoff as an ethers signer (an EOA, or the key behind a contract wallet). */
export async function signHandoff(signer: Signer, d: Deployment, h: Message): Promise<string> {
  const t = typedData("Handoff", d, h);
  return signer.signTypedData(t.domain, t.types, h);
}

/** A checkpoint `seq` of `shipment` over `readings`, signed by the tracker `key`. */
export async function checkpointOf(
  ctx: CustodyContext,
  key: DeviceKey,
  shipment: string,
  seq: number,
  readings: Reading[],
  fields: Partial<Message> = {},
  d: Deployment = ctx.custodyDeployment,
) {
  const batch = new ReadingsBatch(readings);
  const cp = {
    shipment,
    seq,
    readingsRoot: batch.root,
    count: batch.count,
    minTemp: batch.min,
    maxTemp: batch.max,
    location: locationId("geo:52.37,4.89"),
    at: BigInt(await time.latest()),
    ...fields,
  } as CustodyLedger.CheckpointDataStruct & Message;
  return { cp, batch, signature: key.signDigest(digest("Checkpoint", d, cp)) };
}

/** Readings every 5 minutes ending now, at the given temperatures. */
export async function readingsOf(temps: number[]): Promise<Reading[]> {
  const now = await time.latest();
  return temps.map((temp, i) => ({ at: now - (temps.length - 1 - i) * 300, temp }));
}

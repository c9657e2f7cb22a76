/** CustodyLedger operations, each in the situation its budget names. */
import { ethers, time } from "../test/helpers/hardhat.js";
import { id as labelHash } from "ethers";
import { secp256k1Key, type DeviceKey } from "../src/crypto/deviceKey.js";
import { digest, typedData, type Deployment, type Message } from "../src/eip712/index.js";
import {
  PalletChildren,
  ReadingsBatch,
  cbv,
  childIdOf,
  locationId,
  shipmentIdOf,
  type Reading,
} from "../src/custody/index.js";
import { loadKeccak } from "../src/eip712/fast.js";
import { deployRegistry, provision } from "../test/helpers/registry.js";
import type { GasRecorder } from "./lib.js";

/** Readings in the excursion bench's checkpoint: 2^14, so the proof is 14 hashes deep. */
export const READINGS = 16_384;
const HOUR = 3600;

export async function benchCustody(gas: GasRecorder): Promise<void> {
  await loadKeccak();
  const ctx = await deployRegistry();
  const [shipper, carrier, receiver] = [ctx.owner, ctx.other, ctx.admin];
  const ledger = await ethers.deployContract("CustodyLedger", [
    await ctx.registry.getAddress(),
    await ctx.forwarder.getAddress(),
  ]);
  const tracker: DeviceKey = secp256k1Key(labelHash("bench tracker"));
  const [trackerId] = (await provision(ctx, [tracker])).ids;
  const d: Deployment = { chainId: ctx.deployment.chainId, verifyingContract: await ledger.getAddress() };
  const now = async () => BigInt(await time.latest());
  const params = async (epc: string, childrenRoot = ethers.ZeroHash) => ({
    epc,
    tracker: trackerId,
    receiver: receiver.address,
    deadline: (await now()) + 2n * 24n * BigInt(HOUR),
    maxSilence: HOUR,
    minTemp: 200,
    maxTemp: 800,
    metadataHash: labelHash("bench shipment"),
    childrenRoot,
    acceptOwnerKeys: false,
  });
  const sign = async (signer: typeof shipper, type: "Handoff", m: Message) => {
    const t = typedData(type, d, m);
    return signer.signTypedData(t.domain, t.types, m);
  };
  const handoff = async (shipment: string, seq: number) => {
    const h = {
      shipment,
      from: shipper.address,
      to: carrier.address,
      seq,
      bizStep: cbv("shipping"),
      disposition: cbv("in_transit"),
      readPoint: locationId("urn:epc:id:sgln:0614141.00001.0"),
      at: await now(),
      deadline: (await now()) + BigInt(HOUR),
    };
    return ledger.connect(carrier).handoff(h, await sign(shipper, "Handoff", h), await sign(carrier, "Handoff", h));
  };

  const epc = "urn:epc:id:sscc:0614141.1234567890";
  const id = shipmentIdOf(shipper.address, epc);
  await gas.record("custody.createShipment", ledger.connect(shipper).createShipment(await params(epc)));
  await gas.record("custody.handoff", handoff(id, 1));

  // A pallet of 1,000 children: its handoff must cost what a single shipment's does.
  const children = new PalletChildren(Array.from({ length: 1000 }, (_, i) => `urn:epc:id:sgtin:0614141.112345.${i}`));
  const palletEpc = "urn:epc:id:sscc:0614141.9999999999";
  const pallet = shipmentIdOf(shipper.address, palletEpc);
  await gas.record(
    "custody.createPallet",
    ledger.connect(shipper).createShipment(await params(palletEpc, children.root)),
  );
  await gas.record("custody.palletHandoff", handoff(pallet, 1));
  const childEpc = children.epcs[417];
  await gas.record(
    "custody.splitChild",
    ledger.connect(carrier).splitChild(pallet, childEpc, children.proof(childEpc)),
  );
  if ((await ledger.shipmentOf(childIdOf(pallet, childEpc))).custodian !== carrier.address)
    throw new Error("bench: the child was not split off");

  // Checkpoints: the tracker's first ever (its latest-checkpoint slot is fresh), one in range (the
  // usual case), one out of range; then one with 2^14 readings whose signed max hides an excursion.
  const at = Number(await now());
  const inRange: Reading[] = Array.from({ length: READINGS }, (_, i) => ({
    at: at - READINGS + i,
    temp: 500 + (i % 50),
  }));
  const readings = [...inRange];
  readings[4242] = { ...readings[4242], temp: 950 };
  const normal = new ReadingsBatch(inRange);
  const batch = new ReadingsBatch(readings);
  const checkpoint = (shipment: string, seq: number, b: ReadingsBatch, fields: Partial<Message> = {}) => ({
    shipment,
    seq,
    readingsRoot: b.root,
    count: b.count,
    minTemp: b.min,
    maxTemp: b.max,
    location: locationId("geo:52.37,4.89"),
    at: BigInt(at),
    ...fields,
  });
  const signed = (cp: ReturnType<typeof checkpoint>) => tracker.signDigest(digest("Checkpoint", d, cp));
  const post = (cp: ReturnType<typeof checkpoint>) => ledger.checkpoint(cp, tracker.signer, signed(cp));
  await gas.record("custody.checkpoint.trackerFirst", post(checkpoint(pallet, 1, normal)));
  await gas.record("custody.checkpoint", post(checkpoint(id, 1, normal)));
  await gas.record("custody.checkpoint.breach", post(checkpoint(pallet, 2, batch)));

  // The excursion that breaches the shipment and exposes the lying tracker, against its latest checkpoint.
  const lying = checkpoint(id, 2, batch, { maxTemp: 549 });
  await post(lying);
  const summary = {
    shipment: lying.shipment,
    seq: lying.seq,
    readingsRoot: lying.readingsRoot,
    minTemp: lying.minTemp,
    maxTemp: lying.maxTemp,
    allowedMinTemp: 200,
    allowedMaxTemp: 800,
  };
  await gas.record("custody.excursionProof", ledger.proveLatestExcursion(summary, readings[4242], batch.proof(4242)));
  // The same against an earlier checkpoint: presented again with the tracker's signature.
  const thirdEpc = "urn:epc:id:sscc:0614141.5555555555";
  await ledger.connect(shipper).createShipment(await params(thirdEpc));
  const later = BigInt(await now());
  const third = shipmentIdOf(shipper.address, thirdEpc);
  const earlier = checkpoint(third, 1, batch, { maxTemp: 549, at: later });
  await post(earlier);
  await post(checkpoint(third, 2, normal, { at: later }));
  await gas.record(
    "custody.excursionProof.signed",
    ledger.proveExcursion(earlier, tracker.signer, signed(earlier), readings[4242], batch.proof(4242)),
  );

  await time.increase(2 * 24 * HOUR);
  await gas.record("custody.markOverdue", ledger.markOverdue(id));
  await gas.record("custody.markSilent", ledger.markSilent(id));
}

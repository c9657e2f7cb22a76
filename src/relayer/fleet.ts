/**
 * Simulated devices for the relayer's tests and benchmarks: deploy the suite on any JSON-RPC node,
 * commit a batch, claim devices for an owner (40 claims per multicall), fund a relayer account,
 * and sign device messages exactly as the agent posts them (JSON, integers as decimal strings).
 */
import { JsonRpcProvider, Network, Wallet, encodeBytes32String, id, parseEther, type Signer } from "ethers";
import { deploySuite, type SuiteAddresses } from "../deploy/suite.js";
import { randomDeviceKey, type DeviceKey, type DeviceKeyKind } from "../crypto/deviceKey.js";
import { TypedDataHasher } from "../eip712/fast.js";
import type { Deployment, Message } from "../eip712/index.js";
import { DeviceBatch, deviceIdOf } from "../registry/batch.js";
import type { DeviceMessageType, SignedDeviceMessage } from "../messages/index.js";
import { DeviceRegistry__factory, type DeviceRegistry } from "../../typechain-types/index.js";

export const FLEET_MODEL = encodeBytes32String("custos-sim-v1");
export const FLEET_FIRMWARE = id("firmware 1.0.0");

export interface SimDevice {
  key: DeviceKey;
  id: bigint;
}

export interface SimFleet {
  provider: JsonRpcProvider;
  addresses: SuiteAddresses;
  registry: DeviceRegistry;
  /** The registry's EIP-712 deployment (device messages but beacons). */
  deployment: Deployment;
  /** LocationBeacons' EIP-712 deployment (location beacons). */
  beaconsDeployment: Deployment;
  forwarderDeployment: Deployment;
  owner: Signer;
  ownerAddress: string;
  /** A fresh account funded with 100 ETH, for the relayer. */
  relayerWallet: Wallet;
  devices: SimDevice[];
  batch: DeviceBatch;
  /** Keys committed in the batch but not claimed. */
  unclaimed: DeviceKey[];
  hasher: TypedDataHasher;
}

export function rpcProvider(url: string, chainId = 31337): JsonRpcProvider {
  const network = Network.from(chainId);
  return new JsonRpcProvider(url, network, {
    staticNetwork: network,
    batchStallTime: 1,
    pollingInterval: 50,
    cacheTimeout: -1,
  });
}

/** Deploys a suite with `admin` (also the manufacturer) and claims `devices` devices for `owner`. */
export async function simulateFleet(opts: {
  provider: JsonRpcProvider;
  admin: Signer;
  owner: Signer;
  devices: number;
  unclaimed?: number;
  kinds?: DeviceKeyKind[];
  /** The guardians of the quorum, and its M (default none, 1). */
  guardians?: string[];
  guardianQuorum?: number;
}): Promise<SimFleet> {
  const { provider, admin, owner } = opts;
  const addresses = await deploySuite(admin, {
    manufacturers: [await admin.getAddress()],
    guardians: opts.guardians,
    guardianQuorum: opts.guardianQuorum,
  });
  const registry = DeviceRegistry__factory.connect(addresses.registry, admin);
  const { chainId } = await provider.getNetwork();
  const deployment = { chainId, verifyingContract: addresses.registry };
  const beaconsDeployment = { chainId, verifyingContract: addresses.locationBeacons };
  const forwarderDeployment = { chainId, verifyingContract: addresses.forwarder };
  const kinds = opts.kinds ?? ["secp256k1"];
  const total = opts.devices + (opts.unclaimed ?? 0);
  const keys = Array.from({ length: Math.max(total, 1) }, (_, i) =>
    randomDeviceKey(kinds[i % kinds.length], addresses.p256Verifier),
  );
  const batch = new DeviceBatch(
    keys.map((k) => ({ deviceKey: k.signer, model: FLEET_MODEL, firmwareHash: FLEET_FIRMWARE })),
    await admin.getAddress(),
  );
  await (await registry.commitBatch(batch.root)).wait();
  const hasher = await TypedDataHasher.create();
  const ownerAddress = await owner.getAddress();
  const claimed = keys.slice(0, opts.devices);
  const head = await provider.getBlock("latest");
  const deadline = BigInt(Math.max(head!.timestamp, Math.floor(Date.now() / 1000)) + 3600);
  for (let i = 0; i < claimed.length; i += 40) {
    const calls = claimed.slice(i, i + 40).map((key) => {
      const m = signClaim(hasher, key, batch, ownerAddress, deadline, deployment);
      return registry.interface.encodeFunctionData("claim", [
        {
          owner: ownerAddress,
          batchId: batch.id,
          deviceKey: key.signer,
          model: FLEET_MODEL,
          firmwareHash: FLEET_FIRMWARE,
          deadline,
        },
        m.claim!.proof,
        m.signature,
      ]);
    });
    await (await registry.connect(owner).multicall(calls)).wait();
  }
  const relayerWallet = new Wallet(Wallet.createRandom().privateKey, provider);
  await (await admin.sendTransaction({ to: relayerWallet.address, value: parseEther("100") })).wait();
  return {
    provider,
    addresses,
    registry,
    deployment,
    beaconsDeployment,
    forwarderDeployment,
    owner,
    ownerAddress,
    relayerWallet,
    devices: claimed.map((key) => ({ key, id: deviceIdOf(key.signer) })),
    batch,
    unclaimed: keys.slice(opts.devices, total),
    hasher,
  };
}

/** A signed device message (not a claim), as the agent posts it. */
export function signMessage(
  h: TypedDataHasher,
  key: DeviceKey,
  type: Exclude<DeviceMessageType, "DeviceClaim">,
  deployment: Deployment,
  message: Message,
): SignedDeviceMessage {
  const fields = Object.fromEntries(
    Object.entries(message).map(([k, v]) => [k, typeof v === "bigint" ? v.toString() : v]),
  );
  const signature = "0x" + Buffer.from(key.signBytes(h.digest(type, deployment, fields))).toString("hex");
  return { type, key: key.signer, message: fields, signature };
}

/** A device's signed `FirmwareAttestation` at `nonce`. */
export function signAttestation(
  h: TypedDataHasher,
  device: SimDevice,
  deployment: Deployment,
  nonce: bigint,
  deadline: bigint,
  firmwareHash = FLEET_FIRMWARE,
): SignedDeviceMessage {
  return signMessage(h, device.key, "FirmwareAttestation", deployment, {
    device: device.id,
    firmwareHash,
    nonce,
    deadline,
  });
}

/** A device's signed claim for `owner`, with its leaf and proof. */
export function signClaim(
  h: TypedDataHasher,
  key: DeviceKey,
  batch: DeviceBatch,
  owner: string,
  deadline: bigint,
  deployment: Deployment,
): SignedDeviceMessage {
  const message = { owner: owner.toLowerCase(), batch: batch.id.toString(), deadline: deadline.toString() };
  const signature = "0x" + Buffer.from(key.signBytes(h.digest("DeviceClaim", deployment, message))).toString("hex");
  const d = batch.device(key.signer);
  return {
    type: "DeviceClaim",
    key: key.signer,
    message,
    signature,
    claim: { model: d.model, firmwareHash: d.firmwareHash, proof: batch.proof(key.signer) },
  };
}

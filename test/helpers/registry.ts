import { ethers } from "./hardhat.js";
import { encodeBytes32String, id as textHash } from "ethers";
import type { HardhatEthersSigner } from "@nomicfoundation/hardhat-ethers/types";
import { digest, type Deployment, type Message, type TypeName } from "../../src/eip712/index.js";
import { randomDeviceKey, type DeviceKey, type DeviceKeyKind } from "../../src/crypto/deviceKey.js";
import { DeviceBatch, deviceIdOf } from "../../src/registry/batch.js";
import { P256_N } from "../../src/crypto/p256.js";
import type { DeviceRegistry, GuardianQuorum } from "../../typechain-types/index.js";

export const MODEL = encodeBytes32String("custos-lock-v1");
export const FIRMWARE = textHash("firmware 1.0.0");
export const QUORUM = 2;
export const HOUR = 3600;
/** `type(uint40).max`: what `keyTrustedUntil` answers for the current period of a trusted device. */
export const TRUSTED_FOREVER = (1n << 40n) - 1n;

export enum Status {
  Unknown = 0,
  Active = 1,
  Quarantined = 2,
  Revoked = 3,
}

export enum BatchStatus {
  None = 0,
  Active = 1,
  Quarantined = 2,
  Revoked = 3,
}

/**
 * Deploys the forwarder, the P-256 verifier and the registry, with two manufacturers and three
 * guardians (the `GUARDIAN_ROLE` holders of the registry's GuardianQuorum, quorum {@link QUORUM}).
 */
export async function deployRegistry() {
  const [admin, manufacturer, owner, other, stranger, guardian1, guardian2, guardian3, manufacturer2] =
    await ethers.getSigners();
  const forwarder = await ethers.deployContract("ERC2771Forwarder", ["Custos Forwarder"]);
  const verifier = await ethers.deployContract("ERC7913P256SHA256Verifier");
  const registry = await ethers.deployContract("DeviceRegistry", [
    admin.address,
    await forwarder.getAddress(),
    QUORUM,
    await verifier.getAddress(),
    [manufacturer.address, manufacturer2.address],
    [guardian1.address, guardian2.address, guardian3.address],
  ]);
  const guardianQuorum = await ethers.getContractAt("GuardianQuorum", await registry.guardianQuorum());
  const { chainId } = await ethers.provider.getNetwork();
  const deployment: Deployment = { chainId, verifyingContract: await registry.getAddress() };
  const forwarderDeployment: Deployment = { chainId, verifyingContract: await forwarder.getAddress() };
  return {
    registry,
    /** The guardians' quorum contract the registry deployed; guardians vote there. */
    guardianQuorum,
    forwarder,
    verifier,
    verifierAddress: await verifier.getAddress(),
    deployment,
    forwarderDeployment,
    admin,
    manufacturer,
    manufacturer2,
    owner,
    other,
    stranger,
    guardians: [guardian1, guardian2, guardian3],
  };
}

export type RegistryContext = Awaited<ReturnType<typeof deployRegistry>>;

/** `n` fresh device keys, alternating kinds when `kinds` has several. */
export function makeKeys(ctx: RegistryContext, n: number, kinds: DeviceKeyKind[] = ["secp256k1"]): DeviceKey[] {
  return Array.from({ length: n }, (_, i) => randomDeviceKey(kinds[i % kinds.length], ctx.verifierAddress));
}

/** The batch of `keys`; give `manufacturer` (the committer) to read its id as `.id`. */
export function makeBatch(keys: DeviceKey[], firmwareHash = FIRMWARE, manufacturer?: string): DeviceBatch {
  return new DeviceBatch(
    keys.map((k) => ({ deviceKey: k.signer, model: MODEL, firmwareHash })),
    manufacturer,
  );
}

/** Commits `batch` as `manufacturer`; returns the batch id. */
export async function commit(registry: DeviceRegistry, manufacturer: HardhatEthersSigner, batch: DeviceBatch) {
  await registry.connect(manufacturer).commitBatch(batch.root);
  return batch.idFor(manufacturer.address);
}

export async function deadlineIn(seconds = HOUR): Promise<bigint> {
  const block = await ethers.provider.getBlock("latest");
  return BigInt(block!.timestamp + seconds);
}

/** Signs a catalogue message with a device key for `deployment`. */
export function signAs(key: DeviceKey, type: TypeName, deployment: Deployment, message: Message): string {
  return key.signDigest(digest(type, deployment, message));
}

export interface ClaimArgs {
  claim: DeviceRegistry.ClaimStruct;
  proof: string[];
  signature: string;
}

/** The arguments of a claim of `key` (from `batch`, committed as `batchId`) for `owner`. */
export async function claimArgs(
  ctx: RegistryContext,
  key: DeviceKey,
  batch: DeviceBatch,
  batchId: bigint,
  owner: string,
  opts: { deadline?: bigint; deployment?: Deployment; signOwner?: string } = {},
): Promise<ClaimArgs> {
  const deadline = opts.deadline ?? (await deadlineIn());
  const device = batch.device(key.signer);
  const signature = signAs(key, "DeviceClaim", opts.deployment ?? ctx.deployment, {
    owner: opts.signOwner ?? owner,
    batch: batchId,
    deadline,
  });
  return {
    claim: { owner, batchId, deviceKey: key.signer, model: device.model, firmwareHash: device.firmwareHash, deadline },
    proof: batch.proof(key.signer),
    signature,
  };
}

/** Commits a batch of `keys` and claims every one of them for `owner`; returns the device ids. */
export async function provision(ctx: RegistryContext, keys: DeviceKey[], owner = ctx.owner) {
  const batch = makeBatch(keys, FIRMWARE, ctx.manufacturer.address);
  const batchId = await commit(ctx.registry, ctx.manufacturer, batch);
  for (const key of keys) {
    const a = await claimArgs(ctx, key, batch, batchId, owner.address);
    await ctx.registry.connect(owner).claim(a.claim, a.proof, a.signature);
  }
  return { batch, batchId, ids: keys.map((k) => deviceIdOf(k.signer)) };
}

/** The rotation struct for `deviceId` from `oldKey` (or none) to `newKey`. */
export async function rotation(
  ctx: RegistryContext,
  deviceId: bigint,
  newKey: DeviceKey,
  oldKey: DeviceKey | null,
  opts: { nonce?: bigint; deadline?: bigint } = {},
): Promise<DeviceRegistry.RotationStruct> {
  const deadline = opts.deadline ?? (await deadlineIn());
  const nonce = opts.nonce ?? (await ctx.registry.deviceNonce(deviceId));
  const msg = { device: deviceId, newKey: newKey.signer, nonce, deadline };
  return {
    newKey: newKey.signer,
    deadline,
    newKeySignature: signAs(newKey, "KeyRotation", ctx.deployment, msg),
    oldKey: oldKey ? oldKey.signer : "0x",
    oldKeySignature: oldKey ? signAs(oldKey, "KeyRotation", ctx.deployment, msg) : "0x",
  };
}

/**
 * The guardians' quorum decides on `deviceId`: the first M guardians (M = the quorum contract's
 * current quorum) vote to flag it, or to clear its flag. The last vote is the one that acts.
 */
export async function guardianDecide(
  ctx: { guardianQuorum: GuardianQuorum; guardians: HardhatEthersSigner[] },
  action: "flag" | "clearFlag",
  deviceId: bigint,
  reason = textHash("misbehaving"),
) {
  const quorum = Number(await ctx.guardianQuorum.quorum());
  if (quorum > ctx.guardians.length)
    throw new Error(`guardianDecide: quorum ${quorum} > ${ctx.guardians.length} guardians`);
  let last;
  for (const g of ctx.guardians.slice(0, quorum)) {
    const q = ctx.guardianQuorum.connect(g);
    last = await (action === "flag" ? q.flag(deviceId, reason) : q.clearFlag(deviceId));
  }
  return last!;
}

/** secp256k1 curve order. */
export const SECP256K1_N = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n;

/** The malleated twin of a valid signature: same (r), s' = n - s (and v flipped for secp256k1). */
export function highS(key: DeviceKey, signature: string): string {
  const bytes = ethers.getBytes(signature);
  const r = bytes.slice(0, 32);
  const s = BigInt(ethers.hexlify(bytes.slice(32, 64)));
  if (key.kind === "secp256k1") {
    const v = bytes[64] === 27 ? 28 : 27;
    return ethers.concat([r, ethers.toBeHex(SECP256K1_N - s, 32), new Uint8Array([v])]);
  }
  return ethers.concat([r, ethers.toBeHex(P256_N - s, 32)]);
}

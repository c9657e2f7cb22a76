/**
 * Manufacturer batches: the Merkle tree over `(deviceKey, model, firmwareHash)` leaves whose root
 * the DeviceRegistry stores, built with OpenZeppelin's StandardMerkleTree (double-hashed leaves,
 * sorted pairs), which the contract checks with `MerkleProof`.
 */
import { StandardMerkleTree } from "@openzeppelin/merkle-tree";
import { keccak256, AbiCoder, isHexString, dataLength } from "ethers";

/** The ABI encoding of one leaf, shared with `DeviceRegistry.claim`. */
export const LEAF_ENCODING = ["bytes", "bytes32", "bytes32"] as const;

export interface ProvisionedDevice {
  /** ERC-7913 signer bytes of the device key. */
  deviceKey: string;
  /** Model identifier, bytes32. */
  model: string;
  /** Hash of the firmware the device ships with, bytes32. */
  firmwareHash: string;
}

export class DeviceBatch {
  readonly tree: StandardMerkleTree<[string, string, string]>;
  private readonly indexByKey = new Map<string, number>();

  constructor(readonly devices: readonly ProvisionedDevice[]) {
    if (devices.length === 0) throw new Error("DeviceBatch: devices is empty");
    devices.forEach((d, i) => {
      checkDevice(d, i);
      const key = d.deviceKey.toLowerCase();
      if (this.indexByKey.has(key))
        throw new Error(`DeviceBatch: devices[${i}].deviceKey repeats devices[${this.indexByKey.get(key)}]`);
      this.indexByKey.set(key, i);
    });
    this.tree = StandardMerkleTree.of(
      devices.map((d) => [d.deviceKey, d.model, d.firmwareHash] as [string, string, string]),
      [...LEAF_ENCODING],
    );
  }

  get root(): string {
    return this.tree.root;
  }

  /** The id the registry gives this batch. */
  get id(): bigint {
    return batchIdOf(this.tree.root);
  }

  /** The proof of the device with key `deviceKey`. */
  proof(deviceKey: string): string[] {
    const i = this.indexByKey.get(deviceKey.toLowerCase());
    if (i === undefined) throw new Error(`DeviceBatch: deviceKey ${deviceKey} is not in this batch`);
    return this.tree.getProof(i);
  }

  device(deviceKey: string): ProvisionedDevice {
    const i = this.indexByKey.get(deviceKey.toLowerCase());
    if (i === undefined) throw new Error(`DeviceBatch: deviceKey ${deviceKey} is not in this batch`);
    return this.devices[i];
  }
}

/** The leaf hash the contract computes: keccak256(keccak256(abi.encode(deviceKey, model, firmwareHash))). */
export function leafHash(d: ProvisionedDevice): string {
  return keccak256(
    keccak256(AbiCoder.defaultAbiCoder().encode([...LEAF_ENCODING], [d.deviceKey, d.model, d.firmwareHash])),
  );
}

/** The id the registry gives the batch with Merkle root `root`: the root's first 48 bits. */
export function batchIdOf(root: string): bigint {
  if (!isHexString(root, 32)) throw new Error("batchIdOf: root must be 32 bytes of hex");
  return BigInt(root.slice(0, 14));
}

/** The device id the registry derives from a device's first key: the top 192 bits of keccak256(key). */
export function deviceIdOf(deviceKey: string): bigint {
  return BigInt(keccak256(deviceKey)) >> 64n;
}

function checkDevice(d: ProvisionedDevice, i: number): void {
  if (!isHexString(d.deviceKey) || dataLength(d.deviceKey) < 20) {
    throw new Error(`DeviceBatch: devices[${i}].deviceKey must be hex bytes of at least 20 bytes`);
  }
  if (!isHexString(d.model, 32)) throw new Error(`DeviceBatch: devices[${i}].model must be 32 bytes of hex`);
  if (!isHexString(d.firmwareHash, 32))
    throw new Error(`DeviceBatch: devices[${i}].firmwareHash must be 32 bytes of hex`);
}

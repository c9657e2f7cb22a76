/**
 * Manufacturer batches: the Merkle tree over `(deviceKey, model, firmwareHash)` leaves whose root
 * the DeviceRegistry stores and checks with OpenZeppelin `MerkleProof`.
 *
 * The tree is OpenZeppelin's StandardMerkleTree, node for node (double-hashed leaves sorted by hash,
 * sorted-pair node hashing, the same array layout): `dump()` is a `standard-v1` file that
 * `StandardMerkleTree.load` accepts, and the tests compare the two builders. The build itself is
 * ours because OpenZeppelin's takes minutes for 100,000 devices here (JS keccak, BigInt compares,
 * validation on every proof); this one hashes in WebAssembly and builds 100,000 leaves in seconds.
 */
import { dataLength, isAddress, isHexString } from "ethers";
import { bytesToHex, hexToBytes, keccak } from "../eip712/fast.js";
import { StandardTree, standardLeaf } from "../merkle/index.js";

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

/** OpenZeppelin's `StandardMerkleTree` dump format. */
export interface StandardTreeDump {
  format: "standard-v1";
  leafEncoding: string[];
  tree: string[];
  values: { value: [string, string, string]; treeIndex: number }[];
}

/** abi.encode(bytes deviceKey, bytes32 model, bytes32 firmwareHash). */
function encodeLeaf(d: ProvisionedDevice): Uint8Array {
  const key = hexToBytes(d.deviceKey, "deviceKey");
  const out = new Uint8Array(128 + Math.ceil(key.length / 32) * 32);
  out[31] = 0x60;
  out.set(hexToBytes(d.model, "model"), 32);
  out.set(hexToBytes(d.firmwareHash, "firmwareHash"), 64);
  new DataView(out.buffer).setUint32(124, key.length);
  out.set(key, 128);
  return out;
}

function leafBytes(d: ProvisionedDevice): Uint8Array {
  return standardLeaf(encodeLeaf(d));
}

export class DeviceBatch {
  private readonly tree: StandardTree;
  private readonly indexByKey = new Map<string, number>();

  /**
   * Builds the batch of `devices` (validated; a repeated key is refused). Faster after `loadKeccak()`.
   * @param manufacturer the account that will commit it, which the batch id depends on ({@link id}).
   */
  constructor(
    readonly devices: readonly ProvisionedDevice[],
    readonly manufacturer?: string,
  ) {
    if (devices.length === 0) throw new Error("DeviceBatch: devices is empty");
    const leaves = devices.map((d, i) => {
      checkDevice(d, i);
      const key = d.deviceKey.toLowerCase();
      const seen = this.indexByKey.get(key);
      if (seen !== undefined) throw new Error(`DeviceBatch: devices[${i}].deviceKey repeats devices[${seen}]`);
      this.indexByKey.set(key, i);
      return leafBytes(d);
    });
    this.tree = new StandardTree(leaves);
  }

  /** The tree's nodes, root first, in StandardMerkleTree's layout. */
  get nodes(): string[] {
    return this.tree.nodes;
  }

  /** Each device's index in `nodes`, in the order of `devices`. */
  get treeIndex(): Int32Array {
    return this.tree.treeIndex;
  }

  get root(): string {
    return this.nodes[0];
  }

  /** The id the registry gives this batch when `manufacturer` commits it. */
  idFor(manufacturer: string): bigint {
    return batchIdOf(manufacturer, this.root);
  }

  /** The id the registry gives this batch when the manufacturer it was built for commits it. */
  get id(): bigint {
    if (!this.manufacturer) throw new Error("DeviceBatch: built without a manufacturer; use idFor(manufacturer)");
    return this.idFor(this.manufacturer);
  }

  /** The proof of the `i`-th device. */
  proofAt(i: number): string[] {
    return this.tree.proofAt(i);
  }

  private indexOf(deviceKey: string): number {
    const i = this.indexByKey.get(deviceKey.toLowerCase());
    if (i === undefined) throw new Error(`DeviceBatch: deviceKey ${deviceKey} is not in this batch`);
    return i;
  }

  /** The proof of the device with key `deviceKey`. */
  proof(deviceKey: string): string[] {
    return this.proofAt(this.indexOf(deviceKey));
  }

  device(deviceKey: string): ProvisionedDevice {
    return this.devices[this.indexOf(deviceKey)];
  }

  /** The tree as OpenZeppelin's `standard-v1` dump (`StandardMerkleTree.load` reads it). */
  dump(): StandardTreeDump {
    return {
      format: "standard-v1",
      leafEncoding: [...LEAF_ENCODING],
      tree: this.nodes,
      values: this.devices.map((d, i) => ({
        value: [d.deviceKey, d.model, d.firmwareHash],
        treeIndex: this.treeIndex[i],
      })),
    };
  }
}

/** The leaf hash the contract computes: keccak256(keccak256(abi.encode(deviceKey, model, firmwareHash))). */
export function leafHash(d: ProvisionedDevice): string {
  return bytesToHex(leafBytes(d));
}

/**
 * The id the registry gives `manufacturer`'s batch with Merkle root `root`: the low 48 bits of
 * keccak256(abi.encode(manufacturer, root)), so that no other account can take or squat it.
 */
export function batchIdOf(manufacturer: string, root: string): bigint {
  if (!isHexString(root, 32)) throw new Error("batchIdOf: root must be 32 bytes of hex");
  if (!isAddress(manufacturer)) throw new Error("batchIdOf: manufacturer must be an address");
  const word = (hex: string) => hex.slice(2).toLowerCase().padStart(64, "0");
  const hash = bytesToHex(keccak(hexToBytes("0x" + word(manufacturer) + word(root), "batch")));
  return BigInt(hash) & ((1n << 48n) - 1n);
}

/** The device id the registry derives from a device's first key: the top 192 bits of keccak256(key). */
export function deviceIdOf(deviceKey: string): bigint {
  return BigInt(bytesToHex(keccak(hexToBytes(deviceKey, "deviceKey")))) >> 64n;
}

function checkDevice(d: ProvisionedDevice, i: number): void {
  if (!isHexString(d.deviceKey) || dataLength(d.deviceKey) < 20) {
    throw new Error(`DeviceBatch: devices[${i}].deviceKey must be hex bytes of at least 20 bytes`);
  }
  if (!isHexString(d.model, 32)) throw new Error(`DeviceBatch: devices[${i}].model must be 32 bytes of hex`);
  if (!isHexString(d.firmwareHash, 32))
    throw new Error(`DeviceBatch: devices[${i}].firmwareHash must be 32 bytes of hex`);
}

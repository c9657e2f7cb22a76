/**
 * OpenZeppelin's StandardMerkleTree layout, node for node, over leaf hashes the caller computes
 * (double-hashed ABI encodings): leaves sorted by hash, sorted-pair node hashing, the root at index
 * 0 and the leaves at the end of the array. Proofs verify with OpenZeppelin `MerkleProof`. Hashing is
 * the fast keccak (WebAssembly after `loadKeccak()`), so 100,000 leaves build in seconds.
 */
import { bytesToHex, keccak } from "../eip712/fast.js";

/** keccak256 of the sorted pair (a, b): OpenZeppelin `Hashes.commutativeKeccak256`. */
export function hashPair(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(64);
  if (Buffer.compare(a, b) <= 0) {
    out.set(a, 0);
    out.set(b, 32);
  } else {
    out.set(b, 0);
    out.set(a, 32);
  }
  return keccak(out);
}

/** The standard leaf hash of an ABI encoding: keccak256(keccak256(encoded)). */
export function standardLeaf(encoded: Uint8Array): Uint8Array {
  return keccak(keccak(encoded));
}

export class StandardTree {
  /** The tree's nodes as hex, root first. */
  readonly nodes: string[];
  /** The tree index of each leaf, in the order the leaves were given. */
  readonly treeIndex: Int32Array;

  /** Builds the tree over `leaves` (32-byte hashes, at least one). */
  constructor(leaves: readonly Uint8Array[]) {
    if (leaves.length === 0) throw new Error("StandardTree: no leaves");
    const order = leaves.map((hash, i) => ({ i, hash }));
    order.sort((a, b) => Buffer.compare(a.hash, b.hash));
    const size = 2 * leaves.length - 1;
    const nodes: Uint8Array[] = new Array(size);
    this.treeIndex = new Int32Array(leaves.length);
    order.forEach((leaf, k) => {
      nodes[size - 1 - k] = leaf.hash;
      this.treeIndex[leaf.i] = size - 1 - k;
    });
    for (let n = size - 1 - leaves.length; n >= 0; n--) nodes[n] = hashPair(nodes[2 * n + 1], nodes[2 * n + 2]);
    this.nodes = nodes.map(bytesToHex);
  }

  get root(): string {
    return this.nodes[0];
  }

  /** The proof of the `i`-th leaf given. */
  proofAt(i: number): string[] {
    if (!(i >= 0 && i < this.treeIndex.length)) throw new Error(`StandardTree: no leaf ${i}`);
    const proof: string[] = [];
    for (let n = this.treeIndex[i]; n > 0; n = Math.floor((n - 1) / 2))
      proof.push(this.nodes[n % 2 === 1 ? n + 1 : n - 1]);
    return proof;
  }
}

/** Whether `proof` takes `leaf` to `root` (OpenZeppelin `MerkleProof.verify`, sorted pairs). */
export function verifyProof(root: string, leaf: string, proof: readonly string[]): boolean {
  let node = Buffer.from(leaf.slice(2), "hex");
  for (const p of proof) node = Buffer.from(hashPair(node, Buffer.from(p.slice(2), "hex")));
  return "0x" + node.toString("hex") === root.toLowerCase();
}

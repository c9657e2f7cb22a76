/**
 * OpenZeppelin StandardMerkleTree in the browser (viem's keccak): the leaf of an ABI-encoded value
 * is keccak256(keccak256(encoding)); a proof folds sorted pairs up to the root (`MerkleProof.verify`).
 */
import { concat, keccak256, type Hex } from "viem";

export const standardLeaf = (encoded: Hex): Hex => keccak256(keccak256(encoded));

export function rootFrom(leaf: Hex, proof: readonly Hex[]): Hex {
  let node = leaf;
  for (const sibling of proof)
    node = keccak256(node.toLowerCase() <= sibling.toLowerCase() ? concat([node, sibling]) : concat([sibling, node]));
  return node;
}

/**
 * An unlock record and its Merkle proof (what the lock's log book hands out:
 * `UnlockLogBook.proof(index)` in src/agent/roles/lockLog.ts) checked against an anchored batch
 * root: the leaf is OpenZeppelin StandardMerkleTree's over the record's ABI encoding
 * (`RECORD_ENCODING` there: lock, at, outcome, accessKey, challenge, requestHash), pairs hashed
 * sorted, as `MerkleProof.verify` does.
 */
import { encodeAbiParameters, type Hex } from "viem";
import { rootFrom, standardLeaf } from "./merkle.js";

export interface RecordProof {
  record: { lock: string; at: number; outcome: number; accessKey: Hex; challenge: Hex; requestHash: Hex };
  batch: { seq: number };
  proof: Hex[];
}

/** Reads a pasted or dropped proof document; throws naming the field that is wrong. */
export function parseRecordProof(text: string): RecordProof {
  let doc: Partial<RecordProof>;
  try {
    doc = JSON.parse(text) as Partial<RecordProof>;
  } catch {
    throw new Error(
      "the document is not JSON: paste what the lock's log book gives for one record (record, batch, proof)",
    );
  }
  const r = doc.record;
  if (!r || typeof r.at !== "number" || typeof r.outcome !== "number")
    throw new Error("record is missing or incomplete (lock, at, outcome, accessKey, challenge, requestHash)");
  if (!doc.batch || typeof doc.batch.seq !== "number")
    throw new Error("batch.seq is missing: the record is not in a sealed batch yet");
  if (!Array.isArray(doc.proof)) throw new Error("proof must be a list of 0x hashes");
  return doc as RecordProof;
}

export function recordLeaf(r: RecordProof["record"]): Hex {
  const encoded = encodeAbiParameters(
    [
      { type: "uint256" },
      { type: "uint64" },
      { type: "uint8" },
      { type: "bytes32" },
      { type: "bytes32" },
      { type: "bytes32" },
    ],
    [BigInt(r.lock), BigInt(r.at), r.outcome, r.accessKey, r.challenge, r.requestHash],
  );
  return standardLeaf(encoded);
}

/** The root `proof` takes the record's leaf to. */
export function rootOf(p: RecordProof): Hex {
  return rootFrom(recordLeaf(p.record), p.proof);
}

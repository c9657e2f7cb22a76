/**
 * The lock's unlock log: every decision, open or deny, as a record that is on disk before the
 * guest hears the answer. Records are sealed into batches; a batch's Merkle root (OpenZeppelin
 * StandardMerkleTree over the records' ABI encodings) is what the lock signs as an `UnlockLog` and
 * anchors in `LockAccess`, so any single record can later be proven against the chain.
 *
 * A record names the certificate (its EIP-712 struct hash), the challenge and a hash of the
 * guest's signed request: with the request itself, kept by the lock, anyone can check who asked.
 */
import { DurableLog } from "../../store/durableLog.js";
import { bytesToHex, hexToBytes, keccak } from "../../eip712/fast.js";
import { StandardTree, standardLeaf } from "../../merkle/index.js";
import type { Decision, DenyReason } from "./lock.js";

/** The deny reasons in the order of their outcome codes (outcome 0 is "open"; reason k is code k + 1). */
export const DENY_REASONS: readonly DenyReason[] = [
  "challenge",
  "foreign-lock",
  "request-signature",
  "request-expired",
  "certificate-signature",
  "previous-owner",
  "issuer",
  "stale-state",
  "lock-not-active",
  "holder-not-active",
  "holder-unknown",
  "epoch",
  "revoked",
  "not-yet-valid",
  "expired",
  "schedule",
];

/** The ABI types of one record's leaf, in order (for `StandardMerkleTree` and the contract). */
export const RECORD_ENCODING = ["uint256", "uint64", "uint8", "bytes32", "bytes32", "bytes32"] as const;

export interface UnlockRecord {
  /** Position in the log, from 0. */
  index: number;
  lock: string;
  /** The lock's time of the decision (s). */
  at: number;
  /** 0 = opened; k = denied for `DENY_REASONS[k - 1]`. */
  outcome: number;
  /** EIP-712 struct hash of the certificate presented (zero when it could not be read). */
  accessKey: string;
  challenge: string;
  /** keccak256 of the guest's request signature. */
  requestHash: string;
}

export interface SealedBatch {
  seq: number;
  /** Records `from` (inclusive) to `to` (exclusive). */
  from: number;
  to: number;
  root: string;
  fromTime: number;
  toTime: number;
}

type LogLine = { op: "record"; record: UnlockRecord } | { op: "batch"; batch: SealedBatch };

/** One record's ABI encoding: six static words. */
export function encodeRecord(r: UnlockRecord): Uint8Array {
  const out = new Uint8Array(6 * 32);
  const put = (word: number, hex: string, what: string) => out.set(hexToBytes(hex, what), word * 32);
  put(0, "0x" + BigInt(r.lock).toString(16).padStart(64, "0"), "lock");
  new DataView(out.buffer).setBigUint64(32 + 24, BigInt(r.at));
  out[2 * 32 + 31] = r.outcome;
  put(3, r.accessKey, "accessKey");
  put(4, r.challenge, "challenge");
  put(5, r.requestHash, "requestHash");
  return out;
}

/** The leaf of a record: keccak256(keccak256(abi.encode(...))), as `StandardMerkleTree` hashes it. */
export function recordLeaf(r: UnlockRecord): string {
  return bytesToHex(standardLeaf(encodeRecord(r)));
}

/** The outcome code of a decision. */
export function outcomeOf(d: Decision): number {
  if (d.open) return 0;
  const k = DENY_REASONS.indexOf(d.reason);
  // Never let an unlisted reason read as code 0, "opened".
  if (k < 0) throw new Error(`lock log: deny reason ${d.reason} has no outcome code`);
  return k + 1;
}

const ZERO32 = "0x" + "0".repeat(64);

export class UnlockLogBook {
  private readonly records: UnlockRecord[] = [];
  private readonly batches: SealedBatch[] = [];
  private readonly trees = new Map<number, StandardTree>();

  private constructor(
    private readonly log: DurableLog<LogLine>,
    readonly lock: bigint,
  ) {
    for (const line of log.replayed) {
      if (line.op === "record") this.records.push(line.record);
      else this.batches.push(line.batch);
    }
  }

  /** Opens (or creates) the log book of lock `lock` at `file`. */
  static open(file: string, lock: bigint): UnlockLogBook {
    return new UnlockLogBook(DurableLog.open<LogLine>(file), lock);
  }

  get size(): number {
    return this.records.length;
  }

  /** The batches sealed so far, oldest first. */
  sealed(): readonly SealedBatch[] {
    return this.batches;
  }

  /** Records not yet in a batch. */
  get unsealed(): number {
    return this.records.length - (this.batches.at(-1)?.to ?? 0);
  }

  /** Writes the record of `decision`; resolves once it is on disk. */
  async record(
    decision: Decision,
    fields: { accessKey?: string; challenge?: string; requestSignature?: string },
  ): Promise<UnlockRecord> {
    const sig = fields.requestSignature;
    const record: UnlockRecord = {
      index: this.records.length,
      lock: this.lock.toString(),
      at: decision.at,
      outcome: outcomeOf(decision),
      accessKey: bytes32OrZero(fields.accessKey),
      challenge: bytes32OrZero(fields.challenge),
      requestHash: sig && /^0x([0-9a-fA-F]{2})+$/.test(sig) ? bytesToHex(keccak(hexToBytes(sig, "signature"))) : ZERO32,
    };
    this.records.push(record);
    await this.log.append({ op: "record", record });
    return record;
  }

  /**
   * Seals the unsealed records into batch `seq` and persists it; returns undefined when there is
   * nothing to seal.
   */
  async seal(seq: number): Promise<SealedBatch | undefined> {
    const from = this.batches.at(-1)?.to ?? 0;
    const to = this.records.length;
    if (to === from) return undefined;
    const slice = this.records.slice(from, to);
    const tree = new StandardTree(slice.map((r) => standardLeaf(encodeRecord(r))));
    const batch: SealedBatch = {
      seq,
      from,
      to,
      root: tree.root,
      fromTime: Math.min(...slice.map((r) => r.at)),
      toTime: Math.max(...slice.map((r) => r.at)),
    };
    this.batches.push(batch);
    this.trees.set(seq, tree);
    await this.log.append({ op: "batch", batch });
    return batch;
  }

  /** Record `index`, and once sealed, its batch and Merkle proof against the batch root. */
  proof(index: number): { record: UnlockRecord; leaf: string; batch?: SealedBatch; proof?: string[] } | undefined {
    const record = this.records[index];
    if (!record) return undefined;
    const leaf = recordLeaf(record);
    const batch = this.batches.find((b) => index >= b.from && index < b.to);
    if (!batch) return { record, leaf };
    let tree = this.trees.get(batch.seq);
    if (!tree) {
      tree = new StandardTree(this.records.slice(batch.from, batch.to).map((r) => standardLeaf(encodeRecord(r))));
      this.trees.set(batch.seq, tree);
    }
    return { record, leaf, batch, proof: tree.proofAt(index - batch.from) };
  }

  close(): Promise<void> {
    return this.log.close();
  }
}

function bytes32OrZero(v: string | undefined): string {
  return v && /^0x[0-9a-fA-F]{64}$/.test(v) ? v.toLowerCase() : ZERO32;
}

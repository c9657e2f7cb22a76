/**
 * The relayer's memory of every message it accepted, rebuilt at start from a `DurableLog`.
 *
 * A message is appended (and fsync'd) before the relayer answers 202; every later change of status
 * and every batch transaction (signed, with its raw bytes) is appended before it matters, so a
 * crash at any point leaves enough on disk to resume: re-check what was sent, re-queue the rest.
 *
 * Lanes order what must be sent in order: one per device (its nonces), one per device's location
 * beacons (LocationBeacons' beacon nonces), one per forward-request signer (its forwarder nonces),
 * and one per claimed key (a claim has no nonce).
 */
import { closeSync, mkdirSync, openSync, readFileSync, rmSync, writeSync } from "node:fs";
import path from "node:path";
import { DurableLog } from "../store/durableLog.js";
import type { SignedDeviceMessage } from "../messages/index.js";
import type { ForwardRequestBody } from "./forward.js";

export type MessageStatus = "accepted" | "submitted" | "confirmed" | "failed" | "spent";
export type MessageKind = "device" | "forward";

export const FINAL: ReadonlySet<MessageStatus> = new Set(["confirmed", "failed", "spent"]);

export interface Entry {
  id: string;
  kind: MessageKind;
  body: SignedDeviceMessage | ForwardRequestBody;
  /** `d:<device id>`, `b:<device id>` (its beacons), `f:<signer>` or `c:<key>`. */
  lane: string;
  /** Device, beacon or forwarder nonce; null for a claim. */
  nonce: bigint | null;
  deadline: bigint;
  acceptedAt: number;
  status: MessageStatus;
  txHash?: string;
  error?: string;
  /** Resolves once the acceptance is on disk. */
  persisted: Promise<void>;
  durable: boolean;
}

/** A batch transaction the relayer signed: persisted before it is broadcast. */
export interface TxRecord {
  hash: string;
  raw: string;
  kind: MessageKind;
  ids: string[];
  nonce: number;
  to: string;
  data: string;
}

type LogRecord =
  | {
      t: "msg";
      id: string;
      kind: MessageKind;
      body: SignedDeviceMessage | ForwardRequestBody;
      lane: string;
      nonce: string | null;
      deadline: string;
      at: number;
      status?: MessageStatus;
      tx?: string;
      err?: string;
    }
  | { t: "status"; id: string; status: MessageStatus; tx?: string; err?: string }
  | ({ t: "tx" } & TxRecord)
  | { t: "txdone"; hash: string; outcome: string };

function laneKey(nonce: bigint | null): string {
  return nonce === null ? "claim" : nonce.toString();
}

export class MessageStore {
  readonly entries = new Map<string, Entry>();
  /** Non-final entries by lane, then by nonce. */
  readonly lanes = new Map<string, Map<string, Entry>>();
  /** Batch transactions not yet resolved (mined or dropped). */
  readonly openTxs = new Map<string, TxRecord>();
  private readonly pendingWrites = new Set<Promise<void>>();
  /** How many entries are `accepted` (waiting to be sent) and on disk. */
  acceptedCount = 0;

  private constructor(
    private readonly log: DurableLog<LogRecord>,
    private readonly lockFile: string,
  ) {}

  /**
   * Opens the log in `dataDir`, replays it and compacts it (final messages older than `retainMs`
   * are dropped). One relayer per data directory: a lock file names the owning process, and a lock
   * left by a dead process (kill -9) is taken over.
   */
  static async open(dataDir: string, retainMs: number): Promise<MessageStore> {
    mkdirSync(dataDir, { recursive: true });
    const lockFile = path.join(dataDir, "relayer.lock");
    lock(lockFile);
    let log: DurableLog<LogRecord>;
    try {
      log = DurableLog.open<LogRecord>(path.join(dataDir, "relayer.jsonl"));
    } catch (err) {
      rmSync(lockFile, { force: true });
      throw err;
    }
    const store = new MessageStore(log, lockFile);
    const done = new Set<string>();
    for (const r of log.replayed) {
      if (r.t === "msg") {
        const nonce = r.nonce === null ? null : BigInt(r.nonce);
        const e: Entry = {
          id: r.id,
          kind: r.kind,
          body: r.body,
          lane: r.lane,
          nonce,
          deadline: BigInt(r.deadline),
          acceptedAt: r.at,
          status: r.status ?? "accepted",
          persisted: Promise.resolve(),
          durable: true,
        };
        if (r.tx) e.txHash = r.tx;
        if (r.err) e.error = r.err;
        store.entries.set(e.id, e);
      } else if (r.t === "status") {
        const e = store.entries.get(r.id);
        if (!e) continue;
        e.status = r.status;
        if (r.tx) e.txHash = r.tx;
        if (r.err) e.error = r.err;
      } else if (r.t === "tx") {
        const { t: _t, ...tx } = r;
        store.openTxs.set(tx.hash, tx);
      } else if (r.t === "txdone") {
        done.add(r.hash);
      }
    }
    for (const h of done) store.openTxs.delete(h);
    const cutoff = Date.now() - retainMs;
    for (const e of [...store.entries.values()]) {
      if (FINAL.has(e.status) && e.acceptedAt < cutoff) store.entries.delete(e.id);
      else if (!FINAL.has(e.status)) store.laneOf(e.lane).set(laneKey(e.nonce), e);
      if (e.status === "accepted") store.acceptedCount++;
    }
    await log.rewrite([
      ...[...store.entries.values()].map((e) => store.msgRecord(e)),
      ...[...store.openTxs.values()].map((tx) => ({ t: "tx" as const, ...tx })),
    ]);
    return store;
  }

  get size(): number {
    return this.entries.size;
  }

  /** Messages accepted or submitted and not yet final. */
  queueDepth(): number {
    let n = 0;
    for (const lane of this.lanes.values()) n += lane.size;
    return n;
  }

  laneOf(lane: string): Map<string, Entry> {
    let l = this.lanes.get(lane);
    if (!l) this.lanes.set(lane, (l = new Map()));
    return l;
  }

  /** The non-final entry of `lane` holding `nonce` (or the lane's claim). */
  queued(lane: string, nonce: bigint | null): Entry | undefined {
    return this.lanes.get(lane)?.get(laneKey(nonce));
  }

  /**
   * Reserves a new message synchronously (so concurrent requests cannot both take a nonce) and
   * starts persisting it. Returns the existing entry instead when the id or the lane slot is taken.
   */
  reserve(
    e: Omit<Entry, "persisted" | "durable" | "status" | "acceptedAt">,
  ): { entry: Entry; fresh: true } | { entry: Entry; fresh: false } {
    const existing = this.entries.get(e.id) ?? this.queued(e.lane, e.nonce);
    if (existing) return { entry: existing, fresh: false };
    const entry = e as Entry;
    entry.status = "accepted";
    entry.acceptedAt = Date.now();
    entry.durable = false;
    this.entries.set(entry.id, entry);
    this.laneOf(entry.lane).set(laneKey(entry.nonce), entry);
    entry.persisted = this.log.append(this.msgRecord(entry)).then(
      () => {
        entry.durable = true;
        if (entry.status === "accepted") this.acceptedCount++;
      },
      (err: Error) => {
        // Not on disk: forget it, and let the caller answer 500.
        this.entries.delete(entry.id);
        this.removeFromLane(entry);
        throw err;
      },
    );
    return { entry, fresh: true };
  }

  /** Sets a message's status (and persists the change; await it when it must precede an action). */
  setStatus(e: Entry, status: MessageStatus, extra: { txHash?: string; error?: string } = {}): Promise<void> {
    if (e.durable && e.status === "accepted" && status !== "accepted") this.acceptedCount--;
    if (e.durable && e.status !== "accepted" && status === "accepted") this.acceptedCount++;
    e.status = status;
    if (extra.txHash !== undefined) e.txHash = extra.txHash;
    if (extra.error !== undefined) e.error = extra.error;
    if (status === "accepted") {
      delete e.txHash;
      this.laneOf(e.lane).set(laneKey(e.nonce), e);
    }
    if (FINAL.has(status)) this.removeFromLane(e);
    const record: LogRecord = { t: "status", id: e.id, status };
    if (e.txHash && status !== "accepted") record.tx = e.txHash;
    if (extra.error !== undefined) record.err = extra.error;
    return this.track(this.log.append(record));
  }

  /** Persists a signed batch transaction, before it is broadcast. */
  async recordTx(tx: TxRecord, entries: Entry[]): Promise<void> {
    this.openTxs.set(tx.hash, tx);
    const writes = [this.log.append({ t: "tx", ...tx })];
    for (const e of entries) writes.push(this.setStatus(e, "submitted", { txHash: tx.hash }));
    await Promise.all(writes);
  }

  /** Marks a batch transaction resolved ("mined", "reverted" or "dropped"). */
  txDone(hash: string, outcome: string): Promise<void> {
    this.openTxs.delete(hash);
    return this.track(this.log.append({ t: "txdone", hash, outcome }));
  }

  /** Waits for every status write so far. */
  async flush(): Promise<void> {
    await Promise.allSettled([...this.pendingWrites]);
  }

  async close(): Promise<void> {
    await this.flush();
    await this.log.close();
    rmSync(this.lockFile, { force: true });
  }

  private track(p: Promise<void>): Promise<void> {
    this.pendingWrites.add(p);
    const done = () => this.pendingWrites.delete(p);
    p.then(done, done);
    return p;
  }

  private removeFromLane(e: Entry): void {
    const lane = this.lanes.get(e.lane);
    if (lane?.get(laneKey(e.nonce)) === e) {
      lane.delete(laneKey(e.nonce));
      if (lane.size === 0) this.lanes.delete(e.lane);
    }
  }

  private msgRecord(e: Entry): LogRecord {
    const r: LogRecord = {
      t: "msg",
      id: e.id,
      kind: e.kind,
      body: e.body,
      lane: e.lane,
      nonce: e.nonce === null ? null : e.nonce.toString(),
      deadline: e.deadline.toString(),
      at: e.acceptedAt,
    };
    if (e.status !== "accepted") r.status = e.status;
    if (e.txHash) r.tx = e.txHash;
    if (e.error) r.err = e.error;
    return r;
  }
}

function lock(file: string): void {
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(file, "wx");
      writeSync(fd, String(process.pid));
      closeSync(fd);
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
      const pid = Number(readFileSync(file, "utf8"));
      if (alive(pid) && pid !== process.pid)
        throw new Error(`relayer: ${path.dirname(file)} is in use by process ${pid} (one relayer per data directory)`);
      rmSync(file, { force: true });
    }
  }
  throw new Error(`relayer: cannot lock ${file}`);
}

function alive(pid: number): boolean {
  if (!Number.isSafeInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

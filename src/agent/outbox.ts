/**
 * The agent's durable outbox. Every signed message is written to disk (fsync'd) before anything
 * tries to deliver it, and so is every step of its delivery:
 *
 *   pending ──submit──▶ submitted ──done──▶ done (confirmed | spent | rejected)
 *      ▲                    │
 *      └─────unsubmit───────┘   (the transaction is provably dead: its account nonce went to another)
 *
 * A direct submission records the raw signed transaction before it is broadcast, so after a crash
 * the same transaction is broadcast again and never a second one; a relayer submission records the
 * relayer's id (the relayer is idempotent by message id anyway). The state is rebuilt from the log
 * at open (`DurableLog` cuts a torn last line), and the log is compacted when finished entries
 * dominate it: live entries keep their full records, finished ones shrink to a summary that still
 * names their id, reference, device and nonce (so a re-run never signs a finished request again),
 * and only the newest `retainDone` summaries are kept.
 *
 * Besides signed device messages, an entry may be a public call (`src/messages/calls.ts`: a call
 * anyone may make, such as a watchtower's `markOverdue`), added with `addCall`: it has no device and
 * no nonce, its id is derived from the call, and it goes in a lane of its own.
 *
 * One process owns an outbox at a time (a lock file next to the log names its pid).
 */
import { EventEmitter } from "node:events";
import { closeSync, mkdirSync, openSync, readFileSync, unlinkSync, writeSync } from "node:fs";
import path from "node:path";
import { DurableLog } from "../store/durableLog.js";
import {
  checkShape,
  deviceOf,
  messageId,
  nonceOf,
  type ContractName,
  type DeviceMessageType,
  type SignedDeviceMessage,
} from "../messages/index.js";
import { callId, checkCallShape, contractOf, type PublicCall, type PublicCallType } from "../messages/calls.js";

export type Outcome = "confirmed" | "spent" | "rejected";
/** What an entry carries: a device message's type, or a public call's. */
export type EntryType = DeviceMessageType | PublicCallType;
export type EntryState = "pending" | "submitted" | "done";

/** A transaction sent straight to a node by the agent's payer account. */
export interface RpcSubmission {
  via: "rpc";
  txHash: string;
  /** The raw signed transaction: what a restart broadcasts again. */
  raw: string;
  from: string;
  accountNonce: number;
  /** A zero-value transfer that only fills `accountNonce` (the message landed through someone else). */
  filler?: boolean;
  /** Earlier transactions with the same account nonce (one of them may still be mined). */
  replaces?: string[];
}

/** A message handed to the relayer gateway. */
export interface RelayerSubmission {
  via: "relayer";
  relayerId: string;
  /**
   * A public call goes to the relayer as an ERC-2771 forward request signed by the sender's own
   * key: the signed request, recorded before it is posted, so that a restart posts the very same one.
   */
  forward?: ForwardRequestJson;
}

/** A signed forward request as the relayer's `POST /v1/forward` takes it (integers as decimal strings). */
export interface ForwardRequestJson {
  from: string;
  to: string;
  value: string;
  gas: string;
  nonce: string;
  deadline: string;
  data: string;
  signature: string;
}

export type Submission = RpcSubmission | RelayerSubmission;

export interface OutboxEntry {
  id: string;
  /** Order of arrival in this outbox. */
  seq: number;
  /** The caller's idempotency key, if it gave one. */
  ref?: string;
  type: EntryType;
  /** The device the message speaks for; 0 for a public call (it speaks for none). */
  device: bigint;
  /** The device nonce the message uses (claims have none). */
  nonce?: bigint;
  /** The signed message; absent once a finished entry is compacted to its summary, and for a public call. */
  message?: SignedDeviceMessage;
  /** The public call, for an entry added by `addCall` (absent once compacted to its summary). */
  call?: PublicCall;
  state: EntryState;
  submission?: Submission;
  outcome?: Outcome;
  reason?: string;
  txHash?: string;
  addedAt: number;
  doneAt?: number;
}

/** One line of the outbox log. Integers that may exceed 2^53 are decimal strings. */
export type OutboxRecord =
  | { op: "add"; id: string; seq: number; ref?: string; message: SignedDeviceMessage; at: number }
  | { op: "addCall"; id: string; seq: number; ref?: string; call: PublicCall; at: number }
  | { op: "submit"; id: string; submission: Submission; at: number }
  | { op: "unsubmit"; id: string; reason: string; at: number }
  | { op: "done"; id: string; outcome: Outcome; reason?: string; txHash?: string; at: number }
  | {
      op: "retired";
      id: string;
      seq: number;
      ref?: string;
      type: EntryType;
      device: string;
      nonce?: string;
      outcome: Outcome;
      reason?: string;
      txHash?: string;
      addedAt: number;
      doneAt: number;
    };

export interface OutboxOptions {
  /** Finished entries kept (as summaries) through compaction; the oldest go first. Default 10,000. */
  retainDone?: number;
  /** The log is not compacted below this many records. Default 1,000. */
  compactMinRecords?: number;
}

export interface OutboxStats {
  pending: number;
  submitted: number;
  confirmed: number;
  spent: number;
  rejected: number;
  /** Records in the log file right now. */
  records: number;
}

/**
 * The delivery lane of an entry: a device's location beacons go in a lane of their own (they carry
 * LocationBeacons' beacon nonce, independent of the registry's device nonce, and they are what a
 * quarantined device sends while its registry messages are held); everything else of the device
 * goes in its main lane.
 */
function laneOf(e: Pick<OutboxEntry, "id" | "device" | "type" | "call">): string {
  // A public call waits for nothing else: it uses no device nonce.
  if (e.call) return `call:${e.id}`;
  return contractOf(e.type) === "locationBeacons" ? `${e.device}:beacons` : `${e.device}`;
}

/** Order of the messages of one lane: a device's claim first, then by nonce, then by arrival. */
function order(a: OutboxEntry, b: OutboxEntry): number {
  const na = a.nonce ?? -1n;
  const nb = b.nonce ?? -1n;
  if (na !== nb) return na < nb ? -1 : 1;
  return a.seq - b.seq;
}

const openFiles = new Set<string>();

export class Outbox extends EventEmitter {
  private readonly entries = new Map<string, OutboxEntry>();
  private readonly refs = new Map<string, string>();
  private readonly adding = new Map<string, Promise<OutboxEntry>>();
  private readonly inflight = new Set<Promise<unknown>>();
  private gate: Promise<void> = Promise.resolve();
  private compacting: Promise<void> | null = null;
  private nextSeq = 0;
  private records = 0;
  private closed = false;
  private readonly retainDone: number;
  private readonly compactMinRecords: number;

  private constructor(
    private readonly log: DurableLog<OutboxRecord> | null,
    private readonly lockFile: string | null,
    readonly file: string,
    replayed: OutboxRecord[],
    opts: OutboxOptions,
  ) {
    super();
    this.retainDone = opts.retainDone ?? 10_000;
    this.compactMinRecords = opts.compactMinRecords ?? 1_000;
    for (const record of replayed) this.apply(record, true);
    this.records = replayed.length;
  }

  /** Opens the outbox whose log is `file` (created if needed), taking its lock, and replays it. */
  static open(file: string, opts: OutboxOptions = {}): Outbox {
    const lockFile = `${file}.lock`;
    mkdirSync(path.dirname(file), { recursive: true });
    acquireLock(lockFile);
    try {
      const log = DurableLog.open<OutboxRecord>(file);
      return new Outbox(log, lockFile, file, log.replayed, opts);
    } catch (err) {
      releaseLock(lockFile);
      throw err;
    }
  }

  /**
   * A read-only view of the outbox at `file`, safe while its owner is running: no lock is taken
   * and nothing is written (a line still being written is ignored, not cut off).
   */
  static read(file: string): Outbox {
    const records: OutboxRecord[] = [];
    let text = "";
    try {
      text = readFileSync(file, "utf8");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
    }
    for (const line of text.split("\n").slice(0, -1)) {
      try {
        records.push(JSON.parse(line) as OutboxRecord);
      } catch {
        break;
      }
    }
    return new Outbox(null, null, file, records, {});
  }

  get(id: string): OutboxEntry | undefined {
    return this.entries.get(id);
  }

  /** The entry added with idempotency key `ref`. */
  byRef(ref: string): OutboxEntry | undefined {
    const id = this.refs.get(ref);
    return id === undefined ? undefined : this.entries.get(id);
  }

  /** Every known entry (live and retained finished ones), in arrival order. */
  all(): OutboxEntry[] {
    return [...this.entries.values()].sort((a, b) => a.seq - b.seq);
  }

  /** Entries not finished yet: per lane (see {@link laneOf}) in delivery order, lanes by first arrival. */
  live(): OutboxEntry[] {
    const byLane = new Map<string, OutboxEntry[]>();
    for (const e of [...this.entries.values()].sort((a, b) => a.seq - b.seq)) {
      if (e.state === "done") continue;
      const lane = laneOf(e);
      const list = byLane.get(lane) ?? [];
      list.push(e);
      byLane.set(lane, list);
    }
    return [...byLane.values()].flatMap((list) => list.sort(order));
  }

  /**
   * The next message to deliver in each lane that has one: messages of a device go one by one, its
   * location beacons one by one beside them.
   */
  heads(): OutboxEntry[] {
    const heads = new Map<string, OutboxEntry>();
    for (const e of this.live()) {
      const lane = laneOf(e);
      if (!heads.has(lane)) heads.set(lane, e);
    }
    return [...heads.values()];
  }

  /** Entries of `device`, finished or not, in delivery order (all its lanes). */
  ofDevice(device: bigint): OutboxEntry[] {
    return [...this.entries.values()].filter((e) => e.device === device).sort(order);
  }

  /**
   * The lowest nonce of `contract` (the registry's device nonce, or LocationBeacons' beacon nonce)
   * above every message of `device` that uses it and is live or landed: where the next such message
   * must start, as far as the outbox knows. Rejected messages do not count (they never land, so
   * their nonces are free again).
   */
  nextNonce(device: bigint, contract: ContractName = "registry"): bigint | undefined {
    let next: bigint | undefined;
    for (const e of this.entries.values()) {
      if (e.device !== device || e.nonce === undefined || e.outcome === "rejected") continue;
      if (contractOf(e.type) !== contract) continue;
      if (next === undefined || e.nonce + 1n > next) next = e.nonce + 1n;
    }
    return next;
  }

  stats(): OutboxStats {
    const s: OutboxStats = { pending: 0, submitted: 0, confirmed: 0, spent: 0, rejected: 0, records: this.records };
    for (const e of this.entries.values()) {
      if (e.state === "done") s[e.outcome!]++;
      else s[e.state]++;
    }
    return s;
  }

  /**
   * Persists a signed message; resolves once it is on disk. Adding a message (or a `ref`) that is
   * already here returns the existing entry and writes nothing.
   */
  async add(message: SignedDeviceMessage, opts: { ref?: string } = {}): Promise<OutboxEntry> {
    checkShape(message);
    const id = messageId(message);
    return this.persistOnce(id, opts.ref, (seq) => ({
      op: "add",
      id,
      seq,
      ...(opts.ref === undefined ? {} : { ref: opts.ref }),
      message,
      at: Date.now(),
    }));
  }

  /**
   * Persists a public call; resolves once it is on disk. Its id is derived from the call, so adding
   * the same call again (after a restart, say) returns the existing entry and writes nothing.
   */
  async addCall(input: PublicCall, opts: { ref?: string } = {}): Promise<OutboxEntry> {
    const call = checkCallShape(input);
    const id = callId(call);
    return this.persistOnce(id, opts.ref, (seq) => ({
      op: "addCall",
      id,
      seq,
      ...(opts.ref === undefined ? {} : { ref: opts.ref }),
      call,
      at: Date.now(),
    }));
  }

  /** A new pending entry (a device message or a public call) joins the outbox, by id and by ref. */
  private admit(entry: OutboxEntry, replaying: boolean): void {
    this.entries.set(entry.id, entry);
    if (entry.ref !== undefined) this.refs.set(entry.ref, entry.id);
    this.nextSeq = Math.max(this.nextSeq, entry.seq + 1);
    if (!replaying) this.emit("added", entry);
  }

  /**
   * Writes the record of entry `id` once: an entry already here (by id or by `ref`), or one being
   * written, is returned instead, so concurrent and repeated adds write nothing more.
   */
  private async persistOnce(
    id: string,
    ref: string | undefined,
    record: (seq: number) => OutboxRecord,
  ): Promise<OutboxEntry> {
    const existing = this.entries.get(id) ?? (ref === undefined ? undefined : this.byRef(ref));
    if (existing) return existing;
    const adding = this.adding.get(id) ?? (ref === undefined ? undefined : this.adding.get(`ref:${ref}`));
    if (adding) return adding;
    const p = this.write(record(this.nextSeq++)).then(() => this.entries.get(id)!);
    this.adding.set(id, p);
    if (ref !== undefined) this.adding.set(`ref:${ref}`, p);
    try {
      return await p;
    } finally {
      this.adding.delete(id);
      if (ref !== undefined) this.adding.delete(`ref:${ref}`);
    }
  }

  /** Records that `id` was handed over (for a direct submission: before the transaction is broadcast). */
  async submit(id: string, submission: Submission): Promise<void> {
    this.expect(id, ["pending", "submitted"]);
    await this.write({ op: "submit", id, submission, at: Date.now() });
  }

  /** Back to pending: the recorded submission can provably never land. */
  async unsubmit(id: string, reason: string): Promise<void> {
    this.expect(id, ["submitted"]);
    await this.write({ op: "unsubmit", id, reason, at: Date.now() });
  }

  /** Records the final outcome of `id`. */
  async done(id: string, outcome: Outcome, opts: { reason?: string; txHash?: string } = {}): Promise<void> {
    this.expect(id, ["pending", "submitted"]);
    await this.write({ op: "done", id, outcome, ...opts, at: Date.now() });
    this.emit("done", this.entries.get(id));
    if (this.records >= this.compactMinRecords) {
      const keep = this.liveCount() * 2 + Math.min(this.doneCount(), this.retainDone);
      if (this.records > 2 * keep) await this.compact();
    }
  }

  /** Rewrites the log as live entries plus summaries of the newest finished ones. */
  async compact(): Promise<void> {
    if (!this.log) throw new Error(`outbox ${this.file} is open read-only`);
    this.compacting ??= this.compactNow().finally(() => (this.compacting = null));
    return this.compacting;
  }

  private async compactNow(): Promise<void> {
    let open!: () => void;
    const previous = this.gate;
    // Writes already started finish first; later ones wait behind the gate until the rewrite is done.
    const started = [...this.inflight];
    this.gate = new Promise<void>((resolve) => (open = resolve));
    try {
      await previous;
      await Promise.allSettled(started);
      const records: OutboxRecord[] = [];
      const all = this.all();
      const done = all.filter((e) => e.state === "done").sort((a, b) => a.doneAt! - b.doneAt! || a.seq - b.seq);
      const dropped = new Set(done.slice(0, Math.max(0, done.length - this.retainDone)).map((e) => e.id));
      for (const e of all) {
        if (dropped.has(e.id)) continue;
        if (e.state === "done") {
          records.push({
            op: "retired",
            id: e.id,
            seq: e.seq,
            ...(e.ref === undefined ? {} : { ref: e.ref }),
            type: e.type,
            device: e.device.toString(),
            ...(e.nonce === undefined ? {} : { nonce: e.nonce.toString() }),
            outcome: e.outcome!,
            ...(e.reason === undefined ? {} : { reason: e.reason }),
            ...(e.txHash === undefined ? {} : { txHash: e.txHash }),
            addedAt: e.addedAt,
            doneAt: e.doneAt!,
          });
          continue;
        }
        const ref = e.ref === undefined ? {} : { ref: e.ref };
        records.push(
          e.call
            ? { op: "addCall", id: e.id, seq: e.seq, ...ref, call: e.call, at: e.addedAt }
            : { op: "add", id: e.id, seq: e.seq, ...ref, message: e.message!, at: e.addedAt },
        );
        if (e.submission) records.push({ op: "submit", id: e.id, submission: e.submission, at: e.addedAt });
      }
      await this.log!.rewrite(records);
      for (const id of dropped) {
        const e = this.entries.get(id)!;
        if (e.ref !== undefined) this.refs.delete(e.ref);
        this.entries.delete(id);
      }
      this.records = records.length;
      this.emit("compacted", { records: records.length, dropped: dropped.size });
    } finally {
      open();
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.allSettled([...this.inflight]);
    await this.log?.close();
    if (this.lockFile) releaseLock(this.lockFile);
  }

  private liveCount(): number {
    let n = 0;
    for (const e of this.entries.values()) if (e.state !== "done") n++;
    return n;
  }

  private doneCount(): number {
    return this.entries.size - this.liveCount();
  }

  private expect(id: string, states: EntryState[]): OutboxEntry {
    const e = this.entries.get(id);
    if (!e) throw new Error(`outbox: no message ${id}`);
    if (!states.includes(e.state)) throw new Error(`outbox: message ${id} is ${e.state}, not ${states.join(" or ")}`);
    return e;
  }

  // Appends go through the gate (closed while compacting) and change the state only once on disk.
  private async write(record: OutboxRecord): Promise<void> {
    const log = this.log;
    if (!log) throw new Error(`outbox ${this.file} is open read-only`);
    if (this.closed) throw new Error(`outbox ${this.file} is closed`);
    const p = (async () => {
      await this.gate;
      await log.append(record);
      this.records++;
      this.apply(record, false);
    })();
    this.inflight.add(p);
    try {
      await p;
    } finally {
      this.inflight.delete(p);
    }
  }

  private apply(r: OutboxRecord, replaying: boolean): void {
    switch (r.op) {
      case "add": {
        if (this.entries.has(r.id)) return;
        const m = r.message;
        const entry: OutboxEntry = {
          id: r.id,
          seq: r.seq,
          ...(r.ref === undefined ? {} : { ref: r.ref }),
          type: m.type,
          device: deviceOf(m),
          ...(nonceOf(m) === undefined ? {} : { nonce: nonceOf(m) }),
          message: m,
          state: "pending",
          addedAt: r.at,
        };
        this.admit(entry, replaying);
        return;
      }
      case "addCall": {
        if (this.entries.has(r.id)) return;
        const entry: OutboxEntry = {
          id: r.id,
          seq: r.seq,
          ...(r.ref === undefined ? {} : { ref: r.ref }),
          type: r.call.type,
          device: 0n,
          call: r.call,
          state: "pending",
          addedAt: r.at,
        };
        this.admit(entry, replaying);
        return;
      }
      case "retired": {
        const entry: OutboxEntry = {
          id: r.id,
          seq: r.seq,
          ...(r.ref === undefined ? {} : { ref: r.ref }),
          type: r.type,
          device: BigInt(r.device),
          ...(r.nonce === undefined ? {} : { nonce: BigInt(r.nonce) }),
          state: "done",
          outcome: r.outcome,
          ...(r.reason === undefined ? {} : { reason: r.reason }),
          ...(r.txHash === undefined ? {} : { txHash: r.txHash }),
          addedAt: r.addedAt,
          doneAt: r.doneAt,
        };
        this.entries.set(r.id, entry);
        if (r.ref !== undefined) this.refs.set(r.ref, r.id);
        this.nextSeq = Math.max(this.nextSeq, r.seq + 1);
        return;
      }
      default: {
        const e = this.entries.get(r.id);
        if (!e || e.state === "done") return; // a record about something already finished: nothing to do
        if (r.op === "submit") {
          e.state = "submitted";
          e.submission = r.submission;
        } else if (r.op === "unsubmit") {
          e.state = "pending";
          delete e.submission;
        } else {
          e.state = "done";
          e.outcome = r.outcome;
          if (r.reason !== undefined) e.reason = r.reason;
          if (r.txHash !== undefined) e.txHash = r.txHash;
          e.doneAt = r.at;
        }
      }
    }
  }
}

function acquireLock(lockFile: string): void {
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(lockFile, "wx", 0o600);
      writeSync(fd, String(process.pid));
      closeSync(fd);
      openFiles.add(lockFile);
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
    }
    let pid = NaN;
    try {
      pid = Number(readFileSync(lockFile, "utf8").trim());
    } catch {
      // vanished meanwhile: try again
    }
    const ours = pid === process.pid;
    if (Number.isInteger(pid) && pid > 0 && (ours ? openFiles.has(lockFile) : isAlive(pid))) {
      throw new Error(`outbox ${lockFile.replace(/\.lock$/, "")} is in use by process ${pid} (lock ${lockFile})`);
    }
    try {
      unlinkSync(lockFile); // stale: its process is gone (kill -9, power loss)
    } catch {
      // someone else removed it
    }
  }
  throw new Error(`outbox: could not take the lock ${lockFile}`);
}

function releaseLock(lockFile: string): void {
  openFiles.delete(lockFile);
  try {
    unlinkSync(lockFile);
  } catch {
    // already gone
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * The dispatcher's memory, in a durable log (`deliveries.log`): every delivery is written (and
 * synced) before it is first tried, then what became of it — failed attempts, delivered, given up,
 * cancelled — and how far in the feed the dispatcher has looked (its cursor). At open, the state is
 * rebuilt from the log: the deliveries still pending, per subscription and in the order they were
 * queued, are tried again with the same id and the same body.
 */
import path from "node:path";
import { DurableLog } from "../../store/durableLog.js";
import type { Delivery } from "./delivery.js";

type DeliveryRecord =
  | { t: "queued"; d: Delivery }
  /** A failed attempt; `failures` (in a compacted log) stands for all of them so far. */
  | { t: "attempted"; id: string; at: number; error: string; failures?: number }
  | { t: "delivered"; id: string; at: number; status: number }
  | { t: "failed"; id: string; at: number; reason: string }
  | { t: "cancelled"; id: string; at: number; reason: string }
  | { t: "cursor"; block: string };

export type DeliveryStatus = "pending" | "delivered" | "failed" | "cancelled";

export interface DeliveryState {
  delivery: Delivery;
  status: DeliveryStatus;
  /** Failed attempts so far. */
  failures: number;
  lastError?: string;
  lastAttemptAt?: number;
  /** When it was delivered, given up or cancelled. */
  doneAt?: number;
  /** For an alert delivery: its retraction, once queued. */
  retractedBy?: string;
}

/** A delivery as `GET /deliveries` lists it (the body's alert, not the body). */
export interface DeliveryView {
  id: string;
  subscription: string;
  type: Delivery["type"];
  alertId: string;
  blockNumber: string;
  retracts?: string;
  retractedBy?: string;
  status: DeliveryStatus;
  failures: number;
  lastError?: string;
  queuedAt: number;
  lastAttemptAt?: number;
  doneAt?: number;
}

export class DeliveryStore {
  private readonly states = new Map<string, DeliveryState>();
  /** subscription → ids of its pending deliveries, in queue order. */
  private readonly queues = new Map<string, string[]>();
  /** Alert deliveries not retracted, by block: what a reorg may still take back. */
  private readonly recent = new Map<string, DeliveryState>();
  private cursorBlock: bigint | null = null;

  private constructor(private readonly log: DurableLog<DeliveryRecord>) {
    for (const r of log.replayed) this.apply(r);
  }

  static open(dataDir: string): DeliveryStore {
    return new DeliveryStore(DurableLog.open<DeliveryRecord>(path.join(dataDir, "deliveries.log")));
  }

  private apply(r: DeliveryRecord): void {
    if (r.t === "cursor") {
      this.cursorBlock = BigInt(r.block);
      return;
    }
    if (r.t === "queued") {
      if (this.states.has(r.d.id)) return;
      const state: DeliveryState = { delivery: r.d, status: "pending", failures: 0 };
      this.states.set(r.d.id, state);
      const queue = this.queues.get(r.d.subscription) ?? [];
      queue.push(r.d.id);
      this.queues.set(r.d.subscription, queue);
      if (r.d.type === "alert") this.recent.set(r.d.id, state);
      else if (r.d.retracts) {
        const original = this.states.get(r.d.retracts);
        if (original) original.retractedBy = r.d.id;
        this.recent.delete(r.d.retracts);
      }
      return;
    }
    const state = this.states.get(r.id);
    if (!state) return;
    if (r.t === "attempted") {
      state.failures = r.failures ?? state.failures + 1;
      state.lastError = r.error;
      state.lastAttemptAt = r.at;
      return;
    }
    state.status = r.t;
    state.doneAt = r.at;
    if (r.t === "delivered") state.lastAttemptAt = r.at;
    else state.lastError = r.reason;
    const queue = this.queues.get(state.delivery.subscription);
    const i = queue?.indexOf(r.id) ?? -1;
    if (queue && i >= 0) queue.splice(i, 1);
  }

  private async write(records: DeliveryRecord[]): Promise<void> {
    await this.log.appendAll(records);
    for (const r of records) this.apply(r);
  }

  has(id: string): boolean {
    return this.states.has(id);
  }

  get(id: string): DeliveryState | undefined {
    return this.states.get(id);
  }

  /** Writes `deliveries` (synced) and only then makes them pending: nothing is tried before it is on disk. */
  queue(deliveries: Delivery[]): Promise<void> {
    return this.write(deliveries.filter((d) => !this.states.has(d.id)).map((d) => ({ t: "queued", d })));
  }

  attempted(id: string, at: number, error: string): Promise<void> {
    return this.write([{ t: "attempted", id, at, error }]);
  }

  delivered(id: string, at: number, status: number): Promise<void> {
    return this.write([{ t: "delivered", id, at, status }]);
  }

  failed(id: string, at: number, reason: string): Promise<void> {
    return this.write([{ t: "failed", id, at, reason }]);
  }

  cancelled(id: string, at: number, reason: string): Promise<void> {
    return this.write([{ t: "cancelled", id, at, reason }]);
  }

  /** The first block the dispatcher has not looked at yet (null before its first look). */
  get cursor(): bigint | null {
    return this.cursorBlock;
  }

  async setCursor(block: bigint): Promise<void> {
    if (this.cursorBlock !== block) await this.write([{ t: "cursor", block: block.toString() }]);
  }

  /** The next pending delivery of `subscription`. */
  head(subscription: string): DeliveryState | undefined {
    const id = this.queues.get(subscription)?.[0];
    return id === undefined ? undefined : this.states.get(id);
  }

  /** The subscriptions with pending deliveries. */
  subscriptionsWithPending(): string[] {
    return [...this.queues].filter(([, q]) => q.length > 0).map(([s]) => s);
  }

  pendingOf(subscription: string): DeliveryState[] {
    return (this.queues.get(subscription) ?? []).map((id) => this.states.get(id)!);
  }

  /** Alert deliveries not yet retracted whose block is `from` or later; older ones are forgotten (final). */
  unretractedFrom(from: bigint): DeliveryState[] {
    const out: DeliveryState[] = [];
    for (const [id, s] of this.recent) {
      if (BigInt(s.delivery.blockNumber) < from) this.recent.delete(id);
      else out.push(s);
    }
    return out;
  }

  list(filter: { subscription?: string; status?: DeliveryStatus }): DeliveryView[] {
    const out: DeliveryView[] = [];
    for (const s of this.states.values()) {
      if (filter.subscription && s.delivery.subscription !== filter.subscription) continue;
      if (filter.status && s.status !== filter.status) continue;
      const d = s.delivery;
      out.push({
        id: d.id,
        subscription: d.subscription,
        type: d.type,
        alertId: d.alertId,
        blockNumber: d.blockNumber,
        ...(d.retracts ? { retracts: d.retracts } : {}),
        ...(s.retractedBy ? { retractedBy: s.retractedBy } : {}),
        status: s.status,
        failures: s.failures,
        ...(s.lastError ? { lastError: s.lastError } : {}),
        queuedAt: d.queuedAt,
        ...(s.lastAttemptAt ? { lastAttemptAt: s.lastAttemptAt } : {}),
        ...(s.doneAt ? { doneAt: s.doneAt } : {}),
      });
    }
    return out;
  }

  /**
   * Rewrites the log with what is still needed (atomically, `DurableLog.rewrite`): every pending
   * delivery with its failures so far, in queue order; finished ones whose block is within
   * `finalityDepth` of the cursor (the dispatcher's next poll looks at those blocks again: forgotten,
   * they would be sent again; and a reorg may still take them back); and finished ones
   * done less than `retainMs` ago, for `GET /deliveries` (their bodies dropped once out of reach of
   * a reorg). The rest is forgotten. Returns how many records the log had and has.
   */
  async compact(o: {
    now: number;
    retainMs: number;
    finalityDepth: number;
  }): Promise<{ before: number; after: number }> {
    const before = this.log.replayed.length;
    const depth = BigInt(o.finalityDepth);
    const c = this.cursorBlock;
    if (c === null) return { before, after: before };
    const keepFromBlock = c > depth ? c - depth : 0n;
    const records: DeliveryRecord[] = [];
    for (const [id, s] of this.states) {
      const inReach = BigInt(s.delivery.blockNumber) >= keepFromBlock;
      if (s.status !== "pending" && !inReach && (s.doneAt ?? 0) < o.now - o.retainMs) {
        this.states.delete(id);
        this.recent.delete(id);
        continue;
      }
      const d = s.status === "pending" || inReach ? s.delivery : { ...s.delivery, body: "" };
      records.push({ t: "queued", d });
      if (s.failures > 0)
        records.push({ t: "attempted", id, at: s.lastAttemptAt ?? 0, error: s.lastError ?? "", failures: s.failures });
      if (s.status === "delivered") records.push({ t: "delivered", id, at: s.doneAt!, status: 200 });
      else if (s.status !== "pending") records.push({ t: s.status, id, at: s.doneAt!, reason: s.lastError ?? "" });
    }
    records.push({ t: "cursor", block: c.toString() });
    await this.log.rewrite(records);
    return { before, after: records.length };
  }

  close(): Promise<void> {
    return this.log.close();
  }
}

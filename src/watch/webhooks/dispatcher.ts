/**
 * The dispatcher: reads alerts from the feed, queues a delivery for every subscription an alert
 * matches (on disk before the first try), and POSTs each one, signed with its subscription's
 * secret by the `standardwebhooks` package (headers webhook-id = the delivery id,
 * webhook-timestamp, webhook-signature: HMAC-SHA256 of `id.timestamp.body`).
 *
 * - Per subscription, one delivery in flight and in queue order; across subscriptions up to
 *   `concurrency` at once. A failed attempt (anything but a 2xx, a refused connection, a timeout)
 *   waits its backoff ({@link BackoffPolicy}) and is tried again, until the horizon has passed since
 *   it was queued: then it is marked failed (listed by `GET /deliveries?status=failed`) and the
 *   next one goes.
 * - Each poll looks again at the last `finalityDepth` blocks: a delivered (or queued) alert that
 *   the feed no longer lists though its indexed block has passed the alert's block was orphaned by
 *   a reorg, and gets an `alert.retracted` delivery naming it.
 * - After a crash, the pending deliveries are tried again from the log with their ids and bodies;
 *   a poll that finds an alert already queued queues nothing (the id is derived, not drawn).
 */
import { Webhook } from "standardwebhooks";
import type { AlertFeed } from "../alerts.js";
import { backoffDelay, PRODUCTION_BACKOFF, WALL_CLOCK, type BackoffPolicy, type Clock } from "./backoff.js";
import { alertDelivery, deliveryIdOf, retractionDelivery, type Delivery } from "./delivery.js";
import type { DeliveryState, DeliveryStore } from "./deliveries.js";
import { matches, type Subscription } from "./subscription.js";
import type { SubscriptionStore } from "./subscriptions.js";

export const DEFAULT_FINALITY_DEPTH = 64;

export interface DispatcherOptions {
  feed: AlertFeed;
  subscriptions: SubscriptionStore;
  deliveries: DeliveryStore;
  /** Schedules retries and the give-up horizon (default: the wall clock). */
  clock?: Clock;
  policy?: BackoffPolicy;
  /** Deliveries in flight at once, across subscriptions (default 8). */
  concurrency?: number;
  /** Wall-clock ms between two polls of the feed (default 1000). */
  pollIntervalMs?: number;
  /** How many blocks back each poll looks for alerts a reorg took away (default 64). */
  finalityDepth?: number;
  /** How long finished deliveries stay listed (and in the log) once out of reach of a reorg (default 7 days). */
  retainMs?: number;
  /** Wall-clock ms an attempt may take before it counts as failed (default 10 s). */
  timeoutMs?: number;
  /** One JSON-able event per thing that happened (queued, delivered, retry, failed…). */
  log?: (event: Record<string, unknown>) => void;
  random?: () => number;
}

/** A counting semaphore: at most `n` holders. */
class Slots {
  private waiters: (() => void)[] = [];
  constructor(private free: number) {}
  async take(): Promise<void> {
    if (this.free > 0) {
      this.free--;
      return;
    }
    await new Promise<void>((resolve) => this.waiters.push(resolve));
  }
  give(): void {
    const next = this.waiters.shift();
    if (next) next();
    else this.free++;
  }
}

export class Dispatcher {
  private readonly clock: Clock;
  private readonly policy: BackoffPolicy;
  private readonly slots: Slots;
  private readonly stopper = new AbortController();
  private readonly lanes = new Map<string, Promise<void>>();
  private readonly signers = new Map<string, Webhook>();
  private polling: Promise<void> | null = null;
  private readonly log: (event: Record<string, unknown>) => void;

  constructor(private readonly opts: DispatcherOptions) {
    this.clock = opts.clock ?? WALL_CLOCK;
    this.policy = opts.policy ?? PRODUCTION_BACKOFF;
    this.slots = new Slots(opts.concurrency ?? 8);
    this.log = opts.log ?? (() => {});
  }

  /**
   * Compacts the log (what a restart needs, not every attempt ever made), then starts polling and
   * resumes the deliveries left pending by the last run.
   */
  async start(): Promise<void> {
    await this.opts.deliveries.compact({
      now: this.clock.now(),
      retainMs: this.opts.retainMs ?? 7 * 24 * 3600_000,
      finalityDepth: this.opts.finalityDepth ?? DEFAULT_FINALITY_DEPTH,
    });
    for (const sub of this.opts.deliveries.subscriptionsWithPending()) this.wake(sub);
    this.polling = this.pollLoop();
  }

  async stop(): Promise<void> {
    this.stopper.abort();
    await this.polling;
    await Promise.all(this.lanes.values());
  }

  private get stopped(): boolean {
    return this.stopper.signal.aborted;
  }

  private async pollLoop(): Promise<void> {
    while (!this.stopped) {
      try {
        await this.pollOnce();
      } catch (err) {
        this.log({ event: "poll_failed", error: (err as Error).message });
      }
      await WALL_CLOCK.sleep(this.opts.pollIntervalMs ?? 1000, this.stopper.signal);
    }
  }

  /** One look at the feed: queues new deliveries and retractions; returns how many of each. */
  async pollOnce(): Promise<{ queued: number; retractions: number }> {
    const { feed, deliveries } = this.opts;
    const subs = this.opts.subscriptions.active();
    const cursor = deliveries.cursor;
    const depth = BigInt(this.opts.finalityDepth ?? DEFAULT_FINALITY_DEPTH);
    let from: bigint;
    if (cursor !== null) from = cursor > depth ? cursor - depth : 0n;
    else if (subs.length > 0) from = subs.map((s) => BigInt(s.fromBlock)).reduce((a, b) => (a < b ? a : b));
    else return { queued: 0, retractions: 0 }; // nobody listens yet
    const { indexedBlock, alerts } = await feed.alertsFrom(from);
    const now = this.clock.now();
    const fresh: Delivery[] = [];
    const seen = new Set<string>();
    const listed = new Set<string>();
    // Every match needs the subscriber among the alert's owners: look subscriptions up by owner.
    const byOwner = new Map<string, Subscription[]>();
    for (const sub of subs) {
      const key = sub.owner.toLowerCase();
      byOwner.set(key, [...(byOwner.get(key) ?? []), sub]);
    }
    for (const alert of alerts) {
      if (BigInt(alert.blockNumber) > indexedBlock) continue;
      const candidates = new Set(alert.subjects.owners.flatMap((o) => byOwner.get(o.toLowerCase()) ?? []));
      for (const sub of candidates) {
        if (!matches(sub, alert)) continue;
        const id = deliveryIdOf(sub.id, alert);
        listed.add(id);
        if (!deliveries.has(id) && !seen.has(id)) {
          seen.add(id);
          fresh.push(alertDelivery(sub.id, alert, now));
        }
      }
    }
    // An alert listed in the same block is not orphaned, even if it no longer matches (a device
    // sold since: the alert did happen).
    const occurrences = new Set(alerts.map((a) => `${a.id} ${a.blockHash.toLowerCase()}`));
    const retractions: Delivery[] = [];
    for (const state of deliveries.unretractedFrom(from)) {
      const d = state.delivery;
      if (BigInt(d.blockNumber) > indexedBlock || listed.has(d.id)) continue;
      if (!this.opts.subscriptions.isActive(d.subscription) || state.status === "cancelled") continue;
      if (!occurrences.has(`${d.alertId} ${d.blockHash}`)) retractions.push(retractionDelivery(d, now));
    }
    const all = [...fresh, ...retractions];
    if (all.length > 0) {
      await deliveries.queue(all);
      for (const d of all)
        this.log({ event: "queued", delivery: d.id, type: d.type, alert: d.alertId, subscription: d.subscription });
      for (const sub of new Set(all.map((d) => d.subscription))) this.wake(sub);
    }
    // The next poll starts `depth` blocks before what the index has reached.
    await deliveries.setCursor(indexedBlock + 1n);
    return { queued: fresh.length, retractions: retractions.length };
  }

  private wake(subscription: string): void {
    if (this.lanes.has(subscription) || this.stopped) return;
    const lane = this.runLane(subscription)
      .catch(async (err: Error) => {
        // The log could not be written: nothing was lost (what is not on disk is not done); try again later.
        this.log({ event: "lane_failed", subscription, error: err.message });
        await WALL_CLOCK.sleep(1000, this.stopper.signal);
      })
      .finally(() => {
        this.lanes.delete(subscription);
        // Queued while the lane was finishing: go on.
        if (this.opts.deliveries.head(subscription) && !this.stopped) this.wake(subscription);
      });
    this.lanes.set(subscription, lane);
  }

  /** Delivers `subscription`'s pending deliveries one at a time, in order. */
  private async runLane(subscription: string): Promise<void> {
    const { deliveries, subscriptions } = this.opts;
    for (;;) {
      if (this.stopped) return;
      const head = deliveries.head(subscription);
      if (!head) return;
      const sub = subscriptions.get(subscription);
      if (!sub || !subscriptions.isActive(subscription)) {
        await deliveries.cancelled(head.delivery.id, this.clock.now(), "the subscription ended");
        continue;
      }
      await this.slots.take();
      let outcome: { ok: true; status: number } | { ok: false; error: string };
      try {
        if (this.stopped) return;
        outcome = await this.attempt(sub, head.delivery);
      } finally {
        this.slots.give();
      }
      if (this.stopped && !outcome.ok) return; // an attempt cut short by stop() is not a failure
      const now = this.clock.now();
      if (outcome.ok) {
        await deliveries.delivered(head.delivery.id, now, outcome.status);
        this.log({ event: "delivered", delivery: head.delivery.id, status: outcome.status, failures: head.failures });
        continue;
      }
      await deliveries.attempted(head.delivery.id, now, outcome.error);
      if (now - head.delivery.queuedAt >= this.policy.horizonMs) {
        await deliveries.failed(head.delivery.id, now, `gave up after ${head.failures} attempts: ${outcome.error}`);
        this.log({ event: "failed", delivery: head.delivery.id, failures: head.failures, error: outcome.error });
        continue;
      }
      const delay = backoffDelay(this.policy, head.failures, this.opts.random);
      this.log({
        event: "retry",
        delivery: head.delivery.id,
        failures: head.failures,
        inMs: delay,
        error: outcome.error,
      });
      await this.clock.sleep(delay, this.stopper.signal);
    }
  }

  private signer(sub: Subscription): Webhook {
    let w = this.signers.get(sub.id);
    if (!w) this.signers.set(sub.id, (w = new Webhook(sub.secret)));
    return w;
  }

  private async attempt(
    sub: Subscription,
    d: Delivery,
  ): Promise<{ ok: true; status: number } | { ok: false; error: string }> {
    // Signed now, with the wall time: a receiver checks the timestamp against its own clock.
    const sentAt = new Date();
    const signature = this.signer(sub).sign(d.id, sentAt, d.body);
    try {
      const res = await fetch(sub.url, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          "user-agent": "Custos-Watch/1",
          "webhook-id": d.id,
          "webhook-timestamp": String(Math.floor(sentAt.getTime() / 1000)),
          "webhook-signature": signature,
        },
        body: d.body,
        redirect: "manual", // the signed URL is where it goes, nowhere else
        signal: AbortSignal.any([this.stopper.signal, AbortSignal.timeout(this.opts.timeoutMs ?? 10_000)]),
      });
      await res.arrayBuffer().catch(() => undefined);
      if (res.status >= 200 && res.status < 300) return { ok: true, status: res.status };
      return { ok: false, error: `HTTP ${res.status}` };
    } catch (err) {
      const cause = (err as { cause?: { code?: string } }).cause?.code;
      return { ok: false, error: cause ?? (err as Error).message };
    }
  }
}

export type { DeliveryState };

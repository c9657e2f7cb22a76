/**
 * Per-sender token buckets: each device (or owner) may send `perMinute` messages a minute, with
 * bursts up to `perMinute`. Buckets refill continuously; full buckets are forgotten so memory stays
 * bounded by the senders active in the last minute.
 */
export class RateLimiter {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();
  private readonly ratePerMs: number;
  private lastSweep = 0;

  constructor(
    readonly perMinute: number,
    private readonly now: () => number = Date.now,
  ) {
    if (!(perMinute > 0)) throw new Error("rate limit must be a positive number of messages per minute");
    this.ratePerMs = perMinute / 60_000;
  }

  /**
   * Takes one token for `sender`. Returns 0 when allowed, otherwise the seconds until a token is
   * available (nothing is taken then).
   */
  take(sender: string): number {
    const now = this.now();
    this.sweep(now);
    const bucket = this.buckets.get(sender) ?? { tokens: this.perMinute, at: now };
    bucket.tokens = Math.min(this.perMinute, bucket.tokens + (now - bucket.at) * this.ratePerMs);
    bucket.at = now;
    this.buckets.set(sender, bucket);
    if (bucket.tokens < 1) return Math.max(1, Math.ceil((1 - bucket.tokens) / this.ratePerMs / 1000));
    bucket.tokens -= 1;
    return 0;
  }

  /** Gives back a token taken for a message that was then refused for another reason. */
  refund(sender: string): void {
    const bucket = this.buckets.get(sender);
    if (bucket) bucket.tokens = Math.min(this.perMinute, bucket.tokens + 1);
  }

  private sweep(now: number): void {
    if (now - this.lastSweep < 60_000) return;
    this.lastSweep = now;
    for (const [sender, b] of this.buckets) {
      if (b.tokens + (now - b.at) * this.ratePerMs >= this.perMinute) this.buckets.delete(sender);
    }
  }
}

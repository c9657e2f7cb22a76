/**
 * The guardian's clock for what it learns off chain (a payee's voucher report, a relayer's
 * refusal): the chain's time, moved on by the wall clock since the head was last seen. The rules
 * compare these times with block timestamps, so they must run on the chain's time — also on a
 * development chain whose time was moved forward — and not stand still between blocks.
 */
export class ChainClock {
  private headTimestamp = 0;
  private seenAtMs = 0;

  /** A block the guardian read: its timestamp is the chain's time now. */
  observe(blockTimestamp: number): void {
    if (blockTimestamp < this.headTimestamp) return;
    this.headTimestamp = blockTimestamp;
    this.seenAtMs = Date.now();
  }

  /** Unix seconds on the chain's time (the wall clock until a block was seen). */
  now(): number {
    if (this.seenAtMs === 0) return Math.floor(Date.now() / 1000);
    return this.headTimestamp + Math.floor((Date.now() - this.seenAtMs) / 1000);
  }
}

/** A clock in unix seconds on the chain's time (`ChainClock` in tests, `HeadClock` in the service). */
export interface Clock {
  now(): number | Promise<number>;
}

/**
 * The chain's head time, read from the node at most once a second and moved on by the wall clock
 * in between: what off-chain news is dated by. Not the index's block, which may lag (a guardian
 * restarting, an index catching up): a voucher dated by a lagging clock would look signed early,
 * when the rate allowed less. News dated ahead of the index waits for it (the rules read only what
 * is at or before the evaluated time).
 */
export class HeadClock {
  private readonly clock = new ChainClock();
  private fetchedAtMs = 0;
  private fetching: Promise<void> | undefined;

  constructor(private readonly provider: { getBlock(tag: "latest"): Promise<{ timestamp: number } | null> }) {}

  async now(): Promise<number> {
    if (Date.now() - this.fetchedAtMs >= 1_000) {
      this.fetching ??= this.provider
        .getBlock("latest")
        .then((head) => {
          if (head) this.clock.observe(head.timestamp);
          this.fetchedAtMs = Date.now();
        })
        .finally(() => (this.fetching = undefined));
      await this.fetching;
    }
    return this.clock.now();
  }
}

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

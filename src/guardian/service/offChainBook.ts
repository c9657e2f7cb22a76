/**
 * `OffChainBook`: what a guardian was told off chain and checked — devices' signed position
 * reports, payers' vouchers reported by payees, relayers' refusals of device-signed messages — kept
 * on disk (`offchain.jsonl`, a `DurableLog`) before it is acknowledged, so a restarted guardian
 * evaluates with what it had (a report is not lost to kill -9) and refuses a replayed report across
 * restarts. Bounded per device: the rules read recent history, and a device (or a flood in its
 * name) cannot grow the guardian's memory or disk without bound — the log is compacted at start.
 */
import path from "node:path";
import { DurableLog } from "../../store/durableLog.js";
import type { LocationReport, RelayerRefusal, VoucherSeen } from "../policy/index.js";

/** The log is compacted once it holds this many records more than twice what is kept. */
const COMPACT_ABOVE = 10_000;

/** How many of each kind the book keeps per device (the newest). */
export const KEPT = { positions: 64, vouchers: 256, refusals: 256 } as const;

type VoucherJson = Omit<VoucherSeen, "cumulativeAmount" | "ratePerSecond"> & {
  cumulativeAmount: string;
  ratePerSecond?: string;
};

type BookRecord =
  /** A position report taken from `key` (no `location`: only the key's last seq, in a compacted log). */
  | { op: "position"; device: string; key: string; seq?: string; location?: LocationReport }
  | { op: "voucher"; device: string; id: string; voucher: VoucherJson }
  | { op: "refusal"; device: string; refusal: RelayerRefusal }
  | { op: "feed"; relayer: string; epoch: string; next: number };

interface DeviceBook {
  positions: LocationReport[];
  /** The last report's seq from each of the device's keys (a leaked key's cannot block its next one). */
  lastSeq: Map<string, bigint>;
  vouchers: { id: string; voucher: VoucherSeen }[];
  refusals: RelayerRefusal[];
}

export interface FeedCursor {
  epoch: string;
  next: number;
}

export class OffChainBook {
  private readonly log: DurableLog<BookRecord>;
  private readonly devices = new Map<bigint, DeviceBook>();
  private readonly feeds = new Map<string, FeedCursor>();
  private changes = 0;
  /** Records in the log file (replayed and appended since): compacted when far above what is kept. */
  private records_ = 0;
  /** Records the last compaction kept (the log is compacted again once it is far above). */
  private keptAtCompaction = 0;
  private compacting: Promise<void> | undefined;

  private constructor(
    file: string,
    private readonly compactAbove: number,
  ) {
    this.log = DurableLog.open<BookRecord>(file);
    for (const r of this.log.replayed) this.apply(r);
    this.records_ = this.log.replayed.length;
  }

  /**
   * Opens the book in `dir` (replaying it) and compacts it when it holds much more than it keeps
   * (`compactAbove` records more than twice that; default 10,000).
   */
  static async open(dir: string, opts: { compactAbove?: number } = {}): Promise<OffChainBook> {
    const book = new OffChainBook(path.join(dir, "offchain.jsonl"), opts.compactAbove ?? COMPACT_ABOVE);
    await book.compactIfLarge();
    return book;
  }

  /** Grows with every change: the guardian re-evaluates when it moved. */
  get version(): number {
    return this.changes;
  }

  private device(d: bigint): DeviceBook {
    let b = this.devices.get(d);
    if (!b) this.devices.set(d, (b = { positions: [], lastSeq: new Map(), vouchers: [], refusals: [] }));
    return b;
  }

  private apply(r: BookRecord): void {
    this.changes++;
    if (r.op === "feed") {
      this.feeds.set(r.relayer, { epoch: r.epoch, next: r.next });
      return;
    }
    const b = this.device(BigInt(r.device));
    if (r.op === "position") {
      if (r.seq !== undefined) b.lastSeq.set(r.key, BigInt(r.seq));
      if (r.location) keepNewest(b.positions, r.location, KEPT.positions);
    } else if (r.op === "voucher") {
      const v = r.voucher;
      keepNewest(
        b.vouchers,
        {
          id: r.id,
          voucher: {
            ...v,
            cumulativeAmount: BigInt(v.cumulativeAmount),
            ratePerSecond: v.ratePerSecond === undefined ? undefined : BigInt(v.ratePerSecond),
          },
        },
        KEPT.vouchers,
      );
    } else keepNewest(b.refusals, r.refusal, KEPT.refusals);
  }

  private async add(r: BookRecord): Promise<void> {
    await this.log.append(r); // on disk before it counts (and before the sender hears "accepted")
    this.apply(r);
    this.records_++;
    // A device sending without end (its own vouchers, reports) must not fill the disk: the log is
    // rewritten with what is kept once it holds far more.
    if (this.records_ > 2 * this.keptAtCompaction + this.compactAbove)
      await (this.compacting ??= this.compactIfLarge().finally(() => (this.compacting = undefined)));
  }

  private async compactIfLarge(): Promise<void> {
    const kept = this.records();
    this.keptAtCompaction = kept.length;
    if (this.records_ <= 2 * kept.length + this.compactAbove) return;
    await this.log.rewrite(kept);
    this.records_ = kept.length;
  }

  /** The last position report's `seq` taken from `device`'s `key` (a report must be above it). */
  lastSeq(device: bigint, key: string): bigint | undefined {
    return this.devices.get(device)?.lastSeq.get(key.toLowerCase());
  }

  addPosition(device: bigint, key: string, seq: bigint, location: LocationReport): Promise<void> {
    return this.add({
      op: "position",
      device: device.toString(),
      key: key.toLowerCase(),
      seq: seq.toString(),
      location,
    });
  }

  /** The highest amount seen of `channel`'s vouchers (of the kept ones). */
  highestVoucher(device: bigint, channel: string): bigint | undefined {
    let highest: bigint | undefined;
    for (const { voucher } of this.devices.get(device)?.vouchers ?? [])
      if (voucher.channel === channel && (highest === undefined || voucher.cumulativeAmount > highest))
        highest = voucher.cumulativeAmount;
    return highest;
  }

  hasVoucher(device: bigint, id: string): boolean {
    return this.devices.get(device)?.vouchers.some((v) => v.id === id) ?? false;
  }

  addVoucher(device: bigint, id: string, v: VoucherSeen): Promise<void> {
    const voucher: VoucherJson = {
      ...v,
      cumulativeAmount: v.cumulativeAmount.toString(),
      ratePerSecond: v.ratePerSecond?.toString(),
    };
    return this.add({ op: "voucher", device: device.toString(), id, voucher });
  }

  hasRefusal(device: bigint, id: string, code: string, relayer: string): boolean {
    return (
      this.devices.get(device)?.refusals.some((r) => r.id === id && r.code === code && r.relayer === relayer) ?? false
    );
  }

  addRefusal(device: bigint, refusal: RelayerRefusal): Promise<void> {
    return this.add({ op: "refusal", device: device.toString(), refusal });
  }

  feed(relayer: string): FeedCursor | undefined {
    return this.feeds.get(relayer);
  }

  setFeed(relayer: string, cursor: FeedCursor): Promise<void> {
    return this.add({ op: "feed", relayer, ...cursor });
  }

  /** What the rules read of `device`, oldest first. */
  observations(device: bigint): { locations: LocationReport[]; vouchers: VoucherSeen[]; refusals: RelayerRefusal[] } {
    const b = this.devices.get(device);
    return {
      locations: [...(b?.positions ?? [])],
      vouchers: (b?.vouchers ?? []).map((v) => v.voucher),
      refusals: [...(b?.refusals ?? [])],
    };
  }

  /** The records that rebuild the book as it is (its compacted log). */
  private records(): BookRecord[] {
    const out: BookRecord[] = [];
    for (const [relayer, c] of this.feeds) out.push({ op: "feed", relayer, ...c });
    for (const [d, b] of this.devices) {
      const device = d.toString();
      // The kept reports, then each key's last seq (a replay stays refused).
      for (const location of b.positions)
        out.push({ op: "position", device, key: location.signed?.key ?? "", location });
      for (const [key, seq] of b.lastSeq) out.push({ op: "position", device, key, seq: seq.toString() });
      for (const { id, voucher: v } of b.vouchers)
        out.push({
          op: "voucher",
          device,
          id,
          voucher: {
            ...v,
            cumulativeAmount: v.cumulativeAmount.toString(),
            ratePerSecond: v.ratePerSecond?.toString(),
          },
        });
      for (const refusal of b.refusals) out.push({ op: "refusal", device, refusal });
    }
    return out;
  }

  close(): Promise<void> {
    return this.log.close();
  }
}

function keepNewest<T>(list: T[], item: T, max: number): void {
  list.push(item);
  if (list.length > max) list.splice(0, list.length - max);
}

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

/** How many of each kind the book keeps per device (the newest). */
export const KEPT = { positions: 64, vouchers: 256, refusals: 256 } as const;

type VoucherJson = Omit<VoucherSeen, "cumulativeAmount" | "ratePerSecond"> & {
  cumulativeAmount: string;
  ratePerSecond?: string;
};

type BookRecord =
  /** A position report taken (no `location`: only the last seq, in a compacted log). */
  | { op: "position"; device: string; seq: string; location?: LocationReport }
  | { op: "voucher"; device: string; id: string; voucher: VoucherJson }
  | { op: "refusal"; device: string; refusal: RelayerRefusal }
  | { op: "feed"; relayer: string; epoch: string; next: number };

interface DeviceBook {
  positions: LocationReport[];
  lastSeq?: bigint;
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

  private constructor(file: string) {
    this.log = DurableLog.open<BookRecord>(file);
    for (const r of this.log.replayed) this.apply(r);
  }

  /** Opens the book in `dir` (replaying it) and compacts it when it holds much more than it keeps. */
  static async open(dir: string): Promise<OffChainBook> {
    const book = new OffChainBook(path.join(dir, "offchain.jsonl"));
    const kept = book.records();
    if (book.log.replayed.length > 2 * kept.length + 1_000) await book.log.rewrite(kept);
    return book;
  }

  /** Grows with every change: the guardian re-evaluates when it moved. */
  get version(): number {
    return this.changes;
  }

  private device(d: bigint): DeviceBook {
    let b = this.devices.get(d);
    if (!b) this.devices.set(d, (b = { positions: [], vouchers: [], refusals: [] }));
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
      b.lastSeq = BigInt(r.seq);
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
  }

  /** The last position report's `seq` taken from `device` (a report must be above it). */
  lastSeq(device: bigint): bigint | undefined {
    return this.devices.get(device)?.lastSeq;
  }

  addPosition(device: bigint, seq: bigint, location: LocationReport): Promise<void> {
    return this.add({ op: "position", device: device.toString(), seq: seq.toString(), location });
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
      // Every kept report with the last seq (a replay stays refused), or the seq alone.
      const seq = b.lastSeq?.toString();
      if (seq !== undefined && b.positions.length === 0) out.push({ op: "position", device, seq });
      for (const location of b.positions) out.push({ op: "position", device, seq: seq!, location });
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

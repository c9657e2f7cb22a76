/**
 * The watchtower's loop: it watches the head block (a fast `eth_blockNumber` poll), reads the
 * events of each new block from its source, keeps the state of every shipment that can still
 * become overdue or silent (read from the chain), and, on every new block and on the clock, queues
 * in the outbox each call that the next block will accept — so it lands in the first block after
 * the condition holds. Channels of served payees that a payer started closing are answered with
 * the payee's highest voucher while the challenge period lasts.
 *
 * Everything it sends goes through the agent's outbox: an action is on disk before it is sent, and
 * a restarted tower that decides the same action again finds it there (a public call's id is the
 * call; a voucher's is its signature), so nothing is lost and nothing is sent twice.
 */
import { readFileSync } from "node:fs";
import { ZeroAddress, type Provider } from "ethers";
import { writeFileAtomic } from "../../agent/keystore.js";
import { Backoff, describe } from "../../agent/client.js";
import type { Logger } from "../../agent/log.js";
import type { Outbox } from "../../agent/outbox.js";
import { MeterPayee } from "../../agent/roles/meter.js";
import { callId, type ShipmentCall } from "../../messages/calls.js";
import { messageId } from "../../messages/index.js";
import { CustodyLedger__factory } from "../../../typechain-types/factories/contracts/custody/CustodyLedger__factory.js";
import type { PayeeStores } from "./payees.js";
import { dueCalls, nextBlockTimestamp, stillWatched, type ShipmentState } from "./rules.js";
import type { WatchSource } from "./source.js";

export interface TowerLoopOptions {
  provider: Provider;
  custodyLedger: string;
  source: WatchSource;
  outbox: Outbox;
  payees?: PayeeStores;
  log: Logger;
  /** How often the head is polled (ms). */
  pollMs: number;
  /** The first block whose events are read. */
  fromBlock: number;
  /** Blocks read again on every new head, so that events of a block that replaced an orphaned one are seen. */
  reorgDepth: number;
  /**
   * Where the loop keeps how far it read and what it watches (rewritten atomically after each new
   * block), so that a restart reads on from there instead of from `fromBlock`.
   */
  cursorFile?: string;
}

/** What the cursor file holds. */
interface Cursor {
  custodyLedger: string;
  scanned: number;
  shipments: string[];
  closing: [channel: string, closesAt: string][];
}

export interface TowerStats {
  /** The latest block seen, and its timestamp (s). */
  head: number;
  headTimestamp: number;
  /** Shipments that can still become overdue or silent. */
  shipments: number;
  /** Channels of served payees in their challenge period. */
  closing: number;
  /** Actions this process queued in the outbox (a restart counts again what the outbox already had). */
  queued: { overdue: number; silent: number; vouchers: number };
  /** Why the loop stopped on its own: its disk could not persist (the outbox, the cursor). */
  halted?: string;
}

/** A failure to persist (the outbox, the cursor): the tower stops rather than act on what it cannot keep. */
class Halt extends Error {
  override readonly name = "TowerHalt";
}

/** Runs a write to disk; its failure becomes a {@link Halt}. */
async function persisting<T>(what: string, fn: () => T | Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw new Halt(`${what}: ${describe(err)}`);
  }
}

export class TowerLoop {
  private readonly shipments = new Map<string, ShipmentState>();
  /** Channels closing, with the end of their challenge period (s). */
  private readonly closing = new Map<string, bigint>();
  private readonly queued = new Set<string>();
  /** Where the latest event of each shipment of the last scan's range was (see `Touched.shipments`). */
  private lastEvents = new Map<string, string>();
  private readonly ledger;
  private head: { number: number; timestamp: bigint; seenAt: number } | undefined;
  private scanned: number;
  /** No block before this one is read: `fromBlock` on a first start, none after a resumed one. */
  private floor: number;
  private lastPayeeCheck = 0;
  private stopping = false;
  private loop: Promise<void> | undefined;
  private wake: (() => void) | undefined;
  private readonly counts = { overdue: 0, silent: 0, vouchers: 0 };
  private halted: string | undefined;

  constructor(private readonly o: TowerLoopOptions) {
    this.ledger = CustodyLedger__factory.connect(o.custodyLedger, o.provider);
    this.scanned = o.fromBlock - 1;
    this.floor = o.fromBlock;
  }

  start(): void {
    this.loop ??= this.run();
  }

  async stop(): Promise<void> {
    this.stopping = true;
    this.wake?.();
    await this.loop;
  }

  stats(): TowerStats {
    return {
      head: this.head?.number ?? -1,
      headTimestamp: Number(this.head?.timestamp ?? -1n),
      shipments: this.shipments.size,
      closing: this.closing.size,
      queued: { ...this.counts },
      ...(this.halted === undefined ? {} : { halted: this.halted }),
    };
  }

  private async run(): Promise<void> {
    const backoff = new Backoff({ baseMs: 250, capMs: 10_000 });
    let resumed = this.o.cursorFile === undefined;
    while (!this.stopping && !resumed) {
      try {
        await this.resume();
        resumed = true;
      } catch (err) {
        const pause = backoff.next();
        this.o.log.warn("watchtower: the node failed at start; trying again", {
          error: describe(err),
          retryInMs: pause,
        });
        await this.sleep(pause);
      }
    }
    while (!this.stopping) {
      let pause = this.o.pollMs;
      try {
        await this.tick();
        backoff.reset();
      } catch (err) {
        if (err instanceof Halt) {
          this.halted = err.message;
          this.o.log.error("watchtower: stopped, a write to disk failed", { error: err.message });
          return;
        }
        pause = backoff.next();
        this.o.log.warn("watchtower: the node failed; trying again", { error: describe(err), retryInMs: pause });
      }
      await this.sleep(pause);
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.wake = () => {
        clearTimeout(timer);
        resolve();
      };
      if (this.stopping) this.wake();
    });
  }

  /** Picks up where the cursor file says the last run was: its block, and the states of its shipments now. */
  private async resume(): Promise<void> {
    let text: string;
    try {
      text = readFileSync(this.o.cursorFile!, "utf8");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return;
      throw err;
    }
    const cursor = JSON.parse(text) as Cursor;
    if (cursor.custodyLedger.toLowerCase() !== this.o.custodyLedger.toLowerCase()) {
      this.o.log.warn("watchtower: the cursor file is of another CustodyLedger; reading from the start", {
        file: this.o.cursorFile,
      });
      return;
    }
    const head = await this.o.provider.getBlockNumber();
    for (const id of cursor.shipments) await this.refresh(id, head);
    for (const [channel, closesAt] of cursor.closing) this.closing.set(channel, BigInt(closesAt));
    this.scanned = Math.min(cursor.scanned, head);
    this.floor = 0;
  }

  private async saveCursor(): Promise<void> {
    if (!this.o.cursorFile) return;
    const cursor: Cursor = {
      custodyLedger: this.o.custodyLedger,
      scanned: this.scanned,
      shipments: [...this.shipments.keys()],
      closing: [...this.closing].map(([channel, closesAt]) => [channel, closesAt.toString()]),
    };
    await persisting("the cursor", () => writeFileAtomic(this.o.cursorFile!, JSON.stringify(cursor) + "\n", 0o644));
  }

  /** One look at the head: a new block is read and evaluated; no new block, the clock is. */
  private async tick(): Promise<void> {
    const number = await this.o.provider.getBlockNumber();
    if (!this.head || number !== this.head.number) {
      const block = await this.o.provider.getBlock(number);
      if (!block) return; // the node answered the number before it serves the block: next poll
      await this.scan(number);
      this.head = { number, timestamp: BigInt(block.timestamp), seenAt: Date.now() };
      await this.answerCloses(true);
    } else {
      await this.answerCloses(false);
    }
    await this.markDue();
  }

  /** Reads the events up to `head` (the last `reorgDepth` blocks again) and refreshes what they touched. */
  private async scan(head: number): Promise<void> {
    const from = Math.max(this.floor, this.scanned + 1 - this.o.reorgDepth);
    if (from > head) return;
    const touched = await this.o.source.read(from, head);
    // Blocks read again (the reorg window) cost a read only for what changed in them.
    for (const [id, where] of touched.shipments) if (this.lastEvents.get(id) !== where) await this.refresh(id, head);
    this.lastEvents = touched.shipments;
    for (const c of touched.closes) if (!touched.closed.has(c.channel)) this.closing.set(c.channel, c.closesAt);
    for (const channel of touched.closed) this.closing.delete(channel);
    this.scanned = head;
    await this.saveCursor();
  }

  /** Reads a shipment's state at block `head`; keeps it while it can still become due. */
  private async refresh(id: string, head: number): Promise<void> {
    const v = await this.ledger.shipmentOf(id, { blockTag: head });
    // No such shipment (an orphaned block's, or a cursor of a chain that was reset): nothing to watch.
    if (v.custodian === ZeroAddress) {
      this.shipments.delete(id);
      return;
    }
    const s: ShipmentState = {
      id,
      deadline: BigInt(v.deadline),
      lastCheckpointAt: BigInt(v.lastCheckpointAt),
      maxSilence: BigInt(v.maxSilence),
      overdue: v.overdue,
      silent: v.silent,
      delivered: v.delivered,
    };
    if (stillWatched(s)) this.shipments.set(id, s);
    else this.shipments.delete(id);
  }

  /** Queues every call the next block will accept. */
  private async markDue(): Promise<void> {
    const head = this.head;
    if (!head) return;
    const next = nextBlockTimestamp(head.timestamp, Date.now() - head.seenAt);
    for (const s of this.shipments.values()) {
      for (const call of dueCalls(s, next)) await this.queueCall(call, head);
    }
  }

  private async queueCall(call: ShipmentCall, head: { number: number; timestamp: bigint }): Promise<void> {
    const id = callId(call);
    if (this.queued.has(id)) return;
    const entry = await persisting("the outbox", () => this.o.outbox.addCall(call));
    this.queued.add(id);
    this.counts[call.type === "MarkOverdue" ? "overdue" : "silent"]++;
    this.o.log.info("watchtower: queued", {
      call: call.type,
      shipment: call.shipment,
      head: head.number,
      headTimestamp: head.timestamp.toString(),
      state: entry.state,
    });
  }

  /**
   * Presents the best voucher of every closing channel a served payee sells over, while the
   * challenge period lasts: on every new block, and once a second on the clock (a payee may take a
   * higher voucher meanwhile). A claim must land before `closesAt` (`block.timestamp < closesAt`).
   */
  private async answerCloses(newBlock: boolean): Promise<void> {
    const payees = this.o.payees;
    const head = this.head;
    if (!payees || !head || this.closing.size === 0) return;
    if (!newBlock && Date.now() - this.lastPayeeCheck < 1_000) return;
    this.lastPayeeCheck = Date.now();
    const next = nextBlockTimestamp(head.timestamp, Date.now() - head.seenAt);
    for (const [channel, closesAt] of this.closing) {
      if (next >= closesAt) {
        this.o.log.warn("watchtower: the challenge period of a closing channel has ended", { channel });
        this.closing.delete(channel);
        continue;
      }
      let m: ReturnType<PayeeStores["bestVoucher"]>;
      try {
        m = payees.bestVoucher(channel);
      } catch (err) {
        // One unreadable book must not keep the tower from its other work.
        this.o.log.error("watchtower: cannot read the payees' best voucher", { channel, error: describe(err) });
        continue;
      }
      if (!m) continue;
      const id = messageId(m);
      if (this.queued.has(id)) continue;
      const amount = BigInt(m.message.cumulativeAmount as string);
      await persisting("the outbox", () => this.o.outbox.add(m, { ref: MeterPayee.claimRef(channel, amount) }));
      this.queued.add(id);
      this.counts.vouchers++;
      this.o.log.info("watchtower: answering a unilateral close with the payee's best voucher", {
        channel,
        amount: amount.toString(),
        closesAt: closesAt.toString(),
        head: head.number,
      });
    }
  }
}

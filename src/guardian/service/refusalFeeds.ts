/**
 * `RefusalFeeds`: reads relayers' feeds of refused device-signed messages (`GET /v1/refusals`,
 * src/relayer/README.md) for the `refusalBurst` rule. A relayer's word is not evidence: each item's
 * signed message is checked (`SignedMessageCheck`) and counted for the device whose key signed it;
 * an item that does not check is dropped (and logged). Times: an item's age on the relayer's clock
 * (its `at` against the answer's `now`) taken back from the guardian's chain-aligned clock, so a
 * relayer's clock skew or a chain whose time was moved does not shift a burst in or out of the window.
 * The cursor per relayer is kept in the book; a relayer restarted (another `epoch`) is read from its start.
 *
 * What a relayer is still trusted for: that it refused the message (a signature proves the device
 * signed it, not that anyone sent it). A lying relayer could list a device's landed messages —
 * public on chain — as refused. Bounded here: an honest relayer refuses a message past its deadline
 * as `expired` before it checks the signature (never in the feed), so an item whose deadline had
 * passed when it is dated to have been refused is a lie and is dropped; and a message type without a
 * deadline (a voucher, a checkpoint) is not counted — so a relayer can only list messages signed
 * within their deadline's reach (an hour, typically) of now. The evidence names the relayer; a
 * guardian reads relayers its operator trusts, and independent guardians should read different ones.
 */
import type { Logger } from "../../agent/log.js";
import { deadlineOf } from "../../messages/index.js";
import type { ChainClock } from "./clock.js";
import type { OffChainBook } from "./offChainBook.js";
import type { SignedMessageCheck } from "./signedMessages.js";

interface FeedItem {
  seq: number;
  at: number;
  code: string;
  id: string;
  message: unknown;
}

interface FeedPage {
  epoch: string;
  next: number;
  now?: number;
  items: FeedItem[];
}

const PAGE = 1000;
/** `deadlineOf` of a message type without a deadline. */
const NO_DEADLINE = (1n << 256n) - 1n;
/** Clocks (the relayer's, the chain's) may disagree this much. */
const CLOCK_SLACK_S = 60n;
/** Pages read from one relayer per poll: a relayer with a long feed is read over several polls. */
const PAGES_PER_POLL = 5;

export class RefusalFeeds {
  readonly stats = { taken: 0, dropped: 0, stale: 0, failures: 0 };

  constructor(
    private readonly o: {
      relayers: string[];
      check: SignedMessageCheck;
      book: OffChainBook;
      clock: ChainClock;
      log: Logger;
      timeoutMs?: number;
    },
  ) {}

  /** Reads every relayer's new refusals; a relayer that fails is logged and read again next time. */
  async poll(): Promise<void> {
    await Promise.all(
      this.o.relayers.map((url) =>
        this.read(url).catch((err: Error) => {
          this.stats.failures++;
          this.o.log.warn("guardian: a relayer's refusal feed cannot be read; trying again", {
            relayer: url,
            error: err.message,
          });
        }),
      ),
    );
  }

  private async read(relayer: string): Promise<void> {
    const base = relayer.replace(/\/+$/, "");
    for (let page = 0; page < PAGES_PER_POLL; page++) {
      const cursor = this.o.book.feed(relayer);
      const after = cursor?.next ?? 0;
      const reply = await fetch(`${base}/v1/refusals?after=${after}&limit=${PAGE}`, {
        signal: AbortSignal.timeout(this.o.timeoutMs ?? 5_000),
      });
      if (!reply.ok) throw new Error(`GET /v1/refusals: ${reply.status} ${(await reply.text()).slice(0, 200)}`);
      const body = (await reply.json()) as FeedPage;
      if (typeof body.epoch !== "string" || !Array.isArray(body.items)) throw new Error("not a refusal feed");
      if (cursor && cursor.epoch !== body.epoch) {
        // The relayer restarted: its sequence numbers start again.
        await this.o.book.setFeed(relayer, { epoch: body.epoch, next: 0 });
        continue;
      }
      const now = this.o.clock.now();
      for (const item of body.items) await this.take(relayer, item, now, body.now);
      const next = body.items.length ? body.items[body.items.length - 1].seq : after;
      if (!cursor || next !== after) await this.o.book.setFeed(relayer, { epoch: body.epoch, next });
      if (body.items.length < PAGE) return;
    }
  }

  private async take(relayer: string, item: FeedItem, now: number, relayerNow: number | undefined): Promise<void> {
    const checked = await this.o.check.check(item.message);
    if (!checked.ok) {
      this.stats.dropped++;
      this.o.log.warn("guardian: a relayer's refusal does not check; dropped", {
        relayer,
        seq: item.seq,
        field: checked.field,
        reason: checked.reason,
      });
      return;
    }
    const code = String(item.code);
    if (this.o.book.hasRefusal(checked.device, checked.id, code, relayer)) return;
    const age = typeof relayerNow === "number" && typeof item.at === "number" ? Math.max(0, relayerNow - item.at) : 0;
    const deadline = deadlineOf(checked.message);
    if (deadline === NO_DEADLINE || deadline + CLOCK_SLACK_S < BigInt(now - age)) {
      // Not a refusal a relayer could have made after checking the signature (or not bounded in time).
      this.stats.stale++;
      this.o.log.debug("guardian: a relayer's refusal of a message past its deadline, or without one; not counted", {
        relayer,
        seq: item.seq,
        type: checked.message.type,
      });
      return;
    }
    await this.o.book.addRefusal(checked.device, {
      at: now - age,
      id: checked.id,
      code,
      relayer,
      message: checked.message,
    });
    this.stats.taken++;
  }
}

/**
 * `RefusalFeeds`: reads relayers' feeds of refused device-signed messages (`GET /v1/refusals`,
 * src/relayer/README.md) for the `refusalBurst` rule. A relayer's word is not evidence: each item's
 * signed message is checked (`SignedMessageCheck`) and counted for the device whose key signed it;
 * an item that does not check is dropped (and logged). Times: an item's age on the relayer's clock
 * (its `at` against the answer's `now`) taken back from the guardian's chain-aligned clock, so a
 * relayer's clock skew or a chain whose time was moved does not shift a burst in or out of the window.
 * The cursor per relayer is kept in the book; a relayer restarted (another `epoch`) is read from its start.
 *
 * Only what the device's key did counts: a message already spent on chain (its nonce or sequence
 * number used — a replay of a landed message, which anyone can send from the chain's calldata) is
 * not counted, so nobody can get a device quarantined by replaying it. What remains are messages
 * the key signed that never landed: a clone racing the device, a key flooding the relayers.
 *
 * What a relayer is still trusted for: that it refused the message (a signature proves the device
 * signed it, not that anyone sent it). Bounded here: an honest relayer refuses a message past its
 * deadline as `expired` before it checks the signature (never in the feed), so an item whose
 * deadline had passed when it is dated to have been refused is a lie and is dropped; a message type
 * without a deadline (a voucher, a checkpoint) is not counted. The evidence names the relayer; a
 * guardian reads relayers its operator trusts, and independent guardians should read different ones.
 *
 * It reads on its own loop, not the voting loop's: a slow or flooded relayer delays only itself.
 */
import type { Provider } from "ethers";
import type { Logger } from "../../agent/log.js";
import {
  checkShape,
  deadlineOf,
  isSpent,
  type ContractAddresses,
  type SignedDeviceMessage,
} from "../../messages/index.js";
import type { Clock } from "./clock.js";
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
  readonly stats = { taken: 0, dropped: 0, stale: 0, spent: 0, failures: 0 };
  private running = false;
  private loop: Promise<void> | undefined;
  private wake: (() => void) | undefined;

  constructor(
    private readonly o: {
      relayers: string[];
      check: SignedMessageCheck;
      book: OffChainBook;
      clock: Clock;
      log: Logger;
      /** Chain reads for "already spent" (the suite's addresses). */
      provider: Provider;
      addresses: ContractAddresses;
      timeoutMs?: number;
      /** How often each relayer is read (ms). Default 1000. */
      pollMs?: number;
    },
  ) {}

  start(): void {
    this.running = true;
    this.loop = (async () => {
      while (this.running) {
        await this.poll();
        await new Promise<void>((resolve) => {
          this.wake = resolve;
          setTimeout(resolve, this.o.pollMs ?? 1_000);
        });
      }
    })();
  }

  async stop(): Promise<void> {
    this.running = false;
    this.wake?.();
    await this.loop;
  }

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
      if (typeof body.epoch !== "string" || !Array.isArray(body.items) || !safe(body.now ?? 0))
        throw new Error("not a refusal feed");
      if (cursor && cursor.epoch !== body.epoch) {
        // The relayer restarted: its sequence numbers start again.
        await this.o.book.setFeed(relayer, { epoch: body.epoch, next: 0 });
        continue;
      }
      const now = await this.o.clock.now();
      for (const item of body.items) {
        if (!safe(item?.seq) || item.seq <= after) throw new Error(`item seq ${item?.seq} is not above ${after}`);
        await this.take(relayer, item, now, body.now);
      }
      const next = body.items.length ? body.items[body.items.length - 1].seq : after;
      if (!cursor || next !== after) await this.o.book.setFeed(relayer, { epoch: body.epoch, next });
      if (body.items.length < PAGE) return;
    }
  }

  private async take(relayer: string, item: FeedItem, now: number, relayerNow: number | undefined): Promise<void> {
    const drop = (field: string, reason: string) => {
      this.stats.dropped++;
      this.o.log.warn("guardian: a relayer's refusal does not check; dropped", {
        relayer,
        seq: item.seq,
        field,
        reason,
      });
    };
    // Cheapest first: the shape, then the deadline, then the chain.
    let m: SignedDeviceMessage;
    try {
      m = checkShape(item.message);
    } catch (err) {
      return drop("message", (err as Error).message);
    }
    if (!safe(item.at)) return drop("at", "not a time");
    const age = typeof relayerNow === "number" ? Math.max(0, relayerNow - item.at) : 0;
    const deadline = deadlineOf(m);
    if (deadline === NO_DEADLINE || deadline + CLOCK_SLACK_S < BigInt(now - age)) {
      // Not a refusal a relayer could have made after checking the signature (or not bounded in time).
      this.stats.stale++;
      return;
    }
    let spent: boolean;
    try {
      spent = await isSpent(m, this.o.provider, this.o.addresses);
    } catch (err) {
      return drop("type", (err as Error).message);
    }
    if (spent) {
      // A replay of what landed: anyone can send that; it says nothing about the device's key.
      this.stats.spent++;
      return;
    }
    const checked = await this.o.check.check(m);
    if (!checked.ok) return drop(checked.field, checked.reason);
    const code = String(item.code);
    if (this.o.book.hasRefusal(checked.device, checked.id, code, relayer)) return;
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

const safe = (n: unknown): n is number => Number.isSafeInteger(n) && (n as number) >= 0;

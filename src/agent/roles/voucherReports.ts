/**
 * A payee reports its payers' vouchers to guardians. Vouchers stay off chain until claimed, so only
 * the payee sees how fast a payer signs; guardians need that to judge a payer "signing faster than
 * its metered rate allows" (src/guardian/policy/rules/overRate.ts). Each channel's latest accepted
 * voucher is POSTed to every guardian's `/vouchers` as the device message that would claim it
 * (`MeterPayee.voucherMessage`, with the channel's terms); each guardian verifies it itself.
 *
 * A guardian needs the latest amount, not every voucher: a channel is reported at most once per
 * interval, the newest voucher replacing one not sent yet, so a payer signing every second is one
 * request per interval per guardian. Nothing here is awaited by the payee's answer to its payer.
 */
import type { SignedDeviceMessage } from "../../messages/index.js";
import { silentLogger, type Logger } from "../log.js";

/** Default least time between two reports of one channel (ms). */
export const DEFAULT_REPORT_INTERVAL_MS = 10_000;
/** Default time one request to a guardian may take (ms). */
export const DEFAULT_REPORT_TIMEOUT_MS = 5_000;

export interface VoucherReportsOptions {
  /** Where the reports come from: the channel's highest accepted voucher (a `MeterPayee`). */
  payee: { voucherMessage(channel: string): SignedDeviceMessage | undefined };
  /** The guardians' base URLs (http or https); each gets `POST <url>/vouchers`. */
  guardians: string[];
  /** Least time between two reports of one channel (ms; default 10 s). */
  intervalMs?: number;
  /** How long one request may take (ms; default 5 s); also what `close` waits at most. */
  timeoutMs?: number;
  logger?: Logger;
}

/** What became of the requests so far (a bench or a test reads it). */
export interface VoucherReportCounts {
  /** Requests sent. */
  sent: number;
  /** Answered 2xx: accepted, or already known to the guardian. */
  taken: number;
  /** Answered 4xx: that voucher is not sent to that guardian again. */
  refused: number;
  /** Unreachable, timed out, or answered 5xx / 408 / 429: sent again at the channel's next turn. */
  failed: number;
}

interface ChannelReports {
  /** Per guardian, the highest amount it took or refused: it is not sent that one again. */
  done: Map<string, bigint>;
  /** Something to send: a newer voucher, or a guardian that failed. */
  due: boolean;
  /** When the last turn started (ms since the epoch; 0: never). */
  lastAt: number;
  timer?: NodeJS.Timeout;
  running?: Promise<void>;
}

type Outcome = "taken" | "refused" | "failed";

export class VoucherReports {
  readonly counts: VoucherReportCounts = { sent: 0, taken: 0, refused: 0, failed: 0 };
  private readonly channels = new Map<string, ChannelReports>();
  private readonly guardians: string[];
  private readonly intervalMs: number;
  private readonly timeoutMs: number;
  private readonly logger: Logger;
  /** Guardians last found unreachable: warned about once, until they answer again. */
  private readonly down = new Set<string>();
  /** Cuts the requests still going when `close`'s time is up. */
  private readonly stopper = new AbortController();
  private closing: Promise<void> | undefined;

  constructor(private readonly opts: VoucherReportsOptions) {
    // A trailing slash would make `<url>//vouchers`, which a router may not match.
    this.guardians = [...new Set(opts.guardians.map((g) => g.replace(/\/+$/, "")))];
    this.intervalMs = opts.intervalMs ?? DEFAULT_REPORT_INTERVAL_MS;
    this.timeoutMs = opts.timeoutMs ?? DEFAULT_REPORT_TIMEOUT_MS;
    this.logger = (opts.logger ?? silentLogger).child({ part: "voucher-reports" });
  }

  /**
   * Notes that `channel` holds a newly accepted voucher, once it is on disk (after `accept`'s
   * `persisted`). Returns at once: the report goes at the channel's next turn, at most one per
   * interval, and carries whatever voucher is the channel's latest by then.
   */
  accepted(channel: string): void {
    if (this.closing) return;
    const id = channel.toLowerCase();
    let c = this.channels.get(id);
    if (!c) this.channels.set(id, (c = { done: new Map(), due: false, lastAt: 0 }));
    c.due = true;
    this.schedule(id, c);
  }

  /**
   * Stops reporting: sends what is still due once more, waiting for it at most `boundMs` (default:
   * the request timeout), then gives up on what is still going (a shutdown must not hang on a guardian).
   */
  close(boundMs = this.timeoutMs): Promise<void> {
    this.closing ??= (async () => {
      for (const c of this.channels.values()) {
        clearTimeout(c.timer);
        c.timer = undefined;
      }
      const bound = setTimeout(() => this.stopper.abort(new Error("the payee is stopping")), boundMs);
      await Promise.all(
        [...this.channels].map(async ([id, c]) => {
          await c.running;
          // Time up while the turn in flight went on: nothing more is tried.
          if (c.due && !this.stopper.signal.aborted) await this.turn(id, c);
        }),
      );
      clearTimeout(bound);
    })();
    return this.closing;
  }

  private schedule(id: string, c: ChannelReports): void {
    // A turn going now reschedules itself when it ends, if something came in meanwhile.
    if (c.timer || c.running || this.closing) return;
    const wait = Math.max(0, c.lastAt + this.intervalMs - Date.now());
    c.timer = setTimeout(() => {
      c.timer = undefined;
      c.running = this.turn(id, c).finally(() => {
        c.running = undefined;
        if (c.due) this.schedule(id, c);
      });
    }, wait);
    // Pending reports alone do not keep a process alive: `close` is what flushes them.
    c.timer.unref();
  }

  /** Sends the channel's latest voucher to every guardian that has not had it. */
  private async turn(id: string, c: ChannelReports): Promise<void> {
    c.due = false;
    c.lastAt = Date.now();
    // The payee's highest voucher now: accepted, and on disk or being written (a newer one whose
    // `accepted` call is a moment away); either way one its payer signed, which is what guardians judge.
    let message: SignedDeviceMessage | undefined;
    try {
      message = this.opts.payee.voucherMessage(id);
    } catch (err) {
      this.logger.warn("cannot report the channel's voucher", { channel: id, error: (err as Error).message });
      return;
    }
    if (!message) return;
    const amount = BigInt(String(message.message.cumulativeAmount));
    const body = JSON.stringify(message);
    const targets = this.guardians.filter((g) => (c.done.get(g) ?? -1n) < amount);
    const outcomes = await Promise.all(targets.map((g) => this.post(g, body, id, amount)));
    outcomes.forEach((outcome, i) => {
      this.counts[outcome]++;
      if (outcome === "failed") c.due = true;
      else c.done.set(targets[i], amount);
    });
  }

  private async post(guardian: string, body: string, channel: string, amount: bigint): Promise<Outcome> {
    this.counts.sent++;
    const fields = { guardian, channel, amount };
    let res: Response;
    let answer: { accepted?: boolean; duplicate?: boolean; field?: string; reason?: string };
    try {
      res = await fetch(`${guardian}/vouchers`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body,
        // A redirect would turn the POST into a GET elsewhere: the URL is to be fixed instead.
        redirect: "error",
        signal: AbortSignal.any([this.stopper.signal, AbortSignal.timeout(this.timeoutMs)]),
      });
      answer = (await res.json().catch(() => ({}))) as typeof answer;
    } catch (err) {
      this.unreachable(guardian, fields, err as Error);
      return "failed";
    }
    if (this.down.delete(guardian)) this.logger.info("guardian answers again", { guardian });
    if (res.ok) {
      this.logger.debug("voucher reported", { ...fields, duplicate: answer.duplicate === true });
      return "taken";
    }
    // Busy or a timeout on its side: the same voucher may pass later.
    const retry = res.status >= 500 || res.status === 408 || res.status === 429;
    this.logger.warn(
      retry ? "guardian could not take the voucher; trying again at the next report" : "guardian refused the voucher",
      { ...fields, status: res.status, reason: answer.reason, field: answer.field },
    );
    return retry ? "failed" : "refused";
  }

  private unreachable(guardian: string, fields: Record<string, unknown>, err: Error): void {
    const cause = (err.cause as Error | undefined)?.message;
    const error = cause ? `${err.message} (${cause})` : err.message;
    if (this.stopper.signal.aborted)
      this.logger.warn("voucher not reported: the payee stopped first", { ...fields, error });
    // One warning while it stays down, not one per channel and interval.
    else if (this.down.has(guardian)) this.logger.debug("guardian still unreachable", { ...fields, error });
    else {
      this.down.add(guardian);
      this.logger.warn("guardian unreachable; trying again at the next report", { ...fields, error });
    }
  }
}

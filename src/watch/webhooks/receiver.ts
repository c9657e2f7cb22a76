/**
 * The receiver library for subscribers: checks a delivery with the `standardwebhooks` package (the
 * HMAC-SHA256 signature with the subscription's secret, over the delivery id, the timestamp and the
 * raw body; a timestamp more than 5 minutes off the receiver's clock is refused), and drops a
 * delivery it has already handled (by its webhook-id, the delivery id, in a pluggable seen-store).
 * Ready-made: a Node `http` request handler and a fastify plugin.
 *
 *   const receiver = new WebhookReceiver({ secret: process.env.CUSTOS_WEBHOOK_SECRET! });
 *   http.createServer(receiver.nodeHandler(async (event) => { … })).listen(3000);
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { FastifyPluginAsync } from "fastify";
import { Webhook, WebhookVerificationError } from "standardwebhooks";
import type { AlertBody } from "./delivery.js";

/** Why a delivery is refused. */
export type RefusalReason =
  | "missing_headers" // no webhook-id, webhook-timestamp or webhook-signature
  | "bad_timestamp" // webhook-timestamp is not a number
  | "timestamp_too_old" // more than 5 minutes in the past: a replay of an old delivery, or a skewed clock
  | "timestamp_too_new" // more than 5 minutes in the future
  | "bad_signature" // not signed with this secret over this id, timestamp and body: forged, tampered, or the wrong secret
  | "invalid_body"; // signed, but not a JSON delivery of the watch

const REASONS: Record<string, RefusalReason> = {
  "Missing required headers": "missing_headers",
  "Invalid Signature Headers": "bad_timestamp",
  "Message timestamp too old": "timestamp_too_old",
  "Message timestamp too new": "timestamp_too_new",
  "No matching signature found": "bad_signature",
};

const EXPLAINED: Record<RefusalReason, string> = {
  missing_headers: "the webhook-id, webhook-timestamp and webhook-signature headers are required",
  bad_timestamp: "webhook-timestamp must be unix seconds",
  timestamp_too_old: "webhook-timestamp is more than 5 minutes old (a replay, or this server's clock is off)",
  timestamp_too_new: "webhook-timestamp is more than 5 minutes ahead (this server's clock is off)",
  bad_signature:
    "webhook-signature does not match: the body or headers were altered, or it was not signed with this subscription's secret",
  invalid_body: "the body is not a Custos watch delivery",
};

/** A verified delivery. */
export interface WebhookEvent {
  /** The delivery id (webhook-id): the same on every repeat of one delivery. */
  id: string;
  /** The alert kind, or "alert.retracted". */
  type: string;
  timestamp: string;
  data: AlertBody["data"];
}

export type VerifyResult =
  { ok: true; event: WebhookEvent; duplicate: boolean } | { ok: false; reason: RefusalReason; message: string };

/** Remembers the delivery ids already handled. Replace it with a shared one (Redis, SQL) across processes. */
export interface SeenStore {
  has(id: string): boolean | Promise<boolean>;
  add(id: string): void | Promise<void>;
}

/**
 * The default seen-store: the last `limit` ids in memory (oldest forgotten first). The dispatcher
 * repeats a delivery only after a crash or a lost answer, so recent ids are the ones that matter.
 */
export class MemorySeenStore implements SeenStore {
  private readonly ids = new Set<string>();
  constructor(private readonly limit = 100_000) {}
  has(id: string): boolean {
    return this.ids.has(id);
  }
  add(id: string): void {
    this.ids.add(id);
    if (this.ids.size > this.limit) this.ids.delete(this.ids.values().next().value!);
  }
}

export interface ReceiverOptions {
  /** The subscription's secret (`whsec_…`), as `POST /subscriptions` returned it. */
  secret: string;
  seen?: SeenStore;
}

/** What a handler answers; the dispatcher retries anything but a 2xx. */
export interface HandlerAnswer {
  status: number;
  body: Record<string, unknown>;
}

const MAX_BODY = 1 << 20;

export class WebhookReceiver {
  private readonly webhook: Webhook;
  readonly seen: SeenStore;

  constructor(opts: ReceiverOptions) {
    this.webhook = new Webhook(opts.secret);
    this.seen = opts.seen ?? new MemorySeenStore();
  }

  /** Checks a delivery: `rawBody` exactly as received, and its headers. Does not mark it seen. */
  async verify(
    rawBody: string | Buffer,
    headers: Record<string, string | string[] | undefined>,
  ): Promise<VerifyResult> {
    const flat: Record<string, string> = {};
    for (const [k, v] of Object.entries(headers))
      if (v !== undefined) flat[k.toLowerCase()] = Array.isArray(v) ? v[0] : v;
    let body: unknown;
    try {
      body = this.webhook.verify(rawBody, flat);
    } catch (err) {
      if (!(err instanceof WebhookVerificationError) && !(err instanceof SyntaxError)) throw err;
      const reason: RefusalReason =
        err instanceof SyntaxError ? "invalid_body" : (REASONS[err.message] ?? "bad_signature");
      return { ok: false, reason, message: EXPLAINED[reason] };
    }
    const b = body as Partial<AlertBody> | undefined;
    if (!b || typeof b.type !== "string" || typeof b.data !== "object" || b.data === null)
      return { ok: false, reason: "invalid_body", message: EXPLAINED.invalid_body };
    const id = flat["webhook-id"];
    return {
      ok: true,
      event: { id, type: b.type, timestamp: String(b.timestamp), data: b.data },
      duplicate: await this.seen.has(id),
    };
  }

  /**
   * Verifies, drops a duplicate (200, not handled again), runs `onEvent`, and only once it
   * succeeded marks the id seen: a delivery whose handling failed (500) is retried by the watch.
   */
  async handle(
    rawBody: string | Buffer,
    headers: Record<string, string | string[] | undefined>,
    onEvent: (event: WebhookEvent) => void | Promise<void>,
  ): Promise<HandlerAnswer> {
    const result = await this.verify(rawBody, headers);
    if (!result.ok)
      return {
        status: result.reason === "invalid_body" ? 400 : 401,
        body: { error: result.reason, message: result.message },
      };
    if (result.duplicate) return { status: 200, body: { ok: true, duplicate: true } };
    try {
      await onEvent(result.event);
    } catch (err) {
      return { status: 500, body: { error: "handler_failed", message: (err as Error).message } };
    }
    await this.seen.add(result.event.id);
    return { status: 200, body: { ok: true } };
  }

  /** A Node `http` request handler for deliveries (any path; POST only). */
  nodeHandler(onEvent: (event: WebhookEvent) => void | Promise<void>) {
    return (req: IncomingMessage, res: ServerResponse): void => {
      const reply = (a: HandlerAnswer) => {
        res.writeHead(a.status, { "content-type": "application/json" });
        res.end(JSON.stringify(a.body));
      };
      if (req.method !== "POST")
        return reply({ status: 405, body: { error: "method_not_allowed", message: "POST only" } });
      const chunks: Buffer[] = [];
      let size = 0;
      req.on("data", (c: Buffer) => {
        size += c.length;
        if (size > MAX_BODY) {
          reply({ status: 413, body: { error: "body_too_large", message: `over ${MAX_BODY} bytes` } });
          req.destroy();
        } else chunks.push(c);
      });
      req.on("end", () => {
        if (size > MAX_BODY) return;
        this.handle(Buffer.concat(chunks), req.headers, onEvent).then(reply, (err: Error) =>
          reply({ status: 500, body: { error: "handler_failed", message: err.message } }),
        );
      });
    };
  }

  /**
   * A fastify plugin with one route, `POST <path>` (default "/"), that takes the raw body (the
   * signature is over the bytes sent, not over re-serialised JSON).
   */
  fastifyPlugin(onEvent: (event: WebhookEvent) => void | Promise<void>, path = "/"): FastifyPluginAsync {
    return async (app) => {
      app.removeAllContentTypeParsers();
      app.addContentTypeParser("*", { parseAs: "buffer", bodyLimit: MAX_BODY }, (_req, body, done) => done(null, body));
      app.post(path, async (req, reply) => {
        const a = await this.handle(req.body as Buffer, req.headers, onEvent);
        return reply.code(a.status).send(a.body);
      });
    };
  }
}

/**
 * What the webhook tests share: a subscription request signed the way a subscriber's wallet signs
 * it, and a fastify server on loopback with the routes mounted.
 */
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import Fastify, { type FastifyPluginAsync } from "fastify";
import { keccak256, toUtf8Bytes } from "ethers";
import { ALERT_KINDS, alertId, type Alert, type AlertFeed, type AlertKind } from "../../src/watch/alerts.js";
import { WebhookReceiver, type WebhookEvent } from "../../src/watch/webhooks/receiver.js";
import { newSecret } from "../../src/watch/webhooks/subscriptions.js";
import type { Subscription } from "../../src/watch/webhooks/subscription.js";

export {
  signSubscription as signRequest,
  signUnsubscription as signUnsubscribe,
  type UnsignedSubscription as Unsigned,
} from "../../src/watch/webhooks/subscriber.js";

/** A fastify server on 127.0.0.1 with `plugin` mounted; its base URL and a JSON client. */
export async function serve(plugin: FastifyPluginAsync) {
  const app = Fastify();
  await app.register(plugin);
  const url = await app.listen({ host: "127.0.0.1", port: 0 });
  const call = async (method: string, path: string, body?: unknown) => {
    const res = await fetch(url + path, {
      method,
      headers: body === undefined ? {} : { "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: res.status, body: (await res.json()) as Record<string, any> };
  };
  return { url, call, close: () => app.close() };
}

/**
 * The feed the dispatcher reads in these tests: a list of alerts the test controls (appends a
 * burst, removes an orphaned block's alerts to play a reorg) and the block "the index" reached.
 */
export class MemoryFeed implements AlertFeed {
  alerts: Alert[] = [];
  indexedBlock = 0n;
  reads = 0;
  async alertsFrom(fromBlock: bigint) {
    this.reads++;
    return { indexedBlock: this.indexedBlock, alerts: this.alerts.filter((a) => BigInt(a.blockNumber) >= fromBlock) };
  }
  /** Adds alerts and moves the index to the highest block among them. */
  push(...alerts: Alert[]): void {
    this.alerts.push(...alerts);
    for (const a of alerts) if (BigInt(a.blockNumber) > this.indexedBlock) this.indexedBlock = BigInt(a.blockNumber);
  }
}

/** The feed served over HTTP (`GET /alerts?from=N`), for a dispatcher in another process. */
export function serveFeed(feed: AlertFeed, onRequest: () => void = () => {}) {
  const server = createServer(async (req, res) => {
    onRequest();
    const from = BigInt(new URL(req.url!, "http://x").searchParams.get("from") ?? "0");
    const { indexedBlock, alerts } = await feed.alertsFrom(from);
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ indexedBlock: indexedBlock.toString(), alerts }));
  });
  return new Promise<{ url: string; close: () => Promise<void> }>((resolve) =>
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as AddressInfo;
      resolve({
        url: `http://127.0.0.1:${port}`,
        close: () => {
          server.closeAllConnections();
          return new Promise((r) => server.close(() => r()));
        },
      });
    }),
  );
}

/** The client of {@link serveFeed}. */
export function httpFeed(url: string): AlertFeed {
  return {
    async alertsFrom(fromBlock) {
      const res = await fetch(`${url}/alerts?from=${fromBlock}`);
      if (!res.ok) throw new Error(`feed answered ${res.status}`);
      const body = (await res.json()) as { indexedBlock: string; alerts: Alert[] };
      return { indexedBlock: BigInt(body.indexedBlock), alerts: body.alerts };
    },
  };
}

let txCounter = 0;

/** An alert of `kind` in `block` about `device` of `owner`. */
export function makeAlert(o: {
  block: number;
  owner: string;
  device?: string;
  kind?: AlertKind;
  hash?: string;
  logIndex?: number;
}): Alert {
  const kind = o.kind ?? "device.quarantined";
  const txHash = keccak256(toUtf8Bytes(`tx ${++txCounter} ${Math.random()}`));
  const logIndex = o.logIndex ?? 0;
  return {
    id: alertId(31337, txHash, logIndex, kind),
    kind,
    chainId: 31337,
    blockNumber: String(o.block),
    blockHash: o.hash ?? keccak256(toUtf8Bytes(`block ${o.block}`)),
    txHash,
    logIndex,
    timestamp: 1_800_000_000 + o.block,
    subjects: { owners: [o.owner.toLowerCase()], device: o.device ?? "7" },
    data: { reason: "reported stolen" },
  };
}

/** A subscription as the service would have stored it (the chain checks are subscriptions.test.ts's). */
export function subscriptionFor(o: {
  owner: string;
  url: string;
  scope?: Subscription["scope"];
  target?: string;
  events?: AlertKind[];
}): Subscription {
  return {
    id: keccak256(toUtf8Bytes(`sub ${o.url} ${Math.random()}`)),
    owner: o.owner,
    scope: o.scope ?? "owner",
    target: o.target ?? o.owner,
    url: o.url,
    events: o.events ?? [...ALERT_KINDS],
    secret: newSecret(),
    fromBlock: "0",
    createdAt: Date.now(),
  };
}

export interface Received {
  headers: Record<string, string>;
  raw: string;
  status: number;
  event?: WebhookEvent;
  duplicate?: boolean;
}

/**
 * A subscriber's HTTP receiver on loopback, built with the receiver library: records every request
 * (with what the library made of it), and can go down and come back on the same port.
 */
export async function startReceiver(secret: string, opts: { hold?: (r: Received) => Promise<void> | void } = {}) {
  const receiver = new WebhookReceiver({ secret });
  const requests: Received[] = [];
  const events: WebhookEvent[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", async () => {
      const raw = Buffer.concat(chunks).toString();
      const headers = Object.fromEntries(Object.entries(req.headers).map(([k, v]) => [k, String(v)]));
      const verdict = await receiver.verify(raw, headers);
      const r: Received = { headers, raw, status: 0 };
      requests.push(r);
      await opts.hold?.(r);
      const answer = await receiver.handle(raw, headers, (e) => void events.push(e));
      r.status = answer.status;
      if (verdict.ok) [r.event, r.duplicate] = [verdict.event, verdict.duplicate];
      res.writeHead(answer.status, { "content-type": "application/json" });
      res.end(JSON.stringify(answer.body));
    });
  });
  const listen = (port: number) => new Promise<void>((resolve) => server.listen(port, "127.0.0.1", () => resolve()));
  await listen(0);
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}/hook`,
    receiver,
    requests,
    /** The deliveries the library let through to the handler: each once. */
    events,
    async down(): Promise<void> {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
    up: () => listen(port),
    close: async () => {
      server.closeAllConnections();
      if (server.listening) await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/**
 * A subscriber's endpoint that listens before it knows its secret (the URL is part of what the
 * owner signs; the secret comes back from the watch): until `use(secret)` every delivery gets a 503,
 * which the watch retries.
 */
export async function lateReceiver() {
  let receiver: WebhookReceiver | undefined;
  const events: WebhookEvent[] = [];
  const refused: string[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", async () => {
      if (!receiver) return void res.writeHead(503).end();
      const headers = Object.fromEntries(Object.entries(req.headers).map(([k, v]) => [k, String(v)]));
      const answer = await receiver.handle(Buffer.concat(chunks).toString(), headers, (e) => void events.push(e));
      if (answer.status >= 400) refused.push(JSON.stringify(answer.body));
      res.writeHead(answer.status, { "content-type": "application/json" }).end(JSON.stringify(answer.body));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`,
    events,
    refused,
    use: (secret: string) => (receiver = new WebhookReceiver({ secret })),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** Polls `probe` until it returns something (every 50 ms), or fails naming `what` after `timeoutMs`. */
export async function until<T>(what: string, probe: () => T | undefined, timeoutMs = 60_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const got = probe();
    if (got !== undefined) return got;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * `startWatch(options)`: the whole watch in one process and one HTTP front — the indexer (Ponder,
 * a child process), the signed webhooks (subscriptions and the durable dispatcher, fed by the
 * index), and the watchtower (when it has a funded key to act with). The front serves the index's
 * API (`/graphql`, `/sql/*`, `/watch/*`, proxied to Ponder) beside the subscription routes, so a
 * client needs one URL.
 */
import { existsSync, mkdirSync } from "node:fs";
import path from "node:path";
import Fastify, { type FastifyInstance } from "fastify";
import httpProxy from "@fastify/http-proxy";
import fastifyStatic from "@fastify/static";
import { startIndexer, type Indexer, type IndexerAddresses } from "./indexer/start.js";
import { startWebhooks, type WebhooksHandle } from "./webhooks/index.js";
import { startTower, type TowerHandle } from "./tower/index.js";
import type { Logger } from "../agent/log.js";

const CONSOLE_DIST = path.join(import.meta.dirname, "..", "..", "console", "dist");

export interface WatchAddresses extends IndexerAddresses {
  /** The registry's P-256 verifier (P-256 payers' vouchers in the payees' books). */
  p256Verifier?: string;
}

export interface WatchOptions {
  rpcUrl: string;
  chainId: number;
  addresses: WatchAddresses;
  /** The block the suite was deployed in (0: scan from genesis). */
  startBlock?: number;
  host?: string;
  /** The front's port (0: any free one). */
  port: number;
  /** The indexer's own port, on loopback behind the front (0: any free one). */
  indexerPort?: number;
  /** Everything the watch keeps: PGlite's files, subscriptions, deliveries, the tower's outbox. */
  dataDir: string;
  /** PostgreSQL instead of PGlite. */
  databaseUrl?: string;
  /** The tower's funded account; without it the tower does not run (nothing is sent). */
  towerKey?: string;
  /** Data directories of `custos-agent meter serve` payees whose unilateral closes the tower answers. */
  payeeStores?: string[];
  /** Ponder's poll interval (ms). */
  pollingInterval?: number;
  /** What `startWatch` waits for: the backfill done ("ready", default) or the API up ("serving"). */
  waitFor?: "ready" | "serving";
  /** Where every part logs (the agent's JSON-lines logger); Ponder's own lines at debug, its warnings as warnings. */
  log: Logger;
}

export interface Watch {
  /** The front's base URL. */
  url: string;
  indexer: Indexer;
  webhooks: WebhooksHandle;
  tower?: TowerHandle;
  stop(): Promise<void>;
}

export async function startWatch(o: WatchOptions): Promise<Watch> {
  mkdirSync(o.dataDir, { recursive: true });
  const started: { stop(): Promise<void> }[] = [];
  const stopAll = async () => {
    for (const part of started.reverse()) await part.stop().catch(() => undefined);
  };
  try {
    const { freePort } = await import("./port.js");
    const indexer = await startIndexer({
      rpcUrl: o.rpcUrl,
      chainId: o.chainId,
      addresses: o.addresses,
      startBlock: o.startBlock,
      port: o.indexerPort || (await freePort()),
      databaseUrl: o.databaseUrl,
      dataDir: path.join(o.dataDir, "index"),
      pollingInterval: o.pollingInterval,
      waitFor: o.waitFor,
      log: ponderLines(o.log.child({ part: "indexer" })),
    });
    started.push(indexer);
    const webhooksLog = o.log.child({ part: "webhooks" });
    const webhooks = await startWebhooks({
      feed: indexer.client,
      chain: { rpcUrl: o.rpcUrl, addresses: o.addresses, chainId: o.chainId },
      dataDir: path.join(o.dataDir, "webhooks"),
      // Ponder polls the node every 200 ms: an alert waits for at most one more poll here.
      pollIntervalMs: 200,
      log: (event) => webhooksLog.info(String(event.event ?? event.msg ?? "webhooks"), event),
    });
    started.push(webhooks);
    let tower: TowerHandle | undefined;
    if (o.towerKey) {
      tower = await startTower({
        rpcUrl: o.rpcUrl,
        addresses: o.addresses,
        chainId: o.chainId,
        sender: { key: o.towerKey },
        dataDir: path.join(o.dataDir, "tower"),
        payeeStores: o.payeeStores,
        fromBlock: o.startBlock,
        log: o.log.child({ part: "tower" }),
      });
      started.push(tower);
    }
    const app = await front(indexer, webhooks);
    await app.listen({ host: o.host ?? "127.0.0.1", port: o.port });
    started.push({ stop: () => app.close() });
    const address = app.server.address();
    const port = typeof address === "object" && address ? address.port : o.port;
    return { url: `http://${o.host ?? "127.0.0.1"}:${port}`, indexer, webhooks, tower, stop: stopAll };
  } catch (err) {
    await stopAll();
    throw err;
  }
}

/** The one HTTP front: the index's API proxied as it is, the subscription routes beside it. */
async function front(indexer: Indexer, webhooks: WebhooksHandle): Promise<FastifyInstance> {
  const app = Fastify({ logger: false });
  for (const prefix of ["/graphql", "/sql", "/watch"])
    await app.register(httpProxy, { upstream: indexer.url, prefix, rewritePrefix: prefix });
  await app.register(webhooks.routes);
  // The console, once built (`npm run console:build`), on the same origin as the API it reads.
  if (existsSync(path.join(CONSOLE_DIST, "index.html")))
    await app.register(fastifyStatic, { root: CONSOLE_DIST, prefix: "/", wildcard: false });
  return app;
}

/** Ponder's JSON log lines (pino levels: 40 warn, 50 error) into the watch's logger. */
function ponderLines(log: Logger): (line: string) => void {
  return (line) => {
    let entry: { level?: number; msg?: string } & Record<string, unknown>;
    try {
      entry = JSON.parse(line) as typeof entry;
    } catch {
      log.debug(line);
      return;
    }
    const { level = 30, msg = "", time: _time, ...fields } = entry;
    // Ponder's advice for hosted RPC providers says nothing about a node of one's own.
    if (level >= 50) log.error(msg, fields);
    else if (level >= 40 && !msg.startsWith("Detected public RPC URL")) log.warn(msg, fields);
    else log.debug(msg, fields);
  };
}

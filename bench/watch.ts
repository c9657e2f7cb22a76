/**
 * `npm run bench:watch`: the watch's figures, written to `bench/results/watch.json`.
 *
 * - Backfill: a chain of `CUSTOS_BENCH_DEVICES` (100,000) claimed devices and
 *   `CUSTOS_BENCH_SHIPMENTS` (10,000) checkpointed shipments on anvil (bench/watch/chain.ts), then
 *   a fresh indexer (PGlite) from block 0 to the head: the suite's events per second, with Ponder's
 *   own split between fetching from the node and indexing, which names the bottleneck.
 * - Queries on that index: a device, a shipment's full history, an owner's fleet of all its
 *   devices (first page with the total, and every page), p50 and p99.
 * - Alert latency: anvil with one-second blocks and the whole watch (`startWatch`); an owner's
 *   devices reported stolen and released, 200 alerts; from the moment each block is first seen at
 *   the node (polled every 10 ms) to its webhook received and verified by the receiver library.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { JsonRpcProvider, Wallet } from "ethers";
import { startAnvil, freePort, type HardhatNode } from "../test/helpers/node.js";
import { buildWatchChain, type WatchChain } from "./watch/chain.js";
import { startIndexer } from "../src/watch/indexer/start.js";
import { startWatch } from "../src/watch/watch.js";
import { subscribe } from "../src/watch/webhooks/subscriber.js";
import { WebhookReceiver } from "../src/watch/webhooks/receiver.js";
import { createLogger } from "../src/agent/log.js";
import { DeviceRegistry__factory } from "../typechain-types/index.js";

const DEVICES = Number(process.env.CUSTOS_BENCH_DEVICES ?? 100_000);
const SHIPMENTS = Number(process.env.CUSTOS_BENCH_SHIPMENTS ?? 10_000);
const ALERTS = Number(process.env.CUSTOS_BENCH_ALERTS ?? 200);
const QUERIES = 200;
const RESULTS = path.join(import.meta.dirname, "results", "watch.json");

const log = (line: string) => process.stderr.write(line + "\n");
const tmp = () => mkdtempSync(path.join(tmpdir(), "custos-bench-watch-"));

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

function summary(samples: number[]) {
  const sorted = [...samples].sort((a, b) => a - b);
  return { p50: round(percentile(sorted, 50)), p99: round(percentile(sorted, 99)), n: samples.length };
}

const round = (x: number) => Math.round(x * 10) / 10;

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t = performance.now();
  await fn();
  return performance.now() - t;
}

async function getJson(url: string): Promise<unknown> {
  const res = await fetch(url);
  if (!res.ok) throw new Error(`${url}: ${res.status} ${await res.text()}`);
  return res.json();
}

/** Ponder's backfill log lines: how long fetching from the node took, and how long indexing took. */
function ponderSplit(lines: string[]) {
  let fetchMs = 0;
  let indexMs = 0;
  for (const line of lines) {
    let e: { msg?: string; duration?: number };
    try {
      e = JSON.parse(line) as typeof e;
    } catch {
      continue;
    }
    if (typeof e.duration !== "number") continue;
    if (e.msg?.startsWith("Finished fetching backfill")) fetchMs += e.duration;
    else if (e.msg?.startsWith("Indexed block range")) indexMs += e.duration;
  }
  return { fetchMs: Math.round(fetchMs), indexMs: Math.round(indexMs) };
}

async function backfillAndQueries(): Promise<Record<string, number | string>> {
  const node = await startAnvil(undefined, 0);
  const dir = tmp();
  try {
    const provider = new JsonRpcProvider(node.url, 31337n, { staticNetwork: true });
    const started = Date.now();
    const chain: WatchChain = await buildWatchChain(provider, { devices: DEVICES, shipments: SHIPMENTS, log });
    log(
      `bench watch: chain built in ${((Date.now() - started) / 1000).toFixed(0)} s: ${chain.events} events, head ${chain.headBlock}`,
    );
    const lines: string[] = [];
    const t0 = performance.now();
    const indexer = await startIndexer({
      rpcUrl: node.url,
      chainId: 31337,
      addresses: chain.suite,
      port: await freePort(),
      dataDir: dir,
      waitFor: "serving",
      readyTimeoutMs: 600_000,
      log: (line) => lines.push(line),
    });
    const serving = performance.now();
    try {
      await indexer.waitForBlock(chain.headBlock, 1_800_000);
      // From spawning Ponder to the head indexed: its build and start-up (seconds) included, since
      // Ponder serves its API only once the backfill is done.
      const startup = (serving - t0) / 1000;
      const seconds = (performance.now() - t0) / 1000;
      const split = ponderSplit(lines);
      const rate = Math.round(chain.events / seconds);
      log(
        `bench watch: backfill of ${chain.events} events in ${seconds.toFixed(1)} s: ${rate} events/s (fetch ${split.fetchMs} ms, index ${split.indexMs} ms)`,
      );

      const pick = <T>(xs: T[], i: number) => xs[(i * 7919) % xs.length];
      const device: number[] = [];
      const shipment: number[] = [];
      const fleetPage: number[] = [];
      const fleetAll: number[] = [];
      for (let i = 0; i < QUERIES; i++) {
        device.push(await timed(() => getJson(`${indexer.url}/watch/devices/${pick(chain.deviceIds, i)}`)));
        shipment.push(await timed(() => getJson(`${indexer.url}/watch/shipments/${pick(chain.shipmentIds, i)}`)));
      }
      // An owner's fleet of 10,000 devices: the first 10,000 of the bench owner's, in ten keyset
      // pages of 1,000 (as a client walks a fleet), and the first page of 100 with the total.
      const fleetUrl = `${indexer.url}/watch/owners/${chain.fleetOwner}/devices`;
      const FLEET = 10_000;
      for (let i = 0; i < 20; i++) {
        fleetPage.push(await timed(() => getJson(`${fleetUrl}?limit=100`)));
        fleetAll.push(
          await timed(async () => {
            let got = 0;
            let after: string | undefined;
            while (got < FLEET) {
              const query = after === undefined ? "" : `&after=${after}`;
              const page = (await getJson(`${fleetUrl}?limit=1000${query}`)) as { devices: { id: string }[] };
              if (page.devices.length === 0) throw new Error(`fleet: ${got} devices, not ${FLEET}`);
              got += page.devices.length;
              after = page.devices[page.devices.length - 1].id;
            }
          }),
        );
      }
      const q = {
        device: summary(device),
        shipment: summary(shipment),
        fleetPage: summary(fleetPage),
        fleetAll: summary(fleetAll),
      };
      log(`bench watch: queries ${JSON.stringify(q)}`);
      return {
        "watch.backfill_events_per_s": rate,
        "watch.backfill_events": chain.events,
        "watch.backfill_s": round(seconds),
        "watch.indexer_startup_s": round(startup),
        "watch.backfill_fetch_ms": split.fetchMs,
        "watch.backfill_index_ms": split.indexMs,
        "watch.backfill_bottleneck":
          split.indexMs >= split.fetchMs
            ? "indexing (Ponder's handlers and database writes)"
            : "fetching from the node (eth_getLogs, blocks)",
        "watch.chain_devices": chain.deviceIds.length,
        "watch.chain_shipments": chain.shipmentIds.length,
        "watch.query_device_p50_ms": q.device.p50,
        "watch.query_device_p99_ms": q.device.p99,
        "watch.query_shipment_p50_ms": q.shipment.p50,
        "watch.query_shipment_p99_ms": q.shipment.p99,
        "watch.query_fleet_page_p99_ms": q.fleetPage.p99,
        "watch.query_fleet_all_p50_ms": q.fleetAll.p50,
        "watch.query_fleet_all_p99_ms": q.fleetAll.p99,
        "watch.query_p99_ms": Math.max(q.device.p99, q.shipment.p99, q.fleetAll.p99),
      };
    } finally {
      await indexer.stop();
    }
  } finally {
    await node.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Records when each block is first seen at the node: the start of an alert's latency. */
function watchBlocks(provider: JsonRpcProvider) {
  const seen = new Map<number, number>();
  let stopped = false;
  const loop = (async () => {
    while (!stopped) {
      const n = await provider.getBlockNumber().catch(() => undefined);
      if (n !== undefined)
        for (let b = Math.max(0, n - 5); b <= n; b++) if (!seen.has(b)) seen.set(b, performance.now());
      await new Promise((r) => setTimeout(r, 10));
    }
  })();
  return { seen, stop: async () => ((stopped = true), await loop) };
}

async function alertLatency(): Promise<Record<string, number>> {
  const node: HardhatNode = await startAnvil(undefined, 1);
  const dir = tmp();
  const provider = new JsonRpcProvider(node.url, 31337n, {
    staticNetwork: true,
    cacheTimeout: -1,
    pollingInterval: 100,
  });
  try {
    // A fleet of devices for one owner (the chain builder, small), then the whole watch on it.
    await node.send("evm_setAutomine", [true]); // while the fleet is built
    const devices = Math.ceil(ALERTS / 2);
    const chain = await buildWatchChain(provider, { devices, shipments: 0, log });
    log("bench watch: alert fleet built");
    await node.send("evm_setAutomine", [false]);
    await node.send("evm_setIntervalMining", [1]);
    const watch = await startWatch({
      rpcUrl: node.url,
      chainId: 31337,
      addresses: { ...chain.suite },
      port: 0,
      dataDir: dir,
      log: createLogger({ level: "silent" }),
    });
    const blocks = watchBlocks(provider);
    const arrivals: number[] = [];
    let receiver: WebhookReceiver | undefined;
    const server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", async () => {
        const at = performance.now();
        if (!receiver) return void res.writeHead(503).end();
        const headers = Object.fromEntries(Object.entries(req.headers).map(([k, v]) => [k, String(v)]));
        const answer = await receiver.handle(Buffer.concat(chunks).toString(), headers, (e) => {
          const block = Number(e.data.alert!.blockNumber);
          const start = blocks.seen.get(block);
          if (start !== undefined) arrivals.push(at - start);
        });
        res.writeHead(answer.status).end(JSON.stringify(answer.body));
      });
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    try {
      const fleet = new Wallet("0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d", provider);
      const now = (await provider.getBlock("latest"))!.timestamp;
      const sub = await subscribe(
        watch.url,
        fleet,
        { chainId: 31337n, verifyingContract: chain.suite.registry },
        {
          owner: fleet.address.toLowerCase(),
          scope: "owner",
          target: fleet.address.toLowerCase(),
          url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`,
          events: ["device.quarantined", "device.released"],
          nonce: String(Date.now()),
          deadline: String(now + 3600),
        },
      );
      receiver = new WebhookReceiver({ secret: sub.secret });
      const registry = DeviceRegistry__factory.connect(chain.suite.registry, fleet);
      let nonce = await provider.getTransactionCount(fleet.address, "pending");
      // Four alerts a block: theft reports, then (for the first half) the releases, spread over the blocks.
      for (let i = 0; i < ALERTS; i++) {
        const id = chain.deviceIds[i % devices];
        const tx =
          i < devices ? registry.reportStolen(id, { nonce: nonce++ }) : registry.release(id, { nonce: nonce++ });
        await tx;
        if (i % 4 === 3) {
          const target = (await provider.getBlockNumber()) + 1;
          while ((await provider.getBlockNumber()) < target) await new Promise((r) => setTimeout(r, 50));
        }
      }
      const end = Date.now() + 60_000;
      while (arrivals.length < ALERTS && Date.now() < end) await new Promise((r) => setTimeout(r, 100));
      if (arrivals.length < ALERTS) throw new Error(`alert latency: ${arrivals.length} of ${ALERTS} alerts arrived`);
      const s = summary(arrivals);
      log(`bench watch: alert latency over ${s.n} alerts, one-second blocks: p50 ${s.p50} ms, p99 ${s.p99} ms`);
      return { "watch.alert_latency_p50_ms": s.p50, "watch.alert_latency_p99_ms": s.p99, "watch.alert_latency_n": s.n };
    } finally {
      server.closeAllConnections();
      server.close();
      await blocks.stop();
      await watch.stop();
    }
  } finally {
    provider.destroy();
    await node.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

const only = process.argv[2];
const figures: Record<string, number | string> = {};
if (only !== "alerts") Object.assign(figures, await backfillAndQueries());
if (only !== "backfill") Object.assign(figures, await alertLatency());
const previous = existsSync(RESULTS) ? (JSON.parse(readFileSync(RESULTS, "utf8")) as Record<string, unknown>) : {};
writeFileSync(
  RESULTS,
  JSON.stringify({ ...previous, ...figures, "watch.measured_at": new Date().toISOString() }, null, 2) + "\n",
);
log(`bench watch: wrote ${path.relative(process.cwd(), RESULTS)}`);
process.exit(0);

/**
 * `npm run bench:console`: the console's figures, written to `bench/results/console.json`.
 *
 * - `console.fleet_page_ms`: an owner of `CUSTOS_BENCH_DEVICES` (10,000) claimed devices
 *   (bench/watch/chain.ts on anvil), the indexer synced to the head; then, in Chromium, from
 *   navigation to a usable fleet page — the owner's total shown and the first page of devices in
 *   the table. Median of `RUNS` fresh pages (each a new browser context: no cache).
 * - `console.bundle_gzip_bytes`: the built app (`console/dist`: its JavaScript, CSS and HTML), each
 *   file gzipped at the default level, summed.
 */
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { gzipSync } from "node:zlib";
import { JsonRpcProvider } from "ethers";
import { chromium } from "playwright-core";
import { startAnvil, freePort } from "../../test/helpers/node.js";
import { buildWatchChain } from "../watch/chain.js";
import { startIndexer } from "../../src/watch/indexer/start.js";
import { DIST, buildConsole, serveConsole } from "../../test/console/serve.js";

const DEVICES = Number(process.env.CUSTOS_BENCH_DEVICES ?? 10_000);
const RUNS = 7;
const RESULTS = path.join(import.meta.dirname, "..", "results", "console.json");
const log = (line: string) => process.stderr.write(line + "\n");

function bundleGzipBytes(): number {
  let total = 0;
  const walk = (dir: string) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (/\.(js|css|html)$/.test(e.name)) total += gzipSync(readFileSync(p)).length;
    }
  };
  walk(DIST);
  return total;
}

async function fleetPageMs(): Promise<number> {
  const node = await startAnvil(undefined, 0);
  try {
    const provider = new JsonRpcProvider(node.url, 31337n, { staticNetwork: true });
    const chain = await buildWatchChain(provider, { devices: DEVICES, shipments: 0, log });
    log(`bench console: ${DEVICES} devices claimed, head ${chain.headBlock}`);
    const indexer = await startIndexer({
      rpcUrl: node.url,
      chainId: 31337,
      addresses: chain.suite,
      port: await freePort(),
      dataDir: mkdtempSync(path.join(tmpdir(), "custos-bench-console-")),
      waitFor: "serving",
      readyTimeoutMs: 600_000,
    });
    const server = await serveConsole(indexer.url);
    const browser = await chromium.launch({
      executablePath: "/usr/bin/chromium",
      args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"],
    });
    try {
      await indexer.waitForBlock(chain.headBlock, 1_800_000);
      const owner = chain.fleetOwner.toLowerCase();
      const url = `${server.url}/?${new URLSearchParams({ owner, rpc: node.url, registry: chain.suite.registry })}#/`;
      const samples: number[] = [];
      for (let i = 0; i < RUNS; i++) {
        const context = await browser.newContext();
        const page = await context.newPage();
        const t0 = performance.now();
        await page.goto(url);
        await page.waitForSelector(`[data-testid=total]:text("${DEVICES}")`, { timeout: 60_000 });
        await page.waitForSelector("table:has(caption:text('Devices')) tbody tr");
        samples.push(performance.now() - t0);
        await context.close();
      }
      samples.sort((a, b) => a - b);
      log(`bench console: fleet page samples (ms) ${samples.map((s) => s.toFixed(0)).join(", ")}`);
      return Math.round(samples[Math.floor(samples.length / 2)]);
    } finally {
      await browser.close();
      await server.close();
      await indexer.stop();
    }
  } finally {
    await node.stop();
  }
}

buildConsole();
const results: Record<string, number> = existsSync(RESULTS) ? JSON.parse(readFileSync(RESULTS, "utf8")) : {};
results["console.bundle_gzip_bytes"] = bundleGzipBytes();
results["console.fleet_page_ms"] = await fleetPageMs();
mkdirSync(path.dirname(RESULTS), { recursive: true });
writeFileSync(RESULTS, JSON.stringify(results, null, 2) + "\n");
log(`bench console: ${JSON.stringify(results)}`);

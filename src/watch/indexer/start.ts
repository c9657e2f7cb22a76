/**
 * Starts the indexer: `ponder start` on this folder's Ponder app as a child process (its own process
 * group, so `stop()` ends it and anything it spawned), with its settings in the environment.
 * PGlite under `dataDir` unless a PostgreSQL URL is given (`databaseUrl`, or `DATABASE_URL`).
 */
import { spawn } from "node:child_process";
import { mkdirSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { ADDRESS_VARIABLES, readIndexerEnv } from "./env.js";
import { checkChainMark } from "./chainMark.js";
import { IndexClient } from "./client.js";

const APP_DIR = import.meta.dirname;

export interface IndexerAddresses {
  registry: string;
  guardianQuorum: string;
  locationBeacons: string;
  lockAccess: string;
  custodyLedger: string;
  paymentChannels: string;
}

export interface IndexerOptions {
  rpcUrl: string;
  chainId: number;
  /** The suite's addresses (a `SuiteAddresses` from src/deploy/suite.ts fits). */
  addresses: IndexerAddresses;
  /** The block the suite was deployed in (0 by default: everything is scanned). */
  startBlock?: number;
  port: number;
  /** PostgreSQL connection string; else (undefined) `DATABASE_URL`; else, or when null, PGlite under `dataDir`. */
  databaseUrl?: string | null;
  /** Where PGlite keeps its files. */
  dataDir: string;
  /** The database schema Ponder writes to ("custos" by default); one live indexer per schema. */
  schema?: string;
  /** How often Ponder polls the node, ms (≥ 100; 200 by default). */
  pollingInterval?: number;
  /**
   * What to do when `dataDir` holds the PGlite index of another chain (a development node restarted
   * with the same chain id): "refuse" (the default) or "reset" (delete it and index this chain).
   */
  onOtherChain?: "refuse" | "reset";
  /** Receives Ponder's log lines (JSON); dropped by default. */
  log?: (line: string) => void;
  /**
   * What `startIndexer` waits for: "ready" (the default), the backfill done (Ponder's `/ready`); or
   * "serving", the API up while the backfill runs (a long chain's backfill can take minutes).
   */
  waitFor?: "ready" | "serving";
  /** How long to wait for that before giving up, ms (120,000 by default). */
  readyTimeoutMs?: number;
}

export interface Indexer {
  /** The API's base URL, e.g. http://127.0.0.1:42069. */
  url: string;
  client: IndexClient;
  /** Resolves once the index has reached block `n` (rejects after `timeoutMs`, 60,000 by default). */
  waitForBlock(n: bigint | number, timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

const KEEP_LOG_LINES = 60;

export async function startIndexer(opts: IndexerOptions): Promise<Indexer> {
  if (!Number.isSafeInteger(opts.port) || opts.port <= 0 || opts.port > 65535)
    throw new Error(`startIndexer: port must be a TCP port (1–65535), not ${opts.port}`);
  const databaseUrl = opts.databaseUrl === null ? undefined : (opts.databaseUrl ?? process.env.DATABASE_URL);
  const pgliteDir = path.resolve(opts.dataDir, "pglite");
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    CUSTOS_WATCH_RPC_URL: opts.rpcUrl,
    CUSTOS_WATCH_CHAIN_ID: String(opts.chainId),
    CUSTOS_WATCH_START_BLOCK: String(opts.startBlock ?? 0),
    CUSTOS_WATCH_POLLING_MS: String(opts.pollingInterval ?? 200),
    CUSTOS_WATCH_DATA_DIR: pgliteDir,
    DATABASE_SCHEMA: opts.schema ?? "custos",
    PONDER_TELEMETRY_DISABLED: "true",
  };
  delete env.DATABASE_URL;
  if (databaseUrl) env.DATABASE_URL = databaseUrl;
  for (const [key, name] of Object.entries(ADDRESS_VARIABLES))
    env[name] = opts.addresses[key as keyof IndexerAddresses];
  // The app reads the same settings: refuse bad ones here, by name, before a process is spawned.
  readIndexerEnv(env);
  if (!databaseUrl) {
    const reset = opts.onOtherChain === "reset";
    await checkChainMark({
      dataDir: opts.dataDir,
      indexDir: pgliteDir,
      rpcUrl: opts.rpcUrl,
      chainId: opts.chainId,
      reset,
    });
    mkdirSync(pgliteDir, { recursive: true });
  }

  // Ponder's CLI sits beside its entry point (the package exports no path to it).
  const bin = path.join(path.dirname(fileURLToPath(import.meta.resolve("ponder"))), "bin", "ponder.js");
  const args = [
    bin,
    "--root",
    APP_DIR,
    "--log-format",
    "json",
    "start",
    "--port",
    String(opts.port),
    "--hostname",
    "127.0.0.1",
  ];
  const child = spawn(process.execPath, args, { cwd: APP_DIR, env, detached: true, stdio: ["ignore", "pipe", "pipe"] });
  const recent: string[] = [];
  const onLine = (chunk: Buffer) => {
    for (const line of chunk.toString().split("\n")) {
      if (!line) continue;
      recent.push(line);
      if (recent.length > KEEP_LOG_LINES) recent.shift();
      opts.log?.(line);
    }
  };
  child.stdout!.on("data", onLine);
  child.stderr!.on("data", onLine);
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  let gone = false;
  void exited.then(() => (gone = true));
  const killGroup = (signal: NodeJS.Signals) => {
    try {
      if (child.pid) process.kill(-child.pid, signal);
    } catch {
      // already gone
    }
  };
  const onExit = () => killGroup("SIGKILL");
  process.once("exit", onExit);

  const stop = async () => {
    process.off("exit", onExit);
    if (gone) return;
    // SIGTERM lets Ponder close its database cleanly (PGlite's files stay consistent); SIGKILL if it hangs.
    killGroup("SIGTERM");
    const timer = setTimeout(() => killGroup("SIGKILL"), 5_000);
    await exited;
    clearTimeout(timer);
  };

  const url = `http://127.0.0.1:${opts.port}`;
  const client = new IndexClient(url);
  const deadline = Date.now() + (opts.readyTimeoutMs ?? 120_000);
  try {
    for (;;) {
      if (gone) throw new Error(`ponder exited before it was ready:\n${recent.join("\n")}`);
      if (Date.now() > deadline)
        throw new Error(`ponder was not ready within ${opts.readyTimeoutMs ?? 120_000} ms:\n${recent.join("\n")}`);
      const ready = await fetch(`${url}/ready`).then(
        (r) => r.status === 200,
        () => false,
      );
      if (ready) break;
      await new Promise((r) => setTimeout(r, 100));
    }
  } catch (error) {
    await stop();
    throw error;
  }

  const waitForBlock = async (n: bigint | number, timeoutMs = 60_000) => {
    const target = BigInt(n);
    const until = Date.now() + timeoutMs;
    let seen = "none";
    for (;;) {
      if (gone) throw new Error(`ponder exited while waiting for block ${target}:\n${recent.join("\n")}`);
      const status = await client.status().catch(() => null);
      if (status) {
        seen = status.indexedBlock.toString();
        if (status.indexedBlock >= target) return;
      }
      if (Date.now() > until)
        throw new Error(`the index did not reach block ${target} within ${timeoutMs} ms (it is at ${seen})`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };

  return { url, client, waitForBlock, stop };
}

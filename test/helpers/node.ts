/**
 * Real nodes on loopback for integration tests, each with a port of its own: `hardhat node` (EDR)
 * and anvil (Foundry's node, from the npm package `@foundry-rs/anvil`) — two implementations, so the
 * relayer's and the agent's handling of nonces, mempools and restarts is not tuned to one of them.
 * `hardhat node` mines each transaction as it arrives; anvil runs with a block time, so a broadcast
 * transaction waits in a real mempool (pending nonces run ahead of latest ones, a rebroadcast is
 * "already imported", a nonce gap is queued instead of refused). Anvil's Prague has no P-256
 * precompile (EDR's has RIP-7212's): P-256 signatures verify in Solidity there, at more gas.
 * `stop()` kills the whole process group; nodes still running when the test process exits are
 * killed too.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createRequire } from "node:module";
import { freePort } from "../../src/watch/port.js";
import path from "node:path";

const require = createRequire(import.meta.url);
const ROOT = path.join(import.meta.dirname, "..", "..");

const running = new Set<ChildProcess>();
process.on("exit", () => {
  for (const child of running) killGroup(child);
});

function killGroup(child: ChildProcess, signal: NodeJS.Signals = "SIGKILL"): void {
  try {
    if (child.pid) process.kill(-child.pid, signal);
  } catch {
    // already gone
  }
}

export { freePort } from "../../src/watch/port.js";

export type NodeKind = "hardhat" | "anvil";

/** Which node the integration tests run against: `CUSTOS_NODE=anvil` (CI runs both), else hardhat. */
export const NODE_KIND: NodeKind = process.env.CUSTOS_NODE === "anvil" ? "anvil" : "hardhat";

export interface HardhatNode {
  kind: NodeKind;
  url: string;
  port: number;
  /** Seconds between blocks; 0 when each transaction is mined as it arrives. */
  blockTime: number;
  /** One JSON-RPC call; rejects with the node's error message. */
  send(method: string, params?: unknown[]): Promise<unknown>;
  /** Stops mining, whatever the node's mode: transactions wait in the mempool until `mine` or `resumeMining`. */
  pauseMining(): Promise<void>;
  /** Mines one block now (with what the mempool holds that can go in). */
  mine(): Promise<void>;
  /** Back to the node's own mode: a block per transaction, or a block every `blockTime` seconds. */
  resumeMining(): Promise<void>;
  /** Stops the node (SIGKILL to its process group) and waits for it to exit. */
  stop(): Promise<void>;
}

/** Starts the node `CUSTOS_NODE` names (hardhat by default) on `port` (a free one by default). */
export async function startNode(port?: number): Promise<HardhatNode> {
  return NODE_KIND === "anvil" ? startAnvil(port) : startHardhatNode(port);
}

/** Starts `hardhat node` on `port` (a free one by default) and waits until it answers. */
export async function startHardhatNode(port?: number): Promise<HardhatNode> {
  const p = port ?? (await freePort());
  const cli = binOf("hardhat", "hardhat");
  return launch(
    "hardhat",
    p,
    [cli, "node", "--hostname", "127.0.0.1", "--port", String(p)],
    "Started HTTP and WebSocket JSON-RPC server",
    0,
  );
}

/**
 * Anvil's block time in seconds: `CUSTOS_ANVIL_BLOCK_TIME`, else 1. A real chain's rhythm: a
 * transaction waits in the mempool for the next block (0 mines each one as it arrives, as
 * `hardhat node` does).
 */
export const ANVIL_BLOCK_TIME = blockTimeOf(process.env.CUSTOS_ANVIL_BLOCK_TIME);

function blockTimeOf(given: string | undefined): number {
  if (given === undefined || given === "") return 1;
  const n = Number(given);
  if (!Number.isSafeInteger(n) || n < 0)
    throw new Error(`CUSTOS_ANVIL_BLOCK_TIME must be a whole number of seconds ≥ 0, not ${given}`);
  return n;
}

/**
 * Starts anvil with Hardhat's accounts (the same test mnemonic, 20 accounts of 10,000 ETH), chain id
 * 31337 and Osaka — the hardfork Hardhat's EDR runs, with the P-256 precompile at 0x100 that device
 * keys on secure elements use (on Prague anvil has none and OpenZeppelin's P256 falls back to
 * Solidity, at twice the gas) — mining a block every `blockTime` seconds (each transaction as it
 * arrives with 0).
 */
export async function startAnvil(port?: number, blockTime = ANVIL_BLOCK_TIME): Promise<HardhatNode> {
  const p = port ?? (await freePort());
  const bin = binOf("@foundry-rs/anvil", "anvil");
  // Anvil's default mnemonic and balance are Hardhat's; its default count is 10, Hardhat's 20.
  const args = [bin, "--host", "127.0.0.1", "--port", String(p), "--chain-id", "31337", "--hardfork", "osaka"];
  args.push("--accounts", "20");
  if (blockTime > 0) args.push("--block-time", String(blockTime));
  return launch("anvil", p, args, "Listening on", blockTime);
}

/** The script a package installs as `name` on PATH (resolved from its manifest: no deep import). */
function binOf(pkg: string, name: string): string {
  const manifest = require.resolve(`${pkg}/package.json`);
  const { bin } = require(manifest) as { bin: string | Record<string, string> };
  return path.join(path.dirname(manifest), typeof bin === "string" ? bin : bin[name]);
}

let rpcId = 0;

async function rpc(url: string, method: string, params: unknown[] = []): Promise<unknown> {
  const reply = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ jsonrpc: "2.0", id: ++rpcId, method, params }),
  });
  const answer = (await reply.json()) as { result?: unknown; error?: { message?: string } };
  if (answer.error) throw new Error(`${method}: ${answer.error.message ?? JSON.stringify(answer.error)}`);
  return answer.result;
}

async function launch(
  kind: NodeKind,
  p: number,
  args: string[],
  ready: string,
  blockTime: number,
): Promise<HardhatNode> {
  const child = spawn(process.execPath, args, {
    cwd: ROOT,
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, HARDHAT_DISABLE_TELEMETRY_PROMPT: "true" },
  });
  running.add(child);
  let output = "";
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${kind} node did not start on ${p}:\n${output}`)), 60_000);
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      if (output.includes(ready)) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout!.on("data", onData);
    child.stderr!.on("data", onData);
    child.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`${kind} node exited with ${code}:\n${output}`));
    });
  });
  child.stdout!.resume();
  child.stderr!.resume();
  const url = `http://127.0.0.1:${p}`;
  const send = (method: string, params?: unknown[]) => rpc(url, method, params);
  return {
    kind,
    url,
    port: p,
    blockTime,
    send,
    // Both nodes know both calls: automine off, and interval mining off (0 turns it off).
    pauseMining: async () => {
      await send("evm_setAutomine", [false]);
      await send("evm_setIntervalMining", [0]);
    },
    mine: async () => {
      await send("evm_mine");
    },
    resumeMining: async () => {
      // Only anvil runs with a block time here; its evm_setIntervalMining takes seconds (Hardhat's, ms).
      if (blockTime > 0) await send("evm_setIntervalMining", [blockTime]);
      else await send("evm_setAutomine", [true]);
    },
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
      killGroup(child);
      await exited;
      running.delete(child);
    },
  };
}

/**
 * Real nodes on loopback for integration tests, each with a port of its own: `hardhat node` (EDR)
 * and anvil (Foundry's node, from the npm package `@foundry-rs/anvil`) — two implementations, so the
 * relayer's and the agent's handling of nonces, mempools and restarts is not tuned to one of them.
 * `stop()` kills the whole process group; nodes still running when the test process exits are
 * killed too.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createRequire } from "node:module";
import { createServer } from "node:net";
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

/** A TCP port that was free a moment ago on 127.0.0.1. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

export type NodeKind = "hardhat" | "anvil";

/** Which node the integration tests run against: `CUSTOS_NODE=anvil` (CI runs both), else hardhat. */
export const NODE_KIND: NodeKind = process.env.CUSTOS_NODE === "anvil" ? "anvil" : "hardhat";

export interface HardhatNode {
  kind: NodeKind;
  url: string;
  port: number;
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
  );
}

/**
 * Starts anvil with Hardhat's accounts (the same test mnemonic, 20 accounts of 10,000 ETH), chain id
 * 31337 and the Prague hardfork, mining each transaction as it arrives — like `hardhat node`.
 */
export async function startAnvil(port?: number): Promise<HardhatNode> {
  const p = port ?? (await freePort());
  const bin = binOf("@foundry-rs/anvil", "anvil");
  const args = [bin, "--host", "127.0.0.1", "--port", String(p), "--chain-id", "31337", "--hardfork", "prague"];
  return launch("anvil", p, args, "Listening on");
}

/** The script a package installs as `name` on PATH (resolved from its manifest: no deep import). */
function binOf(pkg: string, name: string): string {
  const manifest = require.resolve(`${pkg}/package.json`);
  const { bin } = require(manifest) as { bin: string | Record<string, string> };
  return path.join(path.dirname(manifest), typeof bin === "string" ? bin : bin[name]);
}

async function launch(kind: NodeKind, p: number, args: string[], ready: string): Promise<HardhatNode> {
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
  return {
    kind,
    url: `http://127.0.0.1:${p}`,
    port: p,
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
      killGroup(child);
      await exited;
      running.delete(child);
    },
  };
}

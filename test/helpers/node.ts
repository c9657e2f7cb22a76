/**
 * A real `npx hardhat node` on loopback for integration tests, with a port of its own. `stop()`
 * kills the whole process group; nodes still running when the test process exits are killed too.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createServer } from "node:net";
import path from "node:path";

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

export interface HardhatNode {
  url: string;
  port: number;
  /** Stops the node (SIGKILL to its process group) and waits for it to exit. */
  stop(): Promise<void>;
}

/** Starts `hardhat node` on `port` (a free one by default) and waits until it answers. */
export async function startHardhatNode(port?: number): Promise<HardhatNode> {
  const p = port ?? (await freePort());
  const root = path.join(import.meta.dirname, "..", "..");
  const child = spawn(
    process.execPath,
    [require.resolve("hardhat/internal/cli/bootstrap"), "node", "--hostname", "127.0.0.1", "--port", String(p)],
    {
      cwd: root,
      detached: true,
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, HARDHAT_DISABLE_TELEMETRY_PROMPT: "true" },
    },
  );
  running.add(child);
  let output = "";
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`hardhat node did not start on ${p}:\n${output}`)), 60_000);
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      if (output.includes("Started HTTP and WebSocket JSON-RPC server")) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout!.on("data", onData);
    child.stderr!.on("data", onData);
    child.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`hardhat node exited with ${code}:\n${output}`));
    });
  });
  child.stdout!.resume();
  child.stderr!.resume();
  return {
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

/**
 * The relayer as a real process (`src/relayer/cli.ts` under tsx), as `npm run relayer` starts it:
 * keystore file, password file, JSON logs on stdout. `kill()` is SIGKILL to its process group;
 * every process still running is killed by a root `after` hook and on exit, whatever happens.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { writeFileSync } from "node:fs";
import path from "node:path";
import { encryptKeystoreJsonSync, type Wallet } from "ethers";
import { freePort } from "../helpers/node.js";
import { tempDir } from "./fixtures.js";

const children = new Set<ChildProcess>();

function killGroup(child: ChildProcess): void {
  try {
    if (child.pid) process.kill(-child.pid, "SIGKILL");
  } catch {
    // already gone
  }
}

process.on("exit", () => children.forEach(killGroup));
after(() => children.forEach(killGroup));

export interface RelayerProcess {
  url: string;
  child: ChildProcess;
  /** Every stdout line so far. */
  lines: string[];
  /** Resolves with the signal or exit code when the process ends. */
  exited: Promise<string>;
  kill(): Promise<string>;
}

/** Writes the relayer's keystore (cheap scrypt: it is a test) and its password file; returns their paths. */
export function keystoreFiles(wallet: Wallet): { keystore: string; passwordFile: string } {
  const dir = tempDir("custos-relayer-key-");
  const keystore = path.join(dir, "relayer.json");
  const passwordFile = path.join(dir, "relayer.pw");
  writeFileSync(
    keystore,
    encryptKeystoreJsonSync({ address: wallet.address, privateKey: wallet.privateKey }, "correct horse", {
      scrypt: { N: 1 << 10 },
    }),
  );
  writeFileSync(passwordFile, "correct horse\n");
  return { keystore, passwordFile };
}

const ROOT = path.join(import.meta.dirname, "..", "..");

/**
 * `cli.ts` under tsx, as an --import hook, not its CLI: one process, so a SIGKILL (or a failpoint's)
 * ends the relayer itself. Both by absolute location, so that the process may run in any directory.
 */
function start(args: string[], env: Record<string, string | undefined>, cwd = ROOT): ChildProcess {
  // A variable set to undefined is removed from the relayer's environment.
  const merged = Object.fromEntries(
    Object.entries({ ...process.env, ...env }).filter((e): e is [string, string] => e[1] !== undefined),
  );
  const child = spawn(
    process.execPath,
    ["--import", import.meta.resolve("tsx"), path.join(ROOT, "src/relayer/cli.ts"), ...args],
    { cwd, detached: true, stdio: ["ignore", "pipe", "pipe"], env: merged },
  );
  children.add(child);
  return child;
}

/** Runs `cli.ts` with `args` (a start that must fail) until it exits: its exit code, stdout and stderr. */
export async function runRelayerToExit(
  args: string[],
  env: Record<string, string | undefined> = {},
  opts: { cwd?: string; timeoutMs?: number } = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = start([...args, "--port", String(await freePort())], env, opts.cwd);
  let stdout = "";
  let stderr = "";
  child.stdout!.on("data", (c: Buffer) => (stdout += c.toString()));
  child.stderr!.on("data", (c: Buffer) => (stderr += c.toString()));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      killGroup(child);
      reject(new Error(`the relayer did not exit within ${opts.timeoutMs ?? 60_000} ms:\n${stdout}\n${stderr}`));
    }, opts.timeoutMs ?? 60_000);
    child.on("exit", (code) => {
      clearTimeout(timer);
      children.delete(child);
      resolve({ code, stdout, stderr });
    });
  });
}

/** Starts `cli.ts` with `args` (plus --port) and waits for its "listening" log line. */
export async function spawnRelayer(
  args: string[],
  env: Record<string, string> = {},
  opts: { cwd?: string } = {},
): Promise<RelayerProcess> {
  const port = await freePort();
  const child = start([...args, "--port", String(port)], env, opts.cwd);
  const lines: string[] = [];
  let stderr = "";
  const exited = new Promise<string>((resolve) =>
    child.on("exit", (code, signal) => {
      children.delete(child);
      resolve(signal ?? String(code));
    }),
  );
  let buffered = "";
  child.stdout!.on("data", (chunk: Buffer) => {
    buffered += chunk.toString();
    const parts = buffered.split("\n");
    buffered = parts.pop()!;
    lines.push(...parts);
  });
  child.stderr!.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`relayer did not start:\n${lines.join("\n")}\n${stderr}`)), 60_000);
    const check = setInterval(() => {
      const line = lines.find((l) => l.includes('"event":"listening"'));
      if (line) {
        clearTimeout(timer);
        clearInterval(check);
        resolve(JSON.parse(line).url as string);
      }
    }, 20);
    void exited.then((how) => {
      clearTimeout(timer);
      clearInterval(check);
      reject(new Error(`relayer exited (${how}) before listening:\n${lines.join("\n")}\n${stderr}`));
    });
  });
  return {
    url,
    child,
    lines,
    exited,
    kill: () => {
      killGroup(child);
      return exited;
    },
  };
}

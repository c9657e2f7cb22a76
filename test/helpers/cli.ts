/**
 * `custos-agent` as a child process, for the tests that run the real CLI: its output collected,
 * its exit awaited, and every child still alive killed when the test process exits (or `reapAll`).
 */
import { spawn, type ChildProcess } from "node:child_process";
import path from "node:path";

const ROOT = path.join(import.meta.dirname, "..", "..");
const BIN = path.join(ROOT, "bin", "custos-agent.js");

const children = new Set<ChildProcess>();

/** Kills every CLI child still running. */
export function reapAll(): void {
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  }
  children.clear();
}
process.on("exit", reapAll);

export interface CliRun {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/**
 * Starts `custos-agent args…` with only PATH and HOME of this process's environment, plus `env`;
 * `input`, when given, is its stdin (then closed).
 */
export function startCli(args: string[], env: NodeJS.ProcessEnv, input?: string): CliRun {
  const child = spawn(process.execPath, [BIN, ...args], {
    cwd: ROOT,
    env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env },
    stdio: [input === undefined ? "ignore" : "pipe", "pipe", "pipe"],
  });
  if (input !== undefined) child.stdin!.end(input);
  children.add(child);
  let out = "";
  let err = "";
  child.stdout!.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr!.on("data", (d: Buffer) => (err += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on("exit", (code, signal) => {
      children.delete(child);
      resolve({ code, signal });
    }),
  );
  return { child, stdout: () => out, stderr: () => err, exited };
}

/**
 * Runs `custos-agent args…` to its end. With `timeoutMs`, a run still going then is killed and
 * reported with `hung: true` (a test of "fails at once, never hangs" asserts on it).
 */
export async function runCli(
  args: string[],
  env: NodeJS.ProcessEnv,
  opts: { timeoutMs?: number; input?: string } = {},
) {
  const run = startCli(args, env, opts.input);
  let hung = false;
  const timer =
    opts.timeoutMs === undefined
      ? undefined
      : setTimeout(() => {
          hung = true;
          run.child.kill("SIGKILL");
        }, opts.timeoutMs);
  const { code } = await run.exited;
  clearTimeout(timer);
  return { code, stdout: run.stdout(), stderr: run.stderr(), hung };
}

/** The lines of a CLI's stderr meant for a person (`custos-agent: …`), not its JSON log lines. */
export function saidLines(stderr: string): string[] {
  return stderr.split("\n").filter((l) => l.startsWith("custos-agent:"));
}

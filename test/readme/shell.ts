/**
 * The README's shell blocks, read and run as a user types them: `readmeCommands` cuts a section's
 * ```sh blocks into the commands a shell would run one by one (a line, its `\` continuations, a
 * `for … done` spanning lines), and `Shell` runs them in one long-lived bash — so `export`, shell
 * variables and `cd` carry over from one command to the next, as in a terminal — each with its own
 * exit status, stdout and stderr (files), and its time. A command ending in `&` runs in the
 * background (its own process group, as with job control) until `close()`.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { readFileSync } from "node:fs";
import path from "node:path";

/** A shell command of the README: its text as typed (continuations kept) and where it is. */
export interface ReadmeCommand {
  section: string;
  /** 1-based line of the README where the command starts. */
  line: number;
  text: string;
  /** It ends with `&`: a service the next commands use. */
  background: boolean;
}

/** A block marked `<!-- readme-test: skip (reason) -->` on the line before it. */
export interface SkippedBlock {
  section: string;
  line: number;
  reason: string;
}

const SKIP = /^<!--\s*readme-test:\s*skip\s*\((.+)\)\s*-->$/;
const SHELL_FENCE = /^```(sh|bash|shell)\s*$/;

/** Whether bash reads `text` as whole commands (no open quote, `do` without `done`, …). */
function complete(text: string): boolean {
  return spawnSync("bash", ["-n", "-c", text], { stdio: "ignore" }).status === 0;
}

/**
 * The commands of the shell blocks of section `heading` (a `## ` heading), in order, and the blocks
 * it skips. Comment lines and blank lines between commands are not commands. A block of another
 * language is not run; a block with no language is refused (it would go untested unnoticed).
 */
export function readmeCommands(
  markdown: string,
  heading: string,
): { commands: ReadmeCommand[]; skipped: SkippedBlock[] } {
  const lines = markdown.split("\n");
  const start = lines.findIndex((l) => l.trim() === `## ${heading}`);
  if (start < 0) throw new Error(`README.md has no section "## ${heading}"`);
  let end = lines.findIndex((l, i) => i > start && /^## /.test(l));
  if (end < 0) end = lines.length;
  const commands: ReadmeCommand[] = [];
  const skipped: SkippedBlock[] = [];
  for (let i = start + 1; i < end; i++) {
    if (!lines[i].startsWith("```")) continue;
    const open = i;
    let close = i + 1;
    while (close < end && lines[close].trim() !== "```") close++;
    if (close >= end) throw new Error(`README.md line ${open + 1}: a code block that does not close`);
    i = close;
    if (!SHELL_FENCE.test(lines[open])) {
      if (lines[open].trim() === "```")
        throw new Error(`README.md line ${open + 1}: a code block without a language in "${heading}" (sh?)`);
      continue;
    }
    let before = open - 1;
    while (before > start && lines[before].trim() === "") before--;
    const marker = SKIP.exec(lines[before].trim());
    if (marker) {
      skipped.push({ section: heading, line: open + 1, reason: marker[1] });
      continue;
    }
    if (/readme-test/.test(lines[before]))
      throw new Error(
        `README.md line ${before + 1}: a readme-test marker is <!-- readme-test: skip (reason) --> exactly`,
      );
    for (let j = open + 1; j < close; j++) {
      const trimmed = lines[j].trim();
      if (trimmed === "" || trimmed.startsWith("#")) continue;
      const first = j;
      let text = lines[j];
      // `\` at the end of a line continues the command; an open quote or loop continues it too.
      while ((/\\$/.test(text) || !complete(text)) && j + 1 < close) text += "\n" + lines[++j];
      if (!complete(text)) throw new Error(`README.md line ${first + 1}: bash cannot parse this command:\n${text}`);
      commands.push({
        section: heading,
        line: first + 1,
        text,
        background: /(^|[^&])&\s*(#.*)?$/.test(text),
      });
    }
  }
  return { commands, skipped };
}

/** What one command did. */
export interface Run {
  code: number;
  stdout: string;
  stderr: string;
  ms: number;
  /** Shell variables asked for after the command (set by it, or before). */
  vars: Record<string, string>;
}

/** A command left running in the background. */
export interface Background {
  pid: number;
  text: string;
  stdout(): string;
  stderr(): string;
  alive(): boolean;
  /** From its start until its ready line showed. */
  ms: number;
}

export class Shell {
  private readonly bash: ChildProcess;
  private buffer = "";
  private readonly waiting = new Map<string, (fields: string[]) => void>();
  private readonly background: Background[] = [];
  private n = 0;
  private exited = false;

  /**
   * A bash in `cwd` with exactly `env`, job control on (each background command in a process group
   * of its own, as in a terminal) and pipefail (a pipeline fails when a command in it does). Step
   * outputs go to files in `dir`.
   */
  constructor(
    cwd: string,
    env: NodeJS.ProcessEnv,
    private readonly dir: string,
  ) {
    this.bash = spawn("bash", ["--noprofile", "--norc"], {
      cwd,
      env,
      stdio: ["pipe", "pipe", "pipe"],
      detached: true,
    });
    this.bash.stdout!.on("data", (chunk: Buffer) => this.read(chunk.toString()));
    this.bash.stderr!.resume();
    this.bash.on("exit", () => {
      this.exited = true;
      for (const resolve of [...this.waiting.values()]) resolve(["exited"]);
    });
    this.bash.stdin!.write("set -m\nset -o pipefail\n");
  }

  private read(chunk: string): void {
    this.buffer += chunk;
    let nl: number;
    while ((nl = this.buffer.indexOf("\n")) >= 0) {
      const line = this.buffer.slice(0, nl);
      this.buffer = this.buffer.slice(nl + 1);
      const m = /^__readme__ (\S+) (.*)$/.exec(line);
      if (m) this.waiting.get(m[1])?.(m[2].split(" "));
    }
  }

  private marker(id: string): Promise<string[]> {
    return new Promise((resolve) => {
      if (this.exited) return resolve(["exited"]);
      this.waiting.set(id, (fields) => {
        this.waiting.delete(id);
        resolve(fields);
      });
    });
  }

  private files(id: string) {
    return { out: path.join(this.dir, `${id}.out`), err: path.join(this.dir, `${id}.err`) };
  }

  /**
   * Runs `text` in the foreground and waits for it (at most `timeoutMs`), then reads `vars` from the
   * shell. Its stdin is /dev/null.
   */
  async run(text: string, vars: string[] = [], timeoutMs = 120_000): Promise<Run> {
    const id = `s${++this.n}`;
    const { out, err } = this.files(id);
    const varFile = (v: string) => path.join(this.dir, `${id}.var.${v}`);
    const done = this.marker(id);
    const started = performance.now();
    this.bash.stdin!.write(
      `{\n${text}\n} > '${out}' 2> '${err}' < /dev/null\n__readme_rc=$?\n` +
        vars.map((v) => `printf '%s' "$${v}" > '${varFile(v)}'\n`).join("") +
        `printf '\\n__readme__ ${id} %d\\n' $__readme_rc\n`,
    );
    let timer: NodeJS.Timeout | undefined;
    const fields = await Promise.race([
      done,
      new Promise<string[]>((resolve) => (timer = setTimeout(() => resolve(["timeout"]), timeoutMs))),
    ]);
    clearTimeout(timer);
    const ms = performance.now() - started;
    const stdout = readFileSync(out, "utf8");
    const stderr = readFileSync(err, "utf8");
    if (fields[0] === "timeout")
      throw new Error(
        `still running after ${timeoutMs / 1000} s:\n${text}\n--- stdout\n${stdout}\n--- stderr\n${stderr}`,
      );
    if (fields[0] === "exited") throw new Error(`the shell exited during:\n${text}\n--- stderr\n${stderr}`);
    return {
      code: Number(fields[0]),
      stdout,
      stderr,
      ms,
      vars: Object.fromEntries(vars.map((v) => [v, readFileSync(varFile(v), "utf8")])),
    };
  }

  /**
   * Starts `text` (a command ending in `&`) in the background and waits until its stdout or stderr
   * matches `ready` — as a user waits for "listening" before going on — at most `timeoutMs`. Fails
   * if it exits first.
   */
  async start(text: string, ready: RegExp, timeoutMs = 90_000): Promise<Background> {
    const id = `b${++this.n}`;
    const { out, err } = this.files(id);
    const body = text.replace(/&\s*(#.*)?$/, "");
    const launched = this.marker(id);
    const started = performance.now();
    this.bash.stdin!.write(
      `{\n${body}\n} > '${out}' 2> '${err}' < /dev/null &\nprintf '\\n__readme__ ${id} %d\\n' $!\n`,
    );
    const [pidText] = await launched;
    const pid = Number(pidText);
    if (!Number.isSafeInteger(pid) || pid <= 1) throw new Error(`could not start in the background:\n${text}`);
    const read = (f: string) => {
      try {
        return readFileSync(f, "utf8");
      } catch {
        return "";
      }
    };
    const bg: Background = {
      pid,
      text,
      stdout: () => read(out),
      stderr: () => read(err),
      alive: () => alive(pid),
      ms: 0,
    };
    this.background.push(bg);
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (ready.test(bg.stdout()) || ready.test(bg.stderr())) break;
      if (!bg.alive())
        throw new Error(`exited before it was ready:\n${text}\n--- stdout\n${bg.stdout()}\n--- stderr\n${bg.stderr()}`);
      if (Date.now() > deadline)
        throw new Error(
          `not ready after ${timeoutMs / 1000} s (no ${ready}):\n${text}\n--- stdout\n${bg.stdout()}\n--- stderr\n${bg.stderr()}`,
        );
      await new Promise((r) => setTimeout(r, 100));
    }
    bg.ms = performance.now() - started;
    return bg;
  }

  /** The background commands still running. */
  running(): Background[] {
    return this.background.filter((b) => b.alive());
  }

  /**
   * Stops every background command, newest first (SIGTERM to its process group, SIGKILL after
   * `graceMs`), then the shell.
   */
  async close(graceMs = 3_000): Promise<void> {
    for (const bg of [...this.background].reverse()) {
      if (!bg.alive()) continue;
      signal(bg.pid, "SIGTERM");
      const until = Date.now() + graceMs;
      while (bg.alive() && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
      signal(bg.pid, "SIGKILL");
    }
    if (!this.exited) {
      const gone = new Promise<void>((resolve) => this.bash.once("exit", () => resolve()));
      this.bash.stdin!.end();
      signal(this.bash.pid!, "SIGKILL");
      await gone;
    }
  }

  /** Kills every process group this shell started, at once (for `process.on("exit")`). */
  killAll(): void {
    for (const bg of this.background) signal(bg.pid, "SIGKILL");
    if (!this.exited && this.bash.pid) signal(this.bash.pid, "SIGKILL");
  }
}

/** Whether process group `pid` still has a process. */
function alive(pid: number): boolean {
  try {
    process.kill(-pid, 0);
    return true;
  } catch {
    return false;
  }
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(-pid, sig);
  } catch {
    // already gone
  }
}

/**
 * What the suite's long-running services (the relayer, the watch, a guardian) share on their
 * command line: the argument parsers, the one-line failure to start (exit 2 for a setting to
 * change, 1 for anything else), and a clean stop on SIGINT/SIGTERM.
 */
import { InvalidArgumentError } from "commander";
import { SettingError } from "./addresses.js";

/** A commander parser for a non-negative integer setting named `name`. */
export function int(name: string) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isSafeInteger(n) || n < 0) throw new InvalidArgumentError(`${name} must be a non-negative integer`);
    return n;
  };
}

/** A commander parser for an address setting. */
export function address(value: string): string {
  if (!/^0x[0-9a-fA-F]{40}$/.test(value)) throw new InvalidArgumentError("must be a 0x address");
  return value;
}

/** Stops `stop` once on SIGINT or SIGTERM, then exits: 0, or 1 when stopping failed. */
export function stopOnSignals(stop: () => Promise<void>): void {
  let stopping = false;
  const onSignal = () => {
    if (stopping) return;
    stopping = true;
    stop().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
}

/**
 * Runs a service's `main`; a failure to start is one line on stderr, `name: sentence`, exit code 2
 * when it names a setting to change (a {@link SettingError}, or an error named in `settingErrors`).
 */
export function runService(name: string, main: () => Promise<void>, settingErrors: string[] = []): void {
  main().catch((err: Error) => {
    const setting = err instanceof SettingError || settingErrors.includes(err.name);
    process.stderr.write(`${name}: ${err.message.split("\n")[0]}\n`);
    process.exit(setting ? 2 : 1);
  });
}

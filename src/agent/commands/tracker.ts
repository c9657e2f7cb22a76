/**
 * `custos-agent tracker run`: a tracker device riding with a shipment. It takes readings from a
 * sensor source — simulated, or readings from a file or stdin — keeps each one on disk, and seals
 * a checkpoint on a schedule through the tracker role (`roles/tracker.ts`), which the outbox
 * delivers to `CustodyLedger.checkpoint`.
 */
import type { Command } from "commander";
import { Option } from "commander";
import { CliError, parseBytes32, parseNumber, readText, withAgents, pickAgent, type Ctx } from "./common.js";

export const TRACKER_EXAMPLES: Record<string, string> = {
  "tracker run":
    "custos-agent tracker run --shipment 0x4c1f…9a02 --custody-ledger 0x9fE4…6e0 --source simulated --sample-ms 60000 --checkpoint-ms 900000",
};

interface TrackerFlags {
  shipment: string;
  source: "simulated" | "file" | "stdin";
  readings?: string;
  sampleMs: string;
  checkpointMs: string;
  base: string;
  amplitude: string;
  location?: string;
  samples?: string;
  duration?: string;
  device?: string;
  wait?: boolean;
  timeout?: string;
}

/** A reading line: `temp`, `at,temp`, or JSON `{"at":…,"temp":…}`; temperatures in hundredths of °C. */
export function parseReading(line: string, where: string): { at?: number; temp: number } {
  const text = line.trim();
  let at: unknown;
  let temp: unknown;
  if (text.startsWith("{")) {
    try {
      ({ at, temp } = JSON.parse(text) as { at?: unknown; temp?: unknown });
    } catch {
      throw new CliError(`${where}: not valid JSON`);
    }
  } else {
    const parts = text.split(",").map((s) => s.trim());
    if (parts.length === 1) temp = parts[0];
    else if (parts.length === 2) [at, temp] = parts;
    else throw new CliError(`${where}: expected "temp", "at,temp" or {"at","temp"} (hundredths of °C)`);
  }
  const t = Number(temp);
  if (!Number.isInteger(t) || t < -32768 || t > 32767)
    throw new CliError(`${where}: temp must be an integer in hundredths of °C (-32768…32767), not ${String(temp)}`);
  if (at === undefined || at === "") return { temp: t };
  const a = Number(at);
  if (!Number.isSafeInteger(a) || a <= 0) throw new CliError(`${where}: at must be unix seconds, not ${String(at)}`);
  return { at: a, temp: t };
}

export function registerTracker(program: Command, ctx: Ctx): void {
  const tracker = program.command("tracker").description("run this device as a shipment's tracker");
  ctx.example(
    tracker
      .command("run")
      .description(
        "take readings (simulated, or from a file or stdin), keep them, and checkpoint them on chain on a schedule",
      )
      .requiredOption("--shipment <id>", "the shipment's on-chain id (bytes32; custody:create prints it)")
      .addOption(
        new Option("--source <source>", "where readings come from")
          .choices(["simulated", "file", "stdin"])
          .default("simulated"),
      )
      .option("--readings <file>", "with --source file: one reading a line: temp, at,temp or {at,temp} (°C/100)")
      .option("--sample-ms <ms>", "simulated source: how often a reading is taken", "60000")
      .option("--checkpoint-ms <ms>", "how often the readings since the last checkpoint are sealed", "900000")
      .option("--base <centi°C>", "simulated source: the steady temperature (hundredths of °C)", "400")
      .option("--amplitude <centi°C>", "simulated source: the wave around it", "50")
      .option("--location <uri>", "where the tracker is (geo: or sgln: URI)", "geo:unknown")
      .option("--samples <n>", "stop after this many readings (then seal and deliver)")
      .option("--duration <seconds>", "stop after this long (then seal and deliver)")
      .option("--device <selector>", "which loaded key when several")
      .option("--wait", "at the end, wait while a checkpoint is held, up to --timeout")
      .option("--timeout <seconds>", "at the end, give up delivering after this long (default 300; 0: never)")
      .addHelpText(
        "after",
        "\nIt stops at the end of the file or stdin, after --samples or --duration, or on SIGINT/SIGTERM; then it seals\n" +
          "the last readings and delivers what is queued (exit status as for one-shot commands). Readings and\n" +
          "checkpoints are kept in --data-dir/tracker.jsonl (custody:prove-reading reads them).\n",
      )
      .action(async (o: TrackerFlags) => {
        const shipment = parseBytes32(o.shipment, "--shipment");
        if (o.source === "file" && !o.readings) throw new CliError("--source file needs --readings <file>");
        if (o.source !== "file" && o.readings) throw new CliError("--readings goes with --source file");
        const sampleMs = parseNumber(o.sampleMs, "--sample-ms", 1);
        const checkpointMs = parseNumber(o.checkpointMs, "--checkpoint-ms", 1);
        const base = parseNumber(o.base, "--base", -32768, 32767);
        const amplitude = parseNumber(o.amplitude, "--amplitude", 0, 32767);
        const samples = o.samples === undefined ? undefined : parseNumber(o.samples, "--samples", 1);
        const durationS = o.duration === undefined ? undefined : parseNumber(o.duration, "--duration", 1);
        // Read (and check) a file's readings before anything starts.
        const fileReadings =
          o.source === "file"
            ? readText(o.readings!, "--readings")
                .split("\n")
                .map((l, i) => [l, i] as const)
                .filter(([l]) => l.trim().length > 0)
                .map(([l, i]) => parseReading(l, `--readings ${o.readings}:${i + 1}`))
            : undefined;
        await withAgents(
          ctx,
          async (agents, stack) => {
            const agent = await pickAgent(agents, o.device);
            const { runTracker } = await import("./trackerRun.js");
            ctx.exit.code = await runTracker(ctx, agent, stack, {
              shipment,
              source: o.source,
              fileReadings,
              sampleMs,
              checkpointMs,
              base,
              amplitude,
              location: o.location ?? "geo:unknown",
              samples,
              durationS,
              wait: o.wait,
              timeout: o.timeout,
            });
          },
          { need: ["custodyLedger"] },
        );
      }),
    "tracker run",
    TRACKER_EXAMPLES["tracker run"],
  );
}

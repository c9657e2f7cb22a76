/**
 * `custos-agent meter pay` and `meter serve`: devices paying each other per unit over a payment
 * channel. The payer streams vouchers to the payee over HTTP; the payee checks each one and claims
 * through the agent's outbox (the meter role, `roles/meter.ts`).
 */
import type { Command } from "commander";
import { Option } from "commander";
// A light module (no ethers): `--help` stays quick.
import { DEFAULT_REPORT_INTERVAL_MS } from "../roles/voucherReports.js";
import { CliError, parseBytes32, parseHttpUrl, parseInteger, parseNumber, type Ctx } from "./common.js";

export const METER_EXAMPLES: Record<string, string> = {
  "meter serve":
    "custos-agent meter serve --channel 0x8f3a…c1 --price 1000000000 --payment-channels 0xDc64…6C9 --port 8710",
  "meter pay":
    "custos-agent meter pay --channel 0x8f3a…c1 --payee http://127.0.0.1:8710 --price 1000000000 --source simulated --rate 5",
};

export interface MeterServeFlags {
  channel: string[];
  price: string;
  host: string;
  port: string;
  claimMs: string;
  watchMs: string;
  minClaim: string;
  timeout?: string;
  guardian?: string[];
  guardianReportMs?: string;
}

/**
 * The guardians `meter serve` reports vouchers to: the `--guardian` flags, else CUSTOS_GUARDIANS
 * (comma-separated, as the agent's list settings are), each an http(s) URL named in its error.
 */
export function guardianUrls(flags: string[] | undefined, env: string | undefined): string[] {
  let list = flags ?? [];
  let where = "--guardian";
  if (list.length === 0) {
    list = (env ?? "").split(",").map((g) => g.trim());
    list = list.filter((g) => g.length > 0);
    where = "CUSTOS_GUARDIANS";
  }
  const urls = list.map((g, i) => parseHttpUrl(g, list.length > 1 ? `${where}[${i}]` : where));
  return [...new Set(urls)];
}

export interface MeterPayFlags {
  channel: string;
  payee: string;
  price: string;
  ahead: string;
  source: "simulated" | "file" | "stdin";
  readings?: string;
  rate: string;
  intervalMs: string;
  units?: string;
  duration?: string;
  device?: string;
}

export function registerMeter(program: Command, ctx: Ctx): void {
  const meter = program.command("meter").description("pay or get paid per unit over a payment channel");
  ctx.example(
    meter
      .command("serve")
      .description(
        "the payee: take vouchers over HTTP (POST /v1/vouchers), check each one, keep the highest, and claim it on chain",
      )
      .requiredOption(
        "--channel <id>",
        "a channel this device is the payee of (repeat)",
        (v: string, p: string[] = []) => [...p, v],
      )
      .requiredOption("--price <amount>", "price of one unit in the token's base units (wei for ETH)")
      .option("--host <host>", "listen address", "127.0.0.1")
      .option("--port <port>", "listen port (0: any free one)", "8710")
      .option("--claim-ms <ms>", "how often the highest vouchers are claimed", "60000")
      .option(
        "--watch-ms <ms>",
        "how often the channels are read from the chain (a close is answered at once)",
        "15000",
      )
      .option("--min-claim <amount>", "claim only once this much is unclaimed (base units)", "0")
      .option("--timeout <seconds>", "on exit, give up delivering the last claims after this long (default 300)")
      .option(
        "--guardian <url>",
        "a guardian to report the payers' vouchers to (repeat; CUSTOS_GUARDIANS, comma-separated)",
        (v: string, p: string[] = []) => [...p, v],
      )
      .option(
        "--guardian-report-ms <ms>",
        `least time between two reports of one channel to the guardians (default ${DEFAULT_REPORT_INTERVAL_MS})`,
      )
      .addHelpText(
        "after",
        "\nA voucher: POST /v1/vouchers {channel, cumulativeAmount, key, signature} → 200 {accepted: true, …},\n" +
          "409 {accepted: false, reason} (not-higher, signature, not-payer-key, closed), 404 unknown channel, 400 bad body.\n" +
          "GET /v1/channels/:id shows a channel's state. On SIGINT/SIGTERM it claims what it holds and delivers it.\n" +
          "With --guardian, each channel's latest accepted voucher goes to POST <guardian>/vouchers (its claim message,\n" +
          "with the channel's terms) at most once per --guardian-report-ms; the payer's answer never waits for it.\n",
      )
      .action(async (o: MeterServeFlags) => {
        const channels = o.channel.map((c, i) =>
          parseBytes32(c, o.channel.length > 1 ? `--channel[${i}]` : "--channel"),
        );
        const price = parseInteger(o.price, "--price", { min: 1n });
        const minClaim = parseInteger(o.minClaim, "--min-claim", { min: 0n });
        const port = parseNumber(o.port, "--port", 0, 65535);
        const claimMs = parseNumber(o.claimMs, "--claim-ms", 1);
        const watchMs = parseNumber(o.watchMs, "--watch-ms", 1);
        const guardians = guardianUrls(o.guardian, ctx.io.env.CUSTOS_GUARDIANS);
        if (o.guardianReportMs !== undefined && guardians.length === 0)
          throw new CliError(
            "--guardian-report-ms needs --guardian <url> (or CUSTOS_GUARDIANS): there is no one to report to",
          );
        const guardianReportMs =
          o.guardianReportMs === undefined
            ? DEFAULT_REPORT_INTERVAL_MS
            : parseNumber(o.guardianReportMs, "--guardian-report-ms", 1);
        const { serveMeter } = await import("./meterRun.js");
        ctx.exit.code = await serveMeter(ctx, {
          channels,
          price,
          minClaim,
          host: o.host,
          port,
          claimMs,
          watchMs,
          timeout: o.timeout,
          guardians,
          guardianReportMs,
        });
      }),
    "meter serve",
    METER_EXAMPLES["meter serve"],
  );
  ctx.example(
    meter
      .command("pay")
      .description(
        "the payer: sign vouchers for what its meter measured (at the agreed price) and stream them to the payee",
      )
      .requiredOption("--channel <id>", "the channel this device pays through")
      .requiredOption("--payee <url>", "the payee's `meter serve` URL")
      .requiredOption("--price <amount>", "the agreed price of one unit (base units); never more is signed")
      .option("--ahead <units>", "units paid ahead of the meter (the payee delivers only while paid ahead)", "0")
      .addOption(
        new Option("--source <source>", "where the meter's readings come from")
          .choices(["simulated", "file", "stdin"])
          .default("simulated"),
      )
      .option("--readings <file>", "with --source file: cumulative units consumed, one a line")
      .option("--rate <units/s>", "simulated source: units consumed per second", "1")
      .option("--interval-ms <ms>", "how often a voucher is sent (simulated source)", "1000")
      .option("--units <n>", "stop once the meter reaches this many units")
      .option("--duration <seconds>", "stop after this long")
      .option("--device <selector>", "which loaded key when several")
      .addHelpText(
        "after",
        "\nIt stops at the end of the readings, at --units or --duration, or on SIGINT/SIGTERM, and prints what it paid.\n" +
          "Exit status: 0 every voucher accepted, 4 the payee refused one (the reason is printed), 1 the payee never answered.\n",
      )
      .action(async (o: MeterPayFlags) => {
        const channel = parseBytes32(o.channel, "--channel");
        if (!/^https?:\/\/\S+$/.test(o.payee)) throw new CliError(`--payee must be an http(s) URL, not ${o.payee}`);
        if (o.source === "file" && !o.readings) throw new CliError("--source file needs --readings <file>");
        if (o.source !== "file" && o.readings) throw new CliError("--readings goes with --source file");
        const { payMeter } = await import("./meterRun.js");
        ctx.exit.code = await payMeter(ctx, {
          channel,
          payee: o.payee.replace(/\/+$/, ""),
          price: parseInteger(o.price, "--price", { min: 1n }),
          ahead: parseInteger(o.ahead, "--ahead", { min: 0n }),
          source: o.source,
          readings: o.readings,
          rate: parseInteger(o.rate, "--rate", { min: 0n }),
          intervalMs: parseNumber(o.intervalMs, "--interval-ms", 1),
          units: o.units === undefined ? undefined : parseInteger(o.units, "--units", { min: 1n }),
          durationS: o.duration === undefined ? undefined : parseNumber(o.duration, "--duration", 1),
          device: o.device,
        });
      }),
    "meter pay",
    METER_EXAMPLES["meter pay"],
  );
}

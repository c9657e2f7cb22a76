/**
 * `custos-agent`: the device agent's command line. Results go to stdout as JSON; logs go to stderr
 * as JSON lines. Settings come from flags, then the environment, then a JSON config file
 * (`--config`), in that order of precedence. Secrets come only from the environment or from files.
 *
 * The commands live in `commands/` by group; this file builds the program (global options, help,
 * exit statuses). Nothing heavy is imported here or there at load time, so `--help` is quick.
 */
import { Command, CommanderError } from "commander";
import {
  CliError,
  EXIT,
  EXIT_HELP,
  makeLogger,
  resolveConfig,
  type AgentConfig,
  type Ctx,
  type Io,
} from "./commands/common.js";
import { GUEST_EXAMPLES, registerGuest } from "./commands/guest.js";
import { KEY_EXAMPLES, registerKey } from "./commands/key.js";
import { LOCK_EXAMPLES, registerLock } from "./commands/lock.js";
import { METER_EXAMPLES, registerMeter } from "./commands/meter.js";
import { OUTBOX_EXAMPLES, registerOutbox } from "./commands/outbox.js";
import { SEND_EXAMPLES, registerSend } from "./commands/send.js";
import { BEACON_EXAMPLES, registerBeacon } from "./commands/beacon.js";
import { TRACKER_EXAMPLES, registerTracker } from "./commands/tracker.js";

export { CliError, EXIT, resolveConfig, type AgentConfig } from "./commands/common.js";
export { parseDeadline } from "./commands/common.js";

/** One example per command: shown in the root help and in each command's help. */
export const EXAMPLES: Record<string, string> = {
  ...KEY_EXAMPLES,
  ...SEND_EXAMPLES,
  ...BEACON_EXAMPLES,
  ...OUTBOX_EXAMPLES,
  ...GUEST_EXAMPLES,
  ...LOCK_EXAMPLES,
  ...TRACKER_EXAMPLES,
  ...METER_EXAMPLES,
};

export function buildProgram(io: Io, exit: { code: number }): Command {
  const program = new Command("custos-agent");
  let cachedConfig: AgentConfig | undefined;
  const config = (): AgentConfig => {
    cachedConfig ??= resolveConfig(
      program.opts(),
      io.env,
      (program.opts().config as string | undefined) ?? (io.env.CUSTOS_CONFIG || undefined),
    );
    return cachedConfig;
  };
  const ctx: Ctx = {
    io,
    exit,
    config,
    logger: () => makeLogger(config(), io),
    example(cmd, _name, text) {
      return cmd.addHelpText("after", `\nExample:\n  ${text}\n`);
    },
  };

  program
    .description(
      "Custos device agent: device keys, EIP-712 signing, a durable outbox, delivery over JSON-RPC or the relayer;\n" +
        "roles: lock, tracker, meter (payer and payee).\n" +
        "Settings: flags > environment > --config JSON file. Secrets only from the environment or files:\n" +
        "CUSTOS_PASSWORD (or --password-file), CUSTOS_PAYER_KEY or --payer-keystore with CUSTOS_PAYER_PASSWORD.\n" +
        "Before it starts, the agent checks --rpc, each contract address and the device's key (one line names the flag to fix).",
    )
    .configureOutput({ writeOut: (s) => io.stdout.write(s), writeErr: (s) => io.stderr.write(s) })
    .exitOverride()
    .showHelpAfterError("(add --help for usage)")
    .option("--config <file>", "JSON config file (CUSTOS_CONFIG); keys as in the flags, camelCase")
    .option("--rpc <url>", "JSON-RPC URL of the node (CUSTOS_RPC_URL)")
    .option("--relayer <url>", "relayer gateway base URL; messages go through it (CUSTOS_RELAYER_URL)")
    .option("--registry <address>", "DeviceRegistry address (CUSTOS_REGISTRY)")
    .option(
      "--location-beacons <address>",
      "LocationBeacons address, for a device that posts location beacons while quarantined (CUSTOS_LOCATION_BEACONS)",
    )
    .option("--lock-access <address>", "LockAccess address, for a lock that anchors its log (CUSTOS_LOCK_ACCESS)")
    .option("--payment-channels <address>", "PaymentChannels address, for a meter (CUSTOS_PAYMENT_CHANNELS)")
    .option("--custody-ledger <address>", "CustodyLedger address, for a tracker (CUSTOS_CUSTODY_LEDGER)")
    .option("--chain-id <n>", "chain id (CUSTOS_CHAIN_ID; read from --rpc when absent)")
    .option(
      "--keystore <file>",
      "device key file; repeat for several devices (CUSTOS_KEYSTORE, comma-separated)",
      (v: string, prev: string[] = []) => [...prev, v],
    )
    .option("--password-file <file>", "file holding the key passphrase (CUSTOS_PASSWORD_FILE; or CUSTOS_PASSWORD)")
    .option("--payer-keystore <file>", "Web3 keystore of the account that pays gas (CUSTOS_PAYER_KEYSTORE)")
    .option("--payer-password-file <file>", "its passphrase file (CUSTOS_PAYER_PASSWORD_FILE)")
    .option("--data-dir <dir>", "where the outbox lives (CUSTOS_DATA_DIR; default .custos-agent)")
    .option("--verifier <address>", "ERC-7913 verifier of P-256 keys (CUSTOS_P256_VERIFIER)")
    .option("--log-level <level>", "debug | info | warn | error | silent (CUSTOS_LOG_LEVEL; default info)")
    .option("--ttl <seconds>", "default signature lifetime (CUSTOS_TTL; default 3600)")
    .option("--poll-ms <ms>", "receipt / status polling interval (CUSTOS_POLL_MS; default 1000)")
    .option("--backoff-max-ms <ms>", "longest retry delay while the node or relayer is down (default 30000)")
    .option("--confirmations <n>", "blocks before a message counts as landed (CUSTOS_CONFIRMATIONS; default 1)");

  registerKey(program, ctx);
  registerSend(program, ctx);
  registerBeacon(program, ctx);
  registerOutbox(program, ctx);
  registerGuest(program, ctx);
  registerLock(program, ctx);
  registerTracker(program, ctx);
  registerMeter(program, ctx);

  program.addHelpText(
    "after",
    () =>
      "\nExamples:\n" +
      Object.entries(EXAMPLES)
        .map(([cmd, ex]) => `  ${cmd.padEnd(18)} ${ex}`)
        .join("\n") +
      "\n\n" +
      EXIT_HELP +
      "\n",
  );
  for (const cmd of program.commands) addExitHelp(cmd);
  return program;
}

/** Every runnable command's help ends with the exit statuses. */
function addExitHelp(cmd: Command): void {
  if (cmd.commands.length > 0) cmd.commands.forEach(addExitHelp);
  else cmd.addHelpText("after", `\n${EXIT_HELP}\n`);
}

/** Runs the CLI; resolves to the exit status (see {@link EXIT}). */
export async function main(argv: string[] = process.argv, io: Io = process): Promise<number> {
  const exit = { code: 0 };
  const program = buildProgram(io, exit);
  try {
    await program.parseAsync(argv);
    return exit.code;
  } catch (err) {
    if (err instanceof CommanderError) {
      // Help and version end here too, with status 0.
      return err.exitCode === 0 ? EXIT.ok : EXIT.usage;
    }
    const name = (err as Error)?.name;
    if (
      err instanceof CliError ||
      name === "KeystoreError" ||
      name === "AgentError" ||
      name === "PreflightError" ||
      name === "MeterError"
    ) {
      io.stderr.write(`custos-agent: error: ${(err as Error).message}\n`);
      return EXIT.usage;
    }
    io.stderr.write(`custos-agent: failed: ${(err as Error).stack ?? String(err)}\n`);
    return EXIT.failure;
  }
}

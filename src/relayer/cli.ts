/**
 * `npm run relayer -- --rpc URL --port N --keystore FILE [--registry ADDRESS …] [options]`
 *
 * Every flag can also come from the environment (CUSTOS_RELAYER_<FLAG>, e.g. CUSTOS_RELAYER_RPC);
 * the keystore's password from --password-file or CUSTOS_RELAYER_PASSWORD. The suite's contracts
 * come from their flags, else from the Ignition deployment (`--deployment`, or the Custos module's
 * deployment of the chain the node runs) — every one it learns is on its allowlist. Logs are JSON
 * lines on stdout. A failure to start is one line on stderr naming the flag to change, exit code 2
 * for a setting, 1 for anything else. SIGINT/SIGTERM close it cleanly; a kill -9 loses nothing it
 * accepted.
 *
 * CUSTOS_RELAYER_FAILPOINT=before-broadcast[:N] | after-broadcast[:N] makes the process kill itself
 * (SIGKILL) the Nth time it reaches that point: crash tests use it; never set it in production.
 */
import path from "node:path";
import { Command, Option } from "commander";
import { address, int, runService, stopOnSignals } from "../deploy/service.js";
import type { RelayerHooks } from "./config.js";
import { DEFAULTS } from "./config.js";
import { openKeystoreSetting, suiteAddresses } from "../deploy/addresses.js";

function collect(value: string, previous: string[] = []): string[] {
  return [...previous, ...value.split(",").filter(Boolean).map(address)];
}

function failpointHooks(spec: string | undefined): RelayerHooks {
  if (!spec) return {};
  const [point, nth] = spec.split(":");
  let count = 0;
  const crash = () => {
    if (++count >= Number(nth ?? 1)) process.kill(process.pid, "SIGKILL");
  };
  if (point === "before-broadcast") return { beforeBroadcast: crash };
  if (point === "after-broadcast") return { afterBroadcast: crash };
  throw new Error(`unknown failpoint ${point}`);
}

const env = (name: string) => `CUSTOS_RELAYER_${name}`;

export const program = new Command()
  .name("custos-relayer")
  .description(
    "Custos relayer gateway: checks signed device messages and forward requests, batches them, pays the gas.",
  )
  .addOption(new Option("--rpc <url>", "JSON-RPC URL of the chain").env(env("RPC")).makeOptionMandatory())
  .addOption(
    new Option("--keystore <file>", "the relayer's funded account, Web3 Secret Storage JSON")
      .env(env("KEYSTORE"))
      .makeOptionMandatory(),
  )
  .addOption(new Option("--password-file <file>", "file holding the keystore password (else CUSTOS_RELAYER_PASSWORD)"))
  .addOption(
    new Option("--registry <address>", "DeviceRegistry address (default: the Ignition deployment's)")
      .env(env("REGISTRY"))
      .argParser(address),
  )
  .addOption(
    new Option(
      "--deployment <file>",
      "Ignition deployment (deployed_addresses.json or its folder) to take the suite's addresses from " +
        "(default: ./ignition/deployments/chain-<id> of the node's chain, when it holds --registry)",
    ).env(env("DEPLOYMENT")),
  )
  .addOption(
    new Option("--location-beacons <address>", "LocationBeacons address (without it, location beacons are refused)")
      .env(env("LOCATION_BEACONS"))
      .argParser(address),
  )
  .addOption(
    new Option("--lock-access <address>", "LockAccess address (without it, locks' log anchors are refused)")
      .env(env("LOCK_ACCESS"))
      .argParser(address),
  )
  .addOption(
    new Option("--payment-channels <address>", "PaymentChannels address (without it, vouchers are refused)")
      .env(env("PAYMENT_CHANNELS"))
      .argParser(address),
  )
  .addOption(
    new Option("--custody-ledger <address>", "CustodyLedger address (without it, checkpoints are refused)")
      .env(env("CUSTODY_LEDGER"))
      .argParser(address),
  )
  .addOption(
    new Option("--chain-id <id>", "the chain id the node must have (checked at start)")
      .env(env("CHAIN_ID"))
      .argParser(int("chain id")),
  )
  .addOption(
    new Option("--forwarder <address>", "ERC2771Forwarder address (default: the registry's trusted forwarder)")
      .env(env("FORWARDER"))
      .argParser(address),
  )
  .addOption(new Option("--host <host>", "interface to listen on").env(env("HOST")).default(DEFAULTS.host))
  .addOption(new Option("--port <n>", "port to listen on").env(env("PORT")).argParser(int("port")).default(8787))
  .addOption(
    new Option("--data <dir>", "directory of the durable intake log").env(env("DATA")).default(".custos/relayer"),
  )
  .addOption(
    new Option("--batch-size <n>", "most messages per transaction")
      .env(env("BATCH_SIZE"))
      .argParser(int("batch size"))
      .default(DEFAULTS.batchSize),
  )
  .addOption(
    new Option("--batch-interval-ms <n>", "how long a batch waits to fill")
      .env(env("BATCH_INTERVAL_MS"))
      .argParser(int("batch interval"))
      .default(DEFAULTS.batchIntervalMs),
  )
  .addOption(
    new Option("--gas-cap <n>", "most gas one message may cost")
      .env(env("GAS_CAP"))
      .argParser(int("gas cap"))
      .default(Number(DEFAULTS.gasCap)),
  )
  .addOption(
    new Option("--rate-limit <n>", "messages per device key (or signer) per minute")
      .env(env("RATE_LIMIT"))
      .argParser(int("rate limit"))
      .default(DEFAULTS.rateLimit),
  )
  .addOption(
    new Option("--p256-verifier <address>", "an allowed P-256 verifier (repeatable; others are asked of the registry)")
      .env(env("P256_VERIFIERS"))
      .argParser(collect),
  )
  .addOption(
    new Option("--forward-target <address>", "a target forward requests may call besides the registry (repeatable)")
      .env(env("FORWARD_TARGETS"))
      .argParser(collect),
  )
  .addOption(
    new Option("--poll-interval-ms <n>", "how often the chain head is polled")
      .env(env("POLL_INTERVAL_MS"))
      .argParser(int("poll interval"))
      .default(DEFAULTS.pollIntervalMs),
  )
  .addOption(
    new Option("--refusal-feed-size <n>", "refusals of signed device messages kept for GET /v1/refusals (0: no feed)")
      .env(env("REFUSAL_FEED_SIZE"))
      .argParser(int("refusal feed size"))
      .default(DEFAULTS.refusalFeedSize),
  )
  .addOption(new Option("--log-level <level>", "pino log level").env(env("LOG_LEVEL")).default(DEFAULTS.logLevel))
  .addHelpText(
    "after",
    `
Examples:
  # the suite's addresses from this chain's Ignition deployment (npx hardhat ignition deploy …)
  npm run relayer -- --rpc http://127.0.0.1:8545 --port 8787 --keystore relayer.json --password-file relayer.pw
  # or named one by one (each contract not named is refused as target_not_allowed)
  npm run relayer -- --rpc http://127.0.0.1:8545 --port 8787 --keystore relayer.json \\
    --password-file relayer.pw --registry 0x9fE46736679d2D9a65F0992F2272dE9f3c7fa6e0 \\
    --location-beacons 0xCf7Ed3AccA5a467e9e704C703E8D87F634fB0Fc9 --lock-access 0x…`,
  );

interface Options {
  rpc: string;
  keystore: string;
  passwordFile?: string;
  registry?: string;
  deployment?: string;
  locationBeacons?: string;
  lockAccess?: string;
  paymentChannels?: string;
  custodyLedger?: string;
  chainId?: number;
  forwarder?: string;
  host: string;
  port: number;
  data: string;
  batchSize: number;
  batchIntervalMs: number;
  gasCap: number;
  rateLimit: number;
  p256Verifier?: string[];
  forwardTarget?: string[];
  pollIntervalMs: number;
  refusalFeedSize: number;
  logLevel: string;
}

export async function main(argv = process.argv): Promise<void> {
  const o = program.parse(argv).opts<Options>();
  const privateKey = await openKeystoreSetting(o.keystore, o.passwordFile, "CUSTOS_RELAYER_PASSWORD");
  const { addresses, from } = await suiteAddresses(
    {
      registry: o.registry,
      locationBeacons: o.locationBeacons,
      lockAccess: o.lockAccess,
      paymentChannels: o.paymentChannels,
      custodyLedger: o.custodyLedger,
      forwarder: o.forwarder,
    },
    o.deployment,
    async () => {
      const { chainIdOf } = await import("./preflight.js");
      return chainIdOf(o.rpc);
    },
  );
  const { startRelayer } = await import("./server.js"); // loaded only when running (keeps --help quick)
  // Before it starts: its "listening" line comes from inside, and whoever waits for it may signal at once.
  let relayer: Awaited<ReturnType<typeof startRelayer>> | undefined;
  stopOnSignals(async () => {
    await relayer?.close();
  });
  relayer = await startRelayer({
    rpc: o.rpc,
    privateKey,
    accountSource: `--keystore ${o.keystore}`,
    registry: addresses.registry!,
    locationBeacons: addresses.locationBeacons,
    lockAccess: addresses.lockAccess,
    paymentChannels: addresses.paymentChannels,
    custodyLedger: addresses.custodyLedger,
    forwarder: addresses.forwarder,
    chainId: o.chainId,
    dataDir: path.resolve(o.data),
    host: o.host,
    port: o.port,
    batchSize: o.batchSize,
    batchIntervalMs: o.batchIntervalMs,
    gasCap: o.gasCap,
    rateLimit: o.rateLimit,
    p256Verifiers: o.p256Verifier,
    forwardTargets: o.forwardTarget,
    pollIntervalMs: o.pollIntervalMs,
    refusalFeedSize: o.refusalFeedSize,
    logLevel: o.logLevel,
    hooks: failpointHooks(process.env.CUSTOS_RELAYER_FAILPOINT),
  });
  if (from && o.logLevel !== "silent")
    process.stdout.write(
      JSON.stringify({
        level: 30,
        event: "deployment",
        file: from,
        msg: "suite addresses from the Ignition deployment",
      }) + "\n",
    );
}

if (import.meta.main) runService("custos-relayer", () => main(), ["StartError"]);

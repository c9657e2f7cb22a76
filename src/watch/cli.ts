/**
 * `npm run watch -- --rpc URL [--keystore FILE] [options]`: the watch against a node — the index
 * and its API, signed webhooks, and (with a funded key) the watchtower — on one port.
 *
 * Every flag can also come from the environment (CUSTOS_WATCH_<FLAG>, e.g. CUSTOS_WATCH_RPC); the
 * database from --database-url or DATABASE_URL (PGlite under --data without one). The suite's
 * contracts come from their flags, else from the Ignition deployment (`--deployment`, or the Custos
 * module's deployment of the chain the node runs). Logs are JSON lines on stdout. A failure to start
 * is one line on stderr naming the flag to change, exit code 2 for a setting, 1 for anything else.
 */
import path from "node:path";
import { Command, Option } from "commander";
import { address, int, runService, stopOnSignals } from "../deploy/service.js";
import { SettingError, openKeystoreSetting, suiteAddresses, type SuiteAddressFlags } from "../deploy/addresses.js";

const env = (name: string) => `CUSTOS_WATCH_${name}`;

const CONTRACTS = [
  ["registry", "--registry", "DeviceRegistry"],
  ["guardianQuorum", "--guardian-quorum", "GuardianQuorum (default: the registry's)"],
  ["locationBeacons", "--location-beacons", "LocationBeacons"],
  ["lockAccess", "--lock-access", "LockAccess"],
  ["paymentChannels", "--payment-channels", "PaymentChannels"],
  ["custodyLedger", "--custody-ledger", "CustodyLedger"],
  ["p256Verifier", "--p256-verifier", "the registry's ERC-7913 P-256 verifier"],
] as const;

export const program = new Command()
  .name("custos-watch")
  .description("Custos watch: keeps the suite queryable, sends signed webhooks, and marks and answers on chain.")
  .addOption(new Option("--rpc <url>", "JSON-RPC URL of the chain").env(env("RPC")).makeOptionMandatory())
  .addOption(
    new Option(
      "--deployment <file>",
      "Ignition deployment (deployed_addresses.json or its folder) to take the suite's addresses from " +
        "(default: ./ignition/deployments/chain-<id> of the node's chain)",
    ).env(env("DEPLOYMENT")),
  );
for (const [, flag, what] of CONTRACTS)
  program.addOption(
    new Option(`${flag} <address>`, `${what} address (default: the Ignition deployment's)`)
      .env(env(flag.slice(2).toUpperCase().replaceAll("-", "_")))
      .argParser(address),
  );
program
  .addOption(
    new Option("--start-block <n>", "the block the suite was deployed in (the index starts there)")
      .env(env("START_BLOCK"))
      .argParser(int("start block"))
      .default(0),
  )
  .addOption(new Option("--host <host>", "interface to listen on").env(env("HOST")).default("127.0.0.1"))
  .addOption(new Option("--port <n>", "port to listen on").env(env("PORT")).argParser(int("port")).default(8790))
  .addOption(
    new Option("--data <dir>", "where the watch keeps its index (PGlite), subscriptions, deliveries and outbox")
      .env(env("DATA"))
      .default(".custos/watch"),
  )
  .addOption(
    new Option("--database-url <url>", "PostgreSQL connection string (default: PGlite under --data)").env(
      "DATABASE_URL",
    ),
  )
  .addOption(
    new Option("--keystore <file>", "the watchtower's funded account (without it the tower only watches)").env(
      env("KEYSTORE"),
    ),
  )
  .addOption(new Option("--password-file <file>", "file holding the keystore password (else CUSTOS_WATCH_PASSWORD)"))
  .addOption(
    new Option("--payee-store <dir>", "a `custos-agent meter serve` payee's data directory (repeatable)")
      .env(env("PAYEE_STORES"))
      .argParser((value: string, previous: string[] = []) => [...previous, ...value.split(",").filter(Boolean)]),
  )
  .addOption(
    new Option("--log-level <level>", "info; warn to log only problems; debug adds Ponder's own lines")
      .choices(["debug", "info", "warn", "silent"])
      .env(env("LOG_LEVEL"))
      .default("info"),
  )
  .addHelpText(
    "after",
    `
Examples:
  # against the local node, the suite's addresses from its Ignition deployment, PGlite under .custos/watch
  npm run watch -- --rpc http://127.0.0.1:8545
  # with a real PostgreSQL, and the watchtower paying with its own funded key
  DATABASE_URL=postgres://custos:secret@127.0.0.1/custos npm run watch -- --rpc http://127.0.0.1:8545 \\
    --keystore tower.json --password-file tower.pw`,
  );

interface Options extends Partial<Record<(typeof CONTRACTS)[number][0], string>> {
  rpc: string;
  deployment?: string;
  startBlock: number;
  host: string;
  port: number;
  data: string;
  databaseUrl?: string;
  keystore?: string;
  passwordFile?: string;
  payeeStore?: string[];
  logLevel: "debug" | "info" | "warn" | "silent";
}

export async function main(argv = process.argv): Promise<void> {
  const o = program.parse(argv).opts<Options>();
  const { chainIdOf } = await import("../relayer/preflight.js");
  const chainId = await chainIdOf(o.rpc);
  const given: SuiteAddressFlags = {};
  for (const [key] of CONTRACTS) if (o[key]) given[key] = o[key];
  const { addresses, from } = await suiteAddresses(given, o.deployment, async () => chainId);
  if (addresses.registry && !addresses.guardianQuorum) {
    const { JsonRpcProvider } = await import("ethers");
    const { DeviceRegistry__factory } = await import("../../typechain-types/index.js");
    const provider = new JsonRpcProvider(o.rpc, chainId, { staticNetwork: true });
    addresses.guardianQuorum = await DeviceRegistry__factory.connect(addresses.registry, provider).guardianQuorum();
    provider.destroy();
  }
  for (const [key, flag] of CONTRACTS)
    if (key !== "p256Verifier" && !addresses[key])
      throw new SettingError(`${flag} is required: the Ignition deployment does not name it (or give --deployment)`);
  const towerKey = o.keystore
    ? await openKeystoreSetting(o.keystore, o.passwordFile, "CUSTOS_WATCH_PASSWORD")
    : undefined;
  const { createLogger } = await import("../agent/log.js");
  const log = createLogger({ level: o.logLevel, stream: process.stdout });
  if (from) log.info("suite addresses from the Ignition deployment", { event: "deployment", file: from });
  const { startWatch } = await import("./watch.js"); // loaded only when running (keeps --help quick)
  const watch = await startWatch({
    rpcUrl: o.rpc,
    chainId: Number(chainId),
    addresses: addresses as Required<typeof addresses>,
    startBlock: o.startBlock,
    host: o.host,
    port: o.port,
    dataDir: path.resolve(o.data),
    databaseUrl: o.databaseUrl,
    towerKey,
    payeeStores: o.payeeStore?.map((d) => path.resolve(d)),
    waitFor: "serving",
    log,
  });
  // Before "listening": whoever waits for that line may signal at once.
  stopOnSignals(() => watch.stop());
  log.info(`watch on ${watch.url}: /graphql, /sql, /watch/status, /subscriptions`, {
    event: "listening",
    url: watch.url,
    tower: watch.tower ? watch.tower.address : "off (no --keystore: nothing is marked or answered on chain)",
  });
}

if (import.meta.main) runService("custos-watch", () => main(), ["StartError", "AgentError"]);

/**
 * `npm run guardian -- --rpc URL --watch URL --keystore FILE --policy FILE [options]`: one guardian
 * against a node and a watch — it evaluates its policy over the watch's index at every new block,
 * votes in the GuardianQuorum with its own funded key, and serves its evidence on `--port`, where
 * devices post signed position reports and payees their payers' vouchers; `--relayer` names relayers
 * whose refusals of device-signed messages it reads.
 *
 * Every flag can also come from the environment (CUSTOS_GUARDIAN_<FLAG>, e.g. CUSTOS_GUARDIAN_RPC);
 * the keystore's password from --password-file or CUSTOS_GUARDIAN_PASSWORD. The registry and the
 * quorum come from their flags, else from the Ignition deployment (`--deployment`, or the Custos
 * module's deployment of the chain the node runs); the quorum, else, from the registry. Logs are JSON
 * lines on stdout. A failure to start is one line on stderr naming the flag to change, exit code 2
 * for a setting, 1 for anything else.
 */
import path from "node:path";
import { Command, Option } from "commander";
import { address, int, runService, stopOnSignals } from "../../deploy/service.js";
import { SettingError, openKeystoreSetting, suiteAddresses } from "../../deploy/addresses.js";

const env = (name: string) => `CUSTOS_GUARDIAN_${name}`;

const httpUrl = (flag: string) => (value: string) => {
  if (!/^https?:\/\/\S+$/.test(value)) throw new SettingError(`${flag} must be an http(s) URL, not ${value}`);
  return value.replace(/\/+$/, "");
};

export const program = new Command()
  .name("custos-guardian")
  .description("Custos guardian: votes to quarantine devices that break its policy, and to clear them, with evidence.")
  .addOption(new Option("--rpc <url>", "JSON-RPC URL of the chain").env(env("RPC")).makeOptionMandatory())
  .addOption(
    new Option("--watch <url>", "the watch (npm run watch) or its indexer: its /watch/status and /graphql")
      .env(env("WATCH"))
      .makeOptionMandatory(),
  )
  .addOption(
    new Option("--keystore <file>", "the guardian's funded account (holds GUARDIAN_ROLE), Web3 Secret Storage JSON")
      .env(env("KEYSTORE"))
      .makeOptionMandatory(),
  )
  .addOption(new Option("--password-file <file>", "file holding the keystore password (else CUSTOS_GUARDIAN_PASSWORD)"))
  .addOption(
    new Option("--policy <file>", "the policy (JSON, src/guardian/policy/schema.json); edits apply at the next block")
      .env(env("POLICY"))
      .makeOptionMandatory(),
  )
  .addOption(
    new Option("--deployment <file>", "Ignition deployment to take the suite's addresses from").env(env("DEPLOYMENT")),
  )
  .addOption(new Option("--registry <address>", "DeviceRegistry address").env(env("REGISTRY")).argParser(address))
  .addOption(
    new Option("--guardian-quorum <address>", "GuardianQuorum address (default: the registry's)")
      .env(env("GUARDIAN_QUORUM"))
      .argParser(address),
  )
  .addOption(
    new Option("--owner <address>", "watch only this owner's devices (repeatable; default: every device)")
      .env(env("OWNERS"))
      .argParser((value: string, previous: string[] = []) => [
        ...previous,
        ...value.split(",").filter(Boolean).map(address),
      ]),
  )
  .addOption(
    new Option("--relayer <url>", "a relayer whose refusal feed (GET /v1/refusals) it reads (repeatable)")
      .env(env("RELAYERS"))
      .argParser((value: string, previous: string[] = []) => [
        ...previous,
        ...value.split(",").filter(Boolean).map(httpUrl("--relayer")),
      ]),
  )
  .addOption(
    new Option(
      "--payment-channels <address>",
      "PaymentChannels address, to check vouchers payees report (default: the Ignition deployment's)",
    )
      .env(env("PAYMENT_CHANNELS"))
      .argParser(address),
  )
  .addOption(new Option("--host <host>", "interface to serve the evidence on").env(env("HOST")).default("127.0.0.1"))
  .addOption(
    new Option("--port <n>", "port of GET /evidence/:hash").env(env("PORT")).argParser(int("port")).default(8791),
  )
  .addOption(
    new Option("--data <dir>", "where the guardian keeps its outbox and its evidence")
      .env(env("DATA"))
      .default(".custos/guardian"),
  )
  .addOption(
    new Option("--log-level <level>", "info; warn to log only problems; debug adds the sender's steps")
      .choices(["debug", "info", "warn", "silent"])
      .env(env("LOG_LEVEL"))
      .default("info"),
  )
  .addHelpText(
    "after",
    `
Example:
  npm run guardian -- --rpc http://127.0.0.1:8545 --watch http://127.0.0.1:8790 \\
    --keystore guardian-1.json --password-file guardian-1.pw --policy src/guardian/policy/default.json --port 8791`,
  );

interface Options {
  rpc: string;
  watch: string;
  keystore: string;
  passwordFile?: string;
  policy: string;
  deployment?: string;
  registry?: string;
  guardianQuorum?: string;
  owner?: string[];
  relayer?: string[];
  paymentChannels?: string;
  host: string;
  port: number;
  data: string;
  logLevel: "debug" | "info" | "warn" | "silent";
}

export async function main(argv = process.argv): Promise<void> {
  const o = program.parse(argv).opts<Options>();
  const { loadPolicy, PolicyError } = await import("../policy/index.js");
  try {
    loadPolicy(o.policy); // refused here, by name, before anything starts
  } catch (err) {
    // One line: every problem, each naming its field.
    const what = err instanceof PolicyError ? err.problems.join("; ") : (err as Error).message.split("\n")[0];
    throw new SettingError(`--policy ${o.policy}: ${what}`);
  }
  const { chainIdOf } = await import("../../relayer/preflight.js");
  const chainId = await chainIdOf(o.rpc);
  const { addresses, from } = await suiteAddresses(
    { registry: o.registry, guardianQuorum: o.guardianQuorum, paymentChannels: o.paymentChannels },
    o.deployment,
    async () => chainId,
  );
  if (!addresses.registry) throw new SettingError("--registry is required: the Ignition deployment does not name it");
  if (!addresses.guardianQuorum) {
    const { JsonRpcProvider } = await import("ethers");
    const { DeviceRegistry__factory } = await import("../../../typechain-types/index.js");
    const provider = new JsonRpcProvider(o.rpc, chainId, { staticNetwork: true });
    addresses.guardianQuorum = await DeviceRegistry__factory.connect(addresses.registry, provider).guardianQuorum();
    provider.destroy();
  }
  const key = await openKeystoreSetting(o.keystore, o.passwordFile, "CUSTOS_GUARDIAN_PASSWORD");
  const { createLogger } = await import("../../agent/log.js");
  const log = createLogger({ level: o.logLevel, stream: process.stdout });
  if (from) log.info("suite addresses from the Ignition deployment", { event: "deployment", file: from });
  const { startGuardian } = await import("./index.js"); // loaded only when running (keeps --help quick)
  const guardian = await startGuardian({
    rpcUrl: o.rpc,
    chainId,
    watchUrl: o.watch,
    addresses: { ...addresses, registry: addresses.registry, guardianQuorum: addresses.guardianQuorum },
    relayers: o.relayer,
    key,
    policyFile: path.resolve(o.policy),
    dataDir: path.resolve(o.data),
    host: o.host,
    port: o.port,
    owners: o.owner,
    log,
  });
  // Before "listening": whoever waits for that line may signal at once.
  stopOnSignals(() => guardian.stop());
  log.info(`guardian ${guardian.address} serving evidence on ${guardian.url}/evidence/:hash`, {
    event: "listening",
    url: guardian.url,
    guardian: guardian.address,
  });
}

if (import.meta.main) runService("custos-guardian", () => main(), ["AgentError", "PolicyError"]);

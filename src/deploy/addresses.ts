/**
 * Where the suite is: each contract's address from its flag, else from the Ignition deployment
 * (`--deployment`, or the Custos module's deployment of the chain the node runs, kept in
 * ./ignition/deployments/chain-<id>). Shared by the services that take the suite's addresses on
 * their command line (the relayer, the watch).
 */
import { existsSync, readFileSync, statSync } from "node:fs";
import path from "node:path";

/** A setting the operator must change: printed as one line, exit code 2. */
export class SettingError extends Error {}

/** The Ignition future ids of the Custos module, by setting. */
const IGNITION_IDS = {
  registry: "Custos#DeviceRegistry",
  locationBeacons: "Custos#LocationBeacons",
  lockAccess: "Custos#LockAccess",
  paymentChannels: "Custos#PaymentChannels",
  custodyLedger: "Custos#CustodyLedger",
  forwarder: "Custos#ERC2771Forwarder",
  guardianQuorum: "Custos#GuardianQuorum",
  p256Verifier: "Custos#ERC7913P256SHA256Verifier",
} as const;

export type SuiteAddressFlags = { -readonly [K in keyof typeof IGNITION_IDS]?: string };
type Addresses = SuiteAddressFlags;

/**
 * The suite's addresses: each flag, else the Ignition deployment — `--deployment`, or this chain's
 * (used only when it holds `--registry`, or when `--registry` is not given).
 */
export async function suiteAddresses(
  given: Addresses,
  deployment: string | undefined,
  chainIdOf: () => Promise<bigint>,
): Promise<{ addresses: Addresses; from?: string }> {
  const o = { ...given, deployment };
  const flags: Addresses = {};
  for (const key of Object.keys(IGNITION_IDS) as (keyof Addresses)[]) if (given[key]) flags[key] = given[key];
  let file: string | undefined;
  if (o.deployment) {
    file = o.deployment;
    if (existsSync(file) && statSync(file).isDirectory()) file = path.join(file, "deployed_addresses.json");
    if (!existsSync(file)) throw new SettingError(`--deployment ${o.deployment}: no deployed_addresses.json there`);
  } else {
    const chainId = await chainIdOf();
    // `npm run relayer` runs in the project's root, where Ignition keeps its deployments.
    const candidate = path.resolve("ignition", "deployments", `chain-${chainId}`, "deployed_addresses.json");
    if (existsSync(candidate)) file = candidate;
    else if (!o.registry)
      throw new SettingError(
        `--registry is required: no Ignition deployment of chain ${chainId} at ${path.relative(process.cwd(), candidate)} (or name one with --deployment)`,
      );
  }
  if (!file) return { addresses: flags };
  let deployed: Record<string, string>;
  try {
    deployed = JSON.parse(readFileSync(file, "utf8")) as Record<string, string>;
  } catch (err) {
    throw new SettingError(`--deployment ${file}: not JSON (${(err as Error).message})`);
  }
  const registry = deployed[IGNITION_IDS.registry];
  if (!registry) {
    if (o.deployment || !o.registry)
      throw new SettingError(`--deployment ${file}: holds no ${IGNITION_IDS.registry} (not a Custos deployment?)`);
    return { addresses: flags };
  }
  if (o.registry && registry.toLowerCase() !== o.registry.toLowerCase()) {
    if (o.deployment)
      throw new SettingError(
        `--deployment ${file}: its registry is ${registry}, not --registry ${o.registry} (another deployment?)`,
      );
    return { addresses: flags }; // this chain's deployment is another one: only the flags count
  }
  const addresses: Addresses = { ...flags };
  for (const [key, id] of Object.entries(IGNITION_IDS) as [keyof Addresses, string][]) addresses[key] ??= deployed[id];
  return { addresses, from: path.relative(process.cwd(), file) };
}

/**
 * The private key in a Web3 Secret Storage keystore (`--keystore`), its password from
 * `--password-file` or the environment variable `passwordVariable`. Each failure names the setting
 * to change (a wrong password by where it came from).
 */
export async function openKeystoreSetting(
  keystore: string,
  passwordFile: string | undefined,
  passwordVariable: string,
): Promise<string> {
  let password: string | undefined;
  let passwordSource = passwordVariable;
  if (passwordFile) {
    passwordSource = `--password-file ${passwordFile}`;
    try {
      password = readFileSync(passwordFile, "utf8").replace(/\r?\n$/, "");
    } catch (err) {
      throw new SettingError(
        `--password-file ${passwordFile}: cannot be read (${(err as NodeJS.ErrnoException).code})`,
      );
    }
  } else password = process.env[passwordVariable];
  if (password === undefined)
    throw new SettingError(
      `--keystore ${keystore} needs its password: give --password-file FILE, or set ${passwordVariable}`,
    );
  let json: string;
  try {
    json = readFileSync(keystore, "utf8");
  } catch (err) {
    throw new SettingError(`--keystore ${keystore}: cannot be read (${(err as NodeJS.ErrnoException).code})`);
  }
  const { Wallet } = await import("ethers");
  try {
    return (await Wallet.fromEncryptedJson(json, password)).privateKey;
  } catch (err) {
    throw new SettingError(
      /password/i.test((err as Error).message)
        ? `--keystore ${keystore}: the password from ${passwordSource} does not open it (a different key's password?)`
        : `--keystore ${keystore}: not a Web3 Secret Storage JSON keystore (${(err as Error).message.split(" (")[0]})`,
    );
  }
}

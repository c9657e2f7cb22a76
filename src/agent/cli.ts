/**
 * `custos-agent`: the device agent's command line. Results go to stdout as JSON; logs go to stderr
 * as JSON lines. Settings come from flags, then the environment, then a JSON config file
 * (`--config`), in that order of precedence. Secrets come only from the environment or from files.
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import { Command, CommanderError, Option } from "commander";
import { JsonRpcProvider, Network, Wallet, getAddress } from "ethers";
import type { DeviceKeyKind, DeviceSigner } from "../crypto/deviceKey.js";
import { TYPES } from "../eip712/index.js";
import { DEVICE_MESSAGE_TYPES, checkShape, toJson, type DeviceMessageType } from "../messages/index.js";
import { deviceIdOf } from "../registry/batch.js";
import { Agent, AgentError, openAgentStack, type AgentStack } from "./agent.js";
import type { PayerSigner } from "./client.js";
import {
  KeystoreError,
  deviceKeyOf,
  generateKey,
  importKey,
  keyInfo,
  loadKeyMaterial,
  saveKeystore,
  type KeyInfo,
} from "./keystore.js";
import { createLogger, isLogLevel, type LogLevel, type Logger } from "./log.js";
import { Outbox, type OutboxEntry } from "./outbox.js";

/** A user error: names the flag, variable or field at fault; exits with status 2. */
export class CliError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "CliError";
  }
}

// ---------------------------------------------------------------- settings

export interface AgentConfig {
  rpc?: string;
  relayer?: string;
  registry?: string;
  locationBeacons?: string;
  lockAccess?: string;
  paymentChannels?: string;
  custodyLedger?: string;
  chainId?: bigint;
  keystore: string[];
  passwordFile?: string;
  payerKeystore?: string;
  payerPasswordFile?: string;
  dataDir: string;
  verifier?: string;
  logLevel: LogLevel;
  ttl: number;
  pollMs: number;
  backoffMaxMs: number;
  confirmations: number;
}

type Parser = (value: unknown, where: string) => unknown;

const str: Parser = (v, where) => {
  if (typeof v !== "string" || v.length === 0) throw new CliError(`${where} must be a non-empty string`);
  return v;
};
const url: Parser = (v, where) => {
  const s = str(v, where) as string;
  if (!/^https?:\/\/[^\s]+$/.test(s)) throw new CliError(`${where} must be an http(s) URL, not ${s}`);
  return s;
};
const address: Parser = (v, where) => parseAddress(str(v, where) as string, where);
const uint =
  (min: number): Parser =>
  (v, where) => {
    const n = typeof v === "number" ? v : Number(str(v, where));
    if (!Number.isSafeInteger(n) || n < min)
      throw new CliError(`${where} must be an integer ≥ ${min}, not ${String(v)}`);
    return n;
  };
const bigUint: Parser = (v, where) => {
  if (typeof v === "number" && Number.isSafeInteger(v) && v > 0) return BigInt(v);
  const s = str(v, where) as string;
  if (!/^[1-9][0-9]*$/.test(s)) throw new CliError(`${where} must be a positive integer, not ${s}`);
  return BigInt(s);
};
const files: Parser = (v, where) => {
  const list = Array.isArray(v) ? v : typeof v === "string" ? v.split(",") : [v];
  return list.map((f, i) => str(typeof f === "string" ? f.trim() : f, list.length > 1 ? `${where}[${i}]` : where));
};
const level: Parser = (v, where) => {
  if (!isLogLevel(v)) throw new CliError(`${where} must be one of debug, info, warn, error, silent`);
  return v;
};

/** Every setting: its flag, its environment variable, how to parse it, and its default. */
const SETTINGS: Record<keyof AgentConfig, { flag: string; env: string; parse: Parser; default?: unknown }> = {
  rpc: { flag: "--rpc", env: "CUSTOS_RPC_URL", parse: url },
  relayer: { flag: "--relayer", env: "CUSTOS_RELAYER_URL", parse: url },
  registry: { flag: "--registry", env: "CUSTOS_REGISTRY", parse: address },
  locationBeacons: { flag: "--location-beacons", env: "CUSTOS_LOCATION_BEACONS", parse: address },
  lockAccess: { flag: "--lock-access", env: "CUSTOS_LOCK_ACCESS", parse: address },
  paymentChannels: { flag: "--payment-channels", env: "CUSTOS_PAYMENT_CHANNELS", parse: address },
  custodyLedger: { flag: "--custody-ledger", env: "CUSTOS_CUSTODY_LEDGER", parse: address },
  chainId: { flag: "--chain-id", env: "CUSTOS_CHAIN_ID", parse: bigUint },
  keystore: { flag: "--keystore", env: "CUSTOS_KEYSTORE", parse: files, default: [] },
  passwordFile: { flag: "--password-file", env: "CUSTOS_PASSWORD_FILE", parse: str },
  payerKeystore: { flag: "--payer-keystore", env: "CUSTOS_PAYER_KEYSTORE", parse: str },
  payerPasswordFile: { flag: "--payer-password-file", env: "CUSTOS_PAYER_PASSWORD_FILE", parse: str },
  dataDir: { flag: "--data-dir", env: "CUSTOS_DATA_DIR", parse: str, default: ".custos-agent" },
  verifier: { flag: "--verifier", env: "CUSTOS_P256_VERIFIER", parse: address },
  logLevel: { flag: "--log-level", env: "CUSTOS_LOG_LEVEL", parse: level, default: "info" },
  ttl: { flag: "--ttl", env: "CUSTOS_TTL", parse: uint(1), default: 3600 },
  pollMs: { flag: "--poll-ms", env: "CUSTOS_POLL_MS", parse: uint(1), default: 1000 },
  backoffMaxMs: { flag: "--backoff-max-ms", env: "CUSTOS_BACKOFF_MAX_MS", parse: uint(1), default: 30_000 },
  confirmations: { flag: "--confirmations", env: "CUSTOS_CONFIRMATIONS", parse: uint(1), default: 1 },
};

/**
 * Resolves the settings: `flags` (commander's option values, keyed like {@link AgentConfig}) win
 * over `env`, which wins over the JSON config file (`configFile`, if any). Relative paths in the
 * file are relative to the file.
 */
export function resolveConfig(
  flags: Record<string, unknown>,
  env: NodeJS.ProcessEnv,
  configFile?: string,
): AgentConfig {
  let file: Record<string, unknown> = {};
  if (configFile) {
    let text: string;
    try {
      text = readFileSync(configFile, "utf8");
    } catch (err) {
      throw new CliError(`--config ${configFile}: cannot read (${(err as NodeJS.ErrnoException).code})`);
    }
    try {
      file = JSON.parse(text) as Record<string, unknown>;
    } catch {
      throw new CliError(`--config ${configFile}: not valid JSON`);
    }
    if (!file || typeof file !== "object" || Array.isArray(file)) {
      throw new CliError(`--config ${configFile}: must be a JSON object`);
    }
    for (const key of Object.keys(file)) {
      if (!(key in SETTINGS)) {
        throw new CliError(
          `--config ${configFile}: unknown setting "${key}" (known: ${Object.keys(SETTINGS).join(", ")})`,
        );
      }
    }
  }
  const base = configFile ? path.dirname(path.resolve(configFile)) : process.cwd();
  const out: Record<string, unknown> = {};
  for (const [key, s] of Object.entries(SETTINGS)) {
    const flag = flags[key];
    const fromEnv = env[s.env];
    let value: unknown;
    if (flag !== undefined && !(Array.isArray(flag) && flag.length === 0)) value = s.parse(flag, s.flag);
    else if (fromEnv !== undefined && fromEnv !== "") value = s.parse(fromEnv, s.env);
    else if (file[key] !== undefined) {
      value = s.parse(file[key], `${configFile}: ${key}`);
      if (["keystore", "passwordFile", "payerKeystore", "payerPasswordFile", "dataDir"].includes(key)) {
        value = Array.isArray(value)
          ? value.map((p: string) => path.resolve(base, p))
          : path.resolve(base, value as string);
      }
    } else value = s.default;
    if (value !== undefined) out[key] = value;
  }
  return out as unknown as AgentConfig;
}

// ---------------------------------------------------------------- input parsing

function parseAddress(v: string, where: string): string {
  try {
    return getAddress(v);
  } catch {
    throw new CliError(`${where} must be a 20-byte hex address, not ${v}`);
  }
}

function parseBytes32(v: string, where: string): string {
  if (!/^0x[0-9a-fA-F]{64}$/.test(v)) throw new CliError(`${where} must be 32 bytes of 0x-hex, not ${v}`);
  return v.toLowerCase();
}

function parseInteger(v: string, where: string, opts: { min?: bigint; max?: bigint } = {}): bigint {
  if (!/^-?[0-9]+$/.test(v)) throw new CliError(`${where} must be an integer, not ${v}`);
  const n = BigInt(v);
  if (opts.min !== undefined && n < opts.min) throw new CliError(`${where} must be at least ${opts.min}`);
  if (opts.max !== undefined && n > opts.max) throw new CliError(`${where} must be at most ${opts.max}`);
  return n;
}

/** A deadline: unix seconds, or `+N` with an optional unit s, m, h or d (from now). */
export function parseDeadline(v: string, where = "--deadline", now = Date.now()): bigint {
  const rel = /^\+([0-9]+)([smhd]?)$/.exec(v);
  if (rel) {
    const unit = { "": 1, s: 1, m: 60, h: 3600, d: 86400 }[rel[2]]!;
    return BigInt(Math.floor(now / 1000)) + BigInt(rel[1]) * BigInt(unit);
  }
  if (/^[0-9]+$/.test(v)) {
    const n = BigInt(v);
    if (n * 1000n < BigInt(now)) throw new CliError(`${where} ${v} is in the past`);
    return n;
  }
  throw new CliError(`${where} must be unix seconds or +N[s|m|h|d] (e.g. +1h), not ${v}`);
}

/** `--field name=value` pairs, checked against the type's fields in the catalogue. */
function parseFields(type: DeviceMessageType, pairs: string[]): Record<string, string> {
  const fields: Record<string, string> = {};
  const known: string[] = TYPES[type].fields.map((f) => f.name);
  for (const pair of pairs) {
    const eq = pair.indexOf("=");
    if (eq <= 0) throw new CliError(`--field must be name=value, not ${pair}`);
    const name = pair.slice(0, eq);
    if (!known.includes(name))
      throw new CliError(`--field ${name}: ${type} has no such field (fields: ${known.join(", ")})`);
    fields[name] = pair.slice(eq + 1);
  }
  return fields;
}

function readText(file: string, flag: string): string {
  try {
    return file === "-" ? readFileSync(0, "utf8") : readFileSync(file, "utf8");
  } catch (err) {
    throw new CliError(
      `${flag} ${file}: cannot read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`,
    );
  }
}

function readJson(file: string, flag: string): unknown {
  try {
    return JSON.parse(readText(file, flag));
  } catch (err) {
    if (err instanceof CliError) throw err;
    throw new CliError(`${flag} ${file}: not valid JSON`);
  }
}

// ---------------------------------------------------------------- shared wiring

interface Io {
  stdout: { write(s: string): unknown };
  stderr: { write(s: string): unknown };
  env: NodeJS.ProcessEnv;
}

function print(io: Io, value: unknown): void {
  io.stdout.write(toJson(value) + "\n");
}

function passphrase(cfg: AgentConfig, env: NodeJS.ProcessEnv): string {
  if (cfg.passwordFile) return readText(cfg.passwordFile, "--password-file").replace(/\r?\n$/, "");
  if (env.CUSTOS_PASSWORD) return env.CUSTOS_PASSWORD;
  throw new CliError("a key passphrase is needed: set CUSTOS_PASSWORD or give --password-file");
}

async function loadSigners(cfg: AgentConfig, env: NodeJS.ProcessEnv): Promise<DeviceSigner[]> {
  if (cfg.keystore.length === 0) throw new CliError("--keystore (or CUSTOS_KEYSTORE) is required");
  const pass = passphrase(cfg, env);
  return Promise.all(cfg.keystore.map(async (file) => deviceKeyOf(await loadKeyMaterial(file, pass))));
}

/** The signer `selector` names (its signer bytes, address, device id or index), or the only one. */
function pickSigner(signers: DeviceSigner[], selector: string | undefined, where = "--device"): DeviceSigner {
  if (selector === undefined) {
    if (signers.length === 1) return signers[0];
    throw new CliError(`${where} is required when several keystores are loaded`);
  }
  const s = selector.toLowerCase();
  const found = signers.find((k, i) => k.signer === s || deviceIdOf(k.signer).toString() === s || String(i) === s);
  if (!found) throw new CliError(`${where} ${selector} matches no loaded keystore`);
  return found;
}

function requireRegistry(cfg: AgentConfig): string {
  if (!cfg.registry) throw new CliError("--registry (or CUSTOS_REGISTRY) is required");
  return cfg.registry;
}

async function chainIdOf(cfg: AgentConfig): Promise<bigint> {
  if (cfg.chainId !== undefined) return cfg.chainId;
  if (!cfg.rpc) throw new CliError("--chain-id or --rpc (CUSTOS_CHAIN_ID or CUSTOS_RPC_URL) is required");
  const provider = new JsonRpcProvider(cfg.rpc, undefined, { staticNetwork: Network.from(1n), batchMaxCount: 1 });
  try {
    return BigInt(await provider.send("eth_chainId", []));
  } catch (err) {
    throw new CliError(
      `--rpc ${cfg.rpc}: cannot read the chain id (${(err as Error).message.split("\n")[0]}); give --chain-id`,
    );
  } finally {
    provider.destroy();
  }
}

async function payerOf(cfg: AgentConfig, env: NodeJS.ProcessEnv): Promise<PayerSigner | undefined> {
  if (cfg.payerKeystore) {
    const pass = cfg.payerPasswordFile
      ? readText(cfg.payerPasswordFile, "--payer-password-file").replace(/\r?\n$/, "")
      : env.CUSTOS_PAYER_PASSWORD;
    if (!pass) throw new CliError("--payer-keystore needs CUSTOS_PAYER_PASSWORD or --payer-password-file");
    try {
      return (await Wallet.fromEncryptedJson(readText(cfg.payerKeystore, "--payer-keystore"), pass)) as PayerSigner;
    } catch (err) {
      if (err instanceof CliError) throw err;
      throw new CliError(`--payer-keystore ${cfg.payerKeystore}: ${(err as Error).message.split(" (")[0]}`);
    }
  }
  if (env.CUSTOS_PAYER_KEY) {
    try {
      return new Wallet(env.CUSTOS_PAYER_KEY);
    } catch {
      throw new CliError("CUSTOS_PAYER_KEY must be a 32-byte hex private key");
    }
  }
  return undefined;
}

async function openStack(cfg: AgentConfig, io: Io, logger: Logger): Promise<AgentStack> {
  if (!cfg.rpc) throw new CliError("--rpc (or CUSTOS_RPC_URL) is required: the agent reads nonces from the chain");
  const registry = requireRegistry(cfg);
  const payer = cfg.relayer ? undefined : await payerOf(cfg, io.env);
  if (!cfg.relayer && !payer) {
    throw new CliError(
      "a way to the chain is needed: --relayer (CUSTOS_RELAYER_URL), or a payer account (--payer-keystore or CUSTOS_PAYER_KEY)",
    );
  }
  return openAgentStack({
    deployment: {
      chainId: await chainIdOf(cfg),
      registry,
      ...(cfg.locationBeacons ? { locationBeacons: cfg.locationBeacons } : {}),
      ...(cfg.lockAccess ? { lockAccess: cfg.lockAccess } : {}),
      ...(cfg.paymentChannels ? { paymentChannels: cfg.paymentChannels } : {}),
      ...(cfg.custodyLedger ? { custodyLedger: cfg.custodyLedger } : {}),
    },
    dataDir: cfg.dataDir,
    rpc: cfg.rpc,
    payer,
    relayerUrl: cfg.relayer,
    logger,
    pollMs: cfg.pollMs,
    holdMs: Math.max(cfg.pollMs, 1000),
    backoff: { baseMs: Math.min(250, cfg.backoffMaxMs), capMs: cfg.backoffMaxMs },
    confirmations: cfg.confirmations,
  });
}

function summary(entries: OutboxEntry[]) {
  return entries.map((e) => ({
    id: e.id,
    ...(e.ref === undefined ? {} : { ref: e.ref }),
    type: e.type,
    device: e.device,
    ...(e.nonce === undefined ? {} : { nonce: e.nonce }),
    state: e.state,
    ...(e.outcome ? { outcome: e.outcome } : {}),
    ...(e.reason ? { reason: e.reason } : {}),
    ...(e.txHash ? { txHash: e.txHash } : e.submission?.via === "rpc" ? { txHash: e.submission.txHash } : {}),
  }));
}

/** Delivers, reports what happened to `ids`, and closes. */
async function deliverAndReport(stack: AgentStack, io: Io, ids: string[], queueOnly: boolean): Promise<number> {
  if (!queueOnly) await stack.dispatcher.drain();
  const entries = ids.map((id) => stack.outbox.get(id)).filter((e): e is OutboxEntry => e !== undefined);
  const stats = stack.outbox.stats();
  print(io, { messages: summary(entries), outbox: stats });
  return entries.some((e) => e.outcome === "rejected") ? 1 : 0;
}

// ---------------------------------------------------------------- program

/** One example per command: shown in the root help and in each command's help. */
export const EXAMPLES: Record<string, string> = {
  "key create": "custos-agent key create --kind secp256k1 --out device.json",
  "key import": "custos-agent key import --in device-key.pem --out device.json",
  "key show": "custos-agent key show --keystore device.json",
  "sign claim":
    "custos-agent sign claim --owner 0x70997970C51812dc3A010C7d01b50e0d17dc79C8 --batch 184467440737 --deadline +1h --leaf leaf.json",
  "attest-firmware":
    "custos-agent attest-firmware --firmware-hash 0x9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
  send: "custos-agent send LocationBeacon --location-beacons 0xCf7E…0Fc9 --field latitudeE7=473700000 --field longitudeE7=85400000 --field at=1767225600",
  outbox: "custos-agent outbox --all",
  run: "custos-agent run --watch",
  "guest show": "custos-agent guest show --cert key.json",
  "guest sign-unlock":
    "custos-agent guest sign-unlock --cert key.json --challenge 0x5b3c…e1 --keystore phone.json (prints the UnlockRequest)",
  "guest unlock": "custos-agent guest unlock --cert key.json --lock http://192.168.1.20:8700 --keystore phone.json",
  "lock serve":
    "custos-agent lock serve --keystore lock.json --lock-access 0xe7f1…0512 --max-staleness 3600 --port 8700",
};

export function buildProgram(io: Io, exit: { code: number }): Command {
  const program = new Command("custos-agent");
  const logger = () => createLogger({ level: config().logLevel, stream: io.stderr });
  let cachedConfig: AgentConfig | undefined;
  const config = (): AgentConfig => {
    cachedConfig ??= resolveConfig(
      program.opts(),
      io.env,
      (program.opts().config as string | undefined) ?? (io.env.CUSTOS_CONFIG || undefined),
    );
    return cachedConfig;
  };

  program
    .description(
      "Custos device agent: device keys, EIP-712 signing, a durable outbox, delivery over JSON-RPC or the relayer.\n" +
        "Settings: flags > environment > --config JSON file. Secrets only from the environment or files:\n" +
        "CUSTOS_PASSWORD (or --password-file), CUSTOS_PAYER_KEY or --payer-keystore with CUSTOS_PAYER_PASSWORD.",
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
    .option("--confirmations <n>", "blocks before a message counts as landed (CUSTOS_CONFIRMATIONS; default 1)")
    .addHelpText(
      "after",
      "\nExamples:\n" +
        Object.entries(EXAMPLES)
          .map(([cmd, ex]) => `  ${cmd.padEnd(16)} ${ex}`)
          .join("\n") +
        "\n",
    );

  const withExample = (cmd: Command, name: string) => cmd.addHelpText("after", `\nExample:\n  ${EXAMPLES[name]}\n`);

  // ------------------------------------------------------------ key
  const key = program.command("key").description("create, import and show device keys");
  withExample(
    key
      .command("create")
      .description("create a new device key and write it encrypted (Web3 JSON for secp256k1, PKCS#8 for P-256)")
      .addOption(new Option("--kind <kind>", "key kind").choices(["secp256k1", "p256"]).makeOptionMandatory())
      .requiredOption("--out <file>", "where to write the key file")
      .option("--scrypt-n <n>", "scrypt cost of a secp256k1 key file (a power of two; default 131072)")
      .option("--force", "replace an existing file")
      .action(async (o: { kind: DeviceKeyKind; out: string; scryptN?: string; force?: boolean }) => {
        const cfg = config();
        if (o.kind === "p256" && !cfg.verifier)
          throw new CliError("--verifier (or CUSTOS_P256_VERIFIER) is required for a p256 key");
        const scryptN =
          o.scryptN === undefined ? undefined : Number(parseInteger(o.scryptN, "--scrypt-n", { min: 2n }));
        if (scryptN !== undefined && (scryptN & (scryptN - 1)) !== 0)
          throw new CliError("--scrypt-n must be a power of two");
        const material = generateKey(o.kind, { verifier: cfg.verifier });
        const info = await saveKeystore(o.out, material, passphrase(cfg, io.env), { scryptN, overwrite: o.force });
        print(io, { file: o.out, ...info });
      }),
    "key create",
  );
  withExample(
    key
      .command("import")
      .description("import a key: 32-byte hex, PEM (PKCS#8 / SEC1), or a Web3 JSON key file")
      .requiredOption("--in <file>", "the key to import ('-' for stdin)")
      .requiredOption("--out <file>", "where to write the encrypted key file")
      .addOption(
        new Option("--kind <kind>", "expected kind (p256 for a hex P-256 scalar)").choices(["secp256k1", "p256"]),
      )
      .option("--in-password-file <file>", "passphrase of an encrypted input")
      .option("--scrypt-n <n>", "scrypt cost of a secp256k1 key file")
      .option("--force", "replace an existing file")
      .action(
        async (o: {
          in: string;
          out: string;
          kind?: DeviceKeyKind;
          inPasswordFile?: string;
          scryptN?: string;
          force?: boolean;
        }) => {
          const cfg = config();
          const inPass = o.inPasswordFile
            ? readText(o.inPasswordFile, "--in-password-file").replace(/\r?\n$/, "")
            : undefined;
          const material = await importKey(
            readText(o.in, "--in"),
            { kind: o.kind, verifier: cfg.verifier, passphrase: inPass },
            `--in ${o.in}`,
          );
          const scryptN =
            o.scryptN === undefined ? undefined : Number(parseInteger(o.scryptN, "--scrypt-n", { min: 2n }));
          const info = await saveKeystore(o.out, material, passphrase(cfg, io.env), { scryptN, overwrite: o.force });
          print(io, { file: o.out, ...info });
        },
      ),
    "key import",
  );
  withExample(
    key
      .command("show")
      .description("show each loaded key: kind, ERC-7913 signer bytes, address, device id")
      .action(async () => {
        const cfg = config();
        if (cfg.keystore.length === 0) throw new CliError("--keystore (or CUSTOS_KEYSTORE) is required");
        const pass = passphrase(cfg, io.env);
        const infos: (KeyInfo & { file: string })[] = [];
        for (const file of cfg.keystore) infos.push({ file, ...keyInfo(await loadKeyMaterial(file, pass)) });
        print(io, infos.length === 1 ? infos[0] : infos);
      }),
    "key show",
  );

  // ------------------------------------------------------------ sign
  const sign = program.command("sign").description("sign a message and print it (nothing is sent)");
  withExample(
    sign
      .command("claim")
      .description("sign a DeviceClaim: proof that this hardware key is present, for the owner's claim")
      .requiredOption("--owner <address>", "the owner the device is claimed for")
      .requiredOption("--batch <id>", "the batch id (the Merkle root's first 48 bits)")
      .option("--deadline <time>", "unix seconds or +N[s|m|h|d] (default now + --ttl)")
      .option("--leaf <file>", "JSON {model, firmwareHash, proof} of the device's batch leaf")
      .option("--model <bytes32>", "the leaf's model")
      .option("--firmware-hash <bytes32>", "the leaf's firmware hash")
      .option("--proof <hashes>", "the leaf's Merkle proof, comma-separated")
      .option("--device <selector>", "which loaded key (signer, device id or index) when several")
      .action(
        async (o: {
          owner: string;
          batch: string;
          deadline?: string;
          leaf?: string;
          model?: string;
          firmwareHash?: string;
          proof?: string;
          device?: string;
        }) => {
          const cfg = config();
          const owner = parseAddress(o.owner, "--owner");
          const batch = parseInteger(o.batch, "--batch", { min: 1n, max: (1n << 48n) - 1n });
          const deadline = o.deadline ? parseDeadline(o.deadline) : BigInt(Math.floor(Date.now() / 1000) + cfg.ttl);
          const claim = claimLeaf(o);
          const registry = requireRegistry(cfg);
          const chainId = await chainIdOf(cfg);
          const signer = pickSigner(await loadSigners(cfg, io.env), o.device);
          const { TypedDataHasher } = await import("../eip712/fast.js");
          const hasher = await TypedDataHasher.create();
          const message = { owner, batch: batch.toString(), deadline: deadline.toString() };
          const digest = hasher.digest("DeviceClaim", { chainId, verifyingContract: registry }, message);
          const signature = await signer.sign(digest);
          print(io, {
            type: "DeviceClaim",
            key: signer.signer,
            message,
            signature: "0x" + Buffer.from(signature).toString("hex"),
            ...(claim ? { claim } : {}),
          });
        },
      ),
    "sign claim",
  );

  // ------------------------------------------------------------ attest-firmware, send
  withExample(
    program
      .command("attest-firmware")
      .description("sign a FirmwareAttestation, persist it, and deliver it")
      .requiredOption("--firmware-hash <bytes32>", "hash of the firmware image the device runs")
      .option("--deadline <time>", "unix seconds or +N[s|m|h|d] (default now + --ttl)")
      .option("--ref <key>", "idempotency key: a message with this key already queued is not signed again")
      .option("--device <selector>", "which loaded key when several")
      .option("--queue-only", "persist it; deliver later with `run`")
      .action(
        async (o: { firmwareHash: string; deadline?: string; ref?: string; device?: string; queueOnly?: boolean }) => {
          const firmwareHash = parseBytes32(o.firmwareHash, "--firmware-hash");
          const deadline = o.deadline ? parseDeadline(o.deadline) : undefined;
          await withAgents(async (agents, stack) => {
            const agent = pickAgent(agents, o.device);
            const s = await agent.sign(
              "FirmwareAttestation",
              { firmwareHash, ...(deadline === undefined ? {} : { deadline }) },
              o.ref === undefined ? {} : { ref: o.ref },
            );
            exit.code = await deliverAndReport(stack, io, [s.id], !!o.queueOnly);
          });
        },
      ),
    "attest-firmware",
  );

  withExample(
    program
      .command("send")
      .description("sign device messages, persist them, and deliver them (or --signed / --batch FILE)")
      .addHelpText(
        "after",
        "\nTypes: " +
          DEVICE_MESSAGE_TYPES.filter((t) => t !== "DeviceClaim").join(", ") +
          " (device, nonce and a default deadline are filled in).\n" +
          "--signed FILE sends a message signed elsewhere, e.g. a claim from `sign claim`.\n" +
          "--batch FILE holds JSON lines {ref?, device?, type, fields}; refs already queued are skipped,\n" +
          "so running the same batch again after a crash signs and sends nothing twice.\n" +
          "More examples:\n  custos-agent send NonceCancellation\n  custos-agent send --batch messages.jsonl\n",
      )
      .argument("[type]", "message type")
      .option("--field <name=value>", "a field of the message (repeat)", (v: string, prev: string[] = []) => [
        ...prev,
        v,
      ])
      .option("--deadline <time>", "unix seconds or +N[s|m|h|d] (default now + --ttl)")
      .option("--ref <key>", "idempotency key")
      .option("--device <selector>", "which loaded key when several")
      .option("--signed <file>", "a message signed elsewhere (JSON), e.g. a claim from `sign claim`")
      .option("--batch <file>", "JSON lines of messages to sign ('-' for stdin)")
      .option("--queue-only", "persist only; deliver later with `run`")
      .action(
        async (
          type: string | undefined,
          o: {
            field?: string[];
            deadline?: string;
            ref?: string;
            device?: string;
            signed?: string;
            batch?: string;
            queueOnly?: boolean;
          },
        ) => {
          const modes = [type !== undefined, o.signed !== undefined, o.batch !== undefined].filter(Boolean).length;
          if (modes !== 1) throw new CliError("send needs exactly one of: a message type, --signed FILE, --batch FILE");
          if (o.signed !== undefined) {
            let message;
            try {
              message = checkShape(readJson(o.signed, "--signed"));
            } catch (err) {
              if (err instanceof CliError) throw err;
              throw new CliError(`--signed ${o.signed}: ${(err as Error).message}`);
            }
            await withStack(async (stack) => {
              const entry = await stack.outbox.add(message, o.ref === undefined ? {} : { ref: o.ref });
              exit.code = await deliverAndReport(stack, io, [entry.id], !!o.queueOnly);
            });
            return;
          }
          if (o.batch !== undefined) {
            const lines = parseBatch(readText(o.batch, "--batch"), o.batch);
            await withAgents(async (agents, stack) => {
              // Signed in line order (each device's nonces follow it), persisted with shared syncs.
              const picked = lines.map((line) => pickAgent(agents, line.device ?? o.device, `${line.where}: device`));
              const signed = await Promise.all(
                lines.map((line, i) =>
                  picked[i]
                    .sign(line.type, line.fields, line.ref === undefined ? {} : { ref: line.ref })
                    .catch((err: Error) => {
                      throw err instanceof AgentError ? new CliError(`${line.where}: ${err.message}`) : err;
                    }),
                ),
              );
              exit.code = await deliverAndReport(
                stack,
                io,
                signed.map((s) => s.id),
                !!o.queueOnly,
              );
            });
            return;
          }
          if (!(DEVICE_MESSAGE_TYPES as readonly string[]).includes(type!) || type === "DeviceClaim") {
            throw new CliError(
              `type must be one of ${DEVICE_MESSAGE_TYPES.filter((t) => t !== "DeviceClaim").join(", ")} ` +
                `(a claim is signed with \`sign claim\` and sent with --signed), not ${type}`,
            );
          }
          const t = type as DeviceMessageType;
          const fields: Record<string, unknown> = parseFields(t, o.field ?? []);
          if (o.deadline) fields.deadline = parseDeadline(o.deadline);
          await withAgents(async (agents, stack) => {
            const s = await pickAgent(agents, o.device).sign(t, fields, o.ref === undefined ? {} : { ref: o.ref });
            exit.code = await deliverAndReport(stack, io, [s.id], !!o.queueOnly);
          });
        },
      ),
    "send",
  );

  // ------------------------------------------------------------ outbox, run
  withExample(
    program
      .command("outbox")
      .description("show the outbox: counts, and the messages not delivered yet (safe while `run` is going)")
      .option("--all", "list delivered and rejected messages too")
      .action(async (o: { all?: boolean }) => {
        const outbox = Outbox.read(path.join(config().dataDir, "outbox.jsonl"));
        print(io, {
          file: outbox.file,
          stats: outbox.stats(),
          messages: summary(o.all ? outbox.all() : outbox.live()),
        });
      }),
    "outbox",
  );
  withExample(
    program
      .command("run")
      .description("deliver what the outbox holds; exit when it is empty, or keep going with --watch")
      .option("--watch", "keep running (until SIGINT or SIGTERM)")
      .action(async (o: { watch?: boolean }) => {
        await withStack(async (stack) => {
          if (!o.watch) {
            await stack.dispatcher.drain();
            print(io, { outbox: stack.outbox.stats() });
            return;
          }
          const stop = () => void stack.dispatcher.stop();
          process.once("SIGINT", stop);
          process.once("SIGTERM", stop);
          try {
            await stack.dispatcher.drain({ watch: true });
          } finally {
            process.off("SIGINT", stop);
            process.off("SIGTERM", stop);
          }
          print(io, { outbox: stack.outbox.stats() });
        });
      }),
    "run",
  );

  // ------------------------------------------------------------ guest
  const guest = program.command("guest").description("a lock guest: show a key certificate, answer a lock's challenge");
  const readCertificate = async (file: string) => {
    const { parseCertificate } = await import("./roles/guest.js");
    try {
      return parseCertificate(readJson(file, "--cert"));
    } catch (err) {
      if (err instanceof CliError) throw err;
      throw new CliError(`--cert ${file}: ${(err as Error).message}`);
    }
  };
  withExample(
    guest
      .command("show")
      .description("what a key certificate allows, in words, and whether its issuer's signature checks out")
      .requiredOption("--cert <file>", "the certificate file the owner gave")
      .action(async (o: { cert: string }) => {
        const { showCertificate } = await import("./roles/guest.js");
        const { TypedDataHasher } = await import("../eip712/fast.js");
        print(io, showCertificate(await readCertificate(o.cert), await TypedDataHasher.create()));
      }),
    "guest show",
  );
  withExample(
    guest
      .command("sign-unlock")
      .description("sign the UnlockRequest that answers a lock's challenge (nothing is sent)")
      .requiredOption("--cert <file>", "the certificate file")
      .requiredOption("--challenge <bytes32>", "the challenge the lock showed")
      .option("--ttl <seconds>", "how long the answer is valid (default 60)")
      .action(async (o: { cert: string; challenge: string; ttl?: string }) => {
        const cert = await readCertificate(o.cert);
        const challenge = parseBytes32(o.challenge, "--challenge");
        const ttlS = o.ttl === undefined ? 60 : Number(parseInteger(o.ttl, "--ttl", { min: 1n, max: 86_400n }));
        const signer = pickSigner(await loadSigners(config(), io.env), undefined, "--keystore");
        const { signUnlockRequest } = await import("./roles/guest.js");
        const { TypedDataHasher } = await import("../eip712/fast.js");
        try {
          const request = await signUnlockRequest(signer, cert, challenge, await TypedDataHasher.create(), { ttlS });
          print(io, { certificate: { key: cert.key, signature: cert.signature }, request });
        } catch (err) {
          throw new CliError((err as Error).message);
        }
      }),
    "guest sign-unlock",
  );
  withExample(
    guest
      .command("unlock")
      .description("ask a lock to open: fetch its challenge, answer it, print its decision (exit 1 if denied)")
      .requiredOption("--cert <file>", "the certificate file")
      .option("--lock <url>", "the lock's URL (default: the certificate's lockUrl)")
      .action(async (o: { cert: string; lock?: string }) => {
        const cert = await readCertificate(o.cert);
        const url = o.lock ?? cert.lockUrl;
        if (!url) throw new CliError("--lock is required (the certificate names no lockUrl)");
        const signer = pickSigner(await loadSigners(config(), io.env), undefined, "--keystore");
        const { unlockAt } = await import("./roles/guest.js");
        const { TypedDataHasher } = await import("../eip712/fast.js");
        let decision: Awaited<ReturnType<typeof unlockAt>>;
        try {
          decision = await unlockAt(url, cert, signer, await TypedDataHasher.create());
        } catch (err) {
          throw new CliError((err as Error).message);
        }
        print(io, decision);
        exit.code = decision.open ? 0 : 1;
      }),
    "guest unlock",
  );

  // ------------------------------------------------------------ lock
  const lock = program.command("lock").description("run this device as a smart lock");
  withExample(
    lock
      .command("serve")
      .description(
        "serve unlock decisions over HTTP from cached chain state, log every decision and anchor the log on chain",
      )
      .option("--max-staleness <seconds>", "how old the chain state may be before the lock fails closed", "3600")
      .option("--host <host>", "listen address", "127.0.0.1")
      .option("--port <port>", "listen port (0: any free one)", "8700")
      .option("--sync-ms <ms>", "how often the chain state is re-read", "15000")
      .option("--anchor-ms <ms>", "how often the unlock log is anchored", "60000")
      .option("--from-block <n>", "first block to read events from", "0")
      .action(
        async (o: {
          maxStaleness: string;
          host: string;
          port: string;
          syncMs: string;
          anchorMs: string;
          fromBlock: string;
        }) => {
          const cfg = config();
          if (!cfg.lockAccess) throw new CliError("--lock-access (or CUSTOS_LOCK_ACCESS) is required");
          const num = (v: string, flag: string, min: bigint) => Number(parseInteger(v, flag, { min }));
          const maxStalenessS = num(o.maxStaleness, "--max-staleness", 1n);
          const port = num(o.port, "--port", 0n);
          const syncIntervalMs = num(o.syncMs, "--sync-ms", 1n);
          const anchorIntervalMs = num(o.anchorMs, "--anchor-ms", 1n);
          const fromBlock = num(o.fromBlock, "--from-block", 0n);
          await withAgents(async (agents, stack) => {
            const agent = pickAgent(agents, undefined, "--keystore");
            const { LockService } = await import("./roles/lockServer.js");
            const { DeviceSignatureVerifier } = await import("../crypto/verify.js");
            const service = new LockService({
              agent,
              lock: agent.deviceId,
              deployment: stack.chain.deployment,
              provider: stack.chain.provider,
              hasher: stack.hasher,
              verifier: new DeviceSignatureVerifier(cfg.verifier ? [cfg.verifier] : []),
              dataDir: cfg.dataDir,
              maxStalenessS,
              fromBlock,
              syncIntervalMs,
              anchorIntervalMs,
              host: o.host,
              port,
              logger: logger(),
            });
            const url = await service.start();
            print(io, { lock: agent.deviceId.toString(), url });
            const delivering = stack.dispatcher.drain({ watch: true });
            await new Promise<void>((resolve) => {
              process.once("SIGINT", resolve);
              process.once("SIGTERM", resolve);
            });
            await service.anchor().catch(() => undefined);
            await service.close();
            await stack.dispatcher.stop();
            await delivering;
          });
        },
      ),
    "lock serve",
  );

  async function withStack(fn: (stack: AgentStack) => Promise<void>): Promise<void> {
    const cfg = config();
    const log = logger();
    const stack = await openStack(cfg, io, log);
    log.info("agent started", { pid: process.pid, outbox: stack.outbox.file, ...stack.outbox.stats() });
    try {
      await fn(stack);
    } finally {
      await stack.close();
    }
  }

  async function withAgents(fn: (agents: Agent[], stack: AgentStack) => Promise<void>): Promise<void> {
    const cfg = config();
    const signers = await loadSigners(cfg, io.env);
    await withStack(async (stack) =>
      fn(
        signers.map((s) => stack.agentFor(s, { ttlSeconds: cfg.ttl })),
        stack,
      ),
    );
  }

  return program;
}

function pickAgent(agents: Agent[], selector: string | undefined, where = "--device"): Agent {
  const signer = pickSigner(
    agents.map((a) => a.signer),
    selector,
    where,
  );
  return agents.find((a) => a.signer === signer)!;
}

function claimLeaf(o: { leaf?: string; model?: string; firmwareHash?: string; proof?: string }) {
  if (o.leaf) {
    const leaf = readJson(o.leaf, "--leaf") as { model?: unknown; firmwareHash?: unknown; proof?: unknown };
    if (!leaf || typeof leaf !== "object") throw new CliError(`--leaf ${o.leaf}: must be a JSON object`);
    const proof = leaf.proof;
    if (!Array.isArray(proof)) throw new CliError(`--leaf ${o.leaf}: proof must be an array of 32-byte hashes`);
    return {
      model: parseBytes32(String(leaf.model), `--leaf ${o.leaf}: model`),
      firmwareHash: parseBytes32(String(leaf.firmwareHash), `--leaf ${o.leaf}: firmwareHash`),
      proof: proof.map((h, i) => parseBytes32(String(h), `--leaf ${o.leaf}: proof[${i}]`)),
    };
  }
  if (o.model === undefined && o.firmwareHash === undefined && o.proof === undefined) return undefined;
  if (o.model === undefined || o.firmwareHash === undefined) {
    throw new CliError("--model and --firmware-hash go together (with --proof)");
  }
  return {
    model: parseBytes32(o.model, "--model"),
    firmwareHash: parseBytes32(o.firmwareHash, "--firmware-hash"),
    proof: (o.proof ?? "")
      .split(",")
      .filter((h) => h.length > 0)
      .map((h, i) => parseBytes32(h.trim(), `--proof[${i}]`)),
  };
}

interface BatchLine {
  where: string;
  ref?: string;
  device?: string;
  type: DeviceMessageType;
  fields: Record<string, unknown>;
}

function parseBatch(text: string, file: string): BatchLine[] {
  const out: BatchLine[] = [];
  text.split("\n").forEach((raw, i) => {
    const line = raw.trim();
    if (line.length === 0) return;
    const where = `--batch ${file}:${i + 1}`;
    let v: { ref?: unknown; device?: unknown; type?: unknown; fields?: unknown };
    try {
      v = JSON.parse(line);
    } catch {
      throw new CliError(`${where}: not valid JSON`);
    }
    if (
      typeof v.type !== "string" ||
      !(DEVICE_MESSAGE_TYPES as readonly string[]).includes(v.type) ||
      v.type === "DeviceClaim"
    ) {
      throw new CliError(
        `${where}: type must be one of ${DEVICE_MESSAGE_TYPES.filter((t) => t !== "DeviceClaim").join(", ")}`,
      );
    }
    if (v.fields !== undefined && (typeof v.fields !== "object" || v.fields === null)) {
      throw new CliError(`${where}: fields must be an object`);
    }
    if (v.ref !== undefined && typeof v.ref !== "string") throw new CliError(`${where}: ref must be a string`);
    if (v.device !== undefined && typeof v.device !== "string") throw new CliError(`${where}: device must be a string`);
    out.push({
      where,
      type: v.type as DeviceMessageType,
      fields: (v.fields ?? {}) as Record<string, unknown>,
      ...(v.ref === undefined ? {} : { ref: v.ref as string }),
      ...(v.device === undefined ? {} : { device: v.device as string }),
    });
  });
  return out;
}

/** Runs the CLI; resolves to the exit status (0 ok, 1 failure, 2 bad input). */
export async function main(argv: string[] = process.argv, io: Io = process): Promise<number> {
  const exit = { code: 0 };
  const program = buildProgram(io, exit);
  try {
    await program.parseAsync(argv);
    return exit.code;
  } catch (err) {
    if (err instanceof CommanderError) {
      // Help and version end here too, with status 0.
      return err.exitCode === 0 ? 0 : 2;
    }
    if (err instanceof CliError || err instanceof KeystoreError || err instanceof AgentError) {
      io.stderr.write(`custos-agent: error: ${err.message}\n`);
      return 2;
    }
    io.stderr.write(`custos-agent: failed: ${(err as Error).stack ?? String(err)}\n`);
    return 1;
  }
}

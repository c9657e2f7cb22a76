/**
 * What every `custos-agent` command shares: settings (flags > environment > config file), input
 * parsing that names the flag at fault, exit codes, output, and the wiring to the chain (with the
 * checks made before the agent starts).
 *
 * This module and the command modules load nothing heavy at import time (no ethers, no contract
 * bindings): `--help` only needs commander. Each action imports what it uses when it runs.
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import type { Command } from "commander";
import { keccak_256 } from "@noble/hashes/sha3.js";
import type { DeviceKey, DeviceSigner } from "../../crypto/deviceKey.js";
import type { Agent, AgentStack } from "../agent.js";
import type { PayerSigner } from "../client.js";
import { createLogger, isLogLevel, type LogLevel, type Logger } from "../log.js";
import type { PreflightResult } from "../preflight.js";

/** A user error: names the flag, variable or field at fault; exits with status 2. */
export class CliError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "CliError";
  }
}

/**
 * Exit statuses. One-shot commands (`attest-firmware`, `send`, `run`) report what became of their
 * messages: delivered (on chain), held (refused for now: the device or batch is quarantined, a
 * nonce waits; still queued), refused (the chain or the relayer refused it for good), timed out.
 */
export const EXIT = {
  ok: 0,
  failure: 1,
  usage: 2,
  held: 3,
  refused: 4,
  timedOut: 5,
} as const;

/** The exit statuses as `--help` and the README show them. */
export const EXIT_HELP =
  "Exit status: 0 done (messages delivered), 1 failure, 2 bad input or a failed start-up check (the message\n" +
  "names the flag), 3 held (refused for now, e.g. a quarantined device; still queued: `run` delivers it\n" +
  "later, --wait waits), 4 refused (for good; the reason is printed), 5 timed out (--timeout; still queued).";

/** Default of `--timeout` (s). */
export const DEFAULT_TIMEOUT_S = 300;

/** Adds `--wait`, `--timeout` (and `--queue-only`) to a command that delivers. */
export function deliveryOptions(cmd: Command, queueOnly = true): Command {
  cmd
    .option("--wait", "wait while a message is held (e.g. its device is quarantined), up to --timeout")
    .option(
      "--timeout <seconds>",
      `give up after this long (default ${DEFAULT_TIMEOUT_S}; 0: never); the message stays queued`,
    );
  if (queueOnly) cmd.option("--queue-only", "persist only; deliver later with `run`");
  return cmd;
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
export const SETTINGS: Record<keyof AgentConfig, { flag: string; env: string; parse: Parser; default?: unknown }> = {
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

/** The flag that sets each contract address (for messages naming the one to change). */
export const CONTRACT_FLAGS = {
  registry: "--registry",
  locationBeacons: "--location-beacons",
  lockAccess: "--lock-access",
  paymentChannels: "--payment-channels",
  custodyLedger: "--custody-ledger",
} as const;

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

/**
 * An address, checksummed (EIP-55). Done here with the small keccak rather than ethers'
 * `getAddress`, so that parsing settings does not load ethers (`--help` stays fast).
 */
export function parseAddress(v: string, where: string): string {
  if (!/^0x[0-9a-fA-F]{40}$/.test(v)) throw new CliError(`${where} must be a 20-byte hex address, not ${v}`);
  const lower = v.slice(2).toLowerCase();
  const hash = Buffer.from(keccak_256(new TextEncoder().encode(lower))).toString("hex");
  let out = "0x";
  for (let i = 0; i < 40; i++) out += parseInt(hash[i], 16) >= 8 ? lower[i].toUpperCase() : lower[i];
  const mixed = v.slice(2) !== lower && v.slice(2) !== lower.toUpperCase();
  if (mixed && out !== v) throw new CliError(`${where} ${v} has a bad checksum (a typo?)`);
  return out;
}

export function parseBytes32(v: string, where: string): string {
  if (!/^0x[0-9a-fA-F]{64}$/.test(v)) throw new CliError(`${where} must be 32 bytes of 0x-hex, not ${v}`);
  return v.toLowerCase();
}

/** An http(s) base URL, without trailing slashes (paths are appended to it). */
export function parseHttpUrl(v: string, where: string): string {
  let url: URL | undefined;
  try {
    url = new URL(v);
  } catch {
    url = undefined;
  }
  if (!url || (url.protocol !== "http:" && url.protocol !== "https:") || url.search || url.hash)
    throw new CliError(`${where} must be an http(s) URL such as http://127.0.0.1:8791, not ${v}`);
  return v.replace(/\/+$/, "");
}

export function parseInteger(v: string, where: string, opts: { min?: bigint; max?: bigint } = {}): bigint {
  if (!/^-?[0-9]+$/.test(v)) throw new CliError(`${where} must be an integer, not ${v}`);
  const n = BigInt(v);
  if (opts.min !== undefined && n < opts.min) throw new CliError(`${where} must be at least ${opts.min}`);
  if (opts.max !== undefined && n > opts.max) throw new CliError(`${where} must be at most ${opts.max}`);
  return n;
}

/** A small integer option (ports, milliseconds, counts). */
export function parseNumber(v: string, where: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
  return Number(parseInteger(v, where, { min: BigInt(min), max: BigInt(max) }));
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

export function readText(file: string, flag: string): string {
  try {
    return file === "-" ? readFileSync(0, "utf8") : readFileSync(file, "utf8");
  } catch (err) {
    throw new CliError(
      `${flag} ${file}: cannot read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`,
    );
  }
}

export function readJson(file: string, flag: string): unknown {
  try {
    return JSON.parse(readText(file, flag));
  } catch (err) {
    if (err instanceof CliError) throw err;
    throw new CliError(`${flag} ${file}: not valid JSON`);
  }
}

// ---------------------------------------------------------------- output

export interface Io {
  stdout: { write(s: string): unknown; isTTY?: boolean };
  stderr: { write(s: string): unknown; isTTY?: boolean };
  env: NodeJS.ProcessEnv;
}

/** JSON with bigints as decimal strings (what every command prints). */
export function toJsonText(value: unknown): string {
  return JSON.stringify(value, (_k, v) => (typeof v === "bigint" ? v.toString() : v));
}

export function print(io: Io, value: unknown): void {
  io.stdout.write(toJsonText(value) + "\n");
}

// ---------------------------------------------------------------- the context of a command

/** What a command module gets: the program's settings, logger, output, and its exit status. */
export interface Ctx {
  io: Io;
  exit: { code: number };
  config(): AgentConfig;
  logger(): Logger;
  /** Adds `name`'s example to `cmd`'s help (and to the root help's list). */
  example(cmd: Command, name: string, text: string): Command;
}

export function makeLogger(cfg: AgentConfig, io: Io): Logger {
  return createLogger({ level: cfg.logLevel, stream: io.stderr });
}

// ---------------------------------------------------------------- keys and accounts

export function passphrase(cfg: AgentConfig, env: NodeJS.ProcessEnv): string {
  if (cfg.passwordFile) return readText(cfg.passwordFile, "--password-file").replace(/\r?\n$/, "");
  if (env.CUSTOS_PASSWORD) return env.CUSTOS_PASSWORD;
  throw new CliError("a key passphrase is needed: set CUSTOS_PASSWORD or give --password-file");
}

export function requireKeystores(cfg: AgentConfig): string[] {
  if (cfg.keystore.length === 0) throw new CliError("--keystore (or CUSTOS_KEYSTORE) is required");
  return cfg.keystore;
}

export async function loadSigners(cfg: AgentConfig, env: NodeJS.ProcessEnv): Promise<DeviceKey[]> {
  const list = requireKeystores(cfg);
  const pass = passphrase(cfg, env);
  const { deviceKeyOf, loadKeyMaterial } = await import("../keystore.js");
  return Promise.all(list.map(async (file) => deviceKeyOf(await loadKeyMaterial(file, pass))));
}

/** The signer `selector` names (its signer bytes, address, device id or index), or the only one. */
export async function pickSigner<T extends DeviceSigner>(
  signers: T[],
  selector: string | undefined,
  where = "--device",
  ids?: bigint[],
): Promise<T> {
  if (selector === undefined) {
    if (signers.length === 1) return signers[0];
    throw new CliError(`${where} is required when several keystores are loaded`);
  }
  const { deviceIdOf } = await import("../../registry/batch.js");
  const s = selector.toLowerCase();
  const found = signers.find(
    (k, i) => k.signer === s || deviceIdOf(k.signer).toString() === s || ids?.[i]?.toString() === s || String(i) === s,
  );
  if (!found) throw new CliError(`${where} ${selector} matches no loaded keystore`);
  return found;
}

export async function pickAgent(agents: Agent[], selector: string | undefined, where = "--device"): Promise<Agent> {
  const signer = await pickSigner(
    agents.map((a) => a.signer),
    selector,
    where,
    agents.map((a) => a.deviceId),
  );
  return agents.find((a) => a.signer === signer)!;
}

export function requireRegistry(cfg: AgentConfig): string {
  if (!cfg.registry) throw new CliError("--registry (or CUSTOS_REGISTRY) is required");
  return cfg.registry;
}

export function requireRpc(cfg: AgentConfig, why = "the agent reads nonces from the chain"): string {
  if (!cfg.rpc) throw new CliError(`--rpc (or CUSTOS_RPC_URL) is required: ${why}`);
  return cfg.rpc;
}

/** The chain id: --chain-id, else read from --rpc. */
export async function chainIdOf(cfg: AgentConfig): Promise<bigint> {
  if (cfg.chainId !== undefined) return cfg.chainId;
  if (!cfg.rpc) throw new CliError("--chain-id or --rpc (CUSTOS_CHAIN_ID or CUSTOS_RPC_URL) is required");
  const { readChainId } = await import("../preflight.js");
  return readChainId(cfg.rpc);
}

export async function payerOf(cfg: AgentConfig, env: NodeJS.ProcessEnv): Promise<PayerSigner | undefined> {
  const { Wallet } = await import("ethers");
  if (cfg.payerKeystore) {
    const pass = cfg.payerPasswordFile
      ? readText(cfg.payerPasswordFile, "--payer-password-file").replace(/\r?\n$/, "")
      : env.CUSTOS_PAYER_PASSWORD;
    if (!pass) throw new CliError("--payer-keystore needs CUSTOS_PAYER_PASSWORD or --payer-password-file");
    try {
      return await Wallet.fromEncryptedJson(readText(cfg.payerKeystore, "--payer-keystore"), pass);
    } catch (err) {
      if (err instanceof CliError) throw err;
      const msg = (err as Error).message;
      throw new CliError(
        /password/i.test(msg)
          ? `--payer-keystore ${cfg.payerKeystore}: wrong passphrase`
          : `--payer-keystore ${cfg.payerKeystore}: not a Web3 keystore`,
      );
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

// ---------------------------------------------------------------- the agent stack

export interface StackChecks {
  /** Device keys that must be registered (the devices this command signs for). */
  signers?: DeviceSigner[];
  /** Contract flags this command needs, beyond the registry. */
  need?: (keyof typeof CONTRACT_FLAGS)[];
}

/**
 * Checks the settings against the chain (see `preflight.ts`), then opens the outbox and the way
 * to the chain. Every failure is one line naming the flag to change.
 */
export async function openStack(
  ctx: Ctx,
  checks: StackChecks = {},
): Promise<{ stack: AgentStack; checked: PreflightResult }> {
  const cfg = ctx.config();
  const log = ctx.logger();
  const rpc = requireRpc(cfg);
  const registry = requireRegistry(cfg);
  for (const c of checks.need ?? []) {
    if (!cfg[c]) {
      const s = SETTINGS[c];
      throw new CliError(`${s.flag} (or ${s.env}) is required for this command`);
    }
  }
  const payer = cfg.relayer ? undefined : await payerOf(cfg, ctx.io.env);
  if (!cfg.relayer && !payer) {
    throw new CliError(
      "a way to the chain is needed: --relayer (CUSTOS_RELAYER_URL), or a payer account (--payer-keystore or CUSTOS_PAYER_KEY)",
    );
  }
  const { preflight } = await import("../preflight.js");
  const checked = await preflight({
    rpc,
    chainId: cfg.chainId,
    contracts: {
      registry,
      ...(cfg.locationBeacons ? { locationBeacons: cfg.locationBeacons } : {}),
      ...(cfg.lockAccess ? { lockAccess: cfg.lockAccess } : {}),
      ...(cfg.paymentChannels ? { paymentChannels: cfg.paymentChannels } : {}),
      ...(cfg.custodyLedger ? { custodyLedger: cfg.custodyLedger } : {}),
    },
    relayer: cfg.relayer,
    payer: payer?.address,
    signers: (checks.signers ?? []).map((s, i) => ({ signer: s.signer, file: cfg.keystore[i] ?? "(key)" })),
    logger: log,
  });
  const { openAgentStack } = await import("../agent.js");
  const stack = await openAgentStack({
    deployment: { ...checked.deployment },
    dataDir: cfg.dataDir,
    rpc,
    payer,
    relayerUrl: cfg.relayer,
    logger: log,
    pollMs: cfg.pollMs,
    holdMs: Math.max(cfg.pollMs, 1000),
    backoff: { baseMs: Math.min(250, cfg.backoffMaxMs), capMs: cfg.backoffMaxMs },
    confirmations: cfg.confirmations,
  });
  log.info("agent started", { pid: process.pid, outbox: stack.outbox.file, ...stack.outbox.stats() });
  return { stack, checked };
}

export async function withStack(
  ctx: Ctx,
  fn: (stack: AgentStack, checked: PreflightResult) => Promise<void>,
  checks: StackChecks = {},
): Promise<void> {
  const { stack, checked } = await openStack(ctx, checks);
  try {
    await fn(stack, checked);
  } finally {
    await stack.close();
  }
}

/** The stack with an agent for each loaded key, each with the device id the registry gives its key. */
export async function withAgents(
  ctx: Ctx,
  fn: (agents: Agent[], stack: AgentStack, checked: PreflightResult) => Promise<void>,
  checks: Omit<StackChecks, "signers"> = {},
): Promise<void> {
  const cfg = ctx.config();
  const signers = await loadSigners(cfg, ctx.io.env);
  await withStack(
    ctx,
    async (stack, checked) =>
      fn(
        signers.map((s) =>
          stack.agentFor(s, { ttlSeconds: cfg.ttl, deviceId: checked.devices.get(s.signer)?.deviceId }),
        ),
        stack,
        checked,
      ),
    { ...checks, signers },
  );
}

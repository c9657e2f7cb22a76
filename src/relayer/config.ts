/** The relayer's configuration: what `startRelayer` takes and what the CLI builds from flags and env. */

export interface RelayerHooks {
  /**
   * Called after a batch transaction is signed and persisted, right before it is broadcast (and
   * `afterBroadcast` right after). Crash tests kill the relayer here; nothing else should use them.
   */
  beforeBroadcast?: (txHash: string) => void | Promise<void>;
  afterBroadcast?: (txHash: string) => void | Promise<void>;
}

export interface RelayerConfig {
  /** JSON-RPC URL of the chain. */
  rpc: string;
  /** The relayer's funded account: a 0x private key … */
  privateKey?: string;
  /** … or a Web3 Secret Storage JSON keystore and its password. */
  keystore?: { json: string; password: string };
  /** DeviceRegistry address. */
  registry: string;
  /**
   * LocationBeacons address: quarantined devices' location beacons are delivered to it (without
   * it, a beacon is refused as `target_not_allowed`).
   */
  locationBeacons?: string;
  /** LockAccess address: locks' unlock-log anchors (UnlockLog) are delivered to it. */
  lockAccess?: string;
  /** PaymentChannels address: vouchers (Voucher) are claimed on it. */
  paymentChannels?: string;
  /** CustodyLedger address: trackers' checkpoints (Checkpoint) are delivered to it. */
  custodyLedger?: string;
  /** ERC2771Forwarder address (default: the registry's trusted forwarder). */
  forwarder?: string;
  /** The chain id the node must have (checked at start; default: whatever the node says). */
  chainId?: bigint | number;
  /**
   * How the operator named the relayer's account (`--keystore relayer.json`), for the one-line
   * errors about it at start (default "the relayer's key").
   */
  accountSource?: string;
  /** Directory of the durable intake log. */
  dataDir: string;
  /** Interface to listen on (default 127.0.0.1). */
  host?: string;
  /** Port (default 0: any free port; the handle's `url` tells which). */
  port?: number;
  /** Most messages in one transaction (default 50). */
  batchSize?: number;
  /** How long the first message of a batch waits for others (default 200 ms). */
  batchIntervalMs?: number;
  /** Most gas one message may cost the relayer (default 500,000). */
  gasCap?: bigint | number;
  /** Messages per device (or forward-request signer) per minute (default 120). */
  rateLimit?: number;
  /** ERC-7913 verifiers of P-256 keys known to be allowed (others are asked of the registry). */
  p256Verifiers?: string[];
  /** Targets forward requests may call besides the registry. */
  forwardTargets?: string[];
  /** How many nonces past a device's next one a message may be and still wait for the gap (default 64). */
  maxNonceGap?: number;
  /** A message must have at least this many seconds left when it is accepted (default 10). */
  deadlineSlackSeconds?: number;
  /** A queued message is not sent with fewer seconds left than this; it fails instead (default 3). */
  sendMarginSeconds?: number;
  /** How often the chain's head is polled (default 200 ms). */
  pollIntervalMs?: number;
  /** Final messages older than this are dropped from the log when it is compacted at start (default 7 days). */
  retainMs?: number;
  /**
   * How many attributable refusals `GET /v1/refusals` keeps, newest last (default 10,000; 0 turns
   * the feed and its route off).
   */
  refusalFeedSize?: number;
  /** pino log level (default "info"); "silent" for none. */
  logLevel?: string;
  hooks?: RelayerHooks;
}

export type ResolvedConfig = Required<
  Omit<
    RelayerConfig,
    | "privateKey"
    | "keystore"
    | "forwarder"
    | "locationBeacons"
    | "lockAccess"
    | "paymentChannels"
    | "custodyLedger"
    | "chainId"
    | "accountSource"
    | "hooks"
    | "gasCap"
    | "p256Verifiers"
    | "forwardTargets"
  >
> & {
  privateKey?: string;
  locationBeacons?: string;
  lockAccess?: string;
  paymentChannels?: string;
  custodyLedger?: string;
  chainId?: bigint;
  accountSource: string;
  keystore?: { json: string; password: string };
  forwarder?: string;
  hooks: RelayerHooks;
  gasCap: bigint;
  p256Verifiers: string[];
  forwardTargets: string[];
};

export const DEFAULTS = {
  host: "127.0.0.1",
  port: 0,
  batchSize: 50,
  batchIntervalMs: 200,
  gasCap: 500_000n,
  rateLimit: 120,
  maxNonceGap: 64,
  deadlineSlackSeconds: 10,
  sendMarginSeconds: 3,
  pollIntervalMs: 200,
  retainMs: 7 * 24 * 3600 * 1000,
  refusalFeedSize: 10_000,
  logLevel: "info",
} as const;

export function resolveConfig(config: RelayerConfig): ResolvedConfig {
  if (!config.rpc) throw new Error("relayer: rpc is required");
  if (!config.registry) throw new Error("relayer: registry is required");
  if (!config.dataDir) throw new Error("relayer: dataDir is required");
  if (!config.privateKey && !config.keystore) throw new Error("relayer: a privateKey or a keystore is required");
  const resolved: ResolvedConfig = {
    ...DEFAULTS,
    ...Object.fromEntries(Object.entries(config).filter(([, v]) => v !== undefined)),
    gasCap: BigInt(config.gasCap ?? DEFAULTS.gasCap),
    chainId: config.chainId === undefined ? undefined : BigInt(config.chainId),
    accountSource: config.accountSource ?? "the relayer's key",
    hooks: config.hooks ?? {},
    p256Verifiers: config.p256Verifiers ?? [],
    forwardTargets: config.forwardTargets ?? [],
  } as ResolvedConfig;
  for (const key of ["batchSize", "batchIntervalMs", "rateLimit", "maxNonceGap", "pollIntervalMs"] as const) {
    const v = resolved[key];
    if (!Number.isFinite(v) || v < (key === "batchIntervalMs" ? 0 : 1))
      throw new Error(`relayer: ${key} must be a positive number`);
  }
  if (resolved.gasCap <= 0n) throw new Error("relayer: gasCap must be positive");
  if (!Number.isSafeInteger(resolved.refusalFeedSize) || resolved.refusalFeedSize < 0)
    throw new Error("relayer: refusalFeedSize must be an integer, 0 or more");
  return resolved;
}

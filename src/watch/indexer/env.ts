/**
 * The indexer's settings, read from the environment the launcher (`startIndexer`, or an operator by
 * hand) sets. Each missing or malformed variable is named in the error with what to put there.
 */
export interface IndexerEnv {
  rpcUrl: string;
  chainId: number;
  startBlock: number;
  pollingInterval: number;
  addresses: {
    registry: `0x${string}`;
    guardianQuorum: `0x${string}`;
    locationBeacons: `0x${string}`;
    lockAccess: `0x${string}`;
    custodyLedger: `0x${string}`;
    paymentChannels: `0x${string}`;
  };
  /** PGlite's directory when no `DATABASE_URL` is set. */
  dataDir: string;
  databaseUrl?: string;
}

/** The variables, by the address each one carries. */
export const ADDRESS_VARIABLES = {
  registry: "CUSTOS_WATCH_REGISTRY",
  guardianQuorum: "CUSTOS_WATCH_GUARDIAN_QUORUM",
  locationBeacons: "CUSTOS_WATCH_LOCATION_BEACONS",
  lockAccess: "CUSTOS_WATCH_LOCK_ACCESS",
  custodyLedger: "CUSTOS_WATCH_CUSTODY_LEDGER",
  paymentChannels: "CUSTOS_WATCH_PAYMENT_CHANNELS",
} as const;

function required(env: NodeJS.ProcessEnv, name: string, what: string): string {
  const value = env[name];
  if (value === undefined || value === "") throw new Error(`${name} is not set: give ${what}`);
  return value;
}

function whole(env: NodeJS.ProcessEnv, name: string, what: string, fallback?: number): number {
  const given = env[name];
  if ((given === undefined || given === "") && fallback !== undefined) return fallback;
  const value = Number(required(env, name, what));
  if (!Number.isSafeInteger(value) || value < 0)
    throw new Error(`${name} must be a whole number ≥ 0 (${what}), not ${given}`);
  return value;
}

export function readIndexerEnv(env: NodeJS.ProcessEnv = process.env): IndexerEnv {
  const addresses = {} as IndexerEnv["addresses"];
  for (const [key, name] of Object.entries(ADDRESS_VARIABLES) as [keyof IndexerEnv["addresses"], string][]) {
    const value = required(env, name, `the ${key} contract's address (0x + 40 hex digits)`);
    if (!/^0x[0-9a-fA-F]{40}$/.test(value))
      throw new Error(`${name} must be an address (0x + 40 hex digits), not ${value}`);
    addresses[key] = value.toLowerCase() as `0x${string}`;
  }
  const pollingInterval = whole(env, "CUSTOS_WATCH_POLLING_MS", "how often to poll the node, in ms (≥ 100)", 200);
  if (pollingInterval < 100)
    throw new Error(`CUSTOS_WATCH_POLLING_MS must be ≥ 100 (Ponder's minimum), not ${pollingInterval}`);
  return {
    rpcUrl: required(env, "CUSTOS_WATCH_RPC_URL", "the node's HTTP JSON-RPC URL, e.g. http://127.0.0.1:8545"),
    chainId: whole(env, "CUSTOS_WATCH_CHAIN_ID", "the chain id, e.g. 31337"),
    startBlock: whole(env, "CUSTOS_WATCH_START_BLOCK", "the block the suite was deployed in", 0),
    pollingInterval,
    addresses,
    dataDir: env.CUSTOS_WATCH_DATA_DIR || ".ponder/pglite",
    databaseUrl: env.DATABASE_URL || undefined,
  };
}

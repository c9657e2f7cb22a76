/**
 * The checks the agent makes before it starts, so that a wrong setting fails at once with one line
 * naming the flag to change instead of an agent that says "started" and then waits forever:
 *
 * 1. the node at `--rpc` answers, and serves the chain `--chain-id` names (when given);
 * 2. there is code at each contract address, and it is the contract expected: its EIP-712 domain
 *    (ERC-5267 `eip712Domain()`) has the catalogue's name, this chain id and this address;
 * 3. the relayer (`--relayer`), when it answers, serves the same chain and registry;
 * 4. each device key this command signs with is registered (and not revoked), which also gives the
 *    device id (a rotated key keeps its device's first id).
 *
 * Each step is logged at info level. Calls are plain JSON-RPC over fetch with a timeout.
 */
import { AbiCoder, getAddress } from "ethers";
import { DOMAINS, type DomainName } from "../eip712/index.js";
import type { ContractName } from "../messages/index.js";
import { silentLogger, type Logger } from "./log.js";

/** A start-up check failed; the message names the flag to change. Exit status 2. */
export class PreflightError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "PreflightError";
  }
}

const FLAG: Record<ContractName, string> = {
  registry: "--registry",
  locationBeacons: "--location-beacons",
  lockAccess: "--lock-access",
  paymentChannels: "--payment-channels",
  custodyLedger: "--custody-ledger",
  guardianQuorum: "--guardian-quorum",
};

/** The contracts with an EIP-712 domain of their own (GuardianQuorum has none: guardians' votes are plain calls). */
type SigningContract = Exclude<ContractName, "guardianQuorum">;

const DOMAIN_OF: Record<SigningContract, DomainName> = {
  registry: "registry",
  locationBeacons: "beacons",
  lockAccess: "lock",
  paymentChannels: "channels",
  custodyLedger: "custody",
};

/** Device statuses as `IDeviceRegistry.DeviceStatus` numbers them. */
export const STATUS = ["unknown", "active", "quarantined", "revoked"] as const;

export interface PreflightInput {
  rpc: string;
  /** The chain id the user named (--chain-id), if any. */
  chainId?: bigint;
  contracts: Partial<Record<SigningContract, string>> & { registry: string };
  relayer?: string;
  /** The account that pays gas in direct mode (warned about when it has no ETH). */
  payer?: string;
  /** Keys that must be registered, with the keystore file each came from. */
  signers?: { signer: string; file: string }[];
  logger?: Logger;
  /** Per call. Default 10,000 ms. */
  timeoutMs?: number;
}

export interface PreflightResult {
  chainId: bigint;
  deployment: { chainId: bigint } & Partial<Record<ContractName, string>> & { registry: string };
  /** By signer bytes: the registered device id and its status. */
  devices: Map<string, { deviceId: bigint; status: (typeof STATUS)[number] }>;
}

/** One JSON-RPC call; an unreachable node, a timeout or an RPC error become `Error`s with a short text. */
export async function rpcCall(url: string, method: string, params: unknown[], timeoutMs = 10_000): Promise<unknown> {
  let res: Response;
  try {
    res = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ jsonrpc: "2.0", id: 1, method, params }),
      signal: AbortSignal.timeout(timeoutMs),
    });
  } catch (err) {
    const e = err as { name?: string; cause?: { code?: string; message?: string } };
    if (e.name === "TimeoutError") throw new RpcUnreachable(`no answer within ${timeoutMs / 1000} s`);
    throw new RpcUnreachable(e.cause?.code ?? e.cause?.message ?? (err as Error).message);
  }
  let body: { result?: unknown; error?: { message?: string; data?: unknown } };
  try {
    body = (await res.json()) as typeof body;
  } catch {
    throw new RpcUnreachable(`answered HTTP ${res.status} without JSON-RPC`);
  }
  if (body.error) {
    const err = new Error(body.error.message ?? "JSON-RPC error") as Error & { data?: unknown };
    err.data = body.error.data;
    throw err;
  }
  return body.result;
}

export class RpcUnreachable extends Error {
  override readonly name = "RpcUnreachable";
}

/** The chain id of the node at `rpc`, or a {@link PreflightError} naming --rpc. */
export async function readChainId(rpc: string, timeoutMs = 10_000): Promise<bigint> {
  try {
    return BigInt((await rpcCall(rpc, "eth_chainId", [], timeoutMs)) as string);
  } catch (err) {
    throw new PreflightError(
      `--rpc ${rpc}: no node answers there (${(err as Error).message}); start the node or fix --rpc (CUSTOS_RPC_URL)`,
    );
  }
}

const EIP712_DOMAIN = "0x84b0196e"; // eip712Domain()
const RESOLVE_KEY = "0x358b8797"; // resolveKey(bytes)
const coder = AbiCoder.defaultAbiCoder();

/** Runs the start-up checks; resolves with what they learnt, or rejects with a {@link PreflightError}. */
export async function preflight(input: PreflightInput): Promise<PreflightResult> {
  const log = input.logger ?? silentLogger;
  const timeoutMs = input.timeoutMs ?? 10_000;
  const call = (method: string, params: unknown[]) => rpcCall(input.rpc, method, params, timeoutMs);

  log.info("checking the chain", { rpc: input.rpc });
  const chainId = await readChainId(input.rpc, timeoutMs);
  if (input.chainId !== undefined && input.chainId !== chainId) {
    throw new PreflightError(
      `--chain-id ${input.chainId}: the node at --rpc ${input.rpc} serves chain ${chainId}; fix --chain-id or --rpc`,
    );
  }
  const block = BigInt((await call("eth_blockNumber", []).catch(() => "0x0")) as string);
  log.info("chain reachable", { chainId: chainId.toString(), block: block.toString() });

  const deployment: PreflightResult["deployment"] = { chainId, registry: getAddress(input.contracts.registry) };
  for (const [name, address] of Object.entries(input.contracts) as [SigningContract, string | undefined][]) {
    if (!address) continue;
    deployment[name] = await checkContract(call, chainId, name, getAddress(address), log);
  }

  if (input.relayer) await checkRelayer(input.relayer, chainId, deployment.registry, timeoutMs, log);

  if (input.payer && !input.relayer) {
    const balance = BigInt((await call("eth_getBalance", [input.payer, "latest"]).catch(() => "0x1")) as string);
    if (balance === 0n) {
      log.warn("the payer account has no ETH: transactions cannot be paid", { payer: input.payer });
    }
  }

  const devices: PreflightResult["devices"] = new Map();
  for (const { signer, file } of input.signers ?? []) {
    const data = RESOLVE_KEY + coder.encode(["bytes"], [signer]).slice(2);
    let deviceId = 0n;
    let status = 0;
    try {
      const out = (await call("eth_call", [{ to: deployment.registry, data }, "latest"])) as string;
      [deviceId, status] = coder.decode(["uint256", "uint8"], out).map((v) => BigInt(v)) as [bigint, number] & bigint[];
    } catch (err) {
      // resolveKey refuses an unknown key (DeviceRegistryUnknownKey) or answers id 0.
      if (err instanceof RpcUnreachable) throw new PreflightError(`--rpc ${input.rpc}: ${err.message}`);
    }
    const st = STATUS[Number(status)] ?? "unknown";
    if (deviceId === 0n || st === "unknown") {
      throw new PreflightError(
        `--keystore ${file}: key ${short(signer)} is not registered in the registry at --registry ${deployment.registry} ` +
          `(claim the device first: \`sign claim\` then \`send --signed\`; or fix --keystore / --registry)`,
      );
    }
    if (st === "revoked") {
      throw new PreflightError(
        `--keystore ${file}: device ${deviceId} is revoked: the registry refuses everything it signs`,
      );
    }
    if (st === "quarantined") {
      log.warn("device is quarantined: its registry messages will be held until it is released", {
        device: deviceId.toString(),
      });
    } else log.info("device registered", { device: deviceId.toString(), status: st });
    devices.set(signer.toLowerCase(), { deviceId, status: st });
  }
  return { chainId, deployment, devices };
}

/** Checks that `address` holds the contract `name` on the node at `rpc`; `where` names it in errors. */
export async function checkContractAt(
  rpc: string,
  name: SigningContract,
  address: string,
  where: string,
): Promise<void> {
  const chainId = await readChainId(rpc);
  await checkContract((m, p) => rpcCall(rpc, m, p), chainId, name, getAddress(address), silentLogger, where);
}

async function checkContract(
  call: (method: string, params: unknown[]) => Promise<unknown>,
  chainId: bigint,
  name: SigningContract,
  address: string,
  log: Logger,
  where?: string,
): Promise<string> {
  const flag = where ?? FLAG[name];
  const expected = DOMAINS[DOMAIN_OF[name]].name;
  const code = (await call("eth_getCode", [address, "latest"])) as string;
  if (!code || code === "0x") {
    throw new PreflightError(
      `${flag} ${address}: no contract at this address on chain ${chainId}; give the address of the deployed ${expected} ` +
        `(ignition/deployments/chain-${chainId}/deployed_addresses.json) or deploy it`,
    );
  }
  let domain: { name: string; chainId: bigint; verifyingContract: string } | undefined;
  try {
    const out = (await call("eth_call", [{ to: address, data: EIP712_DOMAIN }, "latest"])) as string;
    const d = coder.decode(["bytes1", "string", "string", "uint256", "address", "bytes32", "uint256[]"], out);
    domain = { name: String(d[1]), chainId: BigInt(d[3]), verifyingContract: String(d[4]) };
  } catch {
    domain = undefined;
  }
  if (!domain) {
    throw new PreflightError(`${flag} ${address}: the contract there is not a ${expected} (it has no EIP-712 domain)`);
  }
  if (domain.name !== expected) {
    const other = (Object.entries(DOMAIN_OF) as [SigningContract, DomainName][]).find(
      ([, d]) => DOMAINS[d].name === domain!.name,
    );
    throw new PreflightError(
      `${flag} ${address}: the contract there is ${JSON.stringify(domain.name)}, not ${expected}` +
        (other ? ` (is it the ${FLAG[other[0]]} address?)` : ""),
    );
  }
  if (domain.chainId !== chainId || getAddress(domain.verifyingContract) !== address) {
    throw new PreflightError(`${flag} ${address}: the ${expected} there signs for another chain or address`);
  }
  log.info("contract found", { flag, address, contract: expected });
  return address;
}

async function checkRelayer(url: string, chainId: bigint, registry: string, timeoutMs: number, log: Logger) {
  let health: { chainId?: string; registry?: string } | undefined;
  try {
    const res = await fetch(url.replace(/\/+$/, "") + "/health", { signal: AbortSignal.timeout(timeoutMs) });
    health = (await res.json()) as typeof health;
  } catch (err) {
    // The outbox keeps the messages; they go once the relayer is back.
    log.warn("relayer does not answer yet; messages wait in the outbox", {
      relayer: url,
      error: (err as Error).message,
    });
    return;
  }
  if (health?.chainId !== undefined && BigInt(health.chainId) !== chainId) {
    throw new PreflightError(`--relayer ${url}: it serves chain ${health.chainId}, not chain ${chainId} of --rpc`);
  }
  if (health?.registry && getAddress(health.registry) !== registry) {
    throw new PreflightError(
      `--relayer ${url}: it serves registry ${health.registry}, not --registry ${registry}; fix one of them`,
    );
  }
  log.info("relayer reachable", { relayer: url });
}

function short(hex: string): string {
  return hex.length > 20 ? `${hex.slice(0, 10)}…${hex.slice(-6)}` : hex;
}

/**
 * What the relayer checks before it listens, each failure one line naming the flag to change: the
 * node answers (`--rpc`), it is the chain configured (`--chain-id`), each contract address holds
 * code and it is the contract expected — its EIP-712 domain (ERC-5267 `eip712Domain()`) is the
 * catalogue's for that contract, on this chain, at that address, and it belongs to `--registry`
 * and trusts the forwarder — and the relayer's account has ETH to pay gas with.
 */
import { Interface, JsonRpcProvider, Network, getAddress, type Provider } from "ethers";
import { DOMAINS, type DomainName } from "../eip712/index.js";
import { format } from "../errors/index.js";

/** A start-up failure: `message` is one line that names the flag (or setting) to change. */
export class StartError extends Error {
  constructor(
    readonly flag: string,
    message: string,
  ) {
    super(message);
    this.name = "StartError";
  }
}

const ERC5267 = new Interface([
  "function eip712Domain() view returns (bytes1 fields, string name, string version, uint256 chainId, address verifyingContract, bytes32 salt, uint256[] extensions)",
  "function registry() view returns (address)",
  "function isTrustedForwarder(address forwarder) view returns (bool)",
  "function trustedForwarder() view returns (address)",
]);

/** The suite's contracts the relayer can be given: its flag, the catalogue domain, the contract's name. */
export const SUITE = {
  registry: { flag: "--registry", domain: "registry", name: "DeviceRegistry" },
  forwarder: { flag: "--forwarder", domain: "forwarder", name: "ERC2771Forwarder" },
  locationBeacons: { flag: "--location-beacons", domain: "beacons", name: "LocationBeacons" },
  lockAccess: { flag: "--lock-access", domain: "lock", name: "LockAccess" },
  paymentChannels: { flag: "--payment-channels", domain: "channels", name: "PaymentChannels" },
  custodyLedger: { flag: "--custody-ledger", domain: "custody", name: "CustodyLedger" },
} as const satisfies Record<string, { flag: string; domain: DomainName; name: string }>;

export type SuiteContract = keyof typeof SUITE;

/** Contracts that act on ERC-2771 forward requests (owners' calls through the forwarder). */
export const FORWARD_TARGETS = ["registry", "lockAccess", "paymentChannels", "custodyLedger"] as const;

export interface PreflightInput {
  rpc: string;
  chainId?: bigint;
  /** Lower-case addresses by contract (the forwarder: undefined for the registry's own). */
  contracts: Partial<Record<SuiteContract, string>>;
  /** The relayer's account, and how the operator named it (`--keystore relayer.json`). */
  account: string;
  accountSource: string;
}

export interface PreflightResult {
  chainId: bigint;
  provider: JsonRpcProvider;
  /** The forwarder (given, or the registry's trusted one), lower case. */
  forwarder: string;
  balance: bigint;
}

/** Runs every check in order; throws the first {@link StartError}. The provider is the caller's to destroy. */
export async function preflight(input: PreflightInput, pollingInterval = 200): Promise<PreflightResult> {
  const chainId = await chainIdOf(input.rpc);
  if (input.chainId !== undefined && input.chainId !== chainId)
    throw new StartError(
      "--chain-id",
      `--chain-id ${input.chainId}: the node at --rpc ${input.rpc} is chain ${chainId} — point --rpc at the right node, or correct --chain-id`,
    );
  const network = Network.from(chainId);
  const provider = new JsonRpcProvider(input.rpc, network, {
    staticNetwork: network,
    batchStallTime: 2,
    pollingInterval,
    cacheTimeout: -1, // ethers would answer repeated reads (the head!) from a 250 ms cache; ChainView caches instead
  });
  try {
    const registry = input.contracts.registry!;
    await expectContract(provider, chainId, "registry", registry);
    const forwarderGiven = input.contracts.forwarder;
    const forwarder = (forwarderGiven ?? (await call<string>(provider, registry, "trustedForwarder"))).toLowerCase();
    await expectContract(provider, chainId, "forwarder", forwarder, forwarderGiven ? undefined : "the registry's");
    if (!(await call<boolean>(provider, registry, "isTrustedForwarder", [forwarder])))
      throw new StartError(
        "--forwarder",
        `--forwarder ${forwarder}: the registry at --registry ${registry} does not trust this forwarder (leave --forwarder out to use the registry's own)`,
      );
    for (const name of ["locationBeacons", "lockAccess", "paymentChannels", "custodyLedger"] as const) {
      const address = input.contracts[name];
      if (!address) continue;
      const { flag, name: contractName } = SUITE[name];
      await expectContract(provider, chainId, name, address);
      const itsRegistry = (await call<string>(provider, address, "registry")).toLowerCase();
      if (itsRegistry !== registry)
        throw new StartError(
          flag,
          `${flag} ${address}: this ${contractName} belongs to registry ${itsRegistry}, not to --registry ${registry} (another deployment?)`,
        );
      if (
        (FORWARD_TARGETS as readonly string[]).includes(name) &&
        !(await call<boolean>(provider, address, "isTrustedForwarder", [forwarder]))
      )
        throw new StartError(
          flag,
          `${flag} ${address}: this ${contractName} does not trust the forwarder ${forwarder} (another deployment?)`,
        );
    }
    const balance = await provider.getBalance(input.account);
    if (balance === 0n)
      throw new StartError(
        input.accountSource.split(" ")[0],
        `${input.accountSource}: the relayer's account ${input.account} has no ETH on chain ${chainId} to pay gas with: fund it, then start the relayer`,
      );
    return { chainId, provider, forwarder, balance };
  } catch (err) {
    provider.destroy();
    throw err;
  }
}

/** The chain id, with one plain JSON-RPC call (ethers would retry network detection forever). */
export async function chainIdOf(rpc: string, timeoutMs = 10_000): Promise<bigint> {
  let res: Response;
  try {
    res = await fetch(rpc, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "eth_chainId", params: [] }),
      signal: AbortSignal.timeout(timeoutMs),
    });
  } catch (err) {
    throw new StartError("--rpc", `--rpc ${rpc}: the node does not answer (${why(err)}): is it running, at that URL?`);
  }
  const text = await res.text().catch(() => "");
  let json: { result?: string; error?: { message?: string } };
  try {
    json = JSON.parse(text) as typeof json;
  } catch {
    throw new StartError(
      "--rpc",
      `--rpc ${rpc}: not a JSON-RPC endpoint (HTTP ${res.status}: ${text.slice(0, 60).replace(/\s+/g, " ")})`,
    );
  }
  if (typeof json.result !== "string" || !/^0x[0-9a-fA-F]+$/.test(json.result))
    throw new StartError("--rpc", `--rpc ${rpc}: eth_chainId failed (${json.error?.message ?? `HTTP ${res.status}`})`);
  return BigInt(json.result);
}

function why(err: unknown): string {
  const e = err as { name?: string; message?: string; cause?: { code?: string; message?: string } };
  if (e.name === "TimeoutError") return "no answer in time";
  const code = e.cause?.code;
  if (code === "ECONNREFUSED") return "connection refused";
  if (code === "ENOTFOUND" || code === "EAI_AGAIN") return "unknown host";
  return e.cause?.message ?? e.message ?? String(err);
}

/** A view call; a revert or undecodable answer is the contract not being what was expected (null). */
async function call<T>(provider: Provider, to: string, fn: string, args: unknown[] = []): Promise<T> {
  const data = await provider.call({ to, data: ERC5267.encodeFunctionData(fn, args) });
  return ERC5267.decodeFunctionResult(fn, data)[0] as T;
}

/**
 * Code at `address`, and the catalogue's EIP-712 domain for `which` there: its name and version,
 * this chain, this address.
 */
async function expectContract(
  provider: JsonRpcProvider,
  chainId: bigint,
  which: SuiteContract,
  address: string,
  whose?: string,
): Promise<void> {
  const { flag, domain, name } = SUITE[which];
  const what = whose ? `${flag} (${whose}: ${address})` : `${flag} ${address}`;
  if ((await provider.getCode(address)) === "0x")
    throw new StartError(
      flag,
      `${what}: no contract there on chain ${chainId} — is --rpc the node it was deployed to, and the address right?`,
    );
  const expected = DOMAINS[domain];
  let got: { name: string; version: string; chainId: bigint; verifyingContract: string };
  try {
    const data = await provider.call({ to: address, data: ERC5267.encodeFunctionData("eip712Domain") });
    const r = ERC5267.decodeFunctionResult("eip712Domain", data);
    got = { name: r[1], version: r[2], chainId: r[3], verifyingContract: r[4] };
  } catch {
    throw new StartError(
      flag,
      `${what}: the contract there is not a ${name} (it has no EIP-712 domain): is the address right?`,
    );
  }
  if (got.name !== expected.name || got.version !== expected.version)
    throw new StartError(
      flag,
      `${what}: the contract there is not a ${name} (its EIP-712 domain is "${got.name}" v${got.version}, not "${expected.name}" v${expected.version})`,
    );
  if (got.chainId !== chainId || getAddress(got.verifyingContract) !== getAddress(address))
    throw new StartError(
      flag,
      `${what}: its EIP-712 domain names chain ${got.chainId} at ${format.address(got.verifyingContract)}, not chain ${chainId} at this address (a proxy?)`,
    );
}

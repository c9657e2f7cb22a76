/**
 * What every task checks before it acts, in one place: the network is the one the user named (a
 * task that writes never falls back to Hardhat's in-process network), each contract address holds
 * the contract expected (its EIP-712 domain names it), the signer is the one asked for and holds
 * what the call needs (a role, a device's ownership) — each refusal one line naming the flag to
 * change. Contract reverts come back as the shared decoder's sentence (src/errors), never as a
 * stack trace. Imported by the actions only (it loads ethers).
 */
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import {
  Contract,
  FetchRequest,
  getAddress,
  isAddress,
  isHexString,
  JsonRpcProvider,
  Network,
  Wallet,
  type Provider,
  type Signer,
} from "ethers";
import { HardhatPluginError } from "hardhat/plugins";
import { configVariable } from "hardhat/config";
import type { HardhatEthersSigner } from "@nomicfoundation/hardhat-ethers/types";
import type { HardhatRuntimeEnvironment } from "hardhat/types/hre";
import type { NetworkConnection } from "hardhat/types/network";
import { DOMAINS, type DomainName } from "../src/eip712/index.js";
import type {
  CustodyLedger,
  DeviceRegistry,
  LocationBeacons,
  LockAccess,
  PaymentChannels,
} from "../typechain-types/index.js";
import { inputError, type SignerArgs } from "./support.js";

/** The chain a task acts on, and what it knows about it. */
export interface Chain {
  hre: HardhatRuntimeEnvironment;
  /** The task's name, for messages. */
  task: string;
  /** Reads (and, through the connection's signers, writes) go here. */
  provider: Provider;
  /** Hardhat's connection to the network: opened for a task that writes, or when accounts are needed. */
  connection?: NetworkConnection;
  /** The network's name (`localhost`, `default`…). */
  network: string;
  /** Hardhat's in-process network: a chain that lives as long as this process. */
  inProcess: boolean;
  /** In process and still at block 0: nobody in this process deployed or sent anything to it. */
  fresh: boolean;
  chainId: bigint;
  accounts?: HardhatEthersSigner[];
  contracts: Map<string, string>;
}

/**
 * The `--network` chain. A task that writes, or runs without `--network` (a test's or a script's
 * chain: one connection per process), acts through Hardhat's connection. A task that only reads an
 * HTTP network it was named (`--network localhost`) talks JSON-RPC to it directly: Hardhat's
 * connection loads every plugin's network hooks and an HTTP client of its own first, a good part of
 * such a task's start-up for one or two calls.
 *
 * A task that `writes` refuses a fresh in-process chain: without `--network` Hardhat runs one that
 * starts empty and is gone when the command ends, so a transaction "sent" there is lost (a test
 * that deployed on its in-process chain has blocks on it, and may write).
 */
export async function openChain(hre: HardhatRuntimeEnvironment, task: string, writes: boolean): Promise<Chain> {
  const named = hre.globalOptions.network;
  const config = named === undefined ? undefined : hre.config.networks[named];
  if (!writes && config?.type === "http") {
    const request = new FetchRequest(await config.url.getUrl());
    for (const [k, v] of Object.entries(config.httpHeaders)) request.setHeader(k, v);
    request.timeout = config.timeout;
    // The chain id first, by hand: ethers' own network detection retries forever when no node answers.
    const probe = request.clone();
    probe.setHeader("content-type", "application/json");
    probe.body = JSON.stringify({ jsonrpc: "2.0", id: 1, method: "eth_chainId", params: [] });
    let chainId: bigint;
    try {
      const answer = await probe.send();
      answer.assertOk();
      chainId = BigInt((answer.bodyJson as { result: string }).result);
    } catch (err) {
      throw inputError(
        `--network ${named}: no chain answers at ${request.url} (${(err as { shortMessage?: string }).shortMessage ?? (err as Error).message}): is the node running?`,
      );
    }
    // No result cache: its clean-up timer (250 ms) would keep the process alive after the task.
    const provider = new JsonRpcProvider(request, Network.from(chainId), {
      staticNetwork: true,
      batchMaxCount: 1,
      cacheTimeout: -1,
    });
    return { hre, task, provider, network: named!, inProcess: false, fresh: false, chainId, contracts: new Map() };
  }
  const connection = await hre.network.getOrCreate();
  const provider = connection.ethers.provider as unknown as Provider;
  const inProcess = connection.networkConfig.type === "edr-simulated";
  const [network, block] = await Promise.all([provider.getNetwork(), inProcess ? provider.getBlockNumber() : 1]);
  const chain: Chain = {
    hre,
    task,
    provider,
    connection,
    network: connection.networkName,
    inProcess,
    fresh: inProcess && block === 0,
    chainId: network.chainId,
    contracts: new Map(),
  };
  if (writes && chain.fresh) throw inputError(`${task}: ${noNetwork(chain)}`);
  return chain;
}

/** Hardhat's connection to the chain (opened now if the task had only read until now). */
export async function connectionOf(chain: Chain): Promise<NetworkConnection> {
  chain.connection ??= await chain.hre.network.getOrCreate();
  return chain.connection;
}

type Typed = {
  DeviceRegistry: DeviceRegistry;
  LockAccess: LockAccess;
  PaymentChannels: PaymentChannels;
  CustodyLedger: CustodyLedger;
  LocationBeacons: LocationBeacons;
};

/** The contract `name` at `address` (its artifact's ABI), signing as `runner` when given. */
export async function contractAt<N extends keyof Typed>(
  chain: Chain,
  name: N,
  address: string,
  runner?: TaskSigner,
): Promise<Typed[N]> {
  const { abi } = await chain.hre.artifacts.readArtifact(name);
  return new Contract(address, abi, runner?.signer ?? chain.provider) as unknown as Typed[N];
}

/** Why a fresh in-process chain is not the one meant, naming `--network`. */
function noNetwork(chain: Chain): string {
  const named = chain.hre.globalOptions.network !== undefined;
  return (
    (named
      ? `--network ${chain.network} is Hardhat's in-process network, which`
      : "no --network given: this would run on Hardhat's in-process network, which") +
    " starts empty and is gone when the command ends; add --network localhost (a running `npx hardhat node`) or the network your contracts are on"
  );
}

export const CONTRACTS = {
  DeviceRegistry: { flag: "--registry", env: "CUSTOS_REGISTRY", domain: "registry" },
  LockAccess: { flag: "--locks", env: "CUSTOS_LOCK_ACCESS", domain: "lock" },
  PaymentChannels: { flag: "--channels", env: "CUSTOS_PAYMENT_CHANNELS", domain: "channels" },
  CustodyLedger: { flag: "--ledger", env: "CUSTOS_CUSTODY_LEDGER", domain: "custody" },
  LocationBeacons: { flag: "--beacons", env: "CUSTOS_LOCATION_BEACONS", domain: "beacons" },
} as const satisfies Record<string, { flag: string; env: string; domain: DomainName }>;

export type ContractName = keyof typeof CONTRACTS;

const EIP712_DOMAIN_ABI = [
  "function eip712Domain() view returns (bytes1 fields, string name, string version, uint256 chainId, address verifyingContract, bytes32 salt, uint256[] extensions)",
];

/**
 * The address of `name` on this chain: `flag` (the task's argument), else its environment
 * variable, else this chain id's Ignition deployment of the Custos module. Refused, naming where
 * the address came from: a deployment file read on the in-process network (the file is another
 * network's with the same chain id), an address with no code, and a contract that is not `name`
 * (its EIP-712 domain — name, chain id, address — must be `name`'s).
 */
export async function contractAddress(chain: Chain, name: ContractName, flag?: string): Promise<string> {
  const { flag: flagName, env, domain } = CONTRACTS[name];
  const chosen = flag || process.env[env];
  let address: string;
  let source: string;
  if (chosen) {
    if (!isAddress(chosen)) throw inputError(`${flag ? flagName : env}: ${chosen} is not an address`);
    [address, source] = [getAddress(chosen), flag ? flagName : env];
  } else {
    const file = path.join(
      chain.hre.config.paths.ignition,
      "deployments",
      `chain-${chain.chainId}`,
      "deployed_addresses.json",
    );
    const deployed = existsSync(file)
      ? (JSON.parse(readFileSync(file, "utf8")) as Record<string, string>)[`Custos#${name}`]
      : undefined;
    if (!deployed) {
      if (chain.fresh) throw inputError(`${chain.task}: ${noNetwork(chain)}`);
      throw inputError(`${flagName} is required (or ${env}, or an Ignition deployment of the Custos module)`);
    }
    const relative = path.relative(process.cwd(), file);
    // Hardhat's in-process network has chain id 31337 too, but Ignition never records deployments
    // on it: this file is `localhost`'s (or another node's), not this chain's.
    if (chain.inProcess)
      throw inputError(
        `${chain.task}: ${flagName} would come from ${relative}, a deployment on a node, but ${
          chain.hre.globalOptions.network === undefined ? "no --network was given and " : ""
        }this runs on Hardhat's in-process network: add --network localhost (or the network of that deployment)`,
      );
    [address, source] = [getAddress(deployed), `${flagName} (from ${relative})`];
  }
  const cached = chain.contracts.get(`${name}:${address}`);
  if (cached) return cached;
  // Both questions at once (one round trip on a node): is there code, and whose EIP-712 domain is it.
  const [code, domainOf] = await Promise.all([
    chain.provider.getCode(address),
    new Contract(address, EIP712_DOMAIN_ABI, chain.provider).eip712Domain().then(
      (d) => ({ name: String(d.name), chainId: BigInt(d.chainId), verifyingContract: String(d.verifyingContract) }),
      () => undefined, // no such function (or no code): told apart below
    ),
  ]);
  if (code === "0x") {
    if (chain.fresh) throw inputError(`${source}: no contract at ${address}: ${noNetwork(chain)}`);
    throw inputError(
      chosen
        ? `${source}: no contract at ${address} on network ${chain.network} (is --network the right one?)`
        : `${source}: no contract at ${address} on network ${chain.network}: the deployment file is older than this chain (a restarted node?); deploy again, or name the address with ${flagName}`,
    );
  }
  const expected = DOMAINS[domain].name;
  const domainName = domainOf?.name;
  if (domainOf && (domainOf.chainId !== chain.chainId || getAddress(domainOf.verifyingContract) !== address))
    throw inputError(`${source}: ${address} answers for another chain or address: not the ${name} it names`);
  if (domainName !== expected) {
    const other = Object.entries(CONTRACTS).find(([, c]) => DOMAINS[c.domain].name === domainName)?.[0];
    const what = other
      ? `the suite's ${other}`
      : domainName === undefined
        ? "a contract without an EIP-712 domain"
        : `"${domainName}"`;
    throw inputError(`${source}: ${address} is ${what}, not a Custos ${name}: ${flagName} names the wrong contract`);
  }
  chain.contracts.set(`${name}:${address}`, address);
  return address;
}

/** A shortened address or hex string for messages: 0x7099…79C8. */
export function short(hex: string): string {
  return hex.length > 14 ? `${hex.slice(0, 6)}…${hex.slice(-4)}` : hex;
}

/** Who signs for a task, and how to name it in a message. */
export interface TaskSigner {
  signer: Signer;
  address: string;
  /** `account #1 (0x7099…79C8)`, `--keystore op.json (0x…)`, `CUSTOS_SIGNER_KEY (0x…)`. */
  label: string;
}

/** The network's accounts (`eth_accounts` of a node, or the keys its config lists). */
export async function accountsOf(chain: Chain): Promise<HardhatEthersSigner[]> {
  chain.accounts ??= await (await connectionOf(chain)).ethers.getSigners();
  return chain.accounts;
}

/**
 * How to sign as `address` here: `account #3 (0x…)[, the owner,] does: add --signer 3`, or that it
 * is not an account of this network and takes its own key.
 */
export async function howToSignAs(chain: Chain, address: string, as?: string): Promise<string> {
  const i = (await accountsOf(chain)).findIndex((a) => a.address.toLowerCase() === address.toLowerCase());
  const role = as ? `, ${as},` : "";
  return i >= 0
    ? `account #${i} (${short(getAddress(address))})${role} does: add --signer ${i}`
    : `${getAddress(address)}${role} does, which is not an account of network ${chain.network}: sign with its key (--keystore FILE or --signer-var NAME)`;
}

/**
 * The signer the task's signer options name (default: account #0 of the network). One that `sends`
 * a transaction must have ETH for its gas: an empty account is refused before anything is sent.
 */
export async function signerOf(chain: Chain, args: SignerArgs, sends = false): Promise<TaskSigner> {
  const who = await chooseSigner(chain, args);
  if (sends && (await chain.provider.getBalance(who.address)) === 0n)
    throw inputError(
      `${chain.task}: ${who.label} has no ETH to pay for gas on network ${chain.network}: fund it, or sign with another account (--signer, --keystore or --signer-var)`,
    );
  return who;
}

async function chooseSigner(chain: Chain, args: SignerArgs): Promise<TaskSigner> {
  const given = (["signer", "keystore", "signerVar"] as const).filter((k) => args[k] !== undefined);
  if (given.length > 1) throw inputError("give one of --signer, --keystore and --signer-var, not several");
  if (args.passwordFile !== undefined && args.keystore === undefined)
    throw inputError("--password-file goes with --keystore (the key file it unlocks)");
  const provider = chain.provider;
  if (args.keystore !== undefined) {
    const file = args.keystore;
    const passFile = args.passwordFile ?? (process.env.CUSTOS_PASSWORD_FILE || undefined);
    let password: string;
    if (passFile !== undefined) {
      const flag = args.passwordFile !== undefined ? "--password-file" : "CUSTOS_PASSWORD_FILE";
      if (!existsSync(passFile)) throw inputError(`${flag}: ${passFile} does not exist`);
      password = readFileSync(passFile, "utf8").replace(/\r?\n$/, "");
    } else if (process.env.CUSTOS_PASSWORD) password = process.env.CUSTOS_PASSWORD;
    else
      throw inputError("--keystore needs its password: --password-file FILE, CUSTOS_PASSWORD_FILE or CUSTOS_PASSWORD");
    const { loadKeyMaterial, KeystoreError } = await import("../src/agent/keystore.js");
    let material;
    try {
      material = await loadKeyMaterial(file, password);
    } catch (err) {
      if (err instanceof KeystoreError) throw inputError(`--keystore: ${err.message}`);
      throw err;
    }
    if (material.kind !== "secp256k1")
      throw inputError(
        `--keystore: ${file} holds a P-256 device key, which cannot send transactions: give an account's key`,
      );
    const wallet = new Wallet(material.privateKey, provider);
    return { signer: wallet, address: wallet.address, label: `--keystore ${file} (${short(wallet.address)})` };
  }
  if (args.signerVar !== undefined) {
    const name = args.signerVar;
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name))
      throw inputError(`--signer-var: ${name} is not a configuration variable's name (like CUSTOS_SIGNER_KEY)`);
    let value = process.env[name];
    if (value === undefined) {
      // The keystore plugin answers for the variables it holds (asking for its password); the
      // last link of the chain is reached only when nobody has it.
      try {
        value = await chain.hre.hooks.runHandlerChain(
          "configurationVariables",
          "fetchValue",
          [configVariable(name)],
          async () => {
            throw inputError(
              `--signer-var: ${name} is not set: export it, or store it with \`npx hardhat keystore set ${name}\``,
            );
          },
        );
      } catch (err) {
        // The keystore plugin's own refusals (a wrong password; under `hardhat test` it reads only
        // its development keystore), named by the flag.
        if (!isHardhatError(err)) throw err;
        throw inputError(`--signer-var: ${(err as Error).message.replace(/^HHE\d+: /, "")}`);
      }
    }
    const key = value.trim().startsWith("0x") ? value.trim() : `0x${value.trim()}`;
    if (!isHexString(key, 32)) throw inputError(`--signer-var: ${name} does not hold a private key (32 bytes of hex)`);
    const wallet = new Wallet(key, provider);
    return { signer: wallet, address: wallet.address, label: `${name} (${short(wallet.address)})` };
  }
  const accounts = await accountsOf(chain);
  if (accounts.length === 0)
    throw inputError(`network ${chain.network} has no accounts: sign with --keystore FILE or --signer-var NAME`);
  let index = 0;
  if (args.signer !== undefined) {
    const s = args.signer.trim();
    if (/^[0-9]+$/.test(s)) {
      index = Number(s);
      if (index >= accounts.length)
        throw inputError(
          `--signer: no account ${s} on network ${chain.network} (it has ${accounts.length}: 0–${accounts.length - 1})`,
        );
    } else if (isAddress(s)) {
      index = accounts.findIndex((a) => a.address.toLowerCase() === s.toLowerCase());
      if (index < 0)
        throw inputError(
          `--signer: ${s} is not an account of network ${chain.network}: give an index or address among its accounts, or sign with --keystore or --signer-var`,
        );
    } else throw inputError(`--signer: ${s} is neither an account index nor an address`);
  }
  const account = accounts[index];
  return { signer: account, address: account.address, label: `account #${index} (${short(account.address)})` };
}

/**
 * Refuses unless `who` holds `roleName` on `contract` (an AccessControl contract), naming the
 * account of this network that does (`add --signer N`).
 */
export async function needRole(
  chain: Chain,
  who: TaskSigner,
  contract: { hasRole(role: string, account: string): Promise<boolean>; getAddress(): Promise<string> },
  contractName: ContractName,
  roleName: string,
  role: string,
  what: string,
): Promise<void> {
  if (await contract.hasRole(role, who.address)) return;
  const accounts = await accountsOf(chain);
  const holders: number[] = [];
  for (let i = 0; i < accounts.length && holders.length < 1; i++)
    if (await contract.hasRole(role, accounts[i].address)) holders.push(i);
  const at = `the ${contractName} at ${short(await contract.getAddress())}`;
  throw inputError(
    `${what} needs ${roleName} on ${at}: ${who.label} does not hold it; ` +
      (holders.length > 0
        ? `account #${holders[0]} (${short(accounts[holders[0]].address)}) does: add --signer ${holders[0]}`
        : `no account of network ${chain.network} does: sign with a holder's key (--keystore FILE or --signer-var NAME)`),
  );
}

/** Refuses unless `who` is `owner` (what `what` needs), naming how to sign as the owner. */
export async function needAccount(
  chain: Chain,
  who: TaskSigner,
  owner: string,
  what: string,
  as = "the owner",
): Promise<void> {
  if (owner.toLowerCase() === who.address.toLowerCase()) return;
  throw inputError(`${what}: ${who.label} is not; ${await howToSignAs(chain, owner, as)}`);
}

/** Hardhat's own errors (a network it cannot reach, say): they are printed as one line already. */
function isHardhatError(err: unknown): boolean {
  // Its class lives in @nomicfoundation/hardhat-errors, a dependency of Hardhat's, not ours.
  return (
    typeof err === "object" && err !== null && Object.getOwnPropertyDescriptor(err, "_isHardhatError")?.value === true
  );
}

/**
 * Runs an action with its failures as one line: bad input (already named) as it is, a revert of
 * a contract as the shared decoder's sentence, anything else as its first line (the whole error is
 * kept as the cause: `--show-stack-traces` prints it).
 */
export function taskAction<A, R>(task: string, action: (args: A, hre: HardhatRuntimeEnvironment) => Promise<R>) {
  return async (args: A, hre: HardhatRuntimeEnvironment): Promise<R> => {
    try {
      return await action(args, hre);
    } catch (err) {
      if (HardhatPluginError.isHardhatPluginError(err) || isHardhatError(err)) throw err;
      // Loaded on failure only: its tables are read from the artifacts when first used anyway.
      const { decodeContractError, explainContractError } = await import("../src/errors/index.js");
      const revert = explainContractError(err);
      if (revert !== undefined)
        throw new HardhatPluginError("custos", `${task}: the chain refused it: ${revert.sentence}`, err as Error);
      throw new HardhatPluginError("custos", `${task}: ${decodeContractError(err)}`, err as Error);
    }
  };
}

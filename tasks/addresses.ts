/**
 * Where the suite's contracts are, for the tasks: the task's flag, else an environment variable,
 * else this chain's Ignition deployment of the Custos module.
 */
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import type { HardhatRuntimeEnvironment } from "hardhat/types";

export const CONTRACTS = {
  DeviceRegistry: { flag: "--registry", env: "CUSTOS_REGISTRY" },
  LockAccess: { flag: "--locks", env: "CUSTOS_LOCK_ACCESS" },
  PaymentChannels: { flag: "--channels", env: "CUSTOS_PAYMENT_CHANNELS" },
  CustodyLedger: { flag: "--ledger", env: "CUSTOS_CUSTODY_LEDGER" },
} as const;

export type ContractName = keyof typeof CONTRACTS;

/** The address of `name`: `flag` (its task argument), else its variable, else the Ignition deployment. */
export async function contractAddress(
  hre: HardhatRuntimeEnvironment,
  name: ContractName,
  flag?: string,
): Promise<string> {
  const { flag: flagName, env } = CONTRACTS[name];
  const chosen = flag || process.env[env];
  if (chosen) {
    if (!hre.ethers.isAddress(chosen)) throw new Error(`${flagName}: ${chosen} is not an address`);
    return chosen;
  }
  const { chainId } = await hre.ethers.provider.getNetwork();
  const file = path.join(
    hre.config.paths.root,
    "ignition",
    "deployments",
    `chain-${chainId}`,
    "deployed_addresses.json",
  );
  if (existsSync(file)) {
    const address = JSON.parse(readFileSync(file, "utf8"))[`Custos#${name}`];
    if (address) return address;
  }
  throw new Error(`${flagName} is required (or ${env}, or an Ignition deployment of the Custos module)`);
}

/** A device id argument (decimal or 0x-hex). */
export function deviceIdArg(value: string, flag = "--device"): bigint {
  if (!/^(0x[0-9a-fA-F]+|[0-9]+)$/.test(value ?? "")) throw new Error(`${flag}: ${value} is not a device id`);
  return BigInt(value);
}

/** A positive integer amount argument (wei or token base units). */
export function amountArg(value: string, flag: string): bigint {
  if (!/^[0-9]+$/.test(value ?? "") || BigInt(value) === 0n)
    throw new Error(`${flag}: ${value} must be a positive integer`);
  return BigInt(value);
}

/** Reads a JSON file named by a flag, with errors naming the flag. */
export function readJsonArg(file: string, flag: string): unknown {
  if (!existsSync(file)) throw new Error(`${flag}: ${file} does not exist`);
  try {
    return JSON.parse(readFileSync(file, "utf8"));
  } catch (err) {
    throw new Error(`${flag}: ${file} is not JSON (${(err as Error).message})`);
  }
}

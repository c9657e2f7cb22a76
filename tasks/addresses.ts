/**
 * Where the suite's contracts are, for the tasks: the task's flag, else an environment variable,
 * else this chain's Ignition deployment of the Custos module.
 */
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { isAddress } from "ethers";
import type { HardhatRuntimeEnvironment } from "hardhat/types/hre";
import { chainOf, inputError } from "./support.js";

export const CONTRACTS = {
  DeviceRegistry: { flag: "--registry", env: "CUSTOS_REGISTRY" },
  LockAccess: { flag: "--locks", env: "CUSTOS_LOCK_ACCESS" },
  PaymentChannels: { flag: "--channels", env: "CUSTOS_PAYMENT_CHANNELS" },
  CustodyLedger: { flag: "--ledger", env: "CUSTOS_CUSTODY_LEDGER" },
} as const;

export type ContractName = keyof typeof CONTRACTS;

/**
 * The address of `name`: `flag` (its task argument), else its variable, else the Ignition
 * deployment. It must hold code on this network: a wrong `--network` fails here, by name, instead
 * of sending transactions to an empty address.
 */
export async function contractAddress(
  hre: HardhatRuntimeEnvironment,
  name: ContractName,
  flag?: string,
): Promise<string> {
  const { flag: flagName, env } = CONTRACTS[name];
  const { provider } = await chainOf(hre);
  const chosen = flag || process.env[env];
  let address: string | undefined;
  let source: string;
  if (chosen) {
    if (!isAddress(chosen)) throw inputError(`${flagName}: ${chosen} is not an address`);
    [address, source] = [chosen, flag ? flagName : env];
  } else {
    const { chainId } = await provider.getNetwork();
    const file = path.join(hre.config.paths.ignition, "deployments", `chain-${chainId}`, "deployed_addresses.json");
    if (existsSync(file)) address = JSON.parse(readFileSync(file, "utf8"))[`Custos#${name}`];
    if (!address)
      throw inputError(`${flagName} is required (or ${env}, or an Ignition deployment of the Custos module)`);
    source = `${flagName} (from ${path.relative(process.cwd(), file)})`;
  }
  if ((await provider.getCode(address)) === "0x")
    throw inputError(`${source}: no contract at ${address} on this network (is --network the right one?)`);
  return address;
}

/** A device id argument (decimal or 0x-hex). */
export function deviceIdArg(value: string, flag = "--device"): bigint {
  if (!/^(0x[0-9a-fA-F]+|[0-9]+)$/.test(value ?? "")) throw inputError(`${flag}: ${value} is not a device id`);
  return BigInt(value);
}

/** A positive integer amount argument (wei or token base units). */
export function amountArg(value: string, flag: string): bigint {
  if (!/^[0-9]+$/.test(value ?? "") || BigInt(value) === 0n)
    throw inputError(`${flag}: ${value} must be a positive integer`);
  return BigInt(value);
}

/** Reads a JSON file named by a flag, with errors naming the flag. */
export function readJsonArg(file: string, flag: string): unknown {
  if (!existsSync(file)) throw inputError(`${flag}: ${file} does not exist`);
  try {
    return JSON.parse(readFileSync(file, "utf8"));
  } catch (err) {
    throw inputError(`${flag}: ${file} is not JSON (${(err as Error).message})`);
  }
}

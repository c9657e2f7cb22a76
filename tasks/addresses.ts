/**
 * Arguments the tasks share: device ids, amounts, JSON files. (Where the contracts are, and the
 * checks that they are the contracts expected: ./chain.ts.)
 */
import { existsSync, readFileSync } from "node:fs";
import { inputError } from "./support.js";

/** A device id argument (decimal or 0x-hex). */
export function deviceIdArg(value: string, flag = "--device"): bigint {
  if (!/^(0x[0-9a-fA-F]+|[0-9]+)$/.test(value ?? "") || BigInt(value) === 0n || BigInt(value) >= 1n << 192n)
    throw inputError(`${flag}: ${value} is not a device id`);
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

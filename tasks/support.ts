/**
 * What every task shares: the chain it acts on, how bad input is reported, and lazy actions.
 * Loaded by the config (through the task definitions): it imports no ethers and no contract types.
 */
import { HardhatPluginError } from "hardhat/plugins";
import { ArgumentType } from "hardhat/types/arguments";
import type { HardhatEthers } from "@nomicfoundation/hardhat-ethers/types";
import type { HardhatRuntimeEnvironment } from "hardhat/types/hre";

/**
 * The chain the tasks act on: the `--network` one, one connection per process. Each
 * `network.create()` would be a chain of its own (an in-process network starts empty every time);
 * `getOrCreate()` gives a script or a test that runs a task the chain it already holds, when it took
 * its own connection with `getOrCreate()` too.
 */
export async function chainOf(hre: HardhatRuntimeEnvironment): Promise<HardhatEthers> {
  return (await hre.network.getOrCreate()).ethers;
}

/**
 * Bad input to a task. Hardhat prints it as one line ("Error in community plugin custos: …"); a
 * plain Error would come with a stack trace and an invitation to report a bug in Hardhat.
 */
export function inputError(message: string): HardhatPluginError {
  return new HardhatPluginError("custos", message);
}

/** The value of an option the task cannot run without (Hardhat 3 options are all optional). */
export function required<T>(value: T | undefined, flag: string): T {
  if (value === undefined) throw inputError(`${flag} is required`);
  return value;
}

/** A whole number (decimal) given to `flag`. */
export function intArg(value: string, flag: string): number {
  if (!/^[0-9]+$/.test(value) || !Number.isSafeInteger(Number(value)))
    throw inputError(`${flag}: ${value} must be a non-negative integer`);
  return Number(value);
}

/**
 * A whole number that may be negative (decimal), given to `flag`. Surrounding spaces are allowed:
 * Hardhat 3's command line takes any word starting with "-" for an option (and its INT type has no
 * sign), so a negative value is written with a leading space: `--min-temp " -2000"`.
 */
export function signedIntArg(value: string, flag: string): number {
  if (!/^\s*-?[0-9]+\s*$/.test(value) || !Number.isSafeInteger(Number(value)))
    throw inputError(`${flag}: ${value} must be an integer (a negative one with a leading space: " -2000")`);
  return Number(value);
}

/**
 * The action `name` of the module `load` imports, imported only when the task runs: the config
 * loads just the definitions, so `npx hardhat --help` and the first build need neither ethers nor
 * the typechain bindings (which do not exist before that build).
 */
export function lazy<M, K extends keyof M>(load: () => Promise<M>, name: K): () => Promise<{ default: M[K] }> {
  return async () => ({ default: (await load())[name] });
}

/** An option that may be left out (`undefined` when it is). */
export function optional<N extends string>(name: N, description: string) {
  return { name, description, type: ArgumentType.STRING_WITHOUT_DEFAULT, defaultValue: undefined } as const;
}

/**
 * An option the task needs. Hardhat 3 has no required options: the action checks it with
 * `required`, so leaving it out fails with "--name is required".
 */
export function needed<N extends string>(name: N, description: string) {
  return optional(name, `${description} (required)`);
}

/** A string option with a default. */
export function text<N extends string>(name: N, description: string, defaultValue: string) {
  return { name, description, type: ArgumentType.STRING, defaultValue } as const;
}

/** An integer option with a default. */
export function int<N extends string>(name: N, description: string, defaultValue: number) {
  return { name, description, type: ArgumentType.INT, defaultValue } as const;
}

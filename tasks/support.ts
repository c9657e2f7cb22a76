/**
 * What every task definition shares: its options, how bad input is reported, and lazy actions.
 * Loaded by the config (through the task definitions): it imports no ethers and no contract types.
 * The chain a task acts on and the checks before it acts are in ./chain.ts (loaded by the actions).
 */
import { HardhatPluginError } from "hardhat/plugins";
import { ArgumentType } from "hardhat/types/arguments";
import type { NewTaskDefinitionBuilder, TaskArguments } from "hardhat/types/tasks";

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

/**
 * Who signs what a task sends (or, for `lock:grant` and `custody:sign-handoff`, signs off chain):
 * one of an account of the network by index or address (`--signer`, default account #0), an
 * encrypted key file (`--keystore`, its password from `--password-file`, CUSTOS_PASSWORD_FILE or
 * CUSTOS_PASSWORD, as the agent reads its own), or a Hardhat configuration variable holding a
 * private key (`--signer-var CUSTOS_SIGNER_KEY`: the environment, or `npx hardhat keystore set`).
 */
export const SIGNER_OPTIONS = [
  optional("signer", "the signing account: its index among the network's accounts, or its address (default: 0)"),
  optional("keystore", "sign with this encrypted key file (Web3 Secret Storage) instead of an account of the network"),
  optional("passwordFile", "the --keystore file's password (else CUSTOS_PASSWORD_FILE or CUSTOS_PASSWORD)"),
  optional(
    "signerVar",
    "sign with the private key in this Hardhat configuration variable (the environment, or `npx hardhat keystore set NAME`)",
  ),
] as const;

/** The signer options of a task: `--signer`, `--keystore`, `--password-file`, `--signer-var`. */
export interface SignerArgs {
  signer?: string;
  keystore?: string;
  passwordFile?: string;
  signerVar?: string;
}

/** Adds {@link SIGNER_OPTIONS} to a task definition. */
export function signing<B extends NewTaskDefinitionBuilder<TaskArguments>>(builder: B): B {
  // The actions type their arguments themselves (lazy actions): the builder's type may stay as it was.
  let b: NewTaskDefinitionBuilder<TaskArguments> = builder;
  for (const option of SIGNER_OPTIONS) b = b.addOption(option);
  return b as B;
}

/** An integer option with a default. */
export function int<N extends string>(name: N, description: string, defaultValue: number) {
  return { name, description, type: ArgumentType.INT, defaultValue } as const;
}

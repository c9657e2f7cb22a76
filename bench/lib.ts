/** The gas bench's shared pieces: a recorder that reads gas from receipts, and the budgets. */
import type { ContractTransactionResponse } from "ethers";
import { formatProfile, profileTransaction } from "./profile.js";

/** `BENCH_PROFILE=channel.claim,custody.checkpoint` (or `*`) prints where those operations' gas goes. */
const PROFILE = (process.env.BENCH_PROFILE ?? "").split(",").filter((s) => s !== "");

export class GasRecorder {
  readonly results: Record<string, number> = {};

  /** Waits for `tx` and records its receipt's gasUsed under `name` (21k base included). */
  async record(name: string, tx: Promise<ContractTransactionResponse> | ContractTransactionResponse): Promise<number> {
    if (name in this.results) throw new Error(`bench: operation ${name} recorded twice`);
    const receipt = await (await tx).wait();
    if (!receipt || receipt.status !== 1) throw new Error(`bench: ${name} failed`);
    this.results[name] = Number(receipt.gasUsed);
    if (PROFILE.includes(name) || PROFILE.includes("*")) {
      const { connection } = await import("../test/helpers/hardhat.js");
      const profile = await profileTransaction(connection.provider, receipt.hash, this.results[name]);
      console.log(formatProfile(name, this.results[name], profile));
    }
    return this.results[name];
  }

  /** Records a figure computed from recorded ones (a sum of two transactions, a share of a batch). */
  set(name: string, gas: number): void {
    if (name in this.results) throw new Error(`bench: operation ${name} recorded twice`);
    this.results[name] = Math.round(gas);
  }
}

export type GasTable = Record<string, number>;

/** The share by which a measured figure may move from the snapshot before the snapshot must be updated. */
export const SNAPSHOT_TOLERANCE = 0.01;

/**
 * Every reason the measured gas `results` are not acceptable: an operation over its budget, a
 * budgeted operation not measured, or (unless the snapshot is being rewritten) an operation new to,
 * gone from, or more than 1% away from the committed snapshot. An operation listed in `overruns`
 * (with the reason its budget is out of reach) may stay over its budget, held to the snapshot like
 * any other; once it is within budget, the list must lose it.
 */
export function gasProblems(
  results: GasTable,
  budgets: GasTable,
  snapshot: GasTable | null,
  overruns: Record<string, string> = {},
): string[] {
  const problems: string[] = [];
  for (const [op, budget] of Object.entries(budgets)) {
    if (!(op in results)) problems.push(`${op}: has a budget of ${budget} but the bench did not measure it`);
    else if (results[op] > budget && !(op in overruns))
      problems.push(`${op}: ${results[op]} gas is over its budget of ${budget}`);
    else if (results[op] <= budget && op in overruns)
      problems.push(`${op}: ${results[op]} gas is within its budget of ${budget}: take it off the overruns`);
  }
  for (const op of Object.keys(overruns)) {
    if (!(op in budgets)) problems.push(`${op}: is listed as an overrun but has no budget`);
  }
  if (snapshot === null) return problems;
  for (const [op, gas] of Object.entries(results)) {
    const was = snapshot[op];
    if (was === undefined) problems.push(`${op}: ${gas} gas is not in gas-snapshot.json`);
    else if (Math.abs(gas - was) / was > SNAPSHOT_TOLERANCE) {
      const change = (((gas - was) / was) * 100).toFixed(2);
      problems.push(`${op}: ${gas} gas differs from the snapshot's ${was} by ${change}% (more than 1%)`);
    }
  }
  for (const op of Object.keys(snapshot)) {
    if (!(op in results)) problems.push(`${op}: is in gas-snapshot.json but the bench no longer measures it`);
  }
  return problems;
}

/** The known overruns, as lines to print: operation, measured gas, budget, reason. */
export function overrunLines(results: GasTable, budgets: GasTable, overruns: Record<string, string>): string[] {
  return Object.entries(overruns)
    .filter(([op]) => op in results && op in budgets)
    .map(([op, why]) => `${op}: ${results[op]} gas, over its budget of ${budgets[op]} (known: ${why})`);
}

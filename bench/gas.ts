/**
 * `npm run bench`: runs every operation on the in-process Hardhat network, reads gas from the
 * receipts, writes bench/results/gas.json and prints a table against the budgets.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { GasRecorder } from "./lib";
import { benchRegistry } from "./registry";
import budgets from "./budgets.json";

async function main(): Promise<void> {
  const gas = new GasRecorder();
  await benchRegistry(gas);

  const dir = path.join(__dirname, "results");
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, "gas.json"), JSON.stringify(gas.results, null, 2) + "\n");

  const budget = budgets as Record<string, number>;
  const rows = Object.entries(gas.results).map(([op, used]) => ({
    operation: op,
    gas: used,
    budget: budget[op] ?? "",
    headroom: budget[op] ? `${(((budget[op] - used) / budget[op]) * 100).toFixed(1)}%` : "",
  }));
  console.table(rows);
  console.log(`wrote ${path.relative(process.cwd(), path.join(dir, "gas.json"))}`);
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});

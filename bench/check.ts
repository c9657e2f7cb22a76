/**
 * `npm run bench:check`: compares bench/results/gas.json (just measured) with the committed
 * gas-snapshot.json and bench/budgets.json; see `gasProblems`. `--update` rewrites the snapshot
 * (`npm run bench:snapshot`), still failing on a budget overrun.
 */
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { gasProblems, overrunLines, type GasTable } from "./lib.js";

const root = path.join(import.meta.dirname, "..");
const read = (file: string): GasTable => JSON.parse(readFileSync(path.join(root, file), "utf8"));
const snapshotFile = path.join(root, "gas-snapshot.json");
const update = process.argv.includes("--update");

const results = read("bench/results/gas.json");
const snapshot = update ? null : existsSync(snapshotFile) ? read("gas-snapshot.json") : {};
const budgets = JSON.parse(readFileSync(path.join(root, "bench/budgets.json"), "utf8")) as {
  gas: GasTable;
  ratio: GasTable;
  overruns?: Record<string, string>;
};
const problems = gasProblems(results, budgets.gas, snapshot, budgets.overruns);
for (const line of overrunLines(results, budgets.gas, budgets.overruns ?? {})) console.warn(`bench:check: ${line}`);
// Gas ratios come from receipts too, so they are as repeatable as gas and held as hard ceilings.
problems.push(...gasProblems(read("bench/results/agent.json"), budgets.ratio, null));

if (update) {
  const sorted = Object.fromEntries(Object.entries(results).sort(([a], [b]) => a.localeCompare(b)));
  writeFileSync(snapshotFile, JSON.stringify(sorted, null, 2) + "\n");
  console.log(`gas-snapshot.json updated with ${Object.keys(sorted).length} operations`);
}
if (problems.length > 0) {
  console.error(`bench:check failed:\n  ${problems.join("\n  ")}`);
  if (!update) console.error("If the change is intended, run `npm run bench:snapshot` and commit gas-snapshot.json.");
  process.exit(1);
}
const known = Object.keys(budgets.overruns ?? {}).length;
console.log(
  `bench:check: ${Object.keys(results).length} operations within 1% of the snapshot; all within budget but the ${known} known overruns above`,
);

/**
 * `npm run bench`: every operation on the in-process Hardhat network with gas read from receipts
 * (bench/results/gas.json), then the off-chain throughput figures (bench/results/agent.json).
 * Prints both against their budgets: gas budgets are ceilings (enforced by `npm run bench:check`),
 * throughput budgets are floors (reported: a timed figure depends on the machine it runs on).
 */
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { GasRecorder } from "./lib";
import { benchRegistry } from "./registry";
import { benchAgent } from "./agent";
import budgets from "./budgets.json";

function table(results: Record<string, number>, limits: Record<string, number>, kind: "ceiling" | "floor"): void {
  console.table(
    Object.entries(results).map(([figure, value]) => {
      const limit = limits[figure];
      const ok = limit === undefined ? "" : kind === "ceiling" ? value <= limit : value >= limit;
      return { figure, value, budget: limit ?? "", within: ok === "" ? "" : ok ? "yes" : "NO" };
    }),
  );
}

async function main(): Promise<void> {
  const dir = path.join(__dirname, "results");
  mkdirSync(dir, { recursive: true });

  const gas = new GasRecorder();
  await benchRegistry(gas);
  writeFileSync(path.join(dir, "gas.json"), JSON.stringify(gas.results, null, 2) + "\n");
  table(gas.results, budgets.gas, "ceiling");

  const agent = await benchAgent();
  writeFileSync(path.join(dir, "agent.json"), JSON.stringify(agent, null, 2) + "\n");
  table(agent, budgets.throughput, "floor");
  console.log("wrote bench/results/gas.json and bench/results/agent.json");
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});

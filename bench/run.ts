/**
 * `npm run bench`: every operation on the in-process Hardhat network with gas read from receipts
 * (bench/results/gas.json), then the off-chain throughput figures (bench/results/agent.json).
 * Prints both against their budgets: gas budgets and gas ratios are ceilings (enforced by
 * `npm run bench:check`); throughput floors and latency ceilings are reported but not enforced,
 * since a timed figure depends on the machine and on what else it is doing.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { GasRecorder } from "./lib";
import { benchRegistry } from "./registry";
import { benchLock, measureUnlockLatency } from "./lock";
import { benchChannels } from "./channels";
import { benchCustody } from "./custody";
import { benchAgent } from "./agent";
import { measureRelayer } from "./relayer";
import budgets from "./budgets.json";

function table(
  results: Record<string, number>,
  limits: { ceilings?: Record<string, number>; floors?: Record<string, number> },
): void {
  console.table(
    Object.entries(results).map(([figure, value]) => {
      const [ceiling, floor] = [limits.ceilings?.[figure], limits.floors?.[figure]];
      const budget = ceiling !== undefined ? `≤ ${ceiling}` : floor !== undefined ? `≥ ${floor}` : "";
      const ok = ceiling !== undefined ? value <= ceiling : floor !== undefined ? value >= floor : undefined;
      return { figure, value, budget, within: ok === undefined ? "" : ok ? "yes" : "NO" };
    }),
  );
}

async function main(): Promise<void> {
  const dir = path.join(__dirname, "results");
  mkdirSync(dir, { recursive: true });

  const gas = new GasRecorder();
  await benchRegistry(gas);
  await benchLock(gas);
  await benchChannels(gas);
  await benchCustody(gas);
  writeFileSync(path.join(dir, "gas.json"), JSON.stringify(gas.results, null, 2) + "\n");
  table(gas.results, { ceilings: budgets.gas });

  // Signing and verification first, in a quiet process; then the relayer, against a `hardhat
  // node` of its own over loopback HTTP.
  const signing = await benchAgent();
  const latency = await measureUnlockLatency();
  const relayer = await measureRelayer({ log: (line) => console.log(line) });
  const agent: Record<string, number> = { ...signing, ...latency, ...relayer };
  writeFileSync(path.join(dir, "agent.json"), JSON.stringify(agent, null, 2) + "\n");
  table(agent, { floors: budgets.throughput, ceilings: { ...budgets.latency, ...budgets.ratio } });
  console.log("wrote bench/results/gas.json and bench/results/agent.json");
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});

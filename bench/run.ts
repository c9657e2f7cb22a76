/**
 * `npm run bench`: every operation on the in-process Hardhat network with gas read from receipts
 * (bench/results/gas.json), then the off-chain throughput figures (bench/results/agent.json).
 * Prints both against their budgets: gas budgets and gas ratios are ceilings (enforced by
 * `npm run bench:check`); throughput floors and latency ceilings are reported but not enforced,
 * since a timed figure depends on the machine and on what else it is doing.
 */
import { execFileSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { GasRecorder } from "./lib.js";
import { benchRegistry } from "./registry.js";
import { benchLock, measureUnlockLatency } from "./lock.js";
import { benchChannels } from "./channels.js";
import { benchCustody } from "./custody.js";
import { measureRelayer } from "./relayer.js";
import budgets from "./budgets.json" with { type: "json" };

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

/** `benchAgent`'s figures from a fresh Node process (bench/agentMain.ts). */
function benchAgentInItsOwnProcess(): Record<string, number> {
  const out = execFileSync(process.execPath, ["--import", "tsx", path.join(import.meta.dirname, "agentMain.ts")], {
    encoding: "utf8",
    stdio: ["ignore", "pipe", "inherit"],
  });
  return JSON.parse(out.trim().split("\n").pop()!) as Record<string, number>;
}

async function main(): Promise<void> {
  const dir = path.join(import.meta.dirname, "results");
  mkdirSync(dir, { recursive: true });

  const gas = new GasRecorder();
  await benchRegistry(gas);
  await benchLock(gas);
  await benchChannels(gas);
  await benchCustody(gas);
  writeFileSync(path.join(dir, "gas.json"), JSON.stringify(gas.results, null, 2) + "\n");
  table(gas.results, { ceilings: budgets.gas });

  // Signing and verification first, in a quiet process of their own; then the relayer, against a
  // `hardhat node` of its own over loopback HTTP.
  const signing = benchAgentInItsOwnProcess();
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

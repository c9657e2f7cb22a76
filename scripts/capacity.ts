/**
 * `npm run capacity`: the capacity model, computed from the measured gas in bench/results (run
 * `npm run bench` first). For each kind of device message: how many fit in a block and in a day,
 * and what one device sending it on a schedule costs per year, on Ethereum L1 and on an L2. The
 * network figures are assumptions, stated below and easy to change; the gas is measured.
 */
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";

const NETWORKS = {
  "Ethereum L1": { blockGas: 36_000_000, blockSeconds: 12, gasPriceGwei: 5 },
  "an OP-stack L2": { blockGas: 30_000_000, blockSeconds: 2, gasPriceGwei: 0.01 },
} as const;
const ETH_USD = 3_000;
/** What the model leaves to everyone else: Custos takes at most this share of each block. */
const SHARE = 0.1;

const root = path.join(import.meta.dirname, "..");

/** A figure file of the bench; a clear error (and the fix) when the bench has not run here yet. */
function results(name: string): Record<string, number> {
  const file = path.join(root, "bench", "results", name);
  if (!existsSync(file)) {
    console.error(`capacity: ${path.relative(root, file)} is missing: run \`npm run bench\` first`);
    process.exit(1);
  }
  return JSON.parse(readFileSync(file, "utf8")) as Record<string, number>;
}
const gas = results("gas.json");
const agent = results("agent.json");

const MESSAGES: { what: string; gas: number; perDay: number }[] = [
  { what: "firmware attestation, relayed in batches of 20", gas: agent["relayer.batch20_gas_per_message"], perDay: 1 },
  { what: "tracker checkpoint (every 15 min)", gas: gas["custody.checkpoint"], perDay: 96 },
  { what: "custody handoff (4 a day)", gas: gas["custody.handoff"], perDay: 4 },
  { what: "lock log anchor (hourly)", gas: gas["lock.anchorLog"], perDay: 24 },
  { what: "channel claim (hourly)", gas: gas["channel.claim"], perDay: 24 },
];

const fmt = (n: number, digits = 0) => n.toLocaleString("en-US", { maximumFractionDigits: digits });
const lines = [
  `Assumptions: Custos uses at most ${SHARE * 100}% of each block; ETH at $${fmt(ETH_USD)}; ` +
    Object.entries(NETWORKS)
      .map(([n, v]) => `${n}: ${fmt(v.blockGas)} gas per ${v.blockSeconds} s block at ${v.gasPriceGwei} gwei`)
      .join("; ") +
    " (L2 data fees on L1 not counted).",
  "",
  "| message (schedule per device) | gas | " +
    Object.keys(NETWORKS)
      .map((n) => `${n}: per block / per day / devices / $ per device-year`)
      .join(" | ") +
    " |",
  "| --- | --- | " +
    Object.keys(NETWORKS)
      .map(() => "---")
      .join(" | ") +
    " |",
];
for (const m of MESSAGES) {
  const cells = Object.values(NETWORKS).map((n) => {
    const perBlock = Math.floor((n.blockGas * SHARE) / m.gas);
    const perDay = perBlock * (86_400 / n.blockSeconds);
    const devices = Math.floor(perDay / m.perDay);
    const usdPerYear = (m.gas * m.perDay * 365 * n.gasPriceGwei * 1e-9 * ETH_USD).toFixed(2);
    return `${fmt(perBlock)} / ${fmt(perDay)} / ${fmt(devices)} / $${usdPerYear}`;
  });
  lines.push(`| ${m.what} | ${fmt(m.gas)} | ${cells.join(" | ")} |`);
}
console.log(lines.join("\n"));

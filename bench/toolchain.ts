/**
 * `npx tsx bench/toolchain.ts --npm-ci-s N --npm-test-s N` (run by .ci/run with the times it
 * measured): writes bench/results/toolchain.json — the suite's times, the runtime, and the handler
 * calls of the Solidity invariants in one run of the suite: in all, and the fewest any invariant gets
 * (runs × depth, from the config and any inline `hardhat-config:` override of that invariant).
 */
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import config from "../hardhat.config.js";

const root = path.join(import.meta.dirname, "..");

function flag(name: string): number {
  const i = process.argv.indexOf(name);
  const value = i >= 0 ? Number(process.argv[i + 1]) : NaN;
  if (!Number.isFinite(value) || value < 0) {
    throw new Error(`${name}: expected a number of seconds, got ${i >= 0 ? process.argv[i + 1] : "nothing"}`);
  }
  return value;
}

function solidityFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? solidityFiles(path.join(dir, e.name)) : e.name.endsWith(".sol") ? [path.join(dir, e.name)] : [],
  );
}

/** Every `invariant*` function with the runs and depth it runs with. */
export function invariantBudgets(files: string[], runs: number, depth: number) {
  const found: { name: string; runs: number; depth: number; calls: number }[] = [];
  for (const file of files) {
    const source = readFileSync(file, "utf8");
    for (const m of source.matchAll(/function\s+(invariant\w*)\s*\(/g)) {
      // its NatSpec: what lies between the previous declaration's end and the function
      const before = source.slice(0, m.index);
      const natspec = before.slice(Math.max(before.lastIndexOf("}"), before.lastIndexOf(";")) + 1);
      const inline = (key: string, fallback: number) =>
        Number(new RegExp(`hardhat-config:\\s*invariant\\.${key}\\s*=\\s*(\\d+)`).exec(natspec)?.[1] ?? fallback);
      const r = inline("runs", runs);
      const d = inline("depth", depth);
      found.push({ name: `${path.relative(root, file)}:${m[1]}`, runs: r, depth: d, calls: r * d });
    }
  }
  return found;
}

const solidity = config.test?.solidity as { invariant?: { runs?: number; depth?: number } } | undefined;
const { runs, depth } = solidity?.invariant ?? {};
if (runs === undefined || depth === undefined)
  throw new Error("hardhat.config.ts: test.solidity.invariant needs runs and depth");
const invariants = invariantBudgets(solidityFiles(path.join(root, "test", "solidity")), runs, depth);
const require = createRequire(import.meta.url);
const result = {
  toolchain: {
    npm_ci_s: flag("--npm-ci-s"),
    npm_test_s: flag("--npm-test-s"),
    // every handler call of every invariant in one `npm test` (runs × depth each)
    invariant_calls: invariants.reduce((sum, i) => sum + i.calls, 0),
    invariant_calls_each: Math.min(...invariants.map((i) => i.calls)),
    invariants: invariants.length,
    node: process.version,
    hardhat: (require("hardhat/package.json") as { version: string }).version,
  },
};
mkdirSync(path.join(root, "bench", "results"), { recursive: true });
writeFileSync(path.join(root, "bench", "results", "toolchain.json"), JSON.stringify(result, null, 2) + "\n");
console.log(JSON.stringify(result));

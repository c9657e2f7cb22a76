/**
 * `npm run bench:operator`: the operator's figures, written to bench/results/operator.json.
 *
 * - `operator.task_start_ms`: p50 (and p99) wall time of a task that reads — `npx hardhat
 *   registry:status --device ID --network localhost` against a running `hardhat node`, as an
 *   operator types it (npx included) — over 10 runs.
 * - `operator.key_create_1000_s`: `npx custos-agent key create --count 1000 --out-dir DIR`, once.
 */
import { execFile } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { id, JsonRpcProvider, Wallet } from "ethers";
import { startHardhatNode } from "../test/helpers/node.js";
import { deploySuite } from "../src/deploy/suite.js";
import { writeClaimFile } from "../test/tasks/hardhatCli.js";
import { randomDeviceKey } from "../src/crypto/deviceKey.js";

const root = path.join(import.meta.dirname, "..");
const RUNS = 10;

/** Runs a command as a user would type it, from the project root; rejects on a non-zero exit. */
function run(cmd: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ stdout: string; ms: number }> {
  const t0 = performance.now();
  return new Promise((resolve, reject) =>
    execFile(cmd, args, { cwd: root, env: { ...process.env, ...env }, maxBuffer: 1 << 26 }, (err, stdout, stderr) =>
      err
        ? reject(new Error(`${cmd} ${args.join(" ")}: ${stderr || err.message}`))
        : resolve({ stdout, ms: performance.now() - t0 }),
    ),
  );
}

const last = (stdout: string) => JSON.parse(stdout.trim().split("\n").at(-1)!);
const quantile = (xs: number[], q: number) =>
  [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(q * xs.length))];

async function taskStart(dir: string): Promise<{ p50: number; p99: number }> {
  const node = await startHardhatNode();
  const provider = new JsonRpcProvider(node.url, undefined, { cacheTimeout: -1 });
  try {
    const env = { CUSTOS_LOCALHOST_URL: node.url };
    const admin = await provider.getSigner(0);
    const suite = await deploySuite(admin, { manufacturers: [admin.address] });
    const key = randomDeviceKey("secp256k1");
    const firmware = id("firmware 1.0.0");
    const csv = path.join(dir, "devices.csv");
    const filler = Array.from({ length: 3 }, (_, i) => `${new Wallet(id(`bench ${i}`)).address},m,${firmware}`);
    writeFileSync(csv, ["deviceKey,model,firmwareHash", `${key.signer},m,${firmware}`, ...filler].join("\n"));
    const out = path.join(dir, "batch");
    const hh = (args: string[]) => run("npx", ["hardhat", ...args, "--network", "localhost"], env);
    await hh(["registry:batch", "--csv", csv, "--out", out, "--commit", "--registry", suite.registry]);
    const claimFile = path.join(dir, "claim.json");
    const entry = await writeClaimFile({
      file: claimFile,
      batchDir: out,
      key,
      owner: admin.address,
      registry: suite.registry,
      provider,
    });
    await hh(["registry:claim", "--message", claimFile, "--registry", suite.registry]);
    const times: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      const { stdout, ms } = await hh(["registry:status", "--device", entry.deviceId, "--registry", suite.registry]);
      if (last(stdout).status !== "Active") throw new Error(`bench: registry:status printed ${stdout}`);
      times.push(ms);
    }
    return { p50: Math.round(quantile(times, 0.5)), p99: Math.round(quantile(times, 0.99)) };
  } finally {
    provider.destroy();
    await node.stop();
  }
}

async function keyCreate(dir: string): Promise<number> {
  const out = path.join(dir, "fleet");
  const { ms } = await run(
    "npx",
    ["custos-agent", "key", "create", "--kind", "secp256k1", "--count", "1000", "--out-dir", out],
    {
      CUSTOS_PASSWORD: "bench passphrase",
    },
  );
  const lines = readFileSync(path.join(out, "keys.jsonl"), "utf8").trim().split("\n").length;
  if (lines !== 1000) throw new Error(`bench: key create --count 1000 wrote ${lines} keys`);
  return Number((ms / 1000).toFixed(2));
}

const dir = mkdtempSync(path.join(tmpdir(), "custos-bench-operator-"));
try {
  const start = await taskStart(dir);
  const keys = await keyCreate(dir);
  const result = {
    operator: { task_start_ms: start.p50, task_start_p99_ms: start.p99, key_create_1000_s: keys },
  };
  mkdirSync(path.join(root, "bench", "results"), { recursive: true });
  writeFileSync(path.join(root, "bench", "results", "operator.json"), JSON.stringify(result, null, 2) + "\n");
  console.log(JSON.stringify(result));
} finally {
  rmSync(dir, { recursive: true, force: true });
}

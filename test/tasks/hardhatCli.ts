/**
 * `npx hardhat …` as a child process on this Node, for the tests that run the real command line
 * (option parsing, `--network`, what is printed and the exit code) against a node of their own.
 */
import { execFile } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import type { JsonRpcProvider } from "ethers";
import type { DeviceKey } from "../../src/crypto/deviceKey.js";
import { digest } from "../../src/eip712/index.js";

const require = createRequire(import.meta.url);
export const ROOT = path.join(import.meta.dirname, "..", "..");
// Hardhat's CLI, from its manifest (its `exports` publish package.json, not the bin's path).
const manifest = require.resolve("hardhat/package.json");
const CLI = path.join(path.dirname(manifest), (require(manifest) as { bin: { hardhat: string } }).bin.hardhat);

// The variables by which Hardhat decides it runs in CI (hardhat-utils' isCi), where it adds a stack
// trace to every error: the tests check what an operator at a terminal sees, in CI too.
const CI_VARIABLES = [
  "CI",
  "CONTINUOUS_INTEGRATION",
  "GITHUB_ACTIONS",
  "BUILD_NUMBER",
  "RUN_ID",
  "CODEBUILD_BUILD_NUMBER",
  "NOW",
  "DEPLOYMENT_ID",
];

function operatorEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const name of CI_VARIABLES) delete env[name];
  return env;
}

export interface HardhatRun {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `hardhat args…` in the project to its end (two minutes at most); never rejects on its exit code. */
export function hardhat(args: string[], env: NodeJS.ProcessEnv = {}): Promise<HardhatRun> {
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      [CLI, ...args],
      {
        cwd: ROOT,
        env: { ...operatorEnv(), HARDHAT_DISABLE_TELEMETRY_PROMPT: "true", ...env },
        timeout: 120_000,
        maxBuffer: 64 * 1024 * 1024,
      },
      (err, stdout, stderr) => {
        const code = err === null ? 0 : typeof err.code === "number" ? err.code : null;
        if (code === null) reject(new Error(`hardhat ${args.join(" ")}: ${err!.message}\n${stderr}`));
        else resolve({ code, stdout, stderr });
      },
    );
  });
}

/**
 * Writes the `registry:claim --message` file for `key`'s leaf of a committed batch (from its
 * `proofs.jsonl` in `batchDir`), claimed for `owner` and signed by the device, valid for an hour.
 */
export async function writeClaimFile(opts: {
  file: string;
  batchDir: string;
  key: DeviceKey;
  owner: string;
  registry: string;
  provider: JsonRpcProvider;
}): Promise<{ deviceId: string; batchId: string }> {
  const entry = readFileSync(path.join(opts.batchDir, "proofs.jsonl"), "utf8")
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l))
    .find((p) => p.deviceKey === opts.key.signer.toLowerCase());
  if (!entry) throw new Error(`${opts.batchDir}/proofs.jsonl has no leaf for ${opts.key.signer}`);
  const { chainId } = await opts.provider.getNetwork();
  const deadline = (await opts.provider.getBlock("latest"))!.timestamp + 3600;
  const message = { owner: opts.owner, batch: entry.batchId, deadline: String(deadline) };
  writeFileSync(
    opts.file,
    JSON.stringify({
      type: "DeviceClaim",
      key: opts.key.signer,
      message,
      signature: opts.key.signDigest(digest("DeviceClaim", { chainId, verifyingContract: opts.registry }, message)),
      claim: { model: entry.model, firmwareHash: entry.firmwareHash, proof: entry.proof },
    }),
  );
  return { deviceId: entry.deviceId, batchId: entry.batchId };
}

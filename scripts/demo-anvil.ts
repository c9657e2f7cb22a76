/**
 * `npm run demo:anvil`: the demo against anvil, Foundry's node, as a process of its own over
 * JSON-RPC — real blocks (one per transaction), a real mempool and a node that is not Hardhat's.
 * Starts anvil on a free port, runs `hardhat run --network anvil scripts/demo.ts` against it, stops
 * it, and exits with the demo's code (non-zero if any step differs from the story).
 */
import { spawn } from "node:child_process";
import { createRequire } from "node:module";
import path from "node:path";
import { startAnvil } from "../test/helpers/node.js";

const require = createRequire(import.meta.url);
const root = path.join(import.meta.dirname, "..");
// Hardhat's CLI, from its manifest (its `exports` publish package.json, not the bin's path).
const manifest = require.resolve("hardhat/package.json");
const hardhat = path.join(path.dirname(manifest), (require(manifest) as { bin: { hardhat: string } }).bin.hardhat);

const node = await startAnvil();
console.log(`anvil on ${node.url}`);
let code: number;
try {
  const demo = spawn(process.execPath, [hardhat, "run", "--network", "anvil", "scripts/demo.ts"], {
    cwd: root,
    stdio: "inherit",
    env: { ...process.env, CUSTOS_ANVIL_URL: node.url },
  });
  code = await new Promise<number>((resolve, reject) => {
    demo.on("error", reject);
    demo.on("exit", (status, signal) => resolve(status ?? (signal ? 1 : 0)));
  });
} finally {
  await node.stop();
}
process.exitCode = code;

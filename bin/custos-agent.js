#!/usr/bin/env node
// The device agent's CLI. It runs the TypeScript sources directly through tsx (a clone works after
// `npm ci`, no build step; types are checked by `npm run lint`). A restart — after a crash, a power
// cut or a supervisor's kill — must be quick, so:
// - tsx's hooks (Node's in-thread `module.registerHooks`) cost time on every module they see (a
//   CommonJS file is even lexed whole), and the agent's plain-JS dependencies need none of them: the
//   large ones are imported first, before the hooks exist, and later imports of them are hits in
//   the module cache (same URL, one copy);
// - tsx keeps its transforms on disk, and Node's compile cache keeps V8's code for every module;
// - source maps stay off as they are by default (parsing them costs ~20 ms): run with
//   NODE_OPTIONS=--enable-source-maps for stack traces that name .ts lines.
import module from "node:module";
import path from "node:path";

const [major] = process.versions.node.split(".").map(Number);
if (major < 24) {
  // `npm run agent`, `npx custos-agent` and the tests put the project's pinned Node 24 first on PATH.
  process.stderr.write(
    `custos-agent: needs Node 24 or newer, not ${process.version}: run it as \`npx custos-agent\` or \`npm run agent --\` in the project\n`,
  );
  process.exit(1);
}

// A reader that goes away (`custos-agent outbox | head`) must not crash the agent mid-delivery.
for (const stream of [process.stdout, process.stderr]) {
  stream.on("error", (err) => {
    if (err.code !== "EPIPE") throw err;
  });
}

module.enableCompileCache?.(); // NODE_COMPILE_CACHE or the OS temp dir; a failure only costs speed

// Help needs none of them (the commands load what they use when they run): skip them for it.
const args = process.argv.slice(2);
const helpOnly = args.length === 0 || args.includes("--help") || args.includes("-h") || args[0] === "help";
if (!helpOnly) {
  await import("ethers"); // ~150 ES modules
  await import("hash-wasm"); // one 280 KB CommonJS bundle
}
await import("commander");

const { register } = await import("tsx/esm/api");
const sourceMaps = process.sourceMapsEnabled;
// The project's tsconfig whatever the working directory is (tsx would look for one from the cwd).
register({ tsconfig: path.join(import.meta.dirname, "..", "tsconfig.json") });
process.setSourceMapsEnabled(sourceMaps); // tsx turns them on

try {
  const { main } = await import("../src/agent/cli.ts");
  process.exitCode = await main(process.argv);
} catch (err) {
  process.stderr.write(`custos-agent: ${err?.stack ?? err}\n`);
  process.exitCode = 1;
}

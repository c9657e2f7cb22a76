#!/usr/bin/env node
// The device agent's CLI. It runs the TypeScript sources directly, so a clone works after `npm ci`
// with no build step. Types are checked by `npm run lint`; here each .ts file is only transpiled
// (TypeScript's `transpileModule`, as ts-node's transpile-only mode does), and the output is cached
// by content hash under node_modules/.cache/custos-agent, so that a restart — after a crash, a
// power cut, or a supervisor's kill — starts in well under a second instead of several. The output
// carries inline source maps: NODE_OPTIONS=--enable-source-maps makes stack traces name .ts lines.
"use strict";
const crypto = require("node:crypto");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");

const root = path.join(__dirname, "..");
const compilerOptions = {
  target: "es2022",
  module: "commonjs",
  esModuleInterop: true,
  resolveJsonModule: true,
  ...JSON.parse(fs.readFileSync(path.join(root, "tsconfig.json"), "utf8")).compilerOptions,
};
let ts; // loaded only when something has to be transpiled
let converted;

function cacheDir() {
  for (const dir of [
    path.join(root, "node_modules", ".cache", "custos-agent"),
    path.join(os.tmpdir(), "custos-agent-cache"),
  ]) {
    try {
      fs.mkdirSync(dir, { recursive: true });
      fs.accessSync(dir, fs.constants.W_OK);
      return dir;
    } catch {
      // not writable: try the next one
    }
  }
  return null;
}
const cache = cacheDir();
const salt =
  JSON.stringify(compilerOptions) + require(path.join(root, "node_modules", "typescript", "package.json")).version;

function transpile(source, filename) {
  const key = crypto
    .createHash("sha256")
    .update(salt)
    .update("\0")
    .update(filename)
    .update("\0")
    .update(source)
    .digest("hex");
  const file = cache && path.join(cache, `${key}.js`);
  if (file) {
    try {
      return fs.readFileSync(file, "utf8");
    } catch {
      // not cached yet
    }
  }
  ts ??= require("typescript");
  converted ??= ts.convertCompilerOptionsFromJson(
    { ...compilerOptions, noEmit: false, declaration: false, sourceMap: false, inlineSourceMap: true },
    root,
  ).options;
  const output = ts.transpileModule(source, { compilerOptions: converted, fileName: filename }).outputText;
  if (file) {
    try {
      const tmp = `${file}.${process.pid}.tmp`;
      fs.writeFileSync(tmp, output);
      fs.renameSync(tmp, file); // atomic: a killed process never leaves half a file in the cache
    } catch {
      // a read-only cache only costs speed
    }
  }
  return output;
}

// A reader that goes away (`custos-agent outbox | head`) must not crash the agent mid-delivery.
for (const stream of [process.stdout, process.stderr]) {
  stream.on("error", (err) => {
    if (err.code !== "EPIPE") throw err;
  });
}

require.extensions[".ts"] = function (module, filename) {
  module._compile(transpile(fs.readFileSync(filename, "utf8"), filename), filename);
};

require("../src/agent/cli.ts")
  .main(process.argv)
  .then(
    (code) => {
      process.exitCode = code;
    },
    (err) => {
      process.stderr.write(`custos-agent: ${err && err.stack ? err.stack : err}\n`);
      process.exitCode = 1;
    },
  );

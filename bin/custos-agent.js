#!/usr/bin/env node
// The device agent's CLI. Runs the TypeScript sources through ts-node (transpile only: types are
// checked by `npm run lint`), so a clone works after `npm ci` without a build step.
const path = require("node:path");
require("ts-node").register({ transpileOnly: true, project: path.join(__dirname, "..", "tsconfig.json") });
require("../src/agent/cli.ts");

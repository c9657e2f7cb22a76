#!/usr/bin/env node
/**
 * `npm ci`'s postinstall: makes sure EDR (Hardhat 3's EVM) has its native binding for this machine.
 *
 * EDR ships the binding as one optional dependency per platform, each with `engines: node >= 22`.
 * npm skips an optional dependency whose engines do not match the Node running npm, so on a machine
 * whose system Node is 20 (the project itself runs on the Node 24 of the `node` dev dependency) the
 * binding is silently left out and Hardhat stops with HHE27. Naming the Linux package as a dev
 * dependency would fix Linux x64 but break every other platform (npm refuses a non-optional
 * package built for another OS), so instead this fetches exactly the package npm skipped — the
 * version and integrity recorded in package-lock.json — and unpacks it where EDR looks for it.
 * Where npm already installed the binding (any machine whose npm runs on Node ≥ 22) it does nothing.
 */
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";

const root = path.resolve(import.meta.dirname ?? path.dirname(new URL(import.meta.url).pathname), "..");
const modules = path.join(root, "node_modules");

/** The Node that runs npm (this script itself runs on the `node` package's Node when it is on PATH). */
function npmNode() {
  return /node\/(v[\d.]+)/.exec(process.env.npm_config_user_agent ?? "")?.[1] ?? process.version;
}

function libc() {
  if (process.platform !== "linux") return "";
  const report = process.report?.getReport();
  return report?.header?.glibcVersionRuntime ? "gnu" : "musl";
}

const edrManifest = path.join(modules, "@nomicfoundation", "edr", "package.json");
if (!existsSync(edrManifest)) process.exit(0); // installed without dev dependencies: no Hardhat
const edr = JSON.parse(readFileSync(edrManifest, "utf8"));
const suffix = [process.platform, process.arch, libc()].filter(Boolean).join("-");
const name = Object.keys(edr.optionalDependencies ?? {}).find((dep) => dep.endsWith(`/edr-${suffix}`));
if (!name) {
  console.error(`EDR ${edr.version} has no binding for ${suffix}; Hardhat cannot run on this machine.`);
  process.exit(0);
}
const target = path.join(modules, ...name.split("/"));
if (existsSync(path.join(target, "package.json"))) process.exit(0);

const lock = JSON.parse(readFileSync(path.join(root, "package-lock.json"), "utf8"));
const locked = lock.packages?.[`node_modules/${name}`];
if (!locked?.integrity) {
  console.error(`package-lock.json does not record ${name}; run npm install with Node >= 22 to add it.`);
  process.exit(1);
}
const scratch = mkdtempSync(path.join(tmpdir(), "custos-edr-"));
try {
  const [packed] = JSON.parse(
    execFileSync("npm", ["pack", "--json", "--pack-destination", scratch, `${name}@${locked.version}`], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "inherit"],
    }),
  );
  if (packed.integrity !== locked.integrity) {
    throw new Error(
      `${name}@${locked.version}: integrity ${packed.integrity} is not the lockfile's ${locked.integrity}`,
    );
  }
  mkdirSync(target, { recursive: true });
  execFileSync("tar", ["-xzf", path.join(scratch, packed.filename), "--strip-components=1", "-C", target]);
  console.error(
    `installed ${name}@${locked.version} (npm skipped it: its engines need Node >= 22, npm ran on ${npmNode()})`,
  );
} finally {
  rmSync(scratch, { recursive: true, force: true });
}

import { expect } from "chai";
import { spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import path from "node:path";
import { freePort } from "../helpers/node.js";
import { DEFAULT_POLICY } from "../../src/guardian/policy/index.js";
import {
  STRICT_FIRMWARE,
  guardianWorld,
  removeTempDirs,
  tempDir,
  writePolicy,
  type GuardianWorld,
} from "./serviceFixture.js";

const CLI = path.join(import.meta.dirname, "..", "..", "src", "guardian", "service", "cli.ts");

/** Runs `npm run guardian`'s script with `args`; `until` (a stdout pattern) ends it with SIGTERM once seen. */
function run(args: string[], env: NodeJS.ProcessEnv = {}, until?: RegExp) {
  const child = spawn(process.execPath, ["--import", import.meta.resolve("tsx"), CLI, ...args], {
    env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d: Buffer) => {
    stdout += d.toString();
    if (until?.test(stdout)) child.kill("SIGTERM");
  });
  child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
  const timer = setTimeout(() => child.kill("SIGKILL"), 60_000);
  return new Promise<{ code: number | null; signal: string | null; stdout: string; stderr: string }>((resolve) =>
    child.on("exit", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    }),
  );
}

describe("npm run guardian", function () {
  this.timeout(180_000);
  let w: GuardianWorld | undefined;

  after(async function () {
    await w?.indexer.stop();
    await w?.node.stop();
    removeTempDirs();
  });

  it("a policy file with a misspelt field is refused before anything starts, naming the field (exit 2)", async function () {
    const file = path.join(tempDir(), "policy.json");
    const bad = { ...DEFAULT_POLICY, rules: { ...DEFAULT_POLICY.rules, silent: { enabled: true, graceFactr: 6 } } };
    writeFileSync(file, JSON.stringify(bad));
    const r = await run([
      "--rpc",
      "http://127.0.0.1:1",
      "--watch",
      "http://127.0.0.1:1",
      "--keystore",
      "none.json",
      "--policy",
      file,
    ]);
    expect(r.code).to.equal(2);
    expect(r.stderr).to.match(/^custos-guardian: --policy .*policy\.json: .*graceFactr/m);
  });

  it("runs against a node and a watch from a keystore and the registry alone (the quorum read from it); a wrong password is refused naming --keystore; SIGTERM stops it", async function () {
    w = await guardianWorld(1);
    const dir = tempDir();
    const keystore = path.join(dir, "guardian.json");
    writeFileSync(keystore, await w.guardians[0].encrypt("correct horse"));
    writeFileSync(path.join(dir, "pw"), "correct horse\n");
    const port = await freePort();
    const args = [
      "--rpc",
      w.node.url,
      "--watch",
      w.indexer.url,
      "--keystore",
      keystore,
      "--password-file",
      path.join(dir, "pw"),
      "--policy",
      writePolicy(path.join(dir, "policy.json"), STRICT_FIRMWARE),
      "--registry",
      w.fleet.addresses.registry,
      "--port",
      String(port),
      "--data",
      path.join(dir, "data"),
    ];
    const wrong = await run(args.map((a) => (a === path.join(dir, "pw") ? keystore : a)));
    expect(wrong.code).to.equal(2);
    expect(wrong.stderr).to.match(/custos-guardian: --keystore .* does not open it|not a Web3/);

    const r = await run(args, {}, /"event":"listening"/);
    expect(r.code, `signal ${r.signal}; stderr: ${r.stderr}; stdout: ${r.stdout.slice(-2_000)}`).to.equal(0);
    const listening = JSON.parse(r.stdout.split("\n").find((l) => l.includes('"event":"listening"'))!);
    expect(listening.guardian).to.equal(w.guardians[0].address);
    expect(listening.url).to.equal(`http://127.0.0.1:${port}`);
  });
});

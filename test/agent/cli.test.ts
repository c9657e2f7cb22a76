import { expect } from "chai";
import { spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import path from "node:path";
import type { Command } from "commander";
import { EXAMPLES, buildProgram, main, parseDeadline, resolveConfig } from "../../src/agent/cli.js";
import { tempDir } from "./helpers.js";
import { Wallet, recoverAddress } from "ethers";
import { digest } from "../../src/eip712/index.js";
import { issueCertificate } from "../../src/agent/roles/lockOwner.js";

const ROOT = path.join(import.meta.dirname, "..", "..");
const REGISTRY = "0x5FbDB2315678afecb367f032d93F642f64180aa3";
const OWNER = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8";

/** Runs the CLI in this process with its own streams and environment. */
async function cli(args: string[], env: NodeJS.ProcessEnv = {}) {
  let stdout = "";
  let stderr = "";
  const code = await main(["node", "custos-agent", ...args], {
    stdout: { write: (s: string) => (stdout += s) },
    stderr: { write: (s: string) => (stderr += s) },
    env: { CUSTOS_PASSWORD: "pw", ...env },
  });
  return { code, stdout, stderr };
}

/** Every runnable command, e.g. "key create", "run". */
function leafCommands(cmd: Command, prefix = ""): string[] {
  return cmd.commands.flatMap((c) => {
    const name = `${prefix}${c.name()}`;
    return c.commands.length > 0 ? leafCommands(c, `${name} `) : [name];
  });
}

describe("agent CLI", function () {
  it("`npx custos-agent --help` lists every command with an example", function () {
    const res = spawnSync("npx", ["--no-install", "custos-agent", "--help"], { cwd: ROOT, encoding: "utf8" });
    expect(res.status, res.stderr).to.equal(0);
    const commands = leafCommands(
      buildProgram({ stdout: process.stdout, stderr: process.stderr, env: {} }, { code: 0 }),
    );
    expect(commands).to.include.members([
      "key create",
      "key import",
      "key show",
      "sign claim",
      "attest-firmware",
      "send",
      "outbox",
      "run",
      "guest show",
      "guest sign-unlock",
      "guest unlock",
      "lock serve",
    ]);
    const examples = res.stdout.slice(res.stdout.indexOf("Examples:"));
    for (const command of commands) {
      expect(EXAMPLES[command], command).to.be.a("string");
      expect(examples, command).to.include(`custos-agent ${command}`);
    }
  });

  it("shows each command's own example in its help", async function () {
    for (const command of Object.keys(EXAMPLES)) {
      const { code, stdout } = await cli([...command.split(" "), "--help"]);
      expect(code, command).to.equal(0);
      expect(stdout, command).to.include("Example:").and.to.include(EXAMPLES[command]);
    }
  });

  it("creates, shows and uses keys; `sign claim` prints a DeviceClaim message", async function () {
    const dir = tempDir();
    const secp = path.join(dir, "a.json");
    const p256 = path.join(dir, "b.json");
    const created = await cli(["key", "create", "--kind", "secp256k1", "--out", secp, "--scrypt-n", "1024"]);
    expect(created.code, created.stderr).to.equal(0);
    const info = JSON.parse(created.stdout);
    expect(info).to.include({ kind: "secp256k1", file: secp });
    const createdP256 = await cli(["key", "create", "--kind", "p256", "--out", p256, "--verifier", REGISTRY]);
    expect(createdP256.code, createdP256.stderr).to.equal(0);

    const shown = await cli(["key", "show", "--keystore", secp, "--keystore", p256]);
    expect(shown.code, shown.stderr).to.equal(0);
    const [a, b] = JSON.parse(shown.stdout);
    expect(a).to.deep.equal(info);
    expect(b.signer.startsWith(REGISTRY.toLowerCase())).to.equal(true);

    const signed = await cli(
      [
        "sign",
        "claim",
        "--owner",
        OWNER,
        "--batch",
        "77",
        "--deadline",
        "+1h",
        "--keystore",
        secp,
        "--registry",
        REGISTRY,
      ],
      { CUSTOS_CHAIN_ID: "31337" },
    );
    expect(signed.code, signed.stderr).to.equal(0);
    const claim = JSON.parse(signed.stdout);
    expect(claim).to.deep.include({ type: "DeviceClaim", key: info.signer });
    expect(claim.message).to.include({ owner: OWNER, batch: "77" });
    expect(claim.signature).to.match(/^0x[0-9a-f]{130}$/);

    const imported = await cli([
      "key",
      "import",
      "--in",
      secp,
      "--in-password-file",
      writePassword(dir),
      "--out",
      path.join(dir, "c.json"),
      "--scrypt-n",
      "1024",
    ]);
    expect(imported.code, imported.stderr).to.equal(0);
    expect(JSON.parse(imported.stdout).signer).to.equal(info.signer);
  });

  it("attack: bad input is refused with a message naming the flag, variable or field, and a non-zero exit", async function () {
    const dir = tempDir();
    const key = path.join(dir, "k.json");
    expect((await cli(["key", "create", "--kind", "secp256k1", "--out", key, "--scrypt-n", "1024"])).code).to.equal(0);
    const base = ["--keystore", key, "--registry", REGISTRY, "--chain-id", "31337"];
    const badBatch = path.join(dir, "batch.jsonl");
    writeFileSync(badBatch, '{"type":"FirmwareAttestation","fields":{}}\n{"type":"Nope"}\n');
    const badConfig = path.join(dir, "config.json");
    writeFileSync(badConfig, JSON.stringify({ rpcUrl: "http://127.0.0.1:8545" }));
    const cases: [string[], NodeJS.ProcessEnv, string][] = [
      [["sign", "claim", "--owner", "0x12", "--batch", "1", ...base], {}, "--owner"],
      [["sign", "claim", "--owner", OWNER, "--batch", String(2n ** 48n), ...base], {}, "--batch"],
      [["sign", "claim", "--owner", OWNER, "--batch", "1", "--deadline", "tomorrow", ...base], {}, "--deadline"],
      [
        [
          "sign",
          "claim",
          "--owner",
          OWNER,
          "--batch",
          "1",
          "--proof",
          "0x12",
          "--model",
          "0x" + "00".repeat(32),
          "--firmware-hash",
          "0x" + "00".repeat(32),
          ...base,
        ],
        {},
        "--proof[0]",
      ],
      [
        ["sign", "claim", "--owner", OWNER, "--batch", "1", "--keystore", key, "--registry", REGISTRY],
        { CUSTOS_CHAIN_ID: "abc" },
        "CUSTOS_CHAIN_ID",
      ],
      [["sign", "claim", "--owner", OWNER, "--batch", "1", "--keystore", key, "--chain-id", "1"], {}, "--registry"],
      [
        ["sign", "claim", "--owner", OWNER, "--batch", "1", ...base],
        { CUSTOS_PASSWORD: "wrong" },
        `keystore ${key}: wrong passphrase`,
      ],
      [["sign", "claim", "--batch", "1", ...base], {}, "--owner"],
      [["attest-firmware", "--firmware-hash", "0x1234", ...base], {}, "--firmware-hash"],
      [["send", "Bogus", ...base], {}, "type must be one of"],
      [["send", "FirmwareAttestation", "--field", "colour=red", ...base], {}, "--field colour"],
      [["send", "--batch", badBatch, ...base], {}, `--batch ${badBatch}:2`],
      [["send", ...base], {}, "exactly one of"],
      [["key", "create", "--kind", "p256", "--out", path.join(dir, "p.json")], {}, "--verifier"],
      [["key", "create", "--kind", "rsa", "--out", path.join(dir, "r.json")], {}, "--kind"],
      [["key", "show"], {}, "--keystore"],
      [["run", "--config", badConfig], {}, `unknown setting "rpcUrl"`],
      [["run", "--rpc", "localhost:8545"], {}, "--rpc"],
      [["run", "--log-level", "loud"], {}, "--log-level"],
      [["run", ...base], { CUSTOS_RPC_URL: "http://127.0.0.1:1" }, "payer"],
    ];
    for (const [args, env, needle] of cases) {
      const res = await cli(args, env);
      expect(res.code, args.join(" ")).to.not.equal(0);
      expect(res.stderr, args.join(" ")).to.include(needle);
    }
  });

  it("guest commands: show a certificate in words, sign the answer to a challenge; refuse a key that is not the holder", async function () {
    const dir = tempDir();
    const phone = path.join(dir, "phone.json");
    const created = await cli(["key", "create", "--kind", "secp256k1", "--out", phone, "--scrypt-n", "1024"]);
    const holder = JSON.parse(created.stdout).signer as string;
    const owner = Wallet.createRandom();
    const lockAccess = { chainId: 31337n, verifyingContract: REGISTRY };
    const now = Math.floor(Date.now() / 1000);
    const cert = await issueCertificate(owner, lockAccess, {
      lock: 42n,
      holder,
      keyId: 5n,
      validUntil: now + 3600,
      schedule: (1n << 168n) - 1n,
    });
    const file = path.join(dir, "key.json");
    writeFileSync(file, JSON.stringify(cert));

    const shown = await cli(["guest", "show", "--cert", file]);
    expect(shown.code, shown.stderr).to.equal(0);
    expect(JSON.parse(shown.stdout)).to.include({
      lock: "42",
      keyId: "5",
      holder,
      issuedBy: "owner",
      signatureValid: true,
      usableNow: true,
    });

    const challenge = "0x" + "ab".repeat(32);
    const signed = await cli(["guest", "sign-unlock", "--cert", file, "--challenge", challenge, "--keystore", phone]);
    expect(signed.code, signed.stderr).to.equal(0);
    const { request } = JSON.parse(signed.stdout);
    expect(request.request).to.include({ lock: "42", challenge });
    const signer = recoverAddress(digest("UnlockRequest", lockAccess, request.request), request.signature);
    expect(signer.toLowerCase()).to.equal(holder);

    const other = path.join(dir, "other.json");
    await cli(["key", "create", "--kind", "secp256k1", "--out", other, "--scrypt-n", "1024"]);
    const refused = await cli(["guest", "sign-unlock", "--cert", file, "--challenge", challenge, "--keystore", other]);
    expect(refused.code).to.not.equal(0);
    expect(refused.stderr).to.match(/not the certificate's holder/);

    writeFileSync(file, JSON.stringify({ ...cert, key: { ...cert.key, keyId: undefined } }));
    const broken = await cli(["guest", "show", "--cert", file]);
    expect(broken.code).to.not.equal(0);
    expect(broken.stderr).to.match(/certificate\.key\.keyId is missing/);
    const noLock = await cli(["lock", "serve", "--keystore", phone, "--registry", REGISTRY]);
    expect(noLock.stderr).to.match(/--lock-access/);
  });

  it("takes settings from flags, then the environment, then the config file", function () {
    const dir = tempDir();
    const file = path.join(dir, "agent.json");
    writeFileSync(
      file,
      JSON.stringify({
        rpc: "http://file:1",
        registry: REGISTRY,
        keystore: ["k1.json", "k2.json"],
        ttl: 60,
        dataDir: "data",
      }),
    );
    const env = { CUSTOS_RPC_URL: "http://env:2", CUSTOS_TTL: "120" };
    const all = resolveConfig({ rpc: "http://flag:3" }, env, file);
    expect(all.rpc).to.equal("http://flag:3");
    expect(all.ttl).to.equal(120);
    expect(all.registry).to.equal(REGISTRY);
    expect(all.keystore).to.deep.equal([path.join(dir, "k1.json"), path.join(dir, "k2.json")]); // relative to the file
    expect(all.dataDir).to.equal(path.join(dir, "data"));
    expect(resolveConfig({}, env, file).rpc).to.equal("http://env:2");
    expect(resolveConfig({}, {}, file).rpc).to.equal("http://file:1");
    expect(resolveConfig({}, {}).dataDir).to.equal(".custos-agent");
    expect(resolveConfig({}, { CUSTOS_KEYSTORE: "a.json,b.json" }).keystore).to.deep.equal(["a.json", "b.json"]);
    expect(resolveConfig({ keystore: ["c.json"] }, { CUSTOS_KEYSTORE: "a.json" }).keystore).to.deep.equal(["c.json"]);
  });

  it("reads deadlines as unix seconds or +N[s|m|h|d]", function () {
    const now = 1_700_000_000_000;
    expect(parseDeadline("+90", "--deadline", now)).to.equal(1_700_000_090n);
    expect(parseDeadline("+2h", "--deadline", now)).to.equal(1_700_007_200n);
    expect(parseDeadline("1800000000", "--deadline", now)).to.equal(1_800_000_000n);
    expect(() => parseDeadline("1600000000", "--deadline", now)).to.throw("in the past");
    expect(() => parseDeadline("+1w", "--deadline", now)).to.throw("--deadline");
  });

  it("prints an empty outbox without taking its lock", async function () {
    const res = await cli(["outbox", "--data-dir", tempDir()]);
    expect(res.code, res.stderr).to.equal(0);
    expect(JSON.parse(res.stdout).stats).to.include({ pending: 0, confirmed: 0 });
  });
});

function writePassword(dir: string): string {
  const file = path.join(dir, "pw.txt");
  writeFileSync(file, "pw\n");
  return file;
}

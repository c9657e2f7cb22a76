import { expect } from "chai";
import { existsSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { id, JsonRpcProvider, Wallet } from "ethers";
import { startHardhatNode, type HardhatNode } from "../helpers/node.js";
import { hardhat, ROOT, writeClaimFile, type HardhatRun } from "./hardhatCli.js";
import { secp256k1Key } from "../../src/crypto/deviceKey.js";
import { DeviceRegistry__factory } from "../../typechain-types/index.js";
import parameters from "../../ignition/parameters.example.json" with { type: "json" };

/** The JSON a task printed last on stdout. */
function printed(stdout: string) {
  return JSON.parse(stdout.trim().split("\n").at(-1)!);
}

/**
 * A refusal as an operator sees it: exit code 1 and one error line (Hardhat's "Error in community
 * plugin custos: …", then its usual pointer to --show-stack-traces), no stack trace, never "An
 * unexpected error occurred".
 */
function refused(run: HardhatRun, message: RegExp): void {
  expect(run.code, run.stdout + run.stderr).to.equal(1);
  const lines = run.stderr
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l !== "" && !/^(hashing|proofs)\b/.test(l) && !/--show-stack-traces$/.test(l));
  expect(lines, run.stderr).to.have.length(1);
  expect(lines[0]).to.match(new RegExp(`^Error in community plugin custos: ${message.source.replace(/^\^/, "")}`));
  expect(run.stderr).to.not.match(/^\s+at /m);
  expect(run.stderr).to.not.include("An unexpected error occurred");
}

// The README's "Deploying" section and the mistakes around it, typed as an operator types them, against
// a fresh `npx hardhat node` (the README's node).
describe("Hardhat tasks from the command line: the README's deployment and an operator's mistakes", function () {
  let node: HardhatNode;
  let provider: JsonRpcProvider;
  const dir = mkdtempSync(path.join(tmpdir(), "custos-readme-"));
  const deployments = path.join(ROOT, "ignition", "deployments", "chain-31337");
  const aside = `${deployments}.aside-${process.pid}`;
  const env = () => ({ CUSTOS_LOCALHOST_URL: node.url });
  const batchArgs = (out: string) => [
    "registry:batch",
    "--csv",
    "ignition/devices.example.csv",
    "--out",
    out,
    "--commit",
  ];

  before(async function () {
    // The README deploys without a deployment id: to chain-31337, where a developer's own localhost
    // deployment may be. It is put aside and back.
    if (existsSync(deployments)) renameSync(deployments, aside);
    node = await startHardhatNode();
    provider = new JsonRpcProvider(node.url, undefined, { cacheTimeout: -1 });
  });
  after(async function () {
    provider?.destroy();
    await node?.stop();
    rmSync(deployments, { recursive: true, force: true });
    if (existsSync(aside)) renameSync(aside, deployments);
  });

  it("the README's Deploying sequence works as written on a fresh node; registry:batch --commit without --signer 1, or without --network, exits 1 with one line naming the flag and writes nothing", async function () {
    const deploy = await hardhat(
      [
        "ignition",
        "deploy",
        "ignition/modules/Custos.ts",
        "--network",
        "localhost",
        "--parameters",
        "ignition/parameters.example.json",
        // As test/deploy/ignition.node.test.ts: the artifacts the tests were built with (Ignition's
        // default, the production profile, compiles everything again into the directory this reads).
        "--build-profile",
        "default",
      ],
      env(),
    );
    expect(deploy.code, deploy.stderr + deploy.stdout).to.equal(0);
    const addresses = JSON.parse(readFileSync(path.join(deployments, "deployed_addresses.json"), "utf8"));

    // Account #0 is the admin proposer; the example's manufacturer is account #1.
    const noSigner = await hardhat([...batchArgs(path.join(dir, "a", "batch")), "--network", "localhost"], env());
    refused(
      noSigner,
      /registry:batch --commit needs MANUFACTURER_ROLE on the DeviceRegistry at 0x.{4}….{4}: account #0 \(0xf39F…2266\) does not hold it; account #1 \(0x7099…79C8\) does: add --signer 1$/,
    );
    expect(existsSync(path.join(dir, "a"))).to.equal(false);

    const noNetwork = await hardhat([...batchArgs(path.join(dir, "b", "batch")), "--signer", "1"], env());
    refused(
      noNetwork,
      /registry:batch --commit: no --network given: this would run on Hardhat's in-process network, which starts empty and is gone when the command ends; add --network localhost \(a running `npx hardhat node`\) or the network your contracts are on$/,
    );
    expect(existsSync(path.join(dir, "b"))).to.equal(false);

    // The README's command: `--signer 1`, the example's manufacturer.
    const out = path.join(dir, "batch");
    const batch = await hardhat([...batchArgs(out), "--signer", "1", "--network", "localhost"], env());
    expect(batch.code, batch.stderr).to.equal(0);
    const summary = printed(batch.stdout);
    expect(summary).to.include({
      manufacturer: parameters.Custos.manufacturers[0],
      devices: 8,
      registry: addresses["Custos#DeviceRegistry"],
    });
    const registry = DeviceRegistry__factory.connect(addresses["Custos#DeviceRegistry"], provider);
    expect((await registry.batch(BigInt(summary.batchId))).root).to.equal(summary.root);
    expect(JSON.parse(readFileSync(path.join(out, "batch.json"), "utf8"))).to.deep.equal(summary);
    expect(readFileSync(path.join(out, "proofs.jsonl"), "utf8").trim().split("\n")).to.have.length(8);
  });

  it("registry:status of an unknown key, a CSV with a repeated key, a contract's refusal: exit 1, one line each", async function () {
    const addresses = JSON.parse(readFileSync(path.join(deployments, "deployed_addresses.json"), "utf8"));
    const registry = addresses["Custos#DeviceRegistry"];
    const unknown = new Wallet(id("never provisioned")).address;
    refused(
      await hardhat(["registry:status", "--key", unknown, "--network", "localhost"], env()),
      new RegExp(
        `--key: ${unknown.slice(0, 6)}…${unknown.slice(-4)} is not registered in the DeviceRegistry at 0x.{4}….{4} \\(never claimed, or rotated away\\)$`,
      ),
    );

    const csv = path.join(dir, "dup.csv");
    const lines = readFileSync(path.join(ROOT, "ignition", "devices.example.csv"), "utf8")
      .trim()
      .split("\n");
    writeFileSync(csv, [...lines, lines[2]].join("\n") + "\n");
    refused(
      await hardhat(
        [
          "registry:batch",
          "--csv",
          csv,
          "--out",
          path.join(dir, "dup"),
          "--commit",
          "--signer",
          "1",
          "--network",
          "localhost",
        ],
        env(),
      ),
      /--csv line 10: deviceKey 0x.{4}….{4} repeats line 3 \(a key is registered once\)$/,
    );
    expect(existsSync(path.join(dir, "dup"))).to.equal(false);

    // Device 0 of the example batch, claimed for account #2 (its key is known: the example's own).
    const key = secp256k1Key(id("custos example device 0"));
    const owner = await provider.getSigner(2);
    const claimFile = path.join(dir, "claim.json");
    const entry = await writeClaimFile({
      file: claimFile,
      batchDir: path.join(dir, "batch"),
      key,
      owner: owner.address,
      registry,
      provider,
    });
    const claim = await hardhat(["registry:claim", "--message", claimFile, "--network", "localhost"], env());
    expect(claim.code, claim.stderr).to.equal(0);
    refused(
      await hardhat(["registry:claim", "--message", claimFile, "--network", "localhost"], env()),
      /--message: key 0x.{4}….{4} is registered already \(device \d+, owner 0x[0-9a-fA-F]{40}\)$/,
    );
    refused(
      await hardhat(["registry:release", "--device", entry.deviceId, "--signer", "2", "--network", "localhost"], env()),
      /registry:release: the chain refused it: device .* is not reported stolen: there is nothing to release \(DeviceRegistryNotReported\)$/,
    );
    refused(
      await hardhat(["registry:release", "--device", entry.deviceId, "--network", "localhost"], env()),
      new RegExp(
        `registry:release needs device ${entry.deviceId}'s owner: account #0 \\(0xf39F…2266\\) is not; account #2 \\(0x3C44…93BC\\), the owner, does: add --signer 2$`,
      ),
    );
  });
});

import { expect } from "chai";
import { execFile } from "node:child_process";
import { readFileSync, rmSync } from "node:fs";
import path from "node:path";
import { promisify } from "node:util";
import { JsonRpcProvider } from "ethers";
import { startHardhatNode, type HardhatNode } from "../helpers/node.js";
import { DeviceRegistry__factory, GuardianQuorum__factory } from "../../typechain-types/index.js";
import parameters from "../../ignition/parameters.example.json" with { type: "json" };

const run = promisify(execFile);
const root = path.join(import.meta.dirname, "..", "..");

describe("Ignition: deploy to `hardhat node` over loopback", function () {
  let node: HardhatNode;
  const deploymentId = `test-${process.pid}`;
  const deploymentDir = path.join(root, "ignition", "deployments", deploymentId);

  before(async function () {
    node = await startHardhatNode();
  });
  after(async function () {
    await node?.stop();
    rmSync(deploymentDir, { recursive: true, force: true });
  });

  it("`npx hardhat ignition deploy … --network localhost` deploys the suite, and again is a no-op", async function () {
    const args = [
      require.resolve("hardhat/internal/cli/bootstrap"),
      "ignition",
      "deploy",
      "ignition/modules/Custos.ts",
      "--network",
      "localhost",
      "--parameters",
      "ignition/parameters.example.json",
      "--deployment-id",
      deploymentId,
    ];
    const env = { ...process.env, CUSTOS_LOCALHOST_URL: node.url, HARDHAT_DISABLE_TELEMETRY_PROMPT: "true" };
    await run(process.execPath, args, { cwd: root, env, timeout: 120_000 });
    const addresses = JSON.parse(readFileSync(path.join(deploymentDir, "deployed_addresses.json"), "utf8"));
    const provider = new JsonRpcProvider(node.url);
    const registry = DeviceRegistry__factory.connect(addresses["Custos#DeviceRegistry"], provider);
    const quorum = GuardianQuorum__factory.connect(await registry.guardianQuorum(), provider);
    expect(await quorum.quorum()).to.equal(BigInt(parameters.Custos.guardianQuorum));
    expect(
      await registry.hasRole(await registry.DEFAULT_ADMIN_ROLE(), addresses["Custos#TimelockController"]),
    ).to.equal(true);
    for (const m of parameters.Custos.manufacturers) {
      expect(await registry.hasRole(await registry.MANUFACTURER_ROLE(), m)).to.equal(true);
    }
    const again = await run(process.execPath, args, { cwd: root, env, timeout: 120_000 });
    expect(again.stdout).to.match(/Nothing new to deploy|already been deployed|Deployed Addresses/);
    expect(
      JSON.parse(readFileSync(path.join(deploymentDir, "deployed_addresses.json"), "utf8"))["Custos#DeviceRegistry"],
    ).to.equal(addresses["Custos#DeviceRegistry"]);
  });
});

import { expect } from "chai";
import { readFileSync, rmSync } from "node:fs";
import path from "node:path";
import { JsonRpcProvider } from "ethers";
import { startNode, type HardhatNode } from "../helpers/node.js";
import { hardhat, ROOT } from "../tasks/hardhatCli.js";
import { DeviceRegistry__factory, GuardianQuorum__factory } from "../../typechain-types/index.js";
import parameters from "../../ignition/parameters.example.json" with { type: "json" };

// The node CUSTOS_NODE names (hardhat by default; CI runs anvil too), reached as `--network localhost`.
describe("Ignition: deploy to a real node over loopback", function () {
  let node: HardhatNode;
  const deploymentId = `test-${process.pid}`;
  const deploymentDir = path.join(ROOT, "ignition", "deployments", deploymentId);

  before(async function () {
    node = await startNode();
  });
  after(async function () {
    await node?.stop();
    rmSync(deploymentDir, { recursive: true, force: true });
  });

  it("`npx hardhat ignition deploy … --network localhost` deploys the suite, and again is a no-op", async function () {
    const args = [
      "ignition",
      "deploy",
      "ignition/modules/Custos.ts",
      "--network",
      "localhost",
      "--parameters",
      "ignition/parameters.example.json",
      "--deployment-id",
      deploymentId,
      // The artifacts the tests were built with. Ignition's own default, the production profile,
      // compiles every contract in isolation again (~40 s with solc-js on two cores) into the same
      // artifacts directory this test process reads, for the same contracts.
      "--build-profile",
      "default",
    ];
    const env = { CUSTOS_LOCALHOST_URL: node.url };
    const first = await hardhat(args, env);
    expect(first.code, first.stderr + first.stdout).to.equal(0);
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
    const blocks = await provider.getBlockNumber();
    const again = await hardhat(args, env);
    expect(again.code, again.stderr + again.stdout).to.equal(0);
    expect(again.stdout).to.match(/Nothing new to deploy|already been deployed|Deployed Addresses/);
    expect(await provider.getBlockNumber()).to.equal(blocks); // no transaction the second time
    expect(
      JSON.parse(readFileSync(path.join(deploymentDir, "deployed_addresses.json"), "utf8"))["Custos#DeviceRegistry"],
    ).to.equal(addresses["Custos#DeviceRegistry"]);
    provider.destroy();
  });
});

import { expect } from "chai";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { id, JsonRpcProvider, Wallet } from "ethers";
import { startNode, type HardhatNode } from "../helpers/node.js";
import { hardhat, writeClaimFile } from "./hardhatCli.js";
import { deploySuite, type SuiteAddresses } from "../../src/deploy/suite.js";
import { randomDeviceKey } from "../../src/crypto/deviceKey.js";
import { CustodyLedger__factory, DeviceRegistry__factory } from "../../typechain-types/index.js";

const FIRMWARE = id("firmware 1.0.0");

/** The JSON a task printed last on stdout. */
function printed(stdout: string) {
  return JSON.parse(stdout.trim().split("\n").at(-1)!);
}

// The tasks as an operator runs them: `npx hardhat <task> --kebab-flags … --network localhost` against
// a node of its own (the one CUSTOS_NODE names), JSON on stdout, a named error and exit code 1.
describe("Hardhat tasks: the command line against a real node", function () {
  let node: HardhatNode;
  let provider: JsonRpcProvider;
  let suite: SuiteAddresses;
  const dir = mkdtempSync(path.join(tmpdir(), "custos-cli-"));
  const env = () => ({ CUSTOS_LOCALHOST_URL: node.url });

  before(async function () {
    node = await startNode();
    provider = new JsonRpcProvider(node.url, undefined, { cacheTimeout: -1 });
    const admin = await provider.getSigner(0);
    suite = await deploySuite(admin, { manufacturers: [admin.address] });
  });
  after(async function () {
    provider?.destroy();
    await node?.stop();
  });

  it("registry:batch --commit, registry:claim and custody:create (a negative --min-temp) over --network localhost; a bad flag exits 1 naming it", async function () {
    const [admin, receiver] = [await provider.getSigner(0), await provider.getSigner(1)];
    const key = randomDeviceKey("secp256k1");
    const csv = path.join(dir, "devices.csv");
    const filler = Array.from({ length: 9 }, (_, i) => `${new Wallet(id(`cli filler ${i}`)).address},m,${FIRMWARE}`);
    writeFileSync(
      csv,
      ["deviceKey,model,firmwareHash", `${key.signer},custos-tracker,${FIRMWARE}`, ...filler].join("\n"),
    );
    const out = path.join(dir, "batch");
    const batch = await hardhat(
      [
        "registry:batch",
        "--csv",
        csv,
        "--out",
        out,
        "--commit",
        "--registry",
        suite.registry,
        "--network",
        "localhost",
      ],
      env(),
    );
    expect(batch.code, batch.stderr).to.equal(0);
    const summary = printed(batch.stdout);
    expect(summary).to.include({ devices: 10, manufacturer: admin.address });
    const registry = DeviceRegistry__factory.connect(suite.registry, provider);
    expect((await registry.batch(BigInt(summary.batchId))).root).to.equal(summary.root);

    const claimFile = path.join(dir, "claim.json");
    const entry = await writeClaimFile({
      file: claimFile,
      batchDir: out,
      key,
      owner: admin.address,
      registry: suite.registry,
      provider,
    });
    const claim = await hardhat(
      ["registry:claim", "--message", claimFile, "--network", "localhost"],
      { ...env(), CUSTOS_REGISTRY: suite.registry }, // the variable instead of the flag
    );
    expect(claim.code, claim.stderr).to.equal(0);
    expect(printed(claim.stdout)).to.include({ deviceId: entry.deviceId, owner: admin.address });
    expect(await registry.ownerOf(BigInt(entry.deviceId))).to.equal(admin.address);

    const create = await hardhat(
      [
        "custody:create",
        "--epc",
        "urn:epc:id:sscc:0614141.1234567890",
        "--tracker",
        entry.deviceId,
        "--receiver",
        receiver.address,
        "--min-temp",
        " -500", // a leading space: Hardhat 3 reads a word starting with "-" as an option
        "--max-temp",
        "800",
        "--deadline-in",
        "86400",
        "--ledger",
        suite.custodyLedger,
        "--network",
        "localhost",
      ],
      env(),
    );
    expect(create.code, create.stderr).to.equal(0);
    const { shipment, creator } = printed(create.stdout);
    expect(creator).to.equal(admin.address);
    const s = await CustodyLedger__factory.connect(suite.custodyLedger, provider).shipmentOf(shipment);
    expect([s.minTemp, s.maxTemp, s.custodian]).to.deep.equal([-500n, 800n, admin.address]);

    // An address with no contract on this network (the receiver's), and a flag left out.
    const wrong = await hardhat(
      ["registry:status", "--device", entry.deviceId, "--registry", receiver.address, "--network", "localhost"],
      env(),
    );
    expect(wrong.code).to.equal(1);
    expect(wrong.stderr).to.include(
      `--registry: no contract at ${receiver.address} on network localhost (is --network the right one?)`,
    );
    const missing = await hardhat(["custody:create", "--tracker", entry.deviceId, "--network", "localhost"], env());
    expect(missing.code).to.equal(1);
    expect(missing.stderr).to.include("--epc is required");
  });
});

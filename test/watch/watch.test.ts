/**
 * The watch as `npm run watch` runs it: `startWatch` (the indexer, the webhooks and the tower
 * behind one front) on a real node with the story played, an owner subscribing through the front
 * with its wallet, and alerts arriving at a receiver built with the library subscribers get — one
 * from an owner's action, one from the tower's own mark. And the CLI refusing bad settings by name.
 */
import { expect } from "chai";
import { spawn } from "node:child_process";
import path from "node:path";
import { ZeroHash } from "ethers";
import { startWatch, type Watch } from "../../src/watch/watch.js";
import { subscribe } from "../../src/watch/webhooks/subscriber.js";
import { createLogger } from "../../src/agent/log.js";
import { startHardhatNode } from "../helpers/node.js";
import { dataDir } from "./backends.js";
import { deployOn, runStory, type Story, type Suite } from "./story.js";
import { lateReceiver, until } from "./webhookHelpers.js";

/** Hardhat's account #9: the tower's funded key (the story uses #0–#7). */
const TOWER_KEY = "0x2a871d0798f97d79848a013d4936a73bf4cc922c825d33c1cf7073dff6d409c6";
const ROOT = path.join(import.meta.dirname, "..", "..");

describe("watch: startWatch on a real node — one front, signed alerts from owners' actions and the tower's marks", function () {
  this.timeout(300_000);
  let suite: Suite;
  let story: Story;
  let watch: Watch;

  before(async function () {
    suite = await deployOn(await startHardhatNode());
    story = await runStory(suite);
    watch = await startWatch({
      rpcUrl: suite.node.url,
      chainId: 31337,
      addresses: { ...suite.addresses },
      startBlock: suite.deployBlock,
      port: 0,
      dataDir: dataDir(),
      towerKey: TOWER_KEY,
      log: createLogger({ level: "silent" }),
    });
  });

  after(async function () {
    await watch?.stop();
    await suite?.node.stop();
  });

  it("the front serves the index's API: status with its lag, the JSON routes and Ponder's GraphQL", async function () {
    await watch.indexer.waitForBlock(await suite.provider.getBlockNumber());
    const status = (await (await fetch(`${watch.url}/watch/status`)).json()) as { chainId: number; lagBlocks: number };
    expect(status.chainId).to.equal(31337);
    expect(status.lagBlocks).to.be.at.most(1);
    const device = (await (await fetch(`${watch.url}/watch/devices/${story.devices.stolen}`)).json()) as {
      device: { owner: string };
    };
    expect(device.device.owner).to.equal((await suite.owner.getAddress()).toLowerCase());
    const gql = await fetch(`${watch.url}/graphql`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ query: "{ shipments { totalCount } }" }),
    });
    expect(
      ((await gql.json()) as { data: { shipments: { totalCount: number } } }).data.shipments.totalCount,
    ).to.be.above(0);
  });

  it("an owner subscribes with its wallet through the front; its report of a theft and the tower's overdue mark arrive signed", async function () {
    const owner = (await suite.owner.getAddress()).toLowerCase();
    const deployment = { chainId: suite.chainId, verifyingContract: suite.addresses.registry };
    const hook = await lateReceiver();
    try {
      const head = await suite.provider.getBlock("latest");
      const subscribed = await subscribe(watch.url, suite.owner, deployment, {
        owner,
        scope: "owner",
        target: owner,
        url: hook.url,
        events: ["device.quarantined", "shipment.overdue"],
        nonce: "1",
        deadline: String(head!.timestamp + 600),
      });
      // From here on the receiver checks every delivery with the secret the watch gave (shown once).
      hook.use(subscribed.secret);

      await (await suite.registry.connect(suite.owner).reportStolen(story.devices.payer)).wait();
      const quarantined = await until("the device.quarantined delivery", () =>
        hook.events.find(
          (e) => e.type === "device.quarantined" && e.data.alert?.subjects.device === String(story.devices.payer),
        ),
      );
      expect(quarantined.data.alert!.subjects.owners).to.include(owner);

      // A shipment whose deadline passes: nobody calls markOverdue but the tower.
      const now = (await suite.provider.getBlock("latest"))!.timestamp;
      const epc = `urn:epc:id:sscc:0614141.9${Date.now()}`;
      await (
        await suite.ledger.connect(suite.owner).createShipment({
          epc,
          tracker: story.devices.tracker,
          receiver: await suite.receiver.getAddress(),
          deadline: now + 30,
          maxSilence: 86_400,
          minTemp: 200,
          maxTemp: 800,
          metadataHash: ZeroHash,
          childrenRoot: ZeroHash,
          acceptOwnerKeys: false,
        })
      ).wait();
      const shipment = (await suite.ledger.shipmentIdOf(owner, epc)).toLowerCase();
      await suite.node.send("evm_increaseTime", [31]);
      await suite.node.mine();
      const overdue = await until("the shipment.overdue delivery", () =>
        hook.events.find((e) => e.type === "shipment.overdue" && e.data.alert?.subjects.shipment === shipment),
      );
      const [log] = await suite.ledger.queryFilter(suite.ledger.filters.MarkedOverdue(shipment));
      expect((await log.getTransaction()).from).to.equal(watch.tower!.address);
      expect(overdue.data.alert!.txHash).to.equal(log.transactionHash);
      expect(hook.refused, "deliveries the library refused").to.deep.equal([]);
    } finally {
      await hook.close();
    }
  });

  it("the CLI refuses a setting it cannot use, naming the flag, with exit code 2", async function () {
    const run = (args: string[]) =>
      new Promise<{ code: number | null; stderr: string }>((resolve) => {
        const child = spawn(process.execPath, ["--import", import.meta.resolve("tsx"), "src/watch/cli.ts", ...args], {
          cwd: ROOT,
          env: { ...process.env, CUSTOS_WATCH_RPC: "" },
        });
        let stderr = "";
        child.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
        child.on("exit", (code) => resolve({ code, stderr }));
      });
    const noNode = await run(["--rpc", "http://127.0.0.1:1", "--registry", suite.addresses.registry]);
    expect(noNode.code).to.equal(2);
    expect(noNode.stderr).to.match(/--rpc http:\/\/127\.0\.0\.1:1: the node does not answer/);
    const noLedger = await run([
      "--rpc",
      suite.node.url,
      "--registry",
      suite.addresses.registry,
      "--deployment",
      "/nonexistent",
    ]);
    expect(noLedger.code).to.equal(2);
    expect(noLedger.stderr).to.match(/--deployment \/nonexistent/);
    const partial = await run(["--rpc", suite.node.url, "--registry", suite.addresses.registry]);
    expect(partial.code).to.equal(2);
    expect(partial.stderr).to.match(/--location-beacons is required/);
  });
});

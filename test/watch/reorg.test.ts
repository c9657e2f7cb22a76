/**
 * A reorg under the indexer: the node's chain is rewound (`evm_snapshot` / `evm_revert`, which both
 * `hardhat node` and anvil serve) past blocks the index already holds, and a different, longer chain
 * is mined in their place. Ponder must roll the index back to the common ancestor and follow the new
 * chain: the orphaned block's alert and rows gone, the new chain's in their place, every answer as
 * the contracts now report.
 */
import { expect } from "chai";
import { randomDeviceKey } from "../../src/crypto/deviceKey.js";
import { deviceIdOf } from "../../src/registry/batch.js";
import { startIndexer, type Indexer } from "../../src/watch/indexer/start.js";
import { NODE_KIND, freePort, startNode } from "../helpers/node.js";
import { BACKENDS, dataDir, freshDatabase, freshSchema } from "./backends.js";
import { deployOn, provision, type Suite } from "./story.js";

async function until<T>(what: string, read: () => Promise<T>, ok: (v: T) => boolean, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await read();
    if (ok(value)) return value;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms (last: ${JSON.stringify(value)})`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

for (const backend of BACKENDS) {
  describe(`watch indexer on ${backend.name}, ${NODE_KIND} node: a reorg`, function () {
    this.timeout(300_000);
    let suite: Suite;
    let indexer: Indexer;
    let database: Awaited<ReturnType<typeof freshDatabase>> | undefined;

    before(async function () {
      if (backend.skip) {
        console.log(`      skipped: ${backend.skip}`);
        this.skip();
      }
      if (backend.databaseUrl) database = await freshDatabase(backend.databaseUrl);
      suite = await deployOn(await startNode());
      indexer = await startIndexer({
        rpcUrl: suite.node.url,
        chainId: 31337,
        addresses: suite.addresses,
        port: await freePort(),
        dataDir: dataDir(),
        databaseUrl: database?.url ?? null,
        schema: freshSchema("reorg"),
      });
    });

    after(async function () {
      await indexer?.stop();
      await suite?.node.stop();
      await database?.drop();
    });

    it("attack: a theft alert in blocks that are then orphaned — the index follows the new chain, and the orphaned alert is gone from the feed", async function () {
      const keys = [randomDeviceKey("secp256k1"), randomDeviceKey("secp256k1")];
      await provision(suite, keys, [suite.owner, suite.owner]);
      const [victim, bystander] = keys.map((k) => deviceIdOf(k.signer));
      await indexer.waitForBlock(await suite.provider.getBlockNumber());

      // The branch that will be orphaned: the victim reported stolen, then two more blocks.
      const fork = (await suite.node.send("evm_snapshot")) as string;
      const forkBlock = await suite.provider.getBlockNumber();
      await (await suite.registry.connect(suite.owner).reportStolen(victim)).wait();
      await suite.node.mine();
      await suite.node.mine();
      const orphanHead = await suite.provider.getBlockNumber();
      await indexer.waitForBlock(orphanHead);
      const before = await indexer.client.alertsFrom(BigInt(forkBlock));
      expect(before.alerts.map((a) => [a.kind, a.subjects.device])).to.deep.equal([
        ["device.quarantined", victim.toString()],
      ]);
      const orphaned = before.alerts[0];
      expect((await indexer.client.device(victim))!.device.status).to.equal("quarantined");

      // The canonical chain: back to the fork, the bystander reported stolen instead, and a longer chain.
      expect(await suite.node.send("evm_revert", [fork])).to.equal(true);
      expect(await suite.provider.getBlockNumber()).to.equal(forkBlock);
      const other = await suite.other.getAddress();
      await (await suite.registry.connect(suite.owner).reportStolen(bystander)).wait();
      await (
        await suite.registry.connect(suite.owner).transferFrom(await suite.owner.getAddress(), other, victim)
      ).wait();
      for (let i = 0; i < 4; i++) await suite.node.mine();
      const head = await suite.provider.getBlockNumber();
      expect(head).to.be.greaterThan(orphanHead);

      // The index reaches the new head on the new chain: the victim's row is the new chain's.
      await indexer.waitForBlock(head);
      await until(
        "the index follows the new chain",
        async () => (await indexer.client.device(victim))!.device.owner,
        (owner) => owner === other.toLowerCase(),
      );
      const after = await indexer.client.alertsFrom(BigInt(forkBlock));
      expect(after.alerts.map((a) => a.id)).to.not.include(orphaned.id);
      expect(after.alerts.map((a) => [a.kind, a.subjects.device])).to.deep.equal([
        ["device.quarantined", bystander.toString()],
      ]);
      for (const a of after.alerts) {
        const block = await suite.provider.getBlock(Number(a.blockNumber));
        expect(a.blockHash).to.equal(block!.hash);
      }

      // Every row the orphaned branch wrote is gone; what the index says is what the registry says.
      for (const id of [victim, bystander]) {
        const info = await suite.registry.deviceInfo(id);
        const got = (await indexer.client.device(id))!;
        expect(got.device.owner).to.equal(info.owner.toLowerCase());
        expect(got.device.reportedStolen).to.equal(info.reportedStolen);
        expect(got.device.ownerEpoch).to.equal(Number(info.ownerEpoch));
      }
      const victimView = (await indexer.client.device(victim))!;
      expect(victimView.statusHistory.map((c) => c.cause)).to.deep.equal(["DeviceClaimed"]);
      expect(victimView.transfers.map((t) => t.to)).to.deep.equal([
        (await suite.owner.getAddress()).toLowerCase(),
        other.toLowerCase(),
      ]);
      const status = await indexer.client.status();
      expect(status.indexedBlock).to.be.greaterThanOrEqual(BigInt(head));
    });

    it("attack: anvil_reorg replaces the theft's block at the same height — the index follows, the orphaned alert is gone", async function () {
      if (NODE_KIND !== "anvil") {
        console.log("      skipped: anvil_reorg is anvil's (CUSTOS_NODE=anvil runs it)");
        this.skip();
      }
      const keys = [randomDeviceKey("secp256k1"), randomDeviceKey("secp256k1")];
      await provision(suite, keys, [suite.owner, suite.owner]);
      const [victim, bystander] = keys.map((k) => deviceIdOf(k.signer));
      await indexer.waitForBlock(await suite.provider.getBlockNumber());
      const stolen = await (await suite.registry.connect(suite.owner).reportStolen(victim)).wait();
      const theftBlock = stolen!.blockNumber;
      await indexer.waitForBlock(theftBlock);
      const orphaned = (await indexer.client.alertsFrom(BigInt(theftBlock))).alerts;
      expect(orphaned.map((a) => a.subjects.device)).to.deep.equal([victim.toString()]);

      // Anvil rewinds to before the theft and mines the same number of blocks, the bystander's theft in the first.
      const depth = (await suite.provider.getBlockNumber()) - theftBlock + 1;
      const data = suite.registry.interface.encodeFunctionData("reportStolen", [bystander]);
      const from = await suite.owner.getAddress();
      await suite.node.send("anvil_reorg", [depth, [[{ from, to: suite.addresses.registry, data }, 0]]]);
      const head = (await suite.provider.getBlockNumber()) + 1;
      await indexer.waitForBlock(head);
      await until(
        "the index follows the new chain",
        async () => (await indexer.client.alertsFrom(BigInt(theftBlock))).alerts.map((a) => a.subjects.device),
        (devices) => devices.length === 1 && devices[0] === bystander.toString(),
      );
      const after = await indexer.client.alertsFrom(BigInt(theftBlock));
      expect(after.alerts.map((a) => a.id)).to.not.include(orphaned[0].id);
      for (const a of after.alerts)
        expect(a.blockHash).to.equal((await suite.provider.getBlock(Number(a.blockNumber)))!.hash);
      for (const id of [victim, bystander]) {
        const info = await suite.registry.deviceInfo(id);
        expect((await indexer.client.device(id))!.device.reportedStolen).to.equal(info.reportedStolen);
      }
    });
  });
}

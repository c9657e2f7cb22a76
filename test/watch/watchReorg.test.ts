/**
 * A reorg under the whole watch, end to end: an owner's subscriber receives the alert of a theft
 * report, then the blocks that carried it are orphaned (`evm_snapshot` / `evm_revert`, served by
 * both `hardhat node` and anvil) and another chain replaces them. The index follows the new chain
 * (Ponder), the dispatcher sees the delivered alert gone and sends its retraction, and the alert of
 * the new chain arrives in its place.
 */
import { expect } from "chai";
import { randomDeviceKey } from "../../src/crypto/deviceKey.js";
import { deviceIdOf } from "../../src/registry/batch.js";
import { createLogger } from "../../src/agent/log.js";
import { startWatch, type Watch } from "../../src/watch/watch.js";
import { subscribe } from "../../src/watch/webhooks/subscriber.js";
import { NODE_KIND, startNode } from "../helpers/node.js";
import { dataDir } from "./backends.js";
import { deployOn, provision, type Suite } from "./story.js";
import { lateReceiver, until } from "./webhookHelpers.js";
import { Status } from "../helpers/registry.js";
import type { WebhookEvent } from "../../src/watch/webhooks/receiver.js";

describe(`watch on a ${NODE_KIND} node: a reorg under a delivered alert`, function () {
  this.timeout(300_000);
  let suite: Suite;
  let watch: Watch;

  before(async function () {
    suite = await deployOn(await startNode());
    watch = await startWatch({
      rpcUrl: suite.node.url,
      chainId: 31337,
      addresses: { ...suite.addresses },
      startBlock: suite.deployBlock,
      port: 0,
      dataDir: dataDir(),
      log: createLogger({ level: "silent" }),
    });
  });

  after(async function () {
    await watch?.stop();
    await suite?.node.stop();
  });

  it("attack: a theft alert delivered from blocks that are then orphaned is retracted, and the new chain's alert follows", async function () {
    const keys = [randomDeviceKey("secp256k1"), randomDeviceKey("secp256k1")];
    await provision(suite, keys, [suite.owner, suite.owner]);
    const [victim, bystander] = keys.map((k) => deviceIdOf(k.signer).toString());
    const owner = (await suite.owner.getAddress()).toLowerCase();
    const hook = await lateReceiver();
    try {
      const now = (await suite.provider.getBlock("latest"))!.timestamp;
      const subscribed = await subscribe(
        watch.url,
        suite.owner,
        { chainId: suite.chainId, verifyingContract: suite.addresses.registry },
        {
          owner,
          scope: "owner",
          target: owner,
          url: hook.url,
          events: ["device.quarantined"],
          nonce: "1",
          deadline: String(now + 600),
        },
      );
      hook.use(subscribed.secret);
      const quarantinedOf = (device: string) => (e: WebhookEvent) =>
        e.type === "device.quarantined" && e.data.alert?.subjects.device === device;

      // The branch that will be orphaned: the victim reported stolen; the alert is delivered.
      const fork = (await suite.node.send("evm_snapshot")) as string;
      await (await suite.registry.connect(suite.owner).reportStolen(victim)).wait();
      await suite.node.mine();
      const orphaned = await until("the orphaned branch's alert", () => hook.events.find(quarantinedOf(victim)));

      // The canonical chain: back to the fork, the bystander reported instead, and a longer chain.
      expect(await suite.node.send("evm_revert", [fork])).to.equal(true);
      await (await suite.registry.connect(suite.owner).reportStolen(bystander)).wait();
      for (let i = 0; i < 3; i++) await suite.node.mine();

      const retraction = await until("the retraction", () =>
        hook.events.find((e) => e.type === "alert.retracted" && e.data.retracts === orphaned.data.delivery),
      );
      expect(retraction.data.alert!.id).to.equal(orphaned.data.alert!.id);
      const canonical = await until("the new chain's alert", () => hook.events.find(quarantinedOf(bystander)));
      expect(canonical.data.delivery).to.not.equal(orphaned.data.delivery);
      // The index agrees with the chain: the victim was never reported on the canonical chain.
      expect(Number(await suite.registry.deviceStatus(victim))).to.equal(Status.Active);
      expect((await watch.indexer.client.device(BigInt(victim)))!.device.status).to.equal("active");
      expect(hook.refused).to.deep.equal([]);
      // Each delivery reached the handler once: the retraction after the alert it retracts.
      expect(hook.events.indexOf(retraction)).to.be.greaterThan(hook.events.indexOf(orphaned));
    } finally {
      await hook.close();
    }
  });
});

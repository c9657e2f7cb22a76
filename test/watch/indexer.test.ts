/**
 * The indexer (Ponder) against a real node: a suite deployed and a story played on it, then the
 * index compared with the contracts' own views — devices, batches, locks, shipments, channels —
 * the alerts it derived, its freshness (indexed block, head, lag), live sync of what happens after
 * it caught up, and its GraphQL. Once on PGlite, and once on PostgreSQL when CI names a server.
 */
import { expect } from "chai";
import { parseEther } from "ethers";
import { alertId, ALERT_KINDS, type Alert } from "../../src/watch/alerts.js";
import { generateBeaconKey, openLocation } from "../../src/beacons/index.js";
import { readIndexerEnv } from "../../src/watch/indexer/env.js";
import { startIndexer, type Indexer } from "../../src/watch/indexer/start.js";
import { freePort, startHardhatNode } from "../helpers/node.js";
import { RpcGate } from "../helpers/rpcGate.js";
import { BACKENDS, dataDir, freshDatabase, freshSchema } from "./backends.js";
import { deployOn, provision, runStory, type Story, type Suite } from "./story.js";
import { randomDeviceKey } from "../../src/crypto/deviceKey.js";
import { deviceIdOf } from "../../src/registry/batch.js";

const STATUS = ["unknown", "active", "quarantined", "revoked"];
const CLOSED = (1n << 40n) - 1n;

for (const backend of BACKENDS) {
  describe(`watch indexer on ${backend.name}: a real node, a story across the suite, the index against the chain`, function () {
    this.timeout(300_000);
    let suite: Suite;
    let story: Story;
    let indexer: Indexer;
    let database: Awaited<ReturnType<typeof freshDatabase>> | undefined;
    /** Between the indexer and the node: the lag test holds Ponder's block polls there. */
    let gate: RpcGate;
    let options: Parameters<typeof startIndexer>[0];

    before(async function () {
      if (backend.skip) {
        console.log(`      skipped: ${backend.skip}`);
        this.skip();
      }
      if (backend.databaseUrl) database = await freshDatabase(backend.databaseUrl);
      suite = await deployOn(await startHardhatNode());
      story = await runStory(suite);
      gate = await RpcGate.start(suite.node.url);
      options = {
        rpcUrl: gate.url,
        chainId: 31337,
        addresses: suite.addresses,
        port: await freePort(),
        dataDir: dataDir(),
        databaseUrl: database?.url ?? null,
        schema: freshSchema("idx"),
      };
      indexer = await startIndexer(options);
      await indexer.waitForBlock(await suite.provider.getBlockNumber());
    });

    after(async function () {
      await indexer?.stop();
      await gate?.close();
      await suite?.node.stop();
      await database?.drop();
    });

    it("devices: owner, ownership period, status, key generation and provenance, batch — as the registry reports them", async function () {
      for (const [name, id] of Object.entries(story.devices)) {
        const info = await suite.registry.deviceInfo(id);
        const got = (await indexer.client.device(id))!;
        expect(got, name).to.not.equal(null);
        const d = got.device;
        expect(d.owner, name).to.equal(info.owner.toLowerCase());
        expect(d.ownerEpoch, name).to.equal(Number(info.ownerEpoch));
        expect(d.effectiveStatus, name).to.equal(STATUS[Number(info.status)]);
        expect(d.keyGeneration, name).to.equal(Number(info.keyGeneration));
        expect(d.keyAttested, name).to.equal(info.keyAttested);
        expect(d.reportedStolen, name).to.equal(info.reportedStolen);
        expect(d.guardianFlagged, name).to.equal(info.guardianFlagged);
        expect(d.batchId, name).to.equal(info.batchId.toString());
        const batch = await suite.registry.batch(info.batchId);
        expect(got.batch!.status, name).to.equal(STATUS[Number(batch.status)]);
        expect(got.batch!.root, name).to.equal(batch.root);
        // The current key is the one the registry resolves to this device.
        const [resolved] = await suite.registry.resolveKey(d.key!);
        expect(resolved, name).to.equal(id);
      }
    });

    it("a device's history: its status changes in order, and each key with its generation and provenance", async function () {
      const stolen = (await indexer.client.device(story.devices.stolen))!;
      expect(stolen.statusHistory.map((c) => [c.cause, c.status])).to.deep.equal([
        ["DeviceClaimed", "active"],
        ["ReportedStolen", "quarantined"],
        ["Released", "active"],
      ]);
      expect(stolen.keys.map((k) => [k.key, k.generation, k.attested, k.source])).to.deep.equal([
        [story.keys.stolen.signer.toLowerCase(), 0, true, "claim"],
        [story.keys.rotated.signer.toLowerCase(), 1, true, "rotation"],
      ]);
      // The index holds the beacon sealed: the owner's and the responder's keys open it, a stranger's does not.
      expect(stolen.locationBeacons).to.have.length(1);
      const [b] = stolen.locationBeacons;
      const context = {
        chainId: suite.chainId,
        contract: suite.addresses.locationBeacons,
        device: story.devices.stolen,
        at: BigInt(b.at),
      };
      for (const holder of [story.beaconKeys.owner, story.beaconKeys.responder])
        expect(await openLocation(b.ciphertext, b.recipients, context, holder.privateKey)).to.deep.include({
          latitudeE7: 473_700_000,
          longitudeE7: 85_400_000,
        });
      const stranger = await generateBeaconKey();
      const refused = await openLocation(b.ciphertext, b.recipients, context, stranger.privateKey).then(
        () => "opened",
        (err: Error) => err.message,
      );
      expect(refused).to.match(/not among the beacon's recipients/);
      const flagged = (await indexer.client.device(story.devices.flagged))!;
      expect(flagged.statusHistory.map((c) => c.cause)).to.deep.equal([
        "DeviceClaimed",
        "GuardianFlagged",
        "GuardianCleared",
      ]);
      expect(flagged.guardianVotes.map((v) => v.flag)).to.deep.equal([true, true, false, false]);
      expect(flagged.transfers.map((t) => t.to)).to.deep.equal([
        (await suite.other.getAddress()).toLowerCase(),
        (await suite.owner.getAddress()).toLowerCase(),
      ]);
    });

    it("an owner's fleet: every device the registry says it owns, paged by id, with the total", async function () {
      const owner = await suite.owner.getAddress();
      const balance = await suite.registry.balanceOf(owner);
      const all = await indexer.client.fleet(owner, { limit: 1000 });
      expect(all.total).to.equal(Number(balance));
      for (const d of all.devices) expect(await suite.registry.ownerOf(d.id)).to.equal(owner);
      const ids = all.devices.map((d) => BigInt(d.id));
      expect(ids).to.deep.equal([...ids].sort((a, b) => (a < b ? -1 : 1)));
      const page = await indexer.client.fleet(owner, { limit: 2, offset: 1 });
      expect(page.devices.map((d) => d.id)).to.deep.equal(all.devices.slice(1, 3).map((d) => d.id));
      const next = await indexer.client.fleet(owner, { limit: 2, after: page.devices[1].id });
      expect(next.devices.map((d) => d.id)).to.deep.equal(all.devices.slice(3, 5).map((d) => d.id));
      expect(next.total).to.equal(all.total);
    });

    it("a lock: its revocations, key epoch, managers and anchored log head match LockAccess", async function () {
      const lock = story.devices.lock;
      const got = (await indexer.client.lock(lock))!;
      const state = await suite.locks.lockState(lock);
      expect(got.lock.epoch).to.equal(state.epoch.toString());
      expect(got.lock.lastAnchorSeq).to.equal(state.logSeq.toString());
      expect(got.lock.logHead).to.equal(state.logHead);
      expect(got.logBatches).to.have.length(1);
      const [, ownerEpoch] = await suite.registry.ownership(lock);
      expect(got.revocations.map((r) => [r.keyId, r.ownerEpoch])).to.deep.equal([["7", Number(ownerEpoch)]]);
      const word = await suite.locks.revokedWord(lock, ownerEpoch, 0);
      expect(word & (1n << 7n)).to.not.equal(0n);
      const carrier = (await suite.carrier.getAddress()).toLowerCase();
      expect(got.managers.map((m) => [m.manager, m.removed])).to.deep.equal([[carrier, true]]);
      expect(await suite.locks.managerExpiry(lock, ownerEpoch, carrier)).to.equal(0n);
    });

    it("a shipment's full history: custodian and marks as the ledger reports, handoffs with their transactions, checkpoints, pallet and child", async function () {
      for (const id of [story.shipment, story.pallet, ...story.children]) {
        const v = await suite.ledger.shipmentOf(id);
        const got = (await indexer.client.shipment(id))!;
        const s = got.shipment;
        expect(s.custodian, id).to.equal(v.custodian.toLowerCase());
        expect(s.receiver, id).to.equal(v.receiver.toLowerCase());
        expect(s.handoffSeq, id).to.equal(v.handoffSeq.toString());
        expect(s.checkpointSeq, id).to.equal(v.checkpointSeq.toString());
        expect(s.lastCheckpointAt, id).to.equal(v.lastCheckpointAt.toString());
        expect(s.deadline, id).to.equal(v.deadline.toString());
        expect([s.breached, s.overdue, s.silent, s.delivered], id).to.deep.equal([
          v.breached,
          v.overdue,
          v.silent,
          v.delivered,
        ]);
      }
      const main = (await indexer.client.shipment(story.shipment))!;
      expect(main.handoffs.map((h) => h.seq)).to.deep.equal(["1", "2"]);
      for (const h of main.handoffs) {
        const receipt = await suite.provider.getTransactionReceipt(h.txHash);
        const parsed = receipt!.logs
          .map((l) => suite.ledger.interface.parseLog(l))
          .find((p) => p?.name === "HandedOff");
        expect(parsed!.args.to.toLowerCase()).to.equal(h.to);
        expect(receipt!.blockNumber.toString()).to.equal(h.blockNumber);
      }
      expect(main.checkpoints.map((c) => [c.seq, c.minTemp, c.maxTemp])).to.deep.equal([
        ["1", 400, 450],
        ["2", 500, 700],
      ]);
      expect(main.marks.map((m) => m.kind)).to.deep.equal([
        "shipment.excursion_proven",
        "shipment.breached",
        "shipment.overdue",
        "shipment.delivered",
      ]);
      expect(main.shipment.excursionProven).to.equal(true);
      const pallet = (await indexer.client.shipment(story.pallet))!;
      expect(pallet.children).to.deep.equal(story.children);
      expect((await indexer.client.shipment(story.children[0]))!.shipment.pallet).to.equal(story.pallet);
    });

    it("a channel: deposit with top-up, cumulative paid, close started and closed with the refund, as PaymentChannels settled it", async function () {
      const got = (await indexer.client.channel(story.channel))!;
      const state = await suite.channels.channelState(story.channel);
      expect(state.closesAt).to.equal(CLOSED);
      const c = got.channel;
      expect(c.closed).to.equal(true);
      expect(c.deposit).to.equal(parseEther("1.5").toString());
      expect(c.paid).to.equal(parseEther("0.3").toString());
      expect(c.refund).to.equal(parseEther("1.2").toString());
      expect(c.balance).to.equal("0");
      expect(c.closesAt).to.not.equal(null);
      expect(c.payerOwner).to.equal((await suite.owner.getAddress()).toLowerCase());
      expect(got.events.map((e) => e.kind)).to.deep.equal(["open", "top_up", "claim", "close_started", "closed"]);
      const payee = await suite.channels.deviceBalance(story.devices.payee, "0x" + "00".repeat(20));
      expect(payee).to.equal(parseEther("0.3"));
    });

    it("alerts: one per event that matters, in chain order, with the owners at that block and ids the chain confirms", async function () {
      const { indexedBlock, alerts } = await indexer.client.alertsFrom(0n);
      expect(indexedBlock).to.be.greaterThanOrEqual(BigInt(suite.deployBlock));
      expect(alerts.map((a) => a.kind)).to.deep.equal([
        "device.quarantined", // the batch quarantine
        "device.quarantined", // reported stolen
        "device.location_beacon",
        "device.released",
        "device.quarantined", // the guardians' quorum
        "device.released",
        "device.key_rotated",
        "lock.key_revoked",
        "lock.all_keys_revoked",
        "shipment.excursion_proven",
        "shipment.breached",
        "shipment.overdue",
        "shipment.silent",
        "shipment.delivered",
        "channel.close_started",
        "channel.closed",
      ]);
      for (const a of alerts) {
        expect(ALERT_KINDS).to.include(a.kind);
        expect(a.id).to.equal(alertId(31337, a.txHash, a.logIndex, a.kind));
        const block = await suite.provider.getBlock(Number(a.blockNumber));
        expect(a.blockHash, a.kind).to.equal(block!.hash);
        expect(a.timestamp, a.kind).to.equal(block!.timestamp);
      }
      const owner = (await suite.owner.getAddress()).toLowerCase();
      const other = (await suite.other.getAddress()).toLowerCase();
      const byKind = (kind: string) => alerts.filter((a) => a.kind === kind);
      // The batch quarantine reaches the owners of that batch's devices, and names the batch.
      expect(alerts[0].subjects.owners).to.deep.equal([other]);
      expect(alerts[0].data.batchId).to.equal(story.batches.quarantined.toString());
      expect(alerts[1].subjects).to.deep.equal({ owners: [owner], device: story.devices.stolen.toString() });
      // The guardian flag went to the owner at that block (before the sale).
      expect(alerts[4].subjects.owners).to.deep.equal([other]);
      expect(byKind("device.key_rotated")[0].data).to.include({ generation: 1, attested: true });
      const overdue = byKind("shipment.overdue")[0];
      expect(overdue.subjects.shipment).to.equal(story.shipment);
      expect(overdue.subjects.owners).to.have.members([
        owner,
        (await suite.receiver.getAddress()).toLowerCase(),
        (await suite.carrier.getAddress()).toLowerCase(),
      ]);
      expect(byKind("channel.closed")[0].subjects.owners).to.have.members([
        owner,
        (await suite.payeeOwner.getAddress()).toLowerCase(),
      ]);
      // From a block on: only what is at or after it.
      const later = await indexer.client.alertsFrom(BigInt(alerts[10].blockNumber));
      expect(later.alerts.map((a: Alert) => a.id)).to.deep.equal(
        alerts.filter((a) => BigInt(a.blockNumber) >= BigInt(alerts[10].blockNumber)).map((a) => a.id),
      );
    });

    it("live: what happens after the index caught up is indexed within blocks, with its alert; freshness says how far it lags", async function () {
      const status = await indexer.client.status();
      expect(status.chainId).to.equal(31337);
      expect(status.headBlock).to.be.greaterThanOrEqual(status.indexedBlock);
      expect(status.lagBlocks).to.equal(Number(status.headBlock - status.indexedBlock));
      await (await suite.registry.recall(story.devices.payer, "0x" + "11".repeat(32))).wait();
      const head = await suite.provider.getBlockNumber();
      await indexer.waitForBlock(head);
      const got = (await indexer.client.device(story.devices.payer))!;
      expect(got.device.effectiveStatus).to.equal("revoked");
      expect(BigInt(got.indexedBlock)).to.be.greaterThanOrEqual(BigInt(head));
      expect(got.lagBlocks).to.equal(Number(BigInt(got.headBlock) - BigInt(got.indexedBlock)));
      const { alerts } = await indexer.client.alertsFrom(BigInt(head));
      expect(alerts.map((a) => [a.kind, a.subjects.device])).to.deep.equal([
        ["device.revoked", story.devices.payer.toString()],
      ]);
    });

    it("lag: while Ponder cannot see new blocks the answers say how many it is behind, and 0 once it caught up", async function () {
      const start = await suite.provider.getBlockNumber();
      await indexer.waitForBlock(start);
      // Ponder learns of new blocks by eth_getBlockByNumber; the API reads the head by eth_blockNumber.
      const held = gate.arm({ before: (call) => call.method === "eth_getBlockByNumber", keep: true });
      await held;
      for (let i = 0; i < 3; i++) await suite.node.mine();
      await new Promise((r) => setTimeout(r, 150)); // past the API's 100 ms head cache
      const behind = await indexer.client.status();
      expect([behind.indexedBlock, behind.headBlock, behind.lagBlocks]).to.deep.equal([
        BigInt(start),
        BigInt(start + 3),
        3,
      ]);
      const device = (await indexer.client.device(story.devices.lock))!;
      expect([device.indexedBlock, device.lagBlocks]).to.deep.equal([String(start), 3]);
      gate.disarm();
      await indexer.waitForBlock(start + 3);
      await new Promise((r) => setTimeout(r, 150));
      expect((await indexer.client.status()).lagBlocks).to.equal(0);
    });

    it("Ponder's GraphQL answers from the same tables", async function () {
      const owner = (await suite.owner.getAddress()).toLowerCase();
      const reply = await fetch(`${indexer.url}/graphql`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({
          query: `{ devices(where: { owner: "${owner}" }, limit: 100) { items { id } totalCount } }`,
        }),
      });
      const body = (await reply.json()) as { data: { devices: { items: { id: string }[]; totalCount: number } } };
      const fleet = await indexer.client.fleet(owner, { limit: 1000 });
      expect(body.data.devices.totalCount).to.equal(fleet.total);
      expect(body.data.devices.items.map((d) => d.id).sort()).to.deep.equal(fleet.devices.map((d) => d.id).sort());
    });

    it("Ponder's SQL over HTTP reads the same tables, and refuses a write (attack: a DELETE through /sql/db)", async function () {
      const owner = (await suite.owner.getAddress()).toLowerCase();
      const sqlOverHttp = (sql: string) =>
        fetch(`${indexer.url}/sql/db?sql=${encodeURIComponent(JSON.stringify({ json: { sql, params: [] } }))}`);
      const reply = await sqlOverHttp(`SELECT count(*) AS n FROM device WHERE owner = '${owner}'`);
      expect(reply.status).to.equal(200);
      const body = (await reply.json()) as { rows: { n: number | string }[] };
      const fleet = await indexer.client.fleet(owner, { limit: 1000 });
      expect(Number(body.rows[0].n)).to.equal(fleet.total);
      const attack = await sqlOverHttp("DELETE FROM device");
      expect(attack.status).to.equal(500);
      expect(await attack.text()).to.match(/not supported/);
      expect((await indexer.client.fleet(owner, { limit: 1000 })).total).to.equal(fleet.total);
    });

    it("bad input is refused with the field named, and an unknown id is a 404 that says so", async function () {
      const bad = await fetch(`${indexer.url}/watch/devices/not-a-number`);
      expect(bad.status).to.equal(400);
      expect(((await bad.json()) as { error: string }).error).to.match(/^device id must be a decimal device id/);
      const from = await fetch(`${indexer.url}/watch/alerts?fromBlock=-1`);
      expect(from.status).to.equal(400);
      expect(await indexer.client.device(12345n)).to.equal(null);
      expect(await indexer.client.shipment("0x" + "ab".repeat(32))).to.equal(null);
    });

    it("restart: stopped, then started again on the same database, it resumes and indexes what happened meanwhile", async function () {
      const before = await indexer.client.alertsFrom(0n);
      await indexer.stop();
      await (await suite.registry.connect(suite.owner).reportStolen(story.devices.tracker)).wait();
      const head = await suite.provider.getBlockNumber();
      indexer = await startIndexer(options);
      await indexer.waitForBlock(head);
      const after = await indexer.client.alertsFrom(0n);
      expect(after.alerts.slice(0, before.alerts.length)).to.deep.equal(before.alerts);
      expect(after.alerts.slice(before.alerts.length).map((a) => [a.kind, a.subjects.device])).to.deep.equal([
        ["device.quarantined", story.devices.tracker.toString()],
      ]);
      expect((await indexer.client.device(story.devices.tracker))!.device.status).to.equal("quarantined");
    });
  });
}

describe("watch indexer settings: bad input names the variable and the fix", function () {
  const complete = {
    CUSTOS_WATCH_RPC_URL: "http://127.0.0.1:8545",
    CUSTOS_WATCH_CHAIN_ID: "31337",
    CUSTOS_WATCH_REGISTRY: "0x" + "11".repeat(20),
    CUSTOS_WATCH_GUARDIAN_QUORUM: "0x" + "22".repeat(20),
    CUSTOS_WATCH_LOCATION_BEACONS: "0x" + "33".repeat(20),
    CUSTOS_WATCH_LOCK_ACCESS: "0x" + "44".repeat(20),
    CUSTOS_WATCH_CUSTODY_LEDGER: "0x" + "55".repeat(20),
    CUSTOS_WATCH_PAYMENT_CHANNELS: "0x" + "66".repeat(20),
  };

  it("a complete environment is read, addresses lowercased, defaults filled in", function () {
    const env = readIndexerEnv({ ...complete, CUSTOS_WATCH_REGISTRY: "0x" + "AB".repeat(20) });
    expect(env.addresses.registry).to.equal("0x" + "ab".repeat(20));
    expect([env.chainId, env.startBlock, env.pollingInterval]).to.deep.equal([31337, 0, 200]);
    expect(env.databaseUrl).to.equal(undefined);
  });

  it("a missing address, a malformed one, a bad number or a polling interval under Ponder's minimum is refused by name", function () {
    const without = { ...complete } as Record<string, string>;
    delete without.CUSTOS_WATCH_CUSTODY_LEDGER;
    expect(() => readIndexerEnv(without)).to.throw(
      /^CUSTOS_WATCH_CUSTODY_LEDGER is not set: give the custodyLedger contract's address/,
    );
    expect(() => readIndexerEnv({ ...complete, CUSTOS_WATCH_LOCK_ACCESS: "0x1234" })).to.throw(
      /^CUSTOS_WATCH_LOCK_ACCESS must be an address \(0x \+ 40 hex digits\), not 0x1234/,
    );
    expect(() => readIndexerEnv({ ...complete, CUSTOS_WATCH_CHAIN_ID: "mainnet" })).to.throw(
      /^CUSTOS_WATCH_CHAIN_ID must be a whole number/,
    );
    expect(() => readIndexerEnv({ ...complete, CUSTOS_WATCH_POLLING_MS: "50" })).to.throw(
      /^CUSTOS_WATCH_POLLING_MS must be ≥ 100/,
    );
  });

  it("startIndexer refuses a port that is not one, before starting anything", async function () {
    const refused = await startIndexer({
      rpcUrl: "http://127.0.0.1:1",
      chainId: 31337,
      addresses: {} as never,
      port: 0,
      dataDir: dataDir(),
    }).then(
      () => null,
      (error: Error) => error.message,
    );
    expect(refused).to.match(/^startIndexer: port must be a TCP port \(1–65535\), not 0/);
  });

  it("startIndexer refuses a suite address that is not one, by the variable it would set, before spawning Ponder", async function () {
    const addresses = {
      registry: "0x" + "11".repeat(20),
      guardianQuorum: "0x" + "22".repeat(20),
      locationBeacons: "0x" + "33".repeat(20),
      lockAccess: "0x" + "44".repeat(20),
      custodyLedger: "not an address",
      paymentChannels: "0x" + "66".repeat(20),
    };
    const refused = await startIndexer({
      rpcUrl: "http://127.0.0.1:1",
      chainId: 31337,
      addresses,
      port: 1,
      dataDir: dataDir(),
    }).then(
      () => null,
      (error: Error) => error.message,
    );
    expect(refused).to.match(/^CUSTOS_WATCH_CUSTODY_LEDGER must be an address/);
  });
});

describe("watch indexer data directory: a development node restarted with the same chain id and addresses", function () {
  this.timeout(300_000);

  it("attack: the old chain's index is not served for the new chain — refused by name, or deleted and rebuilt when asked", async function () {
    const dir = dataDir();
    const first = await deployOn(await startHardhatNode());
    const keys = [randomDeviceKey("secp256k1")];
    await provision(first, keys, [first.owner]);
    const options = { chainId: 31337, addresses: first.addresses, dataDir: dir, databaseUrl: null };
    let indexer = await startIndexer({ ...options, rpcUrl: first.node.url, port: await freePort() });
    await indexer.waitForBlock(await first.provider.getBlockNumber());
    expect(await indexer.client.device(deviceIdOf(keys[0].signer))).to.not.equal(null);
    await indexer.stop();
    await first.node.stop();

    // A new node: chain 31337 again, the suite at the same addresses, none of the old devices.
    const second = await deployOn(await startHardhatNode());
    try {
      expect(second.addresses).to.deep.equal(first.addresses);
      const refused = await startIndexer({ ...options, rpcUrl: second.node.url, port: await freePort() }).then(
        () => null,
        (error: Error) => error.message,
      );
      expect(refused).to.match(/holds the index of another chain .* Give a fresh dataDir, or onOtherChain: "reset"/);
      indexer = await startIndexer({
        ...options,
        rpcUrl: second.node.url,
        port: await freePort(),
        onOtherChain: "reset",
      });
      await indexer.waitForBlock(await second.provider.getBlockNumber());
      expect(await indexer.client.device(deviceIdOf(keys[0].signer))).to.equal(null);
      expect((await indexer.client.alertsFrom(0n)).alerts).to.deep.equal([]);
    } finally {
      await indexer.stop();
      await second.node.stop();
    }
  });
});

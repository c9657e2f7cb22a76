/**
 * Signed, durable webhooks: the dispatcher against real HTTP receivers on loopback built with the
 * receiver library, fed by a list of alerts the test controls (the feed is not what is tested).
 * Attacks on a receiver (forged, tampered, replayed), delivery persisted before it is tried,
 * ordering, a reorg's retraction, a receiver down for 10 minutes under the production backoff
 * (on a clock 600 times faster than the wall), and giving up after the horizon.
 */
import { expect } from "chai";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import Fastify from "fastify";
import { Webhook } from "standardwebhooks";
import { Wallet } from "ethers";
import { backoffDelay, fastClock, PRODUCTION_BACKOFF, type Clock } from "../../src/watch/webhooks/backoff.js";
import { deliveryIdOf, retractionIdOf } from "../../src/watch/webhooks/delivery.js";
import { DeliveryStore } from "../../src/watch/webhooks/deliveries.js";
import { Dispatcher, type DispatcherOptions } from "../../src/watch/webhooks/dispatcher.js";
import { WebhookReceiver, type WebhookEvent } from "../../src/watch/webhooks/receiver.js";
import { SubscriptionStore } from "../../src/watch/webhooks/subscriptions.js";
import type { Subscription } from "../../src/watch/webhooks/subscription.js";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { startHardhatNode, type HardhatNode } from "../helpers/node.js";
import { rpcProvider, simulateFleet } from "../../src/relayer/fleet.js";
import { startWebhooks } from "../../src/watch/webhooks/index.js";
import {
  makeAlert,
  MemoryFeed,
  serve,
  signRequest,
  signUnsubscribe,
  startReceiver,
  subscriptionFor,
  type Received,
} from "./webhookHelpers.js";

const OWNER = Wallet.createRandom().address;
const OTHER = Wallet.createRandom().address;

async function until(what: string, cond: () => boolean, timeoutMs = 20_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe("watch webhooks: signed, durable deliveries", function () {
  this.timeout(60_000);
  let dataDir: string;
  let subs: SubscriptionStore;
  let deliveries: DeliveryStore;
  let feed: MemoryFeed;
  let dispatcher: Dispatcher | undefined;
  const cleanups: (() => Promise<void>)[] = [];

  beforeEach(function () {
    dataDir = mkdtempSync(path.join(tmpdir(), "custos-webhooks-"));
    subs = SubscriptionStore.open(dataDir);
    deliveries = DeliveryStore.open(dataDir);
    feed = new MemoryFeed();
  });

  afterEach(async function () {
    await dispatcher?.stop();
    dispatcher = undefined;
    for (const c of cleanups.splice(0)) await c();
    await subs.close();
    await deliveries.close();
  });

  async function receiverFor(
    o: { owner?: string; hold?: NonNullable<Parameters<typeof startReceiver>[1]>["hold"] } = {},
  ) {
    const placeholder = subscriptionFor({ owner: o.owner ?? OWNER, url: "http://127.0.0.1:1/" });
    const r = await startReceiver(placeholder.secret, { hold: o.hold });
    cleanups.push(r.close);
    const sub: Subscription = { ...placeholder, url: r.url };
    await subs.add(sub, String(Math.random()));
    return { sub, ...r };
  }

  async function start(opts: Partial<DispatcherOptions> = {}): Promise<Dispatcher> {
    dispatcher = new Dispatcher({ feed, subscriptions: subs, deliveries, pollIntervalMs: 20, ...opts });
    await dispatcher.start();
    return dispatcher;
  }

  it("an alert reaches its subscriber signed (webhook-id = the delivery id), on disk before it was first tried", async function () {
    let onDiskAtFirstTry: boolean | undefined;
    const r = await receiverFor({
      hold: (req: Received) => {
        onDiskAtFirstTry ??= readFileSync(path.join(dataDir, "deliveries.log"), "utf8").includes(
          req.headers["webhook-id"],
        );
      },
    });
    const alert = makeAlert({ block: 5, owner: OWNER });
    feed.push(alert, makeAlert({ block: 5, owner: OTHER, logIndex: 1 })); // not this subscriber's
    await start();
    await until("the delivery", () => r.events.length === 1);
    const [event] = r.events;
    expect(event.id).to.equal(deliveryIdOf(r.sub.id, alert));
    expect(event.type).to.equal("device.quarantined");
    expect(event.data.alert).to.deep.equal(alert);
    expect(event.data.subscription).to.equal(r.sub.id);
    expect(r.requests[0].headers["webhook-signature"]).to.match(/^v1,[A-Za-z0-9+/=]{44}$/);
    expect(onDiskAtFirstTry).to.equal(true);
    await until("delivered status", () => deliveries.get(event.id)?.status === "delivered");
    await new Promise((res) => setTimeout(res, 100));
    expect(r.requests).to.have.length(1);
  });

  describe("attacks on a receiver (the library subscribers use)", function () {
    let secret: string;
    let receiver: WebhookReceiver;
    let handled: WebhookEvent[];
    const body = JSON.stringify({
      type: "device.quarantined",
      timestamp: new Date().toISOString(),
      data: { delivery: "dlv_1" },
    });
    const signed = (s: string, id = "dlv_1", at = new Date(), b = body) => ({
      "webhook-id": id,
      "webhook-timestamp": String(Math.floor(at.getTime() / 1000)),
      "webhook-signature": new Webhook(s).sign(id, at, b),
    });

    beforeEach(function () {
      secret = subscriptionFor({ owner: OWNER, url: "http://x/" }).secret;
      receiver = new WebhookReceiver({ secret });
      handled = [];
    });
    const handle = (b: string, h: Record<string, string>) => receiver.handle(b, h, (e) => void handled.push(e));

    it("attack: a forged delivery (signed with another secret) is refused: bad_signature", async function () {
      const other = subscriptionFor({ owner: OWNER, url: "http://x/" }).secret;
      const a = await handle(body, signed(other));
      expect(a.status).to.equal(401);
      expect(a.body.error).to.equal("bad_signature");
      expect(a.body.message).to.include("secret");
      expect(handled).to.have.length(0);
    });

    it("attack: a tampered body (or id) under a genuine signature is refused: bad_signature", async function () {
      const h = signed(secret);
      expect((await handle(body.replace("quarantined", "released"), h)).body.error).to.equal("bad_signature");
      expect((await handle(body, { ...h, "webhook-id": "dlv_2" })).body.error).to.equal("bad_signature");
      expect((await handle(body, { ...h, "webhook-signature": "v1,AAAA" })).body.error).to.equal("bad_signature");
      expect(handled).to.have.length(0);
    });

    it("attack: a replay of a captured delivery 6 minutes later (old timestamp) is refused: timestamp_too_old", async function () {
      const captured = signed(secret, "dlv_1", new Date(Date.now() - 6 * 60_000));
      const a = await handle(body, captured);
      expect(a.status).to.equal(401);
      expect(a.body.error).to.equal("timestamp_too_old");
      const ahead = await handle(body, signed(secret, "dlv_1", new Date(Date.now() + 6 * 60_000)));
      expect(ahead.body.error).to.equal("timestamp_too_new");
      const bare = await handle(body, { "webhook-id": "dlv_1" });
      expect(bare.body.error).to.equal("missing_headers");
      expect(handled).to.have.length(0);
    });

    it("attack: a replay within the tolerance is a duplicate: acknowledged, not handled twice", async function () {
      const h = signed(secret);
      expect((await handle(body, h)).body).to.deep.equal({ ok: true });
      expect((await handle(body, h)).body).to.deep.equal({ ok: true, duplicate: true });
      expect(handled).to.have.length(1);
    });

    it("a handler that fails answers 500 and does not mark the delivery seen (the watch retries it)", async function () {
      const h = signed(secret);
      const failed = await receiver.handle(body, h, () => {
        throw new Error("database down");
      });
      expect(failed.status).to.equal(500);
      expect((await handle(body, h)).body).to.deep.equal({ ok: true });
    });

    it("the fastify plugin verifies the raw bytes: a genuine delivery passes, a re-serialised body does not", async function () {
      const app = Fastify();
      await app.register(receiver.fastifyPlugin((e) => void handled.push(e), "/hook"));
      const url = await app.listen({ host: "127.0.0.1", port: 0 });
      cleanups.push(() => app.close());
      const spaced = JSON.stringify(JSON.parse(body), null, 2); // same JSON, other bytes
      const h = { ...signed(secret, "dlv_1", new Date(), spaced), "content-type": "application/json" };
      const ok = await fetch(`${url}/hook`, { method: "POST", headers: h, body: spaced });
      expect(ok.status).to.equal(200);
      const reserialised = await fetch(`${url}/hook`, { method: "POST", headers: h, body });
      expect(reserialised.status).to.equal(401);
      expect(((await reserialised.json()) as { error: string }).error).to.equal("bad_signature");
      expect(handled).to.have.length(1);
    });
  });

  it("only the subscriber's kinds, owners and blocks: a device sold (owner no longer in the alert) stops its alerts", async function () {
    const r = await receiverFor();
    // A narrower subscription of the same owner: only releases.
    const narrow = await receiverFor();
    const narrowSub = { ...narrow.sub, id: narrow.sub.id.replace(/.$/, "0"), events: ["device.released" as const] };
    await subs.add(narrowSub, "narrow");
    feed.push(
      makeAlert({ block: 3, owner: OWNER, kind: "device.quarantined" }),
      makeAlert({ block: 4, owner: OTHER, kind: "device.released" }), // sold: the owner is OTHER now
      makeAlert({ block: 5, owner: OWNER, kind: "device.released" }),
    );
    await start();
    await until("two deliveries", () => r.events.length === 2);
    await until("the narrow one", () => narrow.events.length >= 1);
    expect(r.events.map((e) => e.data.alert.blockNumber)).to.deep.equal(["3", "5"]);
    await new Promise((res) => setTimeout(res, 150));
    expect(narrow.events.filter((e) => e.data.subscription === narrowSub.id).map((e) => e.type)).to.deep.equal([
      "device.released",
    ]);
  });

  it("one delivery in flight per subscription, in order; several subscriptions at once", async function () {
    let inFlight = 0;
    let maxAll = 0;
    const perSub = new Map<string, number>();
    let maxPerSub = 0;
    const hold = async (req: { raw: string }) => {
      const sub = JSON.parse(req.raw).data.subscription as string;
      perSub.set(sub, (perSub.get(sub) ?? 0) + 1);
      maxPerSub = Math.max(maxPerSub, perSub.get(sub)!);
      maxAll = Math.max(maxAll, ++inFlight);
      await new Promise((res) => setTimeout(res, 5));
      inFlight--;
      perSub.set(sub, perSub.get(sub)! - 1);
    };
    const receivers = await Promise.all([0, 1, 2, 3].map(() => receiverFor({ hold })));
    for (let i = 0; i < 40; i++) feed.push(makeAlert({ block: 10 + i, owner: OWNER }));
    await start({ concurrency: 4 });
    await until("all delivered", () => receivers.every((r) => r.events.length === 40));
    expect(maxPerSub).to.equal(1);
    expect(maxAll).to.be.greaterThan(1);
    for (const r of receivers)
      expect(r.events.map((e) => Number(e.data.alert.blockNumber))).to.deep.equal(
        [...Array(40).keys()].map((i) => 10 + i),
      );
  });

  it("reorg: a delivered alert the feed drops once the index passed its block is retracted; re-mined, it comes again with a new id", async function () {
    const r = await receiverFor();
    const kept = makeAlert({ block: 10, owner: OWNER });
    const orphaned = makeAlert({ block: 11, owner: OWNER, kind: "shipment.breached" });
    feed.push(kept, orphaned);
    await start();
    await until("both delivered", () => r.events.length === 2);
    // The reorg: block 11 replaced; the index has not reached it on the new chain yet.
    feed.alerts = [kept];
    feed.indexedBlock = 10n;
    await new Promise((res) => setTimeout(res, 150));
    expect(r.events).to.have.length(2); // not retracted while the index is behind its block
    // The index reaches 12 on the new chain: the same transaction landed in block 12.
    const remined = { ...orphaned, blockNumber: "12", blockHash: "0x" + "ab".repeat(32) };
    feed.push(remined);
    await until("the retraction and the re-mined alert", () => r.events.length === 4);
    const original = deliveryIdOf(r.sub.id, orphaned);
    const retraction = r.events.find((e) => e.type === "alert.retracted")!;
    expect(retraction.id).to.equal(retractionIdOf(original));
    expect(retraction.data.retracts).to.equal(original);
    expect(retraction.data.alert.id).to.equal(orphaned.id);
    const again = r.events.find((e) => e.type === "shipment.breached" && e.data.alert.blockNumber === "12")!;
    expect(again.id).to.equal(deliveryIdOf(r.sub.id, remined)).and.not.equal(original);
    // The kept alert is never retracted; nothing is retracted twice.
    await new Promise((res) => setTimeout(res, 150));
    expect(r.events.filter((e) => e.type === "alert.retracted")).to.have.length(1);
    expect(deliveries.get(original)!.retractedBy).to.equal(retraction.id);
  });

  it("a receiver down for 10 minutes gets everything when back (production backoff, clock 600× the wall)", async function () {
    const clock: Clock = fastClock(600);
    const a = await receiverFor();
    const b = await receiverFor();
    const retries: number[] = [];
    await a.down();
    await b.down();
    for (let i = 0; i < 30; i++) feed.push(makeAlert({ block: 100 + i, owner: OWNER }));
    const t0 = clock.now();
    await start({
      clock,
      policy: PRODUCTION_BACKOFF,
      log: (e) => {
        if (e.event === "retry") retries.push(e.inMs as number);
      },
    });
    await until("10 minutes on the watch's clock", () => clock.now() - t0 >= 10 * 60_000);
    expect(a.requests.length + b.requests.length).to.equal(0);
    await a.up();
    await b.up();
    await until("everything", () => a.events.length === 30 && b.events.length === 30);
    for (const r of [a, b]) {
      expect(r.events.map((e) => Number(e.data.alert.blockNumber))).to.deep.equal(
        [...Array(30).keys()].map((i) => 100 + i),
      );
      const head = deliveries.get(r.events[0].id)!;
      // It kept trying through the outage: 1, 2, 4 … 32 s, then about every 30–60 s.
      expect(head.failures).to.be.within(10, 40);
    }
    expect(Math.max(...retries)).to.be.at.most(PRODUCTION_BACKOFF.capMs);
    console.log(
      `      outage: ${retries.length} retries over 10 min (longest wait ${Math.max(...retries)} ms) (watch time), then 60/60 delivered in order`,
    );
  });

  it("a delivery that fails past the horizon is marked failed and listed, and the next one goes", async function () {
    const clock = fastClock(3000);
    const r = await receiverFor();
    await r.down();
    feed.push(makeAlert({ block: 1, owner: OWNER }));
    await start({ clock, policy: { ...PRODUCTION_BACKOFF, horizonMs: 10 * 60_000 } });
    await until("given up", () => deliveries.list({ status: "failed" }).length === 1);
    const [failed] = deliveries.list({ subscription: r.sub.id, status: "failed" });
    expect(failed.lastError).to.match(/^gave up after \d+ attempts: ECONNREFUSED/);
    await r.up();
    feed.push(makeAlert({ block: 2, owner: OWNER }));
    await until("the next one", () => r.events.length === 1);
    expect(r.events[0].data.alert.blockNumber).to.equal("2");
  });

  it("the production policy: 1 s, doubling, capped at 60 s with jitter, given up after 3 days", function () {
    expect(PRODUCTION_BACKOFF).to.deep.include({ baseMs: 1_000, capMs: 60_000, horizonMs: 3 * 24 * 3600_000 });
    const none = () => 0;
    expect([1, 2, 3, 6, 7, 8, 100].map((n) => backoffDelay(PRODUCTION_BACKOFF, n, none))).to.deep.equal([
      1_000, 2_000, 4_000, 32_000, 60_000, 60_000, 60_000,
    ]);
    for (let n = 1; n < 50; n++) {
      const d = backoffDelay(PRODUCTION_BACKOFF, n);
      expect(d)
        .to.be.at.most(60_000)
        .and.at.least(Math.min(60_000, 1000 * 2 ** (n - 1)) / 2);
    }
  });

  it("compaction keeps what a restart needs: pending deliveries in order with their failures, recent ones whole, the cursor", async function () {
    const up = await receiverFor();
    const down = await receiverFor({ owner: OTHER });
    await down.down();
    for (let b = 1; b <= 100; b++) feed.push(makeAlert({ block: b, owner: b % 10 === 0 ? OTHER : OWNER }));
    await start();
    await until("delivered", () => up.events.length === 90);
    await until("some failures", () => (deliveries.pendingOf(down.sub.id)[0]?.failures ?? 0) >= 2);
    await dispatcher!.stop();
    dispatcher = undefined;
    const pendingBefore = deliveries.pendingOf(down.sub.id).map((s) => [s.delivery.id, s.failures]);
    const size = () => readFileSync(path.join(dataDir, "deliveries.log")).length;
    const sizeBefore = size();
    await deliveries.close();
    deliveries = DeliveryStore.open(dataDir);
    // Finished ones done over 0 ms ago and out of the next poll's reach (below 101 - 50) are forgotten.
    const { before, after } = await deliveries.compact({ now: Date.now() + 1, retainMs: 0, finalityDepth: 50 });
    expect(after).to.be.below(before);
    expect(size()).to.be.below(sizeBefore);
    await deliveries.close();
    deliveries = DeliveryStore.open(dataDir);
    expect(deliveries.pendingOf(down.sub.id).map((s) => [s.delivery.id, s.failures])).to.deep.equal(pendingBefore);
    const kept = deliveries.list({ subscription: up.sub.id });
    expect(kept.map((d) => Number(d.blockNumber))).to.deep.equal(
      [...Array(50).keys()].map((i) => 51 + i).filter((b) => b % 10 !== 0),
    );
    expect(kept.every((d) => d.status === "delivered")).to.equal(true);
    expect(deliveries.cursor).to.equal(101n);
    // Restarted, it delivers the pending ones once the receiver is back, and nothing twice.
    await down.up();
    await start({ finalityDepth: 50 });
    await until("the pending ones", () => down.events.length === 10);
    await new Promise((r) => setTimeout(r, 100));
    expect(up.requests).to.have.length(90);
  });

  it("an ended subscription's pending deliveries are cancelled, not sent", async function () {
    const r = await receiverFor();
    await r.down();
    feed.push(makeAlert({ block: 1, owner: OWNER }), makeAlert({ block: 2, owner: OWNER }));
    await start();
    await until("queued", () => deliveries.pendingOf(r.sub.id).length === 2);
    await subs.remove(r.sub.id, "end", Date.now());
    await r.up();
    await until("cancelled", () => deliveries.list({ subscription: r.sub.id, status: "cancelled" }).length === 2);
    expect(r.events).to.have.length(0);
  });
});

describe("startWebhooks on a real node: subscribe over HTTP, receive the alert", function () {
  this.timeout(120_000);
  let node: HardhatNode;
  before(async function () {
    node = await startHardhatNode();
  });
  after(async function () {
    await node?.stop();
  });

  it("a misconfigured start is refused, naming the option: another chain's id, a registry with no code, no feed", async function () {
    const base = {
      feed: new MemoryFeed(),
      chain: { rpcUrl: node.url, addresses: { registry: Wallet.createRandom().address }, chainId: 31337 },
      dataDir: mkdtempSync(path.join(tmpdir(), "custos-start-webhooks-")),
    };
    const refusal = async (o: unknown) => {
      try {
        await startWebhooks(o as Parameters<typeof startWebhooks>[0]);
      } catch (err) {
        return (err as Error).message;
      }
      throw new Error("startWebhooks started");
    };
    expect(await refusal({ ...base, chain: { ...base.chain, chainId: 1 } }))
      .to.include("chain.chainId is 1")
      .and.include("31337");
    expect(await refusal(base))
      .to.include("chain.addresses.registry")
      .and.include("no code");
    expect(await refusal({ ...base, feed: undefined })).to.include("feed");
    expect(await refusal({ ...base, chain: { ...base.chain, rpcUrl: "localhost:8545" } })).to.include("chain.rpcUrl");
  });

  it("an owner subscribes through the routes; its receiver (the library's Node handler) gets the device's alert, signed with the secret it was given", async function () {
    const provider = rpcProvider(node.url);
    const fleet = await simulateFleet({
      provider,
      admin: await provider.getSigner(0),
      owner: await provider.getSigner(1),
      devices: 2,
    });
    const feed = new MemoryFeed();
    const hooks = await startWebhooks({
      feed,
      chain: { rpcUrl: node.url, addresses: fleet.addresses, chainId: 31337 },
      dataDir: mkdtempSync(path.join(tmpdir(), "custos-start-webhooks-")),
      pollIntervalMs: 20,
    });
    const api = await serve(hooks.routes);
    // The subscriber's server is up before it subscribes; its handler needs the secret it will be given.
    let handler: ((req: IncomingMessage, res: ServerResponse) => void) | undefined;
    const server = createServer((req, res) => (handler ? handler(req, res) : res.writeHead(503).end()));
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/custos`;
    try {
      const device = fleet.devices[0].id.toString();
      const deadline = String(Math.floor(Date.now() / 1000) + 3600);
      const request = {
        owner: fleet.ownerAddress,
        scope: "device" as const,
        target: device,
        url,
        events: ["device.quarantined" as const],
        nonce: "1",
        deadline,
      };
      const res = await api.call("POST", "/subscriptions", await signRequest(fleet.owner, fleet.deployment, request));
      expect(res.status, JSON.stringify(res.body)).to.equal(201);
      const events: WebhookEvent[] = [];
      handler = new WebhookReceiver({ secret: res.body.secret }).nodeHandler((e) => void events.push(e));

      const alert = {
        ...makeAlert({ block: Number(res.body.fromBlock), owner: fleet.ownerAddress }),
        subjects: { owners: [fleet.ownerAddress.toLowerCase()], device },
      };
      const otherDevice = {
        ...makeAlert({ block: Number(res.body.fromBlock), owner: fleet.ownerAddress, logIndex: 1 }),
        subjects: { owners: [fleet.ownerAddress.toLowerCase()], device: "1" },
      };
      feed.push(alert, otherDevice);
      await until("the delivery", () => events.length === 1);
      expect(events[0]).to.include({ id: deliveryIdOf(res.body.id, alert), type: "device.quarantined" });
      await until("delivered", () => hooks.deliveries.get(events[0].id)?.status === "delivered");
      const listed = await api.call("GET", `/deliveries?subscription=${res.body.id}`);
      expect(listed.body.deliveries).to.have.length(1);
      expect(listed.body.deliveries[0]).to.include({ id: events[0].id, status: "delivered", failures: 0 });

      // Unsubscribed (signed), it gets nothing more.
      const bye = await signUnsubscribe(
        fleet.owner,
        fleet.deployment,
        fleet.ownerAddress,
        res.body.id,
        2n,
        BigInt(deadline),
      );
      expect((await api.call("DELETE", `/subscriptions/${res.body.id}`, bye)).status).to.equal(200);
      feed.push({ ...alert, id: alert.id + ":later", blockNumber: String(Number(alert.blockNumber) + 1) });
      await new Promise((r) => setTimeout(r, 200));
      expect(events).to.have.length(1);
    } finally {
      server.closeAllConnections();
      server.close();
      await api.close();
      await hooks.stop();
      provider.destroy();
    }
  });
});

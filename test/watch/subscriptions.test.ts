/**
 * Subscriptions: only the owner of a target, proven by an EIP-712 signature and checked against
 * the chain now, gets one. On the in-process chain (fixtures: devices claimed, a shipment, a
 * channel, an ERC-1271 wallet), through the real routes on loopback; the store is a real durable
 * log in a temporary directory.
 */
import { expect } from "chai";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { ethers, loadFixture, time } from "../helpers/hardhat.js";
import { deployCustody, createShipment } from "../helpers/custody.js";
import { makeKeys, provision, SECP256K1_N } from "../helpers/registry.js";
import { openedTerms } from "../helpers/channels.js";
import { typedData, type Deployment } from "../../src/eip712/index.js";
import { messageToSign } from "../../src/watch/webhooks/subscription.js";
import { DeliveryStore } from "../../src/watch/webhooks/deliveries.js";
import { webhookRoutes } from "../../src/watch/webhooks/routes.js";
import { SubscriptionService, SubscriptionStore } from "../../src/watch/webhooks/subscriptions.js";
import { serve, signRequest, signUnsubscribe, type Unsigned } from "./webhookHelpers.js";

const URL_A = "https://alerts.example.com/custos";

async function fixture() {
  const ctx = await deployCustody();
  const channels = await ethers.deployContract("PaymentChannels", [
    await ctx.registry.getAddress(),
    await ctx.forwarder.getAddress(),
    3600,
  ]);
  // A payer device of `owner`, a payee device of `other`, a channel between them.
  const payerKey = makeKeys(ctx, 1)[0];
  const [payer] = (await provision(ctx, [payerKey], ctx.owner)).ids;
  const [payee] = (await provision(ctx, makeKeys(ctx, 1), ctx.other)).ids;
  const tx = await channels
    .connect(ctx.stranger)
    .open(
      { payer, payee, token: ethers.ZeroAddress, rate: (1n << 96n) - 1n, allowance: 0n, salt: 0 },
      payerKey.signer,
      1n,
      {
        value: 1n,
      },
    );
  const { id: channel } = await openedTerms({ channels } as never, tx);
  const shipment = (await createShipment(ctx)).id;
  // A device owned by a contract wallet (whose key is `stranger`).
  const [walletDevice] = (await provision(ctx, makeKeys(ctx, 1), ctx.owner)).ids;
  await ctx.registry.connect(ctx.owner).transferFrom(ctx.owner.address, ctx.walletAddress, walletDevice);
  const watch: Deployment = ctx.deployment; // the watch's domain: chain id + the registry's address
  return { ...ctx, channels, channel, payer, payee, shipment, walletDevice, watch };
}

type Ctx = Awaited<ReturnType<typeof fixture>>;

describe("watch subscriptions (owner-proven, checked on chain)", function () {
  let ctx: Ctx;
  let dataDir: string;
  let store: SubscriptionStore;
  let server: Awaited<ReturnType<typeof serve>>;
  let nonce = 0n;

  beforeEach(async function () {
    ctx = await loadFixture(fixture);
    dataDir = mkdtempSync(path.join(tmpdir(), "custos-subs-"));
    store = SubscriptionStore.open(dataDir);
    const service = new SubscriptionService(store, ethers.provider, ctx.watch, {
      registry: await ctx.registry.getAddress(),
      custodyLedger: await ctx.ledger.getAddress(),
      paymentChannels: await ctx.channels.getAddress(),
    });
    server = await serve(webhookRoutes({ service, subscriptions: store, deliveries: DeliveryStore.open(dataDir) }));
  });

  afterEach(async function () {
    await server.close();
    await store.close();
  });

  async function request(over: Partial<Unsigned> = {}): Promise<Unsigned> {
    return {
      owner: ctx.owner.address,
      scope: "device",
      target: ctx.trackers[0].toString(),
      url: URL_A,
      events: ["device.quarantined", "device.location_beacon"],
      nonce: String(++nonce),
      deadline: String((await time.latest()) + 3600),
      ...over,
    };
  }

  const subscribe = async (body: unknown) => server.call("POST", "/subscriptions", body);

  it("the owner of a device subscribes: an id, a fresh whsec_ secret once, listed without it", async function () {
    const res = await subscribe(await signRequest(ctx.owner, ctx.watch, await request()));
    expect(res.status, JSON.stringify(res.body)).to.equal(201);
    expect(res.body.id).to.match(/^0x[0-9a-f]{64}$/);
    expect(res.body.secret).to.match(/^whsec_[A-Za-z0-9+/]{32}$/);
    expect(BigInt(res.body.fromBlock)).to.equal(BigInt(await ethers.provider.getBlockNumber()) + 1n);
    const listed = await server.call("GET", `/subscriptions?owner=${ctx.owner.address.toLowerCase()}`);
    expect(listed.status).to.equal(200);
    expect(listed.body.subscriptions).to.have.length(1);
    expect(listed.body.subscriptions[0]).to.include({ id: res.body.id, url: URL_A, scope: "device", active: true });
    expect(JSON.stringify(listed.body)).not.to.include(res.body.secret);
    expect(listed.body.subscriptions[0]).not.to.have.property("secret");
  });

  it("attack: a stranger subscribes to someone's device (signed by himself) — refused, not the owner", async function () {
    const res = await subscribe(
      await signRequest(ctx.stranger, ctx.watch, await request({ owner: ctx.stranger.address })),
    );
    expect(res.status).to.equal(403);
    expect(res.body).to.include({ error: "not_owner", field: "owner" });
    expect(res.body.message).to.include(ctx.owner.address);
  });

  it("attack: a stranger signs in the owner's name — refused, bad signature", async function () {
    const res = await subscribe(await signRequest(ctx.stranger, ctx.watch, await request()));
    expect(res.status).to.equal(401);
    expect(res.body).to.include({ error: "bad_signature", field: "signature" });
  });

  it("attack: the owner's signature sent with another URL, or with more events — refused", async function () {
    const signed = await signRequest(ctx.owner, ctx.watch, await request());
    const redirected = await subscribe({ ...signed, url: "https://attacker.example/steal" });
    expect(redirected.status).to.equal(401);
    expect(redirected.body.error).to.equal("bad_signature");
    const widened = await subscribe({ ...signed, events: "all" });
    expect(widened.body.error).to.equal("bad_signature");
    const otherDevice = await subscribe({ ...signed, target: ctx.trackers[1].toString() });
    expect(otherDevice.body.error).to.equal("bad_signature");
    expect(store.listFor(ctx.owner.address)).to.have.length(0);
  });

  it("attack: a signature for another watch (other registry or chain) — refused", async function () {
    for (const d of [
      { ...ctx.watch, verifyingContract: await ctx.ledger.getAddress() },
      { ...ctx.watch, chainId: 1n },
    ]) {
      const res = await subscribe(await signRequest(ctx.owner, d, await request()));
      expect(res.body.error).to.equal("bad_signature");
    }
  });

  it("attack: the malleated twin (high s) of the owner's signature — refused", async function () {
    const signed = await signRequest(ctx.owner, ctx.watch, await request());
    const b = ethers.getBytes(signed.signature);
    const s = BigInt(ethers.hexlify(b.slice(32, 64)));
    const twin = ethers.concat([
      b.slice(0, 32),
      ethers.toBeHex(SECP256K1_N - s, 32),
      new Uint8Array([b[64] === 27 ? 28 : 27]),
    ]);
    const res = await subscribe({ ...signed, signature: twin });
    expect(res.body.error).to.equal("bad_signature");
  });

  it("attack: an expired signature — refused, naming the deadline", async function () {
    const signed = await signRequest(
      ctx.owner,
      ctx.watch,
      await request({ deadline: String((await time.latest()) - 1) }),
    );
    const res = await subscribe(signed);
    expect(res.status).to.equal(400);
    expect(res.body).to.include({ error: "expired", field: "deadline" });
  });

  it("attack: a replayed nonce (the same request again, or a new one with a used nonce, also after a restart) — refused", async function () {
    const signed = await signRequest(ctx.owner, ctx.watch, await request());
    expect((await subscribe(signed)).status).to.equal(201);
    const again = await subscribe(signed);
    expect(again.status).to.equal(409);
    expect(again.body).to.include({ error: "nonce_used", field: "nonce" });
    const other = await signRequest(
      ctx.owner,
      ctx.watch,
      await request({ nonce: signed.nonce, url: "https://b.example/" }),
    );
    expect((await subscribe(other)).body.error).to.equal("nonce_used");
    // Two at once with one nonce: one wins.
    const pair = await Promise.all(
      ["https://c.example/", "https://d.example/"].map(async (url) =>
        subscribe(await signRequest(ctx.owner, ctx.watch, await request({ nonce: "777", url }))),
      ),
    );
    expect(pair.map((r) => r.status).sort()).to.deep.equal([201, 409]);
    // The log remembers the nonces across a restart.
    await store.close();
    const reopened = SubscriptionStore.open(dataDir);
    expect(reopened.nonceUsed(ctx.owner.address, signed.nonce)).to.equal(true);
    expect(reopened.active()).to.have.length(2);
    await reopened.close();
    store = SubscriptionStore.open(dataDir); // for afterEach
  });

  it("attack: the former owner of a sold device subscribes to it — refused (ownership is read now)", async function () {
    const device = ctx.trackers[1];
    await ctx.registry.connect(ctx.owner).transferFrom(ctx.owner.address, ctx.other.address, device);
    const res = await subscribe(await signRequest(ctx.owner, ctx.watch, await request({ target: device.toString() })));
    expect(res.body.error).to.equal("not_owner");
    const buyer = await subscribe(
      await signRequest(ctx.other, ctx.watch, await request({ owner: ctx.other.address, target: device.toString() })),
    );
    expect(buyer.status).to.equal(201);
  });

  it("a lock (a device) by its owner; an unknown device — refused as unknown", async function () {
    const ok = await subscribe(
      await signRequest(
        ctx.owner,
        ctx.watch,
        await request({ scope: "lock", target: ctx.trackers[0].toString(), events: ["lock.key_revoked"] }),
      ),
    );
    expect(ok.status).to.equal(201);
    const unknown = await subscribe(await signRequest(ctx.owner, ctx.watch, await request({ target: "12345" })));
    expect(unknown.status).to.equal(404);
    expect(unknown.body.error).to.equal("unknown_target");
  });

  it("an ERC-1271 contract wallet subscribes to its device with its owner key's signature; another key's is refused", async function () {
    const base = { owner: ctx.walletAddress, target: ctx.walletDevice.toString() };
    const ok = await subscribe(await signRequest(ctx.stranger, ctx.watch, await request(base)));
    expect(ok.status, JSON.stringify(ok.body)).to.equal(201);
    const forged = await subscribe(await signRequest(ctx.other, ctx.watch, await request(base)));
    expect(forged.body.error).to.equal("bad_signature");
  });

  it("a shipment: its shipper and its receiver may; a stranger may not", async function () {
    const r = (who: typeof ctx.owner) =>
      request({ owner: who.address, scope: "shipment", target: ctx.shipment, events: ["shipment.breached"] });
    expect((await subscribe(await signRequest(ctx.shipper, ctx.watch, await r(ctx.shipper)))).status).to.equal(201);
    expect((await subscribe(await signRequest(ctx.receiver, ctx.watch, await r(ctx.receiver)))).status).to.equal(201);
    const stranger = await subscribe(await signRequest(ctx.stranger, ctx.watch, await r(ctx.stranger)));
    expect(stranger.body.error).to.equal("not_owner");
    const none = await subscribe(
      await signRequest(
        ctx.shipper,
        ctx.watch,
        await request({ scope: "shipment", target: ethers.id("no such shipment") }),
      ),
    );
    expect(none.body.error).to.equal("unknown_target");
  });

  it("a channel: the payer device's owner and the payee device's owner may; a stranger may not", async function () {
    const r = (who: typeof ctx.owner) =>
      request({ owner: who.address, scope: "channel", target: ctx.channel, events: ["channel.close_started"] });
    expect((await subscribe(await signRequest(ctx.owner, ctx.watch, await r(ctx.owner)))).status).to.equal(201);
    expect((await subscribe(await signRequest(ctx.other, ctx.watch, await r(ctx.other)))).status).to.equal(201);
    expect((await subscribe(await signRequest(ctx.stranger, ctx.watch, await r(ctx.stranger)))).body.error).to.equal(
      "not_owner",
    );
  });

  it("attack: an owner subscription to someone else's address — refused", async function () {
    // The stranger signs a message naming the owner's address as the target (our client refuses to build it).
    const r = await request({ owner: ctx.stranger.address, scope: "owner", target: ctx.owner.address });
    const t = typedData("WatchSubscription", ctx.watch, {
      ...messageToSign({ ...r, target: ctx.stranger.address }),
      target: ethers.zeroPadValue(ctx.owner.address, 32),
    });
    const theirs = await subscribe({ ...r, signature: await ctx.stranger.signTypedData(t.domain, t.types, t.message) });
    expect(theirs.body).to.include({ error: "invalid_field", field: "target" });
    const own = await subscribe(
      await signRequest(
        ctx.owner,
        ctx.watch,
        await request({ scope: "owner", target: ctx.owner.address, events: "all" }),
      ),
    );
    expect(own.status).to.equal(201);
    expect(own.body.subscription.events).to.have.length(14);
  });

  it("bad input is refused naming the field and the fix", async function () {
    const good = await signRequest(ctx.owner, ctx.watch, await request());
    const cases: [Record<string, unknown>, string][] = [
      [{ ...good, owner: "0x12" }, "owner"],
      [{ ...good, scope: "fleet" }, "scope"],
      [{ ...good, target: "-1" }, "target"],
      [{ ...good, url: "ftp://x.example/" }, "url"],
      [{ ...good, events: ["device.exploded"] }, "events"],
      [{ ...good, nonce: 5 }, "nonce"],
      [{ ...good, deadline: "soon" }, "deadline"],
      [{ ...good, signature: undefined }, "signature"],
    ];
    for (const [body, field] of cases) {
      const res = await subscribe(body);
      expect(res.status, field).to.equal(400);
      expect(res.body.field, JSON.stringify(res.body)).to.equal(field);
      expect(res.body.message).to.include(field);
    }
    expect((await server.call("GET", "/subscriptions")).body.field).to.equal("owner");
  });

  it("unsubscribe: signed by the owner ends it; a stranger's signature or a replay is refused", async function () {
    const { body } = await subscribe(await signRequest(ctx.owner, ctx.watch, await request()));
    const deadline = BigInt((await time.latest()) + 600);
    const forged = await server.call(
      "DELETE",
      `/subscriptions/${body.id}`,
      await signUnsubscribe(ctx.stranger, ctx.watch, ctx.owner.address, body.id, 900n, deadline),
    );
    expect(forged.body.error).to.equal("bad_signature");
    expect(store.isActive(body.id)).to.equal(true);
    const signed = await signUnsubscribe(ctx.owner, ctx.watch, ctx.owner.address, body.id, 901n, deadline);
    const ok = await server.call("DELETE", `/subscriptions/${body.id}`, signed);
    expect(ok.status).to.equal(200);
    expect(ok.body).to.deep.equal({ id: body.id, active: false });
    expect(store.isActive(body.id)).to.equal(false);
    expect((await server.call("DELETE", `/subscriptions/${body.id}`, signed)).body.error).to.equal(
      "unknown_subscription",
    );
    const listed = await server.call("GET", `/subscriptions?owner=${ctx.owner.address}`);
    expect(listed.body.subscriptions[0].active).to.equal(false);
  });
});

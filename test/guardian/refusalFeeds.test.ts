/**
 * A relayer's refusal feed as a guardian reads it (`RefusalFeeds`): every item re-checked, counted
 * once, dated by its age on the relayer's clock — and what a lying relayer can do about it. The
 * relayer here is the attacker's own HTTP server (the honest relayer's feed is exercised end to end
 * in test/relayer/refusalFeed.test.ts and test/guardian/liveInputs.test.ts).
 */
import { mkdtempSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import { expect } from "chai";
import { ethers, loadFixture } from "../helpers/hardhat.js";
import { deployRegistry, makeKeys, provision } from "../helpers/registry.js";
import { TypedDataHasher } from "../../src/eip712/fast.js";
import { randomDeviceKey } from "../../src/crypto/deviceKey.js";
import { signAttestation } from "../../src/relayer/fleet.js";
import { encodeCall, messageId } from "../../src/messages/index.js";
import { silentLogger } from "../../src/agent/log.js";
import { ChainClock } from "../../src/guardian/service/clock.js";
import { OffChainBook } from "../../src/guardian/service/offChainBook.js";
import { RefusalFeeds } from "../../src/guardian/service/refusalFeeds.js";
import { SignedMessageCheck } from "../../src/guardian/service/signedMessages.js";

const NOW = 1_900_000_000;

async function fixture() {
  const ctx = await deployRegistry();
  const keys = makeKeys(ctx, 2);
  const { ids } = await provision(ctx, keys);
  const hasher = await TypedDataHasher.create();
  const devices = keys.map((key, i) => ({ key, id: ids[i] }));
  const check = new SignedMessageCheck({
    provider: ethers.provider,
    chainId: BigInt(ctx.deployment.chainId),
    addresses: { registry: ctx.deployment.verifyingContract },
  });
  const attestation = (i: number, nonce: number, deadline = NOW + 3_600) =>
    signAttestation(hasher, devices[i], ctx.deployment, BigInt(nonce), BigInt(deadline));
  return { ctx, devices, check, attestation, hasher };
}

/** An attacker's relayer: serves whatever feed the test sets. */
class LyingRelayer {
  page: { epoch: string; next: number; now: number; items: object[] } = { epoch: "0x01", next: 0, now: NOW, items: [] };
  private server: Server | undefined;
  url = "";
  async start(): Promise<this> {
    this.server = createServer((req, res) => {
      const after = Number(new URL(req.url!, "http://x").searchParams.get("after") ?? 0);
      const items = this.page.items.filter((i) => (i as { seq: number }).seq > after);
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ ...this.page, items }));
    });
    await new Promise<void>((r) => this.server!.listen(0, "127.0.0.1", r));
    this.url = `http://127.0.0.1:${(this.server!.address() as AddressInfo).port}`;
    return this;
  }
  close(): Promise<void> {
    return new Promise((r) => this.server!.close(() => r()));
  }
}

const item = (seq: number, message: object, at = NOW, code = "nonce_used") => ({
  seq,
  at,
  code,
  error: "",
  id: "0x", // the relayer's word: the guardian computes the id itself
  device: "0",
  message,
});

describe("guardian: relayers' refusal feeds, and a lying relayer", function () {
  let relayer: LyingRelayer;
  afterEach(async () => relayer?.close());

  async function reader(c: Awaited<ReturnType<typeof fixture>>) {
    relayer = await new LyingRelayer().start();
    const clock = new ChainClock();
    clock.observe(NOW);
    const book = await OffChainBook.open(mkdtempSync(path.join(os.tmpdir(), "custos-feeds-")));
    const feeds = new RefusalFeeds({
      relayers: [relayer.url],
      check: c.check,
      book,
      clock,
      log: silentLogger,
      provider: ethers.provider,
      addresses: { registry: c.ctx.deployment.verifyingContract },
    });
    return { feeds, book };
  }

  it("a genuine refused message counts for the device whose key signed it, once — again, or under another seq, it is the same one", async function () {
    const c = await loadFixture(fixture);
    const { feeds, book } = await reader(c);
    const m = c.attestation(0, 0);
    relayer.page.items = [item(1, m), item(2, m)];
    relayer.page.next = 2;
    await feeds.poll();
    await feeds.poll();
    const [r] = book.observations(c.devices[0].id).refusals;
    expect(book.observations(c.devices[0].id).refusals).to.have.length(1);
    expect(r).to.deep.include({ id: messageId(m), code: "nonce_used", relayer: relayer.url });
    // Its time is its age on the relayer's clock, taken from the guardian's.
    expect(r.at).to.be.within(NOW - 1, NOW + 1);
  });

  it("attack: a lying relayer lists forged messages, another device's key naming the target, a stale message and a landed one (a replay anyone can send) as refused now — none counts", async function () {
    const c = await loadFixture(fixture);
    const { feeds, book } = await reader(c);
    const genuine = c.attestation(0, 1);
    const forged = { ...genuine, signature: c.attestation(1, 1).signature };
    const stranger = signAttestation(
      c.hasher,
      { key: randomDeviceKey("secp256k1"), id: c.devices[0].id },
      c.ctx.deployment,
      2n,
      BigInt(NOW + 3_600),
    );
    // A landed message from long ago (its deadline passed a day ago): no relayer checks its signature now.
    const stale = c.attestation(0, 3, NOW - 86_400);
    // A message that landed (nonce 0 used on chain), listed as refused: anyone can replay that.
    const landed = c.attestation(0, 0);
    await (
      await c.ctx.admin.sendTransaction({ to: c.ctx.deployment.verifyingContract, data: encodeCall(landed).data })
    ).wait();
    relayer.page.items = [
      item(1, forged),
      item(2, stranger),
      item(3, stale),
      item(4, { type: "nonsense" }),
      item(5, landed),
    ];
    relayer.page.next = 5;
    await feeds.poll();
    expect(book.observations(c.devices[0].id).refusals).to.deep.equal([]);
    expect(feeds.stats).to.include({ taken: 0, dropped: 3, stale: 1, spent: 1 });
  });

  it("attack: a relayer dating a refusal an hour back (its age on its own clock) cannot move it into the window; a restarted relayer (new epoch) is read again from its start", async function () {
    const c = await loadFixture(fixture);
    const { feeds, book } = await reader(c);
    const m = c.attestation(0, 4, NOW + 7_200);
    relayer.page.items = [item(1, m, NOW - 3_600)];
    relayer.page.next = 1;
    await feeds.poll();
    const [r] = book.observations(c.devices[0].id).refusals;
    expect(r.at).to.be.within(NOW - 3_601, NOW - 3_599);

    const again = c.attestation(0, 5);
    relayer.page = { epoch: "0x02", next: 1, now: NOW, items: [item(1, again)] };
    await feeds.poll();
    expect(book.observations(c.devices[0].id).refusals.map((x) => x.id)).to.deep.equal([
      messageId(m),
      messageId(again),
    ]);
  });
});

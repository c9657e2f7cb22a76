/**
 * The refusal feed (`GET /v1/refusals`): what guardians read to spot an identity being hammered. Only
 * a device message refused after its signature verified, by the current key of the device it speaks
 * for, enters it — with the signed message itself, so a reader re-verifies it against the registry.
 * Everything anyone could forge stays out. The relayers here never send a batch.
 */
import { expect } from "chai";
import { ethers } from "ethers";
import { randomDeviceKey } from "../../src/crypto/deviceKey.js";
import { digest } from "../../src/eip712/index.js";
import { messageId, type SignedDeviceMessage } from "../../src/messages/index.js";
import type { RefusalItem, RefusalPage, RelayerHandle } from "../../src/relayer/index.js";
import { ERC2771Forwarder__factory } from "../../typechain-types/index.js";
import { highS } from "../helpers/registry.js";
import {
  attestation,
  deadlineIn,
  fastHasher,
  forwardRequest,
  get,
  makeFleet,
  post,
  relayerFor,
  signDeviceMessage,
  tempDir,
  type Fleet,
} from "./fixtures.js";

describe("relayer refusal feed: the refusals of device-signed messages, re-verifiable by anyone", function () {
  this.timeout(60_000);
  let fleet: Fleet;
  let relayer: RelayerHandle;
  let h: Awaited<ReturnType<typeof fastHasher>>;
  let deadline: bigint;

  before(async function () {
    fleet = await makeFleet({ devices: 8 });
    h = await fastHasher();
    deadline = await deadlineIn(fleet.provider);
    relayer = await relayerFor(fleet, { batchIntervalMs: 600_000, batchSize: 10_000, rateLimit: 1000 });
  });

  const msg = (i: number, nonce = 0n, firmware?: string) =>
    attestation(h, fleet.devices[i], fleet.deployment, nonce, deadline, firmware);

  const feed = async (url = relayer.url, query = "") => {
    const r = await get<RefusalPage>(url, `/v1/refusals${query}`);
    expect(r.status, JSON.stringify(r.body)).to.equal(200);
    return r.body;
  };

  /** Lands device `i`'s attestation at its next nonce directly on the registry (not through the relayer). */
  async function landed(i: number): Promise<SignedDeviceMessage> {
    const m = msg(i, await fleet.registry.deviceNonce(fleet.devices[i].id));
    const tx = await fleet.registry
      .connect(fleet.owner)
      .attestFirmware(m.key, m.message.firmwareHash as string, deadline, m.signature);
    await tx.wait();
    return m;
  }

  /** What a guardian does with an item: the signature, over the catalogue digest, by the device's current key. */
  async function reverify(item: RefusalItem): Promise<void> {
    const m = item.message;
    const d = digest(m.type, fleet.deployment, m.message);
    expect(ethers.recoverAddress(d, m.signature).toLowerCase()).to.equal(m.key.toLowerCase());
    const [device] = await fleet.registry.resolveKey(m.key);
    expect(device.toString()).to.equal(item.device);
    expect(item.id).to.equal(messageId(m));
  }

  let replay: SignedDeviceMessage;

  it("attack: a replay of a device's landed message (nonce_used) is in the feed, signed message and all, and re-verifies", async function () {
    replay = await landed(2);
    const before = await feed();
    expect(before.epoch).to.match(/^0x[0-9a-f]{32}$/);
    const now = Math.floor(Date.now() / 1000);
    const r = await post(relayer.url, "/v1/messages", replay);
    expect(r.status).to.equal(409);
    expect(r.body.code).to.equal("nonce_used");

    const page = await feed(relayer.url, `?after=${before.next}`);
    expect(page.epoch).to.equal(before.epoch);
    expect(page.items).to.have.length(1);
    const item = page.items[0];
    expect(item).to.deep.equal({
      seq: before.next + 1,
      at: item.at,
      code: "nonce_used",
      error: r.body.error,
      id: messageId(replay),
      device: fleet.devices[2].id.toString(),
      message: replay,
    });
    expect(item.at).to.be.within(now - 1, now + 5);
    expect(page.next).to.equal(item.seq);
    await reverify(item);

    const health = await get<{ stats: { refusalFeed: { size: number; lastSeq: number } } }>(relayer.url, "/health");
    expect(health.body.stats.refusalFeed).to.deep.equal({ size: item.seq, lastSeq: item.seq });
  });

  it("attack: the same replay posted 50 times is one item", async function () {
    const last = (await feed()).next;
    const replies = await Promise.all(Array.from({ length: 50 }, () => post(relayer.url, "/v1/messages", replay)));
    expect(replies.map((r) => r.body.code)).to.deep.equal(Array(50).fill("nonce_used"));
    const page = await feed();
    expect(page.next).to.equal(last);
    expect(page.items.filter((i) => i.id === messageId(replay))).to.have.length(1);
  });

  it("attack: a replay padded with extra fields and zero-padded integers is kept as the device signed it", async function () {
    const m = await landed(5);
    const padded = {
      ...m,
      padding: "x".repeat(30_000),
      message: { ...m.message, nonce: "0".repeat(10_000) + String(m.message.nonce), junk: "y".repeat(10_000) },
    };
    const r = await post(relayer.url, "/v1/messages", padded);
    expect(r.body.code).to.equal("nonce_used");
    const item = (await feed()).items.find((i) => i.id === messageId(m))!;
    expect(item.message).to.deep.equal(m);
    await reverify(item);
  });

  it("attack: forged, malformed, misdirected or foreign-key messages, and forward requests, stay out of the feed", async function () {
    const last = (await feed()).next;
    const m = msg(0, 0n);
    const stranger = { key: randomDeviceKey("secp256k1"), id: fleet.devices[0].id };
    const refused: [unknown, string][] = [
      [{ ...m, message: { ...m.message, firmwareHash: ethers.id("evil firmware") } }, "bad_signature"],
      [{ ...m, signature: msg(1).signature }, "bad_signature"],
      [{ ...m, signature: highS(fleet.devices[0].key, m.signature) }, "malleable_signature"],
      ["{not json", "invalid_json"],
      [{ ...m, message: { ...m.message, nonce: undefined } }, "invalid_field"],
      // A valid signature, but by a key that is nobody's (anyone can make one, even recover one).
      [attestation(h, stranger, fleet.deployment, 0n, deadline), "unknown_key"],
      // A valid signature by device 1's key, speaking for device 0.
      [
        attestation(h, { key: fleet.devices[1].key, id: fleet.devices[0].id }, fleet.deployment, 0n, deadline),
        "wrong_device",
      ],
    ];
    for (const [body, code] of refused) {
      const r = await post(relayer.url, "/v1/messages", body);
      expect(r.body.code, JSON.stringify(r.body)).to.equal(code);
    }
    const expired = attestation(h, fleet.devices[0], fleet.deployment, 0n, (await deadlineIn(fleet.provider, 0)) - 1n);
    expect((await post(relayer.url, "/v1/messages", expired)).body.code).to.equal("expired");

    // A forward request replayed after it landed: its signer is an owner, not a device.
    const req = await forwardRequest(fleet, fleet.owner, {
      to: fleet.addresses.registry,
      data: fleet.registry.interface.encodeFunctionData("reportStolen", [fleet.devices[7].id]),
      gas: 80_000n,
    });
    const forwarder = ERC2771Forwarder__factory.connect(fleet.addresses.forwarder, fleet.admin);
    await (await forwarder.execute({ ...req, value: 0n, gas: 80_000n, deadline: BigInt(req.deadline) })).wait();
    expect((await post(relayer.url, "/v1/forward", req)).body.code).to.equal("nonce_used");
    expect((await feed()).next).to.equal(last);

    // A genuine beacon to a relayer not given LocationBeacons (refused before its signature is looked at).
    const bare = await relayerFor(fleet, { locationBeacons: undefined, batchIntervalMs: 600_000 });
    try {
      await (await fleet.registry.connect(fleet.owner).reportStolen(fleet.devices[6].id)).wait();
      const beacon = signDeviceMessage(h, fleet.devices[6].key, "LocationBeacon", fleet.beaconsDeployment, {
        device: fleet.devices[6].id,
        nonce: 0n,
        recipients: fleet.ownerBeaconKey.publicKey,
        ciphertext: "0xc1",
        at: 1_700_000_000n,
        deadline,
      });
      expect((await post(bare.url, "/v1/messages", beacon)).body.code).to.equal("target_not_allowed");
      expect(await feed(bare.url)).to.deep.include({ next: 0, items: [] });
    } finally {
      await bare.close();
    }
  });

  it("pages with after and limit, oldest first; a bad after or limit is a 400 naming it", async function () {
    // Five attributable refusals: nonces too far ahead, each its own signed message.
    for (let k = 0n; k < 5n; k++)
      expect((await post(relayer.url, "/v1/messages", msg(3, 1000n + k))).body.code).to.equal("nonce_too_far");
    const all = await feed();
    const seqs = all.items.map((i) => i.seq);
    expect(seqs).to.deep.equal(Array.from({ length: seqs.length }, (_, k) => k + 1));
    const last = all.next;

    const one = await feed(relayer.url, `?after=${last - 5}&limit=2`);
    expect(one.items.map((i) => i.seq)).to.deep.equal([last - 4, last - 3]);
    expect(one.next).to.equal(last - 3);
    const two = await feed(relayer.url, `?after=${one.next}&limit=1000`);
    expect(two.items.map((i) => i.seq)).to.deep.equal([last - 2, last - 1, last]);
    expect(two.items.map((i) => i.message.message.nonce)).to.deep.equal(["1002", "1003", "1004"]);
    const end = await feed(relayer.url, `?after=${last}`);
    expect(end).to.deep.include({ epoch: all.epoch, next: last, items: [] });
    // The relayer's clock as it answered: a reader dates items by their age on it.
    expect(Math.abs(end.now - Math.floor(Date.now() / 1000))).to.be.at.most(2);

    for (const [query, field] of [
      ["?after=abc", "after"],
      ["?after=-1", "after"],
      ["?after=1.5", "after"],
      ["?after=", "after"],
      ["?after=1&after=2", "after"],
      ["?after=99999999999999999", "after"],
      ["?limit=0", "limit"],
      ["?limit=1001", "limit"],
    ]) {
      const r = await get(relayer.url, `/v1/refusals${query}`);
      expect(r.status, query).to.equal(400);
      expect(r.body, query).to.include({ code: "invalid_field", field });
    }
  });

  it("attack: a flood of signed refusals: with refusalFeedSize 3 only the newest 3 remain", async function () {
    const small = await relayerFor(fleet, { batchIntervalMs: 600_000, refusalFeedSize: 3 });
    try {
      for (let k = 0n; k < 5n; k++)
        expect((await post(small.url, "/v1/messages", msg(3, 2000n + k))).body.code).to.equal("nonce_too_far");
      const page = await feed(small.url);
      expect(page.epoch).to.not.equal((await feed()).epoch);
      expect(page.items.map((i) => [i.seq, i.message.message.nonce])).to.deep.equal([
        [3, "2002"],
        [4, "2003"],
        [5, "2004"],
      ]);
      // A reader behind the window sees the gap: the first seq after its `after` is not after + 1.
      expect((await feed(small.url, "?after=1")).items[0].seq).to.equal(3);
      expect(small.stats().refusalFeed).to.deep.equal({ size: 3, lastSeq: 5 });
    } finally {
      await small.close();
    }
  });

  it("attack: a device over its rate limit: its genuine messages' rate_limited refusals are in the feed, a forger's are not, and a forger cannot spend its quota", async function () {
    const limited = await relayerFor(fleet, { batchIntervalMs: 600_000, batchSize: 10_000, rateLimit: 3 });
    try {
      // A forger signs in device 4's name with a fresh key: refused, and the device's quota is untouched.
      const stranger = { key: randomDeviceKey("secp256k1"), id: fleet.devices[4].id };
      for (let n = 0n; n < 5n; n++) {
        const forged = await post(limited.url, "/v1/messages", attestation(h, stranger, fleet.deployment, n, deadline));
        expect(forged.body.code).to.equal(n < 3n ? "unknown_key" : "rate_limited");
      }
      for (let n = 0n; n < 3n; n++) expect((await post(limited.url, "/v1/messages", msg(4, n))).status).to.equal(202);
      const over = msg(4, 3n);
      const r = await post(limited.url, "/v1/messages", over);
      expect(r.status).to.equal(429);

      const page = await feed(limited.url);
      expect(page.items).to.have.length(1);
      expect(page.items[0]).to.deep.include({
        code: "rate_limited",
        id: messageId(over),
        device: fleet.devices[4].id.toString(),
        message: over,
      });
      await reverify(page.items[0]);
    } finally {
      await limited.close();
    }
  });

  it("refusalFeedSize 0: no feed, its route is a 404; a restart is a new epoch", async function () {
    const off = await relayerFor(fleet, { batchIntervalMs: 600_000, refusalFeedSize: 0 });
    try {
      expect((await post(off.url, "/v1/messages", replay)).body.code).to.equal("nonce_used");
      const r = await get(off.url, "/v1/refusals");
      expect(r.status).to.equal(404);
      expect(r.body.code).to.equal("not_found");
      expect(off.stats().refusalFeed).to.deep.equal({ size: 0, lastSeq: 0 });
    } finally {
      await off.close();
    }

    const dataDir = tempDir();
    const first = await relayerFor(fleet, { batchIntervalMs: 600_000, dataDir });
    await post(first.url, "/v1/messages", replay);
    const before = await feed(first.url);
    expect(before.next).to.equal(1);
    await first.close();
    const second = await relayerFor(fleet, { batchIntervalMs: 600_000, dataDir });
    try {
      const after = await feed(second.url, "?after=1");
      expect(after.epoch).to.not.equal(before.epoch);
      expect((await feed(second.url)).items).to.deep.equal([]);
    } finally {
      await second.close();
    }
  });

  after(async function () {
    await relayer?.close();
  });
});

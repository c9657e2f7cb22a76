/**
 * Every check the relayer makes before it spends gas, one attack per test. The relayer under test
 * never sends a batch during this file (its batch window is ten minutes), and the last test
 * checks that its account sent nothing at all: every refusal cost the relayer no gas.
 */
import { expect } from "chai";
import { ethers } from "ethers";
import { highS } from "../helpers/registry.js";
import type { SignedDeviceMessage } from "../../src/messages/index.js";
import type { RelayerHandle } from "../../src/relayer/index.js";
import { LocationBeacons__factory } from "../../typechain-types/index.js";
import {
  attestation,
  deadlineIn,
  fastHasher,
  forwardRequest,
  get,
  makeFleet,
  post,
  relayerFor,
  signClaim,
  signDeviceMessage,
  type Fleet,
} from "./fixtures.js";

describe("relayer refusals: each attack is refused before any gas is spent", function () {
  this.timeout(60_000);
  let fleet: Fleet;
  let relayer: RelayerHandle;
  let h: Awaited<ReturnType<typeof fastHasher>>;
  let deadline: bigint;
  // Below what a claim costs, above every other message of the test.
  const GAS_CAP = 80_000n;

  before(async function () {
    // Devices: 0-5 secp256k1, 6 P-256; two unclaimed keys; device 5 quarantined, device 4 revoked.
    fleet = await makeFleet({ devices: 8, unclaimed: 2, kinds: ["secp256k1", "secp256k1", "secp256k1", "p256"] });
    h = await fastHasher();
    deadline = await deadlineIn(fleet.provider);
    const owner = fleet.registry.connect(fleet.owner);
    await (await owner.reportStolen(fleet.devices[5].id)).wait();
    await (await owner.decommission(fleet.devices[4].id)).wait();
    relayer = await relayerFor(fleet, {
      batchIntervalMs: 600_000,
      batchSize: 10_000,
      gasCap: GAS_CAP,
      rateLimit: 1000,
    });
  });

  async function expectRefused(
    route: "/v1/messages" | "/v1/forward",
    body: unknown,
    status: number,
    code: string,
    field?: string,
  ) {
    const r = await post(relayer.url, route, body);
    expect(r.body, JSON.stringify(r.body)).to.include({ code });
    expect(r.status).to.equal(status);
    expect(r.body.error).to.be.a("string").and.not.equal("");
    if (field !== undefined) expect(r.body.field).to.equal(field);
    return r;
  }

  const msg = (i: number, nonce = 0n, opts: { deadline?: bigint; firmware?: string } = {}) =>
    attestation(h, fleet.devices[i], fleet.deployment, nonce, opts.deadline ?? deadline, opts.firmware);

  describe("shape", function () {
    it("attack: a body that is not JSON is refused (invalid_json)", async function () {
      await expectRefused("/v1/messages", "{not json", 400, "invalid_json");
    });

    it("attack: a message missing a field is refused, naming the field", async function () {
      const m = msg(0);
      const { nonce: _n, ...rest } = m.message;
      await expectRefused("/v1/messages", { ...m, message: rest }, 400, "invalid_field", "message.nonce");
    });

    it("attack: a field out of its type's range is refused, naming the field", async function () {
      const m = msg(0);
      await expectRefused(
        "/v1/messages",
        { ...m, message: { ...m.message, nonce: (1n << 256n).toString() } },
        400,
        "invalid_field",
        "message.nonce",
      );
    });

    it("attack: an unknown message type is refused", async function () {
      await expectRefused("/v1/messages", { ...msg(0), type: "Transfer" }, 400, "invalid_field", "type");
    });
  });

  describe("signature", function () {
    it("attack: a bad signature (a field changed after signing) is refused", async function () {
      const m = msg(0);
      await expectRefused(
        "/v1/messages",
        { ...m, message: { ...m.message, firmwareHash: ethers.id("evil firmware") } },
        400,
        "bad_signature",
        "signature",
      );
    });

    it("attack: another key's signature is refused", async function () {
      const m = msg(0);
      await expectRefused("/v1/messages", { ...m, signature: msg(1).signature }, 400, "bad_signature", "signature");
    });

    for (const [kind, i] of [
      ["secp256k1", 0],
      ["P-256", 3],
    ] as const) {
      it(`attack: the high-s twin of a valid ${kind} signature is refused (malleability)`, async function () {
        const m = msg(i);
        await expectRefused(
          "/v1/messages",
          { ...m, signature: highS(fleet.devices[i].key, m.signature) },
          400,
          "malleable_signature",
          "signature",
        );
      });
    }

    for (const [what, change] of [
      ["another chain", { chainId: 1n }],
      ["another contract", { verifyingContract: ethers.Wallet.createRandom().address }],
    ] as const) {
      it(`attack: a signature made for ${what} is refused`, async function () {
        const m = attestation(h, fleet.devices[0], { ...fleet.deployment, ...change }, 0n, deadline);
        await expectRefused("/v1/messages", m, 400, "bad_signature", "signature");
      });
    }

    it("attack: a P-256 key behind a verifier the registry does not allow is refused", async function () {
      const m = msg(3);
      const key = ethers.Wallet.createRandom().address.toLowerCase() + m.key.slice(42);
      await expectRefused("/v1/messages", { ...m, key }, 400, "unsupported_key", "key");
    });
  });

  describe("deadline", function () {
    it("attack: an expired message is refused", async function () {
      const past = (await deadlineIn(fleet.provider, 0)) - 1n;
      await expectRefused("/v1/messages", msg(0, 0n, { deadline: past }), 400, "expired", "message.deadline");
    });

    it("a message too close to its deadline to land is refused as expired", async function () {
      const soon = await deadlineIn(fleet.provider, 3);
      await expectRefused("/v1/messages", msg(0, 0n, { deadline: soon }), 400, "expired", "message.deadline");
    });
  });

  describe("nonce and replay", function () {
    let accepted: SignedDeviceMessage;

    it("attack: a replayed (duplicate) message is answered with its first id and never queued twice", async function () {
      accepted = msg(1, 0n);
      const first = await post(relayer.url, "/v1/messages", accepted);
      expect(first.status).to.equal(202);
      expect(first.body).to.deep.equal({ id: first.body.id, status: "accepted" });
      const depth = (await get<{ queueDepth: number }>(relayer.url, "/health")).body.queueDepth;
      for (let i = 0; i < 3; i++) {
        const again = await post(relayer.url, "/v1/messages", accepted);
        expect(again.status).to.equal(200);
        expect(again.body).to.deep.equal({ id: first.body.id, status: "accepted" });
      }
      expect((await get<{ queueDepth: number }>(relayer.url, "/health")).body.queueDepth).to.equal(depth);
      const status = await get(relayer.url, `/v1/messages/${first.body.id}`);
      expect(status.body).to.deep.equal({ id: first.body.id, status: "accepted" });
    });

    it("attack: another message with a queued nonce is refused", async function () {
      await expectRefused(
        "/v1/messages",
        msg(1, 0n, { firmware: ethers.id("other") }),
        409,
        "nonce_queued",
        "message.nonce",
      );
    });

    it("attack: a message whose nonce was already used on chain (a replay of a landed message) is refused", async function () {
      const landed = msg(2, 0n);
      await (
        await fleet.registry
          .connect(fleet.owner)
          .attestFirmware(landed.key, landed.message.firmwareHash as string, deadline, landed.signature)
      ).wait();
      await expectRefused("/v1/messages", landed, 409, "nonce_used", "message.nonce");
    });

    it("attack: many different messages racing for one nonce: exactly one is accepted", async function () {
      const rivals = Array.from({ length: 12 }, (_, i) => msg(0, 5n, { firmware: ethers.id(`rival ${i}`) }));
      const replies = await Promise.all(rivals.map((m) => post(relayer.url, "/v1/messages", m)));
      expect(replies.filter((r) => r.status === 202)).to.have.length(1);
      expect(replies.filter((r) => r.status === 409).map((r) => r.body.code)).to.deep.equal(
        Array(11).fill("nonce_queued"),
      );
    });

    it("attack: a nonce far beyond the device's next one is refused", async function () {
      await expectRefused("/v1/messages", msg(0, 1000n), 409, "nonce_too_far", "message.nonce");
    });

    it("a message after a nonce gap is accepted and waits for the gap", async function () {
      const r = await post(relayer.url, "/v1/messages", msg(0, 2n));
      expect(r.status).to.equal(202);
    });
  });

  describe("device status", function () {
    it("attack: a quarantined (reported stolen) device's message is refused", async function () {
      await expectRefused("/v1/messages", msg(5), 409, "device_not_active", "key");
    });

    it("attack: a revoked (decommissioned) device's message is refused", async function () {
      await expectRefused("/v1/messages", msg(4), 409, "device_not_active", "key");
    });

    /**
     * Device `i`'s location beacon, signed for LocationBeacons (or `deployment`) with beacon nonce
     * `nonce`, naming its owner's recipients; its ciphertext is opaque to the relayer (any bytes do).
     */
    const beacon = (i: number, nonce = 0n, deployment = fleet.beaconsDeployment, ciphertext = "0xc1") =>
      signDeviceMessage(h, fleet.devices[i].key, "LocationBeacon", deployment, {
        device: fleet.devices[i].id,
        nonce,
        recipients: fleet.ownerBeaconKey.publicKey,
        ciphertext,
        at: 1_700_000_000n,
        deadline,
      });

    it("attack: an active device's location beacon (only quarantined devices post one) is refused", async function () {
      await expectRefused("/v1/messages", beacon(0), 409, "device_not_active", "key");
    });

    it("attack: a revoked device's location beacon is refused", async function () {
      await expectRefused("/v1/messages", beacon(4), 409, "device_not_active", "key");
    });

    it("attack: a location beacon signed for the registry's domain (not LocationBeacons') is refused", async function () {
      const r = await expectRefused("/v1/messages", beacon(5, 0n, fleet.deployment), 400, "bad_signature", "signature");
      expect(r.body.error)
        .to.include("Custos LocationBeacons")
        .and.include(fleet.addresses.locationBeacons.toLowerCase());
    });

    it("a quarantined device's location beacon is accepted", async function () {
      expect((await post(relayer.url, "/v1/messages", beacon(5))).status).to.equal(202);
    });

    it("attack: another beacon with a beacon nonce already queued is refused", async function () {
      await expectRefused("/v1/messages", beacon(5, 0n, undefined, "0xc2"), 409, "nonce_queued", "message.nonce");
    });

    it("attack: a beacon nonce far past the device's next one is refused", async function () {
      await expectRefused("/v1/messages", beacon(5, 65n), 409, "nonce_too_far", "message.nonce");
    });

    it("attack: a beacon to a relayer without LocationBeacons configured is refused (target_not_allowed)", async function () {
      const bare = await relayerFor(fleet, { locationBeacons: undefined, batchIntervalMs: 600_000 });
      try {
        const r = await post(bare.url, "/v1/messages", beacon(5, 1n));
        expect(r.status).to.equal(400);
        expect(r.body).to.include({ code: "target_not_allowed", field: "type" });
        expect(bare.locationBeacons).to.equal(undefined);
      } finally {
        await bare.close();
      }
    });

    it("attack: a relayer given a LocationBeacons of another registry refuses to start", async function () {
      const foreign = await new LocationBeacons__factory(fleet.admin).deploy(ethers.Wallet.createRandom().address);
      await foreign.waitForDeployment();
      const started = relayerFor(fleet, { locationBeacons: await foreign.getAddress(), batchIntervalMs: 600_000 });
      await started.then(
        () => expect.fail("the relayer started"),
        (err: Error) =>
          expect(err.message).to.match(
            /^--location-beacons 0x[0-9a-f]{40}: this LocationBeacons belongs to registry 0x[0-9a-f]{40}, not to --registry /,
          ),
      );
    });

    it("attack: a message signed by an unknown key is refused", async function () {
      const stranger = { key: fleet.unclaimed[0], id: fleet.devices[0].id };
      await expectRefused(
        "/v1/messages",
        attestation(h, stranger, fleet.deployment, 0n, deadline),
        409,
        "unknown_key",
        "key",
      );
    });

    it("attack: one device's key speaking for another device is refused", async function () {
      const m = attestation(h, { key: fleet.devices[0].key, id: fleet.devices[1].id }, fleet.deployment, 0n, deadline);
      await expectRefused("/v1/messages", m, 409, "wrong_device", "message.device");
    });
  });

  describe("vouchers", function () {
    it("attack: a voucher whose (unsigned) terms name a payer that is no number is refused by name, not a 500", async function () {
      const channels = { chainId: fleet.deployment.chainId, verifyingContract: fleet.addresses.paymentChannels };
      const v = signDeviceMessage(h, fleet.devices[0].key, "Voucher", channels, {
        channel: ethers.id("channel"),
        cumulativeAmount: 1n,
      });
      const terms = {
        payer: "not a number",
        payee: "1",
        token: ethers.ZeroAddress,
        rate: "1",
        allowance: "0",
        openedAt: "0",
        salt: "0",
        payerKeyHash: ethers.ZeroHash,
        payerPeriod: "0",
      };
      await expectRefused("/v1/messages", { ...v, terms }, 400, "invalid_field", "terms");
    });
  });

  describe("claims", function () {
    it("attack: claiming a key that is already registered is refused", async function () {
      const m = signClaim(h, fleet.devices[0].key, fleet.batch, fleet.ownerAddress, deadline, fleet.deployment);
      await expectRefused("/v1/messages", m, 409, "key_taken", "key");
    });

    it("attack: a claim whose Merkle proof does not lead to the batch root is refused", async function () {
      const m = signClaim(h, fleet.unclaimed[0], fleet.batch, fleet.ownerAddress, deadline, fleet.deployment);
      const proof = [...m.claim!.proof];
      proof[0] = ethers.id("forged sibling");
      await expectRefused("/v1/messages", { ...m, claim: { ...m.claim!, proof } }, 400, "invalid_proof", "claim.proof");
    });

    it("attack: a claim into a batch that was never committed is refused", async function () {
      const m = signClaim(h, fleet.unclaimed[0], fleet.batch, fleet.ownerAddress, deadline, fleet.deployment);
      const forged = signDeviceMessage(h, fleet.unclaimed[0], "DeviceClaim" as never, fleet.deployment, {
        ...m.message,
        batch: "12345",
      });
      await expectRefused(
        "/v1/messages",
        { ...forged, type: "DeviceClaim", claim: m.claim },
        409,
        "batch_not_active",
        "message.batch",
      );
    });

    it("attack: a claim that costs more than the gas cap is refused", async function () {
      const m = signClaim(h, fleet.unclaimed[1], fleet.batch, fleet.ownerAddress, deadline, fleet.deployment);
      await expectRefused("/v1/messages", m, 400, "over_gas_cap");
    });
  });

  describe("forward requests (ERC-2771)", function () {
    const reportStolen = (id: bigint) => fleet.registry.interface.encodeFunctionData("reportStolen", [id]);

    it("attack: a forward request to a target that is not on the allowlist is refused", async function () {
      const req = await forwardRequest(fleet, fleet.owner, {
        to: ethers.Wallet.createRandom().address,
        data: "0x",
        gas: 50_000n,
      });
      await expectRefused("/v1/forward", req, 400, "target_not_allowed", "to");
    });

    it("attack: a forward request to the forwarder itself is refused", async function () {
      const req = await forwardRequest(fleet, fleet.owner, { to: fleet.addresses.forwarder, data: "0x", gas: 50_000n });
      await expectRefused("/v1/forward", req, 400, "target_not_allowed", "to");
    });

    it("attack: a forward request asking for more gas than the cap is refused", async function () {
      const req = await forwardRequest(fleet, fleet.owner, {
        to: fleet.addresses.registry,
        data: reportStolen(fleet.devices[0].id),
        gas: 5_000_000n,
      });
      await expectRefused("/v1/forward", req, 400, "over_gas_cap", "gas");
    });

    it("attack: a forward request carrying value (paid by the relayer) is refused", async function () {
      const req = await forwardRequest(fleet, fleet.owner, {
        to: fleet.addresses.registry,
        data: reportStolen(fleet.devices[0].id),
        gas: 80_000n,
        value: 1n,
      });
      await expectRefused("/v1/forward", req, 400, "value_not_allowed", "value");
    });

    it("attack: a forged forward request (from someone who did not sign it) is refused", async function () {
      const req = await forwardRequest(fleet, fleet.owner, {
        to: fleet.addresses.registry,
        data: reportStolen(fleet.devices[0].id),
        gas: 80_000n,
      });
      await expectRefused(
        "/v1/forward",
        { ...req, from: await fleet.admin.getAddress() },
        400,
        "bad_signature",
        "signature",
      );
    });

    it("attack: an expired forward request is refused", async function () {
      const req = await forwardRequest(fleet, fleet.owner, {
        to: fleet.addresses.registry,
        data: reportStolen(fleet.devices[0].id),
        gas: 80_000n,
        deadline: (await deadlineIn(fleet.provider, 0)) - 5n,
      });
      await expectRefused("/v1/forward", req, 400, "expired", "deadline");
    });

    it("attack: a forward request that would revert (reporting someone else's device stolen) is refused with its reason", async function () {
      const req = await forwardRequest(fleet, fleet.admin, {
        to: fleet.addresses.registry,
        data: reportStolen(fleet.devices[0].id),
        gas: 80_000n,
      });
      const r = await expectRefused("/v1/forward", req, 400, "would_revert");
      expect(r.body.error).to.match(/DeviceRegistryNotOwner/);
    });

    it("attack: a replayed forward request whose nonce was used is refused", async function () {
      const req = await forwardRequest(fleet, fleet.owner, {
        to: fleet.addresses.registry,
        data: reportStolen(fleet.devices[3].id),
        gas: 80_000n,
      });
      const forwarder = (await import("../../typechain-types/index.js")).ERC2771Forwarder__factory.connect(
        fleet.addresses.forwarder,
        fleet.admin,
      );
      await (await forwarder.execute({ ...req, value: 0n, gas: 80_000n, deadline: BigInt(req.deadline) })).wait();
      await expectRefused("/v1/forward", req, 409, "nonce_used", "nonce");
    });

    it("a valid forward request is accepted", async function () {
      const req = await forwardRequest(fleet, fleet.owner, {
        to: fleet.addresses.registry,
        data: reportStolen(fleet.devices[7].id),
        gas: 80_000n,
      });
      expect((await post(relayer.url, "/v1/forward", req)).status).to.equal(202);
    });
  });

  describe("rate limit", function () {
    it("attack: a device over its rate limit is refused with 429 and Retry-After", async function () {
      const limited = await relayerFor(fleet, { batchIntervalMs: 600_000, batchSize: 10_000, rateLimit: 3 });
      for (let n = 0n; n < 3n; n++) expect((await post(limited.url, "/v1/messages", msg(6, n))).status).to.equal(202);
      const r = await post(limited.url, "/v1/messages", msg(6, 3n));
      expect(r.status).to.equal(429);
      expect(r.body.code).to.equal("rate_limited");
      expect(Number(r.headers["retry-after"])).to.be.greaterThan(0);
      // Other devices are not affected, and a forged message cannot spend a device's quota.
      expect((await post(limited.url, "/v1/messages", msg(0, 0n))).status).to.equal(202);
      const forged = msg(0, 1n);
      for (let i = 0; i < 5; i++)
        expect(
          (await post(limited.url, "/v1/messages", { ...forged, signature: msg(1, 1n).signature })).status,
        ).to.equal(400);
      expect((await post(limited.url, "/v1/messages", forged)).status).to.equal(202);
      await limited.close();
    });
  });

  describe("status and health", function () {
    it("GET of an unknown message id is 404", async function () {
      const r = await get(relayer.url, `/v1/messages/${ethers.id("nothing")}`);
      expect(r.status).to.equal(404);
      expect(r.body.code).to.equal("not_found");
    });

    it("/health reports the chain, the queue and the relayer's balance", async function () {
      const r = await get(relayer.url, "/health");
      expect(r.status).to.equal(200);
      expect(r.body).to.include({ ok: true, chainId: "31337" });
      expect(r.body.latestBlock).to.be.a("number");
      expect(r.body.queueDepth).to.equal(5);
      expect(BigInt(r.body.relayerBalance as string)).to.equal(ethers.parseEther("100"));
    });

    it("no refusal cost the relayer any gas: its account sent no transaction", async function () {
      expect(await fleet.provider.getTransactionCount(relayer.address)).to.equal(0);
      expect(await fleet.provider.getBalance(relayer.address)).to.equal(ethers.parseEther("100"));
      await relayer.close();
    });
  });
});

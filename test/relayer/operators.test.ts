/**
 * Issue 14, the relayer's part, in process against a real node: the same message id with other
 * content is a 409 conflict (never the first message's status); every contract of the suite the
 * relayer was given is on its allowlist — a lock's unlock-log anchor, a tracker's checkpoint and a
 * payer's voucher land; HTTP bodies the relayer cannot take are refused by name (413, 415); and a
 * refusal for a contract revert says what the contract said, in the shared decoder's sentence.
 */
import { expect } from "chai";
import http from "node:http";
import { ethers } from "ethers";
import type { SignedDeviceMessage } from "../../src/messages/index.js";
import type { RelayerHandle } from "../../src/relayer/index.js";
import { termsFromOpened, termsToJson, UNCAPPED } from "../../src/agent/roles/meter.js";
import { locationId, shipmentIdOf } from "../../src/custody/index.js";
import { CustodyLedger__factory, LockAccess__factory, PaymentChannels__factory } from "../../typechain-types/index.js";
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
  until,
  type Fleet,
} from "./fixtures.js";

type Status = { id: string; status: string; txHash?: string; error?: string };

async function final(url: string, id: string, ms = 30_000): Promise<Status> {
  let last: Status | undefined;
  await until(
    async () => {
      last = (await get<Status>(url, `/v1/messages/${id}`)).body;
      return ["confirmed", "failed", "spent"].includes(last.status);
    },
    ms,
    `message ${id} to be final`,
  );
  return last!;
}

/** A POST with any body and headers; the answer even when the server stops reading early. */
function rawPost(
  base: string,
  route: string,
  body: Buffer | string,
  headers: Record<string, string>,
): Promise<{ status: number; body: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = http.request(base + route, { method: "POST", headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => {
        try {
          resolve({ status: res.statusCode!, body: JSON.parse(Buffer.concat(chunks).toString()) });
        } catch (err) {
          reject(err);
        }
      });
    });
    req.on("error", (err: NodeJS.ErrnoException) => {
      // The server answered 413 and closed before the whole body was written: the answer came first.
      if (err.code !== "EPIPE" && err.code !== "ECONNRESET") reject(err);
    });
    req.end(body);
  });
}

describe("relayer (issue 14): conflicts, the whole suite on the allowlist, bodies, contract sentences", function () {
  this.timeout(120_000);
  let fleet: Fleet;
  let relayer: RelayerHandle;
  let h: Awaited<ReturnType<typeof fastHasher>>;
  let deadline: bigint;

  before(async function () {
    fleet = await makeFleet({ devices: 6 });
    h = await fastHasher();
    deadline = await deadlineIn(fleet.provider);
    relayer = await relayerFor(fleet, { rateLimit: 1000 });
  });

  describe("the same id with other content is a conflict (409), never the first message's status", function () {
    it("attack: a landed message re-posted with a field changed and the same signature is refused as a conflict", async function () {
      const m = attestation(h, fleet.devices[0], fleet.deployment, 0n, deadline);
      const first = await post(relayer.url, "/v1/messages", m);
      expect(first.status).to.equal(202);
      expect((await final(relayer.url, first.body.id as string)).status).to.equal("confirmed");

      const altered = { ...m, message: { ...m.message, firmwareHash: ethers.id("firmware 6.6.6") } };
      const r = await post(relayer.url, "/v1/messages", altered);
      expect(r.status, JSON.stringify(r.body)).to.equal(409);
      expect(r.body).to.include({ code: "conflict", field: "message.firmwareHash" });
      expect(r.body.error).to.match(/accepted before with other content \(message\.firmwareHash differs\)/);
      expect(r.body).to.not.have.property("status");
      // The first message's record is untouched.
      expect((await get<Status>(relayer.url, `/v1/messages/${first.body.id}`)).body.status).to.equal("confirmed");
    });

    it("the very same message again (hex in another case, integers as numbers) is still a duplicate: 200 and its status", async function () {
      const m = attestation(h, fleet.devices[0], fleet.deployment, 0n, deadline);
      const same = {
        ...m,
        key: m.key.toUpperCase().replace("0X", "0x"),
        message: {
          ...m.message,
          nonce: 0,
          firmwareHash: String(m.message.firmwareHash).toUpperCase().replace("0X", "0x"),
        },
      };
      const r = await post(relayer.url, "/v1/messages", same);
      expect(r.status).to.equal(200);
      expect(r.body).to.include({ status: "confirmed" });
    });

    it("the same message posted by someone who adds a field of their own is the same message", async function () {
      const m = attestation(h, fleet.devices[0], fleet.deployment, 0n, deadline);
      const r = await post(relayer.url, "/v1/messages", { ...m, note: "relayed by a counterparty" });
      expect(r.status).to.equal(200);
      expect(r.body).to.include({ status: "confirmed" });
    });

    it("attack: a queued message re-posted with its deadline changed is refused as a conflict", async function () {
      const slow = await relayerFor(fleet, { batchIntervalMs: 600_000, batchSize: 10_000 });
      try {
        const m = attestation(h, fleet.devices[1], fleet.deployment, 0n, deadline);
        expect((await post(slow.url, "/v1/messages", m)).status).to.equal(202);
        const r = await post(slow.url, "/v1/messages", {
          ...m,
          message: { ...m.message, deadline: (deadline + 60n).toString() },
        });
        expect(r.status).to.equal(409);
        expect(r.body).to.include({ code: "conflict", field: "message.deadline" });
        expect((await post(slow.url, "/v1/messages", m)).body).to.include({ status: "accepted" });
      } finally {
        await slow.close();
      }
    });

    it("attack: a forward request re-posted with its calldata changed and the same signature is refused as a conflict", async function () {
      const slow = await relayerFor(fleet, { batchIntervalMs: 600_000, batchSize: 10_000 });
      try {
        const iface = fleet.registry.interface;
        const req = await forwardRequest(fleet, fleet.owner, {
          to: fleet.addresses.registry,
          data: iface.encodeFunctionData("reportStolen", [fleet.devices[5].id]),
          gas: 80_000n,
        });
        expect((await post(slow.url, "/v1/forward", req)).status).to.equal(202);
        const r = await post(slow.url, "/v1/forward", {
          ...req,
          data: iface.encodeFunctionData("reportStolen", [fleet.devices[4].id]),
        });
        expect(r.status).to.equal(409);
        expect(r.body).to.include({ code: "conflict", field: "data" });
      } finally {
        await slow.close();
      }
    });
  });

  describe("every contract of the suite the relayer was given is on its allowlist", function () {
    it("a lock's unlock-log anchor lands on LockAccess (and a replay of its sequence number is refused)", async function () {
      const lock = fleet.devices[2];
      const lockDeployment = { chainId: fleet.deployment.chainId, verifyingContract: fleet.addresses.lockAccess };
      const now = BigInt((await fleet.provider.getBlock("latest"))!.timestamp);
      const anchor = (seq: bigint) =>
        signDeviceMessage(h, lock.key, "UnlockLog", lockDeployment, {
          lock: lock.id,
          seq,
          root: ethers.id(`log ${seq}`),
          count: 3n,
          fromTime: now - 600n,
          toTime: now,
          deadline,
        });
      // Two batches posted out of order: the second waits for the first.
      const second = await post(relayer.url, "/v1/messages", anchor(2n));
      const first = await post(relayer.url, "/v1/messages", anchor(1n));
      expect([first.status, second.status], JSON.stringify([first.body, second.body])).to.deep.equal([202, 202]);
      for (const r of [first, second])
        expect((await final(relayer.url, r.body.id as string)).status).to.equal("confirmed");
      const locks = LockAccess__factory.connect(fleet.addresses.lockAccess, fleet.provider);
      expect((await locks.lockState(lock.id)).logSeq).to.equal(2n);
      const replay = await post(relayer.url, "/v1/messages", anchor(1n));
      expect(replay.status).to.equal(200); // the same signed batch: its status
      const other = signDeviceMessage(h, lock.key, "UnlockLog", lockDeployment, {
        lock: lock.id,
        seq: 2n,
        root: ethers.id("another log"),
        count: 1n,
        fromTime: now,
        toTime: now,
        deadline,
      });
      const r = await post(relayer.url, "/v1/messages", other);
      expect(r.status).to.equal(409);
      expect(r.body).to.include({ code: "nonce_used", field: "message.seq" });
    });

    it("a tracker's checkpoint lands on CustodyLedger", async function () {
      const tracker = fleet.devices[3];
      const ledger = CustodyLedger__factory.connect(fleet.addresses.custodyLedger, fleet.owner);
      const epc = "urn:epc:id:sscc:0614141.1400000001";
      await (
        await ledger.createShipment({
          epc,
          tracker: tracker.id,
          receiver: await fleet.admin.getAddress(),
          deadline: deadline + 86_400n,
          maxSilence: 3600,
          minTemp: 200,
          maxTemp: 800,
          metadataHash: ethers.ZeroHash,
          childrenRoot: ethers.ZeroHash,
          acceptOwnerKeys: false,
        })
      ).wait();
      const shipment = shipmentIdOf(fleet.ownerAddress, epc);
      const at = BigInt((await fleet.provider.getBlock("latest"))!.timestamp);
      const cp = signDeviceMessage(
        h,
        tracker.key,
        "Checkpoint",
        { chainId: fleet.deployment.chainId, verifyingContract: fleet.addresses.custodyLedger },
        {
          shipment,
          seq: 1n,
          readingsRoot: ethers.id("readings"),
          count: 4n,
          minTemp: 410n,
          maxTemp: 520n,
          location: locationId("geo:52.37,4.89"),
          at,
        },
      );
      const r = await post(relayer.url, "/v1/messages", cp);
      expect(r.status, JSON.stringify(r.body)).to.equal(202);
      expect((await final(relayer.url, r.body.id as string)).status).to.equal("confirmed");
      expect((await ledger.shipmentOf(shipment)).checkpointSeq).to.equal(1n);
    });

    it("a checkpoint for a shipment that does not exist is refused with the ledger's reason", async function () {
      const tracker = fleet.devices[3];
      const shipment = ethers.id("no such shipment");
      const cp = signDeviceMessage(
        h,
        tracker.key,
        "Checkpoint",
        { chainId: fleet.deployment.chainId, verifyingContract: fleet.addresses.custodyLedger },
        {
          shipment,
          seq: 1n,
          readingsRoot: ethers.id("readings"),
          count: 1n,
          minTemp: 400n,
          maxTemp: 400n,
          location: ethers.ZeroHash,
          at: 1n,
        },
      );
      const r = await post(relayer.url, "/v1/messages", cp);
      expect(r.status).to.equal(400);
      expect(r.body).to.include({ code: "would_revert" });
      expect(r.body.error).to.equal(
        `simulated, the call reverts: no shipment ${shipment.slice(0, 6)}…${shipment.slice(-4)} exists in this ledger (CustodyLedgerUnknownShipment)`,
      );
    });

    it("a payer's voucher is claimed on PaymentChannels; a lower one is refused as already paid", async function () {
      const [payer, payee] = [fleet.devices[4], fleet.devices[5]];
      const channels = PaymentChannels__factory.connect(fleet.addresses.paymentChannels, fleet.owner);
      const deposit = ethers.parseEther("1");
      const tx = await channels.open(
        { payer: payer.id, payee: payee.id, token: ethers.ZeroAddress, rate: UNCAPPED, allowance: 0n, salt: 0 },
        payer.key.signer,
        deposit,
        { value: deposit },
      );
      const receipt = await tx.wait();
      const opened = receipt!.logs.map((l) => channels.interface.parseLog(l)).find((p) => p?.name === "ChannelOpened")!;
      const terms = termsToJson(termsFromOpened(opened.args));
      const channel = opened.args.channel as string;
      const channelDeployment = {
        chainId: fleet.deployment.chainId,
        verifyingContract: fleet.addresses.paymentChannels,
      };
      const voucher = (amount: bigint): SignedDeviceMessage => ({
        ...signDeviceMessage(h, payer.key, "Voucher", channelDeployment, { channel, cumulativeAmount: amount }),
        terms,
      });
      const r = await post(relayer.url, "/v1/messages", voucher(ethers.parseEther("0.25")));
      expect(r.status, JSON.stringify(r.body)).to.equal(202);
      expect((await final(relayer.url, r.body.id as string)).status).to.equal("confirmed");
      expect((await channels.channelState(channel)).paid).to.equal(ethers.parseEther("0.25"));
      const lower = await post(relayer.url, "/v1/messages", voucher(ethers.parseEther("0.1")));
      expect(lower.status).to.equal(409);
      expect(lower.body).to.include({ code: "nonce_used", field: "message.cumulativeAmount" });
    });

    it("forward requests to LockAccess (an owner's call through the forwarder) are allowed too", async function () {
      const locks = LockAccess__factory.connect(fleet.addresses.lockAccess, fleet.provider);
      const req = await forwardRequest(fleet, fleet.owner, {
        to: fleet.addresses.lockAccess,
        data: locks.interface.encodeFunctionData("revokeAll", [fleet.devices[2].id]),
        gas: 100_000n,
      });
      const r = await post(relayer.url, "/v1/forward", req);
      expect(r.status, JSON.stringify(r.body)).to.equal(202);
      expect((await final(relayer.url, r.body.id as string)).status).to.equal("confirmed");
      expect(await locks.keyEpoch(fleet.devices[2].id)).to.equal(1n);
    });

    it("a relayer not given LockAccess refuses an anchor by naming the flag its operator starts it with", async function () {
      const bare = await relayerFor(fleet, { lockAccess: undefined, batchIntervalMs: 600_000 });
      try {
        const lock = fleet.devices[2];
        const m = signDeviceMessage(
          h,
          lock.key,
          "UnlockLog",
          { chainId: fleet.deployment.chainId, verifyingContract: fleet.addresses.lockAccess },
          { lock: lock.id, seq: 3n, root: ethers.ZeroHash, count: 0n, fromTime: 0n, toTime: 0n, deadline },
        );
        const r = await post(bare.url, "/v1/messages", m);
        expect(r.status).to.equal(400);
        expect(r.body).to.include({ code: "target_not_allowed", field: "type" });
        expect(r.body.error).to.equal(
          "an UnlockLog goes to LockAccess, which this relayer was not given: its operator starts it with --lock-access",
        );
      } finally {
        await bare.close();
      }
    });
  });

  describe("bodies the relayer cannot take are refused by name", function () {
    it("attack: a 20 MB body is refused with 413 body_too_large (not 400 invalid_json)", async function () {
      const big = Buffer.alloc(20 * 1024 * 1024, 0x20);
      const r = await rawPost(relayer.url, "/v1/messages", big, {
        "content-type": "application/json",
        "content-length": String(big.length),
      });
      expect(r.status).to.equal(413);
      expect(r.body).to.include({ code: "body_too_large" });
      expect(r.body.error).to.equal("the body is over the relayer's limit of 64 KiB");
    });

    it("a body without a content type is refused with 415 unsupported_media_type", async function () {
      const body = JSON.stringify(attestation(h, fleet.devices[1], fleet.deployment, 9n, deadline));
      const r = await rawPost(relayer.url, "/v1/messages", body, { "content-length": String(Buffer.byteLength(body)) });
      expect(r.status).to.equal(415);
      expect(r.body).to.include({ code: "unsupported_media_type", field: "content-type" });
      expect(r.body.error).to.equal("the body must be JSON, sent with the header content-type: application/json");
    });

    it("a body sent as text/plain is refused with 415 unsupported_media_type", async function () {
      const r = await rawPost(relayer.url, "/v1/forward", "{}", { "content-type": "text/plain" });
      expect(r.status).to.equal(415);
      expect(r.body).to.include({ code: "unsupported_media_type" });
    });

    it("a JSON body that does not parse is still 400 invalid_json", async function () {
      const r = await rawPost(relayer.url, "/v1/messages", "{not json", { "content-type": "application/json" });
      expect(r.status).to.equal(400);
      expect(r.body).to.include({ code: "invalid_json" });
    });
  });

  describe("a contract's refusal is told in the shared decoder's sentence", function () {
    it("a forward request that would revert names the owner, the device and the error", async function () {
      const req = await forwardRequest(fleet, fleet.admin, {
        to: fleet.addresses.registry,
        data: fleet.registry.interface.encodeFunctionData("reportStolen", [fleet.devices[0].id]),
        gas: 80_000n,
      });
      const r = await post(relayer.url, "/v1/forward", req);
      expect(r.status).to.equal(400);
      expect(r.body.code).to.equal("would_revert");
      const admin = ethers.getAddress(await fleet.admin.getAddress());
      const id = fleet.devices[0].id.toString();
      expect(r.body.error).to.equal(
        `simulated, the call reverts: ${admin.slice(0, 6)}…${admin.slice(-4)} is not the owner of device ` +
          `${id.slice(0, 6)}…${id.slice(-4)}: only the device's owner may do this (DeviceRegistryNotOwner)`,
      );
    });

    it("a lock's anchor whose key its owner installed alone is refused with the contract's reason, as a sentence", async function () {
      // Not attested: the lock's key was rotated by its owner alone (no old-key signature).
      const lock = fleet.devices[1];
      const { randomDeviceKey } = await import("../../src/crypto/deviceKey.js");
      const { digest } = await import("../../src/eip712/index.js");
      const newKey = randomDeviceKey("secp256k1");
      const nonce = await fleet.registry.deviceNonce(lock.id);
      const sig = newKey.signDigest(
        digest("KeyRotation", fleet.deployment, { device: lock.id, newKey: newKey.signer, nonce, deadline }),
      );
      await (
        await fleet.registry.connect(fleet.owner).rotateKey(lock.id, {
          newKey: newKey.signer,
          deadline,
          newKeySignature: sig,
          oldKey: "0x",
          oldKeySignature: "0x",
        })
      ).wait();
      const m = signDeviceMessage(
        h,
        newKey,
        "UnlockLog",
        { chainId: fleet.deployment.chainId, verifyingContract: fleet.addresses.lockAccess },
        { lock: lock.id, seq: 1n, root: ethers.id("log"), count: 1n, fromTime: 0n, toTime: 0n, deadline },
      );
      // A relayer that has not priced an anchor yet simulates this one before accepting it.
      const fresh = await relayerFor(fleet, { batchIntervalMs: 600_000 });
      const r = await post(fresh.url, "/v1/messages", m).finally(() => fresh.close());
      expect(r.status, JSON.stringify(r.body)).to.equal(400);
      expect(r.body.code).to.equal("would_revert");
      expect(r.body.error).to.match(
        /^simulated, the call reverts: lock \d{6}…\d{4}'s current key \(generation 1\) was installed by its owner alone: .* \(LockAccessKeyNotAttested\)$/,
      );
    });
  });
});

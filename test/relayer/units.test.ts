/**
 * The relayer's pure parts: its hand-rolled encodings (cross-checked against ethers with
 * fast-check), the token bucket, forward-request shapes, refusal fields, the durable store's
 * replay after a crash (including a torn last line), and which chain logs drop which cached reads.
 */
import { expect } from "chai";
import fc from "fast-check";
import { appendFileSync, readFileSync } from "node:fs";
import path from "node:path";
import {
  JsonRpcProvider,
  Network,
  Transaction,
  Wallet,
  ZeroHash,
  hexlify,
  toBeHex,
  type JsonRpcPayload,
  type JsonRpcResult,
} from "ethers";
import type { FastifyBaseLogger } from "fastify";
import { ChainView, type RawLog } from "../../src/relayer/chain.js";
import { encodeMulticall } from "../../src/relayer/submitter.js";
import { signEip1559 } from "../../src/relayer/tx.js";
import { RateLimiter } from "../../src/relayer/rateLimit.js";
import { checkForwardShape } from "../../src/relayer/forward.js";
import { shapeRefusal, Refusal, REFUSALS } from "../../src/relayer/errors.js";
import { MessageStore } from "../../src/relayer/store.js";
import type { SignedDeviceMessage } from "../../src/messages/index.js";
import { DeviceRegistry__factory, LocationBeacons__factory } from "../../typechain-types/index.js";
import { tempDir } from "./fixtures.js";
import { assertProperty } from "../helpers/property.js";

const bytes = (max: number) => fc.uint8Array({ maxLength: max }).map((b) => hexlify(b));

describe("relayer units", function () {
  describe("encodings", function () {
    it("encodeMulticall is byte-for-byte ethers' multicall(bytes[]) encoding", function () {
      const iface = DeviceRegistry__factory.createInterface();
      const selector = iface.getFunction("multicall")!.selector;
      assertProperty(
        fc.property(fc.array(bytes(200), { maxLength: 12 }), (calls) => {
          expect(encodeMulticall(selector, calls)).to.equal(iface.encodeFunctionData("multicall", [calls]));
        }),
        200,
      );
    });

    it("signEip1559 produces ethers' signed type-2 transaction and hash", function () {
      const wallet = Wallet.createRandom();
      const uint = (bits: number) => fc.bigInt({ min: 0n, max: (1n << BigInt(bits)) - 1n });
      assertProperty(
        fc.property(
          uint(64),
          fc.integer({ min: 0, max: 2 ** 40 }),
          uint(128),
          uint(128),
          uint(64),
          uint(128),
          bytes(300),
          (chainId, nonce, tip, fee, gasLimit, value, data) => {
            const fields = {
              chainId: chainId + 1n,
              nonce,
              maxPriorityFeePerGas: tip,
              maxFeePerGas: tip + fee,
              gasLimit,
              to: wallet.address.toLowerCase(),
              value,
              data,
            };
            const { raw, hash } = signEip1559(fields, wallet.signingKey);
            const tx = Transaction.from({ ...fields, type: 2, to: wallet.address });
            tx.signature = wallet.signingKey.sign(tx.unsignedHash);
            expect(raw).to.equal(tx.serialized);
            expect(hash).to.equal(tx.hash);
            expect(Transaction.from(raw).from).to.equal(wallet.address);
          },
        ),
        60,
      );
    });
  });

  describe("rate limiter (token bucket)", function () {
    it("allows a burst of the per-minute rate, then one more per 60/rate seconds", function () {
      let now = 0;
      const limiter = new RateLimiter(6, () => now);
      for (let i = 0; i < 6; i++) expect(limiter.take("a")).to.equal(0);
      expect(limiter.take("a")).to.equal(10);
      expect(limiter.take("b")).to.equal(0); // per sender
      now += 9_999;
      expect(limiter.take("a")).to.be.greaterThan(0);
      now += 1;
      expect(limiter.take("a")).to.equal(0);
      now += 10 * 60_000; // refills up to the burst, no more
      for (let i = 0; i < 6; i++) expect(limiter.take("a")).to.equal(0);
      expect(limiter.take("a")).to.be.greaterThan(0);
    });
  });

  describe("forward request shape", function () {
    const good = {
      from: Wallet.createRandom().address,
      to: Wallet.createRandom().address,
      value: "0",
      gas: "100000",
      deadline: "1900000000",
      data: "0x1234",
      signature: "0x" + "11".repeat(65),
    };

    it("normalises a good request", function () {
      const r = checkForwardShape(good);
      expect(r.from).to.equal(good.from.toLowerCase());
      expect(r.gas).to.equal("100000");
    });

    for (const [field, value, message] of [
      ["from", "0x1234", /from must be a 20-byte/],
      ["gas", "-1", /gas must be an unsigned integer/],
      ["gas", "1e6", /gas must be an unsigned integer/],
      ["deadline", (1n << 48n).toString(), /deadline must be an unsigned integer/],
      ["data", "0x123", /data must be 0x-prefixed hex/],
      ["signature", "0x" + "11".repeat(64), /signature must be 65 bytes/],
    ] as const) {
      it(`refuses ${field} = ${value.slice(0, 20)}`, function () {
        expect(() => checkForwardShape({ ...good, [field]: value })).to.throw(message);
        const refusal = shapeRefusal(
          (() => {
            try {
              checkForwardShape({ ...good, [field]: value });
            } catch (err) {
              return err;
            }
          })(),
        );
        expect(refusal.field).to.equal(field);
        expect(refusal.status).to.equal(400);
      });
    }
  });

  describe("refusals", function () {
    it("every code has a 4xx or 503 status", function () {
      for (const [code, status] of Object.entries(REFUSALS)) {
        expect(status === 503 || (status >= 400 && status < 500), code).to.equal(true);
        expect(new Refusal(code as keyof typeof REFUSALS, "x").status).to.equal(status);
      }
    });

    it("names the message field of a catalogue error", function () {
      const r = shapeRefusal(new Error("FirmwareAttestation.nonce is out of range for uint256"), "FirmwareAttestation");
      expect(r.field).to.equal("message.nonce");
      expect(r.message).to.equal("message.nonce is out of range for uint256");
    });
  });

  describe("durable store", function () {
    const message = (n: number): SignedDeviceMessage => ({
      type: "NonceCancellation",
      key: "0x" + "ab".repeat(20),
      message: { device: "7", nonce: String(n), deadline: "1900000000" },
      signature: "0x" + n.toString(16).padStart(130, "0"),
    });

    it("replays accepted messages and their statuses after a crash, ignoring a torn last line", async function () {
      const dir = tempDir();
      const store = await MessageStore.open(dir, 60_000);
      const entries = [];
      for (let n = 0; n < 3; n++) {
        const r = store.reserve({
          id: `0x${n}`,
          kind: "device",
          body: message(n),
          lane: "d:7",
          nonce: BigInt(n),
          deadline: 1_900_000_000n,
        });
        expect(r.fresh).to.equal(true);
        entries.push(r.entry);
      }
      await Promise.all(entries.map((e) => e.persisted));
      // The same nonce cannot be reserved twice, even before it is on disk.
      expect(
        store.reserve({ id: "0xdup", kind: "device", body: message(1), lane: "d:7", nonce: 1n, deadline: 1n }).fresh,
      ).to.equal(false);
      await store.recordTx(
        { hash: "0xaa", raw: "0x02", kind: "device", ids: ["0x0"], nonce: 0, to: "0x00", data: "0x" },
        [entries[0]],
      );
      await store.setStatus(entries[1], "confirmed", { txHash: "0xbb" });
      // No close(): a crash. A write torn in half follows.
      const file = path.join(dir, "relayer.jsonl");
      appendFileSync(file, '{"t":"status","id":"0x2","sta');

      const after = await MessageStore.open(dir, 60_000);
      expect(after.size).to.equal(3);
      expect(after.entries.get("0x0")).to.include({ status: "submitted", txHash: "0xaa" });
      expect(after.entries.get("0x1")).to.include({ status: "confirmed", txHash: "0xbb" });
      expect(after.entries.get("0x2")).to.include({ status: "accepted" });
      expect([...after.openTxs.keys()]).to.deep.equal(["0xaa"]);
      expect(after.queueDepth()).to.equal(2);
      expect(after.queued("d:7", 2n)?.id).to.equal("0x2");
      // The log was compacted: one line per message plus the open transaction, no torn line.
      const lines = readFileSync(file, "utf8").trim().split("\n");
      expect(lines).to.have.length(4);
      for (const l of lines) JSON.parse(l);
      await after.txDone("0xaa", "mined");
      await after.close();
      expect((await MessageStore.open(dir, 60_000)).openTxs.size).to.equal(0);
    });

    it("drops final messages older than the retention when it compacts", async function () {
      const dir = tempDir();
      const store = await MessageStore.open(dir, 60_000);
      const r = store.reserve({ id: "0x1", kind: "device", body: message(1), lane: "d:7", nonce: 1n, deadline: 1n });
      await r.entry.persisted;
      await store.setStatus(r.entry, "confirmed");
      await store.close();
      expect((await MessageStore.open(dir, 60_000)).size).to.equal(1);
      expect((await MessageStore.open(dir, -1)).size).to.equal(0);
    });
  });

  describe("chain view: which logs drop which cached reads", function () {
    /** Answers every eth_call with the number of eth_calls so far (as a uint): each read is counted. */
    class CountingProvider extends JsonRpcProvider {
      calls = 0;
      constructor() {
        const network = Network.from(31337);
        super("http://127.0.0.1:1", network, { staticNetwork: network, batchMaxCount: 1, cacheTimeout: -1 });
      }
      override async _send(payload: JsonRpcPayload | JsonRpcPayload[]): Promise<JsonRpcResult[]> {
        return (Array.isArray(payload) ? payload : [payload]).map((p) => {
          if (p.method !== "eth_call") throw new Error(`unexpected ${p.method}`);
          return { id: p.id, result: toBeHex(++this.calls, 32) };
        });
      }
    }
    const REGISTRY = "0x" + "11".repeat(20);
    const FORWARDER = "0x" + "22".repeat(20);
    const BEACONS = "0x" + "33".repeat(20);
    const silent = { warn() {}, info() {}, debug() {} } as unknown as FastifyBaseLogger;
    const registry = DeviceRegistry__factory.createInterface();
    const beacons = LocationBeacons__factory.createInterface();
    const log = (address: string, e: { topics: string[]; data: string }, tx = "0x01"): RawLog => ({
      address,
      topics: e.topics,
      data: e.data,
      transactionHash: tx,
    });

    function view() {
      const provider = new CountingProvider();
      return { provider, chain: new ChainView(provider, REGISTRY, FORWARDER, 1000, silent, BEACONS) };
    }

    it("a new trust period, a key attestation or a rotation (attested or not) drops that device's reads only", async function () {
      const events = [
        registry.encodeEventLog("TrustPeriodEnded", [7n, 0, 1_700_000_000, 12345]),
        registry.encodeEventLog("KeyAttested", [7n, 1, Wallet.createRandom().address]),
        registry.encodeEventLog("KeyRotated", [7n, "0x" + "44".repeat(20), 1, true]),
        registry.encodeEventLog("KeyRotated", [7n, "0x" + "55".repeat(20), 2, false]),
        registry.encodeEventLog("Released", [7n, Wallet.createRandom().address]),
        registry.encodeEventLog("GuardianCleared", [7n]),
      ];
      for (const e of events) {
        const { provider, chain } = view();
        expect(await chain.deviceNonce(7n)).to.equal(1n);
        expect(await chain.deviceNonce(8n)).to.equal(2n);
        expect(await chain.beaconNonce(7n)).to.equal(3n);
        expect(await chain.deviceNonce(7n)).to.equal(1n); // cached
        chain.applyLogs([log(REGISTRY, e)]);
        expect(await chain.deviceNonce(7n)).to.equal(4n); // read again
        expect(await chain.deviceNonce(8n)).to.equal(2n); // another device: kept
        expect(await chain.beaconNonce(7n)).to.equal(3n); // the beacon nonce does not move with the registry's
        expect(provider.calls).to.equal(4);
      }
    });

    it("a posted beacon drops the device's beacon nonce, not its device nonce; a batch change drops everything", async function () {
      const { provider, chain } = view();
      await chain.deviceNonce(7n);
      await chain.beaconNonce(7n);
      chain.applyLogs([
        log(
          BEACONS,
          beacons.encodeEventLog("LocationBeaconPosted", [7n, REGISTRY, 0n, 3n, "0x" + "11".repeat(32), "0xc1"]),
        ),
      ]);
      expect(await chain.deviceNonce(7n)).to.equal(1n);
      expect(await chain.beaconNonce(7n)).to.equal(3n);
      expect(provider.calls).to.equal(3);
      // A batch change (like any registry event the view has no rule for) starts over.
      chain.applyLogs([log(REGISTRY, registry.encodeEventLog("BatchStatusChanged", [5n, 2, ZeroHash]))]);
      expect(await chain.deviceNonce(7n)).to.equal(4n);
      expect(await chain.beaconNonce(7n)).to.equal(5n);
    });

    it("the relayer's own batches move the cached nonces of their lanes from the receipt, without a read", async function () {
      const { provider, chain } = view();
      await chain.deviceNonce(7n); // 1
      await chain.beaconNonce(7n); // 2
      chain.markOwnTx("0xaa");
      const own = [
        log(REGISTRY, registry.encodeEventLog("NonceCancelled", [7n, 1]), "0xaa"),
        log(
          BEACONS,
          beacons.encodeEventLog("LocationBeaconPosted", [7n, REGISTRY, 0n, 3n, "0x" + "11".repeat(32), "0xc1"]),
          "0xaa",
        ),
        log(
          BEACONS,
          beacons.encodeEventLog("LocationBeaconPosted", [7n, REGISTRY, 0n, 3n, "0x" + "11".repeat(32), "0xc1"]),
          "0xaa",
        ),
      ];
      // The poll sees the same logs: they are the receipt's to apply.
      chain.applyLogs(own);
      chain.applyOwnReceipt(
        own,
        new Map([
          ["d:7", 2n],
          ["b:7", 4n],
        ]),
      );
      expect(await chain.deviceNonce(7n)).to.equal(2n);
      expect(await chain.beaconNonce(7n)).to.equal(4n);
      expect(provider.calls).to.equal(2);
    });
  });
});

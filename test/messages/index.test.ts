/**
 * The hand-written calldata of the four device calls and the fast message id, held to ethers:
 * `encodeCall` equals `Interface.encodeFunctionData` byte for byte for random valid messages of
 * every type (both kinds of device key, both signature lengths, negative coordinates, proofs of 0
 * to 20 items, integers in every form the agent and ethers take), accepts and refuses exactly the
 * values ethers does, and names the field it refuses; `messageId` equals ethers' keccak256 of the
 * signature. Ends with a timing of both encoders.
 */
import { expect } from "chai";
import fc from "fast-check";
import { getAddress, getIcapAddress, hexlify, keccak256, type Interface } from "ethers";
import { loadKeccak } from "../../src/eip712/fast.js";
import {
  DEVICE_MESSAGE_TYPES,
  CONTRACT_OF,
  checkShape,
  encodeCall,
  messageId,
  type DeviceMessageType,
  type SignedDeviceMessage,
} from "../../src/messages/index.js";
import { DeviceRegistry__factory } from "../../typechain-types/factories/contracts/registry/DeviceRegistry__factory.js";
import { LockAccess__factory } from "../../typechain-types/factories/contracts/access/LockAccess__factory.js";
import { PaymentChannels__factory } from "../../typechain-types/factories/contracts/payments/PaymentChannels__factory.js";
import { CustodyLedger__factory } from "../../typechain-types/factories/contracts/custody/CustodyLedger__factory.js";
import { LocationBeacons__factory } from "../../typechain-types/factories/contracts/beacons/LocationBeacons__factory.js";
import { assertProperty } from "../helpers/property.js";

const registry: Interface = DeviceRegistry__factory.createInterface();
const beacons: Interface = LocationBeacons__factory.createInterface();
const locks: Interface = LockAccess__factory.createInterface();
const channels: Interface = PaymentChannels__factory.createInterface();
const custody: Interface = CustodyLedger__factory.createInterface();

/** The calldata as the ethers-based `encodeCall` built it (the reference). */
function ethersCall(m: SignedDeviceMessage): string {
  const f = m.message;
  switch (m.type) {
    case "DeviceClaim":
      return registry.encodeFunctionData("claim", [
        {
          owner: f.owner,
          batchId: f.batch,
          deviceKey: m.key,
          model: m.claim!.model,
          firmwareHash: m.claim!.firmwareHash,
          deadline: f.deadline,
        },
        m.claim!.proof,
        m.signature,
      ]);
    case "FirmwareAttestation":
      return registry.encodeFunctionData("attestFirmware", [m.key, f.firmwareHash, f.deadline, m.signature]);
    case "LocationBeacon":
      return beacons.encodeFunctionData("postLocationBeacon", [
        m.key,
        { recipients: f.recipients, ciphertext: f.ciphertext, at: f.at, deadline: f.deadline },
        m.signature,
      ]);
    case "NonceCancellation":
      return registry.encodeFunctionData("cancelNonce", [m.key, f.deadline, m.signature]);
    case "Voucher":
      return channels.encodeFunctionData("claim", [m.terms, f.cumulativeAmount, m.key, m.signature]);
    case "Checkpoint":
      return custody.encodeFunctionData("checkpoint", [
        {
          shipment: f.shipment,
          seq: f.seq,
          readingsRoot: f.readingsRoot,
          count: f.count,
          minTemp: f.minTemp,
          maxTemp: f.maxTemp,
          location: f.location,
          at: f.at,
        },
        m.key,
        m.signature,
      ]);
    case "UnlockLog":
      return locks.encodeFunctionData("anchorLog", [
        m.key,
        { seq: f.seq, root: f.root, count: f.count, fromTime: f.fromTime, toTime: f.toTime, deadline: f.deadline },
        m.signature,
      ]);
  }
}

/** What each side does with `m`: its calldata, or that it throws. */
function outcome(encode: (m: SignedDeviceMessage) => string, m: SignedDeviceMessage): string {
  try {
    return encode(m);
  } catch {
    return "throws";
  }
}

const hex = (min: number, max = min) => fc.uint8Array({ minLength: min, maxLength: max }).map((b) => hexlify(b));
/** Hex bytes in lower, upper or mixed case (ethers takes any). */
const anyCaseHex = (min: number, max = min) =>
  fc
    .tuple(hex(min, max), fc.constantFrom("lower", "upper", "mixed"))
    .map(([h, c]) =>
      c === "lower"
        ? h
        : c === "upper"
          ? "0x" + h.slice(2).toUpperCase()
          : "0x" + [...h.slice(2)].map((ch, i) => (i % 3 ? ch : ch.toUpperCase())).join(""),
    );

/** An integer in [min, max], as a bigint, a decimal string (the agent's JSON), a 0x string or a safe number. */
function integer(min: bigint, max: bigint): fc.Arbitrary<unknown> {
  const n = fc.bigInt(min, max);
  return fc.oneof(
    n,
    n.map((v) => v.toString()),
    n.filter((v) => v >= 0n).map((v) => "0x" + v.toString(16)),
    n.filter((v) => v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER)).map(Number),
  );
}
const uint = (bits: number) => integer(0n, (1n << BigInt(bits)) - 1n);
const int = (bits: number) => integer(-(1n << BigInt(bits - 1)), (1n << BigInt(bits - 1)) - 1n);

/** An address: lower-case, checksummed or upper-case. */
const address = fc
  .tuple(hex(20), fc.constantFrom("lower", "checksummed", "upper"))
  .map(([a, c]) => (c === "lower" ? a : c === "checksummed" ? getAddress(a) : "0x" + a.slice(2).toUpperCase()));

/** A secp256k1 key (its 20-byte address) or a P-256 key (20-byte verifier, 64-byte public key). */
const deviceKey = fc.oneof(hex(20), hex(84), anyCaseHex(20), anyCaseHex(84));
/** (r, s, v) of secp256k1 or (r, s) of P-256. */
const signature = fc.oneof(hex(65), hex(64), anyCaseHex(64, 65));
const proof = fc.array(anyCaseHex(32), { minLength: 0, maxLength: 20 });

function messageOf(type: DeviceMessageType): fc.Arbitrary<SignedDeviceMessage> {
  const base = { key: deviceKey, signature, deadline: uint(256), device: uint(256), nonce: uint(256) };
  switch (type) {
    case "DeviceClaim":
      return fc
        .record({
          ...base,
          owner: address,
          batch: uint(48),
          model: anyCaseHex(32),
          firmwareHash: anyCaseHex(32),
          proof,
        })
        .map((r) => ({
          type,
          key: r.key,
          signature: r.signature,
          message: { owner: r.owner, batch: r.batch, deadline: r.deadline },
          claim: { model: r.model, firmwareHash: r.firmwareHash, proof: r.proof },
        }));
    case "FirmwareAttestation":
      return fc.record({ ...base, firmwareHash: anyCaseHex(32) }).map((r) => ({
        type,
        key: r.key,
        signature: r.signature,
        message: { device: r.device, firmwareHash: r.firmwareHash, nonce: r.nonce, deadline: r.deadline },
      }));
    case "LocationBeacon":
      return fc
        .record({ ...base, recipients: anyCaseHex(32, 256), ciphertext: anyCaseHex(0, 500), at: uint(64) })
        .map((r) => ({
          type,
          key: r.key,
          signature: r.signature,
          message: {
            device: r.device,
            nonce: r.nonce,
            recipients: r.recipients,
            ciphertext: r.ciphertext,
            at: r.at,
            deadline: r.deadline,
          },
        }));
    case "NonceCancellation":
      return fc.record(base).map((r) => ({
        type,
        key: r.key,
        signature: r.signature,
        message: { device: r.device, nonce: r.nonce, deadline: r.deadline },
      }));
    case "Voucher":
      return fc
        .record({
          ...base,
          channel: anyCaseHex(32),
          payer: uint(256),
          payee: uint(256),
          token: address,
          rate: uint(96),
          allowance: uint(96),
          openedAt: uint(64),
          salt: uint(32),
          payerKeyHash: anyCaseHex(32),
          payerPeriod: uint(32),
        })
        .map((r) => ({
          type,
          key: r.key,
          signature: r.signature,
          message: { channel: r.channel, cumulativeAmount: r.nonce },
          terms: {
            payer: r.payer,
            payee: r.payee,
            token: r.token,
            rate: r.rate,
            allowance: r.allowance,
            openedAt: r.openedAt,
            salt: r.salt,
            payerKeyHash: r.payerKeyHash,
            payerPeriod: r.payerPeriod,
          } as unknown as SignedDeviceMessage["terms"],
        }));
    case "Checkpoint":
      return fc
        .record({
          ...base,
          shipment: anyCaseHex(32),
          seq: uint(32),
          readingsRoot: anyCaseHex(32),
          count: uint(32),
          minTemp: int(16),
          maxTemp: int(16),
          location: anyCaseHex(32),
          at: uint(64),
        })
        .map((r) => ({
          type,
          key: r.key,
          signature: r.signature,
          message: {
            shipment: r.shipment,
            seq: r.seq,
            readingsRoot: r.readingsRoot,
            count: r.count,
            minTemp: r.minTemp,
            maxTemp: r.maxTemp,
            location: r.location,
            at: r.at,
          },
        }));
    case "UnlockLog":
      return fc
        .record({ ...base, seq: uint(32), root: anyCaseHex(32), count: uint(32), fromTime: uint(64), toTime: uint(64) })
        .map((r) => ({
          type,
          key: r.key,
          signature: r.signature,
          message: {
            lock: r.device,
            seq: r.seq,
            root: r.root,
            count: r.count,
            fromTime: r.fromTime,
            toTime: r.toTime,
            deadline: r.deadline,
          },
        }));
  }
}

/** Values that are valid in some field and invalid in others, including the odd forms ethers takes. */
const oddValue: fc.Arbitrary<unknown> = fc.oneof(
  fc.constantFrom(
    "",
    "-",
    " 12 ",
    "0b101",
    "0o17",
    "-0x10",
    "0x",
    "0X1234",
    "1.5",
    "1e3",
    "abc",
    "--1",
    1.5,
    -1,
    2 ** 53,
    Number.NaN,
    null,
    undefined,
    true,
    {},
    [],
  ),
  fc.bigInt({ min: -(1n << 257n), max: 1n << 257n }),
  fc.integer(),
  hex(0, 40),
  anyCaseHex(0, 40),
  hex(20).map((a) => a.slice(2)), // an address without 0x
  hex(20).map((a) => getAddress(a).replace(/[a-f]/, (c) => c.toUpperCase())), // a bad checksum (or a good one)
  hex(20).map((a) => getIcapAddress(a)),
  hex(0, 40).map((h) => h + "0"), // odd length
  fc.uint8Array({ minLength: 0, maxLength: 40 }),
);

/** `m` with one of the fields its call encodes replaced by `value`. */
function withField(m: SignedDeviceMessage, which: number, value: unknown): SignedDeviceMessage {
  const copy = structuredClone(m);
  const paths: ((x: SignedDeviceMessage) => void)[] = [
    (x) => ((x as { key: unknown }).key = value),
    (x) => ((x as { signature: unknown }).signature = value),
    ...Object.keys(m.message).map((k) => (x: SignedDeviceMessage) => (x.message[k] = value)),
  ];
  if (m.claim) {
    paths.push((x) => ((x.claim as Record<string, unknown>).model = value));
    paths.push((x) => ((x.claim as Record<string, unknown>).firmwareHash = value));
    paths.push((x) => ((x.claim as Record<string, unknown>).proof = value));
    if (m.claim.proof.length) paths.push((x) => ((x.claim!.proof as unknown[])[0] = value));
  }
  if (m.terms) {
    for (const k of Object.keys(m.terms))
      paths.push((x) => ((x.terms as unknown as Record<string, unknown>)[k] = value));
  }
  paths[which % paths.length](copy);
  return copy;
}

const anyMessage = fc.oneof(...DEVICE_MESSAGE_TYPES.map(messageOf));

describe("messages: hand-written calldata and fast ids", function () {
  before(async function () {
    await loadKeccak();
  });

  for (const type of DEVICE_MESSAGE_TYPES) {
    it(`encodeCall of a ${type} equals ethers' encodeFunctionData, and messageId ethers' keccak256`, function () {
      assertProperty(
        fc.property(messageOf(type), (m) => {
          const call = encodeCall(m);
          expect(call.contract).to.equal(CONTRACT_OF[type]);
          expect(call.data).to.equal(ethersCall(m));
          expect(messageId(m)).to.equal(keccak256(m.signature));
        }),
        400,
      );
    });
  }

  it("messages the agent posts (lower-case hex, decimal strings) pass checkShape unchanged", function () {
    assertProperty(
      fc.property(anyMessage, (m) => {
        const json = JSON.parse(JSON.stringify(m, (_k, v) => (typeof v === "bigint" ? v.toString() : v)));
        expect(checkShape(json)).to.equal(json);
        expect(encodeCall(json).data).to.equal(ethersCall(json));
      }),
      200,
    );
  });

  it("accepts and refuses exactly the values ethers does, in every field", function () {
    assertProperty(
      fc.property(anyMessage, fc.nat(), oddValue, (m, which, value) => {
        const odd = withField(m, which, value);
        expect(outcome((x) => encodeCall(x).data, odd)).to.equal(outcome(ethersCall, odd));
        expect(outcome(messageId, odd)).to.equal(outcome((x) => keccak256(x.signature), odd));
      }),
      3000,
    );
  });

  it("refuses a bad value with an error that names its field", function () {
    const key = "0x" + "11".repeat(20);
    const signature = "0x" + "22".repeat(65);
    const h32 = "0x" + "33".repeat(32);
    const attestation = (message: Record<string, unknown>): SignedDeviceMessage => ({
      type: "FirmwareAttestation",
      key,
      signature,
      message: { device: "1", firmwareHash: h32, nonce: "0", deadline: "100", ...message },
    });
    const beacon = (message: Record<string, unknown>): SignedDeviceMessage => ({
      type: "LocationBeacon",
      key,
      signature,
      message: { device: "1", nonce: "0", recipients: h32, ciphertext: "0x", at: "3", deadline: "100", ...message },
    });
    const claim = (message: Record<string, unknown>, c: Record<string, unknown> = {}): SignedDeviceMessage => ({
      type: "DeviceClaim",
      key,
      signature,
      message: { owner: "0x" + "44".repeat(20), batch: "7", deadline: "100", ...message },
      claim: { model: h32, firmwareHash: h32, proof: [h32, h32], ...c } as SignedDeviceMessage["claim"],
    });
    const cases: [SignedDeviceMessage, RegExp][] = [
      [attestation({ deadline: "soon" }), /^message\.deadline must be an integer$/],
      [attestation({ deadline: (1n << 256n).toString() }), /^message\.deadline is out of range for uint256/],
      [attestation({ deadline: "-1" }), /^message\.deadline is out of range for uint256/],
      [attestation({ firmwareHash: "0x1234" }), /^message\.firmwareHash must be 32 bytes/],
      [attestation({ firmwareHash: "nope" }), /^message\.firmwareHash must be 0x-prefixed hex bytes/],
      [{ ...attestation({}), key: "0x123" }, /^key must be 0x-prefixed hex bytes/],
      [{ ...attestation({}), signature: "0xzz" }, /^signature must be 0x-prefixed hex bytes/],
      [beacon({ recipients: "0x1" }), /^message\.recipients must be/],
      [beacon({ ciphertext: 7 }), /^message\.ciphertext must be/],
      [beacon({ at: "-5" }), /^message\.at is out of range for uint64/],
      [beacon({ at: 1.5 }), /^message\.at must be an integer/],
      [{ ...beacon({}), type: "NonceCancellation", message: { deadline: null } }, /^message\.deadline must be an/],
      [claim({ batch: (2n ** 48n).toString() }), /^message\.batch is out of range for uint48/],
      [claim({ owner: "0x1234" }), /^message\.owner must be an address/],
      [claim({ owner: getAddress("0x" + "ab".repeat(20)).replace("A", "a") }), /^message\.owner must be an address/],
      [claim({}, { model: "0x12" }), /^claim\.model must be 32 bytes/],
      [claim({}, { firmwareHash: 7 }), /^claim\.firmwareHash must be 0x-prefixed hex bytes/],
      [claim({}, { proof: [h32, "0x00"] }), /^claim\.proof\[1\] must be 32 bytes/],
      [claim({}, { proof: "0x" }), /^claim\.proof must be an array/],
      [{ ...claim({}), claim: undefined }, /^claim must carry model, firmwareHash and proof/],
    ];
    for (const [m, error] of cases) {
      expect(() => encodeCall(m), JSON.stringify(m)).to.throw(Error, error);
      expect(() => ethersCall(m), JSON.stringify(m)).to.throw(); // ethers refused these too
    }
    expect(() => messageId({ ...attestation({}), signature: "0x1" })).to.throw(/^signature must be 0x-prefixed hex/);
  });

  it("checkShape names a claim's bad model, firmware hash or proof item", function () {
    const h32 = "0x" + "ab".repeat(32);
    const claim = (c: Record<string, unknown>) => ({
      type: "DeviceClaim",
      key: "0x" + "11".repeat(20),
      signature: "0x" + "22".repeat(65),
      message: { owner: "0x" + "44".repeat(20), batch: "7", deadline: "100" },
      claim: { model: h32, firmwareHash: h32, proof: [h32], ...c },
    });
    expect(checkShape(claim({})).claim!.proof).to.deep.equal([h32]);
    expect(checkShape(claim({ proof: [] })).claim!.proof).to.deep.equal([]);
    const cases: [unknown, string][] = [
      [{ ...claim({}), claim: undefined }, "claim must carry model, firmwareHash and proof"],
      [{ ...claim({}), claim: "x" }, "claim must carry model, firmwareHash and proof"],
      [claim({ model: undefined }), "claim.model must be 32 bytes of hex"],
      [claim({ model: h32.slice(0, -2) }), "claim.model must be 32 bytes of hex"],
      [claim({ model: h32 + "00" }), "claim.model must be 32 bytes of hex"],
      [claim({ firmwareHash: 12 }), "claim.firmwareHash must be 32 bytes of hex"],
      [claim({ firmwareHash: "0x" + "zz".repeat(32) }), "claim.firmwareHash must be 32 bytes of hex"],
      [claim({ proof: h32 }), "claim.proof must be an array of 32-byte hex strings"],
      [claim({ proof: [h32, h32, "0x12"] }), "claim.proof[2] must be 32 bytes of hex"],
      [claim({ proof: [null] }), "claim.proof[0] must be 32 bytes of hex"],
    ];
    for (const [input, message] of cases) expect(() => checkShape(input), message).to.throw(Error, message);
  });

  it("times encodeCall and messageId against ethers", function () {
    this.timeout(60_000);
    const samples = DEVICE_MESSAGE_TYPES.map((t) => fc.sample(messageOf(t), { numRuns: 200, seed: 42 }));
    const time = (fn: (m: SignedDeviceMessage) => unknown, ms: SignedDeviceMessage[], rounds: number): number => {
      for (const m of ms) fn(m); // warm up
      const t0 = process.hrtime.bigint();
      for (let r = 0; r < rounds; r++) for (const m of ms) fn(m);
      return Number(process.hrtime.bigint() - t0) / 1000 / (rounds * ms.length);
    };
    const lines: string[] = [];
    for (const [i, type] of DEVICE_MESSAGE_TYPES.entries()) {
      const before = time(ethersCall, samples[i], 5);
      const after = time(encodeCall, samples[i], 50);
      lines.push(
        `${type.padEnd(20)} ethers ${before.toFixed(1).padStart(6)} µs  hand-written ${after.toFixed(1).padStart(5)} µs  ×${(before / after).toFixed(0)}`,
      );
    }
    const all = samples.flat();
    const idBefore = time((m) => keccak256(m.signature), all, 10);
    const idAfter = time(messageId, all, 10);
    lines.push(
      `${"messageId".padEnd(20)} ethers ${idBefore.toFixed(1).padStart(6)} µs  fast keccak  ${idAfter.toFixed(1).padStart(5)} µs  ×${(idBefore / idAfter).toFixed(0)}`,
    );
    console.log(lines.map((l) => `      ${l}`).join("\n"));
  });
});

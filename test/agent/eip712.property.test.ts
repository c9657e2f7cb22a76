/**
 * The agent signs the fast digests (precomputed type hashes and domain separators, WebAssembly
 * keccak). Two properties hold them to account for random valid messages: they equal ethers'
 * generic `TypedDataEncoder` for every type of the catalogue, and a device key's signature over
 * them is accepted by the DeviceRegistry for every registry message a device signs (and by
 * LocationBeacons for a location beacon), for both kinds of device key.
 */
import { expect } from "chai";
import fc from "fast-check";
import { ethers, loadFixture } from "../helpers/hardhat.js";
import { TypedDataEncoder, getAddress, hexlify } from "ethers";
import { TYPES, domainOf, typesOf, type Deployment, type Message, type TypeName } from "../../src/eip712/index.js";
import { TypedDataHasher, bytesToHex } from "../../src/eip712/fast.js";
import { randomDeviceKey, type DeviceKey, type DeviceKeyKind } from "../../src/crypto/deviceKey.js";
import { deviceIdOf } from "../../src/registry/batch.js";
import { commit, deadlineIn, deployRegistry, makeBatch, provision, type RegistryContext } from "../helpers/registry.js";
import { deployBeacons, recipientsOf } from "../helpers/beacons.js";
import type { LocationBeacons } from "../../typechain-types/index.js";
import { assertProperty } from "../helpers/property.js";

const bytes = (min: number, max = min) => fc.uint8Array({ minLength: min, maxLength: max }).map((b) => hexlify(b));

/** A random value of an EIP-712 field type, in one of the forms the agent accepts. */
function valueOf(type: string): fc.Arbitrary<unknown> {
  const uint = /^uint(\d+)$/.exec(type);
  if (uint) {
    const n = fc.bigInt(0n, (1n << BigInt(uint[1])) - 1n);
    return fc.oneof(
      n,
      n.map((v) => v.toString()),
    ); // bigints, or decimal strings as in the agent's JSON
  }
  const int = /^int(\d+)$/.exec(type);
  if (int) {
    const bits = BigInt(int[1]);
    const n = fc.bigInt(-(1n << (bits - 1n)), (1n << (bits - 1n)) - 1n);
    return fc.oneof(
      n,
      n.map((v) => v.toString()),
    );
  }
  const fixed = /^bytes(\d+)$/.exec(type);
  if (fixed) return bytes(Number(fixed[1]));
  if (type === "bytes") return bytes(0, 200);
  if (type === "string") return fc.oneof(fc.string(), fc.string({ unit: "grapheme" })); // URLs, any text
  if (type === "address")
    return fc.tuple(bytes(20), fc.boolean()).map(([a, checksum]) => (checksum ? getAddress(a) : a));
  throw new Error(`no arbitrary for ${type}`);
}

function messageOf(type: TypeName): fc.Arbitrary<Message> {
  return fc.record(Object.fromEntries(TYPES[type].fields.map((f) => [f.name, valueOf(f.type)])));
}

const deploymentArb = fc.record({
  chainId: fc.bigInt(1n, (1n << 64n) - 1n),
  verifyingContract: bytes(20),
});

describe("agent EIP-712 digests (property-based)", function () {
  let hasher: TypedDataHasher;
  before(async function () {
    hasher = await TypedDataHasher.create();
  });

  for (const type of Object.keys(TYPES) as TypeName[]) {
    it(`${type}: the fast digest equals ethers' TypedDataEncoder for random valid messages`, function () {
      assertProperty(
        fc.property(messageOf(type), deploymentArb, (message, deployment) => {
          const fast = bytesToHex(hasher.digest(type, deployment, message));
          const generic = TypedDataEncoder.hash(domainOf(TYPES[type].domain, deployment), typesOf(type), message);
          expect(fast).to.equal(generic);
        }),
        150,
      );
    });
  }

  it("attack: out-of-range and malformed fields are refused, naming the field", function () {
    const bad: [TypeName, string, unknown][] = [
      ["DeviceClaim", "batch", 1n << 48n],
      ["DeviceClaim", "owner", "0x1234"],
      ["FirmwareAttestation", "firmwareHash", "0x" + "00".repeat(31)],
      ["FirmwareAttestation", "nonce", -1n],
      ["LocationBeacon", "ciphertext", "0xabc"],
      ["LocationBeacon", "at", "twelve"],
      ["KeyRotation", "newKey", "0xabc"],
    ];
    // Each bad field in random valid messages of its type: every case in every run.
    const deployment = { chainId: 1n, verifyingContract: "0x" + "11".repeat(20) };
    assertProperty(
      fc.property(fc.tuple(...bad.map(([type]) => messageOf(type))), (messages) => {
        bad.forEach(([type, field, value], i) => {
          expect(() => hasher.digest(type, deployment, { ...messages[i], [field]: value })).to.throw(
            `${type}.${field}`,
          );
        });
      }),
      30,
    );
  });

  // ------------------------------------------------------------ accepted by the registry (and the beacons)

  async function deviceFixture(kind: DeviceKeyKind) {
    const ctx = await deployRegistry();
    const key = randomDeviceKey(kind, ctx.verifierAddress);
    const { ids } = await provision(ctx, [key]);
    const { beacons, deployment: beaconsDeployment } = await deployBeacons(ctx);
    return { ctx, key, id: ids[0], beacons, beaconsDeployment };
  }
  const fixtures = {
    secp256k1: () => deviceFixture("secp256k1"),
    p256: () => deviceFixture("p256"),
  };

  interface Case {
    /** Random fields that the property chooses (the rest is set by the chain state). */
    fields: fc.Arbitrary<Message>;
    /** Signs with the fast digest, submits through the registry (or the beacons), and checks the effect. */
    run(
      f: {
        ctx: RegistryContext;
        key: DeviceKey;
        id: bigint;
        beacons: LocationBeacons;
        beaconsDeployment: Deployment;
      },
      fields: Message,
      kind: DeviceKeyKind,
    ): Promise<void>;
  }

  const deadline = fc.integer({ min: 60, max: 10_000_000 });
  const sign = (key: DeviceKey, type: TypeName, ctx: RegistryContext, message: Message, deployment = ctx.deployment) =>
    hexlify(key.signBytes(hasher.digest(type, deployment, message)));
  const relayer = (ctx: RegistryContext) => ctx.registry.connect(ctx.stranger);

  const cases: Record<
    "DeviceClaim" | "KeyRotation" | "FirmwareAttestation" | "LocationBeacon" | "NonceCancellation",
    Case
  > = {
    DeviceClaim: {
      fields: fc.record({ owner: bytes(20).map(getAddress), deadline }),
      async run({ ctx }, fields, kind) {
        const key = randomDeviceKey(kind, ctx.verifierAddress);
        const batch = makeBatch([key]);
        const batchId = await commit(ctx.registry, ctx.manufacturer, batch);
        const message = { owner: fields.owner, batch: batchId, deadline: await deadlineIn(fields.deadline as number) };
        const leaf = batch.device(key.signer);
        await expect(
          relayer(ctx).claim(
            { ...leaf, owner: fields.owner as string, batchId, deadline: message.deadline },
            batch.proof(key.signer),
            sign(key, "DeviceClaim", ctx, message),
          ),
        )
          .to.emit(ctx.registry, "DeviceClaimed")
          .withArgs(deviceIdOf(key.signer), fields.owner, batchId, key.signer, leaf.model, leaf.firmwareHash);
      },
    },
    KeyRotation: {
      fields: fc.record({ deadline, withOld: fc.boolean() }),
      async run({ ctx, key, id }, fields, kind) {
        const newKey = randomDeviceKey(kind, ctx.verifierAddress);
        const message = {
          device: id,
          newKey: newKey.signer,
          nonce: await ctx.registry.deviceNonce(id),
          deadline: await deadlineIn(fields.deadline as number),
        };
        await expect(
          ctx.registry.connect(ctx.owner).rotateKey(id, {
            newKey: newKey.signer,
            deadline: message.deadline,
            newKeySignature: sign(newKey, "KeyRotation", ctx, message),
            oldKey: fields.withOld ? key.signer : "0x",
            oldKeySignature: fields.withOld ? sign(key, "KeyRotation", ctx, message) : "0x",
          }),
        ).to.emit(ctx.registry, "KeyRotated");
      },
    },
    FirmwareAttestation: {
      fields: fc.record({ firmwareHash: bytes(32), deadline }),
      async run({ ctx, key, id }, fields) {
        const message = {
          device: id,
          firmwareHash: fields.firmwareHash,
          nonce: await ctx.registry.deviceNonce(id),
          deadline: await deadlineIn(fields.deadline as number),
        };
        await expect(
          relayer(ctx).attestFirmware(
            key.signer,
            fields.firmwareHash as string,
            message.deadline,
            sign(key, "FirmwareAttestation", ctx, message),
          ),
        )
          .to.emit(ctx.registry, "FirmwareAttested")
          .withArgs(id, fields.firmwareHash);
      },
    },
    LocationBeacon: {
      fields: fc.record({
        ciphertext: fc.uint8Array({ maxLength: 300 }).map((b) => ethers.hexlify(b)),
        at: fc.bigInt(0n, (1n << 64n) - 1n),
        deadline,
      }),
      async run({ ctx, key, id, beacons, beaconsDeployment }, fields) {
        await ctx.registry.connect(ctx.owner).reportStolen(id); // beacons come from quarantined devices
        const beacon = {
          recipients: await recipientsOf(beacons, id),
          ciphertext: fields.ciphertext as string,
          at: fields.at as bigint,
          deadline: await deadlineIn(fields.deadline as number),
        };
        const message = { device: id, nonce: await beacons.beaconNonce(id), ...beacon };
        const signature = sign(key, "LocationBeacon", ctx, message, beaconsDeployment);
        await expect(beacons.connect(ctx.stranger).postLocationBeacon(key.signer, beacon, signature))
          .to.emit(beacons, "LocationBeaconPosted")
          .withArgs(id, ctx.owner.address, 0n, beacon.at, beacon.recipients, beacon.ciphertext);
      },
    },
    NonceCancellation: {
      fields: fc.record({ deadline }),
      async run({ ctx, key, id }, fields) {
        const nonce = await ctx.registry.deviceNonce(id);
        const message = { device: id, nonce, deadline: await deadlineIn(fields.deadline as number) };
        await expect(
          relayer(ctx).cancelNonce(key.signer, message.deadline, sign(key, "NonceCancellation", ctx, message)),
        )
          .to.emit(ctx.registry, "NonceCancelled")
          .withArgs(id, nonce);
      },
    },
  };

  for (const kind of ["secp256k1", "p256"] as DeviceKeyKind[]) {
    for (const [type, c] of Object.entries(cases)) {
      it(`${type}: a ${kind} device's signature over the fast digest is accepted by its contract`, async function () {
        let runs = 0;
        const expected = await assertProperty(
          fc.asyncProperty(c.fields, async (fields) => {
            const f = await loadFixture(fixtures[kind]);
            await c.run(f, fields, kind);
            runs++;
          }),
          6,
        );
        expect(runs).to.equal(expected);
      });
    }
  }

  it("covers every registry and beacons type of the catalogue that a device signs", function () {
    const types = (Object.keys(TYPES) as TypeName[]).filter((t) => ["registry", "beacons"].includes(TYPES[t].domain));
    expect(Object.keys(cases).sort()).to.deep.equal(types.sort());
  });
});

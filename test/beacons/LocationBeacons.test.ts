/**
 * LocationBeacons: the one message a quarantined device can still post (relayed by anyone), under
 * its own EIP-712 domain and its own per-device beacon nonce, its location sealed to its owner's
 * beacon key and responders (HPKE): readable by them, by nobody else.
 */
import { expect } from "chai";
import { ethers, loadFixture, time } from "../helpers/hardhat.js";
import { randomDeviceKey } from "../../src/crypto/deviceKey.js";
import { DOMAINS, typeHash } from "../../src/eip712/index.js";
import { deviceIdOf } from "../../src/registry/batch.js";
import { anyValue } from "@nomicfoundation/hardhat-ethers-chai-matchers/withArgs";
import {
  BEACON_INFO,
  BEACON_SUITE,
  BeaconError,
  generateBeaconKey,
  importBeaconKey,
  SEALED_BYTES,
} from "../../src/beacons/index.js";
import { beaconArgs, deployBeacons, openPosted, recipientsOf, ZURICH } from "../helpers/beacons.js";
import { deployRegistry, highS, makeKeys, provision, rotation, Status } from "../helpers/registry.js";

async function beaconsFixture() {
  const ctx = await deployRegistry();
  // Devices 0 and 1: secp256k1 and P-256, claimed by the owner.
  const keys = makeKeys(ctx, 2, ["secp256k1", "p256"]);
  const { ids, batchId } = await provision(ctx, keys);
  const { beacons, deployment, ownerKey, otherKey } = await deployBeacons(ctx);
  // The owner's responders: the police and an insurer.
  const police = await generateBeaconKey();
  const insurer = await generateBeaconKey();
  await beacons.connect(ctx.owner).addResponder(police.publicKey);
  await beacons.connect(ctx.owner).addResponder(insurer.publicKey);
  const quorum = await ethers.getContractAt("GuardianQuorum", await ctx.registry.guardianQuorum());
  return { ctx, keys, ids, batchId, beacons, deployment, quorum, ownerKey, otherKey, police, insurer };
}

/** The fixture with both devices reported stolen by their owner. */
async function stolenFixture() {
  const f = await beaconsFixture();
  for (const id of f.ids) await f.ctx.registry.connect(f.ctx.owner).reportStolen(id);
  return f;
}

describe("LocationBeacons", function () {
  describe("deployment", function () {
    it("has its own EIP-712 domain and the catalogue's LocationBeacon type", async function () {
      const { ctx, beacons, deployment } = await loadFixture(beaconsFixture);
      const [, name, version, chainId, verifyingContract] = await beacons.eip712Domain();
      expect({ name, version }).to.deep.equal(DOMAINS.beacons);
      expect(chainId).to.equal(deployment.chainId);
      expect(verifyingContract).to.equal(deployment.verifyingContract);
      expect(await beacons.LOCATION_BEACON_TYPEHASH()).to.equal(typeHash("LocationBeacon"));
      expect(await beacons.DOMAIN_SEPARATOR()).to.equal(
        ethers.TypedDataEncoder.hashDomain({ ...DOMAINS.beacons, ...deployment }),
      );
      expect(await beacons.DOMAIN_SEPARATOR()).to.not.equal(await ctx.registry.DOMAIN_SEPARATOR());
      expect(await beacons.registry()).to.equal(await ctx.registry.getAddress());
    });
  });

  describe("who posts", function () {
    for (const [kind, i] of [
      ["secp256k1", 0],
      ["P-256", 1],
    ] as const) {
      it(`a ${kind} device reported stolen posts its location, relayed by a stranger; the event names its owner and recipients`, async function () {
        const { ctx, keys, ids, beacons, ownerKey, police, insurer } = await loadFixture(stolenFixture);
        const recipients = ownerKey.publicKey + police.publicKey.slice(2) + insurer.publicKey.slice(2);
        await expect(beacons.connect(ctx.stranger).postLocationBeacon(...(await beaconArgs(beacons, keys[i], ids[i]))))
          .to.emit(beacons, "LocationBeaconPosted")
          .withArgs(ids[i], ctx.owner.address, 0n, ZURICH.at, recipients, anyValue);
      });
    }

    it("a device the guardians flagged posts its location", async function () {
      const { ctx, keys, ids, beacons, quorum } = await loadFixture(beaconsFixture);
      for (const g of ctx.guardians.slice(0, 2)) await quorum.connect(g).flag(ids[0], ethers.id("tamper"));
      expect(await ctx.registry.deviceStatus(ids[0])).to.equal(Status.Quarantined);
      await expect(beacons.postLocationBeacon(...(await beaconArgs(beacons, keys[0], ids[0])))).to.emit(
        beacons,
        "LocationBeaconPosted",
      );
    });

    it("a device of a quarantined batch posts its location", async function () {
      const { ctx, keys, ids, batchId, beacons } = await loadFixture(beaconsFixture);
      await ctx.registry.connect(ctx.manufacturer).quarantineBatch(batchId, ethers.id("recall"));
      await expect(beacons.postLocationBeacon(...(await beaconArgs(beacons, keys[0], ids[0])))).to.emit(
        beacons,
        "LocationBeaconPosted",
      );
    });

    it("the event names the owner of the moment: a device sold before it was stolen reports to its buyer", async function () {
      const { ctx, keys, ids, beacons } = await loadFixture(beaconsFixture);
      await ctx.registry.connect(ctx.owner).transferFrom(ctx.owner.address, ctx.other.address, ids[0]);
      await ctx.registry.connect(ctx.other).reportStolen(ids[0]);
      await expect(beacons.postLocationBeacon(...(await beaconArgs(beacons, keys[0], ids[0]))))
        .to.emit(beacons, "LocationBeaconPosted")
        .withArgs(ids[0], ctx.other.address, 0n, ZURICH.at, await recipientsOf(beacons, ids[0]), anyValue);
    });

    it("attack: an active device's beacon is refused (only a quarantined device posts one)", async function () {
      const { keys, ids, beacons } = await loadFixture(beaconsFixture);
      await expect(beacons.postLocationBeacon(...(await beaconArgs(beacons, keys[0], ids[0]))))
        .to.be.revertedWithCustomError(beacons, "LocationBeaconsNotQuarantined")
        .withArgs(ids[0], Status.Active);
    });

    it("attack: a released device's beacon is refused, though it was signed while the device was stolen", async function () {
      const { ctx, keys, ids, beacons } = await loadFixture(stolenFixture);
      const args = await beaconArgs(beacons, keys[0], ids[0]);
      await ctx.registry.connect(ctx.owner).release(ids[0]);
      await expect(beacons.postLocationBeacon(...args))
        .to.be.revertedWithCustomError(beacons, "LocationBeaconsNotQuarantined")
        .withArgs(ids[0], Status.Active);
    });

    it("attack: a revoked device's beacon is refused (decommissioned, or recalled)", async function () {
      const { ctx, keys, ids, beacons } = await loadFixture(stolenFixture);
      await ctx.registry.connect(ctx.owner).decommission(ids[0]);
      await ctx.registry.connect(ctx.manufacturer).recall(ids[1], ethers.id("recall"));
      for (const i of [0, 1])
        await expect(beacons.postLocationBeacon(...(await beaconArgs(beacons, keys[i], ids[i]))))
          .to.be.revertedWithCustomError(beacons, "LocationBeaconsNotQuarantined")
          .withArgs(ids[i], Status.Revoked);
    });

    it("attack: a key the registry never registered is refused", async function () {
      const { ctx, ids, beacons } = await loadFixture(stolenFixture);
      const stranger = randomDeviceKey("secp256k1");
      await expect(beacons.postLocationBeacon(...(await beaconArgs(beacons, stranger, ids[0]))))
        .to.be.revertedWithCustomError(beacons, "LocationBeaconsUnknownKey")
        .withArgs(ethers.keccak256(stranger.signer));
      expect(deviceIdOf(stranger.signer)).to.not.equal(ids[0]);
      expect(await ctx.registry.isKeyAvailable(stranger.signer)).to.equal(true);
    });

    it("attack: a rotated-away key (a thief's copy of the old key) is refused", async function () {
      const { ctx, keys, ids, beacons } = await loadFixture(stolenFixture);
      const next = randomDeviceKey("secp256k1");
      await ctx.registry.connect(ctx.owner).rotateKey(ids[0], await rotation(ctx, ids[0], next, null));
      await expect(beacons.postLocationBeacon(...(await beaconArgs(beacons, keys[0], ids[0]))))
        .to.be.revertedWithCustomError(beacons, "LocationBeaconsUnknownKey")
        .withArgs(ethers.keccak256(keys[0].signer));
      // The new key posts (the device is still reported stolen).
      await expect(beacons.postLocationBeacon(...(await beaconArgs(beacons, next, ids[0])))).to.emit(
        beacons,
        "LocationBeaconPosted",
      );
    });

    it("attack: one device's key signing a beacon for another device is refused", async function () {
      const { keys, ids, beacons } = await loadFixture(stolenFixture);
      // Key 0 resolves to device 0: a beacon it signed naming device 1 does not verify for device 0.
      const [, beacon, signature] = await beaconArgs(beacons, keys[0], ids[1]);
      await expect(beacons.postLocationBeacon(keys[0].signer, beacon, signature)).to.be.revertedWithCustomError(
        beacons,
        "LocationBeaconsInvalidSignature",
      );
      // Nor does device 1's key carry it.
      await expect(beacons.postLocationBeacon(keys[1].signer, beacon, signature)).to.be.revertedWithCustomError(
        beacons,
        "LocationBeaconsInvalidSignature",
      );
    });
  });

  describe("nonce and replay", function () {
    it("each beacon uses the device's next beacon nonce, from 0; the registry's device nonce does not move", async function () {
      const { ctx, keys, ids, beacons } = await loadFixture(stolenFixture);
      const deviceNonce = await ctx.registry.deviceNonce(ids[0]);
      for (let n = 0n; n < 3n; n++) {
        expect(await beacons.beaconNonce(ids[0])).to.equal(n);
        await beacons.postLocationBeacon(...(await beaconArgs(beacons, keys[0], ids[0], { nonce: n })));
      }
      expect(await beacons.beaconNonce(ids[0])).to.equal(3n);
      expect(await beacons.beaconNonce(ids[1])).to.equal(0n);
      expect(await ctx.registry.deviceNonce(ids[0])).to.equal(deviceNonce);
    });

    it("the beacon nonce is the beacons' own: a release moves the device nonce, not the beacon nonce", async function () {
      const { ctx, keys, ids, beacons } = await loadFixture(stolenFixture);
      await beacons.postLocationBeacon(...(await beaconArgs(beacons, keys[0], ids[0])));
      const deviceNonce = await ctx.registry.deviceNonce(ids[0]);
      await ctx.registry.connect(ctx.owner).release(ids[0]);
      await ctx.registry.connect(ctx.owner).reportStolen(ids[0]);
      expect(await ctx.registry.deviceNonce(ids[0])).to.equal(deviceNonce + 1n);
      expect(await beacons.beaconNonce(ids[0])).to.equal(1n);
      await expect(beacons.postLocationBeacon(...(await beaconArgs(beacons, keys[0], ids[0], { nonce: 1n })))).to.emit(
        beacons,
        "LocationBeaconPosted",
      );
    });

    it("attack: a beacon replayed after it landed is refused", async function () {
      const { keys, ids, beacons } = await loadFixture(stolenFixture);
      const args = await beaconArgs(beacons, keys[0], ids[0]);
      await beacons.postLocationBeacon(...args);
      await expect(beacons.postLocationBeacon(...args)).to.be.revertedWithCustomError(
        beacons,
        "LocationBeaconsInvalidSignature",
      );
      expect(await beacons.beaconNonce(ids[0])).to.equal(1n);
    });

    it("attack: a beacon signed with a nonce ahead of the device's is refused", async function () {
      const { keys, ids, beacons } = await loadFixture(stolenFixture);
      await expect(
        beacons.postLocationBeacon(...(await beaconArgs(beacons, keys[0], ids[0], { nonce: 1n }))),
      ).to.be.revertedWithCustomError(beacons, "LocationBeaconsInvalidSignature");
    });

    it("attack: a beacon signed with the device's registry nonce (not its beacon nonce) is refused", async function () {
      const { ctx, keys, ids, beacons } = await loadFixture(stolenFixture);
      // Move the device nonce away from the beacon nonce (a release starts a new period).
      await ctx.registry.connect(ctx.owner).release(ids[0]);
      await ctx.registry.connect(ctx.owner).reportStolen(ids[0]);
      const deviceNonce = await ctx.registry.deviceNonce(ids[0]);
      expect(deviceNonce).to.not.equal(await beacons.beaconNonce(ids[0]));
      await expect(
        beacons.postLocationBeacon(...(await beaconArgs(beacons, keys[0], ids[0], { nonce: deviceNonce }))),
      ).to.be.revertedWithCustomError(beacons, "LocationBeaconsInvalidSignature");
    });

    it("attack: the high-s twin of a beacon's signature is refused (no second beacon from one signature)", async function () {
      const { keys, ids, beacons } = await loadFixture(stolenFixture);
      for (const i of [0, 1]) {
        const [key, beacon, signature] = await beaconArgs(beacons, keys[i], ids[i]);
        await expect(beacons.postLocationBeacon(key, beacon, highS(keys[i], signature))).to.be.revertedWithCustomError(
          beacons,
          "LocationBeaconsInvalidSignature",
        );
        await beacons.postLocationBeacon(key, beacon, signature);
      }
    });

    it("attack: the ciphertext swapped or extended, the time or the deadline changed after signing: refused", async function () {
      const { keys, ids, beacons } = await loadFixture(stolenFixture);
      const [key, beacon, signature] = await beaconArgs(beacons, keys[0], ids[0]);
      const flipped = ethers.getBytes(beacon.ciphertext);
      flipped[40] ^= 1;
      for (const changed of [
        { ...beacon, ciphertext: ethers.hexlify(flipped) },
        { ...beacon, ciphertext: ethers.concat([beacon.ciphertext, "0x00"]) },
        { ...beacon, at: ZURICH.at + 1n },
        { ...beacon, deadline: BigInt(beacon.deadline) + 1n },
      ])
        await expect(beacons.postLocationBeacon(key, changed, signature)).to.be.revertedWithCustomError(
          beacons,
          "LocationBeaconsInvalidSignature",
        );
    });

    it("beacons of several devices land in one multicall", async function () {
      const { keys, ids, beacons } = await loadFixture(stolenFixture);
      const calls = await Promise.all(
        [0, 1].map(async (i) =>
          beacons.interface.encodeFunctionData("postLocationBeacon", await beaconArgs(beacons, keys[i], ids[i])),
        ),
      );
      const receipt = await (await beacons.multicall(calls)).wait();
      const posted = receipt!.logs.map((l) => beacons.interface.parseLog(l)!.args.deviceId);
      expect(posted).to.deep.equal(ids);
      expect(await beacons.beaconNonce(ids[0])).to.equal(1n);
      expect(await beacons.beaconNonce(ids[1])).to.equal(1n);
    });

    it("gas: a first beacon of a secp256k1 and of a P-256 device, a second one, and two in one multicall", async function () {
      const { keys, ids, beacons } = await loadFixture(stolenFixture);
      const args = await Promise.all([0, 1].map((i) => beaconArgs(beacons, keys[i], ids[i])));
      const alone = [];
      for (const a of args) alone.push((await (await beacons.postLocationBeacon(...a)).wait())!.gasUsed);
      const again = await beaconArgs(beacons, keys[1], ids[1]); // its nonce slot no longer zero
      const second = (await (await beacons.postLocationBeacon(...again)).wait())!.gasUsed;
      const { keys: k, ids: d, beacons: b } = await loadFixture(stolenFixture);
      const calls = await Promise.all(
        [0, 1].map(async (i) => b.interface.encodeFunctionData("postLocationBeacon", await beaconArgs(b, k[i], d[i]))),
      );
      const both = (await (await b.multicall(calls)).wait())!.gasUsed;
      console.log(
        `      gas: first beacon secp256k1 ${alone[0]}, P-256 ${alone[1]} (a second P-256 ${second}); ` +
          `both first beacons in one multicall ${both}`,
      );
    });
  });

  describe("domain and deadline", function () {
    it("attack: a beacon signed for the registry's domain (where beacons used to go) is refused", async function () {
      const { ctx, keys, ids, beacons } = await loadFixture(stolenFixture);
      await expect(
        beacons.postLocationBeacon(...(await beaconArgs(beacons, keys[0], ids[0], { deployment: ctx.deployment }))),
      ).to.be.revertedWithCustomError(beacons, "LocationBeaconsInvalidSignature");
    });

    it("attack: a beacon signed for another chain or another LocationBeacons is refused", async function () {
      const { ctx, keys, ids, beacons, deployment } = await loadFixture(stolenFixture);
      const { deployment: other } = await deployBeacons(ctx);
      for (const d of [{ ...deployment, chainId: 1n }, other])
        await expect(
          beacons.postLocationBeacon(...(await beaconArgs(beacons, keys[0], ids[0], { deployment: d }))),
        ).to.be.revertedWithCustomError(beacons, "LocationBeaconsInvalidSignature");
    });

    it("attack: an expired beacon is refused; one at its deadline lands", async function () {
      const { keys, ids, beacons } = await loadFixture(stolenFixture);
      const deadline = BigInt(await time.latest()) + 100n;
      const args = await beaconArgs(beacons, keys[0], ids[0], { deadline });
      await time.setNextBlockTimestamp(deadline + 1n);
      await expect(beacons.postLocationBeacon(...args))
        .to.be.revertedWithCustomError(beacons, "LocationBeaconsExpired")
        .withArgs(deadline);

      const later = BigInt(await time.latest()) + 100n;
      const onTime = await beaconArgs(beacons, keys[0], ids[0], { deadline: later });
      await time.setNextBlockTimestamp(later);
      await expect(beacons.postLocationBeacon(...onTime)).to.emit(beacons, "LocationBeaconPosted");
    });
  });

  describe("sealed location: its owner and its responders read it, nobody else", function () {
    /** Posts device `i`'s beacon at ZURICH and returns its event's args. */
    async function post(f: Awaited<ReturnType<typeof stolenFixture>>, i: number) {
      const receipt = await (
        await f.beacons.postLocationBeacon(...(await beaconArgs(f.beacons, f.keys[i], f.ids[i])))
      ).wait();
      // Positional: `at` is also the name of a method of ethers' Result.
      const a = f.beacons.interface.parseLog(receipt!.logs[0])!.args;
      return { deviceId: a[0] as bigint, at: a[3] as bigint, recipients: a[4] as string, ciphertext: a[5] as string };
    }

    /** Every HPKE slot of a posted ciphertext, tried with `key` (with the right associated data). */
    async function opensAnySlot(
      f: Awaited<ReturnType<typeof stolenFixture>>,
      posted: { ciphertext: string },
      privateKey: string,
    ) {
      const bytes = ethers.getBytes(posted.ciphertext);
      const pair = await importBeaconKey(privateKey);
      let opened = 0;
      for (let o = 0; o < bytes.length; o += SEALED_BYTES) {
        try {
          await BEACON_SUITE.open(
            { recipientKey: pair, enc: bytes.slice(o, o + 32), info: BEACON_INFO },
            bytes.slice(o + 32, o + SEALED_BYTES),
          );
          opened++;
        } catch {
          // expected: not sealed to this key
        }
      }
      return opened;
    }

    it("the owner, the police and the insurer each open the position", async function () {
      const f = await loadFixture(stolenFixture);
      const posted = await post(f, 1);
      for (const holder of [f.ownerKey, f.police, f.insurer])
        expect(await openPosted(f.beacons, posted, holder)).to.deep.equal({
          latitudeE7: ZURICH.latitudeE7,
          longitudeE7: ZURICH.longitudeE7,
        });
    });

    it("attack: a stranger's beacon key opens nothing (not a recipient; no slot opens with it)", async function () {
      const f = await loadFixture(stolenFixture);
      const posted = await post(f, 0);
      const stranger = await generateBeaconKey();
      await expect(openPosted(f.beacons, posted, stranger)).to.be.rejectedWith(
        BeaconError,
        /not among the beacon's recipients/,
      );
      expect(await opensAnySlot(f, posted, stranger.privateKey)).to.equal(0);
    });

    it("attack: after a sale the previous owner cannot read the device's beacons; the buyer can", async function () {
      const f = await loadFixture(beaconsFixture);
      await f.ctx.registry.connect(f.ctx.owner).transferFrom(f.ctx.owner.address, f.ctx.other.address, f.ids[0]);
      await f.ctx.registry.connect(f.ctx.other).reportStolen(f.ids[0]);
      const posted = await post(f, 0);
      expect(posted.recipients).to.equal(f.otherKey.publicKey);
      expect(await openPosted(f.beacons, posted, f.otherKey)).to.deep.include({ latitudeE7: ZURICH.latitudeE7 });
      for (const previous of [f.ownerKey, f.police, f.insurer]) {
        await expect(openPosted(f.beacons, posted, previous)).to.be.rejectedWith(BeaconError, /not among/);
        expect(await opensAnySlot(f, posted, previous.privateKey)).to.equal(0);
      }
    });

    it("attack: a beacon sealed to the previous owner's recipients (signed before the sale) is refused by the chain", async function () {
      const f = await loadFixture(beaconsFixture);
      const stale = await recipientsOf(f.beacons, f.ids[0]);
      await f.ctx.registry.connect(f.ctx.owner).transferFrom(f.ctx.owner.address, f.ctx.other.address, f.ids[0]);
      await f.ctx.registry.connect(f.ctx.other).reportStolen(f.ids[0]);
      await expect(
        f.beacons.postLocationBeacon(...(await beaconArgs(f.beacons, f.keys[0], f.ids[0], { recipients: stale }))),
      )
        .to.be.revertedWithCustomError(f.beacons, "LocationBeaconsWrongRecipients")
        .withArgs(f.ctx.other.address, ethers.keccak256(f.otherKey.publicKey), ethers.keccak256(stale));
    });

    it("attack: a removed responder cannot read beacons posted after its removal; a beacon still sealed to it is refused", async function () {
      const f = await loadFixture(stolenFixture);
      const before = await recipientsOf(f.beacons, f.ids[0]);
      await expect(f.beacons.connect(f.ctx.owner).removeResponder(f.insurer.publicKey))
        .to.emit(f.beacons, "ResponderRemoved")
        .withArgs(f.ctx.owner.address, f.insurer.publicKey);
      await expect(
        f.beacons.postLocationBeacon(...(await beaconArgs(f.beacons, f.keys[0], f.ids[0], { recipients: before }))),
      ).to.be.revertedWithCustomError(f.beacons, "LocationBeaconsWrongRecipients");
      const posted = await post(f, 0);
      await expect(openPosted(f.beacons, posted, f.insurer)).to.be.rejectedWith(BeaconError, /not among/);
      expect(await opensAnySlot(f, posted, f.insurer.privateKey)).to.equal(0);
      expect(await openPosted(f.beacons, posted, f.police)).to.deep.include({ longitudeE7: ZURICH.longitudeE7 });
    });

    it("attack: a tampered slot of the ciphertext opens for nobody (its recipient is refused, the others still read theirs)", async function () {
      const f = await loadFixture(stolenFixture);
      const posted = await post(f, 0);
      for (const at of [5, SEALED_BYTES + 40, 2 * SEALED_BYTES + SEALED_BYTES - 1]) {
        const bytes = ethers.getBytes(posted.ciphertext);
        bytes[at] ^= 0x80;
        const tampered = { ...posted, ciphertext: ethers.hexlify(bytes) };
        for (const holder of [f.ownerKey, f.police, f.insurer]) {
          const slot = Math.floor(at / SEALED_BYTES);
          const mine = [f.ownerKey, f.police, f.insurer].indexOf(holder) === slot;
          if (mine)
            await expect(openPosted(f.beacons, tampered, holder)).to.be.rejectedWith(BeaconError, /does not open/);
          else expect(await openPosted(f.beacons, tampered, holder)).to.deep.include({ latitudeE7: ZURICH.latitudeE7 });
        }
      }
    });

    it("attack: a ciphertext moved to another device's beacon, or to another time, does not open", async function () {
      const f = await loadFixture(stolenFixture);
      const posted = await post(f, 0);
      await expect(openPosted(f.beacons, { ...posted, deviceId: f.ids[1] }, f.ownerKey)).to.be.rejectedWith(
        BeaconError,
        /does not open/,
      );
      await expect(openPosted(f.beacons, { ...posted, at: posted.at + 1n }, f.ownerKey)).to.be.rejectedWith(
        BeaconError,
        /does not open/,
      );
    });

    it("attack: an owner with no beacon key gets no beacon (none is posted in clear or to nobody)", async function () {
      const f = await loadFixture(beaconsFixture);
      await f.ctx.registry.connect(f.ctx.owner).transferFrom(f.ctx.owner.address, f.ctx.stranger.address, f.ids[0]);
      await f.ctx.registry.connect(f.ctx.stranger).reportStolen(f.ids[0]);
      await expect(
        f.beacons.postLocationBeacon(
          ...(await beaconArgs(f.beacons, f.keys[0], f.ids[0], { recipients: "0x", ciphertext: "0x" })),
        ),
      )
        .to.be.revertedWithCustomError(f.beacons, "LocationBeaconsNoRecipients")
        .withArgs(f.ctx.stranger.address);
    });
  });

  describe("recipient keys", function () {
    it("each change is an event; the list is the owner's key first, then its responders", async function () {
      const { ctx, beacons } = await loadFixture(beaconsFixture);
      const [k1, k2, r1] = await Promise.all([generateBeaconKey(), generateBeaconKey(), generateBeaconKey()]);
      const who = ctx.stranger;
      await expect(beacons.connect(who).setBeaconKey(k1.publicKey))
        .to.emit(beacons, "BeaconKeySet")
        .withArgs(who.address, k1.publicKey);
      await expect(beacons.connect(who).addResponder(r1.publicKey))
        .to.emit(beacons, "ResponderAdded")
        .withArgs(who.address, r1.publicKey);
      await expect(beacons.connect(who).setBeaconKey(k2.publicKey))
        .to.emit(beacons, "BeaconKeySet")
        .withArgs(who.address, k2.publicKey);
      expect(await beacons.beaconRecipients(who.address)).to.equal(k2.publicKey + r1.publicKey.slice(2));
      await expect(beacons.connect(who).removeResponder(r1.publicKey)).to.emit(beacons, "ResponderRemoved");
      expect(await beacons.beaconRecipients(who.address)).to.equal(k2.publicKey);
    });

    it("attack: nobody changes another owner's recipients (the list is the caller's own)", async function () {
      const { ctx, beacons, police } = await loadFixture(beaconsFixture);
      const before = await beacons.beaconRecipients(ctx.owner.address);
      await expect(beacons.connect(ctx.stranger).removeResponder(police.publicKey))
        .to.be.revertedWithCustomError(beacons, "LocationBeaconsUnknownResponder")
        .withArgs(police.publicKey);
      await beacons.connect(ctx.stranger).setBeaconKey((await generateBeaconKey()).publicKey);
      expect(await beacons.beaconRecipients(ctx.owner.address)).to.equal(before);
    });
  });
});

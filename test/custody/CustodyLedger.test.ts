import { expect } from "chai";
import { rotation } from "../helpers/registry.js";
import { ethers, loadFixture, time } from "../helpers/hardhat.js";
import { StandardMerkleTree } from "@openzeppelin/merkle-tree";
import { TypedDataEncoder, Wallet } from "ethers";
import { randomDeviceKey } from "../../src/crypto/deviceKey.js";
import { domainOf } from "../../src/eip712/index.js";
import {
  PalletChildren,
  READING_ENCODING,
  childIdOf,
  epcHashOf,
  readingLeaf,
  shipmentIdOf,
  type Reading,
} from "../../src/custody/index.js";
import { checkpointSummary, summaryHash } from "../../src/custody/excursion.js";
import {
  EPC,
  HOUR,
  checkpointOf,
  createShipment,
  deployCustody,
  handoffMessage,
  readingsOf,
  signHandoff,
  type CustodyContext,
} from "../helpers/custody.js";

/** Expects `tx` to breach shipment `id` with `reading` of checkpoint 1 and expose the tracker that hid it. */
async function expectExposingBreach(f: CustodyContext, tx: Promise<unknown>, id: string, reading: Reading) {
  await expect(tx)
    .to.emit(f.ledger, "DeviceContradicted")
    .withArgs(f.trackers[0], id, 1, reading.temp)
    .and.to.emit(f.ledger, "Breached")
    .withArgs(id, 1, reading.temp, reading.at);
  expect((await f.ledger.shipmentOf(id)).breached).to.equal(true);
}

/** A shipment whose tracker posted its first checkpoint (in range). */
async function checkpointed() {
  const f = await deployCustody();
  const { id } = await createShipment(f);
  const key = f.trackerKeys[0];
  const first = await checkpointOf(f, key, id, 1, await readingsOf([500]));
  await f.ledger.checkpoint(first.cp, key.signer, first.signature);
  return { ...f, id, key, first };
}

/** A shipment handed from the shipper to the carrier (seq 1). */
async function inTransit() {
  const f = await deployCustody();
  const { id } = await createShipment(f);
  const h = await handoffMessage(id, f.shipper.address, f.carrier.address, 1);
  await f.ledger.handoff(
    h,
    await signHandoff(f.shipper, f.custodyDeployment, h),
    await signHandoff(f.carrier, f.custodyDeployment, h),
  );
  return { ...f, id };
}

async function handOff(
  f: CustodyContext,
  id: string,
  from: { address: string; signer: Parameters<typeof signHandoff>[0] },
  to: { address: string; signer: Parameters<typeof signHandoff>[0] },
  seq: number,
) {
  const h = await handoffMessage(id, from.address, to.address, seq);
  return f.ledger.handoff(
    h,
    await signHandoff(from.signer, f.custodyDeployment, h),
    await signHandoff(to.signer, f.custodyDeployment, h),
  );
}

describe("CustodyLedger", function () {
  it("exposes its registry and the catalogue's EIP-712 domain", async function () {
    const f = await loadFixture(deployCustody);
    expect(await f.ledger.registry()).to.equal(await f.registry.getAddress());
    expect(await f.ledger.DOMAIN_SEPARATOR()).to.equal(
      TypedDataEncoder.hashDomain(domainOf("custody", f.custodyDeployment)),
    );
  });

  describe("shipments", function () {
    it("creates a shipment: its id is its creator's (creator, keccak256 of its EPC URI), its creator the first custodian, its tracker key and trust period pinned", async function () {
      const f = await loadFixture(deployCustody);
      const { tx, id, params } = await createShipment(f);
      await expect(tx).to.emit(f.ledger, "ShipmentCreated");
      const expected = ethers.keccak256(
        ethers.AbiCoder.defaultAbiCoder().encode(["address", "bytes32"], [f.shipper.address, ethers.id(EPC)]),
      );
      expect(await f.ledger.shipmentIdOf(f.shipper.address, EPC))
        .to.equal(id)
        .and.to.equal(shipmentIdOf(f.shipper.address, EPC))
        .and.to.equal(expected);
      expect(await f.ledger.shipmentIdOf(f.carrier.address, EPC)).to.not.equal(id);
      const s = await f.ledger.shipmentOf(id);
      expect([s.custodian, s.handoffSeq, s.tracker, s.receiver, s.minTemp, s.maxTemp]).to.deep.equal([
        f.shipper.address,
        0n,
        f.trackers[0],
        f.receiver.address,
        200n,
        800n,
      ]);
      expect(s.deadline).to.equal(params.deadline);
      const trust = await f.registry.deviceTrust(f.trackers[0]);
      expect([s.trackerKeyGeneration, s.trackerPeriod, s.trackerKeyAttested]).to.deep.equal([
        trust.keyGeneration,
        trust.period,
        true,
      ]);
      await expect(createShipment(f))
        .to.be.revertedWithCustomError(f.ledger, "CustodyLedgerShipmentExists")
        .withArgs(id);
    });

    it("stores every field as given, a sub-zero range included (its three slots are written whole)", async function () {
      const f = await loadFixture(deployCustody);
      const { id, params } = await createShipment(f, {
        minTemp: -2500,
        maxTemp: -1800,
        maxSilence: (1 << 24) - 1,
        tracker: f.trackers[1],
      });
      const s = await f.ledger.shipmentOf(id);
      expect([s.custodian, s.handoffSeq, s.deadline, s.maxSilence]).to.deep.equal([
        f.shipper.address,
        0n,
        params.deadline,
        BigInt((1 << 24) - 1),
      ]);
      expect([
        s.tracker,
        s.lastCheckpointAt,
        s.checkpointSeq,
        s.breached,
        s.overdue,
        s.silent,
        s.delivered,
      ]).to.deep.equal([f.trackers[1], BigInt(await time.latest()), 0n, false, false, false, false]);
      expect([s.receiver, s.minTemp, s.maxTemp]).to.deep.equal([f.receiver.address, -2500n, -1800n]);
      const frozen = await checkpointOf(f, f.trackerKeys[1], id, 1, await readingsOf([-2000]));
      await expect(f.ledger.checkpoint(frozen.cp, f.trackerKeys[1].signer, frozen.signature)).to.not.emit(
        f.ledger,
        "Breached",
      );
      const thawed = await checkpointOf(f, f.trackerKeys[1], id, 2, await readingsOf([-1700]));
      await expect(f.ledger.checkpoint(thawed.cp, f.trackerKeys[1].signer, thawed.signature))
        .to.emit(f.ledger, "Breached")
        .withArgs(id, 2, -1700, thawed.cp.at);
    });

    it("refuses a tracker that is not an active device, and one whose key its owner installed alone unless the creator accepts owner keys", async function () {
      const f = await loadFixture(deployCustody);
      await expect(createShipment(f, { tracker: 12345n }))
        .to.be.revertedWithCustomError(f.ledger, "CustodyLedgerTrackerNotActive")
        .withArgs(12345n);
      await f.registry.connect(f.owner).reportStolen(f.trackers[1]);
      await expect(createShipment(f, { tracker: f.trackers[1] }))
        .to.be.revertedWithCustomError(f.ledger, "CustodyLedgerTrackerNotActive")
        .withArgs(f.trackers[1]);
      // The owner rotates the tracker to a key of its own, without the old key's signature.
      const installed = randomDeviceKey("secp256k1");
      await f.registry.connect(f.owner).rotateKey(f.trackers[0], await rotation(f, f.trackers[0], installed, null));
      await expect(createShipment(f))
        .to.be.revertedWithCustomError(f.ledger, "CustodyLedgerOwnerInstalledKey")
        .withArgs(f.trackers[0], 1);
      const { id } = await createShipment(f, { acceptOwnerKeys: true });
      const s = await f.ledger.shipmentOf(id);
      expect([s.trackerKeyGeneration, s.trackerKeyAttested]).to.deep.equal([1n, false]);
      const c = await checkpointOf(f, installed, id, 1, await readingsOf([500]));
      await f.ledger.checkpoint(c.cp, installed.signer, c.signature);
      // Once its manufacturer re-attests the key, shipments need not accept owner keys.
      await f.registry.connect(f.manufacturer).attestKey(f.trackers[0]);
      const attested = await createShipment(f, { epc: "urn:epc:id:sscc:0614141.1234567899" });
      expect((await f.ledger.shipmentOf(attested.id)).trackerKeyAttested).to.equal(true);
    });

    it("refuses bad terms (no receiver, an empty range, a past deadline, no silence allowed, no tracker)", async function () {
      const f = await loadFixture(deployCustody);
      for (const bad of [
        { receiver: ethers.ZeroAddress },
        { minTemp: 900 },
        { deadline: BigInt(await time.latest()) },
        { maxSilence: 0 },
        { tracker: 0n },
        { tracker: 1n << 192n },
      ]) {
        await expect(
          createShipment(f, { ...bad, epc: `urn:x:${JSON.stringify(bad, (_k, v) => String(v))}` }),
          JSON.stringify(bad, (_k, v) => String(v)),
        ).to.be.revertedWithCustomError(f.ledger, "CustodyLedgerInvalidParams");
      }
    });
  });

  describe("handoffs", function () {
    it("moves custody with both signatures, relayed by anyone; a contract wallet signs through ERC-1271", async function () {
      const f = await loadFixture(inTransit);
      expect((await f.ledger.shipmentOf(f.id)).custodian).to.equal(f.carrier.address);
      // carrier → warehouse (a contract wallet whose key is `stranger`), relayed by a third party.
      const h = await handoffMessage(f.id, f.carrier.address, f.walletAddress, 2);
      await expect(
        f.ledger
          .connect(f.guardians[0])
          .handoff(
            h,
            await signHandoff(f.carrier, f.custodyDeployment, h),
            await signHandoff(f.stranger, f.custodyDeployment, h),
          ),
      )
        .to.emit(f.ledger, "HandedOff")
        .withArgs(f.id, f.carrier.address, f.walletAddress, 2, h.bizStep, h.disposition, h.readPoint, h.at);
      const back = await handoffMessage(f.id, f.walletAddress, f.receiver.address, 3);
      await f.ledger.handoff(
        back,
        await signHandoff(f.stranger, f.custodyDeployment, back),
        await signHandoff(f.receiver, f.custodyDeployment, back),
      );
      const s = await f.ledger.shipmentOf(f.id);
      expect([s.custodian, s.handoffSeq]).to.deep.equal([f.receiver.address, 3n]);
    });

    it("attack: a handoff signed by one side only, or by a stranger, is refused", async function () {
      const f = await loadFixture(inTransit);
      const h = await handoffMessage(f.id, f.carrier.address, f.receiver.address, 2);
      const fromSig = await signHandoff(f.carrier, f.custodyDeployment, h);
      await expect(f.ledger.handoff(h, fromSig, "0x"))
        .to.be.revertedWithCustomError(f.ledger, "CustodyLedgerInvalidSignature")
        .withArgs(f.receiver.address);
      await expect(f.ledger.handoff(h, fromSig, fromSig))
        .to.be.revertedWithCustomError(f.ledger, "CustodyLedgerInvalidSignature")
        .withArgs(f.receiver.address);
      const toSig = await signHandoff(f.receiver, f.custodyDeployment, h);
      await expect(f.ledger.handoff(h, await signHandoff(f.stranger, f.custodyDeployment, h), toSig))
        .to.be.revertedWithCustomError(f.ledger, "CustodyLedgerInvalidSignature")
        .withArgs(f.carrier.address);
      // A stranger claiming to be the custodian.
      const grab = await handoffMessage(f.id, f.stranger.address, f.stranger.address, 2);
      const s = await signHandoff(f.stranger, f.custodyDeployment, grab);
      await expect(f.ledger.handoff(grab, s, s))
        .to.be.revertedWithCustomError(f.ledger, "CustodyLedgerNotCustodian")
        .withArgs(f.carrier.address, f.stranger.address);
    });

    it("attack: a replayed handoff, a skipped or a repeated seq is refused", async function () {
      const f = await loadFixture(deployCustody);
      const { id } = await createShipment(f);
      const h = await handoffMessage(id, f.shipper.address, f.carrier.address, 1);
      const sigs = [
        await signHandoff(f.shipper, f.custodyDeployment, h),
        await signHandoff(f.carrier, f.custodyDeployment, h),
      ] as const;
      await f.ledger.handoff(h, ...sigs);
      await expect(f.ledger.handoff(h, ...sigs)).to.be.revertedWithCustomError(f.ledger, "CustodyLedgerNotCustodian");
      // The carrier hands back at seq 1 again (a repeated seq), or at 3 (a skipped one).
      for (const seq of [1, 3]) {
        const back = await handoffMessage(id, f.carrier.address, f.shipper.address, seq);
        await expect(
          f.ledger.handoff(
            back,
            await signHandoff(f.carrier, f.custodyDeployment, back),
            await signHandoff(f.shipper, f.custodyDeployment, back),
          ),
        )
          .to.be.revertedWithCustomError(f.ledger, "CustodyLedgerWrongSequence")
          .withArgs(2, seq);
      }
    });

    it("attack: a handoff signed for another shipment, chain or contract, or past its deadline, is refused", async function () {
      const f = await loadFixture(deployCustody);
      const a = await createShipment(f);
      const b = await createShipment(f, { epc: "urn:epc:id:sscc:0614141.1234567891" });
      const h = await handoffMessage(a.id, f.shipper.address, f.carrier.address, 1);
      const signedForA = [
        await signHandoff(f.shipper, f.custodyDeployment, h),
        await signHandoff(f.carrier, f.custodyDeployment, h),
      ] as const;
      await expect(f.ledger.handoff({ ...h, shipment: b.id } as typeof h, ...signedForA)).to.be.revertedWithCustomError(
        f.ledger,
        "CustodyLedgerInvalidSignature",
      );
      for (const d of [
        { ...f.custodyDeployment, chainId: 1n },
        { ...f.custodyDeployment, verifyingContract: Wallet.createRandom().address },
      ]) {
        await expect(
          f.ledger.handoff(h, await signHandoff(f.shipper, d, h), await signHandoff(f.carrier, d, h)),
        ).to.be.revertedWithCustomError(f.ledger, "CustodyLedgerInvalidSignature");
      }
      await time.increase(2 * HOUR);
      await expect(f.ledger.handoff(h, ...signedForA))
        .to.be.revertedWithCustomError(f.ledger, "CustodyLedgerExpired")
        .withArgs(h.deadline);
      await expect(
        f.ledger.handoff({ ...h, shipment: ethers.id("nothing") } as typeof h, ...signedForA),
      ).to.be.revertedWithCustomError(f.ledger, "CustodyLedgerUnknownShipment");
    });
  });

  describe("checkpoints", function () {
    for (const which of [0, 1]) {
      it(`a ${which ? "P-256" : "secp256k1"} tracker's checkpoint is posted by anyone; in range it breaches nothing`, async function () {
        const f = await loadFixture(deployCustody);
        const { id } = await createShipment(f, { tracker: f.trackers[which] });
        const { cp, signature } = await checkpointOf(f, f.trackerKeys[which], id, 1, await readingsOf([450, 520, 610]));
        await expect(f.ledger.connect(f.guardians[1]).checkpoint(cp, f.trackerKeys[which].signer, signature))
          .to.emit(f.ledger, "CheckpointPosted")
          .withArgs(id, 1, cp.readingsRoot, 3, 450, 610, cp.location, cp.at);
        const s = await f.ledger.shipmentOf(id);
        expect([s.checkpointSeq, s.lastCheckpointAt, s.breached]).to.deep.equal([1n, cp.at, false]);
      });
    }

    it("an out-of-range min or max marks the shipment breached, once", async function () {
      const f = await loadFixture(deployCustody);
      const { id } = await createShipment(f);
      const { cp, signature } = await checkpointOf(f, f.trackerKeys[0], id, 1, await readingsOf([450, 910, 610]));
      await expect(f.ledger.checkpoint(cp, f.trackerKeys[0].signer, signature))
        .to.emit(f.ledger, "Breached")
        .withArgs(id, 1, 910, cp.at);
      expect((await f.ledger.shipmentOf(id)).breached).to.equal(true);
      // A breach is reported once: a later cold checkpoint is posted, with no second `Breached`.
      const next = await checkpointOf(f, f.trackerKeys[0], id, 2, await readingsOf([150]));
      await expect(f.ledger.checkpoint(next.cp, f.trackerKeys[0].signer, next.signature))
        .to.emit(f.ledger, "CheckpointPosted")
        .and.not.to.emit(f.ledger, "Breached");
      expect((await f.ledger.shipmentOf(id)).checkpointSeq).to.equal(2n);
    });

    it("attack: a checkpoint dated after its tracker was quarantined, or from a device that is not the shipment's tracker, is refused", async function () {
      const f = await loadFixture(deployCustody);
      const { id } = await createShipment(f);
      const readings = await readingsOf([500]);
      const foreign = await checkpointOf(f, f.trackerKeys[1], id, 1, readings);
      await expect(f.ledger.checkpoint(foreign.cp, f.trackerKeys[1].signer, foreign.signature))
        .to.be.revertedWithCustomError(f.ledger, "CustodyLedgerNotTrackerKey")
        .withArgs(f.trackers[0]);
      const stranger = randomDeviceKey("secp256k1");
      const forged = await checkpointOf(f, stranger, id, 1, readings);
      await expect(
        f.ledger.checkpoint(forged.cp, f.trackerKeys[0].signer, forged.signature),
      ).to.be.revertedWithCustomError(f.ledger, "CustodyLedgerInvalidTrackerSignature");
      const before = await checkpointOf(f, f.trackerKeys[0], id, 1, readings);
      await f.registry.connect(f.owner).reportStolen(f.trackers[0]);
      const reportedAt = await time.latest();
      await time.increase(60);
      const own = await checkpointOf(f, f.trackerKeys[0], id, 1, await readingsOf([500]));
      await expect(f.ledger.checkpoint(own.cp, f.trackerKeys[0].signer, own.signature))
        .to.be.revertedWithCustomError(f.ledger, "CustodyLedgerTrackerNotTrusted")
        .withArgs(own.cp.at, reportedAt);
      // Dated before the report, it still counts.
      await f.ledger.checkpoint(before.cp, f.trackerKeys[0].signer, before.signature);
      expect((await f.ledger.shipmentOf(id)).checkpointSeq).to.equal(1n);
    });

    it("attack: a checkpoint replayed, out of sequence, dated in the future or before the last, or signed for another contract, is refused", async function () {
      const f = await loadFixture(checkpointed);
      const { id, key, first } = f;
      await expect(f.ledger.checkpoint(first.cp, key.signer, first.signature))
        .to.be.revertedWithCustomError(f.ledger, "CustodyLedgerWrongSequence")
        .withArgs(2, 1);
      const skipped = await checkpointOf(f, key, id, 3, await readingsOf([500]));
      await expect(f.ledger.checkpoint(skipped.cp, key.signer, skipped.signature)).to.be.revertedWithCustomError(
        f.ledger,
        "CustodyLedgerWrongSequence",
      );
      const future = await checkpointOf(f, key, id, 2, await readingsOf([500]), {
        at: BigInt((await time.latest()) + HOUR),
      });
      await expect(f.ledger.checkpoint(future.cp, key.signer, future.signature)).to.be.revertedWithCustomError(
        f.ledger,
        "CustodyLedgerBadTime",
      );
      const backdated = await checkpointOf(f, key, id, 2, await readingsOf([500]), {
        at: BigInt(first.cp.at as bigint) - 1n,
      });
      await expect(f.ledger.checkpoint(backdated.cp, key.signer, backdated.signature)).to.be.revertedWithCustomError(
        f.ledger,
        "CustodyLedgerBadTime",
      );
      const other = { ...f.custodyDeployment, verifyingContract: Wallet.createRandom().address };
      const elsewhere = await checkpointOf(f, key, id, 2, await readingsOf([500]), {}, other);
      await expect(f.ledger.checkpoint(elsewhere.cp, key.signer, elsewhere.signature)).to.be.revertedWithCustomError(
        f.ledger,
        "CustodyLedgerInvalidTrackerSignature",
      );
    });
  });

  describe("excursion proofs", function () {
    it("one out-of-range reading proven against a posted root marks the breach, and exposes a tracker whose signed min/max hid it", async function () {
      const f = await loadFixture(deployCustody);
      const { id } = await createShipment(f);
      const key = f.trackerKeys[0];
      const readings = await readingsOf([500, 950, 600]);
      // The tracker signs a min and max that leave out its own 9.50 °C reading.
      const lying = await checkpointOf(f, key, id, 1, readings, { minTemp: 500, maxTemp: 600 });
      await f.ledger.checkpoint(lying.cp, key.signer, lying.signature);
      expect((await f.ledger.shipmentOf(id)).breached).to.equal(false);
      const proof = lying.batch.proof(1);
      // The leaf is OpenZeppelin StandardMerkleTree's.
      const values = readings.map((r) => [r.at, r.temp]);
      expect(StandardMerkleTree.of(values, [...READING_ENCODING]).leafHash(values[1])).to.equal(
        readingLeaf(readings[1]),
      );
      await expectExposingBreach(
        f,
        f.ledger.connect(f.guardians[2]).proveExcursion(lying.cp, key.signer, lying.signature, readings[1], proof),
        id,
        readings[1],
      );
    });

    it("against the tracker's latest checkpoint, the proof needs no signature: the ledger keeps its summary's hash", async function () {
      const f = await loadFixture(deployCustody);
      const { id, params } = await createShipment(f);
      const key = f.trackerKeys[0];
      const readings = await readingsOf([500, 950, 600]);
      const lying = await checkpointOf(f, key, id, 1, readings, { minTemp: 500, maxTemp: 600 });
      expect(await f.ledger.latestCheckpoint(f.trackers[0])).to.equal(ethers.ZeroHash);
      await f.ledger.checkpoint(lying.cp, key.signer, lying.signature);
      const summary = checkpointSummary(lying.cp, params);
      expect(await f.ledger.latestCheckpoint(f.trackers[0])).to.equal(summaryHash(summary));
      const tx = f.ledger.connect(f.guardians[2]).proveLatestExcursion(summary, readings[1], lying.batch.proof(1));
      await expectExposingBreach(f, tx, id, readings[1]);
    });

    it("a reading below the allowed minimum is an excursion too (a cold chain that froze)", async function () {
      const f = await loadFixture(deployCustody);
      const { id, params } = await createShipment(f);
      const key = f.trackerKeys[0];
      const readings = await readingsOf([500, -150, 600]);
      const lying = await checkpointOf(f, key, id, 1, readings, { minTemp: 500, maxTemp: 600 });
      await f.ledger.checkpoint(lying.cp, key.signer, lying.signature);
      expect(await f.ledger.verifyReading(lying.cp.readingsRoot, readings[1], lying.batch.proof(1))).to.equal(true);
      const tx = f.ledger.proveLatestExcursion(checkpointSummary(lying.cp, params), readings[1], lying.batch.proof(1));
      await expectExposingBreach(f, tx, id, readings[1]);
    });

    it("attack: a signature-free proof against an altered summary, an earlier checkpoint or another shipment's is refused", async function () {
      const f = await loadFixture(deployCustody);
      const { id, params } = await createShipment(f);
      const { id: other } = await createShipment(f, { epc: "urn:epc:id:sscc:0614141.0000000002" });
      const key = f.trackerKeys[0];
      const hot = await readingsOf([500, 950]);
      const first = await checkpointOf(f, key, id, 1, hot, { maxTemp: 500 });
      await f.ledger.checkpoint(first.cp, key.signer, first.signature);
      const summary = checkpointSummary(first.cp, params);
      const refused = (s: typeof summary) =>
        expect(f.ledger.proveLatestExcursion(s, hot[1], first.batch.proof(1)))
          .to.be.revertedWithCustomError(f.ledger, "CustodyLedgerNotLatestCheckpoint")
          .withArgs(f.trackers[0]);
      // Every field is bound: the hidden max, the allowed range, the sequence number.
      await refused({ ...summary, maxTemp: 950 });
      await refused({ ...summary, allowedMaxTemp: 400 });
      await refused({ ...summary, seq: 2n });
      // The tracker's next checkpoint, on another shipment, takes over as its latest.
      const next = await checkpointOf(f, key, other, 1, await readingsOf([500]));
      await f.ledger.checkpoint(next.cp, key.signer, next.signature);
      await refused(summary);
      await expect(
        f.ledger.proveLatestExcursion(checkpointSummary(next.cp, params), hot[1], first.batch.proof(1)),
      ).to.be.revertedWithCustomError(f.ledger, "CustodyLedgerInvalidProof");
      // The earlier checkpoint is still proven, with the tracker's signature.
      await expect(f.ledger.proveExcursion(first.cp, key.signer, first.signature, hot[1], first.batch.proof(1)))
        .to.emit(f.ledger, "DeviceContradicted")
        .withArgs(f.trackers[0], id, 1, 950);
    });

    it("attack: a checkpoint whose calldata carries dirty high bits (the same values once cleaned) is refused", async function () {
      const f = await loadFixture(deployCustody);
      const { id } = await createShipment(f);
      const key = f.trackerKeys[0];
      const c = await checkpointOf(f, key, id, 1, await readingsOf([500]));
      const data = f.ledger.interface.encodeFunctionData("checkpoint", [c.cp, key.signer, c.signature]);
      // Words after the selector: shipment, seq (uint32), ... Set a bit above the sequence number's 32.
      const word = 4 + 32;
      const dirty = ethers.concat([ethers.dataSlice(data, 0, word), "0x01", ethers.dataSlice(data, word + 1)]);
      const to = await f.ledger.getAddress();
      await expect(f.carrier.sendTransaction({ to, data: dirty })).to.revert(ethers);
      await f.carrier.sendTransaction({ to, data });
      expect((await f.ledger.shipmentOf(id)).checkpointSeq).to.equal(1n);
    });

    it("attack: a forged excursion proof (a reading not in the root, or an in-range one, or against an unposted or forged checkpoint) is refused", async function () {
      const f = await loadFixture(deployCustody);
      const { id } = await createShipment(f);
      const key = f.trackerKeys[0];
      const readings = await readingsOf([500, 550, 600]);
      const c = await checkpointOf(f, key, id, 1, readings);
      await f.ledger.checkpoint(c.cp, key.signer, c.signature);
      await expect(
        f.ledger.proveExcursion(c.cp, key.signer, c.signature, { at: readings[1].at, temp: 950 }, c.batch.proof(1)),
      ).to.be.revertedWithCustomError(f.ledger, "CustodyLedgerInvalidProof");
      await expect(f.ledger.proveExcursion(c.cp, key.signer, c.signature, readings[1], c.batch.proof(1)))
        .to.be.revertedWithCustomError(f.ledger, "CustodyLedgerNotAnExcursion")
        .withArgs(550);
      const hot = await readingsOf([500, 990]);
      const unposted = await checkpointOf(f, key, id, 2, hot);
      await expect(
        f.ledger.proveExcursion(unposted.cp, key.signer, unposted.signature, hot[1], unposted.batch.proof(1)),
      )
        .to.be.revertedWithCustomError(f.ledger, "CustodyLedgerWrongSequence")
        .withArgs(1, 2);
      // A root the tracker never signed, "signed" by someone else.
      const stranger = randomDeviceKey("secp256k1");
      const forged = await checkpointOf(f, stranger, id, 1, hot);
      await expect(
        f.ledger.proveExcursion(forged.cp, stranger.signer, forged.signature, hot[1], forged.batch.proof(1)),
      ).to.be.revertedWithCustomError(f.ledger, "CustodyLedgerNotTrackerKey");
      await expect(
        f.ledger.proveExcursion(forged.cp, key.signer, forged.signature, hot[1], forged.batch.proof(1)),
      ).to.be.revertedWithCustomError(f.ledger, "CustodyLedgerInvalidTrackerSignature");
    });
  });

  describe("overdue, silence, delivery", function () {
    it("attack: overdue and silent before their time are refused; after it anyone flags them, once", async function () {
      const f = await loadFixture(deployCustody);
      const { id, params } = await createShipment(f);
      await expect(f.ledger.markSilent(id)).to.be.revertedWithCustomError(f.ledger, "CustodyLedgerNotYet");
      await time.increase(HOUR - 10);
      const c = await checkpointOf(f, f.trackerKeys[0], id, 1, await readingsOf([500]));
      await f.ledger.checkpoint(c.cp, f.trackerKeys[0].signer, c.signature); // the silence clock restarts
      await time.increase(HOUR - 10);
      await expect(f.ledger.markSilent(id)).to.be.revertedWithCustomError(f.ledger, "CustodyLedgerNotYet");
      await time.increase(20);
      await expect(f.ledger.connect(f.stranger).markSilent(id)).to.emit(f.ledger, "MarkedSilent").withArgs(id, c.cp.at);
      await expect(f.ledger.markSilent(id)).to.be.revertedWithCustomError(f.ledger, "CustodyLedgerAlreadyFlagged");

      await expect(f.ledger.markOverdue(id))
        .to.be.revertedWithCustomError(f.ledger, "CustodyLedgerNotYet")
        .withArgs(params.deadline);
      await time.increaseTo(BigInt(params.deadline) + 1n);
      await expect(f.ledger.connect(f.stranger).markOverdue(id)).to.emit(f.ledger, "MarkedOverdue");
      await expect(f.ledger.markOverdue(id)).to.be.revertedWithCustomError(f.ledger, "CustodyLedgerAlreadyFlagged");
      const s = await f.ledger.shipmentOf(id);
      expect([s.silent, s.overdue, s.delivered]).to.deep.equal([true, true, false]);
    });

    it("the receiver's acceptance delivers it; attack: after delivery nothing changes it (handoff, checkpoint, excursion, flags, delivery again)", async function () {
      const f = await loadFixture(inTransit);
      await expect(f.ledger.connect(f.receiver).deliver(f.id))
        .to.be.revertedWithCustomError(f.ledger, "CustodyLedgerNotHeldByReceiver")
        .withArgs(f.carrier.address);
      await handOff(
        f,
        f.id,
        { address: f.carrier.address, signer: f.carrier },
        { address: f.receiver.address, signer: f.receiver },
        2,
      );
      await expect(f.ledger.connect(f.carrier).deliver(f.id))
        .to.be.revertedWithCustomError(f.ledger, "CustodyLedgerNotReceiver")
        .withArgs(f.carrier.address);
      const hot = await readingsOf([500, 990]);
      const c = await checkpointOf(f, f.trackerKeys[0], f.id, 1, hot, { maxTemp: 500 });
      await f.ledger.checkpoint(c.cp, f.trackerKeys[0].signer, c.signature);
      await expect(f.ledger.connect(f.receiver).deliver(f.id))
        .to.emit(f.ledger, "Delivered")
        .withArgs(f.id, f.receiver.address);
      const before = await f.ledger.shipmentOf(f.id);
      const delivered = (p: Promise<unknown>) =>
        expect(p).to.be.revertedWithCustomError(f.ledger, "CustodyLedgerDelivered").withArgs(f.id);
      const h = await handoffMessage(f.id, f.receiver.address, f.carrier.address, 3);
      await delivered(
        f.ledger.handoff(
          h,
          await signHandoff(f.receiver, f.custodyDeployment, h),
          await signHandoff(f.carrier, f.custodyDeployment, h),
        ),
      );
      const next = await checkpointOf(f, f.trackerKeys[0], f.id, 2, hot);
      await delivered(f.ledger.checkpoint(next.cp, f.trackerKeys[0].signer, next.signature));
      await delivered(f.ledger.proveExcursion(c.cp, f.trackerKeys[0].signer, c.signature, hot[1], c.batch.proof(1)));
      await delivered(f.ledger.proveLatestExcursion(checkpointSummary(c.cp, before), hot[1], c.batch.proof(1)));
      await delivered(f.ledger.connect(f.receiver).deliver(f.id));
      await time.increase(3 * 24 * HOUR);
      await delivered(f.ledger.markOverdue(f.id));
      await delivered(f.ledger.markSilent(f.id));
      expect(await f.ledger.shipmentOf(f.id)).to.deep.equal(before);
    });
  });

  describe("unknown shipments and edge cases", function () {
    it("every operation on a shipment that does not exist is refused as unknown", async function () {
      const f = await loadFixture(deployCustody);
      const ghost = ethers.id("no such shipment");
      const unknown = (p: Promise<unknown>) =>
        expect(p).to.be.revertedWithCustomError(f.ledger, "CustodyLedgerUnknownShipment").withArgs(ghost);
      const c = await checkpointOf(f, f.trackerKeys[0], ghost, 1, await readingsOf([500]));
      await unknown(f.ledger.checkpoint(c.cp, f.trackerKeys[0].signer, c.signature));
      await unknown(
        f.ledger.proveExcursion(c.cp, f.trackerKeys[0].signer, c.signature, c.batch.readings[0], c.batch.proof(0)),
      );
      await unknown(f.ledger.markOverdue(ghost));
      await unknown(f.ledger.markSilent(ghost));
      await unknown(f.ledger.connect(f.receiver).deliver(ghost));
    });

    it("refuses a handoff to nobody, and an excursion proof against checkpoint 0", async function () {
      const f = await loadFixture(deployCustody);
      const { id } = await createShipment(f);
      const h = await handoffMessage(id, f.shipper.address, ethers.ZeroAddress, 1);
      await expect(
        f.ledger.handoff(h, await signHandoff(f.shipper, f.custodyDeployment, h), "0x"),
      ).to.be.revertedWithCustomError(f.ledger, "CustodyLedgerInvalidParams");
      const c = await checkpointOf(f, f.trackerKeys[0], id, 0, await readingsOf([990]));
      await expect(
        f.ledger.proveExcursion(c.cp, f.trackerKeys[0].signer, c.signature, c.batch.readings[0], c.batch.proof(0)),
      ).to.be.revertedWithCustomError(f.ledger, "CustodyLedgerWrongSequence");
    });

    it("an honest tracker's excursion (its min/max showed it) proven after the breach: no evidence against the device, no second breach", async function () {
      const f = await loadFixture(deployCustody);
      const { id } = await createShipment(f);
      const key = f.trackerKeys[0];
      const readings = await readingsOf([100, 500]);
      const c = await checkpointOf(f, key, id, 1, readings);
      await f.ledger.checkpoint(c.cp, key.signer, c.signature); // min 1.00 °C: breached already
      const tx = f.ledger.proveExcursion(c.cp, key.signer, c.signature, readings[0], c.batch.proof(0));
      await expect(tx).to.not.emit(f.ledger, "DeviceContradicted");
      await expect(tx).to.not.emit(f.ledger, "Breached");
    });

    it("a shipment keeps the tracker key it started with: after a rotation the new key counts only for shipments created since, the first only for what it dated before", async function () {
      const f = await loadFixture(deployCustody);
      const { id } = await createShipment(f);
      const first = f.trackerKeys[0];
      const readings = await readingsOf([990]);
      const signedBefore = await checkpointOf(f, first, id, 1, readings, { maxTemp: 500, minTemp: 500 });
      const next = randomDeviceKey("secp256k1");
      await f.registry.connect(f.owner).rotateKey(f.trackers[0], await rotation(f, f.trackers[0], next, first));
      const rotatedAt = await time.latest();
      // The new key is not the shipment's key, whoever holds it.
      const byNext = await checkpointOf(f, next, id, 1, await readingsOf([500]));
      await expect(f.ledger.checkpoint(byNext.cp, next.signer, byNext.signature))
        .to.be.revertedWithCustomError(f.ledger, "CustodyLedgerNotTrackerKey")
        .withArgs(f.trackers[0]);
      // What the first key signed before the rotation lands after it, and its excursion is proven.
      await f.ledger.checkpoint(signedBefore.cp, first.signer, signedBefore.signature);
      await expect(
        f.ledger.proveExcursion(
          signedBefore.cp,
          first.signer,
          signedBefore.signature,
          readings[0],
          signedBefore.batch.proof(0),
        ),
      ).to.emit(f.ledger, "DeviceContradicted");
      // attack: the rotated-away first key (leaked, say) signs a made-up later checkpoint.
      await time.increase(60);
      const fake = await checkpointOf(f, first, id, 2, await readingsOf([500]));
      await expect(f.ledger.checkpoint(fake.cp, first.signer, fake.signature))
        .to.be.revertedWithCustomError(f.ledger, "CustodyLedgerTrackerNotTrusted")
        .withArgs(fake.cp.at, rotatedAt);
      // A shipment created after the rotation pins the new key.
      const later = await createShipment(f, { epc: "urn:epc:id:sscc:0614141.1234567892" });
      const c = await checkpointOf(f, next, later.id, 1, await readingsOf([500]));
      await f.ledger.checkpoint(c.cp, next.signer, c.signature);
      const old = await checkpointOf(f, first, later.id, 2, await readingsOf([500]));
      await expect(f.ledger.checkpoint(old.cp, first.signer, old.signature))
        .to.be.revertedWithCustomError(f.ledger, "CustodyLedgerNotTrackerKey")
        .withArgs(f.trackers[0]);
    });

    it("attack: a stolen (quarantined) tracker's signature dated after the report proves no excursion against an earlier checkpoint", async function () {
      const f = await loadFixture(checkpointed);
      const { id, key } = f;
      await f.registry.connect(f.owner).reportStolen(f.trackers[0]);
      const reportedAt = await time.latest();
      await time.increase(60);
      // The thief has the device: it signs a different root for the posted sequence number.
      const fake = await checkpointOf(f, key, id, 1, await readingsOf([500, 1200]), { maxTemp: 500 });
      await expect(
        f.ledger.proveExcursion(fake.cp, key.signer, fake.signature, fake.batch.readings[1], fake.batch.proof(1)),
      )
        .to.be.revertedWithCustomError(f.ledger, "CustodyLedgerTrackerNotTrusted")
        .withArgs(fake.cp.at, reportedAt);
      expect((await f.ledger.shipmentOf(id)).breached).to.equal(false);
    });

    it("a shipment takes at most 65,535 checkpoints: the 16-bit sequence never wraps", async function () {
      const f = await loadFixture(checkpointed);
      const { id, key } = f;
      // Tracking is the ledger's second mapping (slot 3, after EIP712's two strings and the custody
      // mapping): tracker (192 bits), last checkpoint time (40), checkpoint seq (16), flags (8).
      const slot = ethers.keccak256(ethers.AbiCoder.defaultAbiCoder().encode(["bytes32", "uint256"], [id, 3]));
      const ledger = await f.ledger.getAddress();
      const word = BigInt(await ethers.provider.getStorage(ledger, slot));
      expect(word & ((1n << 192n) - 1n)).to.equal(f.trackers[0]); // the right slot
      expect((word >> 232n) & 0xffffn).to.equal(1n);
      const full = word | (0xffffn << 232n);
      await ethers.provider.send("hardhat_setStorageAt", [ledger, slot, ethers.toBeHex(full, 32)]);
      expect((await f.ledger.shipmentOf(id)).checkpointSeq).to.equal(65_535n);
      const last = await checkpointOf(f, key, id, 65_536, await readingsOf([500]));
      await expect(f.ledger.checkpoint(last.cp, key.signer, last.signature))
        .to.be.revertedWithCustomError(f.ledger, "CustodyLedgerWrongSequence")
        .withArgs(65_536, 65_536);
    });
  });

  describe("pallets", function () {
    async function pallet() {
      const f = await deployCustody();
      const children = Array.from({ length: 1000 }, (_, i) => `urn:epc:id:sgtin:0614141.112345.${i}`);
      // The children tree is OpenZeppelin's StandardMerkleTree over [bytes32 keccak256(epc)].
      const tree = StandardMerkleTree.of(
        children.map((c) => [epcHashOf(c)]),
        ["bytes32"],
      );
      expect(new PalletChildren(children).root).to.equal(tree.root);
      const { id } = await createShipment(f, { epc: "urn:epc:id:sscc:0614141.9999999999", childrenRoot: tree.root });
      return { ...f, id, children, tree };
    }

    it("a pallet of 1,000 children moves with one handoff; a child split off later keeps its provenance", async function () {
      const f = await loadFixture(pallet);
      await handOff(
        f,
        f.id,
        { address: f.shipper.address, signer: f.shipper },
        { address: f.carrier.address, signer: f.carrier },
        1,
      );
      const child = f.children[417];
      const proof = f.tree.getProof([epcHashOf(child)]);
      const childId = childIdOf(f.id, child);
      expect(await f.ledger.childIdOf(f.id, child)).to.equal(childId);
      await expect(f.ledger.connect(f.shipper).splitChild(f.id, child, proof))
        .to.be.revertedWithCustomError(f.ledger, "CustodyLedgerNotCustodian")
        .withArgs(f.carrier.address, f.shipper.address);
      await expect(f.ledger.connect(f.carrier).splitChild(f.id, child, proof))
        .to.emit(f.ledger, "ShipmentCreated")
        .withArgs(
          childId,
          f.carrier.address,
          f.trackers[0],
          child,
          f.receiver.address,
          (await f.ledger.shipmentOf(f.id)).deadline,
          HOUR,
          200,
          800,
          ethers.ZeroHash,
          ethers.ZeroHash,
        )
        .and.to.emit(f.ledger, "ChildSplit")
        .withArgs(f.id, childId);
      const split = await f.ledger.shipmentOf(childId);
      const parent = await f.ledger.shipmentOf(f.id);
      expect(split.custodian).to.equal(f.carrier.address);
      // The child keeps the pallet's pinned tracker key and trust period.
      expect([split.trackerKeyGeneration, split.trackerPeriod, split.trackerKeyAttested]).to.deep.equal([
        parent.trackerKeyGeneration,
        parent.trackerPeriod,
        parent.trackerKeyAttested,
      ]);
      await expect(f.ledger.connect(f.carrier).splitChild(f.id, child, proof)).to.be.revertedWithCustomError(
        f.ledger,
        "CustodyLedgerShipmentExists",
      );
      await expect(
        f.ledger.connect(f.carrier).splitChild(f.id, "urn:epc:id:sgtin:0614141.112345.5000", proof),
      ).to.be.revertedWithCustomError(f.ledger, "CustodyLedgerInvalidProof");
      // Delivered, the pallet splits nothing more.
      await handOff(
        f,
        f.id,
        { address: f.carrier.address, signer: f.carrier },
        { address: f.receiver.address, signer: f.receiver },
        2,
      );
      await f.ledger.connect(f.receiver).deliver(f.id);
      const other = f.children[5];
      await expect(f.ledger.connect(f.receiver).splitChild(f.id, other, f.tree.getProof([epcHashOf(other)])))
        .to.be.revertedWithCustomError(f.ledger, "CustodyLedgerDelivered")
        .withArgs(f.id);
      const single = await createShipment(f);
      await expect(f.ledger.splitChild(single.id, child, proof))
        .to.be.revertedWithCustomError(f.ledger, "CustodyLedgerNotAPallet")
        .withArgs(single.id);
    });
  });
});

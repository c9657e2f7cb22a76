/**
 * Attacks on the custody ledger (issue 12: attack 2, custody half; attack 5; attack 9, the
 * `custody:history` half), each against the deployed ABI as an auditor would try it. Each one
 * worked before the fix: shipment ids were keccak256 of the EPC alone, a checkpoint counted from the
 * tracker's current key while it was Active, and `custody:history` judged handoff signatures with
 * ethers' `recoverAddress`.
 */
import { expect } from "chai";
import { ethers, connection, loadFixture, time } from "../helpers/hardhat.js";
import { BrowserProvider, TypedDataEncoder, recoverAddress } from "ethers";
import { randomDeviceKey } from "../../src/crypto/deviceKey.js";
import { isValidAccountSignature } from "../../src/crypto/signatureChecker.js";
import { domainOf, typesOf } from "../../src/eip712/index.js";
import { PalletChildren, childIdOf, shipmentIdOf } from "../../src/custody/index.js";
import { shipmentHistory } from "../../src/custody/history.js";
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
import { rotation } from "../helpers/registry.js";

const SECP256K1_N = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n;

/** The same ECDSA signature with s' = n − s and the other v: ecrecover gives the same signer. */
function highS(signature: string): string {
  const bytes = ethers.getBytes(signature);
  const s = BigInt(ethers.hexlify(bytes.slice(32, 64)));
  const v = bytes[64] === 27 ? 28 : 27;
  return ethers.concat([bytes.slice(0, 32), ethers.toBeHex(SECP256K1_N - s, 32), new Uint8Array([v])]);
}

/** The shipper's tracker, its pinned shipment, and a checkpoint 1 the tracker signed with a breach in it. */
async function shipmentWithSignedBreach() {
  const f = await deployCustody();
  const { id } = await createShipment(f);
  const key = f.trackerKeys[0];
  // The tracker's genuine checkpoint: a door left open at 11 °C. It is signed; it has not landed yet.
  const hot = await readingsOf([500, 1100, 520]);
  const genuine = await checkpointOf(f, key, id, 1, hot);
  return { ...f, id, key, hot, genuine };
}

async function expectCustodian(f: CustodyContext, id: string, custodian: { address: string }) {
  expect((await f.ledger.shipmentOf(id)).custodian).to.equal(custodian.address);
}

describe("security: custody attacks", function () {
  it("ATTACK: squat a shipment by front-running createShipment with the same EPC", async function () {
    const f = await loadFixture(deployCustody);
    // The stranger sees the shipper's createShipment in the mempool and sends the same EPC first,
    // naming himself receiver, and delivers it to himself.
    const squat = await createShipment(f, { from: f.stranger, receiver: f.stranger.address });
    await f.ledger.connect(f.stranger).deliver(squat.id);
    // The shipper's own create goes through: the id is the shipper's, not the EPC's.
    const { id } = await createShipment(f);
    expect(id).to.equal(shipmentIdOf(f.shipper.address, EPC)).and.not.equal(squat.id);
    const s = await f.ledger.shipmentOf(id);
    expect([s.custodian, s.receiver, s.delivered]).to.deep.equal([f.shipper.address, f.receiver.address, false]);
    // The stranger cannot move it, and a second create by anyone else is just another shipment.
    const grab = await handoffMessage(id, f.stranger.address, f.stranger.address, 1);
    const sig = await signHandoff(f.stranger, f.custodyDeployment, grab);
    await expect(f.ledger.handoff(grab, sig, sig))
      .to.be.revertedWithCustomError(f.ledger, "CustodyLedgerNotCustodian")
      .withArgs(f.shipper.address, f.stranger.address);
    const again = await createShipment(f, { from: f.carrier });
    expect(again.id).to.not.equal(id);
    expect((await f.ledger.shipmentOf(id)).custodian).to.equal(f.shipper.address);
  });

  it("ATTACK: squat a pallet child by creating its EPC ahead of the split", async function () {
    const f = await loadFixture(deployCustody);
    const epcs = Array.from({ length: 8 }, (_, i) => `urn:epc:id:sgtin:0614141.112345.${i}`);
    const children = new PalletChildren(epcs);
    const { id: pallet } = await createShipment(f, {
      epc: "urn:epc:id:sscc:0614141.9999999999",
      childrenRoot: children.root,
    });
    const child = epcs[3];
    // Ahead of the split, the stranger creates the child's EPC, and a pallet of his own holding it,
    // which he splits; the shipper itself once shipped that EPC alone too.
    await createShipment(f, { from: f.stranger, epc: child, receiver: f.stranger.address });
    const { id: strangerPallet } = await createShipment(f, {
      from: f.stranger,
      epc: "urn:epc:id:sscc:0614141.9999999999",
      childrenRoot: children.root,
    });
    await f.ledger.connect(f.stranger).splitChild(strangerPallet, child, children.proof(child));
    await createShipment(f, { epc: child });
    // The pallet's custodian still splits it: the child's id is the pallet's.
    await expect(f.ledger.connect(f.shipper).splitChild(pallet, child, children.proof(child)))
      .to.emit(f.ledger, "ChildSplit")
      .withArgs(pallet, childIdOf(pallet, child));
    await expectCustodian(f, childIdOf(pallet, child), f.shipper);
    expect(childIdOf(pallet, child)).to.not.equal(childIdOf(strangerPallet, child));
    expect((await f.ledger.shipmentOf(childIdOf(strangerPallet, child))).custodian).to.equal(f.stranger.address);
  });

  it("ATTACK: rotate the tracker to a shipper-held key to hide a breach", async function () {
    const f = await loadFixture(shipmentWithSignedBreach);
    // The shipper owns the tracker: before the genuine checkpoint lands, it rotates the tracker to
    // a key of its own (the owner's call and the new key's signature are all a rotation needs).
    const shipperKey = randomDeviceKey("secp256k1");
    await f.registry.connect(f.owner).rotateKey(f.trackers[0], await rotation(f, f.trackers[0], shipperKey, null));
    expect((await f.registry.deviceTrust(f.trackers[0])).keyAttested).to.equal(false);
    // Its forged in-range checkpoint is refused: the shipment keeps the key it started with.
    const forged = await checkpointOf(f, shipperKey, f.id, 1, await readingsOf([500, 510, 520]));
    await expect(f.ledger.checkpoint(forged.cp, shipperKey.signer, forged.signature))
      .to.be.revertedWithCustomError(f.ledger, "CustodyLedgerNotTrackerKey")
      .withArgs(f.trackers[0]);
    // The genuine checkpoint, signed before the rotation, lands after it and breaches the shipment;
    // its excursion proof (with the tracker's signature) is accepted too.
    await expect(f.ledger.checkpoint(f.genuine.cp, f.key.signer, f.genuine.signature))
      .to.emit(f.ledger, "Breached")
      .withArgs(f.id, 1, 1100, f.genuine.cp.at);
    await expect(
      f.ledger.proveExcursion(f.genuine.cp, f.key.signer, f.genuine.signature, f.hot[1], f.genuine.batch.proof(1)),
    ).to.not.to.revert(ethers);
    expect((await f.ledger.shipmentOf(f.id)).breached).to.equal(true);
    // A new shipment takes the owner-installed key only when its creator accepts that up front.
    await expect(createShipment(f, { epc: "urn:epc:id:sscc:0614141.1234567891" }))
      .to.be.revertedWithCustomError(f.ledger, "CustodyLedgerOwnerInstalledKey")
      .withArgs(f.trackers[0], 1);
  });

  it("ATTACK: report the tracker stolen to hide a breach", async function () {
    const f = await loadFixture(shipmentWithSignedBreach);
    // Before the genuine checkpoint lands, the shipper reports its tracker stolen...
    await f.registry.connect(f.owner).reportStolen(f.trackers[0]);
    const reportedAt = await time.latest();
    // ...but what the tracker signed before the report still lands, and breaches the shipment.
    await expect(f.ledger.checkpoint(f.genuine.cp, f.key.signer, f.genuine.signature))
      .to.emit(f.ledger, "Breached")
      .withArgs(f.id, 1, 1100, f.genuine.cp.at);
    // Whatever the tracker (or whoever holds it) signs dated after the report counts for nothing,
    // before the release and after it: the pinned trust period ended at the report.
    await time.increase(60);
    const during = await checkpointOf(f, f.key, f.id, 2, await readingsOf([500]));
    await expect(f.ledger.checkpoint(during.cp, f.key.signer, during.signature))
      .to.be.revertedWithCustomError(f.ledger, "CustodyLedgerTrackerNotTrusted")
      .withArgs(during.cp.at, reportedAt);
    await f.registry.connect(f.owner).release(f.trackers[0]);
    const after = await checkpointOf(f, f.key, f.id, 2, await readingsOf([500]));
    await expect(f.ledger.checkpoint(after.cp, f.key.signer, after.signature))
      .to.be.revertedWithCustomError(f.ledger, "CustodyLedgerTrackerNotTrusted")
      .withArgs(after.cp.at, reportedAt);
    // The shipment goes silent, which anyone flags; it stays breached.
    await time.increase(HOUR);
    await expect(f.ledger.markSilent(f.id)).to.emit(f.ledger, "MarkedSilent");
    const s = await f.ledger.shipmentOf(f.id);
    expect([s.breached, s.silent, s.checkpointSeq]).to.deep.equal([true, true, 1n]);
  });

  it("ATTACK: high-s handoff accepted by custody:history", async function () {
    const f = await loadFixture(deployCustody);
    const { id } = await createShipment(f);
    const ledger = await f.ledger.getAddress();
    const h = await handoffMessage(id, f.shipper.address, f.carrier.address, 1);
    const fromSig = await signHandoff(f.shipper, f.custodyDeployment, h);
    const toSig = await signHandoff(f.carrier, f.custodyDeployment, h);
    const digest = TypedDataEncoder.hash(domainOf("custody", f.custodyDeployment), typesOf("Handoff"), h);
    // The chain refuses the high-s twin of a custodian's signature (OpenZeppelin ECDSA); takes the original.
    const twin = highS(fromSig);
    await expect(f.ledger.handoff(h, twin, toSig))
      .to.be.revertedWithCustomError(f.ledger, "CustodyLedgerInvalidSignature")
      .withArgs(f.shipper.address);
    const landed = (await (await f.ledger.handoff(h, fromSig, toSig)).wait())!;
    expect((await shipmentHistory(ethers.provider, ledger, id)).allVerified).to.equal(true);

    // ethers' recoverAddress checks only s's top bit: it takes an s just above n/2, which
    // OpenZeppelin refuses. Such a signature recovers to a key nobody holds (it is made from r and
    // s, not signed), so the record showing it is a node's (or an index's) fabrication: here, the
    // handoff's transaction with that signature, and its event naming the recovered key as sender.
    const crafted = ethers.concat([
      ethers.dataSlice(fromSig, 0, 32),
      ethers.toBeHex(SECP256K1_N / 2n + 1n, 32),
      new Uint8Array([27]),
    ]);
    const signer = recoverAddress(digest, crafted);
    const wallet = await ethers.deployContract("ERC1271Wallet", [signer]); // OpenZeppelin ECDSA.tryRecover
    expect(await wallet.isValidSignature(digest, crafted)).to.equal("0x00000000");
    const data = f.ledger.interface.encodeFunctionData("handoff", [h, crafted, toSig]);
    const fromTopic = ethers.zeroPadValue(signer, 32).toLowerCase();
    const serve = (txInput: string, logFrom?: string) =>
      new BrowserProvider({
        request: async ({ method, params }: { method: string; params?: unknown[] }) => {
          const result = await connection.provider.request({ method, params });
          if (method === "eth_getTransactionByHash" && params?.[0] === landed.hash)
            return { ...(result as object), input: txInput };
          if (method === "eth_getLogs" && logFrom)
            return (result as { transactionHash: string; topics: string[] }[]).map((log) =>
              log.transactionHash === landed.hash && log.topics.length === 4
                ? { ...log, topics: [log.topics[0], log.topics[1], logFrom, log.topics[3]] }
                : log,
            );
          return result;
        },
      });
    for (const [what, provider] of [
      ["the high-s twin", serve(f.ledger.interface.encodeFunctionData("handoff", [h, twin, toSig]))],
      ["an s just above n/2", serve(data, fromTopic)],
    ] as const) {
      const history = await shipmentHistory(provider, ledger, id);
      const entry = history.entries.find((e) => e.kind === "handoff");
      expect(entry?.kind === "handoff" && entry.signatures.from, what).to.equal(false);
      expect(history.allVerified, what).to.equal(false);
    }

    // The shared check behind it refuses what OpenZeppelin's SignatureChecker refuses, for
    // accounts without code (ECDSA) and with code (ERC-1271).
    const p = ethers.provider;
    expect(await isValidAccountSignature(p, f.shipper.address, digest, fromSig)).to.equal(true);
    expect(await isValidAccountSignature(p, f.shipper.address, digest, twin)).to.equal(false);
    expect(await isValidAccountSignature(p, signer, digest, crafted)).to.equal(false);
    const v01 = ethers.concat([ethers.dataSlice(fromSig, 0, 64), new Uint8Array([ethers.getBytes(fromSig)[64] - 27])]);
    expect(await isValidAccountSignature(p, f.shipper.address, digest, v01)).to.equal(false);
    expect(await isValidAccountSignature(p, f.shipper.address, digest, ethers.dataSlice(fromSig, 0, 64))).to.equal(
      false,
    );
    const byWalletKey = await signHandoff(f.stranger, f.custodyDeployment, h);
    expect(await isValidAccountSignature(p, f.walletAddress, digest, byWalletKey)).to.equal(true);
    expect(await isValidAccountSignature(p, f.walletAddress, digest, highS(byWalletKey))).to.equal(false);
    expect(await isValidAccountSignature(p, f.walletAddress, digest, fromSig)).to.equal(false);
  });
});

/**
 * Attacks on smart-lock access (issue 12: attack 2, lock half, and attack 8), each against the
 * contracts and the lock role as a lock runs it: the chain read by `LockChainReader`, decisions by
 * `LockRole`. Each one worked before the fix.
 */
import { expect } from "chai";
import { ethers, loadFixture, time } from "../helpers/hardhat.js";
import type { HardhatEthersSigner } from "@nomicfoundation/hardhat-ethers/types";
import { TypedDataHasher } from "../../src/eip712/fast.js";
import { DeviceSignatureVerifier } from "../../src/crypto/verify.js";
import { randomDeviceKey, type DeviceKey } from "../../src/crypto/deviceKey.js";
import { LockRole } from "../../src/agent/roles/lock.js";
import { LockChainReader } from "../../src/agent/roles/lockSync.js";
import { signUnlockRequest, type CertificateFile } from "../../src/agent/roles/guest.js";
import { issueCertificate } from "../../src/agent/roles/lockOwner.js";
import { deployLocks, logBatch, type LockContext } from "../helpers/lock.js";
import { rotation } from "../helpers/registry.js";

const DAY = 86_400;

/** The lock fixture, with `owner` having appointed `other` as a manager for 90 days. */
async function managedLock() {
  const f = await deployLocks();
  const appointedUntil = BigInt((await time.latest()) + 90 * DAY);
  await f.locks.connect(f.owner).appointManager(f.lock, f.other.address, appointedUntil);
  return { ...f, manager: f.other, appointedUntil };
}

/** A to B to A: `owner` sells the lock to `stranger` and buys it back. */
async function sellAndBuyBack(f: LockContext) {
  await f.registry.connect(f.owner).transferFrom(f.owner.address, f.stranger.address, f.lock);
  await f.registry.connect(f.stranger).transferFrom(f.stranger.address, f.owner.address, f.lock);
}

describe("security: lock access attacks", function () {
  let hasher: TypedDataHasher;

  before(async function () {
    hasher = await TypedDataHasher.create();
  });

  /** The lock as it runs: its clock on the chain's, its state read from the chain from `fromBlock`. */
  async function lockDevice(f: LockContext, fromBlock = 0) {
    let now = await time.latest();
    const clock = () => now;
    const role = new LockRole({
      lock: f.lock,
      deployment: f.lockDeployment,
      hasher,
      verifier: new DeviceSignatureVerifier([f.verifierAddress]),
      maxStalenessS: 3600,
      clock,
    });
    const reader = new LockChainReader({
      provider: ethers.provider,
      registry: await f.registry.getAddress(),
      lockAccess: await f.locks.getAddress(),
      lock: f.lock,
      fromBlock,
      clock,
    });
    /** Syncs at the chain's current time, then decides `guest`'s answer to a fresh challenge. */
    const tryToOpen = async (cert: CertificateFile, guest: DeviceKey) => {
      now = await time.latest();
      await reader.lookupHolder(guest.signer); // as the lock service does for a holder it meets first
      role.update(await reader.read());
      const req = await signUnlockRequest(guest, cert, role.challenge(), hasher, { now });
      return role.decide(cert, req);
    };
    return { tryToOpen };
  }

  /** A certificate for `holder` signed by `issuer` under `owner`, valid from `from` for `days`, carrying `epoch`. */
  const certificate = (
    f: LockContext,
    issuer: HardhatEthersSigner,
    holder: DeviceKey,
    o: { from: number; days: number; epoch: bigint; keyId: bigint },
  ) =>
    issueCertificate(issuer, f.lockDeployment, {
      lock: f.lock,
      holder: holder.signer,
      owner: f.owner.address,
      keyId: o.keyId,
      // Dated when the stay starts, as an owner who prepares keys ahead dates them.
      issuedAt: o.from,
      validFrom: o.from,
      validUntil: o.from + o.days * DAY,
      epoch: Number(o.epoch),
    });

  it("ATTACK: a buy-back revives an old manager's revoke", async function () {
    const f = await loadFixture(managedLock);
    await sellAndBuyBack(f);
    // The manager was appointed until well after the buy-back, but in the owner's earlier period.
    expect(BigInt(await time.latest())).to.be.lessThan(f.appointedUntil);
    await expect(f.locks.connect(f.manager).revokeKey(f.lock, 5n))
      .to.be.revertedWithCustomError(f.locks, "LockAccessNotOwnerOrManager")
      .withArgs(f.lock, f.manager.address);
    expect(await f.locks.managerExpiry(f.lock, 2, f.manager.address)).to.equal(0n);
    // Appointed again, in this period, the manager may revoke again.
    await f.locks.connect(f.owner).appointManager(f.lock, f.manager.address, f.appointedUntil);
    await expect(f.locks.connect(f.manager).revokeKey(f.lock, 5n))
      .to.emit(f.locks, "KeyRevoked")
      .withArgs(f.lock, f.owner.address, 5n, 2, f.manager.address);
  });

  it("ATTACK: a buy-back revives an old manager's power to sign keys at the lock", async function () {
    const f = await loadFixture(managedLock);
    await sellAndBuyBack(f);
    const lock = await lockDevice(f);
    const guest = randomDeviceKey("secp256k1");
    // A fresh certificate from the old manager, carrying the current key epoch.
    const cert = await certificate(f, f.manager, guest, {
      from: await time.latest(),
      days: 7,
      epoch: await f.locks.keyEpoch(f.lock),
      keyId: 1n,
    });
    expect(await lock.tryToOpen(cert, guest)).to.include({ open: false, reason: "issuer" });
    // The owner's own certificate of this period opens.
    const own = await certificate(f, f.owner, guest, {
      from: await time.latest(),
      days: 7,
      epoch: await f.locks.keyEpoch(f.lock),
      keyId: 2n,
    });
    expect(await lock.tryToOpen(own, guest)).to.include({ open: true });
  });

  it("ATTACK: a buy-back revives the owner's and an old manager's certificates at the lock (keys dated ahead, for a stay after the buy-back)", async function () {
    const f = await loadFixture(managedLock);
    const guest = randomDeviceKey("p256", f.verifierAddress);
    const stay = (await time.latest()) + 10 * DAY;
    const epoch = await f.locks.keyEpoch(f.lock);
    const byOwner = await certificate(f, f.owner, guest, { from: stay, days: 7, epoch, keyId: 1n });
    const byManager = await certificate(f, f.manager, guest, { from: stay, days: 7, epoch, keyId: 2n });
    await sellAndBuyBack(f);
    // The owner trusts its manager again, in the new period.
    await f.locks.connect(f.owner).appointManager(f.lock, f.manager.address, f.appointedUntil);
    await time.increaseTo(stay + 60);
    const lock = await lockDevice(f);
    expect(await lock.tryToOpen(byOwner, guest)).to.include({ open: false, reason: "previous-owner" });
    expect(await lock.tryToOpen(byManager, guest)).to.include({ open: false, reason: "previous-owner" });
    // What the manager signs in this period opens.
    const now = await time.latest();
    const fresh = await certificate(f, f.manager, guest, {
      from: now,
      days: 1,
      epoch: await f.locks.keyEpoch(f.lock),
      keyId: 3n,
    });
    expect(await lock.tryToOpen(fresh, guest)).to.include({ open: true });
  });

  it("ATTACK: a buy-back revives the owner's certificates at a lock that reads the chain only from after the buy-back", async function () {
    const f = await loadFixture(deployLocks);
    const guest = randomDeviceKey("secp256k1");
    const byOwner = await certificate(f, f.owner, guest, {
      from: await time.latest(),
      days: 30,
      epoch: await f.locks.keyEpoch(f.lock),
      keyId: 1n,
    });
    await sellAndBuyBack(f);
    // A lock replaced (or reset) after the buy-back reads events from then on: no Transfer in sight.
    const lock = await lockDevice(f, (await ethers.provider.getBlockNumber()) + 1);
    expect(await lock.tryToOpen(byOwner, guest)).to.include({ open: false, reason: "previous-owner" });
  });

  it("ATTACK: an owner-installed key anchors a forged unlock log", async function () {
    const f = await loadFixture(deployLocks);
    // The genuine lock anchors its first batch.
    const genuine = await logBatch(f, f.lockKeys[0], f.lock, 1, ethers.id("the genuine records"));
    await f.locks.anchorLog(f.lockKeys[0].signer, genuine.batch, genuine.signature);
    // The owner rotates the lock to a key it holds, without the lock's signature, and signs the
    // next batch itself: records of its choosing (a denied entry rewritten as opened, say).
    const ownerHeld = randomDeviceKey("secp256k1");
    await f.registry.connect(f.owner).rotateKey(f.lock, await rotation(f, f.lock, ownerHeld, null));
    const forged = await logBatch(f, ownerHeld, f.lock, 2, ethers.id("records the owner prefers"));
    await expect(f.locks.connect(f.stranger).anchorLog(ownerHeld.signer, forged.batch, forged.signature))
      .to.be.revertedWithCustomError(f.locks, "LockAccessKeyNotAttested")
      .withArgs(f.lock, 1);
    expect((await f.locks.lockState(f.lock)).logSeq).to.equal(1n);
  });
});

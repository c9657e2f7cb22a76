import { expect } from "chai";
import { ethers, loadFixture, time } from "../helpers/hardhat.js";
import { TypedDataEncoder } from "ethers";
import { StandardMerkleTree } from "@openzeppelin/merkle-tree";
import { digest, typedData, typeHash, typesOf } from "../../src/eip712/index.js";
import { randomDeviceKey } from "../../src/crypto/deviceKey.js";
import { deadlineIn, rotation, Status } from "../helpers/registry.js";
import { deployLocks, logBatch } from "../helpers/lock.js";

const ROOT = ethers.id("log batch");

describe("LockAccess", function () {
  it("matches the catalogue's AccessKey and UnlockLog types and its domain", async function () {
    const { locks, lockDeployment } = await loadFixture(deployLocks);
    expect(await locks.ACCESS_KEY_TYPEHASH()).to.equal(typeHash("AccessKey"));
    expect(await locks.UNLOCK_LOG_TYPEHASH()).to.equal(typeHash("UnlockLog"));
    expect(await locks.DOMAIN_SEPARATOR()).to.equal(
      TypedDataEncoder.hashDomain({ name: "Custos LockAccess", version: "1", ...lockDeployment }),
    );
  });

  it("grants a key with no transaction: the owner signs a certificate off chain", async function () {
    const f = await loadFixture(deployLocks);
    const guest = randomDeviceKey("p256", f.verifierAddress);
    const before = await ethers.provider.getTransactionCount(f.owner.address);
    const cert = {
      lock: f.lock,
      holder: guest.signer,
      owner: f.owner.address,
      issuer: f.owner.address,
      issuedAt: 1_700_000_000n,
      validFrom: 1_700_000_000n,
      validUntil: 1_800_000_000n,
      schedule: 0n,
      epoch: 0,
      keyId: 1n,
    };
    const { domain, types, message } = typedData("AccessKey", f.lockDeployment, cert);
    const signature = await f.owner.signTypedData(domain, types, message);
    expect(ethers.recoverAddress(digest("AccessKey", f.lockDeployment, cert), signature)).to.equal(f.owner.address);
    expect(await ethers.provider.getTransactionCount(f.owner.address)).to.equal(before);
  });

  describe("revocation", function () {
    it("revokes one key in its 256-key word; twice is refused", async function () {
      const f = await loadFixture(deployLocks);
      await expect(f.locks.connect(f.owner).revokeKey(f.lock, 300n))
        .to.emit(f.locks, "KeyRevoked")
        .withArgs(f.lock, f.owner.address, 300n, 0, f.owner.address);
      expect(await f.locks.isRevoked(f.lock, 0, 300n)).to.equal(true);
      expect(await f.locks.isRevoked(f.lock, 0, 301n)).to.equal(false);
      expect(await f.locks.revokedWord(f.lock, 0, 1n)).to.equal(1n << 44n);
      await expect(f.locks.connect(f.owner).revokeKey(f.lock, 300n))
        .to.be.revertedWithCustomError(f.locks, "LockAccessAlreadyRevoked")
        .withArgs(f.lock, 300n);
    });

    it("attack: a stranger, or a manager whose appointment expired, cannot revoke", async function () {
      const f = await loadFixture(deployLocks);
      await expect(f.locks.connect(f.stranger).revokeKey(f.lock, 1n))
        .to.be.revertedWithCustomError(f.locks, "LockAccessNotOwnerOrManager")
        .withArgs(f.lock, f.stranger.address);
      const expiry = BigInt((await time.latest()) + 3600);
      await f.locks.connect(f.owner).appointManager(f.lock, f.other.address, expiry);
      await expect(f.locks.connect(f.other).revokeKey(f.lock, 1n))
        .to.emit(f.locks, "KeyRevoked")
        .withArgs(f.lock, f.owner.address, 1n, 0, f.other.address);
      await time.increaseTo(expiry + 1n);
      await expect(f.locks.connect(f.other).revokeKey(f.lock, 2n)).to.be.revertedWithCustomError(
        f.locks,
        "LockAccessNotOwnerOrManager",
      );
    });

    it("revokes every key at once by moving the lock's epoch; only the owner may", async function () {
      const f = await loadFixture(deployLocks);
      await expect(f.locks.connect(f.owner).revokeAll(f.lock))
        .to.emit(f.locks, "AllKeysRevoked")
        .withArgs(f.lock, f.owner.address, 1);
      expect((await f.locks.lockState(f.lock)).epoch).to.equal(1n);
      expect(await f.locks.keyEpoch(f.lock)).to.equal(1n);
      const expiry = BigInt((await time.latest()) + 3600);
      await f.locks.connect(f.owner).appointManager(f.lock, f.other.address, expiry);
      for (const signer of [f.other, f.stranger]) {
        await expect(f.locks.connect(signer).revokeAll(f.lock))
          .to.be.revertedWithCustomError(f.locks, "LockAccessNotOwner")
          .withArgs(f.lock, signer.address);
      }
    });

    it("attack: after a sale, the previous owner and its managers lose the lock; revocations are per ownership period", async function () {
      const f = await loadFixture(deployLocks);
      const expiry = BigInt((await time.latest()) + 3600);
      await f.locks.connect(f.owner).appointManager(f.lock, f.other.address, expiry);
      await f.locks.connect(f.owner).revokeKey(f.lock, 7n);
      await f.registry.connect(f.owner).transferFrom(f.owner.address, f.stranger.address, f.lock);
      for (const signer of [f.owner, f.other]) {
        await expect(f.locks.connect(signer).revokeKey(f.lock, 8n)).to.be.revertedWithCustomError(
          f.locks,
          "LockAccessNotOwnerOrManager",
        );
      }
      await expect(f.locks.connect(f.owner).revokeAll(f.lock)).to.be.revertedWithCustomError(
        f.locks,
        "LockAccessNotOwner",
      );
      expect(await f.locks.managerExpiry(f.lock, 1, f.other.address)).to.equal(0n);
      // The new owner's key 7 is a different key from the old owner's key 7.
      expect(await f.locks.isRevoked(f.lock, 1, 7n)).to.equal(false);
      await expect(f.locks.connect(f.stranger).revokeKey(f.lock, 7n))
        .to.emit(f.locks, "KeyRevoked")
        .withArgs(f.lock, f.stranger.address, 7n, 1, f.stranger.address);
    });

    it("revokes gaslessly through the ERC-2771 forwarder", async function () {
      const f = await loadFixture(deployLocks);
      const request = {
        from: f.owner.address,
        to: await f.locks.getAddress(),
        value: 0n,
        gas: 100_000n,
        nonce: await f.forwarder.nonces(f.owner.address),
        deadline: Number(await deadlineIn()),
        data: f.locks.interface.encodeFunctionData("revokeKey", [f.lock, 9n]),
      };
      const signature = await f.owner.signTypedData(
        { name: "Custos Forwarder", version: "1", ...f.forwarderDeployment },
        typesOf("ForwardRequest"),
        request,
      );
      await expect(f.forwarder.connect(f.stranger).execute({ ...request, signature }))
        .to.emit(f.locks, "KeyRevoked")
        .withArgs(f.lock, f.owner.address, 9n, 0, f.owner.address);
    });
  });

  describe("ownership periods", function () {
    it("the key epoch names the ownership period: a sale starts the next period at epoch << 16, a revoke-all counts within it", async function () {
      const f = await loadFixture(deployLocks);
      await f.locks.connect(f.owner).revokeAll(f.lock);
      await f.locks.connect(f.owner).revokeAll(f.lock);
      expect(await f.locks.keyEpoch(f.lock)).to.equal(2n);
      await f.registry.connect(f.owner).transferFrom(f.owner.address, f.stranger.address, f.lock);
      expect(await f.locks.keyEpoch(f.lock)).to.equal(1n << 16n);
      expect((await f.locks.lockState(f.lock)).epoch).to.equal(1n << 16n);
      await expect(f.locks.connect(f.stranger).revokeAll(f.lock))
        .to.emit(f.locks, "AllKeysRevoked")
        .withArgs(f.lock, f.stranger.address, (1 << 16) + 1);
      await f.registry.connect(f.stranger).transferFrom(f.stranger.address, f.owner.address, f.lock);
      // Bought back: neither period's revoke-alls carry over, and no earlier epoch comes back.
      expect(await f.locks.keyEpoch(f.lock)).to.equal(2n << 16n);
      expect(await f.locks.keyEpoch(f.lockIds[1])).to.equal(0n); // the other lock never changed hands
    });

    it("after a buy-back, the owner's revocations of the earlier period are not this period's", async function () {
      const f = await loadFixture(deployLocks);
      await f.locks.connect(f.owner).revokeKey(f.lock, 7n);
      await f.registry.connect(f.owner).transferFrom(f.owner.address, f.stranger.address, f.lock);
      await f.registry.connect(f.stranger).transferFrom(f.stranger.address, f.owner.address, f.lock);
      expect(await f.locks.isRevoked(f.lock, 0, 7n)).to.equal(true);
      expect(await f.locks.isRevoked(f.lock, 2, 7n)).to.equal(false);
      await expect(f.locks.connect(f.owner).revokeKey(f.lock, 7n))
        .to.emit(f.locks, "KeyRevoked")
        .withArgs(f.lock, f.owner.address, 7n, 2, f.owner.address);
    });

    it("refuses a 65,536th revoke-all in one ownership period (its count would reach the next period's epochs)", async function () {
      const f = await loadFixture(deployLocks);
      // LockState of the lock (mapping at slot 2, after EIP712's two fallback strings): epoch = 0xffff.
      const slot = ethers.solidityPackedKeccak256(["uint256", "uint256"], [f.lock, 2]);
      await ethers.provider.send("hardhat_setStorageAt", [
        await f.locks.getAddress(),
        slot,
        ethers.toBeHex(0xffff, 32),
      ]);
      expect(await f.locks.keyEpoch(f.lock)).to.equal(0xffffn);
      await expect(f.locks.connect(f.owner).revokeAll(f.lock))
        .to.be.revertedWithCustomError(f.locks, "LockAccessEpochExhausted")
        .withArgs(f.lock);
      // The way out: a transfer (to oneself, too) opens a new period, which revokes every key.
      await f.registry.connect(f.owner).transferFrom(f.owner.address, f.owner.address, f.lock);
      expect(await f.locks.keyEpoch(f.lock)).to.equal(1n << 16n);
      await f.locks.connect(f.owner).revokeAll(f.lock);
    });
  });

  describe("managers", function () {
    it("appoints, re-appoints and removes a manager; only the owner, only with a future expiry", async function () {
      const f = await loadFixture(deployLocks);
      const expiry = BigInt((await time.latest()) + 3600);
      await expect(f.locks.connect(f.owner).appointManager(f.lock, f.other.address, expiry))
        .to.emit(f.locks, "ManagerAppointed")
        .withArgs(f.lock, f.owner.address, f.other.address, 0, expiry);
      expect(await f.locks.managerExpiry(f.lock, 0, f.other.address)).to.equal(expiry);
      await expect(f.locks.connect(f.owner).appointManager(f.lock, f.other.address, 1n))
        .to.be.revertedWithCustomError(f.locks, "LockAccessInvalidExpiry")
        .withArgs(1n);
      await expect(
        f.locks.connect(f.other).appointManager(f.lock, f.stranger.address, expiry),
      ).to.be.revertedWithCustomError(f.locks, "LockAccessNotOwner");
      await expect(f.locks.connect(f.owner).removeManager(f.lock, f.other.address))
        .to.emit(f.locks, "ManagerRemoved")
        .withArgs(f.lock, f.owner.address, f.other.address, 0);
      await expect(f.locks.connect(f.other).revokeKey(f.lock, 1n)).to.be.revertedWithCustomError(
        f.locks,
        "LockAccessNotOwnerOrManager",
      );
      await expect(f.locks.connect(f.other).removeManager(f.lock, f.other.address)).to.be.revertedWithCustomError(
        f.locks,
        "LockAccessNotOwner",
      );
    });

    it("refuses an owner or manager action on a lock that does not exist", async function () {
      const f = await loadFixture(deployLocks);
      await expect(f.locks.connect(f.owner).revokeAll(42n))
        .to.be.revertedWithCustomError(f.locks, "LockAccessNotOwner")
        .withArgs(42n, f.owner.address);
      await expect(f.locks.connect(f.owner).revokeKey(42n, 1n))
        .to.be.revertedWithCustomError(f.locks, "LockAccessNotOwnerOrManager")
        .withArgs(42n, f.owner.address);
    });
  });

  describe("unlock log", function () {
    for (const index of [0, 1]) {
      it(`anchors batches in sequence from a ${index === 0 ? "secp256k1" : "P-256"} lock, chaining their roots`, async function () {
        const f = await loadFixture(deployLocks);
        const [key, lock] = [f.lockKeys[index], f.lockIds[index]];
        const one = await logBatch(f, key, lock, 1, ROOT);
        const head1 = await f.locks.nextLogHead(ethers.ZeroHash.slice(0, 50), one.batch);
        await expect(f.locks.connect(f.stranger).anchorLog(key.signer, one.batch, one.signature))
          .to.emit(f.locks, "LogAnchored")
          .withArgs(lock, 1, ROOT, 16, one.batch.fromTime, one.batch.toTime, head1);
        const two = await logBatch(f, key, lock, 2, ethers.id("second"));
        await f.locks.anchorLog(key.signer, two.batch, two.signature);
        const state = await f.locks.lockState(lock);
        expect(state.logSeq).to.equal(2n);
        expect(state.logHead).to.equal(await f.locks.nextLogHead(head1, two.batch));
      });
    }

    it("proves one unlock record against its anchored root", async function () {
      const f = await loadFixture(deployLocks);
      const encoding = ["uint256", "bytes32", "uint64", "bool", "uint8"];
      const records = Array.from({ length: 16 }, (_, i) => [
        f.lock,
        ethers.id(`challenge ${i}`),
        1_700_000_000n + BigInt(i),
        i % 5 !== 0,
        i % 5 === 0 ? 3 : 0,
      ]);
      const tree = StandardMerkleTree.of(records, encoding);
      const { batch, signature } = await logBatch(f, f.lockKeys[0], f.lock, 1, tree.root);
      await f.locks.anchorLog(f.lockKeys[0].signer, batch, signature);
      const [event] = await f.locks.queryFilter(f.locks.filters.LogAnchored(f.lock));
      const root = event.args.root;
      expect(await f.locks.verifyLogRecord(root, tree.leafHash(records[5]), tree.getProof(5))).to.equal(true);
      const forged = [...records[5]];
      forged[3] = true; // a denied unlock rewritten as opened
      expect(await f.locks.verifyLogRecord(root, tree.leafHash(forged), tree.getProof(5))).to.equal(false);
    });

    it("attack: a replayed or skipped log batch is refused", async function () {
      const f = await loadFixture(deployLocks);
      const one = await logBatch(f, f.lockKeys[0], f.lock, 1, ROOT);
      await f.locks.anchorLog(f.lockKeys[0].signer, one.batch, one.signature);
      await expect(f.locks.anchorLog(f.lockKeys[0].signer, one.batch, one.signature))
        .to.be.revertedWithCustomError(f.locks, "LockAccessWrongSequence")
        .withArgs(2, 1);
      const three = await logBatch(f, f.lockKeys[0], f.lock, 3, ROOT);
      await expect(f.locks.anchorLog(f.lockKeys[0].signer, three.batch, three.signature))
        .to.be.revertedWithCustomError(f.locks, "LockAccessWrongSequence")
        .withArgs(2, 3);
    });

    for (const [attack, change] of [
      ["another chain", { chainId: 1n }],
      ["another contract", { verifyingContract: ethers.Wallet.createRandom().address }],
    ] as const) {
      it(`attack: a log batch signed for ${attack} is refused`, async function () {
        const f = await loadFixture(deployLocks);
        const { batch, signature } = await logBatch(f, f.lockKeys[0], f.lock, 1, ROOT, {
          deployment: { ...f.lockDeployment, ...change },
        });
        await expect(f.locks.anchorLog(f.lockKeys[0].signer, batch, signature)).to.be.revertedWithCustomError(
          f.locks,
          "LockAccessInvalidSignature",
        );
      });
    }

    it("attack: a log batch signed by another device under the lock's key, or expired, is refused", async function () {
      const f = await loadFixture(deployLocks);
      const forged = await logBatch(f, f.lockKeys[1], f.lock, 1, ROOT);
      await expect(
        f.locks.anchorLog(f.lockKeys[0].signer, forged.batch, forged.signature),
      ).to.be.revertedWithCustomError(f.locks, "LockAccessInvalidSignature");
      const late = await logBatch(f, f.lockKeys[0], f.lock, 1, ROOT, { deadline: await deadlineIn(-1) });
      await expect(f.locks.anchorLog(f.lockKeys[0].signer, late.batch, late.signature)).to.be.revertedWithCustomError(
        f.locks,
        "LockAccessExpired",
      );
    });

    it("attack: a quarantined lock, a revoked lock or an unknown key cannot anchor", async function () {
      const f = await loadFixture(deployLocks);
      const { batch, signature } = await logBatch(f, f.lockKeys[0], f.lock, 1, ROOT);
      await f.registry.connect(f.owner).reportStolen(f.lock);
      await expect(f.locks.anchorLog(f.lockKeys[0].signer, batch, signature))
        .to.be.revertedWithCustomError(f.locks, "LockAccessLockNotActive")
        .withArgs(f.lock, Status.Quarantined);
      await f.registry.connect(f.owner).decommission(f.lock);
      await expect(f.locks.anchorLog(f.lockKeys[0].signer, batch, signature))
        .to.be.revertedWithCustomError(f.locks, "LockAccessLockNotActive")
        .withArgs(f.lock, Status.Revoked);
      const stranger = randomDeviceKey("secp256k1");
      await expect(f.locks.anchorLog(stranger.signer, batch, signature)).to.be.revertedWithCustomError(
        f.locks,
        "LockAccessUnknownLock",
      );
    });
  });

  describe("unlock log: key provenance", function () {
    it("takes the log from a key rotated in with the old key's signature", async function () {
      const f = await loadFixture(deployLocks);
      const next = randomDeviceKey("secp256k1");
      await f.registry.connect(f.owner).rotateKey(f.lock, await rotation(f, f.lock, next, f.lockKeys[0]));
      expect((await f.registry.deviceTrust(f.lock)).keyAttested).to.equal(true);
      const { batch, signature } = await logBatch(f, next, f.lock, 1, ROOT);
      await expect(f.locks.anchorLog(next.signer, batch, signature)).to.emit(f.locks, "LogAnchored");
      // The rotated-away key no longer resolves.
      const old = await logBatch(f, f.lockKeys[0], f.lock, 2, ROOT);
      await expect(f.locks.anchorLog(f.lockKeys[0].signer, old.batch, old.signature)).to.be.revertedWithCustomError(
        f.locks,
        "LockAccessUnknownLock",
      );
    });

    it("refuses the log from a key the owner installed alone until the manufacturer re-attests it", async function () {
      const f = await loadFixture(deployLocks);
      const installed = randomDeviceKey("p256", f.verifierAddress);
      await f.registry.connect(f.owner).rotateKey(f.lock, await rotation(f, f.lock, installed, null));
      const { batch, signature } = await logBatch(f, installed, f.lock, 1, ROOT);
      await expect(f.locks.anchorLog(installed.signer, batch, signature))
        .to.be.revertedWithCustomError(f.locks, "LockAccessKeyNotAttested")
        .withArgs(f.lock, 1);
      await f.registry.connect(f.manufacturer).attestKey(f.lock);
      await expect(f.locks.anchorLog(installed.signer, batch, signature)).to.emit(f.locks, "LogAnchored");
    });
  });

  it("reports the registry it reads", async function () {
    const f = await loadFixture(deployLocks);
    expect(await f.locks.registry()).to.equal(await f.registry.getAddress());
  });
});

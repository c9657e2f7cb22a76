import { expect } from "chai";
import { ethers } from "hardhat";
import { loadFixture, time } from "@nomicfoundation/hardhat-network-helpers";
import { TypedDataEncoder } from "ethers";
import { TYPES, digest, typeHash, typeString, typedData, typesOf, type TypeName } from "../../src/eip712";
import { randomDeviceKey, secp256k1Key } from "../../src/crypto/deviceKey";
import { DeviceBatch, batchIdOf, deviceIdOf, leafHash } from "../../src/registry/batch";
import {
  BatchStatus,
  FIRMWARE,
  MODEL,
  QUORUM,
  Status,
  claimArgs,
  commit,
  deadlineIn,
  deployRegistry,
  highS,
  makeBatch,
  makeKeys,
  provision,
  rotation,
  signAs,
  type RegistryContext,
} from "../helpers/registry";
import { shouldBehaveLikeDeviceSignedMessage } from "./behaviours/deviceSignedMessage";

const REASON = ethers.id("tamper detected");

async function claimed() {
  const ctx = await deployRegistry();
  const keys = makeKeys(ctx, 4, ["secp256k1", "p256"]);
  const { batch, batchId, ids } = await provision(ctx, keys);
  return { ...ctx, keys, batch, batchId, ids, id: ids[0], key: keys[0] };
}

/** A batch committed but not claimed yet. */
async function committed() {
  const ctx = await deployRegistry();
  const keys = makeKeys(ctx, 4, ["secp256k1", "p256"]);
  const batch = makeBatch(keys);
  const batchId = await commit(ctx.registry, ctx.manufacturer, batch);
  return { ...ctx, keys, batch, batchId };
}

describe("DeviceRegistry", function () {
  describe("deployment and administration", function () {
    it("sets the admin, quorum, P-256 verifier and interfaces", async function () {
      const { registry, admin, verifierAddress } = await loadFixture(deployRegistry);
      expect(await registry.hasRole(await registry.DEFAULT_ADMIN_ROLE(), admin.address)).to.equal(true);
      expect(await registry.guardianQuorum()).to.equal(QUORUM);
      expect(await registry.isKeyVerifier(verifierAddress)).to.equal(true);
      expect(await registry.name()).to.equal("Custos Device");
      for (const iface of ["0x80ac58cd", "0x7965db0b", "0x01ffc9a7"]) {
        expect(await registry.supportsInterface(iface)).to.equal(true); // ERC-721, AccessControl, ERC-165
      }
      expect(await registry.supportsInterface("0xffffffff")).to.equal(false);
      const iDeviceRegistry = (["deviceByKey", "deviceById", "resolveKey", "deviceStatus", "deviceNonce"] as const)
        .map((fn) => BigInt(registry.interface.getFunction(fn)!.selector))
        .reduce((x, y) => x ^ y);
      expect(await registry.supportsInterface(ethers.toBeHex(iDeviceRegistry, 4))).to.equal(true);
    });

    it("refuses a zero quorum, at deployment and later", async function () {
      const { registry, admin, forwarder } = await loadFixture(deployRegistry);
      await expect(
        ethers.deployContract("DeviceRegistry", [
          admin.address,
          await forwarder.getAddress(),
          0,
          ethers.ZeroAddress,
          [],
          [],
        ]),
      ).to.be.revertedWithCustomError(registry, "DeviceRegistryInvalidQuorum");
      await expect(registry.setGuardianQuorum(0)).to.be.revertedWithCustomError(
        registry,
        "DeviceRegistryInvalidQuorum",
      );
      await expect(registry.setGuardianQuorum(3)).to.emit(registry, "GuardianQuorumChanged").withArgs(3);
    });

    it("deploys without a P-256 verifier when given none", async function () {
      const { admin, forwarder } = await loadFixture(deployRegistry);
      const bare = await ethers.deployContract("DeviceRegistry", [
        admin.address,
        await forwarder.getAddress(),
        1,
        ethers.ZeroAddress,
        [],
        [],
      ]);
      expect(await bare.isKeyVerifier(ethers.ZeroAddress)).to.equal(false);
    });

    it("lets only the admin change the quorum and the key verifiers", async function () {
      const { registry, stranger, verifierAddress } = await loadFixture(deployRegistry);
      await expect(registry.connect(stranger).setGuardianQuorum(1)).to.be.revertedWithCustomError(
        registry,
        "AccessControlUnauthorizedAccount",
      );
      await expect(registry.connect(stranger).setKeyVerifier(verifierAddress, false)).to.be.revertedWithCustomError(
        registry,
        "AccessControlUnauthorizedAccount",
      );
      await expect(registry.setKeyVerifier(verifierAddress, false))
        .to.emit(registry, "KeyVerifierSet")
        .withArgs(verifierAddress, false);
      expect(await registry.isKeyVerifier(verifierAddress)).to.equal(false);
    });

    it("matches every registry type of the EIP-712 catalogue, and its domain", async function () {
      const { registry, deployment } = await loadFixture(deployRegistry);
      const constants: Partial<Record<TypeName, string>> = {
        DeviceClaim: await registry.DEVICE_CLAIM_TYPEHASH(),
        KeyRotation: await registry.KEY_ROTATION_TYPEHASH(),
        FirmwareAttestation: await registry.FIRMWARE_ATTESTATION_TYPEHASH(),
        LocationBeacon: await registry.LOCATION_BEACON_TYPEHASH(),
        NonceCancellation: await registry.NONCE_CANCELLATION_TYPEHASH(),
      };
      const registryTypes = (Object.keys(TYPES) as TypeName[]).filter((t) => TYPES[t].domain === "registry");
      expect(registryTypes.sort()).to.deep.equal(Object.keys(constants).sort());
      for (const t of registryTypes) {
        expect(TypedDataEncoder.from(typesOf(t)).encodeType(t)).to.equal(typeString(t));
        expect(constants[t], t).to.equal(typeHash(t));
      }
      expect(await registry.DOMAIN_SEPARATOR()).to.equal(
        TypedDataEncoder.hashDomain({ name: "Custos DeviceRegistry", version: "1", ...deployment }),
      );
    });
  });

  describe("batches", function () {
    it("commits a root for a manufacturer; the id is the root's first 48 bits", async function () {
      const { registry, manufacturer } = await loadFixture(deployRegistry);
      const batch = makeBatch(makeKeys(await loadFixture(deployRegistry), 3));
      await expect(registry.connect(manufacturer).commitBatch(batch.root))
        .to.emit(registry, "BatchCommitted")
        .withArgs(batch.id, manufacturer.address, batch.root);
      const stored = await registry.batch(batch.id);
      expect(stored.root).to.equal(batch.root);
      expect(stored.manufacturer).to.equal(manufacturer.address);
      expect(stored.status).to.equal(BatchStatus.Active);
      expect(await registry.batchIdOf(batch.root)).to.equal(batchIdOf(batch.root));
    });

    it("refuses an empty root, a root committed twice, and a non-manufacturer", async function () {
      const { registry, manufacturer, manufacturer2, stranger } = await loadFixture(deployRegistry);
      await expect(registry.connect(manufacturer).commitBatch(ethers.ZeroHash)).to.be.revertedWithCustomError(
        registry,
        "DeviceRegistryEmptyRoot",
      );
      const root = ethers.id("root");
      await registry.connect(manufacturer).commitBatch(root);
      await expect(registry.connect(manufacturer2).commitBatch(root))
        .to.be.revertedWithCustomError(registry, "DeviceRegistryBatchExists")
        .withArgs(batchIdOf(root));
      await expect(registry.connect(stranger).commitBatch(ethers.id("other"))).to.be.revertedWithCustomError(
        registry,
        "AccessControlUnauthorizedAccount",
      );
    });

    it("quarantines every device of a batch in O(1), claimed or not, and releases it", async function () {
      const f = await loadFixture(committed);
      const a = await claimArgs(f, f.keys[0], f.batch, f.batchId, f.owner.address);
      await f.registry.claim(a.claim, a.proof, a.signature);
      const id = deviceIdOf(f.keys[0].signer);
      await expect(f.registry.connect(f.manufacturer).quarantineBatch(f.batchId, REASON))
        .to.emit(f.registry, "BatchStatusChanged")
        .withArgs(f.batchId, BatchStatus.Quarantined, REASON);
      expect((await f.registry.deviceById(id)).status).to.equal(Status.Quarantined);
      expect((await f.registry.deviceByKey(f.keys[0].signer)).status).to.equal(Status.Quarantined);
      const b = await claimArgs(f, f.keys[1], f.batch, f.batchId, f.owner.address);
      await expect(f.registry.claim(b.claim, b.proof, b.signature))
        .to.be.revertedWithCustomError(f.registry, "DeviceRegistryBatchNotActive")
        .withArgs(f.batchId, BatchStatus.Quarantined);

      await f.registry.connect(f.manufacturer).releaseBatch(f.batchId);
      expect((await f.registry.deviceById(id)).status).to.equal(Status.Active);
      await expect(f.registry.claim(b.claim, b.proof, b.signature)).not.to.be.reverted;
    });

    it("revokes a whole batch for good: claimed devices are revoked, unclaimed ones cannot be claimed", async function () {
      const f = await loadFixture(committed);
      const a = await claimArgs(f, f.keys[0], f.batch, f.batchId, f.owner.address);
      await f.registry.claim(a.claim, a.proof, a.signature);
      const id = deviceIdOf(f.keys[0].signer);
      await f.registry.connect(f.admin).revokeBatch(f.batchId, REASON);
      expect((await f.registry.deviceById(id)).status).to.equal(Status.Revoked);
      const b = await claimArgs(f, f.keys[1], f.batch, f.batchId, f.owner.address);
      await expect(f.registry.claim(b.claim, b.proof, b.signature))
        .to.be.revertedWithCustomError(f.registry, "DeviceRegistryBatchNotActive")
        .withArgs(f.batchId, BatchStatus.Revoked);
      for (const call of [
        f.registry.connect(f.manufacturer).releaseBatch(f.batchId),
        f.registry.connect(f.manufacturer).quarantineBatch(f.batchId, REASON),
        f.registry.connect(f.admin).revokeBatch(f.batchId, REASON),
      ]) {
        await expect(call).to.be.revertedWithCustomError(f.registry, "DeviceRegistryBatchRevoked");
      }
      // Owner calls cannot revive it either: the batch keeps it revoked.
      await f.registry.connect(f.owner).reportStolen(id);
      await f.registry.connect(f.owner).release(id);
      expect((await f.registry.deviceById(id)).status).to.equal(Status.Revoked);
      await expect(f.registry.connect(f.owner).transferFrom(f.owner.address, f.other.address, id))
        .to.be.revertedWithCustomError(f.registry, "DeviceRegistryWrongStatus")
        .withArgs(id, Status.Revoked);
    });

    it("refuses a status the batch already has, and unknown batches", async function () {
      const f = await loadFixture(committed);
      await expect(f.registry.connect(f.manufacturer).releaseBatch(f.batchId)).to.be.revertedWithCustomError(
        f.registry,
        "DeviceRegistryBatchNotActive",
      );
      await expect(f.registry.connect(f.manufacturer).quarantineBatch(12345n, REASON))
        .to.be.revertedWithCustomError(f.registry, "DeviceRegistryUnknownBatch")
        .withArgs(12345n);
    });

    it("attack: another manufacturer, a stranger, or a manufacturer whose role was revoked cannot touch a batch", async function () {
      const f = await loadFixture(committed);
      for (const signer of [f.manufacturer2, f.stranger]) {
        await expect(f.registry.connect(signer).quarantineBatch(f.batchId, REASON))
          .to.be.revertedWithCustomError(f.registry, "DeviceRegistryUnauthorized")
          .withArgs(signer.address);
      }
      await f.registry.revokeRole(await f.registry.MANUFACTURER_ROLE(), f.manufacturer.address);
      await expect(f.registry.connect(f.manufacturer).revokeBatch(f.batchId, REASON)).to.be.revertedWithCustomError(
        f.registry,
        "DeviceRegistryUnauthorized",
      );
    });
  });

  describe("claim", function () {
    for (const kind of ["secp256k1", "p256"] as const) {
      it(`mints a ${kind} device to its owner, relayed by a stranger`, async function () {
        const f = await loadFixture(committed);
        const key = f.keys[kind === "secp256k1" ? 0 : 1];
        expect(key.kind).to.equal(kind);
        const id = deviceIdOf(key.signer);
        expect(await f.registry.deviceIdOf(key.signer)).to.equal(id);
        expect(await f.registry.isKeyAvailable(key.signer)).to.equal(true);
        const a = await claimArgs(f, key, f.batch, f.batchId, f.owner.address);
        await expect(f.registry.connect(f.stranger).claim(a.claim, a.proof, a.signature))
          .to.emit(f.registry, "DeviceClaimed")
          .withArgs(id, f.owner.address, f.batchId, key.signer, MODEL, FIRMWARE)
          .and.to.emit(f.registry, "Transfer")
          .withArgs(ethers.ZeroAddress, f.owner.address, id);
        expect(await f.registry.ownerOf(id)).to.equal(f.owner.address);
        const ref = await f.registry.deviceByKey(key.signer);
        expect([ref.id, ref.owner, ref.status]).to.deep.equal([id, f.owner.address, BigInt(Status.Active)]);
        const info = await f.registry.deviceInfo(id);
        expect(info.batchId).to.equal(f.batchId);
        expect(info.firmware).to.equal(FIRMWARE.slice(0, 34));
        expect(info.firmwareRevoked).to.equal(false);
        expect(await f.registry.isKeyAvailable(key.signer)).to.equal(false);
      });
    }

    it("claims several devices in one transaction through multicall", async function () {
      const f = await loadFixture(committed);
      const calls = [];
      for (const key of f.keys.slice(0, 3)) {
        const a = await claimArgs(f, key, f.batch, f.batchId, f.owner.address);
        calls.push(f.registry.interface.encodeFunctionData("claim", [a.claim, a.proof, a.signature]));
      }
      await f.registry.connect(f.stranger).multicall(calls);
      expect(await f.registry.balanceOf(f.owner.address)).to.equal(3n);
    });

    it("attack: a proof from another batch is refused", async function () {
      const f = await loadFixture(committed);
      const otherKeys = makeKeys(f, 2);
      const otherBatch = makeBatch(otherKeys);
      await commit(f.registry, f.manufacturer, otherBatch);
      const a = await claimArgs(f, f.keys[0], f.batch, f.batchId, f.owner.address);
      // The leaf of batch A with its (valid) proof, presented as a claim in batch B.
      const forged = await claimArgs(f, f.keys[0], f.batch, otherBatch.id, f.owner.address);
      await expect(f.registry.claim(forged.claim, a.proof, forged.signature)).to.be.revertedWithCustomError(
        f.registry,
        "DeviceRegistryInvalidProof",
      );
    });

    it("attack: a leaf with altered model or firmware is refused", async function () {
      const f = await loadFixture(committed);
      const a = await claimArgs(f, f.keys[0], f.batch, f.batchId, f.owner.address);
      for (const claim of [
        { ...a.claim, model: ethers.encodeBytes32String("other-model") },
        { ...a.claim, firmwareHash: ethers.id("backdoored firmware") },
      ]) {
        await expect(f.registry.claim(claim, a.proof, a.signature)).to.be.revertedWithCustomError(
          f.registry,
          "DeviceRegistryInvalidProof",
        );
      }
    });

    it("attack: claiming the same device twice is refused", async function () {
      const f = await loadFixture(committed);
      const a = await claimArgs(f, f.keys[0], f.batch, f.batchId, f.owner.address);
      await f.registry.claim(a.claim, a.proof, a.signature);
      await expect(f.registry.claim(a.claim, a.proof, a.signature))
        .to.be.revertedWithCustomError(f.registry, "DeviceRegistryKeyTaken")
        .withArgs(ethers.keccak256(f.keys[0].signer));
      const b = await claimArgs(f, f.keys[0], f.batch, f.batchId, f.other.address);
      await expect(f.registry.claim(b.claim, b.proof, b.signature)).to.be.revertedWithCustomError(
        f.registry,
        "DeviceRegistryKeyTaken",
      );
    });

    it("attack: the same key provisioned in two batches is claimed only once", async function () {
      const f = await loadFixture(committed);
      const again = new DeviceBatch([
        { deviceKey: f.keys[0].signer, model: MODEL, firmwareHash: ethers.id("firmware 2") },
        { deviceKey: randomDeviceKey("secp256k1").signer, model: MODEL, firmwareHash: FIRMWARE },
      ]);
      await commit(f.registry, f.manufacturer2, again);
      const a = await claimArgs(f, f.keys[0], f.batch, f.batchId, f.owner.address);
      await f.registry.claim(a.claim, a.proof, a.signature);
      const b = await claimArgs(f, f.keys[0], again, again.id, f.other.address);
      await expect(f.registry.claim(b.claim, b.proof, b.signature)).to.be.revertedWithCustomError(
        f.registry,
        "DeviceRegistryKeyTaken",
      );
    });

    it("attack: a device signature made for another owner is refused", async function () {
      const f = await loadFixture(committed);
      const a = await claimArgs(f, f.keys[0], f.batch, f.batchId, f.stranger.address, { signOwner: f.owner.address });
      await expect(f.registry.connect(f.stranger).claim(a.claim, a.proof, a.signature)).to.be.revertedWithCustomError(
        f.registry,
        "DeviceRegistryInvalidSignature",
      );
    });

    for (const [attack, change] of [
      ["another chain", { chainId: 5n }],
      ["another contract", { verifyingContract: ethers.Wallet.createRandom().address }],
    ] as const) {
      it(`attack: a claim signature made for ${attack} is refused`, async function () {
        const f = await loadFixture(committed);
        const a = await claimArgs(f, f.keys[0], f.batch, f.batchId, f.owner.address, {
          deployment: { ...f.deployment, ...change },
        });
        await expect(f.registry.claim(a.claim, a.proof, a.signature)).to.be.revertedWithCustomError(
          f.registry,
          "DeviceRegistryInvalidSignature",
        );
      });
    }

    it("attack: a claim past its deadline is refused", async function () {
      const f = await loadFixture(committed);
      const a = await claimArgs(f, f.keys[0], f.batch, f.batchId, f.owner.address, { deadline: await deadlineIn(60) });
      await time.increase(61);
      await expect(f.registry.claim(a.claim, a.proof, a.signature))
        .to.be.revertedWithCustomError(f.registry, "DeviceRegistryExpired")
        .withArgs(a.claim.deadline);
    });

    for (const index of [0, 1]) {
      it(`attack: the high-s twin of a ${index === 0 ? "secp256k1" : "P-256"} claim signature is refused`, async function () {
        const f = await loadFixture(committed);
        const a = await claimArgs(f, f.keys[index], f.batch, f.batchId, f.owner.address);
        await expect(
          f.registry.claim(a.claim, a.proof, highS(f.keys[index], a.signature)),
        ).to.be.revertedWithCustomError(f.registry, "DeviceRegistryInvalidSignature");
        await expect(f.registry.claim(a.claim, a.proof, a.signature)).not.to.be.reverted;
      });
    }

    it("attack: a malformed claim signature is refused", async function () {
      const f = await loadFixture(committed);
      const a = await claimArgs(f, f.keys[1], f.batch, f.batchId, f.owner.address);
      for (const bad of ["0x", "0x1234", ethers.concat([a.signature, "0x01"])]) {
        await expect(f.registry.claim(a.claim, a.proof, bad)).to.be.revertedWithCustomError(
          f.registry,
          "DeviceRegistryInvalidSignature",
        );
      }
    });

    it("attack: a signature by a key other than the leaf's is refused", async function () {
      const f = await loadFixture(committed);
      const a = await claimArgs(f, f.keys[0], f.batch, f.batchId, f.owner.address);
      const impostor = signAs(f.keys[2], "DeviceClaim", f.deployment, {
        owner: f.owner.address,
        batch: f.batchId,
        deadline: a.claim.deadline,
      });
      await expect(f.registry.claim(a.claim, a.proof, impostor)).to.be.revertedWithCustomError(
        f.registry,
        "DeviceRegistryInvalidSignature",
      );
    });

    it("attack: a contract wallet posing as a device key (ERC-1271) cannot claim with its owner's signature", async function () {
      const f = await loadFixture(committed);
      // The wallet answers ERC-1271 for its owner's signatures; a device key must sign itself.
      const wallet = await ethers.deployContract("ERC1271Wallet", [f.stranger.address]);
      const walletKey = await wallet.getAddress();
      const batch = new DeviceBatch(
        [walletKey, f.keys[0].signer].map((deviceKey) => ({ deviceKey, model: MODEL, firmwareHash: FIRMWARE })),
      );
      await commit(f.registry, f.manufacturer, batch);
      const deadline = await deadlineIn();
      const message = { owner: f.stranger.address, batch: batch.id, deadline };
      const t = typedData("DeviceClaim", f.deployment, message);
      const signature = await f.stranger.signTypedData(t.domain, t.types, message);
      const magic = await wallet.isValidSignature(digest("DeviceClaim", f.deployment, message), signature);
      expect(magic).to.equal("0x1626ba7e"); // the wallet vouches for it
      const claim = {
        owner: f.stranger.address,
        batchId: batch.id,
        deviceKey: walletKey,
        model: MODEL,
        firmwareHash: FIRMWARE,
        deadline,
      };
      await expect(f.registry.claim(claim, batch.proof(walletKey), signature)).to.be.revertedWithCustomError(
        f.registry,
        "DeviceRegistryInvalidSignature",
      );
    });

    it("refuses the zero owner and keys of an unsupported shape or verifier", async function () {
      const f = await loadFixture(committed);
      const a = await claimArgs(f, f.keys[0], f.batch, f.batchId, ethers.ZeroAddress);
      await expect(f.registry.claim(a.claim, a.proof, a.signature)).to.be.revertedWithCustomError(
        f.registry,
        "DeviceRegistryInvalidOwner",
      );
      // A manufacturer provisioned a P-256 key behind a verifier the registry does not trust.
      const rogue = ethers.concat([ethers.Wallet.createRandom().address, ethers.dataSlice(f.keys[1].signer, 20)]);
      const odd = new DeviceBatch(
        [rogue, f.keys[0].signer].map((deviceKey) => ({ deviceKey, model: MODEL, firmwareHash: FIRMWARE })),
      );
      await commit(f.registry, f.manufacturer, odd);
      const claim = { ...a.claim, owner: f.owner.address, batchId: odd.id, deviceKey: rogue };
      await expect(f.registry.claim(claim, odd.proof(rogue), "0x")).to.be.revertedWithCustomError(
        f.registry,
        "DeviceRegistryUnsupportedKey",
      );
    });

    it("refuses a key shorter than an address", async function () {
      const f = await loadFixture(committed);
      const short = ethers.hexlify(ethers.randomBytes(19));
      // StandardMerkleTree accepts any bytes; the registry refuses what cannot be a signer.
      const { StandardMerkleTree } = await import("@openzeppelin/merkle-tree");
      const tree = StandardMerkleTree.of(
        [
          [short, MODEL, FIRMWARE],
          [f.keys[0].signer, MODEL, FIRMWARE],
        ],
        ["bytes", "bytes32", "bytes32"],
      );
      await f.registry.connect(f.manufacturer).commitBatch(tree.root);
      const claim = {
        owner: f.owner.address,
        batchId: batchIdOf(tree.root),
        deviceKey: short,
        model: MODEL,
        firmwareHash: FIRMWARE,
        deadline: await deadlineIn(),
      };
      await expect(f.registry.claim(claim, tree.getProof(0), "0x")).to.be.revertedWithCustomError(
        f.registry,
        "DeviceRegistryUnsupportedKey",
      );
    });

    it("attack: re-claiming a device with its old signature after it was returned is refused", async function () {
      const f = await loadFixture(committed);
      const a = await claimArgs(f, f.keys[0], f.batch, f.batchId, f.owner.address);
      await f.registry.claim(a.claim, a.proof, a.signature);
      const id = deviceIdOf(f.keys[0].signer);
      // The owner sold it on; the new owner returns it to the shop; the first owner replays the claim.
      await f.registry.connect(f.owner).transferFrom(f.owner.address, f.other.address, id);
      await f.registry.connect(f.other).transferFrom(f.other.address, f.manufacturer.address, id);
      await expect(f.registry.claim(a.claim, a.proof, a.signature)).to.be.revertedWithCustomError(
        f.registry,
        "DeviceRegistryKeyTaken",
      );
      expect(await f.registry.ownerOf(id)).to.equal(f.manufacturer.address);
    });

    it("attack: re-claiming a revoked device with its old signature is refused", async function () {
      const f = await loadFixture(committed);
      const a = await claimArgs(f, f.keys[0], f.batch, f.batchId, f.owner.address);
      await f.registry.claim(a.claim, a.proof, a.signature);
      await f.registry.connect(f.owner).decommission(deviceIdOf(f.keys[0].signer));
      await expect(f.registry.claim(a.claim, a.proof, a.signature)).to.be.revertedWithCustomError(
        f.registry,
        "DeviceRegistryKeyTaken",
      );
    });

    it("builds exactly OpenZeppelin's StandardMerkleTree: same nodes, layout, proofs and dump", async function () {
      const { StandardMerkleTree } = await import("@openzeppelin/merkle-tree");
      for (const n of [1, 2, 3, 7, 64, 129]) {
        const devices = Array.from({ length: n }, (_, i) => ({
          deviceKey: ethers.hexlify(ethers.randomBytes(i % 3 === 0 ? 84 : 20)),
          model: ethers.hexlify(ethers.randomBytes(32)),
          firmwareHash: ethers.hexlify(ethers.randomBytes(32)),
        }));
        const ours = new DeviceBatch(devices);
        const oz = StandardMerkleTree.of(
          devices.map((d) => [d.deviceKey, d.model, d.firmwareHash]),
          ["bytes", "bytes32", "bytes32"],
        );
        expect(ours.dump()).to.deep.equal(oz.dump());
        devices.forEach((d, i) => {
          expect(ours.proof(d.deviceKey)).to.deep.equal(oz.getProof(i));
          expect(leafHash(d)).to.equal(oz.leafHash([d.deviceKey, d.model, d.firmwareHash]));
        });
        expect(StandardMerkleTree.load(ours.dump() as never).root).to.equal(ours.root);
      }
    });
  });

  describe("theft reports (owner)", function () {
    it("quarantines on the owner's report and reactivates on release", async function () {
      const f = await loadFixture(claimed);
      await expect(f.registry.connect(f.owner).reportStolen(f.id))
        .to.emit(f.registry, "ReportedStolen")
        .withArgs(f.id, f.owner.address);
      expect((await f.registry.deviceById(f.id)).status).to.equal(Status.Quarantined);
      expect((await f.registry.deviceInfo(f.id)).reportedStolen).to.equal(true);
      await expect(f.registry.connect(f.owner).reportStolen(f.id)).to.be.revertedWithCustomError(
        f.registry,
        "DeviceRegistryAlreadyReported",
      );
      await expect(f.registry.connect(f.owner).release(f.id))
        .to.emit(f.registry, "Released")
        .withArgs(f.id, f.owner.address);
      expect((await f.registry.deviceById(f.id)).status).to.equal(Status.Active);
      await expect(f.registry.connect(f.owner).release(f.id)).to.be.revertedWithCustomError(
        f.registry,
        "DeviceRegistryNotReported",
      );
    });

    it("attack: a report or release by a non-owner is refused", async function () {
      const f = await loadFixture(claimed);
      await expect(f.registry.connect(f.stranger).reportStolen(f.id))
        .to.be.revertedWithCustomError(f.registry, "DeviceRegistryNotOwner")
        .withArgs(f.id, f.stranger.address);
      await f.registry.connect(f.owner).reportStolen(f.id);
      await expect(f.registry.connect(f.stranger).release(f.id)).to.be.revertedWithCustomError(
        f.registry,
        "DeviceRegistryNotOwner",
      );
      await expect(f.registry.connect(f.stranger).reportStolen(424242n)).to.be.revertedWithCustomError(
        f.registry,
        "DeviceRegistryNotOwner",
      );
    });

    it("attack: a message the thief made the device sign while stolen is void after release", async function () {
      const f = await loadFixture(claimed);
      await f.registry.connect(f.owner).reportStolen(f.id);
      const deadline = await deadlineIn();
      const nonce = await f.registry.deviceNonce(f.id);
      const firmwareHash = ethers.id("thief firmware");
      const sig = signAs(f.key, "FirmwareAttestation", f.deployment, { device: f.id, firmwareHash, nonce, deadline });
      await f.registry.connect(f.owner).release(f.id);
      await expect(f.registry.attestFirmware(f.key.signer, firmwareHash, deadline, sig)).to.be.revertedWithCustomError(
        f.registry,
        "DeviceRegistryInvalidSignature",
      );
    });

    it("reports stolen gaslessly through the ERC-2771 forwarder", async function () {
      const f = await loadFixture(claimed);
      const data = f.registry.interface.encodeFunctionData("reportStolen", [f.id]);
      const request = {
        from: f.owner.address,
        to: await f.registry.getAddress(),
        value: 0n,
        gas: 100_000n,
        nonce: await f.forwarder.nonces(f.owner.address),
        deadline: Number(await deadlineIn()),
        data,
      };
      const { domain, types } = {
        domain: { name: "Custos Forwarder", version: "1", ...f.forwarderDeployment },
        types: typesOf("ForwardRequest"),
      };
      const signature = await f.owner.signTypedData(domain, types, request);
      await expect(f.forwarder.connect(f.stranger).execute({ ...request, signature }))
        .to.emit(f.registry, "ReportedStolen")
        .withArgs(f.id, f.owner.address);
      expect((await f.registry.deviceById(f.id)).status).to.equal(Status.Quarantined);
    });
  });

  describe("guardian quorum", function () {
    it(`flags a device at ${QUORUM} votes and clears it at ${QUORUM} votes`, async function () {
      const f = await loadFixture(claimed);
      const [g1, g2, g3] = f.guardians;
      await expect(f.registry.connect(g1).flag(f.id, REASON))
        .to.emit(f.registry, "GuardianVoted")
        .withArgs(f.id, g1.address, 0, true, REASON);
      expect((await f.registry.deviceById(f.id)).status).to.equal(Status.Active);
      expect(await f.registry.guardianVotes(f.id, g1.address)).to.deep.equal([0n, 1n, true]);
      await expect(f.registry.connect(g2).flag(f.id, REASON))
        .to.emit(f.registry, "GuardianFlagged")
        .withArgs(f.id, REASON);
      expect((await f.registry.deviceById(f.id)).status).to.equal(Status.Quarantined);
      expect((await f.registry.deviceInfo(f.id)).guardianFlagged).to.equal(true);
      expect(await f.registry.guardianVotes(f.id, g1.address)).to.deep.equal([1n, 0n, false]);

      await expect(f.registry.connect(g3).flag(f.id, REASON)).to.be.revertedWithCustomError(
        f.registry,
        "DeviceRegistryAlreadyFlagged",
      );
      await f.registry.connect(g3).clearFlag(f.id);
      expect((await f.registry.deviceById(f.id)).status).to.equal(Status.Quarantined);
      const nonce = await f.registry.deviceNonce(f.id);
      await expect(f.registry.connect(g1).clearFlag(f.id)).to.emit(f.registry, "GuardianCleared").withArgs(f.id);
      expect((await f.registry.deviceById(f.id)).status).to.equal(Status.Active);
      expect(await f.registry.deviceNonce(f.id)).to.equal(nonce + 1n);
      await expect(f.registry.connect(g1).clearFlag(f.id)).to.be.revertedWithCustomError(
        f.registry,
        "DeviceRegistryNotFlagged",
      );
    });

    it("attack: a guardian voting twice is refused", async function () {
      const f = await loadFixture(claimed);
      const [g1] = f.guardians;
      await f.registry.connect(g1).flag(f.id, REASON);
      await expect(f.registry.connect(g1).flag(f.id, REASON))
        .to.be.revertedWithCustomError(f.registry, "DeviceRegistryAlreadyVoted")
        .withArgs(f.id, g1.address);
      expect((await f.registry.deviceById(f.id)).status).to.equal(Status.Active);
    });

    it("attack: a guardian voting twice to clear is refused", async function () {
      const f = await loadFixture(claimed);
      const [g1, g2] = f.guardians;
      await f.registry.connect(g1).flag(f.id, REASON);
      await f.registry.connect(g2).flag(f.id, REASON);
      await f.registry.connect(g1).clearFlag(f.id);
      await expect(f.registry.connect(g1).clearFlag(f.id)).to.be.revertedWithCustomError(
        f.registry,
        "DeviceRegistryAlreadyVoted",
      );
      expect((await f.registry.deviceById(f.id)).status).to.equal(Status.Quarantined);
    });

    it("attack: a non-guardian cannot vote; unknown and revoked devices cannot be flagged", async function () {
      const f = await loadFixture(claimed);
      await expect(f.registry.connect(f.owner).flag(f.id, REASON)).to.be.revertedWithCustomError(
        f.registry,
        "AccessControlUnauthorizedAccount",
      );
      await expect(f.registry.connect(f.owner).clearFlag(f.id)).to.be.revertedWithCustomError(
        f.registry,
        "AccessControlUnauthorizedAccount",
      );
      await expect(f.registry.connect(f.guardians[0]).flag(7n, REASON))
        .to.be.revertedWithCustomError(f.registry, "DeviceRegistryUnknownDevice")
        .withArgs(7n);
      await f.registry.connect(f.owner).decommission(f.id);
      await expect(f.registry.connect(f.guardians[0]).flag(f.id, REASON))
        .to.be.revertedWithCustomError(f.registry, "DeviceRegistryWrongStatus")
        .withArgs(f.id, Status.Revoked);
    });

    it("a revoked device's guardian flag can be neither raised nor cleared (revoked is final)", async function () {
      const f = await loadFixture(claimed);
      await f.registry.connect(f.guardians[0]).flag(f.id, REASON);
      await f.registry.connect(f.guardians[1]).flag(f.id, REASON);
      await f.registry.connect(f.manufacturer).recall(f.id, REASON);
      const nonce = await f.registry.deviceNonce(f.id);
      await expect(f.registry.connect(f.guardians[0]).clearFlag(f.id))
        .to.be.revertedWithCustomError(f.registry, "DeviceRegistryWrongStatus")
        .withArgs(f.id, Status.Revoked);
      expect(await f.registry.deviceNonce(f.id)).to.equal(nonce);
    });

    it("attack: the owner's release does not lift a guardian flag", async function () {
      const f = await loadFixture(claimed);
      await f.registry.connect(f.owner).reportStolen(f.id);
      await f.registry.connect(f.guardians[0]).flag(f.id, REASON);
      await f.registry.connect(f.guardians[1]).flag(f.id, REASON);
      await f.registry.connect(f.owner).release(f.id);
      expect((await f.registry.deviceById(f.id)).status).to.equal(Status.Quarantined);
    });
  });

  describe("revocation", function () {
    it("decommissions for good: no report, release, rotation or transfer afterwards", async function () {
      const f = await loadFixture(claimed);
      await expect(f.registry.connect(f.owner).decommission(f.id))
        .to.emit(f.registry, "DeviceRevoked")
        .withArgs(f.id, f.owner.address, ethers.encodeBytes32String("decommissioned"));
      expect((await f.registry.deviceById(f.id)).status).to.equal(Status.Revoked);
      expect((await f.registry.deviceByKey(f.key.signer)).status).to.equal(Status.Revoked);
      const next = randomDeviceKey("secp256k1");
      for (const call of [
        f.registry.connect(f.owner).reportStolen(f.id),
        f.registry.connect(f.owner).release(f.id),
        f.registry.connect(f.owner).decommission(f.id),
        f.registry.connect(f.owner).rotateKey(f.id, await rotation(f, f.id, next, f.key)),
        f.registry.connect(f.owner).transferFrom(f.owner.address, f.other.address, f.id),
      ]) {
        await expect(call)
          .to.be.revertedWithCustomError(f.registry, "DeviceRegistryWrongStatus")
          .withArgs(f.id, Status.Revoked);
      }
    });

    it("lets the batch's manufacturer or the admin recall one device, and nobody else", async function () {
      const f = await loadFixture(claimed);
      await expect(f.registry.connect(f.manufacturer2).recall(f.id, REASON)).to.be.revertedWithCustomError(
        f.registry,
        "DeviceRegistryUnauthorized",
      );
      await expect(f.registry.connect(f.owner).recall(f.id, REASON)).to.be.revertedWithCustomError(
        f.registry,
        "DeviceRegistryUnauthorized",
      );
      await expect(f.registry.connect(f.manufacturer).recall(f.id, REASON))
        .to.emit(f.registry, "DeviceRevoked")
        .withArgs(f.id, f.manufacturer.address, REASON);
      await expect(f.registry.connect(f.admin).recall(f.id, REASON)).to.be.revertedWithCustomError(
        f.registry,
        "DeviceRegistryWrongStatus",
      );
      await f.registry.connect(f.admin).recall(f.ids[1], REASON);
      expect((await f.registry.deviceById(f.ids[1])).status).to.equal(Status.Revoked);
      await expect(f.registry.connect(f.admin).recall(99n, REASON)).to.be.revertedWithCustomError(
        f.registry,
        "DeviceRegistryUnknownDevice",
      );
    });
  });

  describe("transfers", function () {
    it("has no metadata URI: empty for a device, refused for a token that does not exist", async function () {
      const { registry, id } = await loadFixture(claimed);
      expect(await registry.tokenURI(id)).to.equal("");
      await expect(registry.tokenURI(12345n))
        .to.be.revertedWithCustomError(registry, "ERC721NonexistentToken")
        .withArgs(12345n);
    });

    it("transfers an active device; the new owner controls it", async function () {
      const f = await loadFixture(claimed);
      await f.registry.connect(f.owner).transferFrom(f.owner.address, f.other.address, f.id);
      expect((await f.registry.deviceByKey(f.key.signer)).owner).to.equal(f.other.address);
      await expect(f.registry.connect(f.owner).reportStolen(f.id)).to.be.revertedWithCustomError(
        f.registry,
        "DeviceRegistryNotOwner",
      );
      await f.registry.connect(f.other).reportStolen(f.id);
    });

    it("attack: a transfer while quarantined (reported, flagged, or batch) is refused", async function () {
      const f = await loadFixture(claimed);
      await f.registry.connect(f.owner).reportStolen(f.id);
      await expect(f.registry.connect(f.owner).transferFrom(f.owner.address, f.other.address, f.id))
        .to.be.revertedWithCustomError(f.registry, "DeviceRegistryWrongStatus")
        .withArgs(f.id, Status.Quarantined);
      await f.registry.connect(f.owner).release(f.id);
      await f.registry.connect(f.guardians[0]).flag(f.id, REASON);
      await f.registry.connect(f.guardians[1]).flag(f.id, REASON);
      await expect(
        f.registry
          .connect(f.owner)
          ["safeTransferFrom(address,address,uint256)"](f.owner.address, f.other.address, f.id),
      ).to.be.revertedWithCustomError(f.registry, "DeviceRegistryWrongStatus");
      await f.registry.connect(f.guardians[0]).clearFlag(f.id);
      await f.registry.connect(f.guardians[2]).clearFlag(f.id);
      await f.registry.connect(f.manufacturer).quarantineBatch(f.batchId, REASON);
      await expect(
        f.registry.connect(f.owner).transferFrom(f.owner.address, f.other.address, f.id),
      ).to.be.revertedWithCustomError(f.registry, "DeviceRegistryWrongStatus");
    });
  });

  describe("key rotation", function () {
    for (const [from, to] of [
      ["secp256k1", "secp256k1"],
      ["secp256k1", "p256"],
      ["p256", "secp256k1"],
      ["p256", "p256"],
    ] as const) {
      it(`rotates a ${from} key to a ${to} key: same id, the old key stops resolving at once`, async function () {
        const f = await loadFixture(claimed);
        const index = from === "secp256k1" ? 0 : 1;
        const [id, old] = [f.ids[index], f.keys[index]];
        const next = randomDeviceKey(to, f.verifierAddress);
        await expect(f.registry.connect(f.owner).rotateKey(id, await rotation(f, id, next, old)))
          .to.emit(f.registry, "KeyRotated")
          .withArgs(id, next.signer, 1);
        const ref = await f.registry.deviceByKey(next.signer);
        expect([ref.id, ref.status]).to.deep.equal([id, BigInt(Status.Active)]);
        const gone = await f.registry.deviceByKey(old.signer);
        expect([gone.id, gone.owner, gone.status]).to.deep.equal([0n, ethers.ZeroAddress, BigInt(Status.Unknown)]);
        expect(await f.registry.ownerOf(id)).to.equal(f.owner.address);
        expect((await f.registry.deviceInfo(id)).keyGeneration).to.equal(1n);
      });
    }

    it("rotates without the old key when it is lost; older keys stop resolving too", async function () {
      const f = await loadFixture(claimed);
      const k1 = randomDeviceKey("secp256k1");
      const k2 = randomDeviceKey("p256", f.verifierAddress);
      await f.registry.connect(f.owner).rotateKey(f.id, await rotation(f, f.id, k1, null));
      await f.registry.connect(f.owner).rotateKey(f.id, await rotation(f, f.id, k2, k1));
      for (const old of [f.key, k1]) expect((await f.registry.deviceByKey(old.signer)).id).to.equal(0n);
      expect((await f.registry.deviceByKey(k2.signer)).id).to.equal(f.id);
      // The second rotation proved k1 (generation 1) was current; a third needs k2, not k1.
      const k3 = randomDeviceKey("secp256k1");
      await expect(
        f.registry.connect(f.owner).rotateKey(f.id, await rotation(f, f.id, k3, k1)),
      ).to.be.revertedWithCustomError(f.registry, "DeviceRegistryUnknownKey");
    });

    it("attack: an old key still resolving after rotation (its messages are refused)", async function () {
      const f = await loadFixture(claimed);
      const next = randomDeviceKey("secp256k1");
      const nonceBefore = await f.registry.deviceNonce(f.id);
      await f.registry.connect(f.owner).rotateKey(f.id, await rotation(f, f.id, next, null));
      const deadline = await deadlineIn();
      for (const nonce of [nonceBefore, nonceBefore + 1n]) {
        const sig = signAs(f.key, "FirmwareAttestation", f.deployment, {
          device: f.id,
          firmwareHash: FIRMWARE,
          nonce,
          deadline,
        });
        await expect(f.registry.attestFirmware(f.key.signer, FIRMWARE, deadline, sig)).to.be.revertedWithCustomError(
          f.registry,
          "DeviceRegistryUnknownKey",
        );
      }
    });

    it("attack: re-registering a rotated-away key (by claim or by rotation) is refused", async function () {
      const f = await loadFixture(claimed);
      const next = randomDeviceKey("secp256k1");
      await f.registry.connect(f.owner).rotateKey(f.id, await rotation(f, f.id, next, f.key));
      expect(await f.registry.isKeyAvailable(f.key.signer)).to.equal(false);
      // Into another device …
      await expect(f.registry.connect(f.owner).rotateKey(f.ids[2], await rotation(f, f.ids[2], f.key, f.keys[2])))
        .to.be.revertedWithCustomError(f.registry, "DeviceRegistryKeyTaken")
        .withArgs(ethers.keccak256(f.key.signer));
      // … back into its own device …
      await expect(
        f.registry.connect(f.owner).rotateKey(f.id, await rotation(f, f.id, f.key, next)),
      ).to.be.revertedWithCustomError(f.registry, "DeviceRegistryKeyTaken");
      // … or through a fresh batch that provisions it again ("factory reset and re-register").
      const again = makeBatch([f.key]);
      await commit(f.registry, f.manufacturer, again);
      const a = await claimArgs(f, f.key, again, again.id, f.other.address);
      await expect(f.registry.claim(a.claim, a.proof, a.signature)).to.be.revertedWithCustomError(
        f.registry,
        "DeviceRegistryKeyTaken",
      );
    });

    it("attack: one device taking another device's key is refused, even with that key's signature", async function () {
      const f = await loadFixture(claimed);
      // Device 0's owner controls device 2's hardware too, and tries to move its key over.
      await expect(f.registry.connect(f.owner).rotateKey(f.id, await rotation(f, f.id, f.keys[2], f.key)))
        .to.be.revertedWithCustomError(f.registry, "DeviceRegistryKeyTaken")
        .withArgs(ethers.keccak256(f.keys[2].signer));
      // A key rotated into device 2 is just as taken.
      const k = randomDeviceKey("secp256k1");
      await f.registry.connect(f.owner).rotateKey(f.ids[2], await rotation(f, f.ids[2], k, f.keys[2]));
      await expect(
        f.registry.connect(f.owner).rotateKey(f.id, await rotation(f, f.id, k, f.key)),
      ).to.be.revertedWithCustomError(f.registry, "DeviceRegistryKeyTaken");
    });

    it("attack: a replayed rotation signature is refused", async function () {
      const f = await loadFixture(claimed);
      const k1 = randomDeviceKey("secp256k1");
      const r1 = await rotation(f, f.id, k1, f.key);
      await f.registry.connect(f.owner).rotateKey(f.id, r1);
      // Same signatures, now for a different new key slot: the nonce moved, and k1 is taken.
      await expect(f.registry.connect(f.owner).rotateKey(f.id, r1)).to.be.revertedWithCustomError(
        f.registry,
        "DeviceRegistryKeyTaken",
      );
      // A rotation signed with a stale nonce is refused.
      const k2 = randomDeviceKey("secp256k1");
      const stale = await rotation(f, f.id, k2, k1, { nonce: 0n });
      await expect(f.registry.connect(f.owner).rotateKey(f.id, stale)).to.be.revertedWithCustomError(
        f.registry,
        "DeviceRegistryInvalidSignature",
      );
    });

    it("attack: a rotation without the new key's signature, or with a forged old-key signature, is refused", async function () {
      const f = await loadFixture(claimed);
      const next = randomDeviceKey("secp256k1");
      const good = await rotation(f, f.id, next, f.key);
      const stranger = randomDeviceKey("secp256k1");
      const byStranger = await rotation(f, f.id, stranger, f.key);
      await expect(
        f.registry.connect(f.owner).rotateKey(f.id, { ...good, newKeySignature: byStranger.newKeySignature }),
      ).to.be.revertedWithCustomError(f.registry, "DeviceRegistryInvalidSignature");
      await expect(
        f.registry.connect(f.owner).rotateKey(f.id, { ...good, oldKeySignature: good.newKeySignature }),
      ).to.be.revertedWithCustomError(f.registry, "DeviceRegistryInvalidSignature");
      await expect(
        f.registry.connect(f.owner).rotateKey(f.id, { ...good, oldKey: f.keys[2].signer }),
      ).to.be.revertedWithCustomError(f.registry, "DeviceRegistryUnknownKey");
      await expect(
        f.registry
          .connect(f.owner)
          .rotateKey(f.id, { ...good, newKeySignature: highS(next, good.newKeySignature as string) }),
      ).to.be.revertedWithCustomError(f.registry, "DeviceRegistryInvalidSignature");
    });

    it("attack: a rotation by a non-owner, expired, or to an unsupported key is refused", async function () {
      const f = await loadFixture(claimed);
      const next = randomDeviceKey("secp256k1");
      await expect(
        f.registry.connect(f.stranger).rotateKey(f.id, await rotation(f, f.id, next, f.key)),
      ).to.be.revertedWithCustomError(f.registry, "DeviceRegistryNotOwner");
      await expect(
        f.registry
          .connect(f.owner)
          .rotateKey(f.id, await rotation(f, f.id, next, f.key, { deadline: await deadlineIn(-1) })),
      ).to.be.revertedWithCustomError(f.registry, "DeviceRegistryExpired");
      const rogue = {
        ...randomDeviceKey("p256", f.verifierAddress),
        signer: ethers.concat([ethers.Wallet.createRandom().address, ethers.hexlify(ethers.randomBytes(64))]),
      };
      await expect(
        f.registry.connect(f.owner).rotateKey(f.id, await rotation(f, f.id, rogue, f.key)),
      ).to.be.revertedWithCustomError(f.registry, "DeviceRegistryUnsupportedKey");
    });

    it("keeps quarantine across a rotation", async function () {
      const f = await loadFixture(claimed);
      await f.registry.connect(f.owner).reportStolen(f.id);
      const next = randomDeviceKey("secp256k1");
      await f.registry.connect(f.owner).rotateKey(f.id, await rotation(f, f.id, next, null));
      expect((await f.registry.deviceByKey(next.signer)).status).to.equal(Status.Quarantined);
    });
  });

  describe("firmware", function () {
    it("records the attested firmware; a manufacturer's revocation shows in the status view", async function () {
      const f = await loadFixture(claimed);
      const v2 = ethers.id("firmware 2.0.0");
      const deadline = await deadlineIn();
      const sig = signAs(f.key, "FirmwareAttestation", f.deployment, {
        device: f.id,
        firmwareHash: v2,
        nonce: 0n,
        deadline,
      });
      await expect(f.registry.attestFirmware(f.key.signer, v2, deadline, sig))
        .to.emit(f.registry, "FirmwareAttested")
        .withArgs(f.id, v2);
      expect((await f.registry.deviceInfo(f.id)).firmware).to.equal(v2.slice(0, 34));

      // Another manufacturer revoking the same hash does not touch this manufacturer's devices.
      await f.registry.connect(f.manufacturer2).revokeFirmware(v2);
      expect((await f.registry.deviceInfo(f.id)).firmwareRevoked).to.equal(false);
      await expect(f.registry.connect(f.manufacturer).revokeFirmware(v2))
        .to.emit(f.registry, "FirmwareRevoked")
        .withArgs(f.manufacturer.address, v2);
      expect((await f.registry.deviceInfo(f.id)).firmwareRevoked).to.equal(true);
      expect(await f.registry.isFirmwareRevoked(f.manufacturer.address, v2)).to.equal(true);
      // Devices still on the shipped firmware are not affected.
      expect((await f.registry.deviceInfo(f.ids[1])).firmwareRevoked).to.equal(false);
      await expect(f.registry.connect(f.stranger).revokeFirmware(v2)).to.be.revertedWithCustomError(
        f.registry,
        "AccessControlUnauthorizedAccount",
      );
    });
  });

  describe("location beacons", function () {
    it("emits a stolen device's signed location for its owner", async function () {
      const f = await loadFixture(claimed);
      await f.registry.connect(f.owner).reportStolen(f.id);
      const beacon = {
        latitudeE7: 525200660,
        longitudeE7: -134049540,
        at: 1_700_000_000n,
        deadline: await deadlineIn(),
      };
      const sig = signAs(f.key, "LocationBeacon", f.deployment, { device: f.id, nonce: 0n, ...beacon });
      await expect(f.registry.connect(f.stranger).postLocationBeacon(f.key.signer, beacon, sig))
        .to.emit(f.registry, "LocationBeaconPosted")
        .withArgs(f.id, f.owner.address, beacon.latitudeE7, beacon.longitudeE7, beacon.at);
    });
  });

  describe("nonce cancellation", function () {
    it("voids a signed, unsent message", async function () {
      const f = await loadFixture(claimed);
      const deadline = await deadlineIn();
      const pending = signAs(f.key, "FirmwareAttestation", f.deployment, {
        device: f.id,
        firmwareHash: FIRMWARE,
        nonce: 0n,
        deadline,
      });
      const cancel = signAs(f.key, "NonceCancellation", f.deployment, { device: f.id, nonce: 0n, deadline });
      await expect(f.registry.cancelNonce(f.key.signer, deadline, cancel))
        .to.emit(f.registry, "NonceCancelled")
        .withArgs(f.id, 0);
      await expect(f.registry.attestFirmware(f.key.signer, FIRMWARE, deadline, pending)).to.be.revertedWithCustomError(
        f.registry,
        "DeviceRegistryInvalidSignature",
      );
    });
  });

  describe("views", function () {
    it("answers zeros for unknown devices and keys", async function () {
      const f = await loadFixture(claimed);
      const byKey = await f.registry.deviceByKey(randomDeviceKey("secp256k1").signer);
      expect([byKey.id, byKey.owner, byKey.status]).to.deep.equal([0n, ethers.ZeroAddress, 0n]);
      const byId = await f.registry.deviceById(1n);
      expect([byId.id, byId.status]).to.deep.equal([0n, 0n]);
      expect((await f.registry.deviceInfo(1n)).id).to.equal(0n);
      expect(await f.registry.deviceNonce(1n)).to.equal(0n);
    });
  });

  shouldBehaveLikeDeviceSignedMessage("attestFirmware", {
    type: "FirmwareAttestation",
    acceptedIn: Status.Active,
    message: (device, nonce, deadline) => ({ device, firmwareHash: ethers.id("fw 3"), nonce, deadline }),
    send: (ctx: RegistryContext, key, m, sig) =>
      ctx.registry.connect(ctx.stranger).attestFirmware(key, m.firmwareHash as string, m.deadline as bigint, sig),
  });

  shouldBehaveLikeDeviceSignedMessage("cancelNonce", {
    type: "NonceCancellation",
    acceptedIn: Status.Active,
    message: (device, nonce, deadline) => ({ device, nonce, deadline }),
    send: (ctx: RegistryContext, key, m, sig) =>
      ctx.registry.connect(ctx.stranger).cancelNonce(key, m.deadline as bigint, sig),
  });

  shouldBehaveLikeDeviceSignedMessage("postLocationBeacon", {
    type: "LocationBeacon",
    acceptedIn: Status.Quarantined,
    message: (device, nonce, deadline) => ({
      device,
      nonce,
      latitudeE7: -337000000,
      longitudeE7: 1512000000,
      at: 1_700_000_000n,
      deadline,
    }),
    send: (ctx: RegistryContext, key, m, sig) =>
      ctx.registry.connect(ctx.stranger).postLocationBeacon(
        key,
        {
          latitudeE7: m.latitudeE7 as number,
          longitudeE7: m.longitudeE7 as number,
          at: m.at as bigint,
          deadline: m.deadline as bigint,
        },
        sig,
      ),
  });

  it("uses the catalogue's digest for every device message (cross-check with ethers)", async function () {
    const { deployment } = await loadFixture(deployRegistry);
    const key = secp256k1Key(ethers.Wallet.createRandom().privateKey);
    const m = { device: 1n, firmwareHash: FIRMWARE, nonce: 0n, deadline: 1n };
    const d = digest("FirmwareAttestation", deployment, m);
    expect(ethers.recoverAddress(d, key.signDigest(d)).toLowerCase()).to.equal(key.signer);
  });
});

import { expect } from "chai";
import { ethers, loadFixture, time } from "../helpers/hardhat.js";
import { TypedDataEncoder, type ContractTransactionResponse, type Result } from "ethers";
import { TYPES, digest, typeHash, typeString, typedData, typesOf, type TypeName } from "../../src/eip712/index.js";
import { randomDeviceKey, secp256k1Key } from "../../src/crypto/deviceKey.js";
import { DeviceBatch, batchIdOf, deviceIdOf, leafHash } from "../../src/registry/batch.js";
import { deviceById, deviceByKey } from "../../src/registry/lookup.js";
import { IDeviceRegistry__factory, type DeviceRegistry } from "../../typechain-types/index.js";
import {
  BatchStatus,
  FIRMWARE,
  HOUR,
  MODEL,
  QUORUM,
  Status,
  TRUSTED_FOREVER,
  claimArgs,
  commit,
  deadlineIn,
  deployRegistry,
  guardianDecide,
  highS,
  makeBatch,
  makeKeys,
  provision,
  rotation,
  signAs,
  type RegistryContext,
} from "../helpers/registry.js";
import { shouldBehaveLikeDeviceSignedMessage } from "./behaviours/deviceSignedMessage.js";

const REASON = ethers.id("tamper detected");

/** A struct the registry returned, as a plain object of its named fields. */
const plain = (struct: unknown) => (struct as Result).toObject();

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
  const batch = makeBatch(keys, FIRMWARE, ctx.manufacturer.address);
  const batchId = await commit(ctx.registry, ctx.manufacturer, batch);
  return { ...ctx, keys, batch, batchId };
}

describe("DeviceRegistry", function () {
  describe("deployment and administration", function () {
    it("sets the admin, the guardians' quorum contract, the P-256 verifier and interfaces", async function () {
      const { registry, guardianQuorum, admin, guardians, verifierAddress } = await loadFixture(deployRegistry);
      expect(await registry.hasRole(await registry.DEFAULT_ADMIN_ROLE(), admin.address)).to.equal(true);
      // The registry deployed its quorum contract, which alone holds the registry's GUARDIAN_ROLE.
      const quorumAddress = await guardianQuorum.getAddress();
      expect(await registry.guardianQuorum()).to.equal(quorumAddress);
      expect(await registry.hasRole(await registry.GUARDIAN_ROLE(), quorumAddress)).to.equal(true);
      expect(await guardianQuorum.registry()).to.equal(await registry.getAddress());
      expect(await guardianQuorum.quorum()).to.equal(QUORUM);
      for (const g of guardians) {
        expect(await registry.hasRole(await registry.GUARDIAN_ROLE(), g.address)).to.equal(false);
        expect(await guardianQuorum.hasRole(await guardianQuorum.GUARDIAN_ROLE(), g.address)).to.equal(true);
      }
      expect(await registry.isKeyVerifier(verifierAddress)).to.equal(true);
      expect(await registry.name()).to.equal("Custos Device");
      for (const iface of ["0x80ac58cd", "0x7965db0b", "0x01ffc9a7"]) {
        expect(await registry.supportsInterface(iface)).to.equal(true); // ERC-721, AccessControl, ERC-165
      }
      expect(await registry.supportsInterface("0xffffffff")).to.equal(false);
    });

    it("answers ERC-165 for IDeviceRegistry: exactly the functions other contracts read", async function () {
      const { registry } = await loadFixture(deployRegistry);
      const functions = [
        "resolveKey",
        "deviceStatus",
        "deviceNonce",
        "deviceTrust",
        "keyTrustedUntil",
        "ownership",
      ] as const;
      // The list is the interface's, no more and no less.
      const declared: string[] = [];
      IDeviceRegistry__factory.createInterface().forEachFunction((fn) => declared.push(fn.name));
      expect(declared.sort()).to.deep.equal([...functions].sort());
      const interfaceId = functions
        .map((fn) => BigInt(registry.interface.getFunction(fn)!.selector))
        .reduce((x, y) => x ^ y);
      expect(await registry.supportsInterface(ethers.toBeHex(interfaceId, 4))).to.equal(true);
      // The id of the interface before the trust model (with deviceByKey and deviceById) is not answered.
      const before = [
        "deviceByKey(bytes)",
        "deviceById(uint256)",
        "resolveKey(bytes)",
        "deviceStatus(uint256)",
        "deviceNonce(uint256)",
      ]
        .map((signature) => BigInt(ethers.id(signature).slice(0, 10)))
        .reduce((x, y) => x ^ y);
      expect(await registry.supportsInterface(ethers.toBeHex(before, 4))).to.equal(false);
    });

    it("refuses a zero quorum at deployment (the quorum contract's check, bubbled up)", async function () {
      const { guardianQuorum, admin, forwarder } = await loadFixture(deployRegistry);
      await expect(
        ethers.deployContract("DeviceRegistry", [
          admin.address,
          await forwarder.getAddress(),
          0,
          ethers.ZeroAddress,
          [],
          [],
        ]),
      )
        .to.be.revertedWithCustomError(guardianQuorum, "GuardianQuorumInvalidQuorum")
        .withArgs(0);
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

    it("lets only the admin change the key verifiers", async function () {
      const { registry, stranger, verifierAddress } = await loadFixture(deployRegistry);
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
        NonceCancellation: await registry.NONCE_CANCELLATION_TYPEHASH(),
      };
      // Location beacons moved to LocationBeacons, under a domain of their own (tested there).
      const registryTypes = (Object.keys(TYPES) as TypeName[]).filter(
        (t) => TYPES[t].domain === "registry" && t !== ("LocationBeacon" as TypeName),
      );
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
    it("commits a root for a manufacturer; the id is 48 bits of keccak256(manufacturer, root)", async function () {
      const ctx = await loadFixture(deployRegistry);
      const { registry, manufacturer } = ctx;
      const batch = makeBatch(makeKeys(ctx, 3), FIRMWARE, manufacturer.address);
      const id = batchIdOf(manufacturer.address, batch.root);
      expect(batch.id).to.equal(id);
      expect(id).to.equal(
        BigInt(
          ethers.keccak256(
            ethers.AbiCoder.defaultAbiCoder().encode(["address", "bytes32"], [manufacturer.address, batch.root]),
          ),
        ) &
          ((1n << 48n) - 1n),
      );
      expect(await registry.batchIdOf(manufacturer.address, batch.root)).to.equal(id);
      expect(await registry.connect(manufacturer).commitBatch.staticCall(batch.root)).to.equal(id);
      const tx = registry.connect(manufacturer).commitBatch(batch.root);
      await expect(tx).to.emit(registry, "BatchCommitted").withArgs(id, manufacturer.address, batch.root);
      const stored = await registry.batch(id);
      expect(stored.root).to.equal(batch.root);
      expect(stored.manufacturer).to.equal(manufacturer.address);
      expect(stored.status).to.equal(BatchStatus.Active);
      const at = BigInt((await (await tx).getBlock())!.timestamp);
      expect([stored.committedAt, stored.statusSince]).to.deep.equal([at, at]);
    });

    it("computes batch ids off chain exactly as on chain (batchIdOf, DeviceBatch.idFor)", async function () {
      const { registry } = await loadFixture(deployRegistry);
      for (let i = 0; i < 16; i++) {
        const manufacturer = ethers.Wallet.createRandom().address;
        // Roots of every shape, including ones whose first 48 bits are zero (which the old derivation turned into 0).
        const root =
          i % 4 === 0 ? ethers.zeroPadValue(ethers.randomBytes(26), 32) : ethers.hexlify(ethers.randomBytes(32));
        const id = batchIdOf(manufacturer, root);
        expect(await registry.batchIdOf(manufacturer, root), `${manufacturer} ${root}`).to.equal(id);
        expect(id).to.not.equal(0n);
      }
    });

    it("refuses an empty root, a root its manufacturer committed already, and a non-manufacturer", async function () {
      const { registry, manufacturer, manufacturer2, stranger } = await loadFixture(deployRegistry);
      await expect(registry.connect(manufacturer).commitBatch(ethers.ZeroHash)).to.be.revertedWithCustomError(
        registry,
        "DeviceRegistryEmptyRoot",
      );
      const root = ethers.id("root");
      await registry.connect(manufacturer).commitBatch(root);
      await expect(registry.connect(manufacturer).commitBatch(root))
        .to.be.revertedWithCustomError(registry, "DeviceRegistryBatchExists")
        .withArgs(batchIdOf(manufacturer.address, root));
      // Another manufacturer committing the same root gets a batch of its own.
      await expect(registry.connect(manufacturer2).commitBatch(root))
        .to.emit(registry, "BatchCommitted")
        .withArgs(batchIdOf(manufacturer2.address, root), manufacturer2.address, root);
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
      expect(await f.registry.deviceStatus(id)).to.equal(Status.Quarantined);
      expect((await f.registry.resolveKey(f.keys[0].signer))[1]).to.equal(Status.Quarantined);
      const b = await claimArgs(f, f.keys[1], f.batch, f.batchId, f.owner.address);
      await expect(f.registry.claim(b.claim, b.proof, b.signature))
        .to.be.revertedWithCustomError(f.registry, "DeviceRegistryBatchNotActive")
        .withArgs(f.batchId, BatchStatus.Quarantined);

      await f.registry.connect(f.manufacturer).releaseBatch(f.batchId);
      expect(await f.registry.deviceStatus(id)).to.equal(Status.Active);
      await expect(f.registry.claim(b.claim, b.proof, b.signature)).not.to.revert(ethers);
    });

    it("revokes a whole batch for good: claimed devices are revoked, unclaimed ones cannot be claimed", async function () {
      const f = await loadFixture(committed);
      const a = await claimArgs(f, f.keys[0], f.batch, f.batchId, f.owner.address);
      await f.registry.claim(a.claim, a.proof, a.signature);
      const id = deviceIdOf(f.keys[0].signer);
      await f.registry.connect(f.admin).revokeBatch(f.batchId, REASON);
      expect(await f.registry.deviceStatus(id)).to.equal(Status.Revoked);
      const b = await claimArgs(f, f.keys[1], f.batch, f.batchId, f.owner.address);
      await expect(f.registry.claim(b.claim, b.proof, b.signature))
        .to.be.revertedWithCustomError(f.registry, "DeviceRegistryBatchNotActive")
        .withArgs(f.batchId, BatchStatus.Revoked);
      for (const call of [
        () => f.registry.connect(f.manufacturer).releaseBatch(f.batchId),
        () => f.registry.connect(f.manufacturer).quarantineBatch(f.batchId, REASON),
        () => f.registry.connect(f.admin).revokeBatch(f.batchId, REASON),
      ]) {
        await expect(call()).to.be.revertedWithCustomError(f.registry, "DeviceRegistryBatchRevoked");
      }
      // Owner calls cannot revive it either: the batch keeps it revoked.
      await f.registry.connect(f.owner).reportStolen(id);
      await f.registry.connect(f.owner).release(id);
      expect(await f.registry.deviceStatus(id)).to.equal(Status.Revoked);
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
        expect(await f.registry.isKeyAvailable(key.signer)).to.equal(true);
        const a = await claimArgs(f, key, f.batch, f.batchId, f.owner.address);
        await expect(f.registry.connect(f.stranger).claim(a.claim, a.proof, a.signature))
          .to.emit(f.registry, "DeviceClaimed")
          .withArgs(id, f.owner.address, f.batchId, key.signer, MODEL, FIRMWARE)
          .and.to.emit(f.registry, "Transfer")
          .withArgs(ethers.ZeroAddress, f.owner.address, id);
        expect(await f.registry.ownerOf(id)).to.equal(f.owner.address);
        const ref = await deviceByKey(f.registry, key.signer);
        expect([ref.id, ref.owner, ref.status]).to.deep.equal([id, f.owner.address, BigInt(Status.Active)]);
        const info = await f.registry.deviceInfo(id);
        expect(plain(info)).to.deep.equal({
          id,
          owner: f.owner.address,
          status: BigInt(Status.Active),
          batchId: f.batchId,
          nonce: 0n,
          keyGeneration: 0n,
          keyAttested: true,
          reportedStolen: false,
          guardianFlagged: false,
          ownerEpoch: 0n,
          period: 0n,
          untrustedSince: 0n,
          firmware: FIRMWARE.slice(0, 18), // the first 64 bits of the hash
          firmwareRevoked: false,
        });
        // What a contract pins when it starts relying on the device, and the key's trust in period 0.
        expect(plain(await f.registry.deviceTrust(id))).to.deep.equal({
          status: BigInt(Status.Active),
          keyGeneration: 0n,
          keyAttested: true,
          period: 0n,
        });
        expect(await f.registry.keyTrustedUntil(key.signer, 0)).to.deep.equal([id, 0n, TRUSTED_FOREVER]);
        expect(await f.registry.ownership(id)).to.deep.equal([f.owner.address, 0n]);
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
      const otherId = await commit(f.registry, f.manufacturer, otherBatch);
      const a = await claimArgs(f, f.keys[0], f.batch, f.batchId, f.owner.address);
      // The leaf of batch A with its (valid) proof, presented as a claim in batch B.
      const forged = await claimArgs(f, f.keys[0], f.batch, otherId, f.owner.address);
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
      const againId = await commit(f.registry, f.manufacturer2, again);
      const a = await claimArgs(f, f.keys[0], f.batch, f.batchId, f.owner.address);
      await f.registry.claim(a.claim, a.proof, a.signature);
      const b = await claimArgs(f, f.keys[0], again, againId, f.other.address);
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
        await expect(f.registry.claim(a.claim, a.proof, a.signature)).not.to.revert(ethers);
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
      const batchId = await commit(f.registry, f.manufacturer, batch);
      const deadline = await deadlineIn();
      const message = { owner: f.stranger.address, batch: batchId, deadline };
      const t = typedData("DeviceClaim", f.deployment, message);
      const signature = await f.stranger.signTypedData(t.domain, t.types, message);
      const magic = await wallet.isValidSignature(digest("DeviceClaim", f.deployment, message), signature);
      expect(magic).to.equal("0x1626ba7e"); // the wallet vouches for it
      const claim = {
        owner: f.stranger.address,
        batchId,
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
      const oddId = await commit(f.registry, f.manufacturer, odd);
      const claim = { ...a.claim, owner: f.owner.address, batchId: oddId, deviceKey: rogue };
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
        batchId: batchIdOf(f.manufacturer.address, tree.root),
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
      expect(await f.registry.deviceStatus(f.id)).to.equal(Status.Quarantined);
      expect((await f.registry.deviceInfo(f.id)).reportedStolen).to.equal(true);
      await expect(f.registry.connect(f.owner).reportStolen(f.id)).to.be.revertedWithCustomError(
        f.registry,
        "DeviceRegistryAlreadyReported",
      );
      await expect(f.registry.connect(f.owner).release(f.id))
        .to.emit(f.registry, "Released")
        .withArgs(f.id, f.owner.address);
      expect(await f.registry.deviceStatus(f.id)).to.equal(Status.Active);
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
      expect(await f.registry.deviceStatus(f.id)).to.equal(Status.Quarantined);
    });
  });

  describe("guardian flags (decided in the GuardianQuorum)", function () {
    it(`flags a device when ${QUORUM} guardians voted, and clears it at ${QUORUM} votes: a new nonce`, async function () {
      const f = await loadFixture(claimed);
      const [g1, g2] = f.guardians;
      const q = f.guardianQuorum;
      await q.connect(g1).flag(f.id, REASON);
      expect(await f.registry.deviceStatus(f.id)).to.equal(Status.Active);
      await expect(q.connect(g2).flag(f.id, REASON)).to.emit(f.registry, "GuardianFlagged").withArgs(f.id, REASON);
      expect(await f.registry.deviceStatus(f.id)).to.equal(Status.Quarantined);
      expect((await f.registry.deviceInfo(f.id)).guardianFlagged).to.equal(true);
      const nonce = await f.registry.deviceNonce(f.id);
      await q.connect(g1).clearFlag(f.id);
      expect(await f.registry.deviceStatus(f.id)).to.equal(Status.Quarantined);
      await expect(q.connect(g2).clearFlag(f.id)).to.emit(f.registry, "GuardianCleared").withArgs(f.id);
      expect(await f.registry.deviceStatus(f.id)).to.equal(Status.Active);
      expect((await f.registry.deviceInfo(f.id)).guardianFlagged).to.equal(false);
      expect(await f.registry.deviceNonce(f.id)).to.equal(nonce + 1n);
    });

    it("attack: a guardian, the admin or an owner calling the registry's flag or clearFlag directly is refused", async function () {
      const f = await loadFixture(claimed);
      const role = await f.registry.GUARDIAN_ROLE();
      for (const signer of [f.guardians[0], f.admin, f.owner, f.manufacturer]) {
        await expect(f.registry.connect(signer).flag(f.id, REASON))
          .to.be.revertedWithCustomError(f.registry, "AccessControlUnauthorizedAccount")
          .withArgs(signer.address, role);
      }
      await guardianDecide(f, "flag", f.id);
      for (const signer of [f.guardians[0], f.admin, f.owner]) {
        await expect(f.registry.connect(signer).clearFlag(f.id))
          .to.be.revertedWithCustomError(f.registry, "AccessControlUnauthorizedAccount")
          .withArgs(signer.address, role);
      }
    });

    it("refuses to flag a device twice, to clear an unflagged one, and unknown or revoked devices", async function () {
      const f = await loadFixture(claimed);
      const [g1, g2, g3] = f.guardians;
      const q = f.guardianQuorum;
      await expect(guardianDecide(f, "clearFlag", f.id))
        .to.be.revertedWithCustomError(f.registry, "DeviceRegistryNotFlagged")
        .withArgs(f.id);
      await guardianDecide(f, "flag", f.id);
      await q.connect(g3).flag(f.id, REASON);
      await expect(q.connect(g1).flag(f.id, REASON))
        .to.be.revertedWithCustomError(f.registry, "DeviceRegistryAlreadyFlagged")
        .withArgs(f.id);
      await expect(guardianDecide(f, "flag", 7n))
        .to.be.revertedWithCustomError(f.registry, "DeviceRegistryUnknownDevice")
        .withArgs(7n);
      await f.registry.connect(f.owner).decommission(f.ids[1]);
      await q.connect(g2).flag(f.ids[1], REASON);
      await expect(q.connect(g3).flag(f.ids[1], REASON))
        .to.be.revertedWithCustomError(f.registry, "DeviceRegistryWrongStatus")
        .withArgs(f.ids[1], Status.Revoked);
    });

    it("a revoked device's guardian flag can be neither raised nor cleared (revoked is final)", async function () {
      const f = await loadFixture(claimed);
      await guardianDecide(f, "flag", f.id);
      await f.registry.connect(f.manufacturer).recall(f.id, REASON);
      const nonce = await f.registry.deviceNonce(f.id);
      await expect(guardianDecide(f, "clearFlag", f.id))
        .to.be.revertedWithCustomError(f.registry, "DeviceRegistryWrongStatus")
        .withArgs(f.id, Status.Revoked);
      expect(await f.registry.deviceNonce(f.id)).to.equal(nonce);
    });

    it("attack: the owner's release does not lift a guardian flag", async function () {
      const f = await loadFixture(claimed);
      await f.registry.connect(f.owner).reportStolen(f.id);
      await guardianDecide(f, "flag", f.id);
      await f.registry.connect(f.owner).release(f.id);
      expect(await f.registry.deviceStatus(f.id)).to.equal(Status.Quarantined);
      // Nor does the guardians' clear lift the owner's report.
      await f.registry.connect(f.owner).reportStolen(f.id);
      await guardianDecide(f, "clearFlag", f.id);
      expect(await f.registry.deviceStatus(f.id)).to.equal(Status.Quarantined);
      expect((await f.registry.deviceInfo(f.id)).reportedStolen).to.equal(true);
    });
  });

  describe("revocation", function () {
    it("decommissions for good: no report, release, rotation or transfer afterwards", async function () {
      const f = await loadFixture(claimed);
      await expect(f.registry.connect(f.owner).decommission(f.id))
        .to.emit(f.registry, "DeviceRevoked")
        .withArgs(f.id, f.owner.address, ethers.encodeBytes32String("decommissioned"));
      expect(await f.registry.deviceStatus(f.id)).to.equal(Status.Revoked);
      expect((await f.registry.resolveKey(f.key.signer))[1]).to.equal(Status.Revoked);
      const r = await rotation(f, f.id, randomDeviceKey("secp256k1"), f.key);
      for (const call of [
        () => f.registry.connect(f.owner).reportStolen(f.id),
        () => f.registry.connect(f.owner).release(f.id),
        () => f.registry.connect(f.owner).decommission(f.id),
        () => f.registry.connect(f.owner).rotateKey(f.id, r),
        () => f.registry.connect(f.owner).transferFrom(f.owner.address, f.other.address, f.id),
      ]) {
        await expect(call())
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
      expect(await f.registry.deviceStatus(f.ids[1])).to.equal(Status.Revoked);
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
      expect((await deviceByKey(f.registry, f.key.signer)).owner).to.equal(f.other.address);
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
      await guardianDecide(f, "flag", f.id);
      await expect(
        f.registry
          .connect(f.owner)
          ["safeTransferFrom(address,address,uint256)"](f.owner.address, f.other.address, f.id),
      ).to.be.revertedWithCustomError(f.registry, "DeviceRegistryWrongStatus");
      await guardianDecide(f, "clearFlag", f.id);
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
          .withArgs(id, next.signer, 1, true);
        const ref = await deviceByKey(f.registry, next.signer);
        expect([ref.id, ref.status]).to.deep.equal([id, BigInt(Status.Active)]);
        const gone = await deviceByKey(f.registry, old.signer);
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
      for (const old of [f.key, k1]) expect((await deviceByKey(f.registry, old.signer)).id).to.equal(0n);
      expect((await deviceByKey(f.registry, k2.signer)).id).to.equal(f.id);
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
      const againId = await commit(f.registry, f.manufacturer, again);
      const a = await claimArgs(f, f.key, again, againId, f.other.address);
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
      expect((await f.registry.resolveKey(next.signer))[1]).to.equal(Status.Quarantined);
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
      expect((await f.registry.deviceInfo(f.id)).firmware).to.equal(v2.slice(0, 18));

      // Another manufacturer revoking the same hash does not touch this manufacturer's devices.
      await f.registry.connect(f.manufacturer2).revokeFirmware(v2);
      expect((await f.registry.deviceInfo(f.id)).firmwareRevoked).to.equal(false);
      await expect(f.registry.connect(f.manufacturer).revokeFirmware(v2))
        .to.emit(f.registry, "FirmwareRevoked")
        .withArgs(f.manufacturer.address, v2);
      expect((await f.registry.deviceInfo(f.id)).firmwareRevoked).to.equal(true);
      // Devices still on the shipped firmware are not affected, until that image is revoked too.
      expect((await f.registry.deviceInfo(f.ids[1])).firmwareRevoked).to.equal(false);
      await f.registry.connect(f.manufacturer).revokeFirmware(FIRMWARE);
      expect((await f.registry.deviceInfo(f.ids[1])).firmwareRevoked).to.equal(true);
      await expect(f.registry.connect(f.stranger).revokeFirmware(v2)).to.be.revertedWithCustomError(
        f.registry,
        "AccessControlUnauthorizedAccount",
      );
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

  describe("trust periods (deviceTrust, keyTrustedUntil)", function () {
    /** When `tx` was mined, and the tag of the period it started from `previous` (see `_newPeriod`). */
    async function mined(tx: Promise<ContractTransactionResponse>, id: bigint, previous: bigint) {
      const block = (await (await tx).getBlock())!;
      const hash = ethers.keccak256(
        ethers.AbiCoder.defaultAbiCoder().encode(["bytes32", "uint256", "uint32"], [block.parentHash, id, previous]),
      );
      return { at: BigInt(block.timestamp), tag: BigInt(hash) & 0xffffffffn };
    }

    async function period(f: { registry: DeviceRegistry }, id: bigint): Promise<bigint> {
      return (await f.registry.deviceTrust(id)).period;
    }

    it("a claimed device is trusted without end in period 0; a period it never had gives 0", async function () {
      const f = await loadFixture(claimed);
      await time.increase(HOUR);
      expect(await f.registry.keyTrustedUntil(f.key.signer, 0)).to.deep.equal([f.id, 0n, TRUSTED_FOREVER]);
      for (const never of [1n, 0xffffffffn]) {
        expect(await f.registry.keyTrustedUntil(f.key.signer, never)).to.deep.equal([f.id, 0n, 0n]);
      }
      // An unknown key: no device, nothing trusted.
      expect(await f.registry.keyTrustedUntil(randomDeviceKey("secp256k1").signer, 0)).to.deep.equal([0n, 0n, 0n]);
    });

    it("reportStolen ends the period at the report; release starts a fresh one (new tag, the old end kept, nonce moved)", async function () {
      const f = await loadFixture(claimed);
      const reported = await mined(f.registry.connect(f.owner).reportStolen(f.id), f.id, 0n);
      expect(plain(await f.registry.deviceTrust(f.id))).to.deep.equal({
        status: BigInt(Status.Quarantined),
        keyGeneration: 0n,
        keyAttested: true,
        period: 0n,
      });
      expect((await f.registry.deviceInfo(f.id)).untrustedSince).to.equal(reported.at);
      await time.increase(HOUR);
      // However long the device is away, period 0 counts up to the report only.
      expect(await f.registry.keyTrustedUntil(f.key.signer, 0)).to.deep.equal([f.id, 0n, reported.at]);

      const nonce = await f.registry.deviceNonce(f.id);
      const tx = f.registry.connect(f.owner).release(f.id);
      const released = await mined(tx, f.id, 0n);
      await expect(tx).to.emit(f.registry, "TrustPeriodEnded").withArgs(f.id, 0, reported.at, released.tag);
      expect(released.tag).to.not.equal(0n);
      expect(await period(f, f.id)).to.equal(released.tag);
      expect(await f.registry.deviceNonce(f.id)).to.equal(nonce + 1n);
      expect((await f.registry.deviceInfo(f.id)).untrustedSince).to.equal(0n);
      expect(await f.registry.keyTrustedUntil(f.key.signer, 0)).to.deep.equal([f.id, 0n, reported.at]);
      expect(await f.registry.keyTrustedUntil(f.key.signer, released.tag)).to.deep.equal([f.id, 0n, TRUSTED_FOREVER]);

      // A second report and release: each period keeps its own end.
      const again = await mined(f.registry.connect(f.owner).reportStolen(f.id), f.id, released.tag);
      const third = await mined(f.registry.connect(f.owner).release(f.id), f.id, released.tag);
      expect(third.tag).to.not.be.oneOf([0n, released.tag]);
      expect(await f.registry.keyTrustedUntil(f.key.signer, 0)).to.deep.equal([f.id, 0n, reported.at]);
      expect(await f.registry.keyTrustedUntil(f.key.signer, released.tag)).to.deep.equal([f.id, 0n, again.at]);
      expect(await f.registry.keyTrustedUntil(f.key.signer, third.tag)).to.deep.equal([f.id, 0n, TRUSTED_FOREVER]);
    });

    it("a guardian flag ends the period at the flag; the guardians' clear starts a fresh one", async function () {
      const f = await loadFixture(claimed);
      const flagged = await mined(guardianDecide(f, "flag", f.id), f.id, 0n);
      await time.increase(HOUR);
      expect(await f.registry.keyTrustedUntil(f.key.signer, 0)).to.deep.equal([f.id, 0n, flagged.at]);
      expect((await f.registry.deviceTrust(f.id)).status).to.equal(Status.Quarantined);
      const nonce = await f.registry.deviceNonce(f.id);
      const tx = guardianDecide(f, "clearFlag", f.id);
      const cleared = await mined(tx, f.id, 0n);
      await expect(tx).to.emit(f.registry, "TrustPeriodEnded").withArgs(f.id, 0, flagged.at, cleared.tag);
      expect(await period(f, f.id)).to.equal(cleared.tag);
      expect(await f.registry.deviceNonce(f.id)).to.equal(nonce + 1n);
      expect(await f.registry.keyTrustedUntil(f.key.signer, 0)).to.deep.equal([f.id, 0n, flagged.at]);
      expect(await f.registry.keyTrustedUntil(f.key.signer, cleared.tag)).to.deep.equal([f.id, 0n, TRUSTED_FOREVER]);
    });

    it("with a report and a flag, the period ends at the first and the next starts when the last is lifted", async function () {
      const f = await loadFixture(claimed);
      const reported = await mined(f.registry.connect(f.owner).reportStolen(f.id), f.id, 0n);
      await time.increase(60);
      await guardianDecide(f, "flag", f.id);
      await time.increase(60);
      const nonce = await f.registry.deviceNonce(f.id);
      // The owner's release lifts its own hold only: same period, same end, same nonce.
      await expect(f.registry.connect(f.owner).release(f.id)).not.to.emit(f.registry, "TrustPeriodEnded");
      expect(await period(f, f.id)).to.equal(0n);
      expect(await f.registry.deviceNonce(f.id)).to.equal(nonce);
      expect(await f.registry.keyTrustedUntil(f.key.signer, 0)).to.deep.equal([f.id, 0n, reported.at]);
      const cleared = await mined(guardianDecide(f, "clearFlag", f.id), f.id, 0n);
      expect(await period(f, f.id)).to.equal(cleared.tag);
      expect(await f.registry.deviceNonce(f.id)).to.equal(nonce + 1n);
      expect(await f.registry.keyTrustedUntil(f.key.signer, 0)).to.deep.equal([f.id, 0n, reported.at]);
      expect(await f.registry.keyTrustedUntil(f.key.signer, cleared.tag)).to.deep.equal([f.id, 0n, TRUSTED_FOREVER]);
    });

    it("decommission and recall end the period for good, at that moment (or at an earlier report)", async function () {
      const f = await loadFixture(claimed);
      const decommissioned = await mined(f.registry.connect(f.owner).decommission(f.id), f.id, 0n);
      const recalled = await mined(f.registry.connect(f.manufacturer).recall(f.ids[1], REASON), f.ids[1], 0n);
      const reported = await mined(f.registry.connect(f.owner).reportStolen(f.ids[2]), f.ids[2], 0n);
      await time.increase(HOUR);
      await f.registry.connect(f.admin).recall(f.ids[2], REASON);
      await time.increase(HOUR);
      for (const [i, until] of [
        [0, decommissioned.at],
        [1, recalled.at],
        [2, reported.at],
      ] as const) {
        expect(await f.registry.keyTrustedUntil(f.keys[i].signer, 0)).to.deep.equal([f.ids[i], 0n, until]);
        expect(plain(await f.registry.deviceTrust(f.ids[i]))).to.deep.equal({
          status: BigInt(Status.Revoked),
          keyGeneration: 0n,
          keyAttested: true,
          period: 0n,
        });
      }
    });

    for (const withOldKey of [true, false]) {
      it(`a rotation ${withOldKey ? "with" : "without"} the old key ends the period at the rotation; the old key still resolves there, with its generation`, async function () {
        const f = await loadFixture(claimed);
        const next = randomDeviceKey("p256", f.verifierAddress);
        const nonce = await f.registry.deviceNonce(f.id);
        const tx = f.registry
          .connect(f.owner)
          .rotateKey(f.id, await rotation(f, f.id, next, withOldKey ? f.key : null));
        const rotated = await mined(tx, f.id, 0n);
        await expect(tx).to.emit(f.registry, "TrustPeriodEnded").withArgs(f.id, 0, rotated.at, rotated.tag);
        await time.increase(HOUR);
        expect(plain(await f.registry.deviceTrust(f.id))).to.deep.equal({
          status: BigInt(Status.Active),
          keyGeneration: 1n,
          keyAttested: withOldKey,
          period: rotated.tag,
        });
        expect(await f.registry.deviceNonce(f.id)).to.equal(nonce + 1n);
        // The old key no longer resolves, but what it signed in period 0 counts up to the rotation.
        expect(await f.registry.resolveKey(f.key.signer)).to.deep.equal([0n, BigInt(Status.Unknown)]);
        expect(await f.registry.keyTrustedUntil(f.key.signer, 0)).to.deep.equal([f.id, 0n, rotated.at]);
        expect(await f.registry.keyTrustedUntil(next.signer, rotated.tag)).to.deep.equal([f.id, 1n, TRUSTED_FOREVER]);
      });
    }

    it("rotated-away keys keep resolving in keyTrustedUntil with their generation and their period's end", async function () {
      const f = await loadFixture(claimed);
      const keys = [f.key, randomDeviceKey("secp256k1"), randomDeviceKey("p256", f.verifierAddress)];
      const periods = [0n];
      const ends: bigint[] = [];
      for (let g = 1; g < keys.length; g++) {
        await time.increase(60);
        const r = await mined(
          f.registry.connect(f.owner).rotateKey(f.id, await rotation(f, f.id, keys[g], g === 1 ? null : keys[g - 1])),
          f.id,
          periods[g - 1],
        );
        ends.push(r.at);
        periods.push(r.tag);
      }
      await time.increase(HOUR);
      for (let g = 0; g < keys.length; g++) {
        const until = g < ends.length ? ends[g] : TRUSTED_FOREVER;
        expect(await f.registry.keyTrustedUntil(keys[g].signer, periods[g]), `key ${g}`).to.deep.equal([
          f.id,
          BigInt(g),
          until,
        ]);
      }
      // ATTACK: a rotated-away key named with another key's period, current or ended, counts for
      // nothing: each period is recorded with the key generation that signed in it.
      expect(await f.registry.keyTrustedUntil(keys[0].signer, periods[2])).to.deep.equal([f.id, 0n, 0n]);
      expect(await f.registry.keyTrustedUntil(keys[0].signer, periods[1])).to.deep.equal([f.id, 0n, 0n]);
      expect(await f.registry.keyTrustedUntil(keys[2].signer, periods[0])).to.deep.equal([f.id, 2n, 0n]);
      expect((await f.registry.deviceTrust(f.id)).keyGeneration).to.equal(2n);
    });

    it("a rotation while reported keeps the report as the old period's end; the new period starts untrusted", async function () {
      const f = await loadFixture(claimed);
      const reported = await mined(f.registry.connect(f.owner).reportStolen(f.id), f.id, 0n);
      await time.increase(60);
      const next = randomDeviceKey("secp256k1");
      const rotated = await mined(
        f.registry.connect(f.owner).rotateKey(f.id, await rotation(f, f.id, next, null)),
        f.id,
        0n,
      );
      expect(await f.registry.keyTrustedUntil(f.key.signer, 0)).to.deep.equal([f.id, 0n, reported.at]);
      // The device is still away: its new key counts for nothing after the rotation either.
      expect(await f.registry.keyTrustedUntil(next.signer, rotated.tag)).to.deep.equal([f.id, 1n, rotated.at]);
      await time.increase(60);
      const released = await mined(f.registry.connect(f.owner).release(f.id), f.id, rotated.tag);
      expect(await f.registry.keyTrustedUntil(next.signer, rotated.tag)).to.deep.equal([f.id, 1n, rotated.at]);
      expect(await f.registry.keyTrustedUntil(next.signer, released.tag)).to.deep.equal([f.id, 1n, TRUSTED_FOREVER]);
    });

    it("a batch quarantine bounds the current period only while it lasts", async function () {
      const f = await loadFixture(claimed);
      // Device 1 rotated before the quarantine: its ended period is not the batch's business.
      const next = randomDeviceKey("secp256k1");
      const rotated = await mined(
        f.registry.connect(f.owner).rotateKey(f.ids[1], await rotation(f, f.ids[1], next, f.keys[1])),
        f.ids[1],
        0n,
      );
      await time.increase(60);
      const quarantined = await mined(f.registry.connect(f.manufacturer).quarantineBatch(f.batchId, REASON), f.id, 0n);
      await time.increase(60);
      // Device 2 is reported during the quarantine: the earlier of the two bounds it.
      const reported = await mined(f.registry.connect(f.owner).reportStolen(f.ids[2]), f.ids[2], 0n);
      await time.increase(HOUR);
      expect(await f.registry.keyTrustedUntil(f.key.signer, 0)).to.deep.equal([f.id, 0n, quarantined.at]);
      expect(await f.registry.keyTrustedUntil(f.keys[2].signer, 0)).to.deep.equal([f.ids[2], 0n, quarantined.at]);
      expect(await f.registry.keyTrustedUntil(f.keys[1].signer, 0)).to.deep.equal([f.ids[1], 0n, rotated.at]);
      expect(await f.registry.keyTrustedUntil(next.signer, rotated.tag)).to.deep.equal([f.ids[1], 1n, quarantined.at]);
      expect((await f.registry.deviceTrust(f.id)).status).to.equal(Status.Quarantined);

      // Lifted: no new period (the device never left its owner's hands), the bound goes.
      await expect(f.registry.connect(f.manufacturer).releaseBatch(f.batchId)).not.to.emit(
        f.registry,
        "TrustPeriodEnded",
      );
      expect(await period(f, f.id)).to.equal(0n);
      expect(await f.registry.keyTrustedUntil(f.key.signer, 0)).to.deep.equal([f.id, 0n, TRUSTED_FOREVER]);
      expect(await f.registry.keyTrustedUntil(next.signer, rotated.tag)).to.deep.equal([f.ids[1], 1n, TRUSTED_FOREVER]);
      expect(await f.registry.keyTrustedUntil(f.keys[2].signer, 0)).to.deep.equal([f.ids[2], 0n, reported.at]);
    });

    it("a batch recall bounds every period for good, at the recall (or at the quarantine it ends)", async function () {
      const f = await loadFixture(claimed);
      const next = randomDeviceKey("secp256k1");
      const rotated = await mined(
        f.registry.connect(f.owner).rotateKey(f.ids[1], await rotation(f, f.ids[1], next, f.keys[1])),
        f.ids[1],
        0n,
      );
      await time.increase(60);
      const quarantined = await mined(f.registry.connect(f.manufacturer).quarantineBatch(f.batchId, REASON), f.id, 0n);
      await time.increase(HOUR);
      await f.registry.connect(f.manufacturer).revokeBatch(f.batchId, REASON);
      // The recall of a quarantined batch keeps the quarantine's start.
      expect((await f.registry.batch(f.batchId)).statusSince).to.equal(quarantined.at);
      await time.increase(HOUR);
      expect(await f.registry.keyTrustedUntil(f.key.signer, 0)).to.deep.equal([f.id, 0n, quarantined.at]);
      expect(await f.registry.keyTrustedUntil(f.keys[1].signer, 0)).to.deep.equal([f.ids[1], 0n, rotated.at]);
      expect(await f.registry.keyTrustedUntil(next.signer, rotated.tag)).to.deep.equal([f.ids[1], 1n, quarantined.at]);
      // Owner calls that end periods later (a rotation, a report and release) move no end past the recall.
      const later = randomDeviceKey("secp256k1");
      const r2 = await mined(
        f.registry.connect(f.owner).rotateKey(f.id, await rotation(f, f.id, later, f.key)),
        f.id,
        0n,
      );
      await f.registry.connect(f.owner).reportStolen(f.ids[2]);
      const rel = await mined(f.registry.connect(f.owner).release(f.ids[2]), f.ids[2], 0n);
      await time.increase(HOUR);
      expect(await f.registry.keyTrustedUntil(f.key.signer, 0)).to.deep.equal([f.id, 0n, quarantined.at]);
      expect(await f.registry.keyTrustedUntil(later.signer, r2.tag)).to.deep.equal([f.id, 1n, quarantined.at]);
      expect(await f.registry.keyTrustedUntil(f.keys[2].signer, 0)).to.deep.equal([f.ids[2], 0n, quarantined.at]);
      expect(await f.registry.keyTrustedUntil(f.keys[2].signer, rel.tag)).to.deep.equal([f.ids[2], 0n, quarantined.at]);
      for (const id of f.ids.slice(0, 3)) expect(await f.registry.deviceStatus(id)).to.equal(Status.Revoked);
    });

    it("a period tag is never reused, nor is 0 after the claim", async function () {
      const f = await loadFixture(claimed);
      const seen = new Set<bigint>([0n]);
      let current = 0n;
      // Several period changes in one block: the tag derives from the previous tag too.
      await ethers.provider.send("evm_setAutomine", [false]);
      try {
        await f.registry.connect(f.owner).reportStolen(f.id);
        await f.registry.connect(f.owner).release(f.id);
        await f.registry.connect(f.owner).reportStolen(f.id);
        await f.registry.connect(f.owner).release(f.id);
        await ethers.provider.send("evm_mine", []);
      } finally {
        await ethers.provider.send("evm_setAutomine", [true]);
      }
      const ended = await f.registry.queryFilter(f.registry.filters.TrustPeriodEnded(f.id));
      expect(ended.map((e) => e.args.period)).to.deep.equal([0n, ended[0].args.next]);
      expect(ended[0].blockNumber).to.equal(ended[1].blockNumber);
      for (const e of ended) {
        expect(e.args.period).to.equal(current);
        expect(seen.has(e.args.next), `tag ${e.args.next} reused`).to.equal(false);
        seen.add(e.args.next);
        current = e.args.next;
      }
      expect(await period(f, f.id)).to.equal(current);
    });
  });

  describe("key provenance (keyAttested, attestKey)", function () {
    it("a rotation with the old key's signature keeps the key attested (KeyRotated attested = true)", async function () {
      const f = await loadFixture(claimed);
      const next = randomDeviceKey("secp256k1");
      await expect(f.registry.connect(f.owner).rotateKey(f.id, await rotation(f, f.id, next, f.key)))
        .to.emit(f.registry, "KeyRotated")
        .withArgs(f.id, next.signer, 1, true);
      expect((await f.registry.deviceTrust(f.id)).keyAttested).to.equal(true);
      expect((await f.registry.deviceInfo(f.id)).keyAttested).to.equal(true);
    });

    it("a rotation without the old key installs an owner-installed key (keyAttested false), and signing with it does not launder it", async function () {
      const f = await loadFixture(claimed);
      const installed = randomDeviceKey("secp256k1");
      await expect(f.registry.connect(f.owner).rotateKey(f.id, await rotation(f, f.id, installed, null)))
        .to.emit(f.registry, "KeyRotated")
        .withArgs(f.id, installed.signer, 1, false);
      expect((await f.registry.deviceTrust(f.id)).keyAttested).to.equal(false);
      expect((await f.registry.deviceInfo(f.id)).keyAttested).to.equal(false);
      // The owner's key signs the next rotation as "the old key": the provenance stays the owner's.
      const next = randomDeviceKey("p256", f.verifierAddress);
      await expect(f.registry.connect(f.owner).rotateKey(f.id, await rotation(f, f.id, next, installed)))
        .to.emit(f.registry, "KeyRotated")
        .withArgs(f.id, next.signer, 2, false);
      expect((await f.registry.deviceTrust(f.id)).keyAttested).to.equal(false);
      // The device's other keys are untouched.
      expect((await f.registry.deviceTrust(f.ids[1])).keyAttested).to.equal(true);
    });

    it("the batch's manufacturer re-attests an owner-installed key; the admin may too", async function () {
      const f = await loadFixture(claimed);
      for (const id of [f.id, f.ids[1]]) {
        await f.registry.connect(f.owner).rotateKey(id, await rotation(f, id, randomDeviceKey("secp256k1"), null));
      }
      const [periodBefore, nonceBefore] = [
        (await f.registry.deviceTrust(f.id)).period,
        await f.registry.deviceNonce(f.id),
      ];
      await expect(f.registry.connect(f.manufacturer).attestKey(f.id))
        .to.emit(f.registry, "KeyAttested")
        .withArgs(f.id, 1, f.manufacturer.address);
      expect(plain(await f.registry.deviceTrust(f.id))).to.deep.equal({
        status: BigInt(Status.Active),
        keyGeneration: 1n,
        keyAttested: true,
        period: periodBefore, // an attestation is about provenance, not trust: no new period, same nonce
      });
      expect(await f.registry.deviceNonce(f.id)).to.equal(nonceBefore);
      await expect(f.registry.connect(f.admin).attestKey(f.ids[1]))
        .to.emit(f.registry, "KeyAttested")
        .withArgs(f.ids[1], 1, f.admin.address);
      expect((await f.registry.deviceTrust(f.ids[1])).keyAttested).to.equal(true);
    });

    it("attack: anyone else attesting a key (the owner, another manufacturer, a stranger, a former manufacturer) is refused", async function () {
      const f = await loadFixture(claimed);
      await f.registry.connect(f.owner).rotateKey(f.id, await rotation(f, f.id, randomDeviceKey("secp256k1"), null));
      for (const signer of [f.owner, f.manufacturer2, f.stranger, f.guardians[0]]) {
        await expect(f.registry.connect(signer).attestKey(f.id))
          .to.be.revertedWithCustomError(f.registry, "DeviceRegistryUnauthorized")
          .withArgs(signer.address);
      }
      await f.registry.revokeRole(await f.registry.MANUFACTURER_ROLE(), f.manufacturer.address);
      await expect(f.registry.connect(f.manufacturer).attestKey(f.id))
        .to.be.revertedWithCustomError(f.registry, "DeviceRegistryUnauthorized")
        .withArgs(f.manufacturer.address);
      expect((await f.registry.deviceTrust(f.id)).keyAttested).to.equal(false);
      await expect(f.registry.connect(f.admin).attestKey(424242n))
        .to.be.revertedWithCustomError(f.registry, "DeviceRegistryUnknownDevice")
        .withArgs(424242n);
    });

    it("refuses to attest a key twice, or one that is attested already", async function () {
      const f = await loadFixture(claimed);
      await expect(f.registry.connect(f.manufacturer).attestKey(f.id))
        .to.be.revertedWithCustomError(f.registry, "DeviceRegistryKeyAlreadyAttested")
        .withArgs(f.id);
      await f.registry.connect(f.owner).rotateKey(f.id, await rotation(f, f.id, randomDeviceKey("secp256k1"), null));
      await f.registry.connect(f.manufacturer).attestKey(f.id);
      await expect(f.registry.connect(f.manufacturer).attestKey(f.id))
        .to.be.revertedWithCustomError(f.registry, "DeviceRegistryKeyAlreadyAttested")
        .withArgs(f.id);
    });

    it("an attestation covers that key only: the next rotation without the old key is owner-installed again", async function () {
      const f = await loadFixture(claimed);
      const k1 = randomDeviceKey("secp256k1");
      await f.registry.connect(f.owner).rotateKey(f.id, await rotation(f, f.id, k1, null));
      await f.registry.connect(f.manufacturer).attestKey(f.id);
      // With the attested key's signature the provenance carries over …
      const k2 = randomDeviceKey("secp256k1");
      await expect(f.registry.connect(f.owner).rotateKey(f.id, await rotation(f, f.id, k2, k1)))
        .to.emit(f.registry, "KeyRotated")
        .withArgs(f.id, k2.signer, 2, true);
      // … without it, it is lost again.
      const k3 = randomDeviceKey("secp256k1");
      await expect(f.registry.connect(f.owner).rotateKey(f.id, await rotation(f, f.id, k3, null)))
        .to.emit(f.registry, "KeyRotated")
        .withArgs(f.id, k3.signer, 3, false);
      expect((await f.registry.deviceTrust(f.id)).keyAttested).to.equal(false);
    });
  });

  describe("ownership epochs", function () {
    it("the epoch starts at 0 and moves at every transfer, a buy-back included", async function () {
      const f = await loadFixture(claimed);
      expect(await f.registry.ownership(f.id)).to.deep.equal([f.owner.address, 0n]);
      await f.registry.connect(f.owner).transferFrom(f.owner.address, f.other.address, f.id);
      expect(await f.registry.ownership(f.id)).to.deep.equal([f.other.address, 1n]);
      await f.registry
        .connect(f.other)
        ["safeTransferFrom(address,address,uint256)"](f.other.address, f.owner.address, f.id);
      // Back with its first owner, in a new ownership period: what it granted before stays dead.
      expect(await f.registry.ownership(f.id)).to.deep.equal([f.owner.address, 2n]);
      expect((await f.registry.deviceInfo(f.id)).ownerEpoch).to.equal(2n);
      // An approved operator's transfer moves it as well; a transfer to oneself too.
      await f.registry.connect(f.owner).approve(f.stranger.address, f.id);
      await f.registry.connect(f.stranger).transferFrom(f.owner.address, f.owner.address, f.id);
      expect(await f.registry.ownership(f.id)).to.deep.equal([f.owner.address, 3n]);
      // The other devices' epochs are their own.
      expect(await f.registry.ownership(f.ids[1])).to.deep.equal([f.owner.address, 0n]);
    });

    it("a refused transfer leaves the epoch; nothing else moves it (report, release, rotation, attestation)", async function () {
      const f = await loadFixture(claimed);
      await f.registry.connect(f.owner).reportStolen(f.id);
      await expect(
        f.registry.connect(f.owner).transferFrom(f.owner.address, f.other.address, f.id),
      ).to.be.revertedWithCustomError(f.registry, "DeviceRegistryWrongStatus");
      await f.registry.connect(f.owner).release(f.id);
      await f.registry.connect(f.owner).rotateKey(f.id, await rotation(f, f.id, randomDeviceKey("secp256k1"), null));
      await f.registry.connect(f.manufacturer).attestKey(f.id);
      await guardianDecide(f, "flag", f.id);
      await guardianDecide(f, "clearFlag", f.id);
      expect(await f.registry.ownership(f.id)).to.deep.equal([f.owner.address, 0n]);
    });
  });

  describe("views", function () {
    it("answers zeros for unknown devices and keys", async function () {
      const f = await loadFixture(claimed);
      const byKey = await deviceByKey(f.registry, randomDeviceKey("secp256k1").signer);
      expect([byKey.id, byKey.owner, byKey.status]).to.deep.equal([0n, ethers.ZeroAddress, 0n]);
      const byId = await deviceById(f.registry, 1n);
      expect([byId.id, byId.status]).to.deep.equal([0n, 0n]);
      expect((await f.registry.deviceInfo(1n)).id).to.equal(0n);
      expect(await f.registry.deviceNonce(1n)).to.equal(0n);
      expect(await f.registry.deviceStatus(1n)).to.equal(Status.Unknown);
      expect(await f.registry.resolveKey(randomDeviceKey("p256", f.verifierAddress).signer)).to.deep.equal([
        0n,
        BigInt(Status.Unknown),
      ]);
      expect(await f.registry.deviceTrust(1n)).to.deep.equal([BigInt(Status.Unknown), 0n, false, 0n]);
      expect(await f.registry.keyTrustedUntil(randomDeviceKey("secp256k1").signer, 0)).to.deep.equal([0n, 0n, 0n]);
      expect(await f.registry.ownership(1n)).to.deep.equal([ethers.ZeroAddress, 0n]);
    });

    it("src/registry/lookup answers like resolveKey, deviceStatus and ownerOf, at a past block too", async function () {
      const f = await loadFixture(claimed);
      const before = await ethers.provider.getBlockNumber();
      await f.registry.connect(f.owner).transferFrom(f.owner.address, f.other.address, f.id);
      await f.registry.connect(f.other).reportStolen(f.id);
      const now = { id: f.id, owner: f.other.address, status: BigInt(Status.Quarantined) };
      expect(await deviceByKey(f.registry, f.key.signer)).to.deep.equal(now);
      expect(await deviceById(f.registry, f.id)).to.deep.equal(now);
      const then = { id: f.id, owner: f.owner.address, status: BigInt(Status.Active) };
      expect(await deviceByKey(f.registry, f.key.signer, before)).to.deep.equal(then);
      expect(await deviceById(f.registry, f.id, before)).to.deep.equal(then);
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

  it("uses the catalogue's digest for every device message (cross-check with ethers)", async function () {
    const { deployment } = await loadFixture(deployRegistry);
    const key = secp256k1Key(ethers.Wallet.createRandom().privateKey);
    const m = { device: 1n, firmwareHash: FIRMWARE, nonce: 0n, deadline: 1n };
    const d = digest("FirmwareAttestation", deployment, m);
    expect(ethers.recoverAddress(d, key.signDigest(d)).toLowerCase()).to.equal(key.signer);
  });
});

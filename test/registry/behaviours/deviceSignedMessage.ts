/**
 * Shared behaviour of every message a device signs for the registry: bound to chain, contract,
 * nonce and deadline, low-s only, and refused from a device that is not in the status it needs.
 */
import { expect } from "chai";
import { ethers, loadFixture } from "../../helpers/hardhat.js";
import type { ContractTransactionResponse } from "ethers";
import { digest, type Message, type TypeName } from "../../../src/eip712/index.js";
import { randomDeviceKey, type DeviceKeyKind } from "../../../src/crypto/deviceKey.js";
import {
  deployRegistry,
  deadlineIn,
  highS,
  provision,
  rotation,
  Status,
  type RegistryContext,
} from "../../helpers/registry.js";

export interface DeviceMessage {
  /** The catalogue type the device signs. */
  type: TypeName;
  /** The status the device must be in for the message to be accepted. */
  acceptedIn: Status.Active | Status.Quarantined;
  /** The message's fields for `device` at `nonce`. */
  message(device: bigint, nonce: bigint, deadline: bigint): Message;
  /** Submits it, relayed by a third party. */
  send(ctx: RegistryContext, key: string, message: Message, signature: string): Promise<ContractTransactionResponse>;
}

export function shouldBehaveLikeDeviceSignedMessage(name: string, msg: DeviceMessage): void {
  for (const kind of ["secp256k1", "p256"] as DeviceKeyKind[]) {
    describe(`${name}: a ${kind} device's signed message`, function () {
      async function fixture() {
        const ctx = await deployRegistry();
        const key = randomDeviceKey(kind, ctx.verifierAddress);
        const other = randomDeviceKey(kind, ctx.verifierAddress);
        const { ids } = await provision(ctx, [key, other]);
        if (msg.acceptedIn === Status.Quarantined) await ctx.registry.connect(ctx.owner).reportStolen(ids[0]);
        return { ctx, key, other, id: ids[0], otherId: ids[1] };
      }

      async function signed(f: Awaited<ReturnType<typeof fixture>>, opts: { nonce?: bigint; deadline?: bigint } = {}) {
        const nonce = opts.nonce ?? BigInt(await f.ctx.registry.deviceNonce(f.id));
        const message = msg.message(f.id, nonce, opts.deadline ?? (await deadlineIn()));
        return { message, signature: f.key.signDigest(digest(msg.type, f.ctx.deployment, message)) };
      }

      it("is accepted once, from anyone, and consumes the device's nonce", async function () {
        const f = await loadFixture(fixture);
        const { message, signature } = await signed(f);
        await expect(msg.send(f.ctx, f.key.signer, message, signature)).not.to.revert(ethers);
        expect(await f.ctx.registry.deviceNonce(f.id)).to.equal(1n);
      });

      it("attack: replaying the same signature is refused", async function () {
        const f = await loadFixture(fixture);
        const { message, signature } = await signed(f);
        await msg.send(f.ctx, f.key.signer, message, signature);
        await expect(msg.send(f.ctx, f.key.signer, message, signature)).to.be.revertedWithCustomError(
          f.ctx.registry,
          "DeviceRegistryInvalidSignature",
        );
      });

      it("attack: a signature with a future nonce is refused", async function () {
        const f = await loadFixture(fixture);
        const { message, signature } = await signed(f, { nonce: 1n });
        await expect(msg.send(f.ctx, f.key.signer, message, signature)).to.be.revertedWithCustomError(
          f.ctx.registry,
          "DeviceRegistryInvalidSignature",
        );
      });

      for (const [attack, change] of [
        ["another chain", { chainId: 1n }],
        ["another contract", { verifyingContract: ethers.Wallet.createRandom().address }],
      ] as const) {
        it(`attack: a signature made for ${attack} is refused`, async function () {
          const f = await loadFixture(fixture);
          const nonce = BigInt(await f.ctx.registry.deviceNonce(f.id));
          const message = msg.message(f.id, nonce, await deadlineIn());
          const signature = f.key.signDigest(digest(msg.type, { ...f.ctx.deployment, ...change }, message));
          await expect(msg.send(f.ctx, f.key.signer, message, signature)).to.be.revertedWithCustomError(
            f.ctx.registry,
            "DeviceRegistryInvalidSignature",
          );
        });
      }

      it("attack: a signature past its deadline is refused", async function () {
        const f = await loadFixture(fixture);
        const { message, signature } = await signed(f, { deadline: await deadlineIn(-1) });
        await expect(msg.send(f.ctx, f.key.signer, message, signature)).to.be.revertedWithCustomError(
          f.ctx.registry,
          "DeviceRegistryExpired",
        );
      });

      it("attack: the malleable (high-s) twin of a valid signature is refused", async function () {
        const f = await loadFixture(fixture);
        const { message, signature } = await signed(f);
        await expect(msg.send(f.ctx, f.key.signer, message, highS(f.key, signature))).to.be.revertedWithCustomError(
          f.ctx.registry,
          "DeviceRegistryInvalidSignature",
        );
      });

      it("attack: malformed signatures (empty, truncated, overlong, zero) are refused", async function () {
        const f = await loadFixture(fixture);
        const { message, signature } = await signed(f);
        const bytes = ethers.getBytes(signature);
        for (const bad of [
          "0x",
          ethers.hexlify(bytes.slice(0, 40)),
          ethers.concat([signature, "0x00"]),
          ethers.ZeroHash,
        ]) {
          await expect(msg.send(f.ctx, f.key.signer, message, bad)).to.be.revertedWithCustomError(
            f.ctx.registry,
            "DeviceRegistryInvalidSignature",
          );
        }
      });

      it("attack: another device's signature under this device's key is refused", async function () {
        const f = await loadFixture(fixture);
        const { message } = await signed(f);
        const signature = f.other.signDigest(digest(msg.type, f.ctx.deployment, message));
        await expect(msg.send(f.ctx, f.key.signer, message, signature)).to.be.revertedWithCustomError(
          f.ctx.registry,
          "DeviceRegistryInvalidSignature",
        );
      });

      it("attack: a key the registry never saw is refused", async function () {
        const f = await loadFixture(fixture);
        const stranger = randomDeviceKey(kind, f.ctx.verifierAddress);
        const message = msg.message(f.id, 0n, await deadlineIn());
        const signature = stranger.signDigest(digest(msg.type, f.ctx.deployment, message));
        await expect(msg.send(f.ctx, stranger.signer, message, signature)).to.be.revertedWithCustomError(
          f.ctx.registry,
          "DeviceRegistryUnknownKey",
        );
      });

      if (msg.acceptedIn === Status.Active) {
        it("invariant 1: a quarantined device's valid signature is refused", async function () {
          const f = await loadFixture(fixture);
          await f.ctx.registry.connect(f.ctx.owner).reportStolen(f.id);
          const { message, signature } = await signed(f);
          await expect(msg.send(f.ctx, f.key.signer, message, signature))
            .to.be.revertedWithCustomError(f.ctx.registry, "DeviceRegistryWrongStatus")
            .withArgs(f.id, Status.Quarantined);
        });

        it("invariant 1: a device of a quarantined batch is refused", async function () {
          const f = await loadFixture(fixture);
          const { batchId } = await f.ctx.registry.deviceInfo(f.id);
          await f.ctx.registry.connect(f.ctx.manufacturer).quarantineBatch(batchId, ethers.id("suspect"));
          const { message, signature } = await signed(f);
          await expect(msg.send(f.ctx, f.key.signer, message, signature))
            .to.be.revertedWithCustomError(f.ctx.registry, "DeviceRegistryWrongStatus")
            .withArgs(f.id, Status.Quarantined);
        });
      } else {
        it("is refused from an active device", async function () {
          const f = await loadFixture(fixture);
          await f.ctx.registry.connect(f.ctx.owner).release(f.id);
          const { message, signature } = await signed(f);
          await expect(msg.send(f.ctx, f.key.signer, message, signature))
            .to.be.revertedWithCustomError(f.ctx.registry, "DeviceRegistryWrongStatus")
            .withArgs(f.id, Status.Active);
        });
      }

      it("invariant 1: a revoked device's valid signature is refused", async function () {
        const f = await loadFixture(fixture);
        await f.ctx.registry.connect(f.ctx.owner).decommission(f.id);
        const { message, signature } = await signed(f);
        await expect(msg.send(f.ctx, f.key.signer, message, signature))
          .to.be.revertedWithCustomError(f.ctx.registry, "DeviceRegistryWrongStatus")
          .withArgs(f.id, Status.Revoked);
      });

      it("invariant 1: a rotated-away key's valid signature is refused", async function () {
        const f = await loadFixture(fixture);
        const next = randomDeviceKey(kind, f.ctx.verifierAddress);
        await f.ctx.registry.connect(f.ctx.owner).rotateKey(f.id, await rotation(f.ctx, f.id, next, f.key));
        const { message, signature } = await signed(f);
        await expect(msg.send(f.ctx, f.key.signer, message, signature)).to.be.revertedWithCustomError(
          f.ctx.registry,
          "DeviceRegistryUnknownKey",
        );
      });
    });
  }
}

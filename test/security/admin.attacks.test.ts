/**
 * Issue 12, "the admin is not one key": whatever roles the admin holds or grants itself, it cannot
 * move devices, keys or funds. (That it is a timelock, not a key, is test/deploy/ignition.test.ts.)
 */
import { expect } from "chai";
import { ethers, loadFixture } from "../helpers/hardhat.js";
import { deployChannels, openChannel, voucher } from "../helpers/channels.js";
import { randomDeviceKey } from "../../src/crypto/deviceKey.js";
import { rotation } from "../helpers/registry.js";

async function adminWithEveryRole() {
  const ctx = await deployChannels();
  const { registry, guardianQuorum, admin } = ctx;
  // Everything the admin can grant, it grants itself.
  for (const role of [await registry.MANUFACTURER_ROLE(), await registry.GUARDIAN_ROLE()])
    await registry.connect(admin).grantRole(role, admin.address);
  await guardianQuorum.connect(admin).grantRole(await guardianQuorum.GUARDIAN_ROLE(), admin.address);
  const opened = await openChannel(ctx, { amount: ethers.parseEther("1") });
  await ctx.channels
    .connect(ctx.other)
    .claim(opened.terms, 1000n, ctx.payerKeys[0].signer, voucher(ctx, ctx.payerKeys[0], opened.id, 1000n));
  return { ...ctx, opened };
}

describe("Security: the admin cannot move devices, keys or funds (issue 12)", function () {
  it("ATTACK: the admin transfers a device to itself", async function () {
    const f = await loadFixture(adminWithEveryRole);
    const id = f.payers[0];
    await expect(f.registry.connect(f.admin).transferFrom(f.owner.address, f.admin.address, id))
      .to.be.revertedWithCustomError(f.registry, "ERC721InsufficientApproval")
      .withArgs(f.admin.address, id);
    expect(await f.registry.ownerOf(id)).to.equal(f.owner.address);
  });

  it("ATTACK: the admin rotates a device's key to one it holds, reports it stolen or decommissions it", async function () {
    const f = await loadFixture(adminWithEveryRole);
    const id = f.payers[0];
    const r = await rotation(f, id, randomDeviceKey("secp256k1"), null);
    await expect(f.registry.connect(f.admin).rotateKey(id, r)).to.be.revertedWithCustomError(
      f.registry,
      "DeviceRegistryNotOwner",
    );
    await expect(f.registry.connect(f.admin).reportStolen(id)).to.be.revertedWithCustomError(
      f.registry,
      "DeviceRegistryNotOwner",
    );
    await expect(f.registry.connect(f.admin).decommission(id)).to.be.revertedWithCustomError(
      f.registry,
      "DeviceRegistryNotOwner",
    );
  });

  it("ATTACK: the admin takes a channel's funds: closes it, withdraws the payee's earnings or the payer's refund", async function () {
    const f = await loadFixture(adminWithEveryRole);
    const { terms } = f.opened;
    await expect(f.channels.connect(f.admin).startClose(terms)).to.be.revertedWithCustomError(
      f.channels,
      "PaymentChannelsNotOwner",
    );
    await expect(f.channels.connect(f.admin).cooperativeClose(terms, 0n, "0x", "0x")).to.be.revertedWithCustomError(
      f.channels,
      "PaymentChannelsNotOwner",
    );
    await expect(
      f.channels.connect(f.admin).withdrawForDevice(f.payees[0], ethers.ZeroAddress, f.admin.address),
    ).to.be.revertedWithCustomError(f.channels, "PaymentChannelsNotOwner");
    await expect(
      f.channels.connect(f.admin).withdraw(ethers.ZeroAddress, f.admin.address),
    ).to.be.revertedWithCustomError(f.channels, "PaymentChannelsNothingOwed");
    expect(await f.channels.deviceBalance(f.payees[0], ethers.ZeroAddress)).to.equal(1000n);
  });

  it("ATTACK: the admin recalls the payer or flags it to cancel what the payee earned: the payee still collects it", async function () {
    const f = await loadFixture(adminWithEveryRole);
    const { terms, id } = f.opened;
    const key = f.payerKeys[0];
    // Its powers to hold devices (visible and delayed behind the timelock) end trust; they move nothing.
    await f.registry.connect(f.admin).flag(f.payers[0], ethers.id("admin"));
    await f.registry.connect(f.admin).recall(f.payers[0], ethers.id("admin"));
    await f.channels.connect(f.other).claim(terms, 5000n, key.signer, voucher(f, key, id, 5000n));
    expect(await f.channels.deviceBalance(f.payees[0], ethers.ZeroAddress)).to.equal(5000n);
    expect(await f.registry.ownerOf(f.payers[0])).to.equal(f.owner.address);
  });
});

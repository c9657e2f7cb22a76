/**
 * GuardianQuorum: the guardians' M-of-N votes that flag and clear devices in the DeviceRegistry,
 * which only this contract may ask to. The registry deploys it; the fixture's three guardians hold
 * its GUARDIAN_ROLE and its quorum is 2.
 */
import { expect } from "chai";
import { ethers, loadFixture } from "../helpers/hardhat.js";
import { QUORUM, Status, deployRegistry, guardianDecide, makeKeys, provision } from "../helpers/registry.js";

const REASON = ethers.id("tamper detected");

async function claimed() {
  const ctx = await deployRegistry();
  const keys = makeKeys(ctx, 3, ["secp256k1", "p256"]);
  const { ids } = await provision(ctx, keys);
  return { ...ctx, keys, ids, id: ids[0], q: ctx.guardianQuorum, role: await ctx.guardianQuorum.GUARDIAN_ROLE() };
}

describe("GuardianQuorum", function () {
  describe("deployment", function () {
    it("is deployed by the registry, with the registry's admin, the guardians and the quorum", async function () {
      const { registry, q, admin, guardians } = await loadFixture(claimed);
      expect(await q.registry()).to.equal(await registry.getAddress());
      expect(await registry.guardianQuorum()).to.equal(await q.getAddress());
      expect(await q.hasRole(await q.DEFAULT_ADMIN_ROLE(), admin.address)).to.equal(true);
      expect(await q.hasRole(await q.DEFAULT_ADMIN_ROLE(), await registry.getAddress())).to.equal(false);
      for (const g of guardians) expect(await q.hasRole(await q.GUARDIAN_ROLE(), g.address)).to.equal(true);
      expect(await q.quorum()).to.equal(QUORUM);
      expect(await q.membership()).to.equal(0n);
      expect(await registry.hasRole(await registry.GUARDIAN_ROLE(), await q.getAddress())).to.equal(true);
    });

    it("refuses a zero quorum at deployment", async function () {
      const { registry, q, admin } = await loadFixture(claimed);
      await expect(ethers.deployContract("GuardianQuorum", [await registry.getAddress(), admin.address, 0, []]))
        .to.be.revertedWithCustomError(q, "GuardianQuorumInvalidQuorum")
        .withArgs(0);
    });
  });

  describe("votes", function () {
    it(`flags a device at ${QUORUM} votes: each vote is recorded, the one that reaches the quorum flags it`, async function () {
      const { registry, q, id, guardians } = await loadFixture(claimed);
      const [g1, g2] = guardians;
      expect(await q.votes(id, true, g1.address)).to.deep.equal([0n, 0n, false]);
      await expect(q.connect(g1).flag(id, REASON))
        .to.emit(q, "GuardianVoted")
        .withArgs(id, g1.address, true, 0, REASON)
        .and.not.to.emit(registry, "GuardianFlagged");
      expect(await q.votes(id, true, g1.address)).to.deep.equal([0n, 1n, true]);
      expect(await q.votes(id, true, g2.address)).to.deep.equal([0n, 1n, false]);
      expect(await registry.deviceStatus(id)).to.equal(Status.Active);
      const reason2 = ethers.id("second opinion");
      await expect(q.connect(g2).flag(id, reason2))
        .to.emit(q, "GuardianVoted")
        .withArgs(id, g2.address, true, 0, reason2)
        .and.to.emit(registry, "GuardianFlagged")
        .withArgs(id, reason2); // the deciding vote's reason goes to the registry
      expect(await registry.deviceStatus(id)).to.equal(Status.Quarantined);
      // The decision closed round 0: nobody's vote is open.
      expect(await q.votes(id, true, g1.address)).to.deep.equal([1n, 0n, false]);
    });

    it(`clears a device at ${QUORUM} votes, in the round after the flag`, async function () {
      const { registry, q, id, guardians } = await loadFixture(claimed);
      const [g1, g2, g3] = guardians;
      await guardianDecide({ guardianQuorum: q, guardians }, "flag", id);
      await expect(q.connect(g3).clearFlag(id))
        .to.emit(q, "GuardianVoted")
        .withArgs(id, g3.address, false, 1, ethers.ZeroHash);
      expect(await q.votes(id, false, g3.address)).to.deep.equal([1n, 1n, true]);
      expect(await registry.deviceStatus(id)).to.equal(Status.Quarantined);
      await expect(q.connect(g1).clearFlag(id)).to.emit(registry, "GuardianCleared").withArgs(id);
      expect(await registry.deviceStatus(id)).to.equal(Status.Active);
      expect(await q.votes(id, false, g3.address)).to.deep.equal([2n, 0n, false]);
      // And flagged again by any two, g2 included.
      await q.connect(g2).flag(id, REASON);
      await q.connect(g3).flag(id, REASON);
      expect(await registry.deviceStatus(id)).to.equal(Status.Quarantined);
    });

    it("a decision closes the round for both sides: open votes of the other side are void", async function () {
      const { registry, q, id, guardians } = await loadFixture(claimed);
      const [g1, g2, g3] = guardians;
      await q.connect(g3).clearFlag(id); // nothing to clear yet
      expect(await q.votes(id, false, g3.address)).to.deep.equal([0n, 1n, true]);
      await guardianDecide({ guardianQuorum: q, guardians: [g1, g2] }, "flag", id);
      expect(await q.votes(id, false, g3.address)).to.deep.equal([1n, 0n, false]);
      // g3 may vote again, now about the flag that exists.
      await q.connect(g3).clearFlag(id);
      await q.connect(g1).clearFlag(id);
      expect(await registry.deviceStatus(id)).to.equal(Status.Active);
    });

    it("votes are per device", async function () {
      const { registry, q, ids, guardians } = await loadFixture(claimed);
      const [g1, g2] = guardians;
      await q.connect(g1).flag(ids[0], REASON);
      await q.connect(g2).flag(ids[1], REASON);
      expect(await registry.deviceStatus(ids[0])).to.equal(Status.Active);
      expect(await registry.deviceStatus(ids[1])).to.equal(Status.Active);
      await q.connect(g2).flag(ids[0], REASON);
      expect(await registry.deviceStatus(ids[0])).to.equal(Status.Quarantined);
      expect(await q.votes(ids[1], true, g2.address)).to.deep.equal([0n, 1n, true]);
    });

    it("attack: a guardian voting twice in a round is refused, to flag or to clear; it votes again in the next round", async function () {
      const { registry, q, id, guardians } = await loadFixture(claimed);
      const [g1, g2] = guardians;
      await q.connect(g1).flag(id, REASON);
      await expect(q.connect(g1).flag(id, ethers.id("again")))
        .to.be.revertedWithCustomError(q, "GuardianQuorumAlreadyVoted")
        .withArgs(id, g1.address);
      expect(await registry.deviceStatus(id)).to.equal(Status.Active);
      await q.connect(g2).flag(id, REASON);
      await q.connect(g1).clearFlag(id);
      await expect(q.connect(g1).clearFlag(id))
        .to.be.revertedWithCustomError(q, "GuardianQuorumAlreadyVoted")
        .withArgs(id, g1.address);
      expect(await registry.deviceStatus(id)).to.equal(Status.Quarantined);
    });

    it("attack: only GUARDIAN_ROLE holders vote (not the owner, the admin, a manufacturer or a stranger)", async function () {
      const { q, id, role, owner, admin, manufacturer, stranger } = await loadFixture(claimed);
      for (const signer of [owner, admin, manufacturer, stranger]) {
        await expect(q.connect(signer).flag(id, REASON))
          .to.be.revertedWithCustomError(q, "AccessControlUnauthorizedAccount")
          .withArgs(signer.address, role);
        await expect(q.connect(signer).clearFlag(id))
          .to.be.revertedWithCustomError(q, "AccessControlUnauthorizedAccount")
          .withArgs(signer.address, role);
      }
    });

    it("attack: only the quorum contract can call the registry's flag and clearFlag", async function () {
      const f = await loadFixture(claimed);
      const registryRole = await f.registry.GUARDIAN_ROLE();
      for (const signer of [...f.guardians, f.admin, f.owner, f.stranger]) {
        await expect(f.registry.connect(signer).flag(f.id, REASON))
          .to.be.revertedWithCustomError(f.registry, "AccessControlUnauthorizedAccount")
          .withArgs(signer.address, registryRole);
      }
      await guardianDecide(f, "flag", f.id);
      for (const signer of [...f.guardians, f.admin, f.owner, f.stranger]) {
        await expect(f.registry.connect(signer).clearFlag(f.id))
          .to.be.revertedWithCustomError(f.registry, "AccessControlUnauthorizedAccount")
          .withArgs(signer.address, registryRole);
      }
      // A second quorum contract, with guardians of its own, is not the registry's.
      const rogue = await ethers.deployContract("GuardianQuorum", [
        await f.registry.getAddress(),
        f.stranger.address,
        1,
        [f.stranger.address],
      ]);
      await expect(rogue.connect(f.stranger).clearFlag(f.id))
        .to.be.revertedWithCustomError(f.registry, "AccessControlUnauthorizedAccount")
        .withArgs(await rogue.getAddress(), registryRole);
      expect(await f.registry.deviceStatus(f.id)).to.equal(Status.Quarantined);
    });

    it("a vote on an unknown or revoked device counts below the quorum and reverts with the registry's error at it", async function () {
      const f = await loadFixture(claimed);
      const [g1, g2] = f.guardians;
      await f.q.connect(g1).flag(7n, REASON);
      await expect(f.q.connect(g2).flag(7n, REASON))
        .to.be.revertedWithCustomError(f.registry, "DeviceRegistryUnknownDevice")
        .withArgs(7n);
      // The reverted vote is not recorded.
      expect(await f.q.votes(7n, true, g2.address)).to.deep.equal([0n, 1n, false]);
      await f.registry.connect(f.owner).decommission(f.id);
      await f.q.connect(g1).flag(f.id, REASON);
      await expect(f.q.connect(g2).flag(f.id, REASON))
        .to.be.revertedWithCustomError(f.registry, "DeviceRegistryWrongStatus")
        .withArgs(f.id, Status.Revoked);
    });
  });

  describe("membership", function () {
    it("a guardian added later votes, and adding one voids no open vote", async function () {
      const { registry, q, id, role, guardians, stranger } = await loadFixture(claimed);
      await q.connect(guardians[0]).flag(id, REASON);
      await q.grantRole(role, stranger.address);
      expect(await q.membership()).to.equal(0n);
      await q.connect(stranger).flag(id, REASON);
      expect(await registry.deviceStatus(id)).to.equal(Status.Quarantined);
    });

    it("attack 7: a guardian's removal voids every open vote, those of the guardians who stayed too; they vote again", async function () {
      const { registry, q, ids, role, guardians } = await loadFixture(claimed);
      const [g1, g2, g3] = guardians;
      await q.connect(g1).flag(ids[0], REASON);
      await q.connect(g1).flag(ids[1], REASON);
      await expect(q.revokeRole(role, g3.address)).to.emit(q, "MembershipChanged").withArgs(1);
      expect(await q.membership()).to.equal(1n);
      // g1's votes were open when g3 left: void (the round moved on).
      expect(await q.votes(ids[0], true, g1.address)).to.deep.equal([1n, 0n, false]);
      await q.connect(g2).flag(ids[0], REASON);
      expect(await registry.deviceStatus(ids[0])).to.equal(Status.Active);
      await q.connect(g1).flag(ids[0], REASON);
      expect(await registry.deviceStatus(ids[0])).to.equal(Status.Quarantined);
      // Revoking an account that holds no role changes nothing.
      await expect(q.revokeRole(role, g3.address)).not.to.emit(q, "MembershipChanged");
      expect(await q.membership()).to.equal(1n);
    });

    it("attack 7: a guardian that renounces its role leaves no vote behind", async function () {
      const { registry, q, id, role, guardians } = await loadFixture(claimed);
      const [g1, g2, g3] = guardians;
      await q.connect(g3).flag(id, REASON);
      await expect(q.connect(g3).renounceRole(role, g3.address)).to.emit(q, "MembershipChanged").withArgs(1);
      await q.connect(g1).flag(id, REASON);
      expect(await registry.deviceStatus(id)).to.equal(Status.Active);
      await expect(q.connect(g3).flag(id, REASON))
        .to.be.revertedWithCustomError(q, "AccessControlUnauthorizedAccount")
        .withArgs(g3.address, role);
      await q.connect(g2).flag(id, REASON);
      expect(await registry.deviceStatus(id)).to.equal(Status.Quarantined);
    });

    it("attack: a removed guardian added back does not get its earlier vote back", async function () {
      const { registry, q, id, role, guardians } = await loadFixture(claimed);
      const [g1, g2] = guardians;
      await q.connect(g1).flag(id, REASON);
      await q.revokeRole(role, g1.address);
      await q.grantRole(role, g1.address);
      expect(await q.votes(id, true, g1.address)).to.deep.equal([1n, 0n, false]);
      await q.connect(g2).flag(id, REASON);
      expect(await registry.deviceStatus(id)).to.equal(Status.Active);
    });
  });

  describe("quorum", function () {
    it("lets only the admin set it, never to zero", async function () {
      const { q, role, guardians, stranger, admin } = await loadFixture(claimed);
      for (const signer of [stranger, guardians[0]]) {
        await expect(q.connect(signer).setQuorum(1))
          .to.be.revertedWithCustomError(q, "AccessControlUnauthorizedAccount")
          .withArgs(signer.address, await q.DEFAULT_ADMIN_ROLE());
      }
      await expect(q.connect(admin).setQuorum(0))
        .to.be.revertedWithCustomError(q, "GuardianQuorumInvalidQuorum")
        .withArgs(0);
      await expect(q.connect(admin).setQuorum(3)).to.emit(q, "QuorumChanged").withArgs(3);
      expect(await q.quorum()).to.equal(3n);
      // Nor can a guardian grant the role: the admin manages guardians.
      await expect(q.connect(guardians[0]).grantRole(role, stranger.address)).to.be.revertedWithCustomError(
        q,
        "AccessControlUnauthorizedAccount",
      );
    });

    it("with a quorum of 1, one vote decides; a quorum of 3 needs all three", async function () {
      const { registry, q, ids, guardians } = await loadFixture(claimed);
      const [g1, g2, g3] = guardians;
      await q.setQuorum(1);
      await expect(q.connect(g3).flag(ids[0], REASON)).to.emit(registry, "GuardianFlagged");
      await expect(q.connect(g3).clearFlag(ids[0])).to.emit(registry, "GuardianCleared");
      await q.setQuorum(3);
      await q.connect(g1).flag(ids[1], REASON);
      await q.connect(g2).flag(ids[1], REASON);
      expect(await registry.deviceStatus(ids[1])).to.equal(Status.Active);
      await q.connect(g3).flag(ids[1], REASON);
      expect(await registry.deviceStatus(ids[1])).to.equal(Status.Quarantined);
    });

    it("a lowered quorum lets the next vote decide with the open ones", async function () {
      const { registry, q, id, guardians } = await loadFixture(claimed);
      await q.setQuorum(3);
      await q.connect(guardians[0]).flag(id, REASON);
      await q.connect(guardians[1]).flag(id, REASON);
      await q.setQuorum(2);
      // Two votes are open, the quorum is two: the next vote decides (the count reaches it).
      await q.connect(guardians[2]).flag(id, REASON);
      expect(await registry.deviceStatus(id)).to.equal(Status.Quarantined);
    });
  });
});

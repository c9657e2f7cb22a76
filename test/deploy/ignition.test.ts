import { expect } from "chai";
import { ethers, ignition, time } from "../helpers/hardhat.js";
import CustosModule from "../../ignition/modules/Custos.js";
import parameters from "../../ignition/parameters.example.json" with { type: "json" };
import { DeviceRegistry__factory, TimelockController__factory } from "../../typechain-types/index.js";
import { DOMAINS } from "../../src/eip712/index.js";

async function deployFixture() {
  return ignition.deploy(CustosModule, { parameters });
}

describe("Ignition: Custos module", function () {
  it("deploys the suite with its parameters: roles, quorum, forwarder, P-256 verifier and beacons wired", async function () {
    const {
      registry,
      guardianQuorum,
      forwarder,
      p256Verifier,
      lockAccess,
      paymentChannels,
      custodyLedger,
      locationBeacons,
    } = await deployFixture();
    const p = parameters.Custos;
    expect(await registry.guardianQuorum()).to.equal(await guardianQuorum.getAddress());
    expect(await guardianQuorum.quorum()).to.equal(BigInt(p.guardianQuorum));
    expect(await registry.hasRole(await registry.GUARDIAN_ROLE(), await guardianQuorum.getAddress())).to.equal(true);
    for (const m of p.manufacturers)
      expect(await registry.hasRole(await registry.MANUFACTURER_ROLE(), m)).to.equal(true);
    for (const g of p.guardians) {
      expect(await guardianQuorum.hasRole(await guardianQuorum.GUARDIAN_ROLE(), g)).to.equal(true);
      // A guardian is one vote, never a flag of its own.
      expect(await registry.hasRole(await registry.GUARDIAN_ROLE(), g)).to.equal(false);
    }
    expect(await registry.isTrustedForwarder(await forwarder.getAddress())).to.equal(true);
    expect(await registry.isKeyVerifier(await p256Verifier.getAddress())).to.equal(true);
    expect(await lockAccess.registry()).to.equal(await registry.getAddress());
    expect(await lockAccess.isTrustedForwarder(await forwarder.getAddress())).to.equal(true);
    expect(await paymentChannels.registry()).to.equal(await registry.getAddress());
    expect(await paymentChannels.challengePeriod()).to.equal(BigInt(p.challengePeriod));
    expect(await paymentChannels.isTrustedForwarder(await forwarder.getAddress())).to.equal(true);
    expect(await custodyLedger.registry()).to.equal(await registry.getAddress());
    expect(await custodyLedger.isTrustedForwarder(await forwarder.getAddress())).to.equal(true);
    expect(await locationBeacons.registry()).to.equal(await registry.getAddress());
  });

  it("the admin of the registry and the quorum is the timelock, not a key: the deployer holds no admin role", async function () {
    const { timelock, registry, guardianQuorum } = await deployFixture();
    const [deployer] = await ethers.getSigners();
    const admin = await registry.DEFAULT_ADMIN_ROLE();
    expect(await registry.hasRole(admin, await timelock.getAddress())).to.equal(true);
    expect(await guardianQuorum.hasRole(admin, await timelock.getAddress())).to.equal(true);
    expect(await registry.hasRole(admin, deployer.address)).to.equal(false);
    expect(await guardianQuorum.hasRole(admin, deployer.address)).to.equal(false);
    expect(await timelock.getMinDelay()).to.equal(BigInt(parameters.Custos.adminDelay));
    // The timelock administers itself: no key can shorten the delay without waiting it out.
    expect(await timelock.hasRole(await timelock.DEFAULT_ADMIN_ROLE(), deployer.address)).to.equal(false);
    await expect(
      DeviceRegistry__factory.connect(await registry.getAddress(), deployer).setKeyVerifier(deployer.address, true),
    ).to.be.revertedWithCustomError(registry, "AccessControlUnauthorizedAccount");
  });

  it("a role change is proposed, visible for the whole delay, and only then executed (by anyone)", async function () {
    const deployed = await deployFixture();
    const registry = deployed.registry;
    const [proposer, , , , , , , newManufacturer, stranger] = await ethers.getSigners();
    const timelock = TimelockController__factory.connect(await deployed.timelock.getAddress(), proposer);
    expect(proposer.address).to.equal(parameters.Custos.adminProposer);
    const role = await registry.MANUFACTURER_ROLE();
    const data = registry.interface.encodeFunctionData("grantRole", [role, newManufacturer.address]);
    const target = await registry.getAddress();
    const salt = ethers.id("add a manufacturer");
    const delay = BigInt(parameters.Custos.adminDelay);
    await expect(timelock.connect(stranger).schedule(target, 0, data, ethers.ZeroHash, salt, delay)).to.revert(ethers);
    await expect(timelock.connect(proposer).schedule(target, 0, data, ethers.ZeroHash, salt, delay)).to.emit(
      timelock,
      "CallScheduled",
    );
    await expect(
      timelock.connect(stranger).execute(target, 0, data, ethers.ZeroHash, salt),
    ).to.be.revertedWithCustomError(timelock, "TimelockUnexpectedOperationState");
    expect(await registry.hasRole(role, newManufacturer.address)).to.equal(false);
    await time.increase(delay);
    await timelock.connect(stranger).execute(target, 0, data, ethers.ZeroHash, salt);
    expect(await registry.hasRole(role, newManufacturer.address)).to.equal(true);
  });

  it("deploys LocationBeacons on the registry, under its own EIP-712 domain", async function () {
    const { registry, locationBeacons } = await ignition.deploy(CustosModule, { parameters });
    expect(await locationBeacons.registry()).to.equal(await registry.getAddress());
    const [, name, version] = await locationBeacons.eip712Domain();
    expect({ name, version }).to.deep.equal(DOMAINS.beacons);
  });
});

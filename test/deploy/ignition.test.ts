import { expect } from "chai";
import { ethers, ignition } from "hardhat";
import CustosModule from "../../ignition/modules/Custos";
import parameters from "../../ignition/parameters.example.json";
import { DOMAINS } from "../../src/eip712";

describe("Ignition: Custos module", function () {
  it("deploys the suite with its parameters: roles, quorum, forwarder and P-256 verifier wired", async function () {
    const [deployer] = await ethers.getSigners();
    const { registry, forwarder, p256Verifier, lockAccess, paymentChannels, custodyLedger } = await ignition.deploy(
      CustosModule,
      {
        parameters,
      },
    );
    const p = parameters.Custos;
    expect(await registry.hasRole(await registry.DEFAULT_ADMIN_ROLE(), deployer.address)).to.equal(true);
    expect(await registry.guardianQuorum()).to.equal(BigInt(p.guardianQuorum));
    for (const m of p.manufacturers)
      expect(await registry.hasRole(await registry.MANUFACTURER_ROLE(), m)).to.equal(true);
    for (const g of p.guardians) expect(await registry.hasRole(await registry.GUARDIAN_ROLE(), g)).to.equal(true);
    expect(await registry.isTrustedForwarder(await forwarder.getAddress())).to.equal(true);
    expect(await registry.isKeyVerifier(await p256Verifier.getAddress())).to.equal(true);
    expect(await lockAccess.registry()).to.equal(await registry.getAddress());
    expect(await lockAccess.isTrustedForwarder(await forwarder.getAddress())).to.equal(true);
    expect(await paymentChannels.registry()).to.equal(await registry.getAddress());
    expect(await paymentChannels.challengePeriod()).to.equal(BigInt(p.challengePeriod));
    expect(await paymentChannels.isTrustedForwarder(await forwarder.getAddress())).to.equal(true);
    expect(await custodyLedger.registry()).to.equal(await registry.getAddress());
    expect(await custodyLedger.isTrustedForwarder(await forwarder.getAddress())).to.equal(true);
  });

  it("deploys LocationBeacons on the registry, under its own EIP-712 domain", async function () {
    const { registry, locationBeacons } = await ignition.deploy(CustosModule, { parameters });
    expect(await locationBeacons.registry()).to.equal(await registry.getAddress());
    const [, name, version] = await locationBeacons.eip712Domain();
    expect({ name, version }).to.deep.equal(DOMAINS.beacons);
  });
});

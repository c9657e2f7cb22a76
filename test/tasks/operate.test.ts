import { expect } from "chai";
import { ethers, time } from "../helpers/hardhat.js";
import { runTask } from "./run.js";
import { provisionFor } from "./fixtures.js";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { deploySuite } from "../../src/deploy/suite.js";
import { digest } from "../../src/eip712/index.js";
import { TypedDataHasher } from "../../src/eip712/fast.js";
import { randomDeviceKey } from "../../src/crypto/deviceKey.js";
import { showCertificate } from "../../src/agent/roles/guest.js";
import { shipmentIdOf } from "../../src/custody/index.js";

describe("Hardhat tasks: locks, channels and shipments", function () {
  const dir = mkdtempSync(path.join(tmpdir(), "custos-operate-"));

  it("registry:transfer hands a payer device over and names the open channels whose refunds now go to the buyer", async function () {
    const [admin, seller, buyer, payeeOwner] = await ethers.getSigners();
    const suite = await deploySuite(admin, { manufacturers: [admin.address], challengePeriod: 600 });
    const car = randomDeviceKey("secp256k1");
    const [carId] = await provisionFor(suite, [car], seller);
    const [chargerId] = await provisionFor(suite, [randomDeviceKey("secp256k1")], payeeOwner);
    const common = { channels: suite.paymentChannels };
    const both = { registry: suite.registry, ...common };
    const { channel } = await runTask("channel:open", {
      payer: carId.toString(),
      payee: chargerId.toString(),
      payerKey: car.signer,
      amount: "1000",
      allowance: "0",
      salt: 7,
      signer: "1",
      ...common,
    });
    await expect(
      runTask("registry:transfer", { device: carId.toString(), to: buyer.address, signer: "2", ...both }),
    ).to.be.rejectedWith(
      /^registry:transfer needs device \d+'s owner: account #2 \(0x.{4}….{4}\) is not; account #1 \(0x.{4}….{4}\), the owner, does: add --signer 1$/,
    );
    const result = await runTask("registry:transfer", {
      device: carId.toString(),
      to: buyer.address,
      signer: "1",
      ...both,
    });
    expect(result).to.deep.include({ to: buyer.address, refundsMoveTo: buyer.address, channels: [channel] });
    const registry = await ethers.getContractAt("DeviceRegistry", suite.registry);
    expect(await registry.ownerOf(carId)).to.equal(buyer.address);
    // The refund follows the device: the buyer starts the close and gets it, not the seller.
    await runTask("channel:start-close", { channel, signer: "2", ...common });
    await time.increase(601);
    await runTask("channel:settle", { channel, signer: "0", ...common });
    const channels = await ethers.getContractAt("PaymentChannels", suite.paymentChannels);
    expect(await channels.accountBalance(buyer.address, ethers.ZeroAddress)).to.equal(1000n);
    expect(await channels.accountBalance(seller.address, ethers.ZeroAddress)).to.equal(0n);
  });

  it("grants a lock key as a certificate file, appoints a manager, revokes one key and then all", async function () {
    const [admin, owner, manager] = await ethers.getSigners();
    const suite = await deploySuite(admin, { manufacturers: [admin.address] });
    const [lock] = await provisionFor(suite, [randomDeviceKey("secp256k1")], owner);
    const guest = randomDeviceKey("p256", suite.p256Verifier);
    const out = path.join(dir, "key.json");
    const cert = await runTask("lock:grant", {
      lock: lock.toString(),
      holder: guest.signer,
      keyId: "7",
      validFor: 3600,
      schedule: "0",
      out,
      locks: suite.lockAccess,
      signer: "1",
    });
    const shown = showCertificate(cert, await TypedDataHasher.create(), await time.latest());
    expect(shown).to.include({
      lock: lock.toString(),
      keyId: "7",
      issuedBy: "owner",
      signatureValid: true,
      usableNow: true,
    });
    await runTask("lock:appoint-manager", {
      lock: lock.toString(),
      manager: manager.address,
      validFor: "600",
      locks: suite.lockAccess,
      signer: "1",
    });
    const locks = await ethers.getContractAt("LockAccess", suite.lockAccess);
    expect(await locks.managerExpiry(lock, 0, manager.address)).to.be.greaterThan(0n); // ownership epoch 0: never sold
    await runTask("lock:revoke", { lock: lock.toString(), keyId: "7", locks: suite.lockAccess, signer: "1" });
    expect(await locks.isRevoked(lock, 0, 7n)).to.equal(true);
    expect(
      await runTask("lock:revoke-all", { lock: lock.toString(), locks: suite.lockAccess, signer: "1" }),
    ).to.include({
      epoch: 1,
    });
    await expect(
      runTask("lock:revoke", { lock: "x", keyId: "7", locks: suite.lockAccess, signer: "1" }),
    ).to.be.rejectedWith(/--lock: x is not a device id/);
    await expect(
      runTask("lock:grant", {
        lock: lock.toString(),
        holder: "0x12",
        keyId: "1",
        validFor: 1,
        schedule: "0",
        out,
        locks: suite.lockAccess,
        signer: "1",
      }),
    ).to.be.rejectedWith(/--holder/);
  });

  it("opens, tops up and closes a channel with the last voucher; starts a unilateral close, settles and withdraws", async function () {
    const [admin, carOwner, chargerOwner] = await ethers.getSigners();
    const suite = await deploySuite(admin, { manufacturers: [admin.address], challengePeriod: 600 });
    const car = randomDeviceKey("secp256k1");
    const [carId] = await provisionFor(suite, [car], carOwner);
    const [chargerId] = await provisionFor(suite, [randomDeviceKey("secp256k1")], chargerOwner);
    const common = { channels: suite.paymentChannels };
    const { channel } = await runTask("channel:open", {
      payer: carId.toString(),
      payee: chargerId.toString(),
      payerKey: car.signer,
      amount: "1000000",
      allowance: "0",
      salt: 0,
      signer: "1",
      ...common,
    });
    expect(await runTask("channel:top-up", { channel, amount: "500", signer: "0", ...common })).to.include({
      deposit: 1000500n,
    });
    const { chainId } = await ethers.provider.getNetwork();
    const voucher = {
      cumulativeAmount: "4000",
      key: car.signer,
      signature: car.signDigest(
        digest("Voucher", { chainId, verifyingContract: suite.paymentChannels }, { channel, cumulativeAmount: 4000n }),
      ),
    };
    const file = path.join(dir, "voucher.json");
    writeFileSync(file, JSON.stringify(voucher));
    await runTask("channel:close", { channel, voucher: file, signer: "2", ...common });
    const channels = await ethers.getContractAt("PaymentChannels", suite.paymentChannels);
    expect(await channels.deviceBalance(chargerId, ethers.ZeroAddress)).to.equal(4000n);
    expect(await channels.accountBalance(carOwner.address, ethers.ZeroAddress)).to.equal(1000500n - 4000n);

    const second = await runTask("channel:open", {
      payer: carId.toString(),
      payee: chargerId.toString(),
      payerKey: car.signer,
      amount: "777",
      allowance: "0",
      salt: 1,
      signer: "1",
      ...common,
    });
    await runTask("channel:start-close", { channel: second.channel, signer: "1", ...common });
    await time.increase(600);
    expect(await runTask("channel:settle", { channel: second.channel, signer: "0", ...common })).to.include({
      settled: 1,
    });
    await runTask("channel:withdraw", { signer: "1", ...common });
    await runTask("channel:withdraw", { device: chargerId.toString(), signer: "2", ...common });
    expect(await channels.accountBalance(carOwner.address, ethers.ZeroAddress)).to.equal(0n);
    await expect(
      runTask("channel:top-up", { channel: "0x12", amount: "1", signer: "0", ...common }),
    ).to.be.rejectedWith(/--channel/);
    await expect(runTask("channel:top-up", { channel, amount: "0", signer: "0", ...common })).to.be.rejectedWith(
      /--amount/,
    );
  });

  it("creates a shipment and hands it off with both custodians' signatures from files", async function () {
    const [admin, shipper, carrier, receiver] = await ethers.getSigners();
    const suite = await deploySuite(admin, { manufacturers: [admin.address] });
    const [tracker] = await provisionFor(suite, [randomDeviceKey("secp256k1")], shipper);
    const epc = "urn:epc:id:sscc:0614141.1234567890";
    const { shipment, creator } = await runTask("custody:create", {
      epc,
      tracker: tracker.toString(),
      receiver: receiver.address,
      deadlineIn: 86_400,
      maxSilence: 3600,
      minTemp: "200",
      maxTemp: "800",
      metadata: "vaccines",
      ledger: suite.custodyLedger,
      signer: "1",
    });
    // The id is the creator's: the shipper (account 1) created it.
    expect([shipment, creator]).to.deep.equal([shipmentIdOf(shipper.address, epc), shipper.address]);
    const file = path.join(dir, "handoff.json");
    const common = {
      from: shipper.address,
      to: carrier.address,
      bizStep: "shipping",
      disposition: "in_transit",
      readPoint: "urn:epc:id:sgln:0614141.00001.0",
      validFor: 600,
      out: file,
      ledger: suite.custodyLedger,
    };
    await runTask("custody:sign-handoff", { ...common, shipment, signer: "1" });
    await expect(
      runTask("custody:handoff", { message: file, ledger: suite.custodyLedger, signer: "0" }),
    ).to.be.rejectedWith(/no signature by the receiver/);
    // Named by its EPC and creator instead of its id.
    await runTask("custody:sign-handoff", { ...common, epc, creator: shipper.address, message: file, signer: "2" });
    expect(await runTask("custody:handoff", { message: file, ledger: suite.custodyLedger, signer: "0" })).to.include({
      seq: 1,
    });
    const ledger = await ethers.getContractAt("CustodyLedger", suite.custodyLedger);
    expect((await ledger.shipmentOf(shipment)).custodian).to.equal(carrier.address);
  });
});

import { expect } from "chai";
import fc from "fast-check";
import { digest } from "../../src/eip712/index.js";
import { ethers, loadFixture, time } from "../helpers/hardhat.js";
import { Agent } from "../../src/agent/agent.js";
import { TypedDataHasher } from "../../src/eip712/fast.js";
import { randomDeviceKey } from "../../src/crypto/deviceKey.js";
import {
  MeterError,
  MeterPayer,
  SimulatedMeter,
  TRUSTED,
  VoucherDigester,
  channelIdOf,
  type ChannelTerms,
} from "../../src/agent/roles/meter.js";
import { CHALLENGE_PERIOD, openChannel } from "../helpers/channels.js";
import { rotation } from "../helpers/registry.js";
import {
  METER_PRICE as PRICE,
  meterFixture,
  meterSetup,
  openMeterPayee,
  tempDir,
  type MeterFixture,
  type MeterSetupOptions,
} from "./helpers.js";
import { assertProperty } from "../helpers/property.js";

describe("meter role: devices paying per unit over a payment channel", function () {
  let hasher: TypedDataHasher;
  const open: { close(): Promise<unknown> }[] = [];

  before(async function () {
    hasher = await TypedDataHasher.create();
  });
  afterEach(async function () {
    for (const o of open.splice(0).reverse()) await o.close();
  });

  const setup = (f: MeterFixture, opts: MeterSetupOptions = {}) => meterSetup(f, hasher, open, opts);
  const openPayee = (f: MeterFixture, agent: Agent, dataDir: string, minClaimValue?: bigint) =>
    openMeterPayee(f, hasher, open, agent, dataDir, minClaimValue);

  it("a car pays a charger per Wh: 1,000 vouchers checked in memory, energy only while paid ahead; the last is claimed through the outbox", async function () {
    const f = await loadFixture(meterFixture);
    const s = await setup(f);
    expect(s.payer.channel).to.equal(s.id).and.to.equal(channelIdOf(s.terms));
    let delivered = 0n;
    for (let i = 0; i < 1000; i++) {
      const v = s.payer.pay()!;
      const r = s.payee.accept(v);
      expect(r.accepted, `voucher ${i}`).to.equal(true);
      if (r.accepted) await r.persisted;
      // The charger delivers in 10 Wh steps, only while the voucher it holds pays for them.
      expect(s.payee.mayDeliver(s.id, 10n)).to.equal(true);
      await s.payee.delivered(s.id, 10n);
      s.meter.add(10n);
      delivered += 10n;
      expect(s.payee.mayDeliver(s.id, 10n)).to.equal(false); // the next 10 Wh wait for the next voucher
    }
    expect(s.payee.best(s.id)!.cumulativeAmount).to.equal(delivered * PRICE);
    expect(await s.payee.claimDue()).to.deep.equal([s.id]);
    await s.agent.drain();
    const state = await f.channels.channelState(s.id);
    expect(state.paid).to.equal(s.payee.best(s.id)!.cumulativeAmount);
    expect(await f.channels.deviceBalance(f.payees[0], ethers.ZeroAddress)).to.equal(state.paid);
  });

  it("the hand-laid voucher digest equals the catalogue's (ethers' TypedDataEncoder) for any channel and amount", function () {
    const deployment = { chainId: 31337n, verifyingContract: "0x5FbDB2315678afecb367f032d93F642f64180aa3" };
    const digester = new VoucherDigester(hasher, deployment);
    assertProperty(
      fc.property(fc.uint8Array({ minLength: 32, maxLength: 32 }), fc.bigInt(0n, (1n << 256n) - 1n), (ch, amount) => {
        const channel = ethers.hexlify(ch);
        expect(ethers.hexlify(digester.digest(ch, amount))).to.equal(
          digest("Voucher", deployment, { channel, cumulativeAmount: amount }),
        );
      }),
      300,
    );
    expect(() => digester.digest(new Uint8Array(32), 1n << 256n)).to.throw(MeterError);
  });

  it("attack: a payee asking for more than the meter justifies at the agreed price gets nothing signed", function () {
    const meter = new SimulatedMeter();
    const payer = new MeterPayer({
      key: randomDeviceKey("secp256k1"),
      hasher,
      deployment: { chainId: 31337n, verifyingContract: ethers.ZeroAddress },
      terms: {
        payer: 1n,
        payee: 2n,
        token: ethers.ZeroAddress,
        rate: 0n,
        allowance: 0n,
        openedAt: 0n,
        salt: 0n,
        payerKeyHash: ethers.ZeroHash,
        payerPeriod: 0n,
      },
      pricePerUnit: PRICE,
      aheadUnits: 1n,
      meter,
    });
    meter.add(5n);
    expect(() => payer.payUpTo(7n * PRICE)).to.throw(MeterError, /justifies 6000000000/);
    expect(payer.paid).to.equal(0n);
    expect(payer.payUpTo(6n * PRICE).cumulativeAmount).to.equal(6n * PRICE);
    expect(() => payer.payUpTo(5n * PRICE)).to.throw(MeterError, /already paid/);
    expect(payer.pay()).to.equal(undefined);
  });

  it("attack: vouchers for another channel, contract or chain, a lower one, or one by a key not the payer's are refused in memory", async function () {
    const f = await loadFixture(meterFixture);
    const s = await setup(f);
    const other = await openChannel(f, { salt: 5 });
    const make = (deployment = f.channelDeployment, terms = s.terms, key = f.payerKeys[0]) =>
      new MeterPayer({
        key,
        hasher,
        deployment,
        terms,
        pricePerUnit: PRICE,
        meter: Object.assign(new SimulatedMeter(), { read: () => 100n }),
      });
    const onOther = make(f.channelDeployment, other.terms as ChannelTerms).pay()!;
    expect(s.payee.accept(onOther)).to.deep.equal({ accepted: false, reason: "unknown-channel" });
    expect(s.payee.accept({ ...onOther, channel: s.id })).to.deep.equal({ accepted: false, reason: "signature" });
    const foreignContract = make({ ...f.channelDeployment, verifyingContract: f.payerKeys[1].signer.slice(0, 42) });
    expect(s.payee.accept(foreignContract.pay()!)).to.deep.equal({ accepted: false, reason: "signature" });
    expect(s.payee.accept(make({ ...f.channelDeployment, chainId: 1n }).pay()!)).to.deep.equal({
      accepted: false,
      reason: "signature",
    });
    const stranger = randomDeviceKey("secp256k1");
    expect(s.payee.accept(make(f.channelDeployment, s.terms, stranger).pay()!)).to.deep.equal({
      accepted: false,
      reason: "not-payer-key",
    });
    const good = make().pay()!;
    expect(s.payee.accept(good)).to.include({ accepted: true });
    expect(s.payee.accept(good)).to.deep.equal({ accepted: false, reason: "not-higher" });
  });

  it("attack: after the payer device rotates its key, the payee applies the chain's rule: the new key's vouchers pay nothing, the old key's at most the cap at the rotation (learnt by watch, kept across a restart)", async function () {
    const f = await loadFixture(meterFixture);
    const dataDir = tempDir();
    // 1 Wh a second on top of 20 Wh at once.
    const s = await setup(f, { dataDir, rate: PRICE, allowance: 20n * PRICE });
    s.meter.add(5n);
    const first = s.payee.accept(s.payer.pay()!);
    if (first.accepted) await first.persisted;
    expect(s.payee.state(s.id).until).to.equal(TRUSTED);

    await time.setNextBlockTimestamp(Number(s.terms.openedAt) + 100);
    const next = randomDeviceKey("secp256k1");
    await f.registry.connect(f.owner).rotateKey(f.payers[0], await rotation(f, f.payers[0], next, f.payerKeys[0]));
    const rotatedAt = s.terms.openedAt + 100n;
    const cap = 20n * PRICE + 100n * PRICE;
    expect(await s.payee.watch()).to.deep.equal([]);
    expect(s.payee.state(s.id).until).to.equal(rotatedAt);

    // The rotated-to key pays no old channel, on chain or here.
    const byNewKey = new MeterPayer({
      key: next,
      hasher,
      deployment: f.channelDeployment,
      terms: s.terms,
      pricePerUnit: PRICE,
      meter: Object.assign(new SimulatedMeter(), { read: () => 50n }),
    });
    const v = byNewKey.pay()!;
    expect(s.payee.accept(v)).to.deep.equal({ accepted: false, reason: "not-payer-key" });
    await expect(f.channels.claim(s.terms, v.cumulativeAmount, v.key, v.signature)).to.be.revertedWithCustomError(
      f.channels,
      "PaymentChannelsNotPayerKey",
    );

    // The old key signs for far more, long after: it is held, but backs only the cap at the rotation.
    await time.increase(10_000);
    const now = BigInt(await time.latest());
    s.meter.add(5_000n);
    const late = s.payee.accept(s.payer.pay()!);
    expect(late.accepted).to.equal(true);
    if (late.accepted) await late.persisted;
    expect(s.payee.backed(s.id, now)).to.equal(cap);
    expect(s.payee.mayDeliver(s.id, 120n, now)).to.equal(true);
    expect(s.payee.mayDeliver(s.id, 121n, now)).to.equal(false);

    // The bound survives a restart, and the claim gets exactly it.
    await s.payee.close();
    const restarted = await openPayee(f, s.agent, dataDir);
    expect(restarted.state(s.id).until).to.equal(rotatedAt);
    expect(restarted.backed(s.id, now)).to.equal(cap);
    expect(await restarted.claimDue(now)).to.deep.equal([s.id]);
    await s.agent.drain();
    expect((await f.channels.channelState(s.id)).paid).to.equal(cap);
  });

  it("claims only once the unclaimed value exceeds what a claim is worth", async function () {
    const f = await loadFixture(meterFixture);
    const s = await setup(f, { minClaimValue: 50n * PRICE });
    s.meter.add(30n);
    const r = s.payee.accept(s.payer.pay()!);
    if (r.accepted) await r.persisted;
    expect(await s.payee.claimDue()).to.deep.equal([]);
    s.meter.add(20n);
    s.payee.accept(s.payer.pay()!);
    expect(await s.payee.claimDue()).to.deep.equal([s.id]);
  });

  it("CRASH: the highest voucher survives a restart, and a unilateral close is answered before its challenge period ends", async function () {
    const f = await loadFixture(meterFixture);
    const dataDir = tempDir();
    const s = await setup(f, { dataDir, minClaimValue: ethers.parseEther("10") });
    s.meter.add(400n);
    const r = s.payee.accept(s.payer.pay()!);
    if (r.accepted) await r.persisted;
    const best = s.payee.best(s.id)!.cumulativeAmount;
    expect(await s.payee.claimDue()).to.deep.equal([]); // not worth a claim yet
    await s.payee.close();

    // The payer's owner tries to walk away with everything: a unilateral close.
    await f.channels.connect(f.owner).startClose(s.terms);
    const restarted = await openPayee(f, s.agent, dataDir, ethers.parseEther("10"));
    expect(restarted.best(s.id)!.cumulativeAmount).to.equal(best);
    expect(await restarted.watch()).to.deep.equal([s.id]);
    await s.agent.drain();
    expect((await f.channels.channelState(s.id)).paid).to.equal(best);
    await time.increase(CHALLENGE_PERIOD);
    await f.channels.settle(s.terms);
    expect(await f.channels.deviceBalance(f.payees[0], ethers.ZeroAddress)).to.equal(best);
    expect(await f.channels.accountBalance(f.owner.address, ethers.ZeroAddress)).to.equal(
      ethers.parseEther("1") - best,
    );
    expect(await restarted.watch()).to.deep.equal([]);
    expect(restarted.state(s.id).closed).to.equal(true);
  });
});

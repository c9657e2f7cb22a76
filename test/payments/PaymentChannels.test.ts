import { expect } from "chai";
import { ethers, loadFixture, setBalance, time } from "../helpers/hardhat.js";
import { TypedDataEncoder, Wallet } from "ethers";
import { randomDeviceKey } from "../../src/crypto/deviceKey.js";
import { domainOf, typedData } from "../../src/eip712/index.js";
import { channelIdOf } from "../../src/agent/roles/meter.js";
import { CHALLENGE_PERIOD, UNCAPPED, deployChannels, openChannel, openedTerms, voucher } from "../helpers/channels.js";
import { highS, rotation } from "../helpers/registry.js";

const ONE = ethers.parseEther("1");
const ETH = ethers.ZeroAddress;

describe("PaymentChannels", function () {
  it("exposes its registry, its challenge period and the catalogue's EIP-712 domain", async function () {
    const f = await loadFixture(deployChannels);
    expect(await f.channels.registry()).to.equal(await f.registry.getAddress());
    expect(await f.channels.challengePeriod()).to.equal(BigInt(CHALLENGE_PERIOD));
    expect(await f.channels.DOMAIN_SEPARATOR()).to.equal(
      TypedDataEncoder.hashDomain(domainOf("channels", f.channelDeployment)),
    );
  });

  describe("opening and funding", function () {
    it("opens an ETH channel funded by anyone: the id is the hash of its terms, one slot holds the deposit", async function () {
      const f = await loadFixture(deployChannels);
      const { tx, terms, id } = await openChannel(f, { amount: ONE });
      await expect(tx).to.changeEtherBalances(ethers, [f.stranger, f.channels], [-ONE, ONE]);
      expect(await f.channels.channelId(terms)).to.equal(id);
      // The contract hashes the terms from raw calldata and memory: the same as their ABI encoding.
      expect(channelIdOf(terms)).to.equal(id);
      expect(terms.payerKeyHash).to.equal(ethers.keccak256(f.payerKeys[0].signer));
      const state = await f.channels.channelState(id);
      expect([state.deposit, state.paid, state.closesAt]).to.deep.equal([ONE, 0n, 0n]);
    });

    it("opens an ERC-20 channel, and one with an EIP-2612 permit in a single transaction (even if the permit was front-run)", async function () {
      const f = await loadFixture(deployChannels);
      const { id } = await openChannel(f, { token: "token", amount: 500n });
      expect((await f.channels.channelState(id)).deposit).to.equal(500n);

      const funder = new Wallet(Wallet.createRandom().privateKey, ethers.provider);
      await setBalance(funder.address, ONE);
      await f.token.mint(funder.address, 1000n);
      const deadline = BigInt((await time.latest()) + 3600);
      const permitSig = async (value: bigint) => {
        const nonce = await f.token.nonces(funder.address);
        const sig = ethers.Signature.from(
          await funder.signTypedData(
            {
              name: "Custos Test Token",
              version: "1",
              chainId: f.deployment.chainId,
              verifyingContract: await f.token.getAddress(),
            },
            {
              Permit: [
                { name: "owner", type: "address" },
                { name: "spender", type: "address" },
                { name: "value", type: "uint256" },
                { name: "nonce", type: "uint256" },
                { name: "deadline", type: "uint256" },
              ],
            },
            { owner: funder.address, spender: await f.channels.getAddress(), value, nonce, deadline },
          ),
        );
        return { deadline, v: sig.v, r: sig.r, s: sig.s };
      };
      const opening = {
        payer: f.payers[0],
        payee: f.payees[0],
        token: await f.token.getAddress(),
        rate: UNCAPPED,
        allowance: 0n,
        salt: 1,
      };
      const permit = await permitSig(400n);
      const tx = await f.channels.connect(funder).openWithPermit(opening, f.payerKeys[0].signer, 400n, permit);
      const { id: permitted } = await openedTerms(f, tx);
      expect((await f.channels.channelState(permitted)).deposit).to.equal(400n);

      // Someone submits the permit first: the open still goes through on the allowance it left.
      const again = await permitSig(300n);
      await f.token.permit(
        funder.address,
        await f.channels.getAddress(),
        300n,
        again.deadline,
        again.v,
        again.r,
        again.s,
      );
      await f.channels.connect(funder).openWithPermit({ ...opening, salt: 2 }, f.payerKeys[0].signer, 300n, again);
      expect(await f.token.balanceOf(funder.address)).to.equal(300n);
    });

    it("tops up by anyone; the ETH sent must equal the amount", async function () {
      const f = await loadFixture(deployChannels);
      const { terms, id } = await openChannel(f);
      await expect(f.channels.connect(f.admin).topUp(terms, 5n, { value: 5n }))
        .to.emit(f.channels, "ChannelToppedUp")
        .withArgs(id, f.admin.address, 5n);
      expect((await f.channels.channelState(id)).deposit).to.equal(ONE + 5n);
      await expect(f.channels.topUp(terms, 5n, { value: 4n }))
        .to.be.revertedWithCustomError(f.channels, "PaymentChannelsWrongValue")
        .withArgs(5n, 4n);
      const { terms: tokenTerms } = await openChannel(f, { token: "token", amount: 10n });
      await expect(f.channels.connect(f.stranger).topUp(tokenTerms, 5n, { value: 1n }))
        .to.be.revertedWithCustomError(f.channels, "PaymentChannelsWrongValue")
        .withArgs(0n, 1n);
    });

    it("attack: terms with dirty high bits in calldata (the same values once cleaned) reach no channel", async function () {
      const f = await loadFixture(deployChannels);
      const { terms, id } = await openChannel(f);
      const data = f.channels.interface.encodeFunctionData("topUp", [terms, 5n]);
      // Words after the selector: payer, payee, token, rate, ... Set a bit above the token's 160.
      const word = 4 + 2 * 32;
      const dirty = ethers.concat([
        ethers.dataSlice(data, 0, word),
        ethers.zeroPadValue(ethers.concat(["0x01", ethers.dataSlice(data, word + 1, word + 32)]), 32),
        ethers.dataSlice(data, word + 32),
      ]);
      expect(dirty).to.not.equal(data);
      const to = await f.channels.getAddress();
      await expect(f.stranger.sendTransaction({ to, data: dirty, value: 5n })).to.revert(ethers);
      await f.stranger.sendTransaction({ to, data, value: 5n });
      expect((await f.channels.channelState(id)).deposit).to.equal(ONE + 5n);
    });

    it("attack: a fee-on-transfer token (delivers less than sent) is refused", async function () {
      const f = await loadFixture(deployChannels);
      await expect(openChannel(f, { token: await f.feeToken.getAddress(), amount: 1000n }))
        .to.be.revertedWithCustomError(f.channels, "PaymentChannelsTokenShortfall")
        .withArgs(1000n, 990n);
    });

    it("attack: overflow of a deposit (beyond 2^96 - 1 at open or by top-up) is refused", async function () {
      const f = await loadFixture(deployChannels);
      const max = (1n << 96n) - 1n;
      await f.token.mint(f.stranger.address, 2n * max);
      await expect(openChannel(f, { token: "token", amount: max + 1n }))
        .to.be.revertedWithCustomError(f.channels, "PaymentChannelsDepositOverflow")
        .withArgs(max + 1n);
      const { terms } = await openChannel(f, { token: "token", amount: max });
      await expect(f.channels.connect(f.stranger).topUp(terms, 1n))
        .to.be.revertedWithCustomError(f.channels, "PaymentChannelsDepositOverflow")
        .withArgs(max + 1n);
    });

    it("attack: a quarantined payer cannot open or top up (nor after its release: a new trust period); a key that is not the payer's cannot open; a zero deposit is refused", async function () {
      const f = await loadFixture(deployChannels);
      const { terms, id: channel } = await openChannel(f);
      expect(terms.payerPeriod).to.equal((await f.registry.deviceTrust(f.payers[0])).period);
      await f.registry.connect(f.owner).reportStolen(f.payers[0]);
      await expect(openChannel(f, { salt: 9 }))
        .to.be.revertedWithCustomError(f.channels, "PaymentChannelsPayerNotActive")
        .withArgs(f.payers[0], 2);
      await expect(f.channels.topUp(terms, 1n, { value: 1n }))
        .to.be.revertedWithCustomError(f.channels, "PaymentChannelsPayerNotTrusted")
        .withArgs(channel, terms.payerPeriod);
      // Released, the device is trusted again, in a period the channel does not name.
      await f.registry.connect(f.owner).release(f.payers[0]);
      await expect(f.channels.topUp(terms, 1n, { value: 1n }))
        .to.be.revertedWithCustomError(f.channels, "PaymentChannelsPayerNotTrusted")
        .withArgs(channel, terms.payerPeriod);
      const reopened = await openChannel(f, { salt: 9 });
      expect(reopened.terms.payerPeriod).to.not.equal(terms.payerPeriod);
      await expect(openChannel(f, { payer: 1, payerKey: f.payerKeys[0].signer }))
        .to.be.revertedWithCustomError(f.channels, "PaymentChannelsNotPayerKey")
        .withArgs(f.payers[1]);
      await expect(openChannel(f, { payer: 1, amount: 0n })).to.be.revertedWithCustomError(
        f.channels,
        "PaymentChannelsZeroDeposit",
      );
      // The same terms in the same block (same openedAt) make the same id: the second is refused.
      const opening = { payer: f.payers[1], payee: f.payees[0], token: ETH, rate: UNCAPPED, allowance: 0n, salt: 3 };
      await ethers.provider.send("evm_setAutomine", [false]);
      try {
        const first = await f.channels.open(opening, f.payerKeys[1].signer, 1n, { value: 1n });
        const second = await f.channels.open(opening, f.payerKeys[1].signer, 1n, { value: 1n, gasLimit: 500_000n });
        await ethers.provider.send("evm_mine", []);
        const { id } = await openedTerms(f, first);
        const [r1, r2] = await Promise.all([first, second].map((t) => ethers.provider.getTransactionReceipt(t.hash)));
        expect([r1!.blockNumber, r1!.status, r2!.status]).to.deep.equal([r2!.blockNumber, 1, 0]);
        const trace = await ethers.provider.send("debug_traceTransaction", [second.hash]);
        const error = f.channels.interface.parseError("0x" + (trace.returnValue as string).replace(/^0x/, ""));
        expect([error?.name, error?.args[0]]).to.deep.equal(["PaymentChannelsChannelExists", id]);
        expect((await f.channels.channelState(id)).deposit).to.equal(1n);
      } finally {
        await ethers.provider.send("evm_setAutomine", [true]);
      }
    });
  });

  describe("vouchers and claims", function () {
    for (const payer of [0, 1]) {
      it(`pays the payee device's owner what a voucher adds (${payer ? "P-256" : "secp256k1"} payer), presented by anyone; the owner withdraws`, async function () {
        const f = await loadFixture(deployChannels);
        const { terms, id } = await openChannel(f, { payer });
        const key = f.payerKeys[payer];
        await expect(f.channels.connect(f.admin).claim(terms, 300n, key.signer, voucher(f, key, id, 300n)))
          .to.emit(f.channels, "ChannelClaimed")
          .withArgs(id, 300n);
        await f.channels.claim(terms, 1000n, key.signer, voucher(f, key, id, 1000n));
        expect(await f.channels.deviceBalance(f.payees[0], ETH)).to.equal(1000n);
        expect((await f.channels.channelState(id)).paid).to.equal(1000n);
        await expect(
          f.channels.connect(f.other).withdrawForDevice(f.payees[0], ETH, f.other.address),
        ).to.changeEtherBalances(ethers, [f.other, f.channels], [1000n, -1000n]);
        await expect(f.channels.connect(f.other).withdrawForDevice(f.payees[0], ETH, f.other.address))
          .to.be.revertedWithCustomError(f.channels, "PaymentChannelsNothingEarned")
          .withArgs(f.payees[0], ETH);
        await expect(f.channels.connect(f.stranger).withdrawForDevice(f.payees[0], ETH, f.stranger.address))
          .to.be.revertedWithCustomError(f.channels, "PaymentChannelsNotOwner")
          .withArgs(f.payees[0], f.stranger.address);
        await expect(f.channels.connect(f.other).withdraw(ETH, f.other.address))
          .to.be.revertedWithCustomError(f.channels, "PaymentChannelsNothingOwed")
          .withArgs(f.other.address, ETH);
      });
    }

    it("pays ERC-20 channels in their token", async function () {
      const f = await loadFixture(deployChannels);
      const { terms, id } = await openChannel(f, { token: "token", amount: 1000n });
      await f.channels.claim(terms, 600n, f.payerKeys[0].signer, voucher(f, f.payerKeys[0], id, 600n));
      await f.channels.connect(f.other).withdrawForDevice(f.payees[0], await f.token.getAddress(), f.other.address);
      expect(await f.token.balanceOf(f.other.address)).to.equal(600n);
    });

    it("attack: a voucher replayed on another channel, contract or chain is refused", async function () {
      const f = await loadFixture(deployChannels);
      const key = f.payerKeys[0];
      const a = await openChannel(f, { salt: 1 });
      const b = await openChannel(f, { salt: 2 });
      const sig = voucher(f, key, a.id, 100n);
      await expect(f.channels.claim(b.terms, 100n, key.signer, sig)).to.be.revertedWithCustomError(
        f.channels,
        "PaymentChannelsInvalidSignature",
      );
      const other = await ethers.deployContract("PaymentChannels", [
        await f.registry.getAddress(),
        await f.forwarder.getAddress(),
        CHALLENGE_PERIOD,
      ]);
      const otherDeployment = { ...f.channelDeployment, verifyingContract: await other.getAddress() };
      await expect(
        f.channels.claim(a.terms, 100n, key.signer, voucher(f, key, a.id, 100n, otherDeployment)),
      ).to.be.revertedWithCustomError(f.channels, "PaymentChannelsInvalidSignature");
      await expect(
        f.channels.claim(
          a.terms,
          100n,
          key.signer,
          voucher(f, key, a.id, 100n, { ...f.channelDeployment, chainId: 1n }),
        ),
      ).to.be.revertedWithCustomError(f.channels, "PaymentChannelsInvalidSignature");
      await expect(f.channels.claim(a.terms, 100n, key.signer, sig)).to.emit(f.channels, "ChannelClaimed");
    });

    it("attack: a voucher below what was claimed, or the same one twice, pays nothing more", async function () {
      const f = await loadFixture(deployChannels);
      const { terms, id } = await openChannel(f);
      const key = f.payerKeys[0];
      const high = voucher(f, key, id, 500n);
      await f.channels.claim(terms, 500n, key.signer, high);
      await expect(f.channels.claim(terms, 500n, key.signer, high))
        .to.be.revertedWithCustomError(f.channels, "PaymentChannelsNothingToClaim")
        .withArgs(id, 500n);
      await expect(f.channels.claim(terms, 400n, key.signer, voucher(f, key, id, 400n)))
        .to.be.revertedWithCustomError(f.channels, "PaymentChannelsNothingToClaim")
        .withArgs(id, 500n);
    });

    it("attack: an overdraw (a voucher above the deposit) pays the deposit and no more", async function () {
      const f = await loadFixture(deployChannels);
      const { terms, id } = await openChannel(f, { amount: 1000n });
      const key = f.payerKeys[0];
      await f.channels.claim(terms, 5000n, key.signer, voucher(f, key, id, 5000n));
      expect((await f.channels.channelState(id)).paid).to.equal(1000n);
      await expect(f.channels.claim(terms, 6000n, key.signer, voucher(f, key, id, 6000n)))
        .to.be.revertedWithCustomError(f.channels, "PaymentChannelsNothingToClaim")
        .withArgs(id, 1000n);
      // A top-up backs the rest of the voucher already given.
      await f.channels.topUp(terms, 4000n, { value: 4000n });
      await f.channels.claim(terms, 5000n, key.signer, voucher(f, key, id, 5000n));
      expect(await f.channels.deviceBalance(f.payees[0], ETH)).to.equal(5000n);
    });

    it("attack: a payer voiding vouchers by rotating its key fails (they pay up to the cap at the rotation); the new key pays no old channel; a stranger's key does not", async function () {
      const f = await loadFixture(deployChannels);
      const { terms, id } = await openChannel(f, { rate: 10n, allowance: 100n, amount: 5000n });
      const oldKey = f.payerKeys[0];
      await time.setNextBlockTimestamp(Number(terms.openedAt) + 30);
      const given = voucher(f, oldKey, id, 300n);
      const newKey = randomDeviceKey("secp256k1");
      await f.registry.connect(f.owner).rotateKey(f.payers[0], await rotation(f, f.payers[0], newKey, oldKey));
      await time.increase(1000);
      // Signed before the rotation, claimed long after: paid, within the cap at the rotation (100 + 10 × 30).
      await f.channels.claim(terms, 300n, oldKey.signer, given);
      expect((await f.channels.channelState(id)).paid).to.equal(300n);
      expect(await f.channels.claimLimit(terms, oldKey.signer)).to.equal(400n);
      // The key rotated in pays channels opened with it, not this one.
      await expect(f.channels.claim(terms, 400n, newKey.signer, voucher(f, newKey, id, 400n)))
        .to.be.revertedWithCustomError(f.channels, "PaymentChannelsNotPayerKey")
        .withArgs(f.payers[0]);
      const stranger = f.payeeKeys[1];
      await expect(f.channels.claim(terms, 500n, stranger.signer, voucher(f, stranger, id, 500n)))
        .to.be.revertedWithCustomError(f.channels, "PaymentChannelsNotPayerKey")
        .withArgs(f.payers[0]);
      const fresh = await openChannel(f, { payerKey: newKey.signer, salt: 1 });
      await f.channels.claim(fresh.terms, 400n, newKey.signer, voucher(f, newKey, fresh.id, 400n));
      expect((await f.channels.channelState(fresh.id)).paid).to.equal(400n);
    });

    it("attack: a malleable (high-s) voucher and a voucher signed by another key are refused", async function () {
      const f = await loadFixture(deployChannels);
      const { terms, id } = await openChannel(f);
      const key = f.payerKeys[0];
      await expect(
        f.channels.claim(terms, 100n, key.signer, highS(key, voucher(f, key, id, 100n))),
      ).to.be.revertedWithCustomError(f.channels, "PaymentChannelsInvalidSignature");
      const forged = randomDeviceKey("secp256k1");
      await expect(
        f.channels.claim(terms, 100n, key.signer, voucher(f, forged, id, 100n)),
      ).to.be.revertedWithCustomError(f.channels, "PaymentChannelsInvalidSignature");
    });

    it("a quarantined payer's vouchers pay up to the cap when it was reported, no more; its owner recovers the rest by a unilateral close", async function () {
      const f = await loadFixture(deployChannels);
      const { terms, id } = await openChannel(f, { amount: 1000n, rate: 10n, allowance: 100n });
      const key = f.payerKeys[0];
      await f.channels.claim(terms, 100n, key.signer, voucher(f, key, id, 100n));
      await time.setNextBlockTimestamp(Number(terms.openedAt) + 20);
      await f.registry.connect(f.owner).reportStolen(f.payers[0]);
      await time.increase(500);
      expect(await f.channels.claimLimit(terms, key.signer)).to.equal(300n);
      await f.channels.claim(terms, 900n, key.signer, voucher(f, key, id, 900n));
      expect((await f.channels.channelState(id)).paid).to.equal(300n);
      await expect(f.channels.claim(terms, 950n, key.signer, voucher(f, key, id, 950n)))
        .to.be.revertedWithCustomError(f.channels, "PaymentChannelsNothingToClaim")
        .withArgs(id, 300n);
      await f.channels.connect(f.owner).startClose(terms);
      await time.increase(CHALLENGE_PERIOD);
      await f.channels.settle(terms);
      expect(await f.channels.accountBalance(f.owner.address, ETH)).to.equal(700n);
      expect(await f.channels.deviceBalance(f.payees[0], ETH)).to.equal(300n);
    });

    it("a quarantine of the payer's batch bounds its vouchers by the cap when it began, only while it lasts; top-ups wait for its end", async function () {
      const f = await loadFixture(deployChannels);
      const { terms, id } = await openChannel(f, { amount: 100_000n, rate: 10n, allowance: 100n });
      const key = f.payerKeys[0];
      await time.setNextBlockTimestamp(Number(terms.openedAt) + 100);
      await f.registry.connect(f.manufacturer).quarantineBatch(f.payerBatch, ethers.id("recall check"));
      await time.increase(1_000);
      await f.channels.claim(terms, 50_000n, key.signer, voucher(f, key, id, 50_000n));
      expect((await f.channels.channelState(id)).paid).to.equal(1_100n);
      await expect(f.channels.topUp(terms, 1n, { value: 1n }))
        .to.be.revertedWithCustomError(f.channels, "PaymentChannelsPayerNotTrusted")
        .withArgs(id, terms.payerPeriod);
      // About the manufacturer, not the device leaving its owner's hands: the same period goes on.
      await f.registry.connect(f.manufacturer).releaseBatch(f.payerBatch);
      expect((await f.registry.deviceTrust(f.payers[0])).period).to.equal(terms.payerPeriod);
      await f.channels.topUp(terms, 1n, { value: 1n });
      await time.setNextBlockTimestamp(Number(terms.openedAt) + 2_000);
      await f.channels.claim(terms, 50_000n, key.signer, voucher(f, key, id, 50_000n));
      expect((await f.channels.channelState(id)).paid).to.equal(20_100n);
    });

    it("the spending-rate cap: at most allowance + rate × time since open is ever paid, whatever the vouchers say", async function () {
      const f = await loadFixture(deployChannels);
      const { terms, id } = await openChannel(f, { rate: 10n, allowance: 1000n, amount: ONE });
      const key = f.payerKeys[0];
      const big = voucher(f, key, id, ONE);
      await time.setNextBlockTimestamp(Number(terms.openedAt) + 100);
      await f.channels.claim(terms, ONE, key.signer, big);
      expect((await f.channels.channelState(id)).paid).to.equal(2000n);
      expect(await f.channels.spendingLimit(terms, terms.openedAt + 100n)).to.equal(2000n);
      await time.setNextBlockTimestamp(Number(terms.openedAt) + 150);
      await f.channels.claim(terms, ONE, key.signer, big);
      expect((await f.channels.channelState(id)).paid).to.equal(2500n);
    });

    it("a channel to a device that does not exist is refused at open (its credits could never be withdrawn)", async function () {
      const f = await loadFixture(deployChannels);
      const opening = { payer: f.payers[0], payee: 12345n, token: ETH, rate: UNCAPPED, allowance: 0n, salt: 0 };
      await expect(f.channels.open(opening, f.payerKeys[0].signer, 100n, { value: 100n }))
        .to.be.revertedWithCustomError(f.channels, "PaymentChannelsUnknownDevice")
        .withArgs(12345n);
    });
  });

  describe("closing", function () {
    it("the payee's owner closes at once: the voucher is paid, the rest goes to the payer device's owner", async function () {
      const f = await loadFixture(deployChannels);
      const { terms, id } = await openChannel(f, { amount: 1000n });
      const key = f.payerKeys[0];
      const sig = voucher(f, key, id, 700n);
      await expect(f.channels.connect(f.stranger).cooperativeClose(terms, 700n, key.signer, sig))
        .to.be.revertedWithCustomError(f.channels, "PaymentChannelsNotOwner")
        .withArgs(f.payees[0], f.stranger.address);
      await expect(f.channels.connect(f.other).cooperativeClose(terms, 700n, key.signer, sig))
        .to.emit(f.channels, "ChannelClosed")
        .withArgs(id, 700n, 300n, f.owner.address);
      expect(await f.channels.deviceBalance(f.payees[0], ETH)).to.equal(700n);
      expect(await f.channels.accountBalance(f.owner.address, ETH)).to.equal(300n);
      await expect(f.channels.connect(f.owner).withdraw(ETH, f.owner.address)).to.changeEtherBalance(
        ethers,
        f.owner,
        300n,
      );
      // The tombstone: the id stays spent.
      const state = await f.channels.channelState(id);
      expect([state.deposit, state.paid, state.closesAt]).to.deep.equal([0n, 0n, await f.channels.CLOSED()]);
    });

    it("refunds follow the payer device: sold with a channel open, the refund at close goes to its buyer (and only the buyer may start a unilateral close)", async function () {
      const f = await loadFixture(deployChannels);
      const { terms, id } = await openChannel(f, { amount: 1000n });
      const key = f.payerKeys[0];
      await f.channels.claim(terms, 200n, key.signer, voucher(f, key, id, 200n));
      await f.registry.connect(f.owner).transferFrom(f.owner.address, f.stranger.address, f.payers[0]);
      await expect(f.channels.connect(f.owner).startClose(terms))
        .to.be.revertedWithCustomError(f.channels, "PaymentChannelsNotOwner")
        .withArgs(f.payers[0], f.owner.address);
      await f.channels.connect(f.stranger).startClose(terms);
      await time.increase(CHALLENGE_PERIOD);
      await expect(f.channels.settle(terms))
        .to.emit(f.channels, "ChannelClosed")
        .withArgs(id, 200n, 800n, f.stranger.address);
      expect(await f.channels.accountBalance(f.stranger.address, ETH)).to.equal(800n);
      expect(await f.channels.accountBalance(f.owner.address, ETH)).to.equal(0n);
    });

    it("a channel paid in full closes with no refund: nothing is credited to the payer's owner", async function () {
      const f = await loadFixture(deployChannels);
      const { terms, id } = await openChannel(f, { amount: 1000n });
      const sig = voucher(f, f.payerKeys[0], id, 1000n);
      await expect(f.channels.connect(f.other).cooperativeClose(terms, 1000n, f.payerKeys[0].signer, sig))
        .to.emit(f.channels, "ChannelClosed")
        .withArgs(id, 1000n, 0n, f.owner.address);
      expect(await f.channels.accountBalance(f.owner.address, ETH)).to.equal(0n);
      expect(await f.channels.deviceBalance(terms.payee, ETH)).to.equal(1000n);
    });

    it("a cooperative close without a voucher refunds everything not yet claimed", async function () {
      const f = await loadFixture(deployChannels);
      const { terms, id } = await openChannel(f, { amount: 1000n });
      await f.channels.claim(terms, 200n, f.payerKeys[0].signer, voucher(f, f.payerKeys[0], id, 200n));
      await expect(f.channels.connect(f.other).cooperativeClose(terms, 0n, "0x", "0x"))
        .to.emit(f.channels, "ChannelClosed")
        .withArgs(id, 200n, 800n, f.owner.address);
    });

    it("unilateral close: the payee answers within the challenge period, then anyone settles and the payer's owner is refunded", async function () {
      const f = await loadFixture(deployChannels);
      const { terms, id } = await openChannel(f, { amount: 1000n });
      const key = f.payerKeys[0];
      await expect(f.channels.connect(f.stranger).startClose(terms))
        .to.be.revertedWithCustomError(f.channels, "PaymentChannelsNotOwner")
        .withArgs(f.payers[0], f.stranger.address);
      await expect(f.channels.connect(f.owner).startClose(terms)).to.emit(f.channels, "ChannelCloseStarted");
      const closesAt = (await f.channels.channelState(id)).closesAt;
      await expect(f.channels.connect(f.owner).startClose(terms))
        .to.be.revertedWithCustomError(f.channels, "PaymentChannelsClosing")
        .withArgs(id, closesAt);
      await expect(f.channels.topUp(terms, 1n, { value: 1n })).to.be.revertedWithCustomError(
        f.channels,
        "PaymentChannelsClosing",
      );
      await f.channels.claim(terms, 600n, key.signer, voucher(f, key, id, 600n));
      await expect(f.channels.settle(terms))
        .to.be.revertedWithCustomError(f.channels, "PaymentChannelsChallengeNotEnded")
        .withArgs(id, closesAt);
      await time.increaseTo(closesAt);
      await expect(f.channels.claim(terms, 700n, key.signer, voucher(f, key, id, 700n)))
        .to.be.revertedWithCustomError(f.channels, "PaymentChannelsChallengeEnded")
        .withArgs(id, closesAt);
      await expect(f.channels.connect(f.admin).settle(terms))
        .to.emit(f.channels, "ChannelClosed")
        .withArgs(id, 600n, 400n, f.owner.address);
    });

    it("attack: settle before the challenge period ends, or of a channel nobody is closing, is refused", async function () {
      const f = await loadFixture(deployChannels);
      const { terms, id } = await openChannel(f);
      await expect(f.channels.settle(terms))
        .to.be.revertedWithCustomError(f.channels, "PaymentChannelsNotClosing")
        .withArgs(id);
      await f.channels.connect(f.owner).startClose(terms);
      await time.increase(CHALLENGE_PERIOD - 5);
      await expect(f.channels.settle(terms)).to.be.revertedWithCustomError(
        f.channels,
        "PaymentChannelsChallengeNotEnded",
      );
    });

    it("attack: close of a closed channel (again, or after settle), and claims or top-ups after it, are refused", async function () {
      const f = await loadFixture(deployChannels);
      const key = f.payerKeys[0];
      const a = await openChannel(f, { salt: 1 });
      await f.channels.connect(f.other).cooperativeClose(a.terms, 0n, "0x", "0x");
      const unknown = (p: Promise<unknown>) =>
        expect(p).to.be.revertedWithCustomError(f.channels, "PaymentChannelsUnknownChannel").withArgs(a.id);
      await unknown(f.channels.connect(f.other).cooperativeClose(a.terms, 0n, "0x", "0x"));
      await unknown(f.channels.connect(f.owner).startClose(a.terms));
      await unknown(f.channels.settle(a.terms));
      await unknown(f.channels.claim(a.terms, 1n, key.signer, voucher(f, key, a.id, 1n)));
      await unknown(f.channels.topUp(a.terms, 1n, { value: 1n }));
      const b = await openChannel(f, { salt: 2 });
      await f.channels.connect(f.owner).startClose(b.terms);
      await time.increase(CHALLENGE_PERIOD);
      await f.channels.settle(b.terms);
      await expect(f.channels.settle(b.terms)).to.be.revertedWithCustomError(
        f.channels,
        "PaymentChannelsUnknownChannel",
      );
      await expect(f.channels.connect(f.other).cooperativeClose(b.terms, 0n, "0x", "0x")).to.be.revertedWithCustomError(
        f.channels,
        "PaymentChannelsUnknownChannel",
      );
    });
  });

  describe("many channels in one transaction", function () {
    it("a payee claims, closes or settles many channels at once; credits to one owner are written once", async function () {
      const f = await loadFixture(deployChannels);
      const opened: Awaited<ReturnType<typeof openChannel>>[] = [];
      for (let salt = 0; salt < 4; salt++) opened.push(await openChannel(f, { salt, payer: salt % 2, amount: 1000n }));
      const claims = opened.map((o, i) => ({
        terms: o.terms,
        amount: BigInt(100 * (i + 1)),
        key: f.payerKeys[i % 2].signer,
        signature: voucher(f, f.payerKeys[i % 2], o.id, BigInt(100 * (i + 1))),
      }));
      await f.channels.claimMany(claims);
      expect(await f.channels.deviceBalance(f.payees[0], ETH)).to.equal(1000n);
      await expect(f.channels.claimMany([claims[0]])).to.be.revertedWithCustomError(
        f.channels,
        "PaymentChannelsNothingToClaim",
      );

      const closes = claims.slice(0, 2).map((c, i) => ({
        ...c,
        amount: 500n,
        signature: voucher(f, f.payerKeys[i % 2], opened[i].id, 500n),
      }));
      await expect(f.channels.connect(f.owner).closeMany(closes)).to.be.revertedWithCustomError(
        f.channels,
        "PaymentChannelsNotOwner",
      );
      await f.channels.connect(f.other).closeMany(closes);
      expect(await f.channels.deviceBalance(f.payees[0], ETH)).to.equal(1000n + 400n + 300n);
      expect(await f.channels.accountBalance(f.owner.address, ETH)).to.equal(1000n);

      for (const o of opened.slice(2)) await f.channels.connect(f.owner).startClose(o.terms);
      await time.increase(CHALLENGE_PERIOD);
      await f.channels.settleMany(opened.slice(2).map((o) => o.terms));
      expect(await f.channels.accountBalance(f.owner.address, ETH)).to.equal(1000n + 700n + 600n);
      expect(await ethers.provider.getBalance(await f.channels.getAddress())).to.equal(
        (await f.channels.accountBalance(f.owner.address, ETH)) + (await f.channels.deviceBalance(f.payees[0], ETH)),
      );
    });
  });

  describe("edge cases", function () {
    it("claimMany adds credits per payee and token, across changes of either", async function () {
      const f = await loadFixture(deployChannels);
      const a = await openChannel(f, { payee: 0, salt: 1, amount: 1000n });
      const b = await openChannel(f, { payee: 1, salt: 2, amount: 1000n });
      const c = await openChannel(f, { payee: 1, token: "token", salt: 3, amount: 1000n });
      const k = f.payerKeys[0];
      const v = (o: typeof a, amount: bigint) => ({
        terms: o.terms,
        amount,
        key: k.signer,
        signature: voucher(f, k, o.id, amount),
      });
      await f.channels.claimMany([v(a, 10n), v(b, 20n), v(c, 30n), v(a, 40n)]);
      expect(await f.channels.deviceBalance(f.payees[0], ETH)).to.equal(40n);
      expect(await f.channels.deviceBalance(f.payees[1], ETH)).to.equal(20n);
      expect(await f.channels.deviceBalance(f.payees[1], await f.token.getAddress())).to.equal(30n);
      await f.channels.claimMany([]);
    });

    it("the spending limit before a channel opened is its allowance; a rotated-to key of a quarantined payer is refused; claimLimit is 0 for a key that is not the channel's", async function () {
      const f = await loadFixture(deployChannels);
      const { terms, id } = await openChannel(f, { rate: 5n, allowance: 7n });
      expect(await f.channels.spendingLimit(terms, terms.openedAt - 10n)).to.equal(7n);
      const next = randomDeviceKey("secp256k1");
      await f.registry.connect(f.owner).rotateKey(f.payers[0], await rotation(f, f.payers[0], next, f.payerKeys[0]));
      await f.registry.connect(f.owner).reportStolen(f.payers[0]);
      await expect(f.channels.claim(terms, 5n, next.signer, voucher(f, next, id, 5n)))
        .to.be.revertedWithCustomError(f.channels, "PaymentChannelsNotPayerKey")
        .withArgs(f.payers[0]);
      // Only the channel's own key has a bound on it (another device's key may well have a period with the same tag).
      expect(await f.channels.claimLimit(terms, f.payerKeys[1].signer)).to.equal(0n);
      expect(await f.channels.claimLimit(terms, next.signer)).to.equal(0n);
      expect(await f.channels.claimLimit(terms, f.payerKeys[0].signer)).to.be.greaterThanOrEqual(7n);
    });
  });

  describe("withdrawals", function () {
    it("attack: a reentrant receiver cannot withdraw twice (OpenZeppelin ReentrancyGuardTransient), and is paid exactly once", async function () {
      const f = await loadFixture(deployChannels);
      const receiver = await ethers.deployContract("ReentrantReceiver", [await f.channels.getAddress()]);
      await f.registry.connect(f.other).transferFrom(f.other.address, await receiver.getAddress(), f.payees[0]);
      const { terms, id } = await openChannel(f, { amount: 1000n });
      await f.channels.claim(terms, 800n, f.payerKeys[0].signer, voucher(f, f.payerKeys[0], id, 800n));
      await openChannel(f, { salt: 1, amount: 5000n }); // other funds in the contract a re-entry would take
      await receiver.withdraw(f.payees[0]);
      expect(await receiver.reentered()).to.equal(true);
      expect(await receiver.refused()).to.equal(true);
      expect(await ethers.provider.getBalance(await receiver.getAddress())).to.equal(800n);
      expect(await ethers.provider.getBalance(await f.channels.getAddress())).to.equal(5000n + 200n);
    });

    it("attack: a reentrant owner contract cannot withdraw its refunds twice", async function () {
      const f = await loadFixture(deployChannels);
      const receiver = await ethers.deployContract("ReentrantReceiver", [await f.channels.getAddress()]);
      await f.registry.connect(f.owner).transferFrom(f.owner.address, await receiver.getAddress(), f.payers[0]);
      const { terms } = await openChannel(f, { amount: 1000n });
      await openChannel(f, { payer: 1, amount: 5000n }); // other funds a re-entry would take
      await f.channels.connect(f.other).cooperativeClose(terms, 0n, "0x", "0x"); // refund: 1000 to the receiver
      await receiver.withdrawRefunds();
      expect([await receiver.reentered(), await receiver.refused()]).to.deep.equal([true, true]);
      expect(await ethers.provider.getBalance(await receiver.getAddress())).to.equal(1000n);
      expect(await f.channels.accountBalance(await receiver.getAddress(), ETH)).to.equal(0n);
    });

    it("attack: a malicious token re-entering open, openWithPermit or topUp from inside its transfer is refused", async function () {
      const f = await loadFixture(deployChannels);
      const token = await ethers.deployContract("ReentrantToken");
      const channelsAddress = await f.channels.getAddress();
      await token.mint(f.stranger.address, 10_000n);
      await token.connect(f.stranger).approve(channelsAddress, ethers.MaxUint256);
      const opening = {
        payer: f.payers[0],
        payee: f.payees[0],
        token: await token.getAddress(),
        rate: UNCAPPED,
        allowance: 0n,
        salt: 9,
      };
      await token.arm(
        channelsAddress,
        f.channels.interface.encodeFunctionData("open", [{ ...opening, salt: 10 }, f.payerKeys[0].signer, 1n]),
      );
      const { terms, id } = await openedTerms(
        f,
        await f.channels.connect(f.stranger).open(opening, f.payerKeys[0].signer, 1000n),
      );
      expect([await token.reentered(), await token.refused()]).to.deep.equal([true, true]);
      expect(f.channels.interface.parseError(await token.reason())?.name).to.equal("ReentrancyGuardReentrantCall");
      await token.arm(channelsAddress, f.channels.interface.encodeFunctionData("topUp", [terms, 1n]));
      await f.channels.connect(f.stranger).topUp(terms, 500n);
      expect([await token.reentered(), await token.refused()]).to.deep.equal([true, true]);
      expect((await f.channels.channelState(id)).deposit).to.equal(1500n);
      expect(await token.balanceOf(channelsAddress)).to.equal(1500n);
      // Re-entering openWithPermit from inside a token top-up is refused the same way.
      const permit = { deadline: 0n, v: 27, r: ethers.ZeroHash, s: ethers.ZeroHash };
      await token.arm(
        channelsAddress,
        f.channels.interface.encodeFunctionData("openWithPermit", [
          { ...opening, salt: 11 },
          f.payerKeys[0].signer,
          1n,
          permit,
        ]),
      );
      await f.channels.connect(f.stranger).topUp(terms, 1n);
      expect([await token.reentered(), await token.refused()]).to.deep.equal([true, true]);
      expect(f.channels.interface.parseError(await token.reason())?.name).to.equal("ReentrancyGuardReentrantCall");
    });

    it("owners act gaslessly through the ERC-2771 forwarder: a payer's owner starts a close that a relayer pays for", async function () {
      const f = await loadFixture(deployChannels);
      const { terms, id } = await openChannel(f);
      const request = {
        from: f.owner.address,
        to: await f.channels.getAddress(),
        value: 0n,
        gas: 200_000n,
        nonce: await f.forwarder.nonces(f.owner.address),
        deadline: BigInt((await time.latest()) + 3600),
        data: f.channels.interface.encodeFunctionData("startClose", [terms]),
      };
      const t = typedData("ForwardRequest", f.forwarderDeployment, request);
      const signature = await f.owner.signTypedData(t.domain, t.types, request);
      await f.forwarder.connect(f.stranger).execute({ ...request, signature });
      expect((await f.channels.channelState(id)).closesAt).to.not.equal(0n);
    });
  });
});

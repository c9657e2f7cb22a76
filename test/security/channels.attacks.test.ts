/**
 * Issue 12, payment channels: the attacks a payer device's owner (or a thief, or a rotated-away
 * key) could run against a payee, and the off-chain voucher check that disagreed with the chain.
 * Each test fails on the code before the fix and passes after it.
 *
 * The rule they prove (PaymentChannels): a channel pins its payer key and the payer's trust period
 * at open; a voucher of that key pays at most the spending-rate cap at the earlier of now and the
 * moment trust in that period ended, and no payer status is required to collect it.
 */
import { expect } from "chai";
import { createRequire } from "node:module";
import { ethers, loadFixture, time } from "../helpers/hardhat.js";
import { randomDeviceKey } from "../../src/crypto/deviceKey.js";
import { DeviceSignatureVerifier } from "../../src/crypto/verify.js";
import { digest } from "../../src/eip712/index.js";
import { channelIdOf, type ChannelTerms } from "../../src/agent/roles/meter.js";
import { CHALLENGE_PERIOD, UNCAPPED, deployChannels, openChannel, voucher } from "../helpers/channels.js";
import { SECP256K1_N, rotation } from "../helpers/registry.js";

const ETH = ethers.ZeroAddress;
const secp256k1: typeof import("secp256k1") = createRequire(import.meta.url)("secp256k1/bindings");

/** A capped channel from payer 0 to payee 0: 100 at once, then 10 a second; a deposit of 10,000. */
async function cappedChannel(f: Awaited<ReturnType<typeof deployChannels>>) {
  return openChannel(f, { amount: 10_000n, rate: 10n, allowance: 100n });
}

describe("security: payment channels (issue 12, attacks 1, 3, 6 and the meter's half of 9)", function () {
  it("ATTACK: a payer's owner takes back what its payee earned (reportStolen, startClose, settle, release): the payee still collects what was payable when the report came", async function () {
    const f = await loadFixture(deployChannels);
    const { terms, id } = await cappedChannel(f);
    const key = f.payerKeys[0];
    // 500 s of service paid for by the payer's genuine voucher: 100 + 10 × 500.
    const earned = voucher(f, key, id, 5_100n);
    await time.setNextBlockTimestamp(Number(terms.openedAt) + 500);
    await f.registry.connect(f.owner).reportStolen(f.payers[0]);
    await f.channels.connect(f.owner).startClose(terms);
    await time.increase(CHALLENGE_PERIOD / 2);
    // Before the fix: PaymentChannelsPayerNotActive, and the owner took the whole deposit back.
    await expect(f.channels.claim(terms, 5_100n, key.signer, earned))
      .to.emit(f.channels, "ChannelClaimed")
      .withArgs(id, 5_100n);
    await time.increase(CHALLENGE_PERIOD);
    await f.channels.settle(terms);
    await f.registry.connect(f.owner).release(f.payers[0]);
    expect(await f.channels.deviceBalance(f.payees[0], ETH)).to.equal(5_100n);
    expect(await f.channels.accountBalance(f.owner.address, ETH)).to.equal(4_900n);
  });

  it("ATTACK: a payer's owner takes back what its payee earned (decommission, for good): the payee still closes with its voucher", async function () {
    const f = await loadFixture(deployChannels);
    const { terms, id } = await cappedChannel(f);
    const key = f.payerKeys[0];
    const earned = voucher(f, key, id, 3_100n);
    await time.setNextBlockTimestamp(Number(terms.openedAt) + 300);
    await f.registry.connect(f.owner).decommission(f.payers[0]);
    await time.increase(7 * 24 * 3600);
    // Before the fix: PaymentChannelsPayerNotActive for good; the owner's unilateral close took it all.
    await expect(f.channels.connect(f.other).cooperativeClose(terms, 3_100n, key.signer, earned))
      .to.emit(f.channels, "ChannelClosed")
      .withArgs(id, 3_100n, 6_900n, f.owner.address);
    expect(await f.channels.deviceBalance(f.payees[0], ETH)).to.equal(3_100n);
    expect(await f.channels.accountBalance(f.owner.address, ETH)).to.equal(6_900n);
  });

  it("ATTACK: a rotated-away payer key still pays: the old key's fresh voucher for the whole deposit pays only the cap at the rotation", async function () {
    const f = await loadFixture(deployChannels);
    const { terms, id } = await cappedChannel(f);
    const oldKey = f.payerKeys[0];
    await time.setNextBlockTimestamp(Number(terms.openedAt) + 50);
    await f.registry
      .connect(f.owner)
      .rotateKey(f.payers[0], await rotation(f, f.payers[0], randomDeviceKey("secp256k1"), oldKey));
    await time.increase(1_000);
    // Signed after the rotation, for everything. Before the fix it was paid in full (the cap at now).
    await f.channels.claim(terms, 10_000n, oldKey.signer, voucher(f, oldKey, id, 10_000n));
    expect((await f.channels.channelState(id)).paid).to.equal(100n + 10n * 50n);
    expect(await f.channels.claimLimit(terms, oldKey.signer)).to.equal(600n);
    await expect(f.channels.topUp(terms, 1n, { value: 1n }))
      .to.be.revertedWithCustomError(f.channels, "PaymentChannelsPayerNotTrusted")
      .withArgs(id, terms.payerPeriod);
  });

  it("ATTACK: a stolen payer key still pays: a voucher the thief signed while the device was reported stolen, presented after release, pays only the cap at the report", async function () {
    const f = await loadFixture(deployChannels);
    const { terms, id } = await cappedChannel(f);
    const key = f.payerKeys[0];
    await time.setNextBlockTimestamp(Number(terms.openedAt) + 50);
    await f.registry.connect(f.owner).reportStolen(f.payers[0]);
    const byThief = voucher(f, key, id, 10_000n); // the thief holds the device and its key
    await time.increase(450);
    await f.registry.connect(f.owner).release(f.payers[0]);
    await time.increase(1_000);
    // Before the fix: paid in full once the device was Active again (the cap at now allowed it).
    await f.channels.claim(terms, 10_000n, key.signer, byThief);
    expect((await f.channels.channelState(id)).paid).to.equal(600n);
    // The device is trusted again, in a new period; the channel stays bounded by its own.
    const trust = await f.registry.deviceTrust(f.payers[0]);
    expect(trust.status).to.equal(1n);
    expect(trust.period).to.not.equal(terms.payerPeriod);
    expect(await f.channels.claimLimit(terms, key.signer)).to.equal(600n);
  });

  it("an uncapped channel bounds a rotated-away or stolen key by its deposit alone: the opener's stated choice", async function () {
    const f = await loadFixture(deployChannels);
    const { terms, id } = await openChannel(f, { amount: 10_000n, rate: UNCAPPED });
    const oldKey = f.payerKeys[0];
    await f.registry
      .connect(f.owner)
      .rotateKey(f.payers[0], await rotation(f, f.payers[0], randomDeviceKey("secp256k1"), oldKey));
    await f.channels.claim(terms, 10_000n, oldKey.signer, voucher(f, oldKey, id, 10_000n));
    expect((await f.channels.channelState(id)).paid).to.equal(10_000n);
  });

  it("ATTACK: a channel id comes back: closed and opened again with the same terms in the same block, its final voucher would pay twice", async function () {
    const f = await loadFixture(deployChannels);
    const key = f.payerKeys[0];
    const opening = { payer: f.payers[0], payee: f.payees[0], token: ETH, rate: UNCAPPED, allowance: 0n, salt: 42 };
    const openedAt = BigInt((await time.latest()) + 10);
    const terms: ChannelTerms = {
      ...opening,
      openedAt,
      salt: 42n,
      payerKeyHash: ethers.keccak256(key.signer),
      payerPeriod: (await f.registry.deviceTrust(f.payers[0])).period,
    };
    const id = channelIdOf(terms);
    const final = voucher(f, key, id, 600n);
    const gas = { gasLimit: 500_000n };
    await time.setNextBlockTimestamp(openedAt);
    await ethers.provider.send("evm_setAutomine", [false]);
    let txs;
    try {
      txs = [
        await f.channels.connect(f.stranger).open(opening, key.signer, 1_000n, { value: 1_000n, ...gas }),
        await f.channels.connect(f.other).cooperativeClose(terms, 600n, key.signer, final, gas),
        await f.channels.connect(f.stranger).open(opening, key.signer, 1_000n, { value: 1_000n, ...gas }),
        await f.channels.connect(f.stranger).claim(terms, 600n, key.signer, final, gas),
      ];
      await ethers.provider.send("evm_mine", []);
    } finally {
      await ethers.provider.send("evm_setAutomine", [true]);
    }
    const receipts = await Promise.all(txs.map((t) => ethers.provider.getTransactionReceipt(t.hash)));
    expect(new Set(receipts.map((r) => r!.blockNumber)).size).to.equal(1);
    // Before the fix: the second open made the same id again, and the final voucher paid 600 more.
    expect(receipts.map((r) => r!.status)).to.deep.equal([1, 1, 0, 0]);
    const reason = async (hash: string) => {
      const trace = await ethers.provider.send("debug_traceTransaction", [hash]);
      return f.channels.interface.parseError("0x" + (trace.returnValue as string).replace(/^0x/, ""))!;
    };
    const reopen = await reason(txs[2].hash);
    expect([reopen.name, reopen.args[0]]).to.deep.equal(["PaymentChannelsChannelExists", id]);
    expect((await reason(txs[3].hash)).name).to.equal("PaymentChannelsUnknownChannel");
    expect(await f.channels.deviceBalance(f.payees[0], ETH)).to.equal(600n);
    expect(await f.channels.accountBalance(f.owner.address, ETH)).to.equal(400n);
    expect(await ethers.provider.getBalance(await f.channels.getAddress())).to.equal(1_000n);
    const state = await f.channels.channelState(id);
    expect([state.deposit, state.paid, state.closesAt]).to.deep.equal([0n, 0n, await f.channels.CLOSED()]);
  });

  it("ATTACK: the meter's streamed voucher check accepts a signature whose R.x ≥ n, which the chain (ecrecover, OpenZeppelin ECDSA) refuses", async function () {
    const z2 = ethers.getBytes(
      digest(
        "Voucher",
        { chainId: 31337n, verifyingContract: ethers.ZeroAddress },
        { channel: ethers.ZeroHash, cumulativeAmount: 10n ** 18n },
      ),
    );
    const c = signaturesWithHighNoncePoint(z2);
    const verifier = new DeviceSignatureVerifier([]);
    // The key's first signature is an ordinary one, which the chain takes too: the check learns the key.
    expect(await ecrecover(c.z1, c.sig1)).to.equal(c.address);
    expect(verifier.verifyStream(c.address, c.z1, c.sig1)).to.equal(true);
    // ECDSA verification passes the second one: its nonce point's x is r + n ...
    expect(secp256k1.ecdsaVerify(c.sig2.subarray(0, 64), z2, c.publicKey)).to.equal(true);
    for (const v of [27, 28]) {
      const sig = Uint8Array.from([...c.sig2.subarray(0, 64), v]);
      // ... which ecrecover cannot recover: with neither v is it the key's.
      expect(await ecrecover(z2, sig)).to.not.equal(c.address);
      // Before the fix: true (the payee would deliver against a voucher it can never claim).
      expect(verifier.verifyStream(c.address, z2, sig), `v = ${v}`).to.equal(false);
      expect(verifier.verify(c.address, z2, sig)).to.equal(false);
      expect(verifier.chainValidSignature(c.address, z2, sig)).to.equal(undefined);
    }
    // The key's ordinary signature still streams through.
    expect(verifier.verifyStream(c.address, c.z1, c.sig1)).to.equal(true);
  });
});

// ------------------------------------------------------------------------------------ R.x ≥ n

const P = 0xfffffffffffffffffffffffffffffffffffffffffffffffffffffffefffffc2fn;
const N = SECP256K1_N;
const be32 = (x: bigint) => Buffer.from(x.toString(16).padStart(64, "0"), "hex");
const toBig = (b: Uint8Array) => BigInt("0x" + Buffer.from(b).toString("hex"));
const mod = (a: bigint) => ((a % N) + N) % N;
function inv(a: bigint): bigint {
  let [result, base, e] = [1n, mod(a), N - 2n];
  for (; e > 0n; e >>= 1n, base = (base * base) % N) if (e & 1n) result = (result * base) % N;
  return result;
}

/**
 * Two low-s signatures by one secp256k1 key (whose private key nobody knows): `sig1` over `z1`, an
 * ordinary one that recovers to the key, and `sig2` over `z2`, whose nonce point R2 has x = r2 + n.
 * With R1 = R2 + G, s2 = r2 s1 / r1 and z1 = s1 + r1 z2 / r2, the key r1⁻¹(s1 R1 − z1 G) recovered
 * from sig1 is also r2⁻¹(s2 R2 − z2 G), the key sig2 verifies against. Nobody can make such a
 * signature for a key whose private key they hold (that needs a nonce whose point has x ≥ n, a
 * 2^-128 chance), nor a first signature for a chosen key: the off-chain check must still refuse it.
 */
function signaturesWithHighNoncePoint(z2Bytes: Uint8Array) {
  const z2 = mod(toBig(z2Bytes));
  let x = N + 1n; // r2 = x − n must not be 0
  while (!secp256k1.publicKeyVerify(Buffer.concat([Buffer.from([2]), be32(x)]))) x++;
  if (x >= P) throw new Error("no curve point with x in [n, p)");
  const R2 = Buffer.concat([Buffer.from([2]), be32(x)]);
  const r2 = x - N;
  const R1 = secp256k1.publicKeyCombine([R2, secp256k1.publicKeyCreate(be32(1n), true)], false);
  const r1 = toBig(R1.subarray(1, 33));
  if (r1 >= N) throw new Error("R1.x is not below n");
  let s1 = 1n;
  while (mod(r2 * inv(r1) * s1) > N / 2n) s1++;
  const s2 = mod(r2 * inv(r1) * s1);
  const z1 = mod(s1 + r1 * inv(r2) * z2);
  const s1R1 = secp256k1.publicKeyTweakMul(R1, be32(s1), false);
  const minusZ1G = secp256k1.publicKeyCreate(be32(N - z1), false);
  const publicKey = secp256k1.publicKeyTweakMul(
    secp256k1.publicKeyCombine([s1R1, minusZ1G], false),
    be32(inv(r1)),
    false,
  );
  const address = ethers.getAddress(ethers.dataSlice(ethers.keccak256(publicKey.subarray(1)), 12));
  const sig1 = Uint8Array.from([...be32(r1), ...be32(s1), 27 + (R1[64] & 1)]);
  const sig2 = Uint8Array.from([...be32(r2), ...be32(s2), 27]);
  return { address: address.toLowerCase(), publicKey, z1: be32(z1), sig1, sig2 };
}

/** What the ecrecover precompile (which OpenZeppelin ECDSA calls, after its low-s check) recovers. */
async function ecrecover(hash: Uint8Array, signature: Uint8Array): Promise<string> {
  const out = await ethers.provider.call({
    to: "0x0000000000000000000000000000000000000001",
    data: ethers.concat([hash, be32(BigInt(signature[64])), signature.subarray(0, 32), signature.subarray(32, 64)]),
  });
  return out === "0x" ? ethers.ZeroAddress.toLowerCase() : ethers.dataSlice(out, 12).toLowerCase();
}

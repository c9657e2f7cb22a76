/** PaymentChannels operations, each in the situation its budget names. */
import { ethers, setBalance, time } from "../test/helpers/hardhat.js";
import { Wallet, id as labelHash } from "ethers";
import { secp256k1Key, type DeviceKey } from "../src/crypto/deviceKey.js";
import { digest, type Deployment } from "../src/eip712/index.js";
import { deployRegistry, provision } from "../test/helpers/registry.js";
import { openedTerms, UNCAPPED, type ChannelContext } from "../test/helpers/channels.js";
import type { GasRecorder } from "./lib.js";

/** Channels a payee closes in the batch figure. */
export const BATCH = 20;

const secpKey = (label: string): DeviceKey => secp256k1Key(labelHash(label));

export async function benchChannels(gas: GasRecorder): Promise<void> {
  const ctx = await deployRegistry();
  const { owner, other, stranger } = ctx;
  const channels = await ethers.deployContract("PaymentChannels", [
    await ctx.registry.getAddress(),
    await ctx.forwarder.getAddress(),
    3_600,
  ]);
  const token = await ethers.deployContract("TestToken");
  const channelsAddress = await channels.getAddress();
  const tokenAddress = await token.getAddress();
  // A fleet: payer devices of one owner (cars), payee devices of another (chargers).
  const payerKeys = Array.from({ length: BATCH + 1 }, (_, i) => secpKey(`bench payer ${i}`));
  const payeeKeys = [secpKey("bench payee 0")];
  const payers = (await provision(ctx, payerKeys, owner)).ids;
  const payees = (await provision(ctx, payeeKeys, other)).ids;
  await token.mint(stranger.address, ethers.parseEther("1000"));
  await token.connect(stranger).approve(channelsAddress, ethers.MaxUint256);
  const deployment: Deployment = { chainId: ctx.deployment.chainId, verifyingContract: channelsAddress };
  const sign = (key: DeviceKey, channel: string, amount: bigint) =>
    key.signDigest(digest("Voucher", deployment, { channel, cumulativeAmount: amount }));
  const opening = (i: number, token = ethers.ZeroAddress, salt = 0) => ({
    payer: payers[i],
    payee: payees[0],
    token,
    rate: UNCAPPED,
    allowance: 0n,
    salt,
  });
  const c = { channels } as unknown as ChannelContext;
  const one = ethers.parseEther("1");

  const openTx = channels.connect(stranger).open(opening(0), payerKeys[0].signer, one, { value: one });
  await gas.record("channel.open.eth", openTx);
  const { terms, id } = await openedTerms(c, await openTx);

  // The contract already holds the token (an earlier channel): the usual case.
  await channels.connect(stranger).open(opening(1, tokenAddress), payerKeys[1].signer, 1000n);
  await gas.record(
    "channel.open.erc20",
    channels.connect(stranger).open(opening(2, tokenAddress), payerKeys[2].signer, 1000n),
  );

  const funder = new Wallet(labelHash("bench permit funder"), ethers.provider);
  await setBalance(funder.address, one);
  await token.mint(funder.address, 5000n);
  const deadline = BigInt((await time.latest()) + 3600);
  const permitSig = ethers.Signature.from(
    await funder.signTypedData(
      { name: "Custos Test Token", version: "1", chainId: ctx.deployment.chainId, verifyingContract: tokenAddress },
      {
        Permit: [
          { name: "owner", type: "address" },
          { name: "spender", type: "address" },
          { name: "value", type: "uint256" },
          { name: "nonce", type: "uint256" },
          { name: "deadline", type: "uint256" },
        ],
      },
      { owner: funder.address, spender: channelsAddress, value: 5000n, nonce: 0n, deadline },
    ),
  );
  await gas.record(
    "channel.open.permit",
    channels.connect(funder).openWithPermit(opening(3, tokenAddress), payerKeys[3].signer, 5000n, {
      deadline,
      v: permitSig.v,
      r: permitSig.r,
      s: permitSig.s,
    }),
  );

  await gas.record("channel.topUp", channels.connect(stranger).topUp(terms, 1000n, { value: 1000n }));

  // A payee claims as it goes: its owner's balance here is already non-zero after the first claim.
  await gas.record(
    "channel.claim.first",
    channels.connect(other).claim(terms, 100n, payerKeys[0].signer, sign(payerKeys[0], id, 100n)),
  );
  await gas.record(
    "channel.claim",
    channels.connect(other).claim(terms, 200n, payerKeys[0].signer, sign(payerKeys[0], id, 200n)),
  );
  // A capped channel: a total beyond the allowance asks the registry until when the payer was trusted.
  const capped = await openedTerms(
    c,
    await channels
      .connect(stranger)
      .open({ ...opening(6, ethers.ZeroAddress, 3), rate: 1_000n, allowance: 100n }, payerKeys[6].signer, one, {
        value: one,
      }),
  );
  await time.increase(60);
  await channels.connect(other).claim(capped.terms, 100n, payerKeys[6].signer, sign(payerKeys[6], capped.id, 100n));
  await gas.record(
    "channel.claim.capped",
    channels.connect(other).claim(capped.terms, 20_000n, payerKeys[6].signer, sign(payerKeys[6], capped.id, 20_000n)),
  );
  // The payer's owner's first refund writes a fresh slot; a fleet owner's later ones add to it.
  await gas.record(
    "channel.cooperativeClose.first",
    channels.connect(other).cooperativeClose(terms, 300n, payerKeys[0].signer, sign(payerKeys[0], id, 300n)),
  );
  const second = await openedTerms(
    c,
    await channels.connect(stranger).open(opening(5, ethers.ZeroAddress, 2), payerKeys[5].signer, one, { value: one }),
  );
  await channels.connect(other).claim(second.terms, 100n, payerKeys[5].signer, sign(payerKeys[5], second.id, 100n));
  await gas.record(
    "channel.cooperativeClose",
    channels
      .connect(other)
      .cooperativeClose(second.terms, 300n, payerKeys[5].signer, sign(payerKeys[5], second.id, 300n)),
  );

  const u = await openedTerms(
    c,
    await channels.connect(stranger).open(opening(4, ethers.ZeroAddress, 1), payerKeys[4].signer, one, { value: one }),
  );
  const start = await gas.record("channel.startClose", channels.connect(owner).startClose(u.terms));
  await time.increase(3_600);
  const settle = await gas.record("channel.settle", channels.connect(stranger).settle(u.terms));
  gas.set("channel.unilateralCloseAndSettle", start + settle);

  // The payee closes BATCH channels (one per payer device of the fleet) with their last vouchers.
  const batch = [];
  for (let i = 1; i <= BATCH; i++) {
    const o = await openedTerms(
      c,
      await channels
        .connect(stranger)
        .open(opening(i, ethers.ZeroAddress, 7), payerKeys[i].signer, one, { value: one }),
    );
    batch.push({
      terms: o.terms,
      amount: 1000n + BigInt(i),
      key: payerKeys[i].signer,
      signature: sign(payerKeys[i], o.id, 1000n + BigInt(i)),
    });
  }
  const total = await gas.record(`channel.closeMany.${BATCH}`, channels.connect(other).closeMany(batch));
  gas.set("channel.batchSettle.perChannel", total / BATCH);
}

import { ethers } from "./hardhat.js";
import type { ContractTransactionResponse } from "ethers";
import { digest, type Deployment } from "../../src/eip712/index.js";
import type { DeviceKey } from "../../src/crypto/deviceKey.js";
import type { PaymentChannels } from "../../typechain-types/index.js";
import { termsFromOpened, type ChannelTerms } from "../../src/agent/roles/meter.js";
import { deployRegistry, makeKeys, provision } from "./registry.js";

export const CHALLENGE_PERIOD = 3_600;
export const UNCAPPED = (1n << 96n) - 1n;

/**
 * The registry fixture plus PaymentChannels, a permit token and a fee-on-transfer token. Payer
 * devices (secp256k1, P-256; one batch, `payerBatch`) belong to `owner`; payee devices (P-256, secp256k1) to `other`. The
 * `stranger` holds and has approved tokens (a funder).
 */
export async function deployChannels() {
  const ctx = await deployRegistry();
  const channels = await ethers.deployContract("PaymentChannels", [
    await ctx.registry.getAddress(),
    await ctx.forwarder.getAddress(),
    CHALLENGE_PERIOD,
  ]);
  const token = await ethers.deployContract("TestToken");
  const feeToken = await ethers.deployContract("FeeOnTransferToken");
  const payerKeys = makeKeys(ctx, 2, ["secp256k1", "p256"]);
  const payeeKeys = makeKeys(ctx, 2, ["p256", "secp256k1"]);
  const { ids: payers, batchId: payerBatch } = await provision(ctx, payerKeys, ctx.owner);
  const payees = (await provision(ctx, payeeKeys, ctx.other)).ids;
  const channelsAddress = await channels.getAddress();
  for (const t of [token, feeToken]) {
    await t.mint(ctx.stranger.address, ethers.parseEther("1000000"));
    await t.connect(ctx.stranger).approve(channelsAddress, ethers.MaxUint256);
  }
  const channelDeployment: Deployment = { chainId: ctx.deployment.chainId, verifyingContract: channelsAddress };
  return { ...ctx, channels, token, feeToken, payerKeys, payeeKeys, payers, payerBatch, payees, channelDeployment };
}

export type ChannelContext = Awaited<ReturnType<typeof deployChannels>>;

export interface OpenOptions {
  payer?: number;
  payee?: number;
  /** "eth" (default), "token", or a token address. */
  token?: "eth" | "token" | string;
  rate?: bigint;
  allowance?: bigint;
  salt?: number;
  amount?: bigint;
  /** The key presented as the payer's (default: the payer device's own). */
  payerKey?: string;
  from?: Parameters<PaymentChannels["connect"]>[0];
}

export type Terms = ChannelTerms;

/** The terms of the channel a transaction opened, read from its `ChannelOpened` event. */
export async function openedTerms(
  ctx: ChannelContext,
  tx: ContractTransactionResponse,
): Promise<{ terms: Terms; id: string }> {
  const receipt = await tx.wait();
  for (const log of receipt!.logs) {
    const parsed = ctx.channels.interface.parseLog(log);
    if (parsed?.name !== "ChannelOpened") continue;
    return { id: parsed.args.channel as string, terms: termsFromOpened(parsed.args) };
  }
  throw new Error("no ChannelOpened event");
}

export function tokenAddress(ctx: ChannelContext, token: OpenOptions["token"]): Promise<string> | string {
  if (token === undefined || token === "eth") return ethers.ZeroAddress;
  if (token === "token") return ctx.token.getAddress();
  return token;
}

/** Opens a channel (ETH unless told) from payer device `payer` to payee device `payee`. */
export async function openChannel(ctx: ChannelContext, o: OpenOptions = {}) {
  const token = await tokenAddress(ctx, o.token);
  const amount = o.amount ?? ethers.parseEther("1");
  const opening = {
    payer: ctx.payers[o.payer ?? 0],
    payee: ctx.payees[o.payee ?? 0],
    token,
    rate: o.rate ?? UNCAPPED,
    allowance: o.allowance ?? 0n,
    salt: o.salt ?? 0,
  };
  const from = o.from ?? ctx.stranger;
  const tx = await ctx.channels.connect(from).open(opening, o.payerKey ?? ctx.payerKeys[o.payer ?? 0].signer, amount, {
    value: token === ethers.ZeroAddress ? amount : 0n,
  });
  return { tx, ...(await openedTerms(ctx, tx)) };
}

/** A voucher for `amount` on channel `id`, signed by `key`. */
export function voucher(ctx: ChannelContext, key: DeviceKey, id: string, amount: bigint, deployment?: Deployment) {
  return key.signDigest(
    digest("Voucher", deployment ?? ctx.channelDeployment, { channel: id, cumulativeAmount: amount }),
  );
}

/**
 * The payment channel tasks' actions (definitions and flags: ../channels.ts). Each prints JSON,
 * returns it, and fails with a message naming the flag that is wrong.
 */
import { dataLength, isAddress, isHexString, ZeroAddress } from "ethers";
import type { HardhatRuntimeEnvironment } from "hardhat/types/hre";
import { termsFromOpened } from "../../src/agent/roles/meter.js";
import { amountArg, contractAddress, deviceIdArg, readJsonArg } from "../addresses.js";
import { chainOf, inputError, required } from "../support.js";

async function channelsAt(hre: HardhatRuntimeEnvironment, flag: string | undefined, signer: number) {
  const ethers = await chainOf(hre);
  const signers = await ethers.getSigners();
  if (!(signer >= 0 && signer < signers.length)) throw inputError(`--signer: no account ${signer} on this network`);
  return ethers.getContractAt("PaymentChannels", await contractAddress(hre, "PaymentChannels", flag), signers[signer]);
}

type Channels = Awaited<ReturnType<typeof channelsAt>>;

/** The terms of channel `id`, from its `ChannelOpened` event. */
export async function termsOf(channels: Channels, id: string) {
  if (!/^0x[0-9a-fA-F]{64}$/.test(id)) throw inputError(`--channel: ${id} is not a channel id`);
  const [opened] = await channels.queryFilter(channels.filters.ChannelOpened(id));
  if (!opened) throw inputError(`--channel: no channel ${id} was opened here`);
  return termsFromOpened(opened.args);
}

const print = <T extends Record<string, unknown>>(value: T): T => {
  console.log(JSON.stringify(value, (_k, v) => (typeof v === "bigint" ? v.toString() : v)));
  return value;
};

export async function open(
  args: {
    payer?: string;
    payee?: string;
    payerKey?: string;
    amount?: string;
    token?: string;
    rate?: string;
    allowance: string;
    salt: number;
    channels?: string;
    signer: number;
  },
  hre: HardhatRuntimeEnvironment,
) {
  const payer = deviceIdArg(required(args.payer, "--payer"), "--payer");
  const payee = deviceIdArg(required(args.payee, "--payee"), "--payee");
  const payerKey = required(args.payerKey, "--payer-key");
  const amount = amountArg(required(args.amount, "--amount"), "--amount");
  const token = args.token ?? ZeroAddress;
  if (!isAddress(token)) throw inputError(`--token: ${token} is not an address`);
  if (!isHexString(payerKey) || dataLength(payerKey) < 20)
    throw inputError("--payer-key must be hex bytes: an address or a P-256 signer");
  const cap = (v: string, flag: string) => {
    if (!/^[0-9]+$/.test(v) || BigInt(v) >= 1n << 96n) throw inputError(`${flag}: ${v} must be a uint96`);
    return BigInt(v);
  };
  const channels = await channelsAt(hre, args.channels, args.signer);
  const opening = {
    payer,
    payee,
    token,
    rate: args.rate === undefined ? (1n << 96n) - 1n : cap(args.rate, "--rate"),
    allowance: cap(args.allowance, "--allowance"),
    salt: args.salt,
  };
  const tx = await channels.open(opening, payerKey, amount, { value: token === ZeroAddress ? amount : 0n });
  const receipt = await tx.wait();
  const log = receipt!.logs.map((l) => channels.interface.parseLog(l)).find((l) => l?.name === "ChannelOpened");
  return print({ channel: String(log!.args.channel), tx: receipt!.hash, gas: Number(receipt!.gasUsed) });
}

export async function topUp(
  args: { channel?: string; amount?: string; channels?: string; signer: number },
  hre: HardhatRuntimeEnvironment,
) {
  const channel = required(args.channel, "--channel");
  const channels = await channelsAt(hre, args.channels, args.signer);
  const terms = await termsOf(channels, channel);
  const amount = amountArg(required(args.amount, "--amount"), "--amount");
  const receipt = await (
    await channels.topUp(terms, amount, { value: terms.token === ZeroAddress ? amount : 0n })
  ).wait();
  return print({ tx: receipt!.hash, deposit: (await channels.channelState(channel)).deposit });
}

export async function close(
  args: { channel?: string; voucher?: string; channels?: string; signer: number },
  hre: HardhatRuntimeEnvironment,
) {
  const channels = await channelsAt(hre, args.channels, args.signer);
  const terms = await termsOf(channels, required(args.channel, "--channel"));
  let [amount, key, signature] = [0n, "0x", "0x"];
  if (args.voucher) {
    const v = readJsonArg(args.voucher, "--voucher") as {
      cumulativeAmount?: string;
      key?: string;
      signature?: string;
    };
    if (!v.cumulativeAmount || !v.key || !v.signature)
      throw inputError("--voucher must hold cumulativeAmount, key and signature");
    [amount, key, signature] = [BigInt(v.cumulativeAmount), v.key, v.signature];
  }
  const receipt = await (await channels.cooperativeClose(terms, amount, key, signature)).wait();
  return print({ tx: receipt!.hash, gas: Number(receipt!.gasUsed) });
}

export async function startClose(
  args: { channel?: string; channels?: string; signer: number },
  hre: HardhatRuntimeEnvironment,
) {
  const channel = required(args.channel, "--channel");
  const channels = await channelsAt(hre, args.channels, args.signer);
  const receipt = await (await channels.startClose(await termsOf(channels, channel))).wait();
  return print({ tx: receipt!.hash, closesAt: (await channels.channelState(channel)).closesAt });
}

export async function settle(
  args: { channel?: string; channels?: string; signer: number },
  hre: HardhatRuntimeEnvironment,
) {
  const ids = required(args.channel, "--channel");
  const channels = await channelsAt(hre, args.channels, args.signer);
  const terms = [];
  for (const id of ids.split(",").map((c) => c.trim())) terms.push(await termsOf(channels, id));
  const receipt = await (await channels.settleMany(terms)).wait();
  return print({ tx: receipt!.hash, settled: terms.length, gas: Number(receipt!.gasUsed) });
}

export async function withdraw(
  args: { device?: string; token?: string; to?: string; channels?: string; signer: number },
  hre: HardhatRuntimeEnvironment,
) {
  const channels = await channelsAt(hre, args.channels, args.signer);
  const token = args.token ?? ZeroAddress;
  if (!isAddress(token)) throw inputError(`--token: ${token} is not an address`);
  const to = args.to ?? (await (await (await chainOf(hre)).getSigners())[args.signer].getAddress());
  if (!isAddress(to)) throw inputError(`--to: ${to} is not an address`);
  const tx = args.device
    ? await channels.withdrawForDevice(deviceIdArg(args.device), token, to)
    : await channels.withdraw(token, to);
  const receipt = await tx.wait();
  return print({ tx: receipt!.hash });
}

/**
 * The payment channel tasks' actions (definitions and flags: ../channels.ts). Each checks the
 * network, the contract and the signer first (closing as the payee's owner, starting a close as
 * the payer's, withdrawing a device's earnings as its owner), prints JSON, returns it, and fails
 * with one line naming the flag that is wrong.
 */
import { dataLength, isAddress, isHexString, ZeroAddress } from "ethers";
import type { HardhatRuntimeEnvironment } from "hardhat/types/hre";
import { termsFromOpened } from "../../src/agent/roles/meter.js";
import { amountArg, deviceIdArg, readJsonArg } from "../addresses.js";
import {
  contractAddress,
  contractAt,
  needAccount,
  openChain,
  short,
  signerOf,
  taskAction,
  type Chain,
  type TaskSigner,
} from "../chain.js";
import { inputError, required, type SignerArgs } from "../support.js";

/** PaymentChannels (checked to be one) connected to the signer, and the registry it uses. */
async function channelsFor(hre: HardhatRuntimeEnvironment, task: string, flag: string | undefined, args: SignerArgs) {
  const chain = await openChain(hre, task, true);
  const who = await signerOf(chain, args, true);
  const channels = await contractAt(
    chain,
    "PaymentChannels",
    await contractAddress(chain, "PaymentChannels", flag),
    who,
  );
  const registry = await contractAt(
    chain,
    "DeviceRegistry",
    await contractAddress(chain, "DeviceRegistry", await channels.registry()),
  );
  return { chain, who, channels, registry };
}

type Channels = Awaited<ReturnType<typeof channelsFor>>["channels"];
type Registry = Awaited<ReturnType<typeof channelsFor>>["registry"];

/** Refuses unless `who` owns `device` (`role`: "payer", "payee"…), naming the account that does. */
async function needDeviceOwner(
  chain: Chain,
  who: TaskSigner,
  registry: Registry,
  device: bigint,
  role: string,
  what: string,
) {
  if ((await registry.deviceStatus(device)) === 0n) throw inputError(`no ${role} device ${device} in the registry`);
  const [owner] = await registry.ownership(device);
  await needAccount(chain, who, owner, `${what} needs the ${role} device ${device}'s owner`, `its owner`);
}

/**
 * The terms of channel `id`, from its `ChannelOpened` event: found in the chain's logs, or with
 * `--watch` in the receipt of the transaction the watch's index lists for it.
 */
export async function termsOf(channels: Channels, id: string, watch?: string) {
  if (!/^0x[0-9a-fA-F]{64}$/.test(id)) throw inputError(`--channel: ${id} is not a channel id`);
  if (watch !== undefined) {
    const w = await import("./watchIndex.js");
    return termsFromOpened(await w.channelOpenedLog(w.watchClient(watch), channels, id));
  }
  const [opened] = await channels.queryFilter(channels.filters.ChannelOpened(id));
  if (!opened) throw inputError(`--channel: no channel ${id} was opened here`);
  return termsFromOpened(opened.args);
}

const print = <T extends Record<string, unknown>>(value: T): T => {
  console.log(JSON.stringify(value, (_k, v) => (typeof v === "bigint" ? v.toString() : v)));
  return value;
};

export const open = taskAction(
  "channel:open",
  async (
    args: SignerArgs & {
      payer?: string;
      payee?: string;
      payerKey?: string;
      amount?: string;
      token?: string;
      rate?: string;
      allowance: string;
      salt: number;
      channels?: string;
    },
    hre: HardhatRuntimeEnvironment,
  ) => {
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
    const { channels, registry } = await channelsFor(hre, "channel:open", args.channels, args);
    for (const [flag, device] of [
      ["--payer", payer],
      ["--payee", payee],
    ] as const)
      if ((await registry.deviceStatus(device)) === 0n)
        throw inputError(
          `${flag}: no device ${device} in the registry the channels use (${short(await registry.getAddress())})`,
        );
    const [keyOf] = await registry.resolveKey(payerKey);
    if (keyOf !== payer)
      throw inputError(
        `--payer-key: ${short(payerKey)} is not device ${payer}'s current key${keyOf === 0n ? "" : ` (it is device ${keyOf}'s)`}`,
      );
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
  },
);

export const topUp = taskAction(
  "channel:top-up",
  async (
    args: SignerArgs & { channel?: string; amount?: string; channels?: string; watch?: string },
    hre: HardhatRuntimeEnvironment,
  ) => {
    const channel = required(args.channel, "--channel");
    const amount = amountArg(required(args.amount, "--amount"), "--amount");
    const { channels } = await channelsFor(hre, "channel:top-up", args.channels, args);
    const terms = await termsOf(channels, channel, args.watch);
    const receipt = await (
      await channels.topUp(terms, amount, { value: terms.token === ZeroAddress ? amount : 0n })
    ).wait();
    return print({ tx: receipt!.hash, deposit: (await channels.channelState(channel)).deposit });
  },
);

export const close = taskAction(
  "channel:close",
  async (
    args: SignerArgs & { channel?: string; voucher?: string; channels?: string; watch?: string },
    hre: HardhatRuntimeEnvironment,
  ) => {
    const channel = required(args.channel, "--channel");
    const { chain, who, channels, registry } = await channelsFor(hre, "channel:close", args.channels, args);
    const terms = await termsOf(channels, channel, args.watch);
    await needDeviceOwner(chain, who, registry, terms.payee, "payee", "channel:close");
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
  },
);

export const startClose = taskAction(
  "channel:start-close",
  async (
    args: SignerArgs & { channel?: string; channels?: string; watch?: string },
    hre: HardhatRuntimeEnvironment,
  ) => {
    const channel = required(args.channel, "--channel");
    const { chain, who, channels, registry } = await channelsFor(hre, "channel:start-close", args.channels, args);
    const terms = await termsOf(channels, channel, args.watch);
    await needDeviceOwner(chain, who, registry, terms.payer, "payer", "channel:start-close");
    const receipt = await (await channels.startClose(terms)).wait();
    return print({ tx: receipt!.hash, closesAt: (await channels.channelState(channel)).closesAt });
  },
);

export const settle = taskAction(
  "channel:settle",
  async (
    args: SignerArgs & { channel?: string; channels?: string; watch?: string },
    hre: HardhatRuntimeEnvironment,
  ) => {
    const ids = required(args.channel, "--channel");
    const { channels } = await channelsFor(hre, "channel:settle", args.channels, args);
    const terms = [];
    for (const id of ids.split(",").map((c) => c.trim())) terms.push(await termsOf(channels, id, args.watch));
    const receipt = await (await channels.settleMany(terms)).wait();
    return print({ tx: receipt!.hash, settled: terms.length, gas: Number(receipt!.gasUsed) });
  },
);

export const withdraw = taskAction(
  "channel:withdraw",
  async (
    args: SignerArgs & { device?: string; token?: string; to?: string; channels?: string },
    hre: HardhatRuntimeEnvironment,
  ) => {
    const token = args.token ?? ZeroAddress;
    if (!isAddress(token)) throw inputError(`--token: ${token} is not an address`);
    if (args.to !== undefined && !isAddress(args.to)) throw inputError(`--to: ${args.to} is not an address`);
    const device = args.device === undefined ? undefined : deviceIdArg(args.device);
    const { chain, who, channels, registry } = await channelsFor(hre, "channel:withdraw", args.channels, args);
    const to = args.to ?? who.address;
    let amount: bigint;
    if (device !== undefined) {
      await needDeviceOwner(chain, who, registry, device, "payee", "channel:withdraw --device");
      amount = await channels.deviceBalance(device, token);
      if (amount === 0n)
        throw inputError(
          `--device: device ${device} has earned nothing to withdraw${token === ZeroAddress ? "" : ` in ${token}`}`,
        );
    } else {
      amount = await channels.accountBalance(who.address, token);
      if (amount === 0n)
        throw inputError(
          `${who.label} is owed nothing${token === ZeroAddress ? "" : ` in ${token}`} (--signer names the account; --device a payee device's earnings)`,
        );
    }
    const tx =
      device !== undefined ? await channels.withdrawForDevice(device, token, to) : await channels.withdraw(token, to);
    const receipt = await tx.wait();
    return print({ tx: receipt!.hash, amount, to });
  },
);

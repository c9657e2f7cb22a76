/**
 * Operator tasks for payment channels: open (ETH or an ERC-20), top up, close (as the payee's
 * owner, with the last voucher), start a unilateral close (as the payer's owner), settle, withdraw.
 * Channel terms are read from the `ChannelOpened` event of `--channel`. A channel pins the payer key
 * it was opened with and the payer's trust period: only that key's vouchers pay it, at most the
 * spending cap at the moment the registry stopped trusting the payer. Refunds are credited to whoever
 * owns the payer device when the channel closes: a seller closes its channels before the sale.
 *
 *   npx hardhat channel:open --payer 123… --payee 456… --payer-key 0x… --amount 1000000000000000000 --network localhost
 */
import { task, types } from "hardhat/config";
import type { HardhatRuntimeEnvironment } from "hardhat/types";
import { amountArg, contractAddress, deviceIdArg, readJsonArg } from "./addresses.js";

async function channelsAt(hre: HardhatRuntimeEnvironment, flag: string | undefined, signer: number) {
  const signers = await hre.ethers.getSigners();
  if (!(signer >= 0 && signer < signers.length)) throw new Error(`--signer: no account ${signer} on this network`);
  return hre.ethers.getContractAt(
    "PaymentChannels",
    await contractAddress(hre, "PaymentChannels", flag),
    signers[signer],
  );
}

type Channels = Awaited<ReturnType<typeof channelsAt>>;

/** The terms of channel `id`, from its `ChannelOpened` event. */
export async function termsOf(channels: Channels, id: string) {
  if (!/^0x[0-9a-fA-F]{64}$/.test(id ?? "")) throw new Error(`--channel: ${id} is not a channel id`);
  const [opened] = await channels.queryFilter(channels.filters.ChannelOpened(id));
  if (!opened) throw new Error(`--channel: no channel ${id} was opened here`);
  const { termsFromOpened } = await import("../src/agent/roles/meter.js");
  return termsFromOpened(opened.args);
}

const print = (value: Record<string, unknown>) => {
  console.log(JSON.stringify(value, (_k, v) => (typeof v === "bigint" ? v.toString() : v)));
  return value;
};

task(
  "channel:open",
  "Opens a payment channel from a payer device to a payee device, funded by the signer (refunds go to the payer device's owner at close)",
)
  .addParam("payer", "the payer device id")
  .addParam("payee", "the payee device id")
  .addParam("payerKey", "the payer device's current key (ERC-7913 signer bytes)")
  .addParam("amount", "the deposit (wei, or token base units)")
  .addOptionalParam("token", "an ERC-20 address (default: ETH); the signer must have approved the contract")
  .addOptionalParam("rate", "spending cap: claimable per second on top of --allowance (default: no cap)")
  .addOptionalParam("allowance", "spending cap: claimable at once", "0")
  .addOptionalParam("salt", "tells apart channels with the same terms", 0, types.int)
  .addOptionalParam("channels", "PaymentChannels address")
  .addOptionalParam("signer", "index of the funding account", 0, types.int)
  .setAction(
    async (
      args: {
        payer: string;
        payee: string;
        payerKey: string;
        amount: string;
        token?: string;
        rate?: string;
        allowance: string;
        salt: number;
        channels?: string;
        signer: number;
      },
      hre,
    ) => {
      const token = args.token ?? hre.ethers.ZeroAddress;
      if (!hre.ethers.isAddress(token)) throw new Error(`--token: ${token} is not an address`);
      if (!hre.ethers.isHexString(args.payerKey) || hre.ethers.dataLength(args.payerKey) < 20)
        throw new Error("--payer-key must be hex bytes: an address or a P-256 signer");
      const cap = (v: string, flag: string) => {
        if (!/^[0-9]+$/.test(v) || BigInt(v) >= 1n << 96n) throw new Error(`${flag}: ${v} must be a uint96`);
        return BigInt(v);
      };
      const amount = amountArg(args.amount, "--amount");
      const channels = await channelsAt(hre, args.channels, args.signer);
      const opening = {
        payer: deviceIdArg(args.payer, "--payer"),
        payee: deviceIdArg(args.payee, "--payee"),
        token,
        rate: args.rate === undefined ? (1n << 96n) - 1n : cap(args.rate, "--rate"),
        allowance: cap(args.allowance, "--allowance"),
        salt: args.salt,
      };
      const tx = await channels.open(opening, args.payerKey, amount, {
        value: token === hre.ethers.ZeroAddress ? amount : 0n,
      });
      const receipt = await tx.wait();
      const log = receipt!.logs.map((l) => channels.interface.parseLog(l)).find((l) => l?.name === "ChannelOpened");
      return print({ channel: log!.args.channel, tx: receipt!.hash, gas: Number(receipt!.gasUsed) });
    },
  );

task("channel:top-up", "Adds to a channel's deposit (anyone may)")
  .addParam("channel", "the channel id")
  .addParam("amount", "what to add (wei, or token base units)")
  .addOptionalParam("channels", "PaymentChannels address")
  .addOptionalParam("signer", "index of the funding account", 0, types.int)
  .setAction(async (args: { channel: string; amount: string; channels?: string; signer: number }, hre) => {
    const channels = await channelsAt(hre, args.channels, args.signer);
    const terms = await termsOf(channels, args.channel);
    const amount = amountArg(args.amount, "--amount");
    const receipt = await (
      await channels.topUp(terms, amount, { value: terms.token === hre.ethers.ZeroAddress ? amount : 0n })
    ).wait();
    return print({ tx: receipt!.hash, deposit: (await channels.channelState(args.channel)).deposit });
  });

task("channel:close", "Closes a channel at once as the payee's owner, with the payer's last voucher if given")
  .addParam("channel", "the channel id")
  .addOptionalParam(
    "voucher",
    "JSON file {cumulativeAmount, key, signature} (the payee's highest voucher, by the key the channel was opened with)",
  )
  .addOptionalParam("channels", "PaymentChannels address")
  .addOptionalParam("signer", "index of the payee owner's account", 0, types.int)
  .setAction(async (args: { channel: string; voucher?: string; channels?: string; signer: number }, hre) => {
    const channels = await channelsAt(hre, args.channels, args.signer);
    const terms = await termsOf(channels, args.channel);
    let [amount, key, signature] = [0n, "0x", "0x"];
    if (args.voucher) {
      const v = readJsonArg(args.voucher, "--voucher") as {
        cumulativeAmount?: string;
        key?: string;
        signature?: string;
      };
      if (!v.cumulativeAmount || !v.key || !v.signature)
        throw new Error("--voucher must hold cumulativeAmount, key and signature");
      [amount, key, signature] = [BigInt(v.cumulativeAmount), v.key, v.signature];
    }
    const receipt = await (await channels.cooperativeClose(terms, amount, key, signature)).wait();
    return print({ tx: receipt!.hash, gas: Number(receipt!.gasUsed) });
  });

task(
  "channel:start-close",
  "Starts a unilateral close as the payer device's owner (the payee then has the challenge period)",
)
  .addParam("channel", "the channel id")
  .addOptionalParam("channels", "PaymentChannels address")
  .addOptionalParam("signer", "index of the payer owner's account", 0, types.int)
  .setAction(async (args: { channel: string; channels?: string; signer: number }, hre) => {
    const channels = await channelsAt(hre, args.channels, args.signer);
    const receipt = await (await channels.startClose(await termsOf(channels, args.channel))).wait();
    return print({ tx: receipt!.hash, closesAt: (await channels.channelState(args.channel)).closesAt });
  });

task("channel:settle", "Settles channels whose challenge period is over (anyone may)")
  .addParam("channel", "channel id(s), comma-separated")
  .addOptionalParam("channels", "PaymentChannels address")
  .addOptionalParam("signer", "index of the sending account", 0, types.int)
  .setAction(async (args: { channel: string; channels?: string; signer: number }, hre) => {
    const channels = await channelsAt(hre, args.channels, args.signer);
    const terms = [];
    for (const id of args.channel.split(",").map((c) => c.trim())) terms.push(await termsOf(channels, id));
    const receipt = await (await channels.settleMany(terms)).wait();
    return print({ tx: receipt!.hash, settled: terms.length, gas: Number(receipt!.gasUsed) });
  });

task("channel:withdraw", "Withdraws the signer's refunds, or with --device what a payee device it owns earned")
  .addOptionalParam("device", "a payee device id the signer owns")
  .addOptionalParam("token", "an ERC-20 address (default: ETH)")
  .addOptionalParam("to", "where to send it (default: the signer)")
  .addOptionalParam("channels", "PaymentChannels address")
  .addOptionalParam("signer", "index of the account", 0, types.int)
  .setAction(async (args: { device?: string; token?: string; to?: string; channels?: string; signer: number }, hre) => {
    const channels = await channelsAt(hre, args.channels, args.signer);
    const token = args.token ?? hre.ethers.ZeroAddress;
    if (!hre.ethers.isAddress(token)) throw new Error(`--token: ${token} is not an address`);
    const to = args.to ?? (await (await hre.ethers.getSigners())[args.signer].getAddress());
    if (!hre.ethers.isAddress(to)) throw new Error(`--to: ${to} is not an address`);
    const tx = args.device
      ? await channels.withdrawForDevice(deviceIdArg(args.device), token, to)
      : await channels.withdraw(token, to);
    const receipt = await tx.wait();
    return print({ tx: receipt!.hash });
  });

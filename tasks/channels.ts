/**
 * Operator tasks for payment channels: open (ETH or an ERC-20), top up, close (as the payee's
 * owner, with the last voucher), start a unilateral close (as the payer's owner), settle, withdraw.
 * Channel terms are read from the `ChannelOpened` event of `--channel`. A channel pins the payer key
 * it was opened with and the payer's trust period: only that key's vouchers pay it, at most the
 * spending cap at the moment the registry stopped trusting the payer. Refunds are credited to whoever
 * owns the payer device when the channel closes: a seller closes its channels before the sale.
 * Each signs as the network's account #0 unless told otherwise (`--signer N|ADDRESS`, `--keystore
 * FILE`, `--signer-var NAME`) and checks first that it may: closing as the payee's owner, starting
 * a close as the payer's. The actions are in ./actions/channels.ts.
 *
 *   npx hardhat channel:open --payer 123… --payee 456… --payer-key 0x… --amount 1000000000000000000 --network localhost
 */
import { task } from "hardhat/config";
import { int, lazy, needed, optional, signing, text } from "./support.js";

const actions = () => import("./actions/channels.js");
const channel = needed("channel", "the channel id");
const channels = optional(
  "channels",
  "PaymentChannels address (default: CUSTOS_PAYMENT_CHANNELS, or this chain's Ignition deployment)",
);

/** Where the terms come from: the chain's logs, or the receipt of the transaction a watch's index lists. */
const watch = optional(
  "watch",
  "a Custos watch's URL (npm run watch): find the channel's opening through its index, read from the chain",
);

export const channelTasks = [
  signing(
    task(
      "channel:open",
      "Opens a payment channel from a payer device to a payee device, funded by the signer (refunds go to the payer device's owner at close)",
    )
      .addOption(needed("payer", "the payer device id"))
      .addOption(needed("payee", "the payee device id"))
      .addOption(needed("payerKey", "the payer device's current key (ERC-7913 signer bytes)"))
      .addOption(needed("amount", "the deposit (wei, or token base units)"))
      .addOption(optional("token", "an ERC-20 address (default: ETH); the signer must have approved the contract"))
      .addOption(optional("rate", "spending cap: claimable per second on top of --allowance (default: no cap)"))
      .addOption(text("allowance", "spending cap: claimable at once", "0"))
      .addOption(int("salt", "tells apart channels with the same terms", 0))
      .addOption(channels),
  )
    .setAction(lazy(actions, "open"))
    .build(),

  signing(
    task("channel:top-up", "Adds to a channel's deposit (anyone may)")
      .addOption(channel)
      .addOption(needed("amount", "what to add (wei, or token base units)"))
      .addOption(channels)
      .addOption(watch),
  )
    .setAction(lazy(actions, "topUp"))
    .build(),

  signing(
    task("channel:close", "Closes a channel at once as the payee's owner, with the payer's last voucher if given")
      .addOption(channel)
      .addOption(
        optional(
          "voucher",
          "JSON file {cumulativeAmount, key, signature} (the payee's highest voucher, by the key the channel was opened with)",
        ),
      )
      .addOption(channels)
      .addOption(watch),
  )
    .setAction(lazy(actions, "close"))
    .build(),

  signing(
    task(
      "channel:start-close",
      "Starts a unilateral close as the payer device's owner (the payee then has the challenge period)",
    )
      .addOption(channel)
      .addOption(channels)
      .addOption(watch),
  )
    .setAction(lazy(actions, "startClose"))
    .build(),

  signing(
    task("channel:settle", "Settles channels whose challenge period is over (anyone may)")
      .addOption(needed("channel", "channel id(s), comma-separated"))
      .addOption(channels)
      .addOption(watch),
  )
    .setAction(lazy(actions, "settle"))
    .build(),

  signing(
    task("channel:withdraw", "Withdraws the signer's refunds, or with --device what a payee device it owns earned")
      .addOption(optional("device", "a payee device id the signer owns"))
      .addOption(optional("token", "an ERC-20 address (default: ETH)"))
      .addOption(optional("to", "where to send it (default: the signer)"))
      .addOption(channels),
  )
    .setAction(lazy(actions, "withdraw"))
    .build(),
];

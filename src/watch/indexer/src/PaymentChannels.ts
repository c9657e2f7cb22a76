/**
 * PaymentChannels: channels (deposit and top-ups, cumulative paid, balance, close started and
 * closed with paid and refund) and withdrawals. A close started and a close are alerts to the
 * owners of the payer's and the payee's devices.
 */
import { ponder, type Context } from "ponder:registry";
import { channel, channelEvent, withdrawal } from "ponder:schema";
import type { AlertKind } from "../../alerts.js";
import { admin } from "./lib/admin.js";
import { ownerOf, raiseAlert } from "./lib/alert.js";
import { eventId, lower, placeOf, type EventLike } from "./lib/rows.js";

function record(
  context: Context,
  event: EventLike,
  channelId: `0x${string}`,
  kind: string,
  amount: bigint | null,
  account: string | null,
) {
  return context.db.insert(channelEvent).values({
    id: eventId(event),
    channelId,
    kind,
    amount,
    account: account ? (lower(account) as `0x${string}`) : null,
    ...placeOf(event),
  });
}

ponder.on("PaymentChannels:ChannelOpened", async ({ event, context }) => {
  const a = event.args;
  await context.db.insert(channel).values({
    id: a.channel,
    payer: a.payer,
    payee: a.payee,
    token: lower(a.token),
    rate: a.rate,
    allowance: a.allowance,
    openedAt: a.openedAt,
    salt: BigInt(a.salt),
    payerKeyHash: a.payerKeyHash,
    payerPeriod: BigInt(a.payerPeriod),
    deposit: a.deposit,
    paid: 0n,
    balance: a.deposit,
    closed: false,
  });
  await record(context, event, a.channel, "open", a.deposit, event.transaction.from);
});

ponder.on("PaymentChannels:ChannelToppedUp", async ({ event, context }) => {
  const { channel: id, funder, amount } = event.args;
  await context.db
    .update(channel, { id })
    .set((row) => ({ deposit: row.deposit + amount, balance: row.balance + amount }));
  await record(context, event, id, "top_up", amount, funder);
});

ponder.on("PaymentChannels:ChannelClaimed", async ({ event, context }) => {
  const { channel: id, paid } = event.args;
  await context.db.update(channel, { id }).set((row) => ({ paid, balance: row.deposit - paid }));
  await record(context, event, id, "claim", paid, null);
});

async function closeAlert(
  context: Context,
  event: EventLike,
  id: `0x${string}`,
  kind: AlertKind,
  data: Record<string, string>,
  extra: string[] = [],
) {
  const row = await context.db.find(channel, { id });
  if (!row) return;
  const owners = [await ownerOf(context, row.payer), await ownerOf(context, row.payee), ...extra];
  await raiseAlert(
    context,
    event,
    kind,
    { owners, channel: id },
    { payer: row.payer.toString(), payee: row.payee.toString(), ...data },
  );
}

ponder.on("PaymentChannels:ChannelCloseStarted", async ({ event, context }) => {
  const { channel: id, closesAt } = event.args;
  await context.db.update(channel, { id }).set({ closesAt, closeStartedBlock: event.block.number });
  await record(context, event, id, "close_started", null, event.transaction.from);
  await closeAlert(context, event, id, "channel.close_started", { closesAt: closesAt.toString() });
});

ponder.on("PaymentChannels:ChannelClosed", async ({ event, context }) => {
  const { channel: id, paid, refund, payerOwner } = event.args;
  await context.db
    .update(channel, { id })
    .set({ paid, refund, balance: 0n, closed: true, payerOwner: lower(payerOwner), closedBlock: event.block.number });
  await record(context, event, id, "closed", paid, payerOwner);
  await closeAlert(context, event, id, "channel.closed", { paid: paid.toString(), refund: refund.toString() }, [
    payerOwner,
  ]);
});

ponder.on("PaymentChannels:Withdrawn", async ({ event, context }) => {
  const { account, token, to, amount } = event.args;
  await context.db.insert(withdrawal).values({
    id: eventId(event),
    account: lower(account),
    token: lower(token),
    to: lower(to),
    amount,
    ...placeOf(event),
  });
});

ponder.on("PaymentChannels:DeviceWithdrawn", async ({ event, context }) => {
  const { device: deviceId, token, to, amount } = event.args;
  await context.db
    .insert(withdrawal)
    .values({ id: eventId(event), deviceId, token: lower(token), to: lower(to), amount, ...placeOf(event) });
});

ponder.on("PaymentChannels:EIP712DomainChanged", admin("PaymentChannels", "EIP712DomainChanged"));

/**
 * CustodyLedger: shipments (conditions, custodian, pallet and children), handoffs, checkpoints and
 * the marks (breach, excursion proven, overdue, silent, delivered), each mark an alert to the
 * shipper, the receiver and the custodian.
 */
import { ponder, type Context } from "ponder:registry";
import { checkpoint, handoff, palletChild, shipment, shipmentMark } from "ponder:schema";
import type { AlertKind } from "../../alerts.js";
import { admin } from "./lib/admin.js";
import { raiseAlert } from "./lib/alert.js";
import { eventId, lower, placeOf, type EventLike } from "./lib/rows.js";

ponder.on("CustodyLedger:ShipmentCreated", async ({ event, context }) => {
  const a = event.args;
  const palletOf = await context.db.find(palletChild, { child: a.shipment });
  await context.db.insert(shipment).values({
    id: a.shipment,
    creator: lower(a.creator),
    tracker: a.tracker,
    epc: a.epc,
    receiver: lower(a.receiver),
    custodian: lower(a.creator),
    deadline: BigInt(a.deadline),
    maxSilence: BigInt(a.maxSilence),
    minTemp: a.minTemp,
    maxTemp: a.maxTemp,
    metadataHash: a.metadataHash,
    childrenRoot: a.childrenRoot,
    pallet: palletOf?.pallet ?? null,
    handoffSeq: 0n,
    checkpointSeq: 0n,
    // Silence is counted from the creation until the first checkpoint.
    lastCheckpointAt: event.block.timestamp,
    breached: false,
    excursionProven: false,
    overdue: false,
    silent: false,
    delivered: false,
    createdAt: event.block.timestamp,
    createdBlock: event.block.number,
  });
});

ponder.on("CustodyLedger:ChildSplit", async ({ event, context }) => {
  const { pallet, child } = event.args;
  await context.db
    .insert(palletChild)
    .values({ child, pallet, ...placeOf(event) })
    .onConflictDoUpdate({ pallet });
  // The child may be created before or after its split is recorded.
  if (await context.db.find(shipment, { id: child })) await context.db.update(shipment, { id: child }).set({ pallet });
});

ponder.on("CustodyLedger:HandedOff", async ({ event, context }) => {
  const { shipment: id, from, to, seq, bizStep, disposition, readPoint, at } = event.args;
  await context.db.insert(handoff).values({
    id: eventId(event),
    shipmentId: id,
    from: lower(from),
    to: lower(to),
    seq: BigInt(seq),
    bizStep,
    disposition,
    readPoint,
    at,
    ...placeOf(event),
  });
  await context.db.update(shipment, { id }).set({ custodian: lower(to), handoffSeq: BigInt(seq) });
});

ponder.on("CustodyLedger:CheckpointPosted", async ({ event, context }) => {
  const { shipment: id, seq, readingsRoot, count, minTemp, maxTemp, location, at } = event.args;
  await context.db.insert(checkpoint).values({
    id: eventId(event),
    shipmentId: id,
    seq: BigInt(seq),
    readingsRoot,
    count: BigInt(count),
    minTemp,
    maxTemp,
    location,
    at,
    ...placeOf(event),
  });
  await context.db.update(shipment, { id }).set({ checkpointSeq: BigInt(seq), lastCheckpointAt: at });
});

/** Records a mark on shipment `id`, updates its flags, and raises the alert to its parties. */
async function mark(
  context: Context,
  event: EventLike,
  id: `0x${string}`,
  kind: AlertKind,
  set: Partial<typeof shipment.$inferInsert>,
  data: Record<string, string | number | boolean | null>,
) {
  await context.db.insert(shipmentMark).values({ id: eventId(event), shipmentId: id, kind, data, ...placeOf(event) });
  const row = await context.db.update(shipment, { id }).set(set);
  await raiseAlert(
    context,
    event,
    kind,
    { owners: [row.creator, row.receiver, row.custodian], shipment: id, device: row.tracker.toString() },
    { ...data, epc: row.epc, custodian: row.custodian },
  );
}

ponder.on("CustodyLedger:Breached", async ({ event, context }) => {
  const { shipment: id, checkpointSeq, temp, at } = event.args;
  await mark(context, event, id, "shipment.breached", { breached: true }, { checkpointSeq, temp, at: at.toString() });
});

ponder.on("CustodyLedger:DeviceContradicted", async ({ event, context }) => {
  const { device, shipment: id, checkpointSeq, temp } = event.args;
  await mark(
    context,
    event,
    id,
    "shipment.excursion_proven",
    { excursionProven: true, breached: true },
    {
      tracker: device.toString(),
      checkpointSeq,
      temp,
    },
  );
});

ponder.on("CustodyLedger:MarkedOverdue", async ({ event, context }) => {
  const { shipment: id, deadline } = event.args;
  await mark(context, event, id, "shipment.overdue", { overdue: true }, { deadline });
});

ponder.on("CustodyLedger:MarkedSilent", async ({ event, context }) => {
  const { shipment: id, lastCheckpointAt } = event.args;
  await mark(context, event, id, "shipment.silent", { silent: true }, { lastCheckpointAt });
});

ponder.on("CustodyLedger:Delivered", async ({ event, context }) => {
  const { shipment: id, receiver } = event.args;
  await mark(
    context,
    event,
    id,
    "shipment.delivered",
    { delivered: true, deliveredAt: event.block.timestamp, custodian: lower(receiver) },
    {
      receiver: lower(receiver),
    },
  );
});

ponder.on("CustodyLedger:EIP712DomainChanged", admin("CustodyLedger", "EIP712DomainChanged"));

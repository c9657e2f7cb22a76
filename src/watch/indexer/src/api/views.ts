/**
 * The watch's JSON views over the index: a device with its history, an owner's fleet (paged, on the
 * owner index), a shipment's full history, a channel, a lock; and the canonical alerts from a block.
 * Bigints leave as decimal strings.
 */
import { and, asc, count, eq, gt, gte, inArray, lte, replaceBigInts } from "ponder";
import type { db as Db } from "ponder:api";
import {
  alert,
  batch,
  channel,
  channelEvent,
  checkpoint,
  device,
  deviceKey,
  deviceStatusChange,
  guardianVote,
  handoff,
  lock,
  lockEpoch,
  lockKeyRevocation,
  lockLogBatch,
  lockManager,
  locationBeacon,
  palletChild,
  shipment,
  shipmentMark,
  transfer,
} from "ponder:schema";
import type { Alert, AlertKind } from "../../../alerts.js";

type Database = typeof Db;

/** What a value becomes in JSON here: every bigint a decimal string. */
export type Json<T> = T extends bigint
  ? string
  : T extends readonly (infer U)[]
    ? Json<U>[]
    : T extends object
      ? { [K in keyof T]: Json<T[K]> }
      : T;

const json = <T>(value: T) => replaceBigInts(value, (v) => v.toString()) as unknown as Json<T>;

const RANK: Record<string, number> = { active: 0, quarantined: 1, revoked: 2 };

/** The effective status: the worse of the device's own and its batch's. */
function effective(own: string, batchStatus: string | undefined): string {
  return batchStatus && (RANK[batchStatus] ?? 0) > (RANK[own] ?? 0) ? batchStatus : own;
}

export async function deviceView(db: Database, id: bigint) {
  const [row] = await db.select().from(device).where(eq(device.id, id));
  if (!row) return null;
  const [batchRow, statusHistory, keys, transfers, votes, beacons] = await Promise.all([
    row.batchId === null ? Promise.resolve([]) : db.select().from(batch).where(eq(batch.id, row.batchId)),
    db
      .select()
      .from(deviceStatusChange)
      .where(eq(deviceStatusChange.deviceId, id))
      .orderBy(asc(deviceStatusChange.blockNumber), asc(deviceStatusChange.logIndex)),
    db
      .select()
      .from(deviceKey)
      .where(eq(deviceKey.deviceId, id))
      .orderBy(asc(deviceKey.generation), asc(deviceKey.blockNumber)),
    db
      .select()
      .from(transfer)
      .where(eq(transfer.deviceId, id))
      .orderBy(asc(transfer.blockNumber), asc(transfer.logIndex)),
    db
      .select()
      .from(guardianVote)
      .where(eq(guardianVote.deviceId, id))
      .orderBy(asc(guardianVote.blockNumber), asc(guardianVote.logIndex)),
    db
      .select()
      .from(locationBeacon)
      .where(eq(locationBeacon.deviceId, id))
      .orderBy(asc(locationBeacon.blockNumber), asc(locationBeacon.logIndex)),
  ]);
  const b = batchRow[0];
  return json({
    device: { ...row, effectiveStatus: effective(row.status, b?.status) },
    batch: b ?? null,
    statusHistory,
    keys,
    transfers,
    guardianVotes: votes,
    locationBeacons: beacons,
  });
}

/**
 * One page of `owner`'s devices by id: after device `after` (keyset paging, on the (owner, id)
 * index, as cheap on the last page as on the first) or else from `offset`.
 */
export async function fleetOf(
  db: Database,
  owner: `0x${string}`,
  page: { limit: number; offset: number; after?: bigint },
) {
  const where =
    page.after === undefined ? eq(device.owner, owner) : and(eq(device.owner, owner), gt(device.id, page.after));
  const [devices, [total]] = await Promise.all([
    db
      .select()
      .from(device)
      .where(where)
      .orderBy(asc(device.id))
      .limit(page.limit)
      .offset(page.after === undefined ? page.offset : 0),
    db.select({ n: count() }).from(device).where(eq(device.owner, owner)),
  ]);
  const batchIds = [...new Set(devices.map((d) => d.batchId).filter((b): b is bigint => b !== null))];
  const batches = batchIds.length ? await db.select().from(batch).where(inArray(batch.id, batchIds)) : [];
  const statusOf = new Map(batches.map((b) => [b.id, b.status]));
  return json({
    owner,
    total: Number(total?.n ?? 0),
    limit: page.limit,
    offset: page.after === undefined ? page.offset : null,
    after: page.after ?? null,
    devices: devices.map((d) => ({
      ...d,
      effectiveStatus: effective(d.status, d.batchId === null ? undefined : statusOf.get(d.batchId)),
    })),
  });
}

export async function shipmentView(db: Database, id: `0x${string}`) {
  const [row] = await db.select().from(shipment).where(eq(shipment.id, id));
  if (!row) return null;
  const [handoffs, checkpoints, marks, children] = await Promise.all([
    db.select().from(handoff).where(eq(handoff.shipmentId, id)).orderBy(asc(handoff.seq)),
    db.select().from(checkpoint).where(eq(checkpoint.shipmentId, id)).orderBy(asc(checkpoint.seq)),
    db
      .select()
      .from(shipmentMark)
      .where(eq(shipmentMark.shipmentId, id))
      .orderBy(asc(shipmentMark.blockNumber), asc(shipmentMark.logIndex)),
    db
      .select()
      .from(palletChild)
      .where(eq(palletChild.pallet, id))
      .orderBy(asc(palletChild.blockNumber), asc(palletChild.logIndex)),
  ]);
  return json({ shipment: row, handoffs, checkpoints, marks, children: children.map((c) => c.child) });
}

export async function channelView(db: Database, id: `0x${string}`) {
  const [row] = await db.select().from(channel).where(eq(channel.id, id));
  if (!row) return null;
  const events = await db
    .select()
    .from(channelEvent)
    .where(eq(channelEvent.channelId, id))
    .orderBy(asc(channelEvent.blockNumber), asc(channelEvent.logIndex));
  return json({ channel: row, events });
}

export async function lockView(db: Database, id: bigint) {
  const [[row], [owner]] = await Promise.all([
    db.select().from(lock).where(eq(lock.id, id)),
    db.select({ owner: device.owner, ownerEpoch: device.ownerEpoch }).from(device).where(eq(device.id, id)),
  ]);
  if (!row && !owner) return null;
  const [revocations, epochs, managers, logBatches] = await Promise.all([
    db
      .select()
      .from(lockKeyRevocation)
      .where(eq(lockKeyRevocation.lockId, id))
      .orderBy(asc(lockKeyRevocation.blockNumber), asc(lockKeyRevocation.logIndex)),
    db
      .select()
      .from(lockEpoch)
      .where(eq(lockEpoch.lockId, id))
      .orderBy(asc(lockEpoch.blockNumber), asc(lockEpoch.logIndex)),
    db.select().from(lockManager).where(eq(lockManager.lockId, id)).orderBy(asc(lockManager.appointedBlock)),
    db.select().from(lockLogBatch).where(eq(lockLogBatch.lockId, id)).orderBy(asc(lockLogBatch.seq)),
  ]);
  return json({
    lock: row ?? { id, epoch: 0n, epochOwner: null, revokedKeys: 0, anchoredBatches: 0, lastAnchorSeq: null },
    owner: owner?.owner ?? null,
    ownerEpoch: owner?.ownerEpoch ?? null,
    revocations,
    epochs,
    managers,
    logBatches,
  });
}

/** The alerts of blocks `fromBlock` to `toBlock`, in chain order, in the shape of src/watch/alerts.ts. */
export async function alertsFrom(db: Database, fromBlock: bigint, toBlock: bigint): Promise<Alert[]> {
  if (toBlock < fromBlock) return [];
  const rows = await db
    .select()
    .from(alert)
    .where(and(gte(alert.blockNumber, fromBlock), lte(alert.blockNumber, toBlock)))
    .orderBy(asc(alert.blockNumber), asc(alert.logIndex), asc(alert.kind));
  return rows.map((r) => ({
    id: r.id,
    kind: r.kind as AlertKind,
    chainId: r.chainId,
    blockNumber: r.blockNumber.toString(),
    blockHash: r.blockHash,
    txHash: r.txHash,
    logIndex: r.logIndex,
    timestamp: Number(r.timestamp),
    subjects: r.subjects,
    data: r.data,
  }));
}

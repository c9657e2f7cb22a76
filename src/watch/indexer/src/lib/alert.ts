/**
 * Writes one alert row (see src/watch/alerts.ts for its shape). The row lives in an onchain table,
 * so a reorg that orphans the event removes the alert too.
 */
import type { Context } from "ponder:registry";
import { alert, device } from "ponder:schema";
import { alertId, type AlertKind, type AlertSubjects } from "../../../alerts.js";
import { accounts, type EventLike } from "./rows.js";

export async function raiseAlert(
  context: Context,
  event: EventLike,
  kind: AlertKind,
  subjects: Omit<AlertSubjects, "owners"> & { owners: (string | null | undefined)[] },
  data: Record<string, string | number | boolean | null>,
): Promise<void> {
  const chainId = context.chain.id;
  await context.db.insert(alert).values({
    id: alertId(chainId, event.transaction.hash, event.log.logIndex, kind),
    kind,
    chainId,
    blockNumber: event.block.number,
    blockHash: event.block.hash,
    txHash: event.transaction.hash,
    logIndex: event.log.logIndex,
    timestamp: event.block.timestamp,
    subjects: { ...subjects, owners: accounts(...subjects.owners) },
    data,
  });
}

/** The owner of device `id` as the index knows it at this block (null for an unknown device). */
export async function ownerOf(context: Context, id: bigint): Promise<string | null> {
  const row = await context.db.find(device, { id });
  return row ? row.owner : null;
}

/**
 * The watchtower's shipment rules, as CustodyLedger states them (`markOverdue`, `markSilent`):
 *
 * - overdue: `block.timestamp > deadline`, not delivered, not marked overdue yet;
 * - silent: `block.timestamp > lastCheckpointAt + maxSilence`, not delivered, not marked silent yet.
 *
 * Both are strict: a block whose timestamp equals the deadline is not past it. A call sent now
 * lands at the earliest in the next block, whose timestamp is at least the head's plus one (block
 * timestamps strictly increase). So a call is due as soon as the head's timestamp reaches the
 * limit (`head.timestamp >= deadline`): the next block is then the first in which the call can
 * succeed, or, when the chain skipped past the limit, the first one after the head that did.
 */
import type { ShipmentCall } from "../../messages/calls.js";

/** What the tower keeps of a shipment (read from `shipmentOf`). */
export interface ShipmentState {
  id: string;
  deadline: bigint;
  lastCheckpointAt: bigint;
  maxSilence: bigint;
  overdue: boolean;
  silent: boolean;
  delivered: boolean;
}

/** The calls that succeed in a block with timestamp `nextTimestamp` (or any later one). */
export function dueCalls(s: ShipmentState, nextTimestamp: bigint): ShipmentCall[] {
  if (s.delivered) return [];
  const due: ShipmentCall[] = [];
  if (!s.overdue && nextTimestamp > s.deadline) due.push({ type: "MarkOverdue", shipment: s.id });
  if (!s.silent && nextTimestamp > s.lastCheckpointAt + s.maxSilence) due.push({ type: "MarkSilent", shipment: s.id });
  return due;
}

/** Whether the shipment can still become due: it is not delivered and not marked both ways. */
export function stillWatched(s: ShipmentState): boolean {
  return !s.delivered && !(s.overdue && s.silent);
}

/**
 * The least timestamp the next block can have: one past the head's, or, when no block came for a
 * while (a node that mines only on demand), the head's plus the whole seconds since it was seen.
 */
export function nextBlockTimestamp(headTimestamp: bigint, msSinceHead: number): bigint {
  const elapsed = BigInt(Math.floor(Math.max(0, msSinceHead) / 1000));
  return headTimestamp + (elapsed > 1n ? elapsed : 1n);
}

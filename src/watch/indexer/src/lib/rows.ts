/**
 * What every history row and alert takes from the event it came from: a stable id (transaction
 * hash and log index) and its place in the chain.
 */
export interface EventLike {
  block: { number: bigint; hash: `0x${string}`; timestamp: bigint };
  transaction: { hash: `0x${string}` };
  log: { logIndex: number };
}

export function eventId(event: EventLike): string {
  return `${event.transaction.hash}:${event.log.logIndex}`;
}

export function placeOf(event: EventLike) {
  return {
    blockNumber: event.block.number,
    txHash: event.transaction.hash,
    logIndex: event.log.logIndex,
    timestamp: event.block.timestamp,
  };
}

/** Lowercase hex, as every address in the index and in an alert's subjects is. */
export function lower<T extends string>(value: T): T {
  return value.toLowerCase() as T;
}

/** The unique lowercase addresses among `values`, without the zero address and absent ones. */
export function accounts(...values: (string | null | undefined)[]): string[] {
  const seen = new Set<string>();
  for (const v of values) if (v && !/^0x0{40}$/i.test(v)) seen.add(v.toLowerCase());
  return [...seen];
}

/** The registry's BatchStatus enum, by value. */
export const BATCH_STATUS = ["none", "active", "quarantined", "revoked"] as const;

/** A device's own status from its flags (its batch's status may make the effective one worse). */
export function deviceStatusOf(flags: { reportedStolen: boolean; guardianFlagged: boolean; revoked: boolean }): string {
  if (flags.revoked) return "revoked";
  if (flags.reportedStolen || flags.guardianFlagged) return "quarantined";
  return "active";
}

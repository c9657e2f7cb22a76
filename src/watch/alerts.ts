/**
 * What the watch tells subscribers: one alert per chain event that an owner, a custodian or a
 * payee must hear about. The indexer derives them from events (so a reorg that orphans the event
 * removes the alert with it), the dispatcher delivers them as signed webhooks, and a delivered
 * alert whose block was orphaned is followed by its retraction. This file is the contract between
 * the three; it imports nothing of ours.
 */

/** Every kind of alert, named `<subject>.<what happened>`. */
export const ALERT_KINDS = [
  "device.quarantined",
  "device.released",
  "device.revoked",
  "device.key_rotated",
  "device.location_beacon",
  "lock.key_revoked",
  "lock.all_keys_revoked",
  "shipment.breached",
  "shipment.excursion_proven",
  "shipment.overdue",
  "shipment.silent",
  "shipment.delivered",
  "channel.close_started",
  "channel.closed",
] as const;

export type AlertKind = (typeof ALERT_KINDS)[number];

/** What an alert is about: the keys a subscription can match. Addresses lowercase, ids as strings. */
export interface AlertSubjects {
  /** The accounts that own what the alert is about, at the alert's block (device owner, shipper, payer's and payee's owners…). */
  owners: string[];
  /** Device id, decimal. */
  device?: string;
  /** Lock (a device) id, decimal. */
  lock?: string;
  /** Shipment id, 0x-prefixed bytes32. */
  shipment?: string;
  /** Channel id, 0x-prefixed bytes32. */
  channel?: string;
}

export interface Alert {
  /** Unique and stable across restarts: `${chainId}:${txHash}:${logIndex}:${kind}`. */
  id: string;
  kind: AlertKind;
  chainId: number;
  /** Decimal block number (a string so that JSON carries it exactly). */
  blockNumber: string;
  blockHash: string;
  txHash: string;
  logIndex: number;
  /** Block timestamp, seconds. */
  timestamp: number;
  subjects: AlertSubjects;
  /** The event's fields that matter to a receiver (reason, temperature, key provenance, amounts as decimal strings…). */
  data: Record<string, string | number | boolean | null>;
}

/** Where the dispatcher reads alerts from: the index (or, in tests, anything that behaves like it). */
export interface AlertFeed {
  /**
   * The canonical alerts with `blockNumber >= fromBlock`, ordered by block and log index, and the
   * block the index has reached. An alert of an orphaned block is absent once the index followed
   * the reorg.
   */
  alertsFrom(fromBlock: bigint): Promise<{ indexedBlock: bigint; alerts: Alert[] }>;
}

export function alertId(chainId: number, txHash: string, logIndex: number, kind: AlertKind): string {
  return `${chainId}:${txHash.toLowerCase()}:${logIndex}:${kind}`;
}

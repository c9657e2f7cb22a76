/**
 * A delivery: one alert (or one retraction) for one subscription, with the exact body that is
 * POSTed. Its id is derived from what it is about — the subscription, the alert and the block the
 * alert was seen in — so a delivery repeated after a crash carries the same id, and a receiver
 * drops it as a duplicate. An alert re-mined in another block after a reorg is another fact and
 * gets another id (after the retraction of the first). The body is built once, when the delivery
 * is queued, and kept: a repeat is byte for byte the same.
 *
 * Bodies follow the Standard Webhooks layout `{ type, timestamp, data }`:
 *   an alert:      type = the alert's kind,  data = { delivery, subscription, alert }
 *   a retraction:  type = "alert.retracted", data = { delivery, subscription, retracts, alert }
 */
import { createHash } from "node:crypto";
import type { Alert } from "../alerts.js";

export interface Delivery {
  /** `dlv_` and 32 hex digits. */
  id: string;
  subscription: string;
  type: "alert" | "retraction";
  alertId: string;
  blockNumber: string;
  blockHash: string;
  /** For a retraction: the delivery it retracts. */
  retracts?: string;
  /** The JSON body, exactly as POSTed. */
  body: string;
  /** When it was queued (dispatcher's clock, ms): the give-up horizon counts from here. */
  queuedAt: number;
}

export interface AlertBody {
  type: string;
  timestamp: string;
  data: { delivery: string; subscription: string; retracts?: string; alert: Alert };
}

function hashId(...parts: string[]): string {
  return `dlv_${createHash("sha256").update(parts.join("\n")).digest("hex").slice(0, 32)}`;
}

/** The id of the delivery of `alert` (as seen in its block) to `subscription`. */
export function deliveryIdOf(subscription: string, alert: Pick<Alert, "id" | "blockHash">): string {
  return hashId("alert", subscription, alert.id, alert.blockHash.toLowerCase());
}

/** The id of the retraction of delivery `deliveryId`. */
export function retractionIdOf(deliveryId: string): string {
  return hashId("retraction", deliveryId);
}

export function alertDelivery(subscription: string, alert: Alert, queuedAt: number): Delivery {
  const id = deliveryIdOf(subscription, alert);
  const body: AlertBody = {
    type: alert.kind,
    timestamp: new Date(alert.timestamp * 1000).toISOString(),
    data: { delivery: id, subscription, alert },
  };
  return {
    id,
    subscription,
    type: "alert",
    alertId: alert.id,
    blockNumber: alert.blockNumber,
    blockHash: alert.blockHash.toLowerCase(),
    body: JSON.stringify(body),
    queuedAt,
  };
}

/** The follow-up to `original`, whose alert's block was orphaned by a reorg. */
export function retractionDelivery(original: Delivery, queuedAt: number, at = new Date()): Delivery {
  const id = retractionIdOf(original.id);
  const { data } = JSON.parse(original.body) as AlertBody;
  const body: AlertBody = {
    type: "alert.retracted",
    timestamp: at.toISOString(), // when the watch saw the alert gone
    data: { delivery: id, subscription: original.subscription, retracts: original.id, alert: data.alert },
  };
  return { ...original, id, type: "retraction", retracts: original.id, body: JSON.stringify(body), queuedAt };
}

/**
 * A shipment's history as a GS1 EPCIS 2.0 JSON-LD document: an ObjectEvent for its creation
 * (commissioning), each handoff (its CBV bizStep, disposition and read point), each tracker
 * checkpoint (sensor_reporting, with the checkpoint's min and max temperature in a
 * sensorElementList), and its delivery (receiving). Custos' own facts (custodians, the checkpoint's
 * Merkle root, the transaction) ride as extension properties in the `custos:` namespace.
 *
 * An EPC alone does not name a Custos shipment: ids belong to their creators, so two creators'
 * shipments of the same EPC are two shipments. Every event therefore carries its on-chain shipment
 * id (`custos:shipment`; a split child's events from before the split carry its pallet's), and the
 * commissioning event its creator (`custos:creator`).
 */
import type { HistoryEntry, ShipmentHistory } from "./history.js";

export const CUSTOS_NS = "https://custos.dev/epcis/";

export interface EpcisOptions {
  /** URIs of read points and locations by their on-chain id (keccak256 of the URI). */
  locations?: Record<string, string>;
  /** The document's creation time (default: now). */
  now?: Date;
}

const iso = (seconds: number) => new Date(seconds * 1000).toISOString();

/** The EPCIS 2.0 document of `h`. */
export function toEpcisDocument(h: ShipmentHistory, opts: EpcisOptions = {}) {
  const location = (id: string) => opts.locations?.[id.toLowerCase()] ?? `urn:custos:location:${id.toLowerCase()}`;
  const base = (e: HistoryEntry, time: number) => ({
    type: "ObjectEvent",
    eventTime: iso(time),
    eventTimeZoneOffset: "+00:00",
    epcList: [h.epc],
    "custos:shipment": e.shipment,
    "custos:transaction": e.txHash,
  });
  const created = h.entries.find((e) => e.kind === "created");
  const tracker = created?.kind === "created" ? created.tracker : "unknown";
  const events: Record<string, unknown>[] = [];
  for (const e of h.entries) {
    switch (e.kind) {
      case "created":
        events.push({
          ...base(e, e.time),
          action: "ADD",
          bizStep: "commissioning",
          disposition: "active",
          "custos:creator": e.creator,
          "custos:custodian": e.creator,
          "custos:receiver": e.receiver,
          "custos:tracker": e.tracker,
        });
        break;
      case "handoff":
        events.push({
          ...base(e, e.at),
          action: "OBSERVE",
          bizStep: e.bizStep,
          disposition: e.disposition,
          readPoint: { id: location(e.readPoint) },
          "custos:from": e.from,
          "custos:to": e.to,
          "custos:seq": e.seq,
        });
        break;
      case "checkpoint":
        events.push({
          ...base(e, e.at),
          action: "OBSERVE",
          bizStep: "sensor_reporting",
          disposition: "in_transit",
          readPoint: { id: location(e.location) },
          sensorElementList: [
            {
              sensorMetadata: {
                time: iso(e.at),
                deviceID: `urn:custos:device:${tracker}`,
              },
              sensorReport: [{ type: "Temperature", minValue: e.minTemp / 100, maxValue: e.maxTemp / 100, uom: "CEL" }],
            },
          ],
          "custos:readingsRoot": e.readingsRoot,
          "custos:readings": e.count,
          "custos:seq": e.seq,
        });
        break;
      case "delivered":
        events.push({
          ...base(e, e.time),
          action: "OBSERVE",
          bizStep: "receiving",
          disposition: "in_progress",
          "custos:receiver": e.receiver,
        });
        break;
      default:
        break;
    }
  }
  return {
    "@context": ["https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld", { custos: CUSTOS_NS }],
    type: "EPCISDocument",
    schemaVersion: "2.0",
    creationDate: (opts.now ?? new Date()).toISOString(),
    epcisBody: { eventList: events },
  };
}

/**
 * The tracker role: a device riding with a shipment takes readings from its sensor, keeps every raw
 * reading on disk, and periodically seals the readings since its last checkpoint into a batch whose
 * Merkle root, count, min and max it signs as a `Checkpoint` into the agent's outbox (which
 * delivers it to `CustodyLedger.checkpoint`). Any single reading can later be proven against its
 * checkpoint's root (`proof`), which is what an excursion proof and `custody:prove-reading` need.
 *
 * A shipment is named by its on-chain id (its creator's: `shipmentIdOf(creator, epc)`), never by its
 * EPC alone. It counts only checkpoints signed by the tracker key generation it pinned at creation
 * and dated (`at`, the last reading's time) no later than the end of the tracker's trust period it
 * pinned: after this tracker's key rotates, or it is reported stolen and released, its checkpoints
 * for shipments created before are refused for good (`CustodyLedgerNotTrackerKey`,
 * `CustodyLedgerTrackerNotTrusted`) — those shipments go silent — while checkpoints it sealed
 * before still land, whenever they reach the chain.
 */
import path from "node:path";
import { DurableLog } from "../../store/durableLog.js";
import { ReadingsBatch, locationId, type Reading } from "../../custody/index.js";
import type { ExcursionEvidence } from "../../custody/excursion.js";
import type { Message } from "../../eip712/index.js";
import type { Agent } from "../agent.js";

/** Where readings come from: a real sensor driver, or a simulation. */
export interface SensorSource {
  /** The temperature now, in hundredths of °C. */
  read(at: number): number | Promise<number>;
}

/**
 * A cold-chain sensor for tests and the demo: a steady temperature with a small wave, and
 * excursions at chosen times (e.g. a door left open).
 */
export class SimulatedSensor implements SensorSource {
  constructor(
    private readonly opts: {
      base: number;
      amplitude?: number;
      /** [from, to) unix seconds → temperature during it. */
      excursions?: { from: number; to: number; temp: number }[];
    },
  ) {}

  read(at: number): number {
    const hit = this.opts.excursions?.find((e) => at >= e.from && at < e.to);
    if (hit) return hit.temp;
    return Math.round(this.opts.base + (this.opts.amplitude ?? 0) * Math.sin(at / 600));
  }
}

export interface SealedCheckpoint {
  seq: number;
  /** Readings `from` (inclusive) to `to` (exclusive) of this shipment's log. */
  from: number;
  to: number;
  message: Message;
  /** The tracker key that signed it, and its signature (what an excursion proof presents). */
  key: string;
  signature: string;
}

type TrackerRecord =
  | { op: "reading"; shipment: string; at: number; temp: number }
  | {
      op: "checkpoint";
      shipment: string;
      seq: number;
      from: number;
      to: number;
      message: Record<string, string>;
      key: string;
      signature: string;
    };

export interface TrackerRoleOptions {
  /** The tracker device's agent (deployment with `custodyLedger`). */
  agent: Agent;
  sensor: SensorSource;
  dataDir: string;
  /** Where the tracker is, as a location id (keccak256 of a geo: or sgln: URI). */
  location?: () => string;
  clock?: () => number;
}

export class TrackerRole {
  private readonly log: DurableLog<TrackerRecord>;
  private readonly readings = new Map<string, Reading[]>();
  private readonly checkpoints = new Map<string, SealedCheckpoint[]>();
  private readonly clock: () => number;

  constructor(private readonly opts: TrackerRoleOptions) {
    this.clock = opts.clock ?? (() => Math.floor(Date.now() / 1000));
    this.log = DurableLog.open<TrackerRecord>(path.join(opts.dataDir, "tracker.jsonl"));
    for (const r of this.log.replayed) {
      if (r.op === "reading") this.list(r.shipment).push({ at: r.at, temp: r.temp });
      else
        this.sealedOf(r.shipment).push({
          seq: r.seq,
          from: r.from,
          to: r.to,
          message: r.message,
          key: r.key,
          signature: r.signature,
        });
    }
  }

  private list(shipment: string): Reading[] {
    const key = shipment.toLowerCase();
    let l = this.readings.get(key);
    if (!l) this.readings.set(key, (l = []));
    return l;
  }

  private sealedOf(shipment: string): SealedCheckpoint[] {
    const key = shipment.toLowerCase();
    let l = this.checkpoints.get(key);
    if (!l) this.checkpoints.set(key, (l = []));
    return l;
  }

  /** Takes one reading for `shipment` and keeps it on disk. */
  async sample(shipment: string, at = this.clock()): Promise<Reading> {
    const temp = await this.opts.sensor.read(at);
    const reading = { at, temp };
    await this.log.append({ op: "reading", shipment: shipment.toLowerCase(), ...reading });
    this.list(shipment).push(reading);
    return reading;
  }

  /** The raw readings of `shipment` kept so far. */
  rawReadings(shipment: string): readonly Reading[] {
    return this.list(shipment);
  }

  /** The checkpoints sealed for `shipment`. */
  sealed(shipment: string): readonly SealedCheckpoint[] {
    return this.sealedOf(shipment);
  }

  /**
   * Seals the readings since the last checkpoint into checkpoint `seq` (the next after the last
   * sealed, or `firstSeq`), signs it into the outbox and returns it; undefined with no new readings.
   */
  async checkpoint(shipment: string, firstSeq = 1): Promise<SealedCheckpoint | undefined> {
    const readings = this.list(shipment);
    const sealed = this.sealedOf(shipment);
    const last = sealed.at(-1);
    const from = last?.to ?? 0;
    if (from === readings.length) return undefined;
    const slice = readings.slice(from);
    const batch = new ReadingsBatch(slice);
    const seq = last ? last.seq + 1 : firstSeq;
    const fields: Message = {
      shipment: shipment.toLowerCase(),
      seq,
      readingsRoot: batch.root,
      count: batch.count,
      minTemp: batch.min,
      maxTemp: batch.max,
      location: this.opts.location?.() ?? locationId("geo:unknown"),
      at: slice[slice.length - 1].at,
    };
    const signed = await this.opts.agent.sign("Checkpoint", fields, {
      ref: `checkpoint:${shipment.toLowerCase()}:${seq}`,
    });
    const record = {
      op: "checkpoint" as const,
      shipment: shipment.toLowerCase(),
      seq,
      from,
      to: readings.length,
      message: signed.message.message as Record<string, string>,
      key: signed.message.key,
      signature: signed.message.signature,
    };
    await this.log.append(record);
    const c = { seq, from, to: readings.length, message: record.message, key: record.key, signature: record.signature };
    sealed.push(c);
    return c;
  }

  /** Reading `index` of checkpoint `seq` with its proof against that checkpoint's root. */
  proof(shipment: string, seq: number, index: number) {
    const c = this.sealedOf(shipment).find((s) => s.seq === seq);
    if (!c) throw new Error(`no checkpoint ${seq} of shipment ${shipment}`);
    const readings = this.list(shipment).slice(c.from, c.to);
    if (!(index >= 0 && index < readings.length)) throw new Error(`checkpoint ${seq} has no reading ${index}`);
    const batch = new ReadingsBatch(readings);
    return {
      checkpoint: c.message as unknown as ExcursionEvidence["checkpoint"],
      key: c.key,
      signature: c.signature,
      reading: readings[index],
      proof: batch.proof(index),
      root: batch.root,
    };
  }

  close(): Promise<void> {
    return this.log.close();
  }

  /** `proof` from a tracker's data directory, without an agent (tools reading a tracker's log). */
  static async proofFrom(dataDir: string, shipment: string, seq: number, index: number) {
    const role = new TrackerRole({ agent: undefined as never, sensor: { read: () => 0 }, dataDir });
    try {
      return role.proof(shipment, seq, index);
    } finally {
      await role.close();
    }
  }
}

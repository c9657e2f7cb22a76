/**
 * What a guardian sees of each device, read from the watch's index (Ponder's GraphQL, which the
 * watch serves beside its `/watch` routes) and turned into the policy's `DeviceObservations`.
 *
 * On chain, and so here: claims (the firmware claimed at provisioning counts as the first
 * attestation), firmware attestations and revocations, excursion proofs (`DeviceContradicted`), key
 * rotations and their provenance, and activity (claims, attestations, checkpoints, beacons, lock
 * logs) for silence. Not here, and given by `offChain` (what the guardian was told and checked,
 * `OffChainBook`): relayer refusals and vouchers (off chain), and locations — beacons are sealed
 * to owners and responders, checkpoints carry a hashed place id — from devices' signed reports.
 */
import { observationsOf, type DeviceObservations } from "../policy/index.js";

/** What a guardian knows of a device off the index. */
export type OffChainObservations = Partial<Pick<DeviceObservations, "locations" | "vouchers" | "refusals">>;

/** A device as the index has it, with what the guardian needs to decide whether to vote. */
export interface IndexedDevice {
  id: bigint;
  owner: string;
  manufacturer: string;
  guardianFlagged: boolean;
  revoked: boolean;
}

export interface FleetView {
  devices: IndexedDevice[];
  observations: Map<bigint, DeviceObservations>;
}

type Row = Record<string, unknown>;

const num = (v: unknown) => Number(v as string);

/** Reads of the index's GraphQL, paged (Ponder pages at most 1000 rows). */
export class IndexReader {
  private readonly url: string;

  constructor(watchUrl: string) {
    this.url = watchUrl.replace(/\/+$/, "") + "/graphql";
  }

  private async query(
    q: string,
  ): Promise<Record<string, { items: Row[]; pageInfo: { hasNextPage: boolean; endCursor: string | null } }>> {
    const reply = await fetch(this.url, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ query: q }),
    });
    if (!reply.ok) throw new Error(`index ${this.url}: ${reply.status} ${await reply.text()}`);
    const body = (await reply.json()) as { data?: Record<string, never>; errors?: { message: string }[] };
    if (body.errors?.length) throw new Error(`index ${this.url}: ${body.errors.map((e) => e.message).join("; ")}`);
    return body.data!;
  }

  /** Every row of `table` (its plural query), with `fields`, optionally filtered by `where` (GraphQL input). */
  async all(table: string, fields: string, where?: string): Promise<Row[]> {
    const rows: Row[] = [];
    let after: string | null = null;
    for (;;) {
      const args = [`limit: 1000`, where ? `where: ${where}` : "", after ? `after: ${JSON.stringify(after)}` : ""]
        .filter(Boolean)
        .join(", ");
      const data = await this.query(`{ ${table}(${args}) { items { ${fields} } pageInfo { hasNextPage endCursor } } }`);
      const page = data[table];
      rows.push(...page.items);
      if (!page.pageInfo.hasNextPage || !page.pageInfo.endCursor) return rows;
      after = page.pageInfo.endCursor;
    }
  }

  /**
   * The fleet the guardian watches (every claimed device the index knows, or those of `owners`) and
   * each device's observations, with what `offChain` adds of each.
   */
  async fleet(
    opts: { owners?: string[]; offChain?: (device: bigint) => OffChainObservations } = {},
  ): Promise<FleetView> {
    const ownerFilter = opts.owners?.length
      ? `{ owner_in: ${JSON.stringify(opts.owners.map((o) => o.toLowerCase()))} }`
      : undefined;
    const [devices, batches, claims, attested, revoked, marks, keys, beacons, checkpoints, shipments, logs] =
      await Promise.all([
        this.all("devices", "id owner batchId firmwareHash guardianFlagged revoked", ownerFilter),
        this.all("batchs", "id manufacturer"),
        this.all("deviceStatusChanges", "deviceId txHash blockNumber timestamp", `{ cause: "DeviceClaimed" }`),
        this.all("firmwareAttestations", "deviceId firmwareHash txHash blockNumber timestamp"),
        this.all("firmwareRevocations", "manufacturer firmwareHash txHash blockNumber timestamp"),
        this.all(
          "shipmentMarks",
          "shipmentId data txHash blockNumber timestamp",
          `{ kind: "shipment.excursion_proven" }`,
        ),
        this.all("deviceKeys", "deviceId attested source txHash blockNumber timestamp", `{ source: "rotation" }`),
        this.all("locationBeacons", "deviceId timestamp"),
        this.all("checkpoints", "shipmentId timestamp"),
        this.all("shipments", "id tracker"),
        this.all("lockLogBatchs", "lockId timestamp"),
      ]);
    const manufacturerOf = new Map(batches.map((b) => [String(b.id), String(b.manufacturer).toLowerCase()]));
    const trackerOf = new Map(shipments.map((s) => [String(s.id).toLowerCase(), BigInt(s.tracker as string)]));
    // The index keeps the claim's block in `device.claimedAt`; its time is the claim event's.
    const claimedAt = new Map<string, number>();
    for (const c of claims) {
      const prior = claimedAt.get(String(c.deviceId));
      if (prior === undefined || num(c.timestamp) > prior) claimedAt.set(String(c.deviceId), num(c.timestamp));
    }
    const view: FleetView = { devices: [], observations: new Map() };
    for (const d of devices) {
      const claimed = claimedAt.get(String(d.id));
      if (claimed === undefined) continue; // not claimed (yet, in the index)
      const id = BigInt(d.id as string);
      const manufacturer = manufacturerOf.get(String(d.batchId)) ?? "";
      view.devices.push({
        id,
        owner: String(d.owner).toLowerCase(),
        manufacturer,
        guardianFlagged: Boolean(d.guardianFlagged),
        revoked: Boolean(d.revoked),
      });
      const told = opts.offChain?.(id) ?? {};
      // A signed position report or a new voucher is the device at work (a refusal may be a replay).
      const lastTold = Math.max(
        0,
        ...(told.locations ?? []).map((l) => l.at),
        ...(told.vouchers ?? []).map((v) => v.at),
      );
      view.observations.set(
        id,
        observationsOf(id, {
          // A fleet is its owner's devices: a policy scope names the owner's address as its fleet.
          fleet: String(d.owner).toLowerCase(),
          manufacturer,
          firstSeenAt: claimed,
          lastSeenAt: Math.max(claimed, lastTold),
          ...told,
        }),
      );
    }
    const obsOf = (device: unknown) => view.observations.get(BigInt(device as string));
    const seen = (o: DeviceObservations | undefined, at: number) => {
      if (o) o.lastSeenAt = Math.max(o.lastSeenAt ?? 0, at);
    };
    const onChain = (r: Row) => ({ txHash: String(r.txHash), blockNumber: num(r.blockNumber), at: num(r.timestamp) });
    const claimedFirmware = new Map(devices.map((d) => [String(d.id), d.firmwareHash as string | null]));
    for (const c of claims) {
      const o = obsOf(c.deviceId);
      const firmwareHash = claimedFirmware.get(String(c.deviceId));
      if (o && firmwareHash) o.firmware.push({ ...onChain(c), firmwareHash });
    }
    for (const a of attested) {
      const o = obsOf(a.deviceId);
      if (!o) continue;
      o.firmware.push({ ...onChain(a), firmwareHash: String(a.firmwareHash) });
      seen(o, num(a.timestamp));
    }
    for (const o of view.observations.values()) {
      o.revokedFirmware = revoked
        .filter((r) => String(r.manufacturer).toLowerCase() === o.manufacturer)
        .map((r) => ({ ...onChain(r), firmwareHash: String(r.firmwareHash) }));
    }
    for (const m of marks) {
      const tracker = (m.data as { tracker?: string }).tracker;
      const o = tracker === undefined ? undefined : obsOf(tracker);
      if (o) o.excursions.push({ ...onChain(m), shipment: String(m.shipmentId) });
    }
    for (const k of keys) {
      const o = obsOf(k.deviceId);
      if (o) o.rotations.push({ ...onChain(k), provenance: Boolean(k.attested) });
    }
    for (const b of beacons) seen(obsOf(b.deviceId), num(b.timestamp));
    for (const c of checkpoints) {
      const tracker = trackerOf.get(String(c.shipmentId).toLowerCase());
      if (tracker !== undefined) seen(view.observations.get(tracker), num(c.timestamp));
    }
    for (const l of logs) seen(obsOf(l.lockId), num(l.timestamp));
    // The rules read these lists in time order.
    for (const o of view.observations.values()) {
      for (const list of [o.firmware, o.revokedFirmware, o.excursions, o.rotations] as {
        at: number;
        blockNumber: number;
      }[][])
        list.sort((a, b) => a.at - b.at || a.blockNumber - b.blockNumber);
    }
    return view;
  }
}

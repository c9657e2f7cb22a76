/**
 * Typed reads of the indexer's `/watch` routes, and the {@link AlertFeed} the dispatcher and the
 * watchtower read alerts from. The answer types are the API's own (inferred from its views), so a
 * change there is a type error here.
 */
import type { Alert, AlertFeed } from "../alerts.js";
import type { Freshness } from "./src/api/freshness.js";
import type { channelView, deviceView, fleetOf, lockView, shipmentView } from "./src/api/views.js";

/** How fresh an answer is: the block the index reached, the chain head, and the lag between them. */
export interface IndexStatus {
  chainId: number;
  indexedBlock: bigint;
  headBlock: bigint;
  lagBlocks: number;
}

type View<F extends (...args: never[]) => Promise<unknown>> = NonNullable<Awaited<ReturnType<F>>> & Freshness;

export type DeviceAnswer = View<typeof deviceView>;
export type FleetAnswer = View<typeof fleetOf>;
export type ShipmentAnswer = View<typeof shipmentView>;
export type ChannelAnswer = View<typeof channelView>;
export type LockAnswer = View<typeof lockView>;

export class IndexClient implements AlertFeed {
  readonly url: string;

  constructor(url: string) {
    this.url = url.replace(/\/+$/, "");
  }

  private async get<T>(route: string, orNull: boolean): Promise<T | null> {
    const reply = await fetch(`${this.url}${route}`);
    if (reply.status === 404 && orNull) return null;
    if (!reply.ok) throw new Error(`indexer ${route}: ${reply.status} ${await reply.text()}`);
    return (await reply.json()) as T;
  }

  async status(): Promise<IndexStatus> {
    const s = (await this.get<Freshness>("/watch/status", false))!;
    return {
      chainId: s.chainId,
      indexedBlock: BigInt(s.indexedBlock),
      headBlock: BigInt(s.headBlock),
      lagBlocks: s.lagBlocks,
    };
  }

  async alertsFrom(fromBlock: bigint): Promise<{ indexedBlock: bigint; alerts: Alert[] }> {
    const a = (await this.get<{ indexedBlock: string; alerts: Alert[] }>(
      `/watch/alerts?fromBlock=${fromBlock}`,
      false,
    ))!;
    return { indexedBlock: BigInt(a.indexedBlock), alerts: a.alerts };
  }

  /** A device, its batch, status history, keys (with provenance), transfers, guardian votes and beacons; null if unknown. */
  device(id: bigint | string): Promise<DeviceAnswer | null> {
    return this.get(`/watch/devices/${id}`, true);
  }

  /**
   * One page of `owner`'s devices, ordered by id, with the total: those after device `after` (the
   * last id of the previous page: cheap however deep), or else from `offset`.
   */
  async fleet(
    owner: string,
    opts: { limit?: number; offset?: number; after?: bigint | string } = {},
  ): Promise<FleetAnswer> {
    const q = `limit=${opts.limit ?? 100}&offset=${opts.offset ?? 0}${opts.after === undefined ? "" : `&after=${opts.after}`}`;
    return (await this.get<FleetAnswer>(`/watch/owners/${owner}/devices?${q}`, false))!;
  }

  /** A shipment with its handoffs, checkpoints, marks and children; null if unknown. */
  shipment(id: string): Promise<ShipmentAnswer | null> {
    return this.get(`/watch/shipments/${id}`, true);
  }

  channel(id: string): Promise<ChannelAnswer | null> {
    return this.get(`/watch/channels/${id}`, true);
  }

  lock(id: bigint | string): Promise<LockAnswer | null> {
    return this.get(`/watch/locks/${id}`, true);
  }
}

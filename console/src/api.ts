/**
 * The watch's JSON API (src/watch/indexer/README.md): what the indexer says. Nothing read here is
 * trusted; the pages re-check it against the chain (verify.ts).
 */
export interface Freshness {
  chainId?: number;
  indexedBlock: number;
  headBlock: number;
  lagBlocks: number;
}

export type Row = Record<string, string | number | boolean | null>;

export interface DeviceView extends Freshness {
  device: Row & { id: string; owner: string; status: string; effectiveStatus: string; batchId: string | null };
  batch: Row | null;
  statusHistory: Row[];
  keys: Row[];
  transfers: Row[];
  guardianVotes: Row[];
  locationBeacons: (Row & { recipients: string; ciphertext: string; at: string; deviceId: string })[];
}

export interface FleetView extends Freshness {
  owner: string;
  total: number;
  limit: number;
  offset: number;
  devices: DeviceView["device"][];
}

export interface ShipmentView extends Freshness {
  shipment: Row;
  handoffs: Row[];
  checkpoints: Row[];
  marks: (Row & { kind: string; data: Record<string, unknown> })[];
  children: string[];
}

export interface LockView extends Freshness {
  lock: Row;
  owner: string | null;
  ownerEpoch: number | null;
  revocations: Row[];
  epochs: Row[];
  managers: Row[];
  logBatches: Row[];
}

export interface ChannelView extends Freshness {
  channel: Row;
  events: (Row & { data?: Record<string, unknown> })[];
}

export interface AlertRow {
  id: string;
  kind: string;
  blockNumber: string;
  txHash: string;
  timestamp: number;
  subjects: { owners?: string[]; device?: string; shipment?: string; channel?: string; lock?: string };
  data: Record<string, unknown>;
}

/** An answer the watch refused, with its own message (a 404 is "not in the index as of block N"). */
export class WatchError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export async function watchGet<T>(base: string, path: string): Promise<T> {
  let res: Response;
  try {
    res = await fetch(`${base}${path}`);
  } catch (e) {
    throw new WatchError(0, `the watch at ${base || location.origin} does not answer (${(e as Error).message})`);
  }
  const body = (await res.json().catch(() => ({}))) as T & { error?: string };
  if (!res.ok) throw new WatchError(res.status, body.error ?? `the watch answered ${res.status}`);
  return body;
}

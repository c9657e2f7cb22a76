/**
 * What the relayer reads from the chain, cached so that intake rarely waits for the node: per key
 * (device, status, availability), per device (nonce, and beacon nonce), per batch, per
 * forward-request signer (nonce), per verifier. The head is polled; each new block's registry,
 * LocationBeacons and forwarder logs invalidate exactly the devices, keys and signers they touch (a
 * batch or verifier change, an unknown event, a reorg or a long gap invalidates everything). Reads
 * are deduplicated while in flight.
 */
import { JsonRpcProvider } from "ethers";
import type { FastifyBaseLogger } from "fastify";
import { deviceIdOf } from "../registry/batch.js";
import { deviceByKey } from "../registry/lookup.js";
import {
  CustodyLedger__factory,
  DeviceRegistry__factory,
  ERC2771Forwarder__factory,
  LocationBeacons__factory,
  LockAccess__factory,
  PaymentChannels__factory,
  type CustodyLedger,
  type DeviceRegistry,
  type ERC2771Forwarder,
  type LocationBeacons,
  type LockAccess,
  type PaymentChannels,
} from "../../typechain-types/index.js";

/** The suite's contracts besides the registry, forwarder and beacons, when the relayer delivers to them. */
export interface OtherContracts {
  lockAccess?: string;
  paymentChannels?: string;
  custodyLedger?: string;
}

/** What the relayer reads of a shipment: its tracker and how far its checkpoints went. */
export interface ShipmentState {
  /** 0 when there is no such shipment. */
  tracker: bigint;
  checkpointSeq: bigint;
  delivered: boolean;
}

/** What the relayer reads of a payment channel. */
export interface ChannelState {
  /** 0 when the channel is not open. */
  deposit: bigint;
  paid: bigint;
}

export enum DeviceStatus {
  Unknown = 0,
  Active = 1,
  Quarantined = 2,
  Revoked = 3,
}
export const STATUS_NAMES = ["Unknown", "Active", "Quarantined", "Revoked"] as const;

export interface DeviceRef {
  id: bigint;
  owner: string;
  status: DeviceStatus;
}

/** The parts of a log the relayer reads. */
export interface RawLog {
  address: string;
  topics: readonly string[];
  data: string;
  transactionHash?: string | null;
}

export interface BatchInfo {
  root: string;
  status: number; // 0 none, 1 active, 2 quarantined, 3 revoked
}

/**
 * Registry events whose first indexed topic is the device id they change: its status, key, key
 * provenance, or nonce (which also moves when a new trust period starts: TrustPeriodEnded, at a
 * release, a guardian clear or a rotation). Guardians' votes are the GuardianQuorum contract's; only
 * a vote that reaches the quorum changes the device (GuardianFlagged, GuardianCleared).
 */
const DEVICE_EVENTS = [
  "DeviceClaimed",
  "ReportedStolen",
  "Released",
  "GuardianFlagged",
  "GuardianCleared",
  "DeviceRevoked",
  "KeyRotated",
  "KeyAttested",
  "TrustPeriodEnded",
  "FirmwareAttested",
  "NonceCancelled",
] as const;
/** Registry events of device messages that change only the device's nonce. */
const NONCE_EVENTS = ["FirmwareAttested", "NonceCancelled"] as const;
/** Registry events that change nothing the relayer reads. */
const HARMLESS_EVENTS = [
  "Transfer",
  "Approval",
  "ApprovalForAll",
  "RoleGranted",
  "RoleRevoked",
  "RoleAdminChanged",
  "FirmwareRevoked",
] as const;

const MAX_LOG_RANGE = 500;

export class ChainView {
  readonly registryContract: DeviceRegistry;
  readonly forwarderContract: ERC2771Forwarder;
  /** LocationBeacons, when the relayer delivers beacons. */
  readonly beaconsContract: LocationBeacons | undefined;
  readonly lockContract: LockAccess | undefined;
  readonly channelsContract: PaymentChannels | undefined;
  readonly custodyContract: CustodyLedger | undefined;
  latestBlock = 0;
  private latestTimestamp = 0;
  private readonly cache = new Map<string, Promise<unknown>>();
  /** Resolved values of the cache entries. */
  private readonly values = new Map<string, unknown>();
  private readonly nonceTopics = new Set<string>();
  /** The relayer's own batch transactions, whose nonce events it applies itself (exactly, from its receipts). */
  private readonly ownTxs = new Set<string>();
  private readonly index = new Map<string, Set<string>>();
  private readonly deviceTopics = new Set<string>();
  private readonly harmlessTopics = new Set<string>();
  private readonly keyRotatedTopic: string;
  private readonly executedTopic: string;
  /** LocationBeaconPosted: moves the device's beacon nonce (the beacons' only event). */
  private readonly beaconPostedTopic: string;
  private timer: NodeJS.Timeout | undefined;
  private polling = false;
  private readonly blockListeners = new Set<(block: number) => void>();
  private lastPollError = 0;
  healthy = true;

  constructor(
    readonly provider: JsonRpcProvider,
    readonly registry: string,
    readonly forwarder: string,
    private readonly pollIntervalMs: number,
    private readonly log: FastifyBaseLogger,
    readonly beacons?: string,
    readonly others: OtherContracts = {},
  ) {
    this.registryContract = DeviceRegistry__factory.connect(registry, provider);
    this.lockContract = others.lockAccess ? LockAccess__factory.connect(others.lockAccess, provider) : undefined;
    this.channelsContract = others.paymentChannels
      ? PaymentChannels__factory.connect(others.paymentChannels, provider)
      : undefined;
    this.custodyContract = others.custodyLedger
      ? CustodyLedger__factory.connect(others.custodyLedger, provider)
      : undefined;
    this.forwarderContract = ERC2771Forwarder__factory.connect(forwarder, provider);
    this.beaconsContract = beacons ? LocationBeacons__factory.connect(beacons, provider) : undefined;
    this.beaconPostedTopic = LocationBeacons__factory.createInterface().getEvent("LocationBeaconPosted").topicHash;
    const ri = this.registryContract.interface;
    for (const e of DEVICE_EVENTS) this.deviceTopics.add(ri.getEvent(e).topicHash);
    for (const e of HARMLESS_EVENTS) this.harmlessTopics.add(ri.getEvent(e).topicHash);
    for (const e of NONCE_EVENTS) this.nonceTopics.add(ri.getEvent(e).topicHash);
    this.keyRotatedTopic = ri.getEvent("KeyRotated").topicHash;
    this.executedTopic = this.forwarderContract.interface.getEvent("ExecutedForwardRequest").topicHash;
  }

  async start(): Promise<void> {
    const head = await this.provider.getBlock("latest");
    if (!head) throw new Error("relayer: the node returned no latest block");
    this.latestBlock = head.number;
    this.latestTimestamp = head.timestamp;
    const tick = () => {
      this.timer = setTimeout(() => void this.poll().finally(() => this.timer && tick()), this.pollIntervalMs);
    };
    tick();
  }

  stop(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  onBlock(listener: (block: number) => void): () => void {
    this.blockListeners.add(listener);
    return () => this.blockListeners.delete(listener);
  }

  /** Seconds: the later of the wall clock and the latest block's timestamp. */
  now(): bigint {
    return BigInt(Math.max(Math.floor(Date.now() / 1000), this.latestTimestamp));
  }

  // ------------------------------------------------------------------ cached reads

  /** The device a key currently belongs to (id 0 and Unknown when none). */
  deviceByKey(key: string): Promise<DeviceRef> {
    const k = key.toLowerCase();
    return this.cached(
      `key:${k}`,
      () => [`d:${deviceIdOf(k)}`],
      async () => {
        const ref = await deviceByKey(this.registryContract, k);
        const result: DeviceRef = { id: ref.id, owner: ref.owner, status: Number(ref.status) as DeviceStatus };
        if (result.id !== 0n) this.addIndex(`d:${result.id}`, `key:${k}`);
        return result;
      },
    );
  }

  deviceNonce(device: bigint): Promise<bigint> {
    return this.cached(
      `nonce:${device}`,
      () => [`d:${device}`],
      async () => BigInt(await this.registryContract.deviceNonce(device)),
    );
  }

  /** The nonce device `device`'s next location beacon must carry (LocationBeacons' own sequence). */
  beaconNonce(device: bigint): Promise<bigint> {
    const beacons = this.beaconsContract;
    if (!beacons) return Promise.reject(new Error("relayer: no LocationBeacons address is configured"));
    return this.cached(
      `bnonce:${device}`,
      () => [`b:${device}`],
      async () => BigInt(await beacons.beaconNonce(device)),
    );
  }

  keyAvailable(key: string): Promise<boolean> {
    const k = key.toLowerCase();
    return this.cached(
      `avail:${k}`,
      () => [`d:${deviceIdOf(k)}`],
      () => this.registryContract.isKeyAvailable(k),
    );
  }

  batch(batchId: bigint): Promise<BatchInfo> {
    return this.cached(
      `batch:${batchId}`,
      () => ["batches"],
      async () => {
        const b = await this.registryContract.batch(batchId);
        return { root: b.root, status: Number(b.status) };
      },
    );
  }

  forwardNonce(from: string): Promise<bigint> {
    const f = from.toLowerCase();
    return this.cached(
      `fwd:${f}`,
      () => [`f:${f}`],
      () => this.forwarderContract.nonces(f),
    );
  }

  isKeyVerifier(verifier: string): Promise<boolean> {
    const v = verifier.toLowerCase();
    return this.cached(
      `verifier:${v}`,
      () => ["verifiers"],
      () => this.registryContract.isKeyVerifier(v),
    );
  }

  // ------------------------------------------------------------------ uncached reads
  // Locks' logs, checkpoints and vouchers come at a slow pace (batched logs, periodic checkpoints,
  // the highest voucher only): read fresh each time rather than follow those contracts' events.

  /** The sequence number lock `lock`'s next unlock-log batch must carry (its last anchored + 1). */
  async lockNextSeq(lock: bigint): Promise<bigint> {
    if (!this.lockContract) throw new Error("relayer: no LockAccess address is configured");
    return BigInt((await this.lockContract.lockState(lock)).logSeq) + 1n;
  }

  async shipment(shipment: string): Promise<ShipmentState> {
    if (!this.custodyContract) throw new Error("relayer: no CustodyLedger address is configured");
    const s = await this.custodyContract.shipmentOf(shipment);
    return { tracker: BigInt(s.tracker), checkpointSeq: BigInt(s.checkpointSeq), delivered: s.delivered };
  }

  async channel(channel: string): Promise<ChannelState> {
    if (!this.channelsContract) throw new Error("relayer: no PaymentChannels address is configured");
    const c = await this.channelsContract.channelState(channel);
    return { deposit: BigInt(c.deposit), paid: BigInt(c.paid) };
  }

  // ------------------------------------------------------------------ invalidation

  invalidateDevice(device: bigint): void {
    this.drop(`d:${device}`);
  }

  /** Drops the cached beacon nonce of `device`. */
  invalidateBeaconNonce(device: bigint): void {
    this.drop(`b:${device}`);
  }

  invalidateSigner(from: string): void {
    this.drop(`f:${from.toLowerCase()}`);
  }

  invalidateAll(): void {
    this.cache.clear();
    this.values.clear();
    this.index.clear();
  }

  /** Registers one of the relayer's own transactions before it is broadcast (see {@link applyOwnReceipt}). */
  markOwnTx(hash: string): void {
    this.ownTxs.add(hash.toLowerCase());
    if (this.ownTxs.size > 1024) this.ownTxs.delete(this.ownTxs.values().next().value!);
  }

  /**
   * Applies the receipt of one of the relayer's own device batches: the nonces of its lanes are
   * known exactly (`next`, by lane: `d:<device>` a device nonce, `b:<device>` a beacon nonce), so
   * cached nonces are moved on instead of dropped — no refetch storm after every batch. A cached
   * value is never lowered (nonces only grow), and a device that another transaction touched
   * meanwhile was dropped by its own log and is simply read again.
   */
  applyOwnReceipt(logs: readonly RawLog[], next: ReadonlyMap<string, bigint>): void {
    const mine = (l: RawLog) => {
      const lane = this.ownNonceLane(l);
      return lane !== undefined && next.has(lane);
    };
    this.applyLogs(
      logs.filter((l) => !mine(l)),
      true,
    );
    for (const [lane, nonce] of next) {
      if (!lane.startsWith("d:") && !lane.startsWith("b:")) continue; // other lanes are read fresh
      const device = lane.slice(2);
      const key = lane.startsWith("b:") ? `bnonce:${device}` : `nonce:${device}`;
      const value = this.values.get(key) as bigint | undefined;
      if (value === undefined || !this.cache.has(key)) continue;
      const moved = value > nonce ? value : nonce;
      this.values.set(key, moved);
      this.cache.set(key, Promise.resolve(moved));
    }
  }

  /**
   * The lane whose nonce a log of a device message moves (`d:<device>` for the registry's nonce
   * events, `b:<device>` for a posted beacon), or undefined for any other log.
   */
  private ownNonceLane(log: RawLog): string | undefined {
    const address = log.address.toLowerCase();
    const topic = log.topics[0];
    if (address === this.registry.toLowerCase() && this.nonceTopics.has(topic)) return `d:${BigInt(log.topics[1])}`;
    if (this.beacons && address === this.beacons.toLowerCase() && topic === this.beaconPostedTopic)
      return `b:${BigInt(log.topics[1])}`;
    return undefined;
  }

  /** Invalidates what `logs` (of the registry, LocationBeacons and the forwarder) changed. */
  applyLogs(logs: readonly RawLog[], own = false): void {
    const registry = this.registry.toLowerCase();
    const forwarder = this.forwarder.toLowerCase();
    const beacons = this.beacons?.toLowerCase();
    for (const log of logs) {
      const address = log.address.toLowerCase();
      const topic = log.topics[0];
      // The nonce events of the relayer's own batches are applied from their receipts.
      if (!own && this.ownNonceLane(log) !== undefined && this.ownTxs.has(String(log.transactionHash).toLowerCase()))
        continue;
      if (address === beacons) {
        // A beacon moves its device's beacon nonce; anything else of the beacons changes nothing read here.
        if (topic === this.beaconPostedTopic) this.invalidateBeaconNonce(BigInt(log.topics[1]));
      } else if (address === forwarder) {
        if (topic === this.executedTopic) this.invalidateSigner("0x" + log.topics[1].slice(26));
      } else if (address === registry) {
        if (this.deviceTopics.has(topic)) {
          this.invalidateDevice(BigInt(log.topics[1]));
          if (topic === this.keyRotatedTopic) {
            const parsed = this.registryContract.interface.parseLog({ topics: [...log.topics], data: log.data });
            const newKey = String(parsed?.args.newKey ?? "").toLowerCase();
            for (const k of [`key:${newKey}`, `avail:${newKey}`]) {
              this.cache.delete(k);
              this.values.delete(k);
            }
          }
        } else if (!this.harmlessTopics.has(topic)) {
          // BatchCommitted, BatchStatusChanged, KeyVerifierSet or anything new: start over.
          this.invalidateAll();
        }
      }
    }
  }

  /** Polls the head once; on new blocks, applies their logs and tells the listeners. */
  async poll(): Promise<void> {
    if (this.polling) return;
    this.polling = true;
    try {
      const head = await this.provider.getBlockNumber();
      if (head < this.latestBlock) {
        this.log.warn({ event: "reorg", from: this.latestBlock, to: head }, "chain head went back: cache cleared");
        this.invalidateAll();
        this.latestBlock = head;
      } else if (head > this.latestBlock) {
        if (head - this.latestBlock > MAX_LOG_RANGE) {
          this.invalidateAll();
        } else {
          const logs = await this.provider.getLogs({
            address: [this.registry, this.forwarder, ...(this.beacons ? [this.beacons] : [])],
            fromBlock: this.latestBlock + 1,
            toBlock: head,
          });
          this.applyLogs(logs);
        }
        const block = await this.provider.getBlock(head);
        if (block) this.latestTimestamp = Math.max(this.latestTimestamp, block.timestamp);
        this.latestBlock = head;
        for (const listener of this.blockListeners) listener(head);
      }
      if (!this.healthy) this.log.info({ event: "rpc_up" }, "the node answers again");
      this.healthy = true;
    } catch (err) {
      this.healthy = false;
      this.invalidateAll();
      if (Date.now() - this.lastPollError > 5_000) {
        this.lastPollError = Date.now();
        this.log.warn({ event: "rpc_down", err: (err as Error).message }, "cannot poll the node");
      }
    } finally {
      this.polling = false;
    }
  }

  /** Notes a block the relayer saw in one of its own receipts (with that receipt's logs). */
  noteReceipt(blockNumber: number, logs: readonly RawLog[]): void {
    this.applyLogs(logs);
    if (blockNumber > this.latestBlock + MAX_LOG_RANGE) this.invalidateAll();
  }

  private cached<T>(key: string, groups: () => string[], fetch: () => Promise<T>): Promise<T> {
    const hit = this.cache.get(key) as Promise<T> | undefined;
    if (hit) return hit;
    const p = fetch();
    this.cache.set(key, p);
    for (const g of groups()) this.addIndex(g, key);
    p.then(
      (value) => {
        if (this.cache.get(key) === p) this.values.set(key, value);
      },
      () => {
        if (this.cache.get(key) === p) this.cache.delete(key);
      },
    );
    return p;
  }

  private addIndex(group: string, key: string): void {
    let set = this.index.get(group);
    if (!set) this.index.set(group, (set = new Set()));
    set.add(key);
  }

  private drop(group: string): void {
    const keys = this.index.get(group);
    if (!keys) return;
    for (const k of keys) {
      this.cache.delete(k);
      this.values.delete(k);
    }
    this.index.delete(group);
  }
}

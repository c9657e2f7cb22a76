/**
 * Reads what a lock needs to decide from the chain: its owner and ownership period, its own status
 * and key provenance, its key epoch, the keys revoked and the managers appointed in the current
 * ownership period, and the status of every holder it has met. Events are read incrementally (from
 * `fromBlock`, then only new blocks), so a sync costs a handful of calls however long the lock has
 * lived. Everything is read at one block, from the same views the contracts use (`ownership`,
 * `deviceTrust`, `resolveKey`, `lockState`, `managerExpiry`), so the lock accepts what the chain does.
 */
import type { Provider } from "ethers";
import { DeviceRegistry__factory, LockAccess__factory } from "../../../typechain-types/index.js";
import type { LockChainState } from "./lock.js";
import { deviceByKey } from "../../registry/lookup.js";

export interface LockChainReaderOptions {
  provider: Provider;
  registry: string;
  lockAccess: string;
  lock: bigint;
  /** First block to read events from (the deployment's block). Default 0. */
  fromBlock?: number;
  /** The lock's clock (s): stamps `readAt`. */
  clock: () => number;
}

/** What LockAccess holds for one ownership period of the lock (the registry's ownership epoch). */
interface PeriodView {
  revoked: Set<bigint>;
  managers: Set<string>;
}

export class LockChainReader {
  private readonly registry;
  private readonly locks;
  private scannedTo: number;
  private readonly byPeriod = new Map<number, PeriodView>();
  private readonly holders = new Map<string, number>();

  constructor(private readonly opts: LockChainReaderOptions) {
    this.registry = DeviceRegistry__factory.connect(opts.registry, opts.provider);
    this.locks = LockAccess__factory.connect(opts.lockAccess, opts.provider);
    this.scannedTo = (opts.fromBlock ?? 0) - 1;
  }

  private view(ownerEpoch: number): PeriodView {
    let v = this.byPeriod.get(ownerEpoch);
    if (!v) this.byPeriod.set(ownerEpoch, (v = { revoked: new Set(), managers: new Set() }));
    return v;
  }

  /** The registry status of a holder key (0: not a device); remembered for later syncs. */
  async lookupHolder(holder: string): Promise<number> {
    const ref = await deviceByKey(this.registry, holder);
    const status = Number(ref.status);
    this.holders.set(holder.toLowerCase(), status);
    return status;
  }

  /** A fresh snapshot of the lock's chain state. */
  async read(): Promise<LockChainState> {
    const { lock } = this.opts;
    const latest = await this.opts.provider.getBlockNumber();
    if (latest > this.scannedTo) {
      const from = this.scannedTo + 1;
      const [revoked, appointed] = await Promise.all([
        this.locks.queryFilter(this.locks.filters.KeyRevoked(lock), from, latest),
        this.locks.queryFilter(this.locks.filters.ManagerAppointed(lock), from, latest),
      ]);
      for (const e of revoked) this.view(Number(e.args.ownerEpoch)).revoked.add(BigInt(e.args.keyId));
      for (const e of appointed) this.view(Number(e.args.ownerEpoch)).managers.add(e.args.manager.toLowerCase());
      this.scannedTo = latest;
    }
    const blockTag = this.scannedTo;
    const [[owner, ownerEpochRaw], trust, state] = await Promise.all([
      this.registry.ownership(lock, { blockTag }),
      this.registry.deviceTrust(lock, { blockTag }),
      this.locks.lockState(lock, { blockTag }),
    ]);
    const ownerEpoch = Number(ownerEpochRaw);
    const mine = this.view(ownerEpoch);
    const managers = new Map<string, bigint>();
    await Promise.all(
      [...mine.managers].map(async (m) =>
        managers.set(m, BigInt(await this.locks.managerExpiry(lock, ownerEpoch, m, { blockTag }))),
      ),
    );
    await Promise.all([...this.holders.keys()].map((h) => this.lookupHolder(h)));
    const holders = new Map(this.holders);
    const revoked = new Set(mine.revoked);
    return {
      owner: owner.toLowerCase(),
      lockStatus: Number(trust.status),
      keyAttested: trust.keyAttested,
      epoch: Number(state.epoch),
      isRevoked: (keyId) => revoked.has(keyId),
      managerExpiry: (m) => managers.get(m.toLowerCase()) ?? 0n,
      holderStatus: (h) => this.holders.get(h.toLowerCase()) ?? holders.get(h.toLowerCase()),
      readAt: this.opts.clock(),
    };
  }

  /** The key ids revoked in ownership period `ownerEpoch` (as of the last read), ascending. */
  revokedIds(ownerEpoch: number): bigint[] {
    return [...this.view(ownerEpoch).revoked].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  }

  /** The sequence number of the lock's last anchored log batch (0: none); the next one carries it + 1. */
  async logSeq(): Promise<number> {
    return Number((await this.locks.lockState(this.opts.lock)).logSeq);
  }
}

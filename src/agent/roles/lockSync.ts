/**
 * Reads what a lock needs to decide from the chain: its owner and since when, its own status, its
 * key epoch, the keys revoked and the managers appointed under the current owner, and the status of
 * every holder it has met. Events are read incrementally (from `fromBlock`, then only new blocks),
 * so a sync costs a handful of calls however long the lock has lived.
 */
import type { Provider } from "ethers";
import { DeviceRegistry__factory, LockAccess__factory } from "../../../typechain-types";
import type { LockChainState } from "./lock";
import { deviceById, deviceByKey } from "../../registry/lookup";

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

interface OwnerView {
  revoked: Set<bigint>;
  managers: Set<string>;
}

export class LockChainReader {
  private readonly registry;
  private readonly locks;
  private scannedTo: number;
  private readonly byOwner = new Map<string, OwnerView>();
  /** When the lock last changed hands (block timestamp), from Transfer events. */
  private ownerSince = 0n;
  private readonly holders = new Map<string, number>();

  constructor(private readonly opts: LockChainReaderOptions) {
    this.registry = DeviceRegistry__factory.connect(opts.registry, opts.provider);
    this.locks = LockAccess__factory.connect(opts.lockAccess, opts.provider);
    this.scannedTo = (opts.fromBlock ?? 0) - 1;
  }

  private view(owner: string): OwnerView {
    const key = owner.toLowerCase();
    let v = this.byOwner.get(key);
    if (!v) this.byOwner.set(key, (v = { revoked: new Set(), managers: new Set() }));
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
      const [transfers, revoked, appointed] = await Promise.all([
        this.registry.queryFilter(this.registry.filters.Transfer(undefined, undefined, lock), from, latest),
        this.locks.queryFilter(this.locks.filters.KeyRevoked(lock), from, latest),
        this.locks.queryFilter(this.locks.filters.ManagerAppointed(lock), from, latest),
      ]);
      for (const e of revoked) this.view(e.args.owner).revoked.add(BigInt(e.args.keyId));
      for (const e of appointed) this.view(e.args.owner).managers.add(e.args.manager.toLowerCase());
      const last = transfers.at(-1);
      if (last) this.ownerSince = BigInt((await last.getBlock()).timestamp);
      this.scannedTo = latest;
    }
    const blockTag = this.scannedTo;
    const [ref, state] = await Promise.all([
      deviceById(this.registry, lock, blockTag),
      this.locks.lockState(lock, { blockTag }),
    ]);
    const owner = ref.owner.toLowerCase();
    const mine = this.view(owner);
    const managers = new Map<string, bigint>();
    await Promise.all(
      [...mine.managers].map(async (m) =>
        managers.set(m, BigInt(await this.locks.managerExpiry(lock, owner, m, { blockTag }))),
      ),
    );
    await Promise.all([...this.holders.keys()].map((h) => this.lookupHolder(h)));
    const holders = new Map(this.holders);
    const revoked = new Set(mine.revoked);
    return {
      owner,
      ownerSince: this.ownerSince,
      lockStatus: Number(ref.status),
      epoch: Number(state.epoch),
      isRevoked: (o, keyId) => o.toLowerCase() === owner && revoked.has(keyId),
      managerExpiry: (o, m) => (o.toLowerCase() === owner ? (managers.get(m.toLowerCase()) ?? 0n) : 0n),
      holderStatus: (h) => this.holders.get(h.toLowerCase()) ?? holders.get(h.toLowerCase()),
      readAt: this.opts.clock(),
    };
  }

  /** The key ids revoked under the lock's current owner (as of the last read), ascending. */
  revokedIds(owner: string): bigint[] {
    return [...this.view(owner).revoked].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  }

  /** The sequence number of the lock's last anchored log batch (0: none); the next one carries it + 1. */
  async logSeq(): Promise<number> {
    return Number((await this.locks.lockState(this.opts.lock)).logSeq);
  }
}

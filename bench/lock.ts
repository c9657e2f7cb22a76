/** LockAccess operations, each in the situation its budget names. */
import { ethers } from "hardhat";
import { Wallet, id as labelHash } from "ethers";
import { deployLocks, logBatch } from "../test/helpers/lock";
import type { GasRecorder } from "./lib";

export async function benchLock(gas: GasRecorder): Promise<void> {
  const ctx = await deployLocks();
  const { locks, owner, lockKeys, lockIds } = ctx;
  const [lock, freshLock] = lockIds;
  const manager = new Wallet(labelHash("bench lock manager")).address;
  const expiry = BigInt((await ethers.provider.getBlock("latest"))!.timestamp + 30 * 86400);

  // A lock in service has anchored its log before: its state slot is warm from then on.
  await gas.record(
    "lock.anchorLog.first",
    logBatch(ctx, lockKeys[0], lock, 1, labelHash("batch 1")).then((b) =>
      locks.anchorLog(lockKeys[0].signer, b.batch, b.signature),
    ),
  );
  const second = await logBatch(ctx, lockKeys[0], lock, 2, labelHash("batch 2"));
  await gas.record("lock.anchorLog", locks.anchorLog(lockKeys[0].signer, second.batch, second.signature));

  await gas.record("lock.revokeKey.first", locks.connect(owner).revokeKey(lock, 1000n));
  await gas.record("lock.revokeKey.next", locks.connect(owner).revokeKey(lock, 1001n));
  await gas.record("lock.revokeAll", locks.connect(owner).revokeAll(lock));
  await gas.record("lock.revokeAll.freshLock", locks.connect(owner).revokeAll(freshLock));
  await gas.record("lock.appointManager", locks.connect(owner).appointManager(lock, manager, expiry));
}

/** LockAccess operations, each in the situation its budget names. */
import { ethers, setBalance } from "../test/helpers/hardhat.js";
import { Wallet, id as labelHash } from "ethers";
import { deployLocks, logBatch } from "../test/helpers/lock.js";
import type { GasRecorder } from "./lib.js";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { Agent } from "../src/agent/agent.js";
import { TypedDataHasher } from "../src/eip712/fast.js";
import { DeviceSignatureVerifier } from "../src/crypto/verify.js";
import { randomDeviceKey } from "../src/crypto/deviceKey.js";
import { LockService } from "../src/agent/roles/lockServer.js";
import { unlockAt } from "../src/agent/roles/guest.js";
import { issueCertificate } from "../src/agent/roles/lockOwner.js";

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

/**
 * Challenge → decision over loopback HTTP, as a guest's phone meets a lock: GET a challenge, sign
 * the UnlockRequest with a P-256 key, POST it, read the decision (logged to disk before the reply).
 * The lock service runs against the in-process network with its state synced once; `n` unlocks one
 * after another, after a warm-up. Returns p50 and p99 in milliseconds.
 */
export async function measureUnlockLatency(n = 2_000): Promise<Record<string, number>> {
  const ctx = await deployLocks();
  const { chainId } = await ethers.provider.getNetwork();
  const deployment = {
    chainId,
    registry: await ctx.registry.getAddress(),
    lockAccess: await ctx.locks.getAddress(),
  };
  const payer = new Wallet(labelHash("bench lock payer"), ethers.provider);
  await setBalance(payer.address, ethers.parseEther("10"));
  const hasher = await TypedDataHasher.create();
  const dir = mkdtempSync(path.join(os.tmpdir(), "custos-bench-lock-"));
  // The lock's clock agrees with the chain's (which earlier benches moved ahead of the wall clock).
  const offset = (await ethers.provider.getBlock("latest"))!.timestamp - Date.now() / 1000;
  const clock = () => Date.now() / 1000 + offset;
  const agent = await Agent.create({ signer: ctx.lockKeys[0], deployment, dataDir: dir, rpc: ethers.provider, payer });
  const service = new LockService({
    agent,
    lock: ctx.lock,
    deployment,
    provider: ethers.provider,
    hasher,
    verifier: new DeviceSignatureVerifier([ctx.verifierAddress]),
    dataDir: dir,
    maxStalenessS: 3600,
    anchorEvery: 1_000_000, // anchoring is measured as gas, not here
    clock,
  });
  try {
    const url = await service.start();
    const guest = randomDeviceKey("p256", ctx.verifierAddress);
    const now = (await ethers.provider.getBlock("latest"))!.timestamp;
    const cert = await issueCertificate(
      ctx.owner,
      { chainId, verifyingContract: deployment.lockAccess },
      { lock: ctx.lock, holder: guest.signer, keyId: 1n, issuedAt: now, validFrom: now - 60, validUntil: now + 86_400 },
    );
    const times: number[] = [];
    for (let i = 0; i < n + 200; i++) {
      const t0 = performance.now();
      const decision = await unlockAt(url, cert, guest, hasher, { now: clock() });
      const ms = performance.now() - t0;
      if (!decision.open) throw new Error(`bench: a valid unlock was refused (${decision.reason})`);
      if (i >= 200) times.push(ms);
    }
    times.sort((a, b) => a - b);
    const at = (q: number) => Math.round(times[Math.min(times.length - 1, Math.floor(q * times.length))] * 100) / 100;
    return { "lock.unlock_http_p50_ms": at(0.5), "lock.unlock_http_p99_ms": at(0.99) };
  } finally {
    await service.close();
    await agent.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

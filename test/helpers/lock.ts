import { ethers } from "./hardhat.js";
import { digest, type Deployment } from "../../src/eip712/index.js";
import type { DeviceKey } from "../../src/crypto/deviceKey.js";
import { deployRegistry, makeKeys, provision, deadlineIn } from "./registry.js";

/** The registry fixture plus LockAccess, and two lock devices (secp256k1, P-256) owned by `owner`. */
export async function deployLocks() {
  const ctx = await deployRegistry();
  const locks = await ethers.deployContract("LockAccess", [
    await ctx.registry.getAddress(),
    await ctx.forwarder.getAddress(),
  ]);
  const lockDeployment: Deployment = { chainId: ctx.deployment.chainId, verifyingContract: await locks.getAddress() };
  const lockKeys = makeKeys(ctx, 2, ["secp256k1", "p256"]);
  const { ids } = await provision(ctx, lockKeys);
  return { ...ctx, locks, lockDeployment, lockKeys, lockIds: ids, lock: ids[0] };
}

export type LockContext = Awaited<ReturnType<typeof deployLocks>>;

/** A batch of the unlock log, signed by `key` for lock `lock`. */
export async function logBatch(
  ctx: LockContext,
  key: DeviceKey,
  lock: bigint,
  seq: number,
  root: string,
  opts: { deadline?: bigint; deployment?: Deployment } = {},
) {
  const batch = {
    seq,
    root,
    count: 16,
    fromTime: 1_700_000_000n,
    toTime: 1_700_003_600n,
    deadline: opts.deadline ?? (await deadlineIn()),
  };
  const signature = key.signDigest(digest("UnlockLog", opts.deployment ?? ctx.lockDeployment, { lock, ...batch }));
  return { batch, signature };
}

/**
 * The lock key tasks' actions (definitions and flags: ../access.ts). Each checks that the lock is a
 * registered, active device and that the signer may act for it (its owner, or for keys a manager
 * the owner appointed and whose appointment runs), prints JSON, returns it, and fails with one
 * line naming the flag that is wrong.
 */
import { dataLength, getAddress, isAddress, isHexString } from "ethers";
import type { HardhatRuntimeEnvironment } from "hardhat/types/hre";
import { deviceIdArg } from "../addresses.js";
import {
  contractAddress,
  contractAt,
  howToSignAs,
  needAccount,
  openChain,
  short,
  signerOf,
  taskAction,
  type Chain,
  type TaskSigner,
} from "../chain.js";
import { writeFileAtomic } from "../files.js";
import { inputError, intArg, required, type SignerArgs } from "../support.js";

const STATUS = ["Unknown", "Active", "Quarantined", "Revoked"];

/** LockAccess (checked to be one) connected to `who`, and what the registry it uses says of `lock`. */
async function lockOf(chain: Chain, flag: string | undefined, who: TaskSigner, lock: bigint) {
  const locks = await contractAt(chain, "LockAccess", await contractAddress(chain, "LockAccess", flag), who);
  const registry = await contractAt(
    chain,
    "DeviceRegistry",
    await contractAddress(chain, "DeviceRegistry", await locks.registry()),
  );
  const status = Number(await registry.deviceStatus(lock));
  if (status === 0)
    throw inputError(`--lock: no device ${lock} in the registry the locks use (${short(await registry.getAddress())})`);
  const [owner, ownerEpoch] = await registry.ownership(lock);
  const now = (await chain.provider.getBlock("latest"))!.timestamp;
  const managerUntil = Number(await locks.managerExpiry(lock, ownerEpoch, who.address));
  return { locks, owner, ownerEpoch, status, now, managerUntil };
}

type Lock = Awaited<ReturnType<typeof lockOf>>;

/** Refuses unless `who` is the lock's owner, or (when `managerMay`) a manager whose appointment runs. */
async function needOwnerOrManager(
  chain: Chain,
  who: TaskSigner,
  l: Lock,
  lock: bigint,
  what: string,
  managerMay: boolean,
) {
  if (l.owner.toLowerCase() === who.address.toLowerCase()) return "owner" as const;
  if (managerMay && l.managerUntil > l.now) return "manager" as const;
  if (managerMay && l.managerUntil > 0)
    throw inputError(
      `${what}: ${who.label}'s appointment as manager of lock ${lock} ended ${new Date(l.managerUntil * 1000).toISOString()}; ${await howToSignAs(chain, l.owner, "the owner")}`,
    );
  throw inputError(
    `${what} needs lock ${lock}'s owner${managerMay ? " or a manager it appointed" : ""}: ${who.label} is ${managerMay ? "neither" : "not"}; ${await howToSignAs(chain, l.owner, "the owner")}`,
  );
}

function keyIdArg(value: string): bigint {
  if (!/^[0-9]+$/.test(value) || BigInt(value) >= 1n << 64n) throw inputError(`--key-id: ${value} must be a uint64`);
  return BigInt(value);
}

export const grant = taskAction(
  "lock:grant",
  async (
    args: SignerArgs & {
      lock?: string;
      holder?: string;
      keyId?: string;
      validFor: number;
      schedule: string;
      owner?: string;
      lockUrl?: string;
      out?: string;
      locks?: string;
    },
    hre: HardhatRuntimeEnvironment,
  ) => {
    const lock = deviceIdArg(required(args.lock, "--lock"), "--lock");
    const holder = required(args.holder, "--holder");
    const keyId = keyIdArg(required(args.keyId, "--key-id"));
    const out = required(args.out, "--out");
    if (!isHexString(holder) || dataLength(holder) < 20)
      throw inputError("--holder must be hex bytes: an address or a P-256 signer");
    if (!(args.validFor > 0)) throw inputError("--valid-for must be a positive number of seconds");
    if (!/^[0-9]+$/.test(args.schedule) || BigInt(args.schedule) >= 1n << 168n)
      throw inputError("--schedule must be a 168-bit hour mask (decimal)");
    if (args.owner !== undefined && !isAddress(args.owner))
      throw inputError(`--owner: ${args.owner} is not an address`);
    // A certificate is a file, no transaction; but it speaks for a chain: the one named, checked.
    const chain = await openChain(hre, "lock:grant", true);
    const who = await signerOf(chain, args);
    const l = await lockOf(chain, args.locks, who, lock);
    if (l.status !== 1)
      throw inputError(`--lock: lock ${lock} is ${STATUS[l.status]}: a key for it would open nothing`);
    if (args.owner !== undefined && getAddress(args.owner) !== l.owner)
      throw inputError(`--owner: ${args.owner} is not lock ${lock}'s owner (${l.owner})`);
    const as = await needOwnerOrManager(chain, who, l, lock, "lock:grant", true);
    const validUntil = l.now + args.validFor;
    if (as === "manager" && validUntil > l.managerUntil)
      console.warn(
        `lock:grant: ${who.label}'s appointment ends ${new Date(l.managerUntil * 1000).toISOString()}: the lock refuses this key from then on`,
      );
    // The key epoch names the lock's ownership period too: a certificate of another one is dead.
    const epoch = Number(await l.locks.keyEpoch(lock));
    const { issueCertificate } = await import("../../src/agent/roles/lockOwner.js");
    const cert = await issueCertificate(
      who.signer,
      { chainId: chain.chainId, verifyingContract: await l.locks.getAddress() },
      {
        lock,
        holder,
        keyId,
        issuedAt: l.now,
        validFrom: l.now,
        validUntil,
        schedule: BigInt(args.schedule),
        epoch,
        owner: l.owner, // the owner it is issued under is the lock's, whoever signs
        ...(args.lockUrl ? { lockUrl: args.lockUrl } : {}),
      },
    );
    writeFileAtomic(out, JSON.stringify(cert, null, 2) + "\n");
    console.log(
      JSON.stringify({ out, lock: lock.toString(), keyId: keyId.toString(), epoch, issuedBy: as, issuer: who.address }),
    );
    return cert;
  },
);

export const revoke = taskAction(
  "lock:revoke",
  async (args: SignerArgs & { lock?: string; keyId?: string; locks?: string }, hre: HardhatRuntimeEnvironment) => {
    const lock = deviceIdArg(required(args.lock, "--lock"), "--lock");
    const keyId = keyIdArg(required(args.keyId, "--key-id"));
    const chain = await openChain(hre, "lock:revoke", true);
    const who = await signerOf(chain, args, true);
    const l = await lockOf(chain, args.locks, who, lock);
    await needOwnerOrManager(chain, who, l, lock, "lock:revoke", true);
    if (await l.locks.isRevoked(lock, l.ownerEpoch, keyId))
      throw inputError(`--key-id: key ${keyId} of lock ${lock} is revoked already`);
    const receipt = (await (await l.locks.revokeKey(lock, keyId)).wait())!;
    const result = { tx: receipt.hash, gas: Number(receipt.gasUsed) };
    console.log(JSON.stringify(result));
    return result;
  },
);

export const revokeAll = taskAction(
  "lock:revoke-all",
  async (args: SignerArgs & { lock?: string; locks?: string }, hre: HardhatRuntimeEnvironment) => {
    const lock = deviceIdArg(required(args.lock, "--lock"), "--lock");
    const chain = await openChain(hre, "lock:revoke-all", true);
    const who = await signerOf(chain, args, true);
    const l = await lockOf(chain, args.locks, who, lock);
    await needAccount(chain, who, l.owner, `lock:revoke-all needs lock ${lock}'s owner`);
    const receipt = (await (await l.locks.revokeAll(lock)).wait())!;
    const result = { tx: receipt.hash, epoch: Number(await l.locks.keyEpoch(lock)) };
    console.log(JSON.stringify(result));
    return result;
  },
);

export const appointManager = taskAction(
  "lock:appoint-manager",
  async (
    args: SignerArgs & { lock?: string; manager?: string; validFor?: string; locks?: string },
    hre: HardhatRuntimeEnvironment,
  ) => {
    const lock = deviceIdArg(required(args.lock, "--lock"), "--lock");
    const manager = required(args.manager, "--manager");
    const validFor = intArg(required(args.validFor, "--valid-for"), "--valid-for");
    if (!isAddress(manager)) throw inputError(`--manager: ${manager} is not an address`);
    if (!(validFor > 0)) throw inputError("--valid-for must be a positive number of seconds");
    const chain = await openChain(hre, "lock:appoint-manager", true);
    const who = await signerOf(chain, args, true);
    const l = await lockOf(chain, args.locks, who, lock);
    await needAccount(chain, who, l.owner, `lock:appoint-manager needs lock ${lock}'s owner`);
    const receipt = (await (await l.locks.appointManager(lock, manager, l.now + validFor)).wait())!;
    const result = { tx: receipt.hash, expiry: l.now + validFor };
    console.log(JSON.stringify(result));
    return result;
  },
);

/**
 * The lock key tasks' actions (definitions and flags: ../access.ts). Each prints JSON, returns it,
 * and fails with a message naming the flag that is wrong.
 */
import { writeFileSync } from "node:fs";
import { dataLength, isAddress, isHexString } from "ethers";
import type { HardhatRuntimeEnvironment } from "hardhat/types/hre";
import { issueCertificate } from "../../src/agent/roles/lockOwner.js";
import { contractAddress, deviceIdArg } from "../addresses.js";
import { chainOf, inputError, intArg, required } from "../support.js";

async function signerOf(hre: HardhatRuntimeEnvironment, index: number) {
  const signers = await (await chainOf(hre)).getSigners();
  if (!(index >= 0 && index < signers.length)) throw inputError(`--signer: no account ${index} on this network`);
  return signers[index];
}

async function locksAt(hre: HardhatRuntimeEnvironment, flag: string | undefined, signer: number) {
  return (await chainOf(hre)).getContractAt(
    "LockAccess",
    await contractAddress(hre, "LockAccess", flag),
    await signerOf(hre, signer),
  );
}

function keyIdArg(value: string): bigint {
  if (!/^[0-9]+$/.test(value) || BigInt(value) >= 1n << 64n) throw inputError(`--key-id: ${value} must be a uint64`);
  return BigInt(value);
}

async function latest(hre: HardhatRuntimeEnvironment): Promise<number> {
  return (await (await chainOf(hre)).provider.getBlock("latest"))!.timestamp;
}

export async function grant(
  args: {
    lock?: string;
    holder?: string;
    keyId?: string;
    validFor: number;
    schedule: string;
    owner?: string;
    lockUrl?: string;
    out?: string;
    locks?: string;
    signer: number;
  },
  hre: HardhatRuntimeEnvironment,
) {
  const lock = deviceIdArg(required(args.lock, "--lock"), "--lock");
  const holder = required(args.holder, "--holder");
  const keyId = required(args.keyId, "--key-id");
  const out = required(args.out, "--out");
  if (!isHexString(holder) || dataLength(holder) < 20)
    throw inputError("--holder must be hex bytes: an address or a P-256 signer");
  if (!(args.validFor > 0)) throw inputError("--valid-for must be a positive number of seconds");
  if (!/^[0-9]+$/.test(args.schedule) || BigInt(args.schedule) >= 1n << 168n)
    throw inputError("--schedule must be a 168-bit hour mask (decimal)");
  const locks = await locksAt(hre, args.locks, args.signer);
  const { chainId } = await (await chainOf(hre)).provider.getNetwork();
  // The key epoch names the lock's ownership period too: a certificate of another one is dead.
  const epoch = Number(await locks.keyEpoch(lock));
  const now = await latest(hre);
  const cert = await issueCertificate(
    await signerOf(hre, args.signer),
    { chainId, verifyingContract: await locks.getAddress() },
    {
      lock,
      holder,
      keyId: keyIdArg(keyId),
      issuedAt: now,
      validFrom: now,
      validUntil: now + args.validFor,
      schedule: BigInt(args.schedule),
      epoch,
      ...(args.owner ? { owner: args.owner } : {}),
      ...(args.lockUrl ? { lockUrl: args.lockUrl } : {}),
    },
  );
  writeFileSync(out, JSON.stringify(cert, null, 2) + "\n");
  console.log(JSON.stringify({ out, lock: lock.toString(), keyId, epoch }));
  return cert;
}

export async function revoke(
  args: { lock?: string; keyId?: string; locks?: string; signer: number },
  hre: HardhatRuntimeEnvironment,
) {
  const lock = deviceIdArg(required(args.lock, "--lock"), "--lock");
  const keyId = keyIdArg(required(args.keyId, "--key-id"));
  const locks = await locksAt(hre, args.locks, args.signer);
  const receipt = await (await locks.revokeKey(lock, keyId)).wait();
  const result = { tx: receipt!.hash, gas: Number(receipt!.gasUsed) };
  console.log(JSON.stringify(result));
  return result;
}

export async function revokeAll(
  args: { lock?: string; locks?: string; signer: number },
  hre: HardhatRuntimeEnvironment,
) {
  const lock = deviceIdArg(required(args.lock, "--lock"), "--lock");
  const locks = await locksAt(hre, args.locks, args.signer);
  const receipt = await (await locks.revokeAll(lock)).wait();
  const result = { tx: receipt!.hash, epoch: Number(await locks.keyEpoch(lock)) };
  console.log(JSON.stringify(result));
  return result;
}

export async function appointManager(
  args: { lock?: string; manager?: string; validFor?: string; locks?: string; signer: number },
  hre: HardhatRuntimeEnvironment,
) {
  const lock = deviceIdArg(required(args.lock, "--lock"), "--lock");
  const manager = required(args.manager, "--manager");
  const validFor = intArg(required(args.validFor, "--valid-for"), "--valid-for");
  if (!isAddress(manager)) throw inputError(`--manager: ${manager} is not an address`);
  if (!(validFor > 0)) throw inputError("--valid-for must be a positive number of seconds");
  const locks = await locksAt(hre, args.locks, args.signer);
  const now = await latest(hre);
  const receipt = await (await locks.appointManager(lock, manager, now + validFor)).wait();
  const result = { tx: receipt!.hash, expiry: now + validFor };
  console.log(JSON.stringify(result));
  return result;
}

/**
 * Operator tasks for smart-lock keys: grant a key (an owner- or manager-signed certificate file;
 * no transaction), revoke one, revoke all, appoint a manager. The signer is the network's first
 * account (`--signer N` picks another).
 *
 *   npx hardhat lock:grant --lock 123… --holder 0x… --key-id 7 --valid-for 86400 --out key.json --network localhost
 */
import { writeFileSync } from "node:fs";
import { task, types } from "hardhat/config";
import type { HardhatRuntimeEnvironment } from "hardhat/types";
import { contractAddress, deviceIdArg } from "./addresses.js";

async function signerOf(hre: HardhatRuntimeEnvironment, index: number) {
  const signers = await hre.ethers.getSigners();
  if (!(index >= 0 && index < signers.length)) throw new Error(`--signer: no account ${index} on this network`);
  return signers[index];
}

async function locksAt(hre: HardhatRuntimeEnvironment, flag: string | undefined, signer: number) {
  return hre.ethers.getContractAt(
    "LockAccess",
    await contractAddress(hre, "LockAccess", flag),
    await signerOf(hre, signer),
  );
}

function keyIdArg(value: string): bigint {
  if (!/^[0-9]+$/.test(value ?? "") || BigInt(value) >= 1n << 64n)
    throw new Error(`--key-id: ${value} must be a uint64`);
  return BigInt(value);
}

task("lock:grant", "Issues a key certificate for a lock (signed off chain: no gas) and writes it to a file")
  .addParam("lock", "the lock's device id")
  .addParam("holder", "the guest's key: an address, or a P-256 signer (verifier ‖ public key)")
  .addParam("keyId", "the key's id (what lock:revoke names)")
  .addOptionalParam("validFor", "seconds from now the key is valid", 86_400, types.int)
  .addOptionalParam("schedule", "weekly hour mask (bit h = hour h from Monday 00:00 UTC; 0 = any time)", "0")
  .addOptionalParam("owner", "the owner it is issued under (when a manager signs)")
  .addOptionalParam("lockUrl", "where the lock listens (written into the certificate)")
  .addParam("out", "the certificate file to write")
  .addOptionalParam("locks", "LockAccess address")
  .addOptionalParam("signer", "index of the signing account", 0, types.int)
  .setAction(
    async (
      args: {
        lock: string;
        holder: string;
        keyId: string;
        validFor: number;
        schedule: string;
        owner?: string;
        lockUrl?: string;
        out: string;
        locks?: string;
        signer: number;
      },
      hre,
    ) => {
      const { issueCertificate } = await import("../src/agent/roles/lockOwner.js");
      const lock = deviceIdArg(args.lock, "--lock");
      if (!hre.ethers.isHexString(args.holder) || hre.ethers.dataLength(args.holder) < 20)
        throw new Error("--holder must be hex bytes: an address or a P-256 signer");
      if (!(args.validFor > 0)) throw new Error("--valid-for must be a positive number of seconds");
      if (!/^[0-9]+$/.test(args.schedule) || BigInt(args.schedule) >= 1n << 168n)
        throw new Error("--schedule must be a 168-bit hour mask (decimal)");
      const locks = await locksAt(hre, args.locks, args.signer);
      const { chainId } = await hre.ethers.provider.getNetwork();
      // The key epoch names the lock's ownership period too: a certificate of another one is dead.
      const epoch = Number(await locks.keyEpoch(lock));
      const now = (await hre.ethers.provider.getBlock("latest"))!.timestamp;
      const cert = await issueCertificate(
        await signerOf(hre, args.signer),
        { chainId, verifyingContract: await locks.getAddress() },
        {
          lock,
          holder: args.holder,
          keyId: keyIdArg(args.keyId),
          issuedAt: now,
          validFrom: now,
          validUntil: now + args.validFor,
          schedule: BigInt(args.schedule),
          epoch,
          ...(args.owner ? { owner: args.owner } : {}),
          ...(args.lockUrl ? { lockUrl: args.lockUrl } : {}),
        },
      );
      writeFileSync(args.out, JSON.stringify(cert, null, 2) + "\n");
      console.log(JSON.stringify({ out: args.out, lock: lock.toString(), keyId: args.keyId, epoch }));
      return cert;
    },
  );

task("lock:revoke", "Revokes one key of a lock (the owner, or a manager the owner appointed)")
  .addParam("lock", "the lock's device id")
  .addParam("keyId", "the key's id")
  .addOptionalParam("locks", "LockAccess address")
  .addOptionalParam("signer", "index of the signing account", 0, types.int)
  .setAction(async (args: { lock: string; keyId: string; locks?: string; signer: number }, hre) => {
    const locks = await locksAt(hre, args.locks, args.signer);
    const receipt = await (await locks.revokeKey(deviceIdArg(args.lock, "--lock"), keyIdArg(args.keyId))).wait();
    const result = { tx: receipt!.hash, gas: Number(receipt!.gasUsed) };
    console.log(JSON.stringify(result));
    return result;
  });

task("lock:revoke-all", "Revokes every key of a lock at once (its key epoch moves on); the owner only")
  .addParam("lock", "the lock's device id")
  .addOptionalParam("locks", "LockAccess address")
  .addOptionalParam("signer", "index of the signing account", 0, types.int)
  .setAction(async (args: { lock: string; locks?: string; signer: number }, hre) => {
    const locks = await locksAt(hre, args.locks, args.signer);
    const lock = deviceIdArg(args.lock, "--lock");
    const receipt = await (await locks.revokeAll(lock)).wait();
    const result = { tx: receipt!.hash, epoch: Number(await locks.keyEpoch(lock)) };
    console.log(JSON.stringify(result));
    return result;
  });

task(
  "lock:appoint-manager",
  "Lets a manager sign keys for a lock until an expiry, in the current ownership period; the owner only",
)
  .addParam("lock", "the lock's device id")
  .addParam("manager", "the manager's address")
  .addParam("validFor", "seconds from now the appointment lasts", undefined, types.int)
  .addOptionalParam("locks", "LockAccess address")
  .addOptionalParam("signer", "index of the signing account", 0, types.int)
  .setAction(async (args: { lock: string; manager: string; validFor: number; locks?: string; signer: number }, hre) => {
    if (!hre.ethers.isAddress(args.manager)) throw new Error(`--manager: ${args.manager} is not an address`);
    if (!(args.validFor > 0)) throw new Error("--valid-for must be a positive number of seconds");
    const locks = await locksAt(hre, args.locks, args.signer);
    const now = (await hre.ethers.provider.getBlock("latest"))!.timestamp;
    const receipt = await (
      await locks.appointManager(deviceIdArg(args.lock, "--lock"), args.manager, now + args.validFor)
    ).wait();
    const result = { tx: receipt!.hash, expiry: now + args.validFor };
    console.log(JSON.stringify(result));
    return result;
  });

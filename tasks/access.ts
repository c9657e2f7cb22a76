/**
 * Operator tasks for smart-lock keys: grant a key (an owner- or manager-signed certificate file;
 * no transaction), revoke one, revoke all, appoint a manager. Each checks that the lock is a
 * registered, active device and that the signer may act for it: the lock's owner, or for keys a
 * manager the owner appointed. The signer is the network's account #0 unless told otherwise
 * (`--signer N|ADDRESS`, `--keystore FILE`, `--signer-var NAME`). The actions are in
 * ./actions/access.ts.
 *
 *   npx hardhat lock:grant --lock 123… --holder 0x… --key-id 7 --valid-for 86400 --out key.json --network localhost
 */
import { task } from "hardhat/config";
import { int, lazy, needed, optional, signing, text } from "./support.js";

const actions = () => import("./actions/access.js");
const lock = needed("lock", "the lock's device id");
const locks = optional(
  "locks",
  "LockAccess address (default: CUSTOS_LOCK_ACCESS, or this chain's Ignition deployment)",
);

export const accessTasks = [
  signing(
    task(
      "lock:grant",
      "Issues a key certificate for a lock, signed off chain by its owner or an appointed manager (no gas), and writes it to a file",
    )
      .addOption(lock)
      .addOption(needed("holder", "the guest's key: an address, or a P-256 signer (verifier ‖ public key)"))
      .addOption(needed("keyId", "the key's id (what lock:revoke names)"))
      .addOption(int("validFor", "seconds from now the key is valid", 86_400))
      .addOption(text("schedule", "weekly hour mask (bit h = hour h from Monday 00:00 UTC; 0 = any time)", "0"))
      .addOption(optional("owner", "the lock's owner, checked against the chain (the certificate names it)"))
      .addOption(optional("lockUrl", "where the lock listens (written into the certificate)"))
      .addOption(needed("out", "the certificate file to write"))
      .addOption(locks),
  )
    .setAction(lazy(actions, "grant"))
    .build(),

  signing(
    task("lock:revoke", "Revokes one key of a lock (the owner, or a manager the owner appointed)")
      .addOption(lock)
      .addOption(needed("keyId", "the key's id"))
      .addOption(locks),
  )
    .setAction(lazy(actions, "revoke"))
    .build(),

  signing(
    task("lock:revoke-all", "Revokes every key of a lock at once (its key epoch moves on); the owner only")
      .addOption(lock)
      .addOption(locks),
  )
    .setAction(lazy(actions, "revokeAll"))
    .build(),

  signing(
    task(
      "lock:appoint-manager",
      "Lets a manager sign keys for a lock until an expiry, in the current ownership period; the owner only",
    )
      .addOption(lock)
      .addOption(needed("manager", "the manager's address"))
      .addOption(needed("validFor", "seconds from now the appointment lasts"))
      .addOption(locks),
  )
    .setAction(lazy(actions, "appointManager"))
    .build(),
];

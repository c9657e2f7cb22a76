/**
 * Operator tasks for smart-lock keys: grant a key (an owner- or manager-signed certificate file;
 * no transaction), revoke one, revoke all, appoint a manager. The signer is the network's first
 * account (`--signer N` picks another). The actions are in ./actions/access.ts.
 *
 *   npx hardhat lock:grant --lock 123… --holder 0x… --key-id 7 --valid-for 86400 --out key.json --network localhost
 */
import { task } from "hardhat/config";
import { int, lazy, needed, optional, text } from "./support.js";

const actions = () => import("./actions/access.js");
const lock = needed("lock", "the lock's device id");
const locks = optional("locks", "LockAccess address");
const signer = int("signer", "index of the signing account", 0);

export const accessTasks = [
  task("lock:grant", "Issues a key certificate for a lock (signed off chain: no gas) and writes it to a file")
    .addOption(lock)
    .addOption(needed("holder", "the guest's key: an address, or a P-256 signer (verifier ‖ public key)"))
    .addOption(needed("keyId", "the key's id (what lock:revoke names)"))
    .addOption(int("validFor", "seconds from now the key is valid", 86_400))
    .addOption(text("schedule", "weekly hour mask (bit h = hour h from Monday 00:00 UTC; 0 = any time)", "0"))
    .addOption(optional("owner", "the owner it is issued under (when a manager signs)"))
    .addOption(optional("lockUrl", "where the lock listens (written into the certificate)"))
    .addOption(needed("out", "the certificate file to write"))
    .addOption(locks)
    .addOption(signer)
    .setAction(lazy(actions, "grant"))
    .build(),

  task("lock:revoke", "Revokes one key of a lock (the owner, or a manager the owner appointed)")
    .addOption(lock)
    .addOption(needed("keyId", "the key's id"))
    .addOption(locks)
    .addOption(signer)
    .setAction(lazy(actions, "revoke"))
    .build(),

  task("lock:revoke-all", "Revokes every key of a lock at once (its key epoch moves on); the owner only")
    .addOption(lock)
    .addOption(locks)
    .addOption(signer)
    .setAction(lazy(actions, "revokeAll"))
    .build(),

  task(
    "lock:appoint-manager",
    "Lets a manager sign keys for a lock until an expiry, in the current ownership period; the owner only",
  )
    .addOption(lock)
    .addOption(needed("manager", "the manager's address"))
    .addOption(needed("validFor", "seconds from now the appointment lasts"))
    .addOption(locks)
    .addOption(signer)
    .setAction(lazy(actions, "appointManager"))
    .build(),
];

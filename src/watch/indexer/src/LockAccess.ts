/** LockAccess: key revocations (alerts), revoke-all epochs (alerts), managers, anchored log batches. */
import { ponder, type Context } from "ponder:registry";
import { lock, lockEpoch, lockKeyRevocation, lockLogBatch, lockManager } from "ponder:schema";
import { admin } from "./lib/admin.js";
import { ownerOf, raiseAlert } from "./lib/alert.js";
import { eventId, lower, placeOf } from "./lib/rows.js";

const EMPTY = { epoch: 0n, revokedKeys: 0, anchoredBatches: 0 };

async function touch(context: Context, id: bigint) {
  return (await context.db.find(lock, { id })) ?? (await context.db.insert(lock).values({ id, ...EMPTY }));
}

ponder.on("LockAccess:KeyRevoked", async ({ event, context }) => {
  const { lock: lockId, owner, keyId, ownerEpoch, by } = event.args;
  await context.db.insert(lockKeyRevocation).values({
    id: eventId(event),
    lockId,
    owner: lower(owner),
    keyId,
    ownerEpoch,
    by: lower(by),
    ...placeOf(event),
  });
  const row = await touch(context, lockId);
  await context.db.update(lock, { id: lockId }).set({ revokedKeys: row.revokedKeys + 1 });
  await raiseAlert(
    context,
    event,
    "lock.key_revoked",
    { owners: [await ownerOf(context, lockId), owner], lock: lockId.toString(), device: lockId.toString() },
    { keyId: keyId.toString(), ownerEpoch, by: lower(by) },
  );
});

ponder.on("LockAccess:AllKeysRevoked", async ({ event, context }) => {
  const { lock: lockId, owner, epoch } = event.args;
  await context.db
    .insert(lockEpoch)
    .values({ id: eventId(event), lockId, owner: lower(owner), epoch: BigInt(epoch), ...placeOf(event) });
  await touch(context, lockId);
  await context.db.update(lock, { id: lockId }).set({ epoch: BigInt(epoch), epochOwner: lower(owner) });
  await raiseAlert(
    context,
    event,
    "lock.all_keys_revoked",
    { owners: [await ownerOf(context, lockId), owner], lock: lockId.toString(), device: lockId.toString() },
    { epoch },
  );
});

ponder.on("LockAccess:ManagerAppointed", async ({ event, context }) => {
  const { lock: lockId, owner, manager, ownerEpoch, expiry } = event.args;
  await touch(context, lockId);
  const appointment = {
    owner: lower(owner),
    expiry,
    removed: false,
    appointedBlock: event.block.number,
    removedBlock: null,
  };
  await context.db
    .insert(lockManager)
    .values({ lockId, manager: lower(manager), ownerEpoch, ...appointment })
    .onConflictDoUpdate(appointment);
});

ponder.on("LockAccess:ManagerRemoved", async ({ event, context }) => {
  const { lock: lockId, owner, manager, ownerEpoch } = event.args;
  const removal = { removed: true, removedBlock: event.block.number };
  await context.db
    .insert(lockManager)
    .values({
      lockId,
      manager: lower(manager),
      ownerEpoch,
      owner: lower(owner),
      expiry: 0n,
      appointedBlock: event.block.number,
      ...removal,
    })
    .onConflictDoUpdate(removal);
});

ponder.on("LockAccess:LogAnchored", async ({ event, context }) => {
  const { lock: lockId, seq, root, count, fromTime, toTime, head } = event.args;
  await context.db.insert(lockLogBatch).values({
    lockId,
    seq: BigInt(seq),
    root,
    count: BigInt(count),
    fromTime,
    toTime,
    head,
    ...placeOf(event),
  });
  const row = await touch(context, lockId);
  await context.db
    .update(lock, { id: lockId })
    .set({ anchoredBatches: row.anchoredBatches + 1, lastAnchorSeq: BigInt(seq), logHead: head });
});

ponder.on("LockAccess:EIP712DomainChanged", admin("LockAccess", "EIP712DomainChanged"));

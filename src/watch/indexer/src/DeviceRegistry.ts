/**
 * DeviceRegistry: devices (ERC-721 ownership, status and its history, keys and their provenance,
 * firmware), batches, and the registry's administration. Alerts: quarantined, released, revoked,
 * key rotated.
 */
import { ponder, type Context } from "ponder:registry";
import {
  batch,
  batchStatusChange,
  device,
  deviceKey,
  deviceStatusChange,
  firmwareAttestation,
  firmwareRevocation,
  keyVerifier,
  nonceCancellation,
  transfer,
  trustPeriodEnd,
} from "ponder:schema";
import { eq } from "ponder";
import type { AlertKind } from "../../alerts.js";
import { admin } from "./lib/admin.js";
import { raiseAlert } from "./lib/alert.js";
import { BATCH_STATUS, deviceStatusOf, eventId, lower, placeOf, type EventLike } from "./lib/rows.js";

const ZERO = "0x0000000000000000000000000000000000000000";

/** A device row before its claim and mint have both been seen (they come in one transaction). */
function fresh(id: bigint, owner: `0x${string}`) {
  return {
    id,
    owner,
    ownerEpoch: 0,
    keyGeneration: 0,
    keyAttested: true,
    reportedStolen: false,
    guardianFlagged: false,
    revoked: false,
    status: "active",
  };
}

type Flag = "reportedStolen" | "guardianFlagged" | "revoked";

/** Sets or clears one of the device's flags and records the status it leads to. */
async function setFlag(
  context: Context,
  event: EventLike,
  deviceId: bigint,
  flag: Flag,
  value: boolean,
  cause: string,
  extra: { by?: `0x${string}`; reason?: `0x${string}` } = {},
) {
  const row = await context.db.find(device, { id: deviceId });
  if (!row) return null;
  const next = { ...row, [flag]: value };
  const status = deviceStatusOf(next);
  const updated = await context.db.update(device, { id: deviceId }).set({ [flag]: value, status });
  await context.db.insert(deviceStatusChange).values({
    id: eventId(event),
    deviceId,
    cause,
    status,
    by: extra.by ? lower(extra.by) : null,
    reason: extra.reason ?? null,
    ...placeOf(event),
  });
  return updated;
}

ponder.on("DeviceRegistry:Transfer", async ({ event, context }) => {
  const { from, to, tokenId } = event.args;
  await context.db
    .insert(transfer)
    .values({ id: eventId(event), deviceId: tokenId, from: lower(from), to: lower(to), ...placeOf(event) });
  // A mint starts ownership period 0; every later change of hands opens the next one.
  const minted = from === ZERO;
  await context.db
    .insert(device)
    .values(fresh(tokenId, lower(to)))
    .onConflictDoUpdate((row) => ({
      owner: lower(to),
      ownerEpoch: minted ? row.ownerEpoch : (row.ownerEpoch + 1) % 65536,
    }));
});

ponder.on("DeviceRegistry:DeviceClaimed", async ({ event, context }) => {
  const { deviceId, owner, batchId, deviceKey: key, model, firmwareHash } = event.args;
  const claimed = { batchId: BigInt(batchId), model, firmwareHash, key: lower(key), claimedAt: event.block.number };
  await context.db
    .insert(device)
    .values({ ...fresh(deviceId, lower(owner)), ...claimed })
    .onConflictDoUpdate(claimed);
  await context.db.insert(deviceKey).values({
    id: eventId(event),
    deviceId,
    key: lower(key),
    generation: 0,
    attested: true,
    source: "claim",
    ...placeOf(event),
  });
  await context.db.insert(deviceStatusChange).values({
    id: eventId(event),
    deviceId,
    cause: "DeviceClaimed",
    status: "active",
    by: lower(owner),
    ...placeOf(event),
  });
});

async function quarantined(
  context: Context,
  event: EventLike,
  deviceId: bigint,
  kind: AlertKind,
  data: Record<string, string | boolean>,
) {
  const row = await context.db.find(device, { id: deviceId });
  await raiseAlert(
    context,
    event,
    kind,
    { owners: [row?.owner], device: deviceId.toString() },
    { status: row?.status ?? null, ...data },
  );
}

ponder.on("DeviceRegistry:ReportedStolen", async ({ event, context }) => {
  await setFlag(context, event, event.args.deviceId, "reportedStolen", true, "ReportedStolen", {
    by: event.args.owner,
  });
  await quarantined(context, event, event.args.deviceId, "device.quarantined", { cause: "reported_stolen" });
});

ponder.on("DeviceRegistry:Released", async ({ event, context }) => {
  await setFlag(context, event, event.args.deviceId, "reportedStolen", false, "Released", { by: event.args.owner });
  await quarantined(context, event, event.args.deviceId, "device.released", { cause: "released_by_owner" });
});

ponder.on("DeviceRegistry:GuardianFlagged", async ({ event, context }) => {
  await setFlag(context, event, event.args.deviceId, "guardianFlagged", true, "GuardianFlagged", {
    reason: event.args.reason,
  });
  await quarantined(context, event, event.args.deviceId, "device.quarantined", {
    cause: "guardian_flagged",
    reason: event.args.reason,
  });
});

ponder.on("DeviceRegistry:GuardianCleared", async ({ event, context }) => {
  await setFlag(context, event, event.args.deviceId, "guardianFlagged", false, "GuardianCleared");
  await quarantined(context, event, event.args.deviceId, "device.released", { cause: "guardian_cleared" });
});

ponder.on("DeviceRegistry:DeviceRevoked", async ({ event, context }) => {
  const { deviceId, by, reason } = event.args;
  await setFlag(context, event, deviceId, "revoked", true, "DeviceRevoked", { by, reason });
  await quarantined(context, event, deviceId, "device.revoked", { by: lower(by), reason });
});

ponder.on("DeviceRegistry:KeyRotated", async ({ event, context }) => {
  const { deviceId, newKey, generation, attested } = event.args;
  await context.db.insert(deviceKey).values({
    id: eventId(event),
    deviceId,
    key: lower(newKey),
    generation,
    attested,
    source: "rotation",
    ...placeOf(event),
  });
  const row = await context.db
    .update(device, { id: deviceId })
    .set({ key: lower(newKey), keyGeneration: generation, keyAttested: attested });
  await raiseAlert(
    context,
    event,
    "device.key_rotated",
    { owners: [row.owner], device: deviceId.toString() },
    { key: lower(newKey), generation, attested },
  );
});

ponder.on("DeviceRegistry:KeyAttested", async ({ event, context }) => {
  const { deviceId, generation, manufacturer } = event.args;
  await context.db.update(device, { id: deviceId }).set({ keyAttested: true });
  const keys = await context.db.sql.select().from(deviceKey).where(eq(deviceKey.deviceId, deviceId));
  const current = keys
    .filter((k) => k.generation === generation)
    .sort((a, b) => Number(b.blockNumber - a.blockNumber))[0];
  if (current)
    await context.db.update(deviceKey, { id: current.id }).set({ attested: true, attestedBy: lower(manufacturer) });
});

ponder.on("DeviceRegistry:TrustPeriodEnded", async ({ event, context }) => {
  const { deviceId, period, endedAt, next } = event.args;
  await context.db.insert(trustPeriodEnd).values({
    id: eventId(event),
    deviceId,
    period: BigInt(period),
    endedAt: BigInt(endedAt),
    next: BigInt(next),
    ...placeOf(event),
  });
});

ponder.on("DeviceRegistry:FirmwareAttested", async ({ event, context }) => {
  const { deviceId, firmwareHash } = event.args;
  await context.db
    .insert(firmwareAttestation)
    .values({ id: eventId(event), deviceId, firmwareHash, ...placeOf(event) });
  await context.db.update(device, { id: deviceId }).set({ firmwareAttested: firmwareHash });
});

ponder.on("DeviceRegistry:FirmwareRevoked", async ({ event, context }) => {
  const { manufacturer, firmwareHash } = event.args;
  await context.db
    .insert(firmwareRevocation)
    .values({ id: eventId(event), manufacturer: lower(manufacturer), firmwareHash, ...placeOf(event) });
});

ponder.on("DeviceRegistry:NonceCancelled", async ({ event, context }) => {
  const { deviceId, nonce } = event.args;
  await context.db
    .insert(nonceCancellation)
    .values({ id: eventId(event), deviceId, nonce: BigInt(nonce), ...placeOf(event) });
});

ponder.on("DeviceRegistry:KeyVerifierSet", async ({ event, context }) => {
  const { verifier, allowed } = event.args;
  await context.db
    .insert(keyVerifier)
    .values({ address: lower(verifier), allowed, blockNumber: event.block.number })
    .onConflictDoUpdate({ allowed, blockNumber: event.block.number });
});

ponder.on("DeviceRegistry:BatchCommitted", async ({ event, context }) => {
  const { batchId, manufacturer, root } = event.args;
  await context.db.insert(batch).values({
    id: BigInt(batchId),
    manufacturer: lower(manufacturer),
    root,
    status: "active",
    committedAt: event.block.number,
  });
});

/** A batch's quarantine, recall or release: one alert for the batch, to every owner of one of its devices. */
const BATCH_ALERT: Record<string, AlertKind | undefined> = {
  quarantined: "device.quarantined",
  revoked: "device.revoked",
  active: "device.released",
};

ponder.on("DeviceRegistry:BatchStatusChanged", async ({ event, context }) => {
  const { status, reason } = event.args;
  const batchId = BigInt(event.args.batchId);
  const name = BATCH_STATUS[status] ?? `unknown(${status})`;
  await context.db.update(batch, { id: batchId }).set({ status: name, reason });
  await context.db
    .insert(batchStatusChange)
    .values({ id: eventId(event), batchId, status: name, reason, ...placeOf(event) });
  const kind = BATCH_ALERT[name];
  if (!kind) return;
  const owners = await context.db.sql
    .selectDistinct({ owner: device.owner })
    .from(device)
    .where(eq(device.batchId, batchId));
  await raiseAlert(
    context,
    event,
    kind,
    { owners: owners.map((o) => o.owner) },
    { batchId: batchId.toString(), batchStatus: name, reason },
  );
});

ponder.on("DeviceRegistry:Approval", admin("DeviceRegistry", "Approval"));
ponder.on("DeviceRegistry:ApprovalForAll", admin("DeviceRegistry", "ApprovalForAll"));
ponder.on("DeviceRegistry:RoleGranted", admin("DeviceRegistry", "RoleGranted"));
ponder.on("DeviceRegistry:RoleRevoked", admin("DeviceRegistry", "RoleRevoked"));
ponder.on("DeviceRegistry:RoleAdminChanged", admin("DeviceRegistry", "RoleAdminChanged"));
ponder.on("DeviceRegistry:EIP712DomainChanged", admin("DeviceRegistry", "EIP712DomainChanged"));

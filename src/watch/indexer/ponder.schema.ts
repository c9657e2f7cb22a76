/**
 * The index's relational model: one table per thing the suite's events describe, plus history
 * tables (one row per event, keyed by `${txHash}:${logIndex}`) and the alerts. Every table is an
 * onchain table, so Ponder rolls all of it back on a reorg. Addresses and hashes are lowercase hex;
 * device ids are bigints; shipment and channel ids are bytes32 hex. Indexes sit where the API
 * filters (owner, device, shipment, channel, block) so an owner of 10,000 devices pages fast.
 */
import { index, onchainTable, primaryKey, type PgColumnsBuilders } from "ponder";

/** What every per-event row carries: where it happened. */
const at = (t: PgColumnsBuilders) => ({
  blockNumber: t.bigint().notNull(),
  txHash: t.hex().notNull(),
  logIndex: t.integer().notNull(),
  timestamp: t.bigint().notNull(),
});

// ------------------------------------------------------------------ registry

export const device = onchainTable(
  "device",
  (t) => ({
    id: t.bigint().primaryKey(),
    owner: t.hex().notNull(),
    /** Moves at every transfer (authority given under an earlier owner stays dead). */
    ownerEpoch: t.integer().notNull(),
    batchId: t.bigint(),
    model: t.hex(),
    /** The firmware hash claimed at provisioning; `firmwareAttested` is the latest the device attested. */
    firmwareHash: t.hex(),
    firmwareAttested: t.hex(),
    /** The current key, its generation, and whether its provenance reaches the manufacturer. */
    key: t.hex(),
    keyGeneration: t.integer().notNull(),
    keyAttested: t.boolean().notNull(),
    reportedStolen: t.boolean().notNull(),
    guardianFlagged: t.boolean().notNull(),
    revoked: t.boolean().notNull(),
    /** The device's own status (its flags); the effective one also depends on its batch's status. */
    status: t.text().notNull(),
    claimedAt: t.bigint(),
  }),
  (table) => ({ ownerIdx: index().on(table.owner, table.id), batchIdx: index().on(table.batchId) }),
);

export const deviceStatusChange = onchainTable(
  "device_status_change",
  (t) => ({
    id: t.text().primaryKey(),
    deviceId: t.bigint().notNull(),
    /** The event that changed it: ReportedStolen, Released, GuardianFlagged, GuardianCleared, DeviceRevoked, DeviceClaimed. */
    cause: t.text().notNull(),
    status: t.text().notNull(),
    by: t.hex(),
    reason: t.hex(),
    ...at(t),
  }),
  (table) => ({ deviceIdx: index().on(table.deviceId, table.blockNumber) }),
);

export const deviceKey = onchainTable(
  "device_key",
  (t) => ({
    id: t.text().primaryKey(),
    deviceId: t.bigint().notNull(),
    key: t.hex().notNull(),
    generation: t.integer().notNull(),
    /** Provenance: signed by the previous attested key (or provisioned by the manufacturer). */
    attested: t.boolean().notNull(),
    /** "claim" or "rotation". */
    source: t.text().notNull(),
    /** The manufacturer that later attested this generation (KeyAttested), if any. */
    attestedBy: t.hex(),
    ...at(t),
  }),
  (table) => ({ deviceIdx: index().on(table.deviceId, table.generation) }),
);

export const transfer = onchainTable(
  "transfer",
  (t) => ({
    id: t.text().primaryKey(),
    deviceId: t.bigint().notNull(),
    from: t.hex().notNull(),
    to: t.hex().notNull(),
    ...at(t),
  }),
  (table) => ({ deviceIdx: index().on(table.deviceId), toIdx: index().on(table.to) }),
);

export const firmwareAttestation = onchainTable(
  "firmware_attestation",
  (t) => ({ id: t.text().primaryKey(), deviceId: t.bigint().notNull(), firmwareHash: t.hex().notNull(), ...at(t) }),
  (table) => ({ deviceIdx: index().on(table.deviceId) }),
);

export const firmwareRevocation = onchainTable("firmware_revocation", (t) => ({
  id: t.text().primaryKey(),
  manufacturer: t.hex().notNull(),
  firmwareHash: t.hex().notNull(),
  ...at(t),
}));

export const trustPeriodEnd = onchainTable(
  "trust_period_end",
  (t) => ({
    id: t.text().primaryKey(),
    deviceId: t.bigint().notNull(),
    period: t.bigint().notNull(),
    endedAt: t.bigint().notNull(),
    next: t.bigint().notNull(),
    ...at(t),
  }),
  (table) => ({ deviceIdx: index().on(table.deviceId) }),
);

export const nonceCancellation = onchainTable(
  "nonce_cancellation",
  (t) => ({ id: t.text().primaryKey(), deviceId: t.bigint().notNull(), nonce: t.bigint().notNull(), ...at(t) }),
  (table) => ({ deviceIdx: index().on(table.deviceId) }),
);

export const keyVerifier = onchainTable("key_verifier", (t) => ({
  address: t.hex().primaryKey(),
  allowed: t.boolean().notNull(),
  blockNumber: t.bigint().notNull(),
}));

export const batch = onchainTable("batch", (t) => ({
  id: t.bigint().primaryKey(),
  manufacturer: t.hex().notNull(),
  root: t.hex().notNull(),
  /** "active", "quarantined" or "revoked". */
  status: t.text().notNull(),
  reason: t.hex(),
  committedAt: t.bigint().notNull(),
}));

export const batchStatusChange = onchainTable(
  "batch_status_change",
  (t) => ({
    id: t.text().primaryKey(),
    batchId: t.bigint().notNull(),
    status: t.text().notNull(),
    reason: t.hex().notNull(),
    ...at(t),
  }),
  (table) => ({ batchIdx: index().on(table.batchId) }),
);

/** Role grants and revocations, ERC-721 approvals, quorum and membership changes: who may do what. */
export const adminEvent = onchainTable("admin_event", (t) => ({
  id: t.text().primaryKey(),
  contract: t.text().notNull(),
  name: t.text().notNull(),
  args: t.json().$type<Record<string, string | number | boolean>>().notNull(),
  ...at(t),
}));

// ------------------------------------------------------------------ guardians

export const guardianVote = onchainTable(
  "guardian_vote",
  (t) => ({
    id: t.text().primaryKey(),
    deviceId: t.bigint().notNull(),
    guardian: t.hex().notNull(),
    flag: t.boolean().notNull(),
    round: t.bigint().notNull(),
    reason: t.hex().notNull(),
    ...at(t),
  }),
  (table) => ({ deviceIdx: index().on(table.deviceId) }),
);

// ------------------------------------------------------------------ beacons

export const locationBeacon = onchainTable(
  "location_beacon",
  (t) => ({
    id: t.text().primaryKey(),
    deviceId: t.bigint().notNull(),
    owner: t.hex().notNull(),
    nonce: t.bigint().notNull(),
    at: t.bigint().notNull(),
    /** The recipients' X25519 keys, packed (the owner's beacon key first, then its responders). */
    recipients: t.hex().notNull(),
    /** One HPKE-sealed location per recipient (src/beacons): only their keys open it. */
    ciphertext: t.hex().notNull(),
    ...at(t),
  }),
  (table) => ({ deviceIdx: index().on(table.deviceId) }),
);

/** Every change of an owner's beacon recipients: its own beacon key, responders added and removed. */
export const beaconRecipientChange = onchainTable(
  "beacon_recipient_change",
  (t) => ({
    id: t.text().primaryKey(),
    owner: t.hex().notNull(),
    change: t.text().notNull(),
    key: t.hex().notNull(),
    ...at(t),
  }),
  (table) => ({ ownerIdx: index().on(table.owner) }),
);

// ------------------------------------------------------------------ locks

/** A lock (a device) that has lock events: its revoke-all epoch per owner and counts. */
export const lock = onchainTable("lock", (t) => ({
  id: t.bigint().primaryKey(),
  /** The owner whose keys the last revoke-all voided, and the epoch it moved to. */
  epochOwner: t.hex(),
  epoch: t.bigint().notNull(),
  revokedKeys: t.integer().notNull(),
  anchoredBatches: t.integer().notNull(),
  lastAnchorSeq: t.bigint(),
  /** The log chain's head after the last anchored batch (LockAccess.lockState's logHead). */
  logHead: t.hex(),
}));

export const lockKeyRevocation = onchainTable(
  "lock_key_revocation",
  (t) => ({
    id: t.text().primaryKey(),
    lockId: t.bigint().notNull(),
    owner: t.hex().notNull(),
    keyId: t.bigint().notNull(),
    ownerEpoch: t.integer().notNull(),
    by: t.hex().notNull(),
    ...at(t),
  }),
  (table) => ({ lockIdx: index().on(table.lockId) }),
);

export const lockEpoch = onchainTable(
  "lock_epoch",
  (t) => ({
    id: t.text().primaryKey(),
    lockId: t.bigint().notNull(),
    owner: t.hex().notNull(),
    epoch: t.bigint().notNull(),
    ...at(t),
  }),
  (table) => ({ lockIdx: index().on(table.lockId) }),
);

/** A manager appointment, keyed by lock, owner epoch and manager; `removed` once ManagerRemoved. */
export const lockManager = onchainTable(
  "lock_manager",
  (t) => ({
    lockId: t.bigint().notNull(),
    owner: t.hex().notNull(),
    manager: t.hex().notNull(),
    ownerEpoch: t.integer().notNull(),
    expiry: t.bigint().notNull(),
    removed: t.boolean().notNull(),
    appointedBlock: t.bigint().notNull(),
    removedBlock: t.bigint(),
  }),
  (table) => ({
    pk: primaryKey({ columns: [table.lockId, table.ownerEpoch, table.manager] }),
    lockIdx: index().on(table.lockId),
  }),
);

export const lockLogBatch = onchainTable(
  "lock_log_batch",
  (t) => ({
    lockId: t.bigint().notNull(),
    seq: t.bigint().notNull(),
    root: t.hex().notNull(),
    count: t.bigint().notNull(),
    fromTime: t.bigint().notNull(),
    toTime: t.bigint().notNull(),
    head: t.hex().notNull(),
    ...at(t),
  }),
  (table) => ({ pk: primaryKey({ columns: [table.lockId, table.seq] }) }),
);

// ------------------------------------------------------------------ custody

export const shipment = onchainTable(
  "shipment",
  (t) => ({
    id: t.hex().primaryKey(),
    /** The shipper (the creator, whose id space the shipment id is in). */
    creator: t.hex().notNull(),
    tracker: t.bigint().notNull(),
    epc: t.text().notNull(),
    receiver: t.hex().notNull(),
    custodian: t.hex().notNull(),
    deadline: t.bigint().notNull(),
    maxSilence: t.bigint().notNull(),
    minTemp: t.integer().notNull(),
    maxTemp: t.integer().notNull(),
    metadataHash: t.hex().notNull(),
    childrenRoot: t.hex().notNull(),
    /** The pallet this shipment was split off, if any. */
    pallet: t.hex(),
    handoffSeq: t.bigint().notNull(),
    checkpointSeq: t.bigint().notNull(),
    lastCheckpointAt: t.bigint(),
    breached: t.boolean().notNull(),
    excursionProven: t.boolean().notNull(),
    overdue: t.boolean().notNull(),
    silent: t.boolean().notNull(),
    delivered: t.boolean().notNull(),
    deliveredAt: t.bigint(),
    createdAt: t.bigint().notNull(),
    createdBlock: t.bigint().notNull(),
  }),
  (table) => ({
    creatorIdx: index().on(table.creator),
    receiverIdx: index().on(table.receiver),
    custodianIdx: index().on(table.custodian),
    trackerIdx: index().on(table.tracker),
    palletIdx: index().on(table.pallet),
  }),
);

export const handoff = onchainTable(
  "handoff",
  (t) => ({
    id: t.text().primaryKey(),
    shipmentId: t.hex().notNull(),
    from: t.hex().notNull(),
    to: t.hex().notNull(),
    seq: t.bigint().notNull(),
    bizStep: t.hex().notNull(),
    disposition: t.hex().notNull(),
    readPoint: t.hex().notNull(),
    at: t.bigint().notNull(),
    ...at(t),
  }),
  (table) => ({ shipmentIdx: index().on(table.shipmentId, table.seq) }),
);

export const checkpoint = onchainTable(
  "checkpoint",
  (t) => ({
    id: t.text().primaryKey(),
    shipmentId: t.hex().notNull(),
    seq: t.bigint().notNull(),
    readingsRoot: t.hex().notNull(),
    count: t.bigint().notNull(),
    minTemp: t.integer().notNull(),
    maxTemp: t.integer().notNull(),
    location: t.hex().notNull(),
    at: t.bigint().notNull(),
    ...at(t),
  }),
  (table) => ({ shipmentIdx: index().on(table.shipmentId, table.seq) }),
);

/** Breached, DeviceContradicted (excursion proven), MarkedOverdue, MarkedSilent, Delivered. */
export const shipmentMark = onchainTable(
  "shipment_mark",
  (t) => ({
    id: t.text().primaryKey(),
    shipmentId: t.hex().notNull(),
    kind: t.text().notNull(),
    data: t.json().$type<Record<string, string | number | boolean | null>>().notNull(),
    ...at(t),
  }),
  (table) => ({ shipmentIdx: index().on(table.shipmentId) }),
);

export const palletChild = onchainTable(
  "pallet_child",
  (t) => ({ child: t.hex().primaryKey(), pallet: t.hex().notNull(), ...at(t) }),
  (table) => ({ palletIdx: index().on(table.pallet) }),
);

// ------------------------------------------------------------------ channels

export const channel = onchainTable(
  "channel",
  (t) => ({
    id: t.hex().primaryKey(),
    payer: t.bigint().notNull(),
    payee: t.bigint().notNull(),
    token: t.hex().notNull(),
    rate: t.bigint().notNull(),
    allowance: t.bigint().notNull(),
    openedAt: t.bigint().notNull(),
    salt: t.bigint().notNull(),
    payerKeyHash: t.hex().notNull(),
    payerPeriod: t.bigint().notNull(),
    /** The opening deposit plus every top-up. */
    deposit: t.bigint().notNull(),
    /** Cumulative paid to the payee. */
    paid: t.bigint().notNull(),
    /** deposit − paid while open; 0 once closed. */
    balance: t.bigint().notNull(),
    closesAt: t.bigint(),
    closeStartedBlock: t.bigint(),
    closed: t.boolean().notNull(),
    refund: t.bigint(),
    payerOwner: t.hex(),
    closedBlock: t.bigint(),
  }),
  (table) => ({ payerIdx: index().on(table.payer), payeeIdx: index().on(table.payee) }),
);

/** ChannelOpened's deposit ("open"), ChannelToppedUp ("top_up"), ChannelClaimed ("claim"), ChannelCloseStarted, ChannelClosed. */
export const channelEvent = onchainTable(
  "channel_event",
  (t) => ({
    id: t.text().primaryKey(),
    channelId: t.hex().notNull(),
    kind: t.text().notNull(),
    /** Deposit or top-up amount, cumulative paid for a claim or a close. */
    amount: t.bigint(),
    account: t.hex(),
    ...at(t),
  }),
  (table) => ({ channelIdx: index().on(table.channelId) }),
);

/** Withdrawn (an account's refunds) and DeviceWithdrawn (a payee device's earnings). */
export const withdrawal = onchainTable("withdrawal", (t) => ({
  id: t.text().primaryKey(),
  account: t.hex(),
  deviceId: t.bigint(),
  token: t.hex().notNull(),
  to: t.hex().notNull(),
  amount: t.bigint().notNull(),
  ...at(t),
}));

// ------------------------------------------------------------------ alerts

/** One row per alert (see src/watch/alerts.ts): an onchain table, so a reorg removes an orphaned alert. */
export const alert = onchainTable(
  "alert",
  (t) => ({
    id: t.text().primaryKey(),
    kind: t.text().notNull(),
    chainId: t.integer().notNull(),
    blockNumber: t.bigint().notNull(),
    blockHash: t.hex().notNull(),
    txHash: t.hex().notNull(),
    logIndex: t.integer().notNull(),
    timestamp: t.bigint().notNull(),
    subjects: t
      .json()
      .$type<{ owners: string[]; device?: string; lock?: string; shipment?: string; channel?: string }>()
      .notNull(),
    data: t.json().$type<Record<string, string | number | boolean | null>>().notNull(),
  }),
  (table) => ({ blockIdx: index().on(table.blockNumber, table.logIndex) }),
);

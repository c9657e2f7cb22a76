/**
 * The lock role's decision: challenge–response unlocking checked entirely from the state the lock
 * last read from the chain, so that it works with the chain unreachable. Every check that fails is
 * named in the decision, for the lock's log.
 *
 * The lock keeps its own clock monotonic (a clock set back cannot revive an expired key) and fails
 * closed once its chain state is older than `maxStalenessS`.
 */
import { randomBytes } from "node:crypto";
import type { Deployment, Message } from "../../eip712/index.js";
import { TypedDataHasher, bytesToHex, keccak } from "../../eip712/fast.js";
import { hexToBytes } from "../../eip712/fast.js";
import type { DeviceSignatureVerifier } from "../../crypto/verify.js";

/** What the lock knows of the chain, as of `readAt` (its own clock, seconds). */
export interface LockChainState {
  /** The lock's registry owner. */
  owner: string;
  /** The lock device's own status in the registry: 1 = Active. */
  lockStatus: number;
  /**
   * Whether the lock's current key's provenance reaches its manufacturer (the registry's
   * `deviceTrust(lock).keyAttested`): LockAccess takes the lock's log only from such a key.
   */
  keyAttested: boolean;
  /**
   * LockAccess: the key epoch a certificate must carry now (`lockState(lock).epoch`): the registry's
   * ownership epoch in the high 16 bits (it moves at every transfer), the number of revoke-alls in
   * this ownership period in the low 16 bits.
   */
  epoch: number;
  /** LockAccess: whether key `keyId` issued in the current ownership period is revoked. */
  isRevoked(keyId: bigint): boolean;
  /** LockAccess: until when `manager` may sign keys in the current ownership period (0: not appointed). */
  managerExpiry(manager: string): bigint;
  /**
   * Registry status of a holder that is itself a device (0 = not a device, 1 = Active), or
   * `undefined` when the lock has never learnt it (a holder first seen while offline).
   */
  holderStatus(holder: string): number | undefined;
  readAt: number;
}

/** The ownership period (the registry's ownership epoch) a key epoch belongs to: its high 16 bits. */
export function ownerEpochOf(keyEpoch: unknown): number {
  return Math.floor(Number(keyEpoch) / 65_536);
}

export interface SignedCertificate {
  /** AccessKey fields (integers as decimal strings or bigints). */
  key: Message;
  signature: string;
}

/** An owner-signed `RevocationCheckpoint` with the revoked key ids it commits to. */
export interface SignedCheckpoint {
  checkpoint: Message;
  signature: string;
  /** The key ids revoked in the ownership period, ascending: keccak256 of them as packed uint64 is `revokedRoot`. */
  revoked: (string | bigint)[];
}

/** Why a checkpoint was not taken. */
export type CheckpointRefusal =
  | "no-state"
  | "foreign-lock"
  | "not-owner"
  | "signature"
  | "revoked-list"
  | "from-the-future"
  | "not-newer"
  | "epoch-behind";

export interface UnlockRequestMessage {
  request: Message;
  signature: string;
}

/** The check that refused an unlock, in the order they are made. */
export type DenyReason =
  | "challenge"
  | "foreign-lock"
  | "request-signature"
  | "request-expired"
  | "certificate-signature"
  | "previous-owner"
  | "issuer"
  | "stale-state"
  | "lock-not-active"
  | "holder-not-active"
  | "holder-unknown"
  | "epoch"
  | "revoked"
  | "not-yet-valid"
  | "expired"
  | "schedule";

export type Decision = { open: true; at: number } | { open: false; at: number; reason: DenyReason };

export interface LockRoleOptions {
  lock: bigint;
  /** The LockAccess deployment (EIP-712 domain "lock"). */
  deployment: Deployment;
  hasher: TypedDataHasher;
  verifier: DeviceSignatureVerifier;
  /** How old the chain state may be before the lock fails closed (s). */
  maxStalenessS: number;
  /** How long a challenge may be answered (s). Default 30. */
  challengeTtlS?: number;
  /** The lock's clock (s). Default: the system clock. */
  clock?: () => number;
  /** How far ahead of the lock's clock a checkpoint's `issuedAt` may be (s). Default 300. */
  checkpointSkewS?: number;
}

/** keccak256 of key ids as packed uint64, in the order given: a checkpoint's `revokedRoot`. */
export function revokedRootOf(ids: readonly (string | bigint)[]): string {
  const packed = new Uint8Array(8 * ids.length);
  const view = new DataView(packed.buffer);
  ids.forEach((id, i) => view.setBigUint64(8 * i, BigInt(id)));
  return bytesToHex(keccak(packed));
}

/** Hour of the week (0 = Monday 00:00–01:00 UTC) of a unix time. */
export function hourOfWeek(seconds: number): number {
  // 1970-01-01 was a Thursday: hour 0 of that day is hour 72 of its week.
  return (Math.floor(seconds / 3600) + 72) % 168;
}

export class LockRole {
  private state: LockChainState | undefined;
  /** What a checkpoint newer than `state` adds to it (cleared by a newer chain read). */
  private overlay: { freshAt: number; epoch: number; owner: string; revoked: Set<bigint> } | undefined;
  private readonly challenges = new Map<string, number>();
  /** Certificates whose issuer signature was already checked (a certificate never changes). */
  private readonly verifiedCertificates = new Set<string>();
  private lastTime = 0;

  constructor(private readonly opts: LockRoleOptions) {}

  /** The lock's time: its clock, never earlier than any time it has seen. */
  now(): number {
    this.lastTime = Math.max(this.lastTime, Math.floor((this.opts.clock ?? (() => Date.now() / 1000))()));
    return this.lastTime;
  }

  /** Replaces the chain state the lock decides from. */
  update(state: LockChainState): void {
    this.state = state;
    const o = this.overlay;
    if (
      o &&
      (state.readAt >= o.freshAt ||
        state.owner.toLowerCase() !== o.owner ||
        ownerEpochOf(state.epoch) !== ownerEpochOf(o.epoch))
    )
      this.overlay = undefined;
  }

  /** As of when (lock's clock, s) the lock knows its revocation state: the chain read or a newer checkpoint. */
  freshAt(): number | undefined {
    return this.overlay?.freshAt ?? this.state?.readAt;
  }

  /**
   * Takes an owner-signed revocation checkpoint that reached the lock without the chain (a guest's
   * phone carried it): the lock's state is then as fresh as the checkpoint's `issuedAt`, its epoch
   * the checkpoint's, and the listed keys revoked. Only the owner the lock last read may sign one,
   * for the ownership period the lock last read (its epoch's high 16 bits: after a buy-back, the
   * same owner's checkpoints of an earlier period are not its word on this one); an older
   * checkpoint, or one that moves the epoch back, adds nothing and is refused.
   */
  applyCheckpoint(cp: SignedCheckpoint): { accepted: true } | { accepted: false; reason: CheckpointRefusal } {
    const refuse = (reason: CheckpointRefusal) => ({ accepted: false as const, reason });
    const s = this.state;
    if (!s) return refuse("no-state");
    const c = cp.checkpoint;
    if (BigInt(c.lock as string) !== this.opts.lock) return refuse("foreign-lock");
    const owner = s.owner.toLowerCase();
    if (String(c.owner).toLowerCase() !== owner || ownerEpochOf(c.epoch) !== ownerEpochOf(s.epoch))
      return refuse("not-owner");
    const digest = this.opts.hasher.digest("RevocationCheckpoint", this.opts.deployment, c);
    if (!this.opts.verifier.verify(owner, digest, hexToBytes(cp.signature, "checkpoint signature"))) {
      return refuse("signature");
    }
    const ids = cp.revoked.map((id) => BigInt(id));
    const ascending = ids.every((id, i) => i === 0 || id > ids[i - 1]);
    if (
      !ascending ||
      ids.length !== Number(c.revokedCount) ||
      revokedRootOf(ids) !== String(c.revokedRoot).toLowerCase()
    )
      return refuse("revoked-list");
    const now = this.now();
    const issuedAt = Number(c.issuedAt);
    if (issuedAt > now + (this.opts.checkpointSkewS ?? 300)) return refuse("from-the-future");
    if (issuedAt <= (this.freshAt() ?? 0)) return refuse("not-newer");
    const epoch = Number(c.epoch);
    if (epoch < Math.max(s.epoch, this.overlay?.epoch ?? 0)) return refuse("epoch-behind");
    const revoked = new Set(this.overlay?.revoked ?? []);
    for (const id of ids) revoked.add(id);
    this.overlay = { freshAt: Math.min(issuedAt, now), epoch, owner, revoked };
    return { accepted: true };
  }

  /** A fresh random challenge, answerable once within the challenge lifetime. */
  challenge(): string {
    const now = this.now();
    for (const [c, expiry] of this.challenges) if (expiry < now) this.challenges.delete(c);
    const c = bytesToHex(randomBytes(32));
    this.challenges.set(c, now + (this.opts.challengeTtlS ?? 30));
    return c;
  }

  /** Decides an unlock request made with certificate `cert`. */
  decide(cert: SignedCertificate, req: UnlockRequestMessage): Decision {
    const now = this.now();
    const deny = (reason: DenyReason): Decision => ({ open: false, at: now, reason });
    const { hasher, deployment, verifier } = this.opts;
    const k = cert.key;
    const r = req.request;

    // A challenge is spent by its first use, whatever the outcome.
    const challenge = String(r.challenge).toLowerCase();
    const expiry = this.challenges.get(challenge);
    this.challenges.delete(challenge);
    if (expiry === undefined || expiry < now) return deny("challenge");
    if (BigInt(r.lock as string) !== this.opts.lock || BigInt(k.lock as string) !== this.opts.lock) {
      return deny("foreign-lock");
    }
    const keyStruct = hasher.structHash("AccessKey", k);
    const keyHash = bytesToHex(keyStruct);
    if (String(r.accessKey).toLowerCase() !== keyHash) return deny("request-signature");
    const requestDigest = hasher.digest("UnlockRequest", deployment, r);
    if (!verifier.verify(String(k.holder), requestDigest, hexToBytes(req.signature, "request signature"))) {
      return deny("request-signature");
    }
    if (BigInt(r.deadline as string) < BigInt(now)) return deny("request-expired");
    const certId = keyHash + cert.signature.toLowerCase();
    if (!this.verifiedCertificates.has(certId)) {
      const certDigest = hasher.digestOfStruct("AccessKey", deployment, keyStruct);
      if (!verifier.verify(String(k.issuer), certDigest, hexToBytes(cert.signature, "certificate signature"))) {
        return deny("certificate-signature");
      }
      if (this.verifiedCertificates.size >= 10_000) this.verifiedCertificates.clear();
      this.verifiedCertificates.add(certId);
    }

    const s = this.state;
    const o = this.overlay;
    if (!s || now - (o?.freshAt ?? s.readAt) > this.opts.maxStalenessS) return deny("stale-state");
    // A certificate belongs to the ownership period its epoch names: another owner's, or the same
    // owner's before a sale and buy-back, is dead whatever its dates say.
    const owner = String(k.owner).toLowerCase();
    const keyEpoch = o?.epoch ?? s.epoch;
    if (owner !== s.owner.toLowerCase() || ownerEpochOf(k.epoch) !== ownerEpochOf(keyEpoch))
      return deny("previous-owner");
    const issuer = String(k.issuer).toLowerCase();
    if (issuer !== owner && s.managerExpiry(issuer) < BigInt(now)) return deny("issuer");
    if (s.lockStatus !== 1) return deny("lock-not-active");
    const holderStatus = s.holderStatus(String(k.holder));
    if (holderStatus === undefined) return deny("holder-unknown");
    if (holderStatus !== 0 && holderStatus !== 1) return deny("holder-not-active");
    if (Number(k.epoch) !== keyEpoch) return deny("epoch");
    const keyId = BigInt(k.keyId as string);
    if (s.isRevoked(keyId) || o?.revoked.has(keyId)) return deny("revoked");
    if (BigInt(now) < BigInt(k.validFrom as string)) return deny("not-yet-valid");
    if (BigInt(now) > BigInt(k.validUntil as string)) return deny("expired");
    const schedule = BigInt(k.schedule as string);
    if (schedule !== 0n && ((schedule >> BigInt(hourOfWeek(now))) & 1n) === 0n) return deny("schedule");
    return { open: true, at: now };
  }
}

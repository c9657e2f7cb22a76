/**
 * The lock role's decision: challenge–response unlocking checked entirely from the state the lock
 * last read from the chain, so that it works with the chain unreachable. Every check that fails is
 * named in the decision, for the lock's log.
 *
 * The lock keeps its own clock monotonic (a clock set back cannot revive an expired key) and fails
 * closed once its chain state is older than `maxStalenessS`.
 */
import { randomBytes } from "node:crypto";
import type { Deployment, Message } from "../../eip712";
import { TypedDataHasher, bytesToHex } from "../../eip712/fast";
import { hexToBytes } from "../../eip712/fast";
import type { DeviceSignatureVerifier } from "../../crypto/verify";

/** What the lock knows of the chain, as of `readAt` (its own clock, seconds). */
export interface LockChainState {
  /** The lock's registry owner, and since when (seconds) it owns the lock. */
  owner: string;
  ownerSince: bigint;
  /** The lock device's own status in the registry: 1 = Active. */
  lockStatus: number;
  /** LockAccess: the lock's key epoch. */
  epoch: number;
  /** LockAccess: whether key `keyId` issued under `owner` is revoked. */
  isRevoked(owner: string, keyId: bigint): boolean;
  /** LockAccess: until when `manager` may sign keys for `owner` (0: not appointed). */
  managerExpiry(owner: string, manager: string): bigint;
  /** Registry status of a holder that is itself a device (0 = not a device, 1 = Active). */
  holderStatus(holder: string): number;
  readAt: number;
}

export interface SignedCertificate {
  /** AccessKey fields (integers as decimal strings or bigints). */
  key: Message;
  signature: string;
}

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
}

/** Hour of the week (0 = Monday 00:00–01:00 UTC) of a unix time. */
export function hourOfWeek(seconds: number): number {
  // 1970-01-01 was a Thursday: hour 0 of that day is hour 72 of its week.
  return (Math.floor(seconds / 3600) + 72) % 168;
}

export class LockRole {
  private state: LockChainState | undefined;
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
    if (!s || now - s.readAt > this.opts.maxStalenessS) return deny("stale-state");
    const owner = String(k.owner).toLowerCase();
    if (owner !== s.owner.toLowerCase() || BigInt(k.issuedAt as string) < s.ownerSince) return deny("previous-owner");
    const issuer = String(k.issuer).toLowerCase();
    if (issuer !== owner && s.managerExpiry(s.owner, issuer) < BigInt(now)) return deny("issuer");
    if (s.lockStatus !== 1) return deny("lock-not-active");
    const holderStatus = s.holderStatus(String(k.holder));
    if (holderStatus !== 0 && holderStatus !== 1) return deny("holder-not-active");
    if (Number(k.epoch) !== s.epoch) return deny("epoch");
    if (s.isRevoked(s.owner, BigInt(k.keyId as string))) return deny("revoked");
    if (BigInt(now) < BigInt(k.validFrom as string)) return deny("not-yet-valid");
    if (BigInt(now) > BigInt(k.validUntil as string)) return deny("expired");
    const schedule = BigInt(k.schedule as string);
    if (schedule !== 0n && ((schedule >> BigInt(hourOfWeek(now))) & 1n) === 0n) return deny("schedule");
    return { open: true, at: now };
  }
}

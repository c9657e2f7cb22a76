/**
 * The guest's side of a smart lock: a key certificate as a file, what it says in plain words, and
 * the signed answer to a lock's challenge. A phone app does the same with its secure-enclave key.
 */
import type { Deployment, Message } from "../../eip712/index.js";
import { TypedDataHasher, bytesToHex } from "../../eip712/fast.js";
import type { DeviceSigner } from "../../crypto/deviceKey.js";
import { DeviceSignatureVerifier } from "../../crypto/verify.js";
import { hexToBytes } from "../../eip712/fast.js";
import { hourOfWeek, ownerEpochOf } from "./lock.js";

/** A key certificate as the owner hands it to a guest. */
export interface CertificateFile {
  type: "AccessKey";
  /** The LockAccess deployment the certificate (and every unlock request) is signed for. */
  chainId: string;
  verifyingContract: string;
  key: Message;
  signature: string;
  /** Where the lock listens, if the owner knows. */
  lockUrl?: string;
}

const FIELDS = [
  "lock",
  "holder",
  "owner",
  "issuer",
  "issuedAt",
  "validFrom",
  "validUntil",
  "schedule",
  "epoch",
  "keyId",
];

/** Reads a certificate file's JSON; throws an error naming the first bad field. */
export function parseCertificate(json: unknown): CertificateFile {
  const c = json as Partial<CertificateFile> | null;
  if (!c || typeof c !== "object") throw new Error("certificate must be a JSON object");
  if (c.type !== "AccessKey") throw new Error('certificate.type must be "AccessKey"');
  if (typeof c.chainId !== "string" || !/^\d+$/.test(c.chainId)) throw new Error("certificate.chainId must be decimal");
  if (typeof c.verifyingContract !== "string" || !/^0x[0-9a-fA-F]{40}$/.test(c.verifyingContract))
    throw new Error("certificate.verifyingContract must be the LockAccess address");
  if (!c.key || typeof c.key !== "object") throw new Error("certificate.key must hold the AccessKey fields");
  for (const f of FIELDS) if (!(f in c.key)) throw new Error(`certificate.key.${f} is missing`);
  if (typeof c.signature !== "string" || !/^0x([0-9a-fA-F]{2})+$/.test(c.signature))
    throw new Error("certificate.signature must be hex bytes");
  return c as CertificateFile;
}

export function deploymentOf(cert: CertificateFile): Deployment {
  return { chainId: BigInt(cert.chainId), verifyingContract: cert.verifyingContract };
}

/** The hours of the week a schedule allows, as ranges like "Mon 09:00–17:00"; "any time" for 0. */
export function describeSchedule(schedule: bigint): string[] {
  if (schedule === 0n) return ["any time"];
  const days = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
  const out: string[] = [];
  for (let h = 0; h < 168; h++) {
    if (((schedule >> BigInt(h)) & 1n) === 0n) continue;
    let end = h;
    while (
      end + 1 < 168 &&
      ((schedule >> BigInt(end + 1)) & 1n) === 1n &&
      Math.floor((end + 1) / 24) === Math.floor(h / 24)
    )
      end++;
    const hh = (n: number) => String(n % 24).padStart(2, "0") + ":00";
    out.push(`${days[Math.floor(h / 24)]} ${hh(h)}–${end % 24 === 23 ? "24:00" : hh(end + 1)} UTC`);
    h = end;
  }
  return out;
}

/** What a certificate says, in words, and whether its issuer's signature checks out. */
export function showCertificate(cert: CertificateFile, hasher: TypedDataHasher, now = Date.now() / 1000) {
  const k = cert.key;
  const iso = (s: unknown) => new Date(Number(s) * 1000).toISOString();
  const digest = hasher.digest("AccessKey", deploymentOf(cert), k);
  let signatureValid = false;
  try {
    signatureValid = new DeviceSignatureVerifier([]).verify(String(k.issuer), digest, hexToBytes(cert.signature));
  } catch {
    signatureValid = false;
  }
  const validFrom = Number(k.validFrom);
  const validUntil = Number(k.validUntil);
  const schedule = BigInt(k.schedule as string);
  return {
    lock: String(k.lock),
    keyId: String(k.keyId),
    holder: String(k.holder),
    owner: String(k.owner),
    issuer: String(k.issuer),
    issuedBy: String(k.issuer).toLowerCase() === String(k.owner).toLowerCase() ? "owner" : "manager",
    issuedAt: iso(k.issuedAt),
    validFrom: iso(validFrom),
    validUntil: iso(validUntil),
    schedule: describeSchedule(schedule),
    epoch: Number(k.epoch),
    /** The lock's ownership period the certificate belongs to: it dies when the lock changes hands. */
    ownerEpoch: ownerEpochOf(k.epoch),
    chainId: cert.chainId,
    lockAccess: cert.verifyingContract,
    signatureValid,
    usableNow:
      signatureValid &&
      now >= validFrom &&
      now <= validUntil &&
      (schedule === 0n || ((schedule >> BigInt(hourOfWeek(now))) & 1n) === 1n),
    certificateHash: bytesToHex(hasher.structHash("AccessKey", k)),
  };
}

/** The guest's signed answer to `challenge`: an `UnlockRequest` valid for `ttlS` seconds. */
export async function signUnlockRequest(
  signer: DeviceSigner,
  cert: CertificateFile,
  challenge: string,
  hasher: TypedDataHasher,
  opts: { ttlS?: number; now?: number } = {},
): Promise<{ request: Message; signature: string }> {
  if (signer.signer.toLowerCase() !== String(cert.key.holder).toLowerCase())
    throw new Error(`this key (${signer.signer}) is not the certificate's holder (${String(cert.key.holder)})`);
  if (!/^0x[0-9a-fA-F]{64}$/.test(challenge)) throw new Error("challenge must be 32 bytes of hex");
  const request: Message = {
    lock: String(cert.key.lock),
    accessKey: bytesToHex(hasher.structHash("AccessKey", cert.key)),
    challenge: challenge.toLowerCase(),
    deadline: String(Math.floor(opts.now ?? Date.now() / 1000) + (opts.ttlS ?? 60)),
  };
  const signature = await signer.sign(hasher.digest("UnlockRequest", deploymentOf(cert), request));
  return { request, signature: bytesToHex(signature) };
}

/** Asks the lock at `url` for a challenge, answers it, and returns the lock's decision. */
export async function unlockAt(
  url: string,
  cert: CertificateFile,
  signer: DeviceSigner,
  hasher: TypedDataHasher,
  opts: { ttlS?: number; now?: number } = {},
) {
  const base = url.replace(/\/$/, "");
  const res = await fetch(`${base}/v1/challenge`);
  if (!res.ok) throw new Error(`${base}/v1/challenge: HTTP ${res.status}`);
  const { challenge } = (await res.json()) as { challenge: string };
  const request = await signUnlockRequest(signer, cert, challenge, hasher, opts);
  const answer = await fetch(`${base}/v1/unlock`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ certificate: { key: cert.key, signature: cert.signature }, request }),
  });
  const body = (await answer.json()) as {
    open?: boolean;
    reason?: string;
    at?: number;
    record?: number;
    error?: string;
  };
  if (!answer.ok) throw new Error(`${base}/v1/unlock: ${body.error ?? `HTTP ${answer.status}`}`);
  return body as { open: boolean; reason?: string; at: number; record: number };
}

/** What the chain says of a certificate: the problems that make the lock refuse it (none: usable). */
export interface CertificateOnChain {
  checkedOnChain: true;
  lockStatus: "unknown" | "active" | "quarantined" | "revoked";
  /** The lock's owner now, per the registry. */
  lockOwner?: string;
  /** Why the lock would refuse it, in words; empty when the chain has nothing against it. */
  problems: string[];
}

/**
 * Checks a certificate against the chain, as the lock will: the lock device exists and is active,
 * the certificate's owner is the lock's owner in the ownership period it names, its issuer is that
 * owner or a manager appointed by them (and not expired), all keys were not revoked since (epoch),
 * and this key was not revoked. A certificate signed by someone else is never "issued by owner".
 */
export async function checkCertificateOnChain(
  cert: CertificateFile,
  provider: import("ethers").Provider,
  now = Math.floor(Date.now() / 1000),
): Promise<CertificateOnChain> {
  const { LockAccess__factory } =
    await import("../../../typechain-types/factories/contracts/access/LockAccess__factory.js");
  const { IDeviceRegistry__factory } =
    await import("../../../typechain-types/factories/contracts/interfaces/IDeviceRegistry__factory.js");
  const k = cert.key;
  const lock = BigInt(k.lock as string);
  const access = LockAccess__factory.connect(cert.verifyingContract, provider);
  const registry = IDeviceRegistry__factory.connect(await access.registry(), provider);
  const statuses = ["unknown", "active", "quarantined", "revoked"] as const;
  const lockStatus = statuses[Number(await registry.deviceStatus(lock))] ?? "unknown";
  const problems: string[] = [];
  if (lockStatus === "unknown") {
    problems.push(`lock ${lock} does not exist: no device has that id in the registry`);
    return { checkedOnChain: true, lockStatus, problems };
  }
  if (lockStatus !== "active") problems.push(`lock ${lock} is ${lockStatus}: it opens nothing`);
  const [owner, ownerEpoch] = await registry.ownership(lock);
  const claimed = String(k.owner).toLowerCase();
  if (claimed !== owner.toLowerCase())
    problems.push(`not issued for the lock's owner: the certificate names ${k.owner}, the lock's owner is ${owner}`);
  else if (ownerEpochOf(k.epoch) !== Number(ownerEpoch))
    problems.push("issued in an earlier ownership period of the lock (it changed hands since)");
  const issuer = String(k.issuer).toLowerCase();
  if (issuer !== owner.toLowerCase()) {
    const until = await access.managerExpiry(lock, ownerEpoch, issuer);
    if (until === 0n) problems.push(`signed by ${k.issuer}, who is neither the lock's owner nor a manager of it`);
    else if (until < BigInt(now)) problems.push(`signed by manager ${k.issuer}, whose appointment ended`);
  }
  if (problems.length === 0) {
    if (BigInt(await access.keyEpoch(lock)) !== BigInt(k.epoch as string))
      problems.push("every key of the lock was revoked since it was issued (key epoch moved)");
    else if (await access.isRevoked(lock, ownerEpoch, BigInt(k.keyId as string)))
      problems.push(`key ${k.keyId} was revoked`);
  }
  return { checkedOnChain: true, lockStatus, lockOwner: owner, problems };
}

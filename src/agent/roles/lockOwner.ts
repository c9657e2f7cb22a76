/**
 * The owner's side of a smart lock, off chain: issue a key certificate (no gas) and sign a
 * revocation checkpoint for a lock that cannot reach the chain. Any ethers signer works (a wallet,
 * a hardware wallet, an injected browser wallet).
 */
import type { TypedDataDomain, TypedDataField } from "ethers";
import { typedData, type Deployment, type Message } from "../../eip712/index.js";
import type { CertificateFile } from "./guest.js";
import { revokedRootOf, type SignedCheckpoint } from "./lock.js";

export interface TypedDataSigner {
  getAddress(): Promise<string>;
  signTypedData(
    domain: TypedDataDomain,
    types: Record<string, TypedDataField[]>,
    value: Record<string, unknown>,
  ): Promise<string>;
}

export interface KeyGrant {
  lock: bigint | string;
  /** ERC-7913 signer bytes of the guest's key (an address, or a P-256 verifier and key). */
  holder: string;
  keyId: bigint | string;
  validUntil: bigint | number;
  validFrom?: bigint | number;
  /** Weekly hour mask (bit h = hour h from Monday 00:00 UTC); 0 or absent = any time. */
  schedule?: bigint;
  /**
   * The lock's current key epoch, `LockAccess.keyEpoch(lock)`: the ownership epoch in the high 16
   * bits, the revoke-alls of this ownership in the low 16. Default 0: a lock never sold and never
   * revoked-all; after a sale it is at least 65,536, and a certificate with another epoch is dead.
   */
  epoch?: number;
  /** The owner the key is issued under (defaults to the signer: the owner itself issues). */
  owner?: string;
  /** Default: now (s). */
  issuedAt?: bigint | number;
  lockUrl?: string;
}

/** Signs an `AccessKey` certificate as `issuer` (the owner, or a manager the owner appointed). */
export async function issueCertificate(
  issuer: TypedDataSigner,
  deployment: Deployment,
  grant: KeyGrant,
): Promise<CertificateFile> {
  const issuerAddress = await issuer.getAddress();
  const now = BigInt(Math.floor(Date.now() / 1000));
  const key: Message = {
    lock: BigInt(grant.lock).toString(),
    holder: grant.holder.toLowerCase(),
    owner: grant.owner ?? issuerAddress,
    issuer: issuerAddress,
    issuedAt: BigInt(grant.issuedAt ?? now).toString(),
    validFrom: BigInt(grant.validFrom ?? grant.issuedAt ?? now).toString(),
    validUntil: BigInt(grant.validUntil).toString(),
    schedule: (grant.schedule ?? 0n).toString(),
    epoch: String(grant.epoch ?? 0),
    keyId: BigInt(grant.keyId).toString(),
  };
  const t = typedData("AccessKey", deployment, key);
  const signature = await issuer.signTypedData(t.domain, t.types, key);
  return {
    type: "AccessKey",
    chainId: BigInt(deployment.chainId).toString(),
    verifyingContract: deployment.verifyingContract,
    key,
    signature,
    ...(grant.lockUrl ? { lockUrl: grant.lockUrl } : {}),
  };
}

/**
 * Signs a `RevocationCheckpoint`: as of `issuedAt`, the lock's key epoch and every key revoked in the
 * current ownership period (`LockAccess.isRevoked(lock, epoch >> 16, keyId)`).
 */
export async function signCheckpoint(
  owner: TypedDataSigner,
  deployment: Deployment,
  c: { lock: bigint | string; epoch: number; revoked: readonly bigint[]; issuedAt?: bigint | number },
): Promise<SignedCheckpoint> {
  const revoked = [...new Set(c.revoked)].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const checkpoint: Message = {
    lock: BigInt(c.lock).toString(),
    owner: await owner.getAddress(),
    epoch: String(c.epoch),
    revokedRoot: revokedRootOf(revoked),
    revokedCount: String(revoked.length),
    issuedAt: BigInt(c.issuedAt ?? Math.floor(Date.now() / 1000)).toString(),
  };
  const t = typedData("RevocationCheckpoint", deployment, checkpoint);
  const signature = await owner.signTypedData(t.domain, t.types, checkpoint);
  return { checkpoint, signature, revoked: revoked.map(String) };
}

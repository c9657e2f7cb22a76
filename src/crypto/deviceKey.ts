/**
 * A device key as the chain sees it: an ERC-7913 signer (`bytes`) and a way to sign a 32-byte
 * EIP-712 digest. secp256k1 keys are 20-byte addresses; P-256 keys are `verifier || qx || qy`.
 */
import { SigningKey, Wallet, computeAddress } from "ethers";
import { generateP256Key, p256Signer, signP256 } from "./p256";
import type { KeyObject as NodeKeyObject } from "node:crypto";

export type DeviceKeyKind = "secp256k1" | "p256";

export interface DeviceKey {
  readonly kind: DeviceKeyKind;
  /** The ERC-7913 signer bytes, 0x-hex. */
  readonly signer: string;
  /** Signs an EIP-712 digest; returns the signature bytes the verifier expects. */
  signDigest(digest: string): string;
}

/** A secp256k1 device key: signer is the 20-byte address; signatures are 65-byte `r || s || v`. */
export function secp256k1Key(privateKey: string | SigningKey): DeviceKey {
  const signingKey = typeof privateKey === "string" ? new SigningKey(privateKey) : privateKey;
  return {
    kind: "secp256k1",
    signer: computeAddress(signingKey.publicKey).toLowerCase(),
    signDigest: (digest) => signingKey.sign(digest).serialized,
  };
}

/** A P-256 device key behind the ERC-7913 verifier at `verifier`: signatures are 64-byte `r || s` over sha256(digest). */
export function p256Key(verifier: string, privateKey: NodeKeyObject): DeviceKey {
  return {
    kind: "p256",
    signer: p256Signer(verifier, privateKey).toLowerCase(),
    signDigest: (digest) => signP256(privateKey, digest),
  };
}

/** A new random device key of `kind` (P-256 needs the verifier's address). */
export function randomDeviceKey(kind: DeviceKeyKind, verifier?: string): DeviceKey {
  if (kind === "secp256k1") return secp256k1Key(Wallet.createRandom().signingKey);
  if (!verifier) throw new Error("randomDeviceKey: a P-256 key needs the verifier address");
  return p256Key(verifier, generateP256Key().privateKey);
}

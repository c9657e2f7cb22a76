/**
 * Device keys as the chain sees them: an ERC-7913 signer (`bytes`) and a way to sign a 32-byte
 * EIP-712 digest. secp256k1 keys are 20-byte addresses and sign with native libsecp256k1; P-256
 * keys are `verifier || qx || qy` and sign with `node:crypto` over sha256(digest).
 */
import { createRequire } from "node:module";
import { computeAddress, getBytes, hexlify, Wallet } from "ethers";
import type { KeyObject } from "node:crypto";
import { generateP256Key, p256Signer, signP256Bytes } from "./p256.js";

// The native binding (prebuilt in the package) rather than its pure-JS fallback.
const secp256k1: typeof import("secp256k1") = createRequire(import.meta.url)("secp256k1/bindings");

export type DeviceKeyKind = "secp256k1" | "p256";

/**
 * What the agent needs of a device key: its ERC-7913 signer bytes and a signature over a digest.
 * A secure element or an HSM implements the same interface.
 */
export interface DeviceSigner {
  readonly kind: DeviceKeyKind;
  /** The ERC-7913 signer bytes, lower-case 0x-hex. */
  readonly signer: string;
  /** Signs a 32-byte EIP-712 digest; returns the signature bytes the on-chain verifier expects. */
  sign(digest: Uint8Array): Promise<Uint8Array>;
}

/** A key held in this process's memory: it can also sign synchronously. */
export interface DeviceKey extends DeviceSigner {
  /** Signs a 0x-hex digest; returns 0x-hex signature bytes. */
  signDigest(digest: string): string;
  /** Signs a digest given as bytes. */
  signBytes(digest: Uint8Array): Uint8Array;
}

function softwareKey(kind: DeviceKeyKind, signer: string, signBytes: (d: Uint8Array) => Uint8Array): DeviceKey {
  return {
    kind,
    signer: signer.toLowerCase(),
    signBytes,
    signDigest: (digest) => hexlify(signBytes(getBytes(digest))),
    sign: async (digest) => signBytes(digest),
  };
}

/** A secp256k1 device key: the signer is its 20-byte address; signatures are 65-byte `r || s || v`, low-s. */
export function secp256k1Key(privateKey: string | Uint8Array): DeviceKey {
  const secret = typeof privateKey === "string" ? getBytes(privateKey) : privateKey;
  if (secret.length !== 32 || !secp256k1.privateKeyVerify(secret)) throw new Error("secp256k1: invalid private key");
  const address = computeAddress(hexlify(secp256k1.publicKeyCreate(secret, false)));
  return softwareKey("secp256k1", address, (digest) => {
    const { signature, recid } = secp256k1.ecdsaSign(digest, secret);
    const out = new Uint8Array(65);
    out.set(signature, 0);
    out[64] = 27 + recid;
    return out;
  });
}

/** A P-256 device key behind the ERC-7913 verifier at `verifier`: 64-byte `r || s` over sha256(digest), low-s. */
export function p256Key(verifier: string, privateKey: KeyObject): DeviceKey {
  return softwareKey("p256", p256Signer(verifier, privateKey), (digest) => signP256Bytes(privateKey, digest));
}

/** A new random device key of `kind` (P-256 needs the verifier's address). */
export function randomDeviceKey(kind: DeviceKeyKind, verifier?: string): DeviceKey {
  if (kind === "secp256k1") return secp256k1Key(Wallet.createRandom().privateKey);
  if (!verifier) throw new Error("randomDeviceKey: a P-256 key needs the verifier address");
  return p256Key(verifier, generateP256Key().privateKey);
}

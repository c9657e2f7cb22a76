/**
 * Off-chain checks of device signatures with the same rules as the chain (OpenZeppelin
 * SignatureChecker + ECDSA, and ERC7913P256SHA256Verifier): secp256k1 signatures are 65 bytes with
 * a low s and v of 27 or 28; P-256 signatures are exactly 64 bytes, low s, by a key behind an
 * allowed verifier. Native code on both paths (libsecp256k1, OpenSSL); P-256 public keys are cached.
 * 20-byte contract signers (ERC-1271) cannot be judged off chain and are refused here.
 */
import { createPublicKey, verify as nodeVerify, type KeyObject } from "node:crypto";
import { createRequire } from "node:module";
import { keccak } from "../eip712/fast.js";
import { P256_N } from "./p256.js";

const secp256k1: typeof import("secp256k1") = createRequire(import.meta.url)("secp256k1/bindings");
const SECP256K1_HALF_N = Buffer.from("7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0", "hex");
/**
 * p − n of secp256k1. An `r` below it may stand for a nonce point whose x is r or r + n: ECDSA
 * verification takes both, ecrecover (v 27 or 28) only x = r.
 */
const SECP256K1_P_MINUS_N = Buffer.from("000000000000000000000000000000014551231950b75fc4402da1722fc9baee", "hex");
const P256_N_BYTES = Buffer.from(P256_N.toString(16), "hex");
const P256_HALF_N = Buffer.from((P256_N / 2n).toString(16).padStart(64, "0"), "hex");

/** The 32-byte word at `offset`, as a Buffer view (no copy). */
function word(bytes: Uint8Array, offset: number): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset + offset, 32);
}

function isZero(w: Buffer): boolean {
  for (let i = 0; i < 32; i++) if (w[i] !== 0) return false;
  return true;
}

export class DeviceSignatureVerifier {
  private readonly p256Keys = new Map<string, KeyObject>();
  /** Recovered secp256k1 public keys (uncompressed) of signers seen, for `verifyStream`. */
  private readonly secpKeys = new Map<string, Uint8Array>();
  private readonly verifiers: Set<string>;

  /** @param p256Verifiers addresses of the ERC-7913 verifiers the registry allows. */
  constructor(p256Verifiers: Iterable<string>) {
    this.verifiers = new Set([...p256Verifiers].map((v) => v.toLowerCase()));
  }

  /** Whether `signature` is `signer`'s valid signature of `digest` as the chain would judge it. */
  verify(signer: string, digest: Uint8Array, signature: Uint8Array): boolean {
    const key = signer.toLowerCase();
    if (key.length === 42) return this.verifySecp256k1(key, digest, signature);
    if (key.length === 2 + 2 * 84 && this.verifiers.has(key.slice(0, 42)))
      return this.verifyP256(key, digest, signature);
    return false;
  }

  // Recovery, as ecrecover does: a signature whose v names the other candidate key must fail here too.
  /**
   * Checks a signature from a signer that signs many (a payer streaming vouchers): once the
   * signer's public key is known (recovered from its first valid signature), a secp256k1 signature
   * is checked with `ecdsaVerify` against it, which is faster than recovering. It accepts what the
   * chain accepts with one of the two recovery bytes (27 or 28): a signature it passes may carry the
   * wrong one, which `chainValidSignature` repairs before the signature goes on chain. Verification
   * also takes a nonce point whose x is r + n, which ecrecover cannot recover: an r that allows it
   * (below p − n; never met by chance) is judged by recovery instead. P-256 signatures take the
   * usual path.
   */
  verifyStream(signer: string, digest: Uint8Array, signature: Uint8Array): boolean {
    const key = signer.toLowerCase();
    if (key.length !== 42) return this.verify(key, digest, signature);
    const pub = this.secpKeys.get(key);
    if (!pub) {
      if (!this.verifySecp256k1(key, digest, signature)) return false;
      this.secpKeys.set(key, secp256k1.ecdsaRecover(signature.subarray(0, 64), signature[64] - 27, digest, false));
      return true;
    }
    if (signature.length !== 65 || (signature[64] !== 27 && signature[64] !== 28)) return false;
    const [r, s] = [word(signature, 0), word(signature, 32)];
    if (isZero(s) || s.compare(SECP256K1_HALF_N) > 0 || isZero(r)) return false;
    let valid: boolean;
    try {
      valid = secp256k1.ecdsaVerify(signature.subarray(0, 64), digest, pub);
    } catch {
      return false;
    }
    if (valid && r.compare(SECP256K1_P_MINUS_N) < 0)
      return this.chainValidSignature(key, digest, signature) !== undefined;
    return valid;
  }

  /**
   * `signature` as the chain accepts it: as it is if it verifies, else with the other recovery byte
   * (a signature `verifyStream` passed with a wrong `v`); undefined if neither verifies.
   */
  chainValidSignature(signer: string, digest: Uint8Array, signature: Uint8Array): Uint8Array | undefined {
    if (this.verify(signer, digest, signature)) return signature;
    if (signature.length !== 65) return undefined;
    const flipped = Uint8Array.from(signature);
    flipped[64] = signature[64] === 27 ? 28 : 27;
    return this.verify(signer, digest, flipped) ? flipped : undefined;
  }

  private verifySecp256k1(address: string, digest: Uint8Array, signature: Uint8Array): boolean {
    if (signature.length !== 65 || (signature[64] !== 27 && signature[64] !== 28)) return false;
    const s = word(signature, 32);
    if (isZero(s) || s.compare(SECP256K1_HALF_N) > 0 || isZero(word(signature, 0))) return false;
    try {
      const pub = secp256k1.ecdsaRecover(signature.subarray(0, 64), signature[64] - 27, digest, false);
      return Buffer.from(keccak(pub.subarray(1)))
        .subarray(12)
        .equals(Buffer.from(address.slice(2), "hex"));
    } catch {
      return false;
    }
  }

  private verifyP256(signer: string, digest: Uint8Array, signature: Uint8Array): boolean {
    if (signature.length !== 64) return false;
    const [r, s] = [word(signature, 0), word(signature, 32)];
    if (isZero(r) || isZero(s) || r.compare(P256_N_BYTES) >= 0 || s.compare(P256_HALF_N) > 0) return false;
    let key = this.p256Keys.get(signer);
    if (!key) {
      const b64 = (hex: string) => Buffer.from(hex, "hex").toString("base64url");
      try {
        key = createPublicKey({
          key: { kty: "EC", crv: "P-256", x: b64(signer.slice(42, 106)), y: b64(signer.slice(106, 170)) },
          format: "jwk",
        });
      } catch {
        return false;
      }
      this.p256Keys.set(signer, key);
    }
    return nodeVerify("sha256", digest, { key, dsaEncoding: "ieee-p1363" }, signature);
  }
}

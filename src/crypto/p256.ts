/**
 * P-256 (secp256r1) device keys with `node:crypto`, the way secure elements, TPMs and WebAuthn
 * authenticators sign: over SHA-256 of the message. A P-256 device therefore signs
 * `sha256(eip712Digest)`, and the chain checks it with `ERC7913P256SHA256Verifier`.
 */
import { createECDH, createPrivateKey, createPublicKey, generateKeyPairSync, sign, type KeyObject } from "node:crypto";
import { concat, getBytes, hexlify, toBeHex, zeroPadValue, getAddress } from "ethers";

/** The order n of the P-256 group. */
export const P256_N = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n;

/** A fresh P-256 key pair. */
export function generateP256Key(): { privateKey: KeyObject; publicKey: KeyObject } {
  return generateKeyPairSync("ec", { namedCurve: "prime256v1" });
}

/** The P-256 private key with scalar `d` (32 bytes, 0 < d < n), e.g. for repeatable fixtures. */
export function p256KeyFromScalar(d: string): KeyObject {
  const scalar = BigInt(d);
  if (scalar <= 0n || scalar >= P256_N) throw new Error("p256: the private scalar must be in [1, n-1]");
  const ecdh = createECDH("prime256v1");
  ecdh.setPrivateKey(getBytes(toBeHex(scalar, 32)));
  const pub = ecdh.getPublicKey(); // 0x04 || x || y
  const b64 = (b: Uint8Array) => Buffer.from(b).toString("base64url");
  return createPrivateKey({
    key: {
      kty: "EC",
      crv: "P-256",
      d: b64(getBytes(toBeHex(scalar, 32))),
      x: b64(pub.subarray(1, 33)),
      y: b64(pub.subarray(33, 65)),
    },
    format: "jwk",
  });
}

/** The 64-byte `qx || qy` public key, as the ERC-7913 verifier takes it. */
export function p256PublicKeyBytes(key: KeyObject): string {
  const jwk = createPublicKey(key).export({ format: "jwk" });
  if (jwk.crv !== "P-256" || !jwk.x || !jwk.y) throw new Error("p256: key is not a P-256 key");
  return concat([zeroPadValue(Buffer.from(jwk.x, "base64url"), 32), zeroPadValue(Buffer.from(jwk.y, "base64url"), 32)]);
}

/** The 84-byte ERC-7913 signer `verifier || qx || qy` of a P-256 key. */
export function p256Signer(verifier: string, key: KeyObject): string {
  return concat([getAddress(verifier), p256PublicKeyBytes(key)]);
}

/**
 * Signs a 32-byte digest: ECDSA P-256 over `sha256(digest)`, returned as 64-byte `r || s` with a low
 * `s` (OpenZeppelin's `P256.verify` refuses high-s; `node:crypto` returns one about half the time).
 */
export function signP256Bytes(privateKey: KeyObject, digest: Uint8Array): Uint8Array {
  const raw = sign("sha256", digest, { key: privateKey, dsaEncoding: "ieee-p1363" });
  const s = BigInt("0x" + raw.subarray(32, 64).toString("hex"));
  if (s > P256_N / 2n) raw.set(getBytes(toBeHex(P256_N - s, 32)), 32);
  return new Uint8Array(raw);
}

/** {@link signP256Bytes} over a 0x-hex digest, returning 0x-hex. */
export function signP256(privateKey: KeyObject, digest: string): string {
  return hexlify(signP256Bytes(privateKey, getBytes(digest)));
}

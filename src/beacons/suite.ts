/**
 * The one HPKE suite of location beacons (RFC 9180, mode base): DHKEM(X25519, HKDF-SHA256),
 * HKDF-SHA256, AES-128-GCM. From `@hpke/core` and `@hpke/dhkem-x25519`, which run on Web Crypto in
 * Node and in browsers alike; nothing here is home-made cryptography.
 */
import { Aes128Gcm, CipherSuite, HkdfSha256 } from "@hpke/core";
import { DhkemX25519HkdfSha256 } from "@hpke/dhkem-x25519";

export const BEACON_SUITE = new CipherSuite({
  kem: new DhkemX25519HkdfSha256(),
  kdf: new HkdfSha256(),
  aead: new Aes128Gcm(),
});

/** HPKE `info`: names the protocol, so a beacon ciphertext means nothing in any other HPKE use of the key. */
export const BEACON_INFO = new TextEncoder().encode("Custos LocationBeacon v1");

/** Bytes of an X25519 public key (`Npk`), which is also the encapsulated key's size (`Nenc`). */
export const KEY_BYTES = 32;
/** Bytes of the sealed plaintext: latitudeE7 and longitudeE7, int32 big-endian each. */
export const LOCATION_BYTES = 8;
/** Bytes of the AES-GCM tag. */
export const TAG_BYTES = 16;
/** Bytes each recipient adds to a beacon's ciphertext: enc ‖ sealed location. */
export const SEALED_BYTES = KEY_BYTES + LOCATION_BYTES + TAG_BYTES;

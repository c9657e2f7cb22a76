/**
 * Sealing a location to a beacon's recipients, and opening it with one recipient's key.
 *
 * A beacon's ciphertext is, for each recipient key in the order the beacon names them,
 * `enc (32 bytes) ‖ HPKE-sealed location (8 + 16 bytes)`: single-shot HPKE (mode base) to that key.
 * The associated data binds each sealed location to its beacon — the chain, the LocationBeacons
 * contract, the device, the time of the fix and the whole recipient list — so a ciphertext moved to
 * another device's beacon, another time or another recipient list does not open.
 */
import { BEACON_INFO, BEACON_SUITE, KEY_BYTES, LOCATION_BYTES, SEALED_BYTES } from "./suite.js";
import { BeaconError, fromHex, toHex, uintBytes } from "./hex.js";
import { checkKey, importBeaconKey } from "./keys.js";

/** A position in 1e-7 degrees (what the device's GNSS reports). */
export interface Location {
  latitudeE7: number;
  longitudeE7: number;
}

/** Which beacon a ciphertext belongs to (all of it is public: in the beacon and its event). */
export interface BeaconContext {
  chainId: bigint;
  /** The LocationBeacons contract. */
  contract: string;
  device: bigint;
  /** When the device took the fix (the beacon's `at`). */
  at: bigint;
}

/** The recipient keys of a packed list (`beaconRecipients(owner)`, the event's `recipients`). */
export function splitRecipients(packed: string): string[] {
  const bytes = fromHex(packed, "recipients");
  if (bytes.length === 0 || bytes.length % KEY_BYTES !== 0) {
    throw new BeaconError(
      "recipients",
      "recipients must be one or more 32-byte keys, packed (has the owner set a beacon key?)",
    );
  }
  const keys: string[] = [];
  for (let i = 0; i < bytes.length; i += KEY_BYTES) keys.push(toHex(bytes.subarray(i, i + KEY_BYTES)));
  return keys;
}

function associatedData(context: BeaconContext, recipients: Uint8Array): Uint8Array {
  const contract = fromHex(context.contract, "contract");
  if (contract.length !== 20) throw new BeaconError("contract", "contract must be a 20-byte address");
  const parts = [
    uintBytes(BigInt(context.chainId), 32, "chainId"),
    contract,
    uintBytes(BigInt(context.device), 32, "device"),
    uintBytes(BigInt(context.at), 8, "at"),
    recipients,
  ];
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) (out.set(p, o), (o += p.length));
  return out;
}

function encodeLocation(location: Location): Uint8Array {
  const out = new Uint8Array(LOCATION_BYTES);
  const view = new DataView(out.buffer);
  for (const [field, max, offset] of [
    ["latitudeE7", 900_000_000, 0],
    ["longitudeE7", 1_800_000_000, 4],
  ] as const) {
    const v = location[field];
    if (!Number.isInteger(v) || Math.abs(v) > max) {
      throw new BeaconError(field, `${field} must be an integer within ±${max} (degrees × 1e7)`);
    }
    view.setInt32(offset, v, false);
  }
  return out;
}

/** Seals `location` to every key of `recipients` (packed); returns the beacon's `ciphertext` (hex). */
export async function sealLocation(location: Location, recipients: string, context: BeaconContext): Promise<string> {
  const keys = splitRecipients(recipients);
  const plaintext = encodeLocation(location);
  const aad = associatedData(context, fromHex(recipients, "recipients"));
  const out = new Uint8Array(keys.length * SEALED_BYTES);
  for (const [i, key] of keys.entries()) {
    const recipientPublicKey = await BEACON_SUITE.kem.deserializePublicKey(checkKey(key, `recipients[${i}]`));
    const { enc, ct } = await BEACON_SUITE.seal({ recipientPublicKey, info: BEACON_INFO }, plaintext, aad);
    out.set(new Uint8Array(enc), i * SEALED_BYTES);
    out.set(new Uint8Array(ct), i * SEALED_BYTES + KEY_BYTES);
  }
  return toHex(out);
}

/**
 * Opens a beacon's `ciphertext` with the private key of one of its `recipients`. Throws a
 * BeaconError when the key is not among the recipients, or when its sealed location does not open
 * (tampered, moved from another beacon, or not sealed to this key).
 */
export async function openLocation(
  ciphertext: string,
  recipients: string,
  context: BeaconContext,
  privateKey: string,
): Promise<Location> {
  const keys = splitRecipients(recipients);
  const pair = await importBeaconKey(privateKey);
  const mine = toHex(await BEACON_SUITE.kem.serializePublicKey(pair.publicKey));
  const index = keys.indexOf(mine);
  if (index < 0) throw new BeaconError("privateKey", `this key (${mine}) is not among the beacon's recipients`);
  const bytes = fromHex(ciphertext, "ciphertext");
  if (bytes.length !== keys.length * SEALED_BYTES) {
    throw new BeaconError("ciphertext", `ciphertext must be ${SEALED_BYTES} bytes per recipient (${keys.length})`);
  }
  const slot = bytes.subarray(index * SEALED_BYTES, (index + 1) * SEALED_BYTES);
  const aad = associatedData(context, fromHex(recipients, "recipients"));
  let plaintext: ArrayBuffer;
  try {
    plaintext = await BEACON_SUITE.open(
      { recipientKey: pair, enc: slot.slice(0, KEY_BYTES), info: BEACON_INFO },
      slot.slice(KEY_BYTES),
      aad,
    );
  } catch {
    throw new BeaconError(
      "ciphertext",
      "the sealed location does not open: tampered, from another beacon, or not sealed to this key",
    );
  }
  const view = new DataView(plaintext);
  return { latitudeE7: view.getInt32(0, false), longitudeE7: view.getInt32(4, false) };
}

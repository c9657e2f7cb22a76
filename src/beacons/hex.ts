/** Hex ⇄ bytes without Node's Buffer, so the beacons module runs in a browser too. */

export class BeaconError extends Error {
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(message);
    this.name = "BeaconError";
  }
}

export function fromHex(hex: string, field: string): Uint8Array {
  if (typeof hex !== "string" || !/^0x([0-9a-fA-F]{2})*$/.test(hex)) {
    throw new BeaconError(field, `${field} must be 0x-prefixed hex bytes`);
  }
  const out = new Uint8Array((hex.length - 2) / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(2 + 2 * i, 4 + 2 * i), 16);
  return out;
}

export function toHex(bytes: Uint8Array | ArrayBuffer): string {
  const b = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  let s = "0x";
  for (const x of b) s += x.toString(16).padStart(2, "0");
  return s;
}

/** `value` as a big-endian unsigned integer of `size` bytes. */
export function uintBytes(value: bigint, size: number, field: string): Uint8Array {
  if (value < 0n || value >= 1n << BigInt(8 * size)) throw new BeaconError(field, `${field} is out of range`);
  const out = new Uint8Array(size);
  for (let i = size - 1, v = value; i >= 0; i--, v >>= 8n) out[i] = Number(v & 0xffn);
  return out;
}

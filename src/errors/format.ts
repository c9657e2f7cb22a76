/**
 * How the arguments of a contract error are written in a sentence: device ids and hashes
 * shortened, times as UTC dates, amounts in ETH, statuses by name. Every function takes `unknown`
 * (a decoded ABI value) and never throws: a value of an unexpected shape is written as it is.
 */
import { formatEther, getAddress, keccak256 } from "ethers";

const HEX = /^0x[0-9a-fA-F]*$/;

function big(value: unknown): bigint | undefined {
  if (typeof value === "bigint") return value;
  if (typeof value === "number" && Number.isSafeInteger(value)) return BigInt(value);
  if (typeof value === "string" && /^-?\d+$/.test(value)) return BigInt(value);
  return undefined;
}

/** `0x5a4d…9f12`: the first and last 4 hex digits (enough to tell values apart by eye). */
export function shortHex(value: unknown, head = 4, tail = 4): string {
  const s = String(value);
  if (!HEX.test(s) || s.length <= 2 + head + tail + 1) return s;
  return `${s.slice(0, 2 + head)}…${s.slice(-tail)}`;
}

/** An address, checksummed and shortened: `0x3C44…93BC`; the zero address by name. */
export function address(value: unknown): string {
  const s = String(value);
  if (/^0x0{40}$/i.test(s)) return "the zero address";
  try {
    return shortHex(getAddress(s));
  } catch {
    return shortHex(s);
  }
}

/**
 * A device id (a token id: `keccak256(firstKey) >> 64`, 58 decimal digits): small ids in full,
 * others as their first 6 and last 4 digits, the way `custos-agent key show` prints them in full.
 */
export function deviceId(value: unknown): string {
  const n = big(value);
  if (n === undefined) return String(value);
  const s = n.toString();
  return s.length <= 12 ? s : `${s.slice(0, 6)}…${s.slice(-4)}`;
}

/** Seconds since 1970 as `2026-11-30 14:03:38 UTC` (a value beyond any date: as the number). */
export function utcDate(value: unknown): string {
  const n = big(value);
  if (n === undefined) return String(value);
  if (n < 0n || n > 8_640_000_000_000n) return `timestamp ${n}`;
  return new Date(Number(n) * 1000)
    .toISOString()
    .replace("T", " ")
    .replace(/\.\d{3}Z$/, " UTC");
}

/** Wei as ETH: `1.5 ETH`, `0 ETH`, `0.000000000000000001 ETH`. */
export function eth(value: unknown): string {
  const n = big(value);
  if (n === undefined) return String(value);
  return `${formatEther(n).replace(/\.0$/, "")} ETH`;
}

/**
 * An amount of a channel, which holds ETH or an ERC-20 token: in ETH, and in base units for a
 * token (the error does not say which the channel holds).
 */
export function channelAmount(value: unknown): string {
  const n = big(value);
  if (n === undefined) return String(value);
  return `${eth(n)} (${n} base units in a token channel)`;
}

/** A token: `ETH` for the zero address, else `token 0x…`. */
export function token(value: unknown): string {
  return /^0x0{40}$/i.test(String(value)) ? "ETH" : `token ${address(value)}`;
}

/** Hundredths of a degree Celsius: `-20.5 °C`. */
export function temperature(value: unknown): string {
  const n = big(value);
  if (n === undefined) return String(value);
  const sign = n < 0n ? "-" : "";
  const abs = n < 0n ? -n : n;
  const frac = (abs % 100n).toString().padStart(2, "0").replace(/0+$/, "");
  return `${sign}${abs / 100n}${frac ? `.${frac}` : ""} °C`;
}

/** A plain integer. */
export function int(value: unknown): string {
  const n = big(value);
  return n === undefined ? String(value) : n.toString();
}

/**
 * A device key as ERC-7913 signer bytes: a 20-byte secp256k1 address (shortened), or
 * `verifier ‖ qx ‖ qy` for a P-256 key.
 */
export function deviceKey(value: unknown): string {
  const s = String(value);
  if (!HEX.test(s)) return s;
  const bytes = (s.length - 2) / 2;
  if (bytes === 20) return `key ${address(s)}`;
  if (bytes === 84) return `P-256 key ${shortHex("0x" + s.slice(42))} (verifier ${address(s.slice(0, 42))})`;
  return `a key of ${bytes} bytes (${shortHex(s)})`;
}

const DEVICE_STATUS = ["Unknown", "Active", "Quarantined", "Revoked"] as const;
const BATCH_STATUS = ["None", "Active", "Quarantined", "Revoked"] as const;

/** `IDeviceRegistry.DeviceStatus` by name. */
export function deviceStatus(value: unknown): string {
  const n = big(value);
  return n !== undefined && n >= 0n && n < 4n ? DEVICE_STATUS[Number(n)] : `status ${String(value)}`;
}

/** `IDeviceRegistry.BatchStatus` by name. */
export function batchStatus(value: unknown): string {
  const n = big(value);
  return n !== undefined && n >= 0n && n < 4n ? BATCH_STATUS[Number(n)] : `status ${String(value)}`;
}

export function isRevokedStatus(value: unknown): boolean {
  return big(value) === 3n;
}

/** Names of roles by their hash, filled from the ABIs' `*_ROLE()` getters (keccak256 of the name). */
const ROLE_NAMES = new Map<string, string>([["0x" + "00".repeat(32), "DEFAULT_ADMIN_ROLE (the admin)"]]);

export function addRoleName(name: string): void {
  if (name === "DEFAULT_ADMIN_ROLE") return;
  ROLE_NAMES.set(keccak256(Buffer.from(name, "utf8")).toLowerCase(), name);
}

/** A role hash by name (`MANUFACTURER_ROLE`), or shortened when unknown. */
export function role(value: unknown): string {
  return ROLE_NAMES.get(String(value).toLowerCase()) ?? `role ${shortHex(value)}`;
}

/**
 * A key hash (`keccak256(key)`): the key itself when the caller named it among `keys`, else the
 * hash shortened.
 */
export function keyHash(value: unknown, keys: readonly string[] = []): string {
  const h = String(value).toLowerCase();
  for (const k of keys) {
    try {
      if (keccak256(k).toLowerCase() === h) return deviceKey(k.toLowerCase());
    } catch {
      // not hex bytes: not a key
    }
  }
  return `the key with hash ${shortHex(h)}`;
}

const PANICS: Record<string, string> = {
  "0": "a generic compiler panic",
  "1": "an assertion failed",
  "17": "arithmetic overflow or underflow",
  "18": "division or modulo by zero",
  "33": "a value out of an enum's range",
  "34": "a storage byte array incorrectly encoded",
  "49": "pop() on an empty array",
  "50": "an array index out of bounds",
  "65": "too much memory allocated",
  "81": "a call to a zero-initialised function pointer",
};

export function panic(value: unknown): string {
  const n = big(value);
  const code = n === undefined ? String(value) : `0x${n.toString(16).padStart(2, "0")}`;
  return `${(n !== undefined && PANICS[n.toString()]) || "an unknown panic"} (panic code ${code})`;
}

/** Any ABI value in a generic sentence: integers, addresses and hashes shortened, arrays listed. */
export function anyValue(value: unknown): string {
  if (typeof value === "bigint") return value.toString();
  if (typeof value === "string") {
    if (/^0x[0-9a-fA-F]{40}$/.test(value)) return address(value);
    if (HEX.test(value)) return shortHex(value);
    return JSON.stringify(value);
  }
  if (Array.isArray(value)) return `[${value.map(anyValue).join(", ")}]`;
  return String(value);
}

/**
 * Canonical JSON for evidence, so that its keccak256 — the reason hash a guardian's vote carries —
 * is content-addressed: the same evidence always hashes the same, whoever serialises it. RFC 8785
 * (JCS) for the values evidence holds: object keys sorted by UTF-16 code units, no whitespace,
 * numbers as ECMAScript prints them (integers here); bigints become decimal strings first.
 */
import { keccak256, toUtf8Bytes } from "ethers";

export function canonicalJson(value: unknown): string {
  if (typeof value === "bigint") return JSON.stringify(value.toString());
  if (value === null || typeof value !== "object") {
    if (typeof value === "number" && !Number.isFinite(value)) throw new Error("evidence: numbers must be finite");
    if (value === undefined) throw new Error("evidence: undefined is not JSON");
    return JSON.stringify(value);
  }
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  const entries = Object.entries(value as Record<string, unknown>)
    .filter(([, v]) => v !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(",")}}`;
}

/** keccak256 of the canonical JSON of `value`: the reason hash of a vote whose evidence it is. */
export function reasonHash(value: unknown): string {
  return keccak256(toUtf8Bytes(canonicalJson(value)));
}

/**
 * OpenZeppelin `ForwardRequestData` as owners post it to `/v1/forward`: `from, to, value, gas,
 * deadline, data, signature` (integers as decimal strings), plus an optional `nonce` hint. The
 * signed `ForwardRequest` type itself lives in the catalogue (domain "forwarder").
 */
import { keccak256 } from "ethers";
import type { Message } from "../eip712/index.js";

export interface ForwardRequestBody {
  from: string;
  to: string;
  value: string;
  gas: string;
  deadline: string;
  data: string;
  signature: string;
  /** The forwarder nonce the request was signed with; found by the relayer when absent. */
  nonce?: string;
}

const ADDRESS = /^0x[0-9a-fA-F]{40}$/;
const HEX = /^0x([0-9a-fA-F]{2})*$/;
const UINT = /^(0|[1-9][0-9]{0,77})$/;
const UINT48_MAX = (1n << 48n) - 1n;
const UINT256_MAX = (1n << 256n) - 1n;

/** Checks a forward request from outside; throws an error naming the first bad field. Returns it normalised (lower-case addresses, decimal integers). */
export function checkForwardShape(input: unknown): ForwardRequestBody {
  const r = input as Record<string, unknown> | null;
  if (!r || typeof r !== "object" || Array.isArray(r)) throw new Error("request must be a JSON object");
  for (const f of ["from", "to"]) {
    if (typeof r[f] !== "string" || !ADDRESS.test(r[f] as string)) throw new Error(`${f} must be a 20-byte 0x address`);
  }
  const int = (f: string, max: bigint, optional = false): string | undefined => {
    const v = r[f];
    if (v === undefined && optional) return undefined;
    const s = typeof v === "number" && Number.isSafeInteger(v) && v >= 0 ? String(v) : v;
    if (typeof s !== "string" || !UINT.test(s) || BigInt(s) > max)
      throw new Error(`${f} must be an unsigned integer (decimal string) of at most ${max.toString().length} digits`);
    return s;
  };
  const value = int("value", UINT256_MAX)!;
  const gas = int("gas", UINT256_MAX)!;
  const deadline = int("deadline", UINT48_MAX)!;
  const nonce = int("nonce", UINT256_MAX, true);
  if (typeof r.data !== "string" || !HEX.test(r.data)) throw new Error("data must be 0x-prefixed hex bytes");
  if (typeof r.signature !== "string" || !HEX.test(r.signature))
    throw new Error("signature must be 0x-prefixed hex bytes");
  if ((r.signature.length - 2) / 2 !== 65) throw new Error("signature must be 65 bytes (r, s, v)");
  const body: ForwardRequestBody = {
    from: (r.from as string).toLowerCase(),
    to: (r.to as string).toLowerCase(),
    value,
    gas,
    deadline,
    data: r.data.toLowerCase(),
    signature: r.signature.toLowerCase(),
  };
  if (nonce !== undefined) body.nonce = nonce;
  return body;
}

/** The same id rule as device messages (`messageId`): the hash of the signature. */
export function forwardId(body: ForwardRequestBody): string {
  return keccak256(body.signature);
}

/** The catalogue `ForwardRequest` message the owner signed, at forwarder nonce `nonce`. */
export function forwardMessage(body: ForwardRequestBody, nonce: bigint): Message {
  return {
    from: body.from,
    to: body.to,
    value: body.value,
    gas: body.gas,
    nonce,
    deadline: body.deadline,
    data: body.data,
  };
}

/** The `ForwardRequestData` struct the forwarder's `execute`/`executeBatch` take. */
export function forwardTuple(body: ForwardRequestBody) {
  return {
    from: body.from,
    to: body.to,
    value: BigInt(body.value),
    gas: BigInt(body.gas),
    deadline: BigInt(body.deadline),
    data: body.data,
    signature: body.signature,
  };
}

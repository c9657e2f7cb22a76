/**
 * Why the relayer refuses a message: one code per check, each with its HTTP status. A refusal is
 * always decided before any gas is spent; its body is `{ error, field?, code }`.
 */
import type { SignedDeviceMessage } from "../messages/index.js";

export const REFUSALS = {
  /** The body is not JSON, or not an object. */
  invalid_json: 400,
  /** The body is over the relayer's size limit (64 KiB). */
  body_too_large: 413,
  /** The body is not declared `content-type: application/json`. */
  unsupported_media_type: 415,
  /** A field is missing or malformed (`field` names it). */
  invalid_field: 400,
  /** The signature does not verify for the key over the digest of this deployment (wrong key, content, chain or contract). */
  bad_signature: 400,
  /** A valid signature's malleated twin (high s), which the chain refuses. */
  malleable_signature: 400,
  /** A key the registry cannot verify (a P-256 key behind a verifier the registry does not allow). */
  unsupported_key: 400,
  /** The deadline has passed, or is too close to land. */
  expired: 400,
  /** The call or forward target is not on the relayer's allowlist (a contract of the suite it was not given). */
  target_not_allowed: 400,
  /** A forward request carrying ETH: the relayer does not pay value. */
  value_not_allowed: 400,
  /** The message would use more gas than the relayer's cap. */
  over_gas_cap: 400,
  /** A claim's Merkle proof does not lead to its batch's root. */
  invalid_proof: 400,
  /** Simulated before acceptance, the call reverts (the reason says why). */
  would_revert: 400,
  /** No device has this key (never claimed, or rotated away). */
  unknown_key: 409,
  /** The key is not the current key of `message.device`. */
  wrong_device: 409,
  /** The device is quarantined or revoked (or, for a location beacon, not quarantined). */
  device_not_active: 409,
  /** A claim of a key that is already registered. */
  key_taken: 409,
  /** A claim into a batch that is unknown, quarantined or revoked. */
  batch_not_active: 409,
  /** The nonce (or sequence number, or a voucher's amount) was already used on chain: a replay. */
  nonce_used: 409,
  /**
   * A message with this id (the hash of its signature) was accepted before with other content: the
   * same signature cannot carry other fields. Never answered with the first message's status.
   */
  conflict: 409,
  /** Another message with this nonce (or another claim of this key) is already queued. */
  nonce_queued: 409,
  /** The nonce is too far ahead of the device's next nonce to wait for the gap. */
  nonce_too_far: 409,
  /** Too many messages from this device (or owner) in the last minute. */
  rate_limited: 429,
  /** The chain could not be read: try again. */
  chain_unavailable: 503,
} as const;

export type RefusalCode = keyof typeof REFUSALS;

/**
 * Who a refused device message is attributable to: its signature verified, by the current key of
 * the device it speaks for, so anyone can re-check that the device signed it (the refusal feed).
 */
export interface Attribution {
  /** `messageId`. */
  id: string;
  device: bigint;
  message: SignedDeviceMessage;
}

export interface RefusalBody {
  error: string;
  field?: string;
  code: RefusalCode | "not_found" | "internal";
}

export class Refusal extends Error {
  readonly status: number;
  /** Set by intake on a device message's refusal decided after its signature verified. */
  attribution?: Attribution;

  constructor(
    readonly code: RefusalCode,
    message: string,
    readonly field?: string,
    /** Seconds after which a rate-limited caller may retry. */
    readonly retryAfter?: number,
  ) {
    super(message);
    this.status = REFUSALS[code];
  }

  body(): RefusalBody {
    return this.field === undefined
      ? { error: this.message, code: this.code }
      : { error: this.message, field: this.field, code: this.code };
  }
}

/** Turns a shape error of the shared modules ("message.nonce is missing", "FirmwareAttestation.nonce must be…") into a refusal naming the field. */
export function shapeRefusal(err: unknown, type?: string): Refusal {
  const text = err instanceof Error ? err.message : String(err);
  const first = text.split(" ")[0];
  let field: string | undefined;
  if (type && first.startsWith(`${type}.`)) field = `message.${first.slice(type.length + 1)}`;
  else if (/^[a-zA-Z][\w.[\]]*$/.test(first) && first !== "fast") field = first;
  const message = type && field && first.startsWith(`${type}.`) ? text.replace(first, field) : text;
  return new Refusal("invalid_field", message, field);
}

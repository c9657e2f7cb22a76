/**
 * Why the watch refuses a subscription or an unsubscription: one code per check, each with its
 * HTTP status. The body of a refusal is `{ error, message, field? }`.
 */
export const REFUSALS = {
  /** The body is not a JSON object. */
  invalid_json: 400,
  /** A field is missing or malformed (`field` names it). */
  invalid_field: 400,
  /** The signature is not the owner's over this message on this watch (another URL, events, chain…). */
  bad_signature: 401,
  /** The deadline has passed. */
  expired: 400,
  /** The owner used this nonce with this watch before: a replay. */
  nonce_used: 409,
  /** The signer does not own the target on chain now (not the device's owner, not a party of the shipment…). */
  not_owner: 403,
  /** The target does not exist on chain (or its contract is not configured on this watch). */
  unknown_target: 404,
  /** No such subscription. */
  unknown_subscription: 404,
  /** The chain could not be read: try again. */
  chain_unavailable: 503,
} as const;

export type RefusalCode = keyof typeof REFUSALS;

export class WebhookRefusal extends Error {
  readonly status: number;
  constructor(
    readonly code: RefusalCode,
    message: string,
    readonly field?: string,
  ) {
    super(message);
    this.status = REFUSALS[code];
  }

  toJSON() {
    return { error: this.code, message: this.message, ...(this.field ? { field: this.field } : {}) };
  }
}

/**
 * What a subscription is and how a request for one becomes the `WatchSubscription` message its
 * owner signs (the type is in the catalogue, `src/eip712`). The request is JSON a person can
 * write — a scope name, a decimal device id, a list of alert kinds — and `subscriptionMessage`
 * turns it into the exact fields that were signed, so the watch and the subscriber compute the
 * same digest. Bad input is refused with a {@link WebhookRefusal} naming the field and the fix.
 */
import { getAddress, isAddress, isHexString, zeroPadValue, toBeHex } from "ethers";
import { ALERT_KINDS, type Alert, type AlertKind } from "../alerts.js";
import { WebhookRefusal } from "./refusal.js";

/** What a subscription is about; the number is the `scope` field of the signed message. */
export const SCOPES = ["owner", "device", "lock", "shipment", "channel"] as const;
export type Scope = (typeof SCOPES)[number];

/** The event mask: bit i set = alerts of kind `ALERT_KINDS[i]`. */
export function eventMask(kinds: readonly AlertKind[]): string {
  let mask = 0n;
  for (const kind of kinds) mask |= 1n << BigInt(ALERT_KINDS.indexOf(kind));
  return zeroPadValue(toBeHex(mask), 32);
}

/** The alert kinds set in `mask`. */
export function kindsOf(mask: string): AlertKind[] {
  const bits = BigInt(mask);
  return ALERT_KINDS.filter((_, i) => (bits >> BigInt(i)) & 1n);
}

/** A subscription request as JSON carries it (POST /subscriptions). */
export interface SubscriptionRequest {
  owner: string;
  scope: Scope;
  /** owner: the owner's address; device, lock: the decimal id; shipment, channel: the 0x bytes32 id. */
  target: string;
  url: string;
  /** Alert kinds, or "all". */
  events: AlertKind[] | "all";
  /** Decimal. */
  nonce: string;
  /** Unix seconds, decimal: after it the signature is refused. */
  deadline: string;
  signature: string;
}

/** The signed fields of a `WatchSubscription`, ready for the catalogue's `digest`/`typedData`. */
export interface SubscriptionMessage {
  owner: string;
  scope: number;
  target: string;
  url: string;
  events: string;
  nonce: bigint;
  deadline: bigint;
}

/** A subscription the watch accepted: what it keeps (the secret included). */
export interface Subscription {
  /** The EIP-712 digest of the signed message (0x bytes32): unique, since a nonce is used once. */
  id: string;
  owner: string;
  scope: Scope;
  /** As in the request, normalised: a checksummed address, a decimal id or a lowercase bytes32. */
  target: string;
  url: string;
  events: AlertKind[];
  /** The secret deliveries are signed with (standardwebhooks' `whsec_…`). */
  secret: string;
  /** The first block whose alerts it receives: the block after the one its ownership was checked at. */
  fromBlock: string;
  createdAt: number;
}

/** A subscription as listed: everything but the secret. */
export type PublicSubscription = Omit<Subscription, "secret"> & { active: boolean };

const MAX_URL = 2048;

function field(body: Record<string, unknown>, name: string): string {
  const v = body[name];
  if (typeof v !== "string" || v === "")
    throw new WebhookRefusal("invalid_field", `${name} is required, as a string`, name);
  return v;
}

function decimal(body: Record<string, unknown>, name: string, what: string): bigint {
  const v = field(body, name);
  if (!/^[0-9]{1,78}$/.test(v)) throw new WebhookRefusal("invalid_field", `${name} must be ${what}, in decimal`, name);
  return BigInt(v);
}

function bytes32(v: string, name: string): string {
  if (!isHexString(v, 32)) throw new WebhookRefusal("invalid_field", `${name} must be a 0x-prefixed 32-byte id`, name);
  return v.toLowerCase();
}

/** Checks a request's shape; returns it normalised, with the message its owner signed. */
export function parseSubscriptionRequest(body: unknown): {
  request: SubscriptionRequest;
  message: SubscriptionMessage;
} {
  if (typeof body !== "object" || body === null || Array.isArray(body))
    throw new WebhookRefusal("invalid_json", "the body must be a JSON object");
  const b = body as Record<string, unknown>;
  const ownerText = field(b, "owner");
  if (!isAddress(ownerText)) throw new WebhookRefusal("invalid_field", "owner must be a 0x address", "owner");
  const owner = getAddress(ownerText);
  const scope = field(b, "scope") as Scope;
  if (!SCOPES.includes(scope))
    throw new WebhookRefusal("invalid_field", `scope must be one of ${SCOPES.join(", ")}`, "scope");
  const targetText = field(b, "target");
  let target: string;
  let targetWord: string;
  if (scope === "owner") {
    if (!isAddress(targetText) || getAddress(targetText) !== owner)
      throw new WebhookRefusal(
        "invalid_field",
        "target of an owner subscription must be the owner's own address",
        "target",
      );
    target = owner;
    targetWord = zeroPadValue(owner, 32).toLowerCase();
  } else if (scope === "device" || scope === "lock") {
    const id = decimal(b, "target", `the ${scope}'s id`);
    if (id >= 1n << 256n) throw new WebhookRefusal("invalid_field", "target is over 2^256", "target");
    target = id.toString();
    targetWord = zeroPadValue(toBeHex(id), 32);
  } else {
    target = bytes32(targetText, "target");
    targetWord = target;
  }
  const url = field(b, "url");
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new WebhookRefusal("invalid_field", "url must be an absolute http(s) URL", "url");
  }
  if ((parsed.protocol !== "http:" && parsed.protocol !== "https:") || url.length > MAX_URL)
    throw new WebhookRefusal("invalid_field", `url must be an http(s) URL of at most ${MAX_URL} characters`, "url");
  const eventsIn = b.events;
  let events: AlertKind[];
  if (eventsIn === "all") events = [...ALERT_KINDS];
  else if (Array.isArray(eventsIn) && eventsIn.length > 0) {
    const unknown = eventsIn.find((e) => !ALERT_KINDS.includes(e as AlertKind));
    if (unknown !== undefined)
      throw new WebhookRefusal(
        "invalid_field",
        `events: ${JSON.stringify(unknown)} is not an alert kind (${ALERT_KINDS.join(", ")})`,
        "events",
      );
    events = ALERT_KINDS.filter((k) => eventsIn.includes(k));
  } else
    throw new WebhookRefusal("invalid_field", 'events must be a non-empty list of alert kinds, or "all"', "events");
  const nonce = decimal(b, "nonce", "a number you have not used with this watch");
  const deadline = decimal(b, "deadline", "the unix time (seconds) the signature expires at");
  const signature = field(b, "signature");
  if (!isHexString(signature))
    throw new WebhookRefusal("invalid_field", "signature must be 0x-prefixed hex", "signature");
  return {
    request: { owner, scope, target, url, events, nonce: nonce.toString(), deadline: deadline.toString(), signature },
    message: subscriptionMessage({ owner, scope, targetWord, url, events, nonce, deadline }),
  };
}

function subscriptionMessage(r: {
  owner: string;
  scope: Scope;
  targetWord: string;
  url: string;
  events: AlertKind[];
  nonce: bigint;
  deadline: bigint;
}): SubscriptionMessage {
  return {
    owner: r.owner,
    scope: SCOPES.indexOf(r.scope),
    target: r.targetWord,
    url: r.url,
    events: eventMask(r.events),
    nonce: r.nonce,
    deadline: r.deadline,
  };
}

/**
 * The message to sign for a subscription (what a subscriber's wallet signs with the catalogue's
 * `typedData("WatchSubscription", deployment, message)`): the request without its signature.
 */
export function messageToSign(request: Omit<SubscriptionRequest, "signature">): SubscriptionMessage {
  return parseSubscriptionRequest({ ...request, signature: "0x" }).message;
}

/** Whether `alert` is one `sub` asked for: its kind, its target, and a block from its start on. */
export function matches(sub: Subscription, alert: Alert): boolean {
  if (!sub.events.includes(alert.kind) || BigInt(alert.blockNumber) < BigInt(sub.fromBlock)) return false;
  const s = alert.subjects;
  // Only while the subscriber is among the alert's owners at its block: a device sold, or a
  // shipment's party replaced, stops feeding its former owner's subscription.
  if (!s.owners.some((o) => o.toLowerCase() === sub.owner.toLowerCase())) return false;
  switch (sub.scope) {
    case "owner":
      return true;
    case "device":
      return s.device === sub.target;
    case "lock":
      return s.lock === sub.target;
    case "shipment":
      return s.shipment?.toLowerCase() === sub.target;
    case "channel":
      return s.channel?.toLowerCase() === sub.target;
  }
}

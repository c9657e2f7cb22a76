/**
 * The refusal feed: the last N device messages the relayer refused after their signature verified,
 * by the current key of the device they speak for (`Attribution`, set by intake). Guardians read it
 * (`GET /v1/refusals`) to spot an identity being hammered; each item carries the signed message, so
 * a reader re-verifies the signature against the registry instead of trusting the relayer. A refusal
 * decided before the signature verified is not here: anyone can forge one.
 *
 * In memory only, on purpose: the relayer's durability promise is for what it answered 202. Each
 * process has a random `epoch`, so a reader notices a restart (sequence numbers start again at 1).
 */
import { randomBytes } from "node:crypto";
import { getBigInt } from "ethers";
import { TYPES } from "../eip712/index.js";
import { TERMS_FIELDS, type ChannelTermsJson, type SignedDeviceMessage } from "../messages/index.js";
import { Refusal, type Attribution, type RefusalCode } from "./errors.js";

export interface RefusalItem {
  /** 1, 2, 3… in this process (this `epoch`). */
  seq: number;
  /** When it was refused: unix seconds, the relayer's clock. */
  at: number;
  code: RefusalCode;
  /** The refusal's sentence, as the poster got it. */
  error: string;
  /** `messageId` (keccak256 of the signature). */
  id: string;
  /** The device whose current key signed it, as a decimal string. */
  device: string;
  message: SignedDeviceMessage;
}

export interface RefusalPage {
  epoch: string;
  /** The last item's `seq`, or `after` when there is none: the next page's `after`. */
  next: number;
  /** The relayer's clock when it answered (unix s): a reader takes items' ages from it, not their `at`. */
  now: number;
  items: RefusalItem[];
}

export const MAX_PAGE = 1000;

export class RefusalFeed {
  /** 16 random bytes, hex: a new process, a new epoch. */
  readonly epoch = "0x" + randomBytes(16).toString("hex");
  /** A ring: `size` items from `head`, oldest first, their seqs consecutive up to `lastSeq`. */
  private readonly ring: RefusalItem[] = [];
  private head = 0;
  private count = 0;
  private last = 0;
  /** `${id}:${code}` of the items held: a flood of one replayed message is one item. */
  private readonly held = new Set<string>();

  constructor(
    readonly capacity: number,
    private readonly now: () => number = () => Math.floor(Date.now() / 1000),
  ) {
    if (!Number.isSafeInteger(capacity) || capacity < 1) throw new Error("refusal feed: capacity must be at least 1");
  }

  get size(): number {
    return this.count;
  }

  get lastSeq(): number {
    return this.last;
  }

  /** Adds an attributed refusal (unless the same id was refused with the same code and is still held). */
  add(code: RefusalCode, error: string, a: Attribution): RefusalItem | undefined {
    const pair = `${a.id}:${code}`;
    if (this.held.has(pair)) return undefined;
    const item: RefusalItem = {
      seq: ++this.last,
      at: this.now(),
      code,
      error,
      id: a.id,
      device: a.device.toString(),
      message: signedContent(a.message),
    };
    if (this.count === this.capacity) {
      const evicted = this.ring[this.head];
      this.held.delete(`${evicted.id}:${evicted.code}`);
      this.ring[this.head] = item;
      this.head = (this.head + 1) % this.capacity;
    } else {
      this.ring[(this.head + this.count) % this.capacity] = item;
      this.count++;
    }
    this.held.add(pair);
    return item;
  }

  /**
   * Up to `limit` items with a seq above `after`, oldest first. Items evicted since `after` are
   * gone: the first item's seq then jumps past `after + 1`.
   */
  page(after: number, limit: number): RefusalPage {
    const first = this.last - this.count + 1;
    const from = Math.max(after + 1, first);
    const items: RefusalItem[] = [];
    for (let seq = from; seq <= this.last && items.length < limit; seq++)
      items.push(this.ring[(this.head + seq - first) % this.capacity]);
    return { epoch: this.epoch, next: items.at(-1)?.seq ?? after, now: Math.floor(Date.now() / 1000), items };
  }
}

/** `after` (default 0) and `limit` (1…1000, default 1000) of `GET /v1/refusals`; a 400 naming the bad one. */
export function parsePage(query: unknown): { after: number; limit: number } {
  const q = (query ?? {}) as Record<string, unknown>;
  return {
    after: integer(q, "after", 0, Number.MAX_SAFE_INTEGER, 0, "a sequence number (an integer, 0 or more)"),
    limit: integer(q, "limit", 1, MAX_PAGE, MAX_PAGE, `an integer from 1 to ${MAX_PAGE}`),
  };
}

function integer(q: Record<string, unknown>, name: string, min: number, max: number, fallback: number, what: string) {
  const v = q[name];
  if (v === undefined) return fallback;
  const n = typeof v === "string" && /^[0-9]{1,16}$/.test(v) ? Number(v) : NaN;
  if (!(n >= min && n <= max)) throw new Refusal("invalid_field", `${name} must be ${what}`, name);
  return n;
}

/**
 * What the feed keeps of a message: what its device signed (integers as decimal strings) and what
 * its call needs beside it (a claim's leaf and proof, a voucher's terms), nothing else a poster sent.
 * Integers padded with zeros hash alike, and a replayer of the chain's public landed messages could
 * otherwise grow every item to the 64 KiB body limit: 640 MB for 10,000 items.
 */
export function signedContent(m: SignedDeviceMessage): SignedDeviceMessage {
  const message = Object.fromEntries(
    TYPES[m.type].fields.map((f) => {
      const v = m.message[f.name];
      // The digest took these integers (intake hashed them before the signature check).
      return [f.name, /^u?int\d+$/.test(f.type) ? BigInt(v as string | number | bigint).toString() : v];
    }),
  );
  const out: SignedDeviceMessage = { type: m.type, key: m.key, message, signature: m.signature };
  if (m.type === "DeviceClaim" && m.claim) {
    const { model, firmwareHash, proof } = m.claim;
    out.claim = { model, firmwareHash, proof: [...proof] };
  }
  if (m.type === "Voucher" && m.terms) {
    // The terms hashed to the channel (intake's checkTerms): ABI-valid values, integers canonical here.
    const t = m.terms;
    const canonical = (f: keyof ChannelTermsJson) =>
      f === "token" || f === "payerKeyHash" ? String(t[f]).toLowerCase() : getBigInt(t[f]).toString();
    out.terms = Object.fromEntries(TERMS_FIELDS.map((f) => [f, canonical(f)])) as Record<
      keyof ChannelTermsJson,
      string
    >;
  }
  return out;
}

/**
 * The meter role: devices paying each other per unit consumed over a PaymentChannels channel.
 *
 * - `MeterPayer` (the consuming device, e.g. a car) signs `Voucher(channel, cumulativeAmount)` for
 *   what its own meter measured, plus an agreed number of units ahead, at the agreed price: never
 *   more, whatever the payee asks.
 * - `MeterPayee` (the supplying device, e.g. a charger) checks each voucher in memory (signature by
 *   the key the channel was opened with, channel, amount, deposit; no RPC on the hot path), delivers
 *   only while paid ahead within what the chain would pay, keeps the highest voucher of each channel
 *   on disk before it delivers against it, presents it through the agent's outbox when its value
 *   exceeds what the claim costs, and watches its channels so that a unilateral close is answered
 *   before the challenge period ends, also after a restart.
 *
 * The payee applies the chain's rule (PaymentChannels): only the channel's own key pays it (a key
 * the payer rotated to does not), and a voucher pays at most the spending-rate cap at the earlier of
 * now and the moment the registry stopped trusting the payer in the period the channel pinned
 * (`keyTrustedUntil`), which `watch` reads. Between a theft report and the payee's next `watch`,
 * what it delivers beyond the cap at the report is at its own risk: watch often.
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import { AbiCoder, keccak256, type Provider } from "ethers";
import { typeHash, type Deployment } from "../../eip712/index.js";
import { TypedDataHasher, bytesToHex, hexToBytes, keccak } from "../../eip712/fast.js";
import type { DeviceKey } from "../../crypto/deviceKey.js";
import type { DeviceSignatureVerifier } from "../../crypto/verify.js";
import { DurableLog } from "../../store/durableLog.js";
import { TERMS_FIELDS, type ChannelTermsJson, type SignedDeviceMessage } from "../../messages/index.js";
import type { Outbox } from "../outbox.js";
import { silentLogger, type Logger } from "../log.js";
import { PaymentChannels__factory } from "../../../typechain-types/factories/contracts/payments/PaymentChannels__factory.js";
import { IDeviceRegistry__factory } from "../../../typechain-types/factories/contracts/interfaces/IDeviceRegistry__factory.js";
import type { IDeviceRegistry } from "../../../typechain-types/contracts/interfaces/IDeviceRegistry.js";

/** A channel's terms (`PaymentChannels.Terms`); keccak256 of their ABI encoding is the channel id. */
export interface ChannelTerms {
  payer: bigint;
  payee: bigint;
  token: string;
  rate: bigint;
  allowance: bigint;
  openedAt: bigint;
  salt: bigint;
  payerKeyHash: string;
  /** The payer's trust period in the registry when the channel opened. */
  payerPeriod: bigint;
}

/** `PaymentChannels.UNCAPPED`: a rate that caps nothing. */
export const UNCAPPED = (1n << 96n) - 1n;

/** `keyTrustedUntil` of a period still trusted (type(uint40).max): never-ending. */
export const TRUSTED = (1n << 40n) - 1n;

const TERMS_TYPES = ["uint256", "uint256", "address", "uint96", "uint96", "uint64", "uint32", "bytes32", "uint32"];

export function channelIdOf(t: ChannelTerms): string {
  return keccak256(
    AbiCoder.defaultAbiCoder().encode(
      TERMS_TYPES,
      TERMS_FIELDS.map((f) => t[f]),
    ),
  );
}

/** The terms of a channel from the arguments of its `ChannelOpened` event (an ethers `Result`). */
export function termsFromOpened(args: unknown): ChannelTerms {
  const a = args as Record<keyof ChannelTerms, string | bigint | number>;
  return {
    payer: BigInt(a.payer),
    payee: BigInt(a.payee),
    token: String(a.token),
    rate: BigInt(a.rate),
    allowance: BigInt(a.allowance),
    openedAt: BigInt(a.openedAt),
    salt: BigInt(a.salt),
    payerKeyHash: String(a.payerKeyHash),
    payerPeriod: BigInt(a.payerPeriod),
  };
}

export function termsToJson(t: ChannelTerms): ChannelTermsJson {
  return Object.fromEntries(TERMS_FIELDS.map((f) => [f, String(t[f])])) as unknown as ChannelTermsJson;
}

export function termsFromJson(j: ChannelTermsJson): ChannelTerms {
  return {
    payer: BigInt(j.payer),
    payee: BigInt(j.payee),
    token: j.token,
    rate: BigInt(j.rate),
    allowance: BigInt(j.allowance),
    openedAt: BigInt(j.openedAt),
    salt: BigInt(j.salt),
    payerKeyHash: j.payerKeyHash,
    payerPeriod: BigInt(j.payerPeriod),
  };
}

/** The most the channel may have paid in total at `at` (s): `PaymentChannels.spendingLimit`. */
export function spendingLimit(t: ChannelTerms, at: bigint): bigint {
  if (t.rate === UNCAPPED) return (1n << 256n) - 1n;
  const elapsed = at > t.openedAt ? at - t.openedAt : 0n;
  return t.allowance + t.rate * elapsed;
}

/**
 * The most a voucher can have the channel pay in total at `at`, when trust in the payer's pinned
 * period lasts until `until` (`keyTrustedUntil`; TRUSTED while it does): `PaymentChannels.claimLimit`.
 */
export function claimLimit(t: ChannelTerms, at: bigint, until: bigint): bigint {
  if (until === 0n) return 0n;
  return spendingLimit(t, until < at ? until : at);
}

/**
 * The EIP-712 digest of `Voucher(channel, cumulativeAmount)`, laid out by hand: the hot path of
 * both sides (two keccaks into reused buffers). The tests hold it equal to the catalogue's digest.
 */
export class VoucherDigester {
  private readonly struct = new Uint8Array(96);
  private readonly view = new DataView(this.struct.buffer);
  private readonly outer = new Uint8Array(66);

  constructor(hasher: TypedDataHasher, deployment: Deployment) {
    this.struct.set(hexToBytes(typeHash("Voucher")), 0);
    this.outer[0] = 0x19;
    this.outer[1] = 0x01;
    this.outer.set(hasher.domainSeparator("channels", deployment), 2);
  }

  /** The digest of a voucher for `channel` (32 bytes) and `amount` (< 2^256). */
  digest(channel: Uint8Array, amount: bigint): Uint8Array {
    if (amount < 0n || amount >> 256n !== 0n) throw new MeterError("cumulativeAmount must fit in 256 bits");
    this.struct.set(channel, 32);
    for (let i = 3; i >= 0; i--) {
      this.view.setBigUint64(64 + 8 * i, amount & 0xffffffffffffffffn);
      amount >>= 64n;
    }
    this.outer.set(keccak(this.struct), 34);
    return keccak(this.outer);
  }
}

export interface SignedVoucher {
  channel: string;
  cumulativeAmount: bigint;
  /** The payer key that signed (ERC-7913 signer bytes). */
  key: string;
  signature: string;
}

/** Cumulative units consumed (energy in Wh, bytes, seconds): it never goes down. */
export interface MeterSource {
  read(): bigint;
}

/** A meter the tests and the demo drive by hand. */
export class SimulatedMeter implements MeterSource {
  private units = 0n;
  add(units: bigint): void {
    if (units < 0n) throw new Error("SimulatedMeter: units must not be negative");
    this.units += units;
  }
  read(): bigint {
    return this.units;
  }
}

export class MeterError extends Error {
  override readonly name = "MeterError";
}

// ---------------------------------------------------------------- payer

export interface MeterPayerOptions {
  /** The payer device's key (in memory: vouchers are signed synchronously). */
  key: DeviceKey;
  hasher: TypedDataHasher;
  /** The PaymentChannels deployment (EIP-712 domain "channels"). */
  deployment: Deployment;
  terms: ChannelTerms;
  /** The agreed price of one unit (token base units). */
  pricePerUnit: bigint;
  /** How many units the payer pays ahead of its meter (the payee delivers only while paid ahead). */
  aheadUnits?: bigint;
  meter: MeterSource;
}

export class MeterPayer {
  readonly channel: string;
  private readonly channelBytes: Uint8Array;
  private readonly digester: VoucherDigester;
  private cumulative = 0n;

  constructor(private readonly opts: MeterPayerOptions) {
    if (opts.pricePerUnit <= 0n) throw new MeterError("pricePerUnit must be positive");
    this.channel = channelIdOf(opts.terms);
    this.channelBytes = hexToBytes(this.channel);
    this.digester = new VoucherDigester(opts.hasher, opts.deployment);
  }

  /** The total the meter justifies now: (units read + units ahead) × price. */
  justified(): bigint {
    return (this.opts.meter.read() + (this.opts.aheadUnits ?? 0n)) * this.opts.pricePerUnit;
  }

  /** The total paid so far (the last voucher's amount). */
  get paid(): bigint {
    return this.cumulative;
  }

  /** A voucher for everything the meter justifies; undefined when that is already paid. */
  pay(): SignedVoucher | undefined {
    const amount = this.justified();
    return amount > this.cumulative ? this.sign(amount) : undefined;
  }

  /**
   * Answers a payee asking for `amount` in total: signs it only if the meter justifies it at the
   * agreed price; a payee asking for more is refused, and nothing is signed.
   */
  payUpTo(amount: bigint): SignedVoucher {
    const justified = this.justified();
    if (amount > justified)
      throw new MeterError(`the payee asks ${amount} in total; the meter justifies ${justified} at the agreed price`);
    if (amount <= this.cumulative) throw new MeterError(`already paid ${this.cumulative}`);
    return this.sign(amount);
  }

  private sign(amount: bigint): SignedVoucher {
    const { key } = this.opts;
    const signature = bytesToHex(key.signBytes(this.digester.digest(this.channelBytes, amount)));
    this.cumulative = amount;
    return { channel: this.channel, cumulativeAmount: amount, key: key.signer, signature };
  }
}

// ---------------------------------------------------------------- payee

/** Why a voucher was refused. */
export type VoucherRefusal = "unknown-channel" | "not-payer-key" | "signature" | "not-higher" | "closed";

export interface PayeeChannel {
  terms: ChannelTerms;
  /** The deposit the payee last saw on chain. */
  deposit: bigint;
  /** Price of one unit the payee sells at. */
  pricePerUnit: bigint;
}

interface ChannelBook {
  id: string;
  idBytes: Uint8Array;
  terms: ChannelTerms;
  deposit: bigint;
  pricePerUnit: bigint;
  /** The key the channel pins (lower case): the only one whose vouchers pay it. */
  key: string;
  /** When the registry stopped trusting the payer in the pinned period (TRUSTED: it has not; as last read). */
  until: bigint;
  best?: SignedVoucher;
  /** What the chain has paid (as last read or claimed). */
  paid: bigint;
  /** Units delivered so far. */
  delivered: bigint;
  closesAt: bigint;
  closed: boolean;
}

type PayeeRecord =
  | { op: "channel"; terms: ChannelTermsJson; deposit: string; pricePerUnit: string; key: string }
  | { op: "trust"; channel: string; until: string }
  | { op: "voucher"; channel: string; amount: string; key: string; signature: string }
  | { op: "delivered"; channel: string; units: string }
  | { op: "closed"; channel: string };

export interface MeterPayeeOptions {
  hasher: TypedDataHasher;
  deployment: Deployment;
  verifier: DeviceSignatureVerifier;
  /** Where the payee keeps its vouchers (a durable, fsync'd log). */
  dataDir: string;
  /** The agent's outbox: claims go through it (exactly once, across restarts). */
  outbox?: Outbox;
  /** Chain reads for `watch` (channel state). */
  provider?: Provider;
  /** Claim once the unclaimed value reaches this (token base units). Default 0: every `claimDue`. */
  minClaimValue?: bigint;
  logger?: Logger;
}

export class MeterPayee {
  private readonly channels = new Map<string, ChannelBook>();
  private readonly durable: DurableLog<PayeeRecord> | null;
  private readonly logger: Logger;
  private readonly digester: VoucherDigester;
  private registry: IDeviceRegistry | undefined;

  private constructor(
    private readonly opts: MeterPayeeOptions,
    readOnly: boolean,
  ) {
    this.digester = new VoucherDigester(opts.hasher, opts.deployment);
    this.logger = (opts.logger ?? silentLogger).child({ role: "meter-payee" });
    const file = MeterPayee.fileIn(opts.dataDir);
    this.durable = readOnly ? null : DurableLog.open<PayeeRecord>(file);
    for (const r of this.durable ? this.durable.replayed : readRecords(file)) this.apply(r);
  }

  /** The payee's book in `dataDir`. */
  static fileIn(dataDir: string): string {
    return path.join(dataDir, "meter-payee.jsonl");
  }

  /** Opens the payee's book in `dataDir` (replaying what it holds). */
  static open(opts: MeterPayeeOptions): MeterPayee {
    return new MeterPayee(opts, false);
  }

  /**
   * A read-only view of the book in `opts.dataDir` as it is now, safe while its payee is running
   * (a watchtower answering closes for it): nothing is written, a line still being written is
   * ignored. It can build the highest voucher of a channel ({@link voucherMessage}), not take one.
   */
  static read(opts: Omit<MeterPayeeOptions, "outbox" | "provider">): MeterPayee {
    return new MeterPayee(opts, true);
  }

  private get log(): DurableLog<PayeeRecord> {
    if (!this.durable) throw new MeterError(`the payee book in ${this.opts.dataDir} is open read-only`);
    return this.durable;
  }

  private apply(r: PayeeRecord): void {
    switch (r.op) {
      case "channel": {
        const terms = termsFromJson(r.terms);
        const id = channelIdOf(terms);
        const known = this.channels.get(id);
        if (known) {
          known.deposit = BigInt(r.deposit);
          return;
        }
        this.channels.set(id, {
          id,
          idBytes: hexToBytes(id),
          terms,
          deposit: BigInt(r.deposit),
          pricePerUnit: BigInt(r.pricePerUnit),
          key: r.key,
          until: TRUSTED,
          paid: 0n,
          delivered: 0n,
          closesAt: 0n,
          closed: false,
        });
        return;
      }
      case "voucher": {
        const c = this.channels.get(r.channel);
        const amount = BigInt(r.amount);
        if (c && (!c.best || amount > c.best.cumulativeAmount))
          c.best = { channel: r.channel, cumulativeAmount: amount, key: r.key, signature: r.signature };
        return;
      }
      case "trust": {
        const c = this.channels.get(r.channel);
        if (c) c.until = BigInt(r.until);
        return;
      }
      case "delivered": {
        const c = this.channels.get(r.channel);
        if (c) c.delivered = BigInt(r.units);
        return;
      }
      case "closed": {
        const c = this.channels.get(r.channel);
        if (c) c.closed = true;
      }
    }
  }

  /**
   * Starts selling over a channel whose terms the payee read from `ChannelOpened`. `payerKey` is
   * the key the channel pins (its keccak256 is `terms.payerKeyHash`).
   */
  async addChannel(c: PayeeChannel & { payerKey: string }): Promise<string> {
    if (keccak256(c.payerKey) !== c.terms.payerKeyHash.toLowerCase())
      throw new MeterError("payerKey is not the key the channel was opened with (terms.payerKeyHash)");
    const record: PayeeRecord = {
      op: "channel",
      terms: termsToJson(c.terms),
      deposit: c.deposit.toString(),
      pricePerUnit: c.pricePerUnit.toString(),
      key: c.payerKey.toLowerCase(),
    };
    await this.log.append(record);
    this.apply(record);
    return channelIdOf(c.terms);
  }

  private book(channel: string): ChannelBook {
    const c = this.channels.get(channel.toLowerCase());
    if (!c) throw new MeterError(`unknown channel ${channel}`);
    return c;
  }

  /**
   * Checks a voucher in memory and, if it is the channel's highest, keeps it: the returned promise
   * resolves once it is on disk. A refusal names its reason; nothing is written for it.
   */
  accept(v: SignedVoucher): { accepted: true; persisted: Promise<void> } | { accepted: false; reason: VoucherRefusal } {
    const c = this.channels.get(v.channel.toLowerCase());
    if (!c) return { accepted: false, reason: "unknown-channel" };
    if (c.closed) return { accepted: false, reason: "closed" };
    const key = v.key.toLowerCase();
    // The chain pays a channel only from the key it was opened with: not from one rotated to since.
    if (key !== c.key) return { accepted: false, reason: "not-payer-key" };
    if (c.best && v.cumulativeAmount <= c.best.cumulativeAmount) return { accepted: false, reason: "not-higher" };
    const digest = this.digester.digest(c.idBytes, v.cumulativeAmount);
    let valid: boolean;
    try {
      valid = this.opts.verifier.verifyStream(key, digest, hexToBytes(v.signature, "signature"));
    } catch {
      valid = false;
    }
    if (!valid) return { accepted: false, reason: "signature" };
    c.best = { ...v, channel: c.id, key };
    const persisted = this.log.append({
      op: "voucher",
      channel: c.id,
      amount: v.cumulativeAmount.toString(),
      key,
      signature: v.signature,
    });
    return { accepted: true, persisted };
  }

  /**
   * What the highest voucher can get the channel to have paid in total at `at` (s): within the
   * deposit and the chain's bound (the spending cap at `at`, or when trust in the payer ended).
   */
  backed(channel: string, at: bigint): bigint {
    const c = this.book(channel);
    const best = c.best?.cumulativeAmount ?? 0n;
    return [best, c.deposit, claimLimit(c.terms, at, c.until)].reduce((a, b) => (a < b ? a : b));
  }

  /**
   * Whether `units` more may be delivered at `at` (s; default now): the voucher held pays for them
   * already, within the deposit and the chain's bound at `at`, which trust ending later cannot lower.
   */
  mayDeliver(channel: string, units: bigint, at: bigint = BigInt(Math.floor(Date.now() / 1000))): boolean {
    const c = this.book(channel);
    const due = (c.delivered + units) * c.pricePerUnit;
    return !c.closed && this.backed(channel, at) >= due;
  }

  /** Records `units` delivered (after `mayDeliver` said yes). */
  async delivered(channel: string, units: bigint): Promise<void> {
    const c = this.book(channel);
    c.delivered += units;
    await this.log.append({ op: "delivered", channel: c.id, units: c.delivered.toString() });
  }

  /** The highest voucher held for `channel`. */
  best(channel: string): SignedVoucher | undefined {
    return this.book(channel).best;
  }

  state(channel: string) {
    const c = this.book(channel);
    return {
      deposit: c.deposit,
      paid: c.paid,
      delivered: c.delivered,
      closesAt: c.closesAt,
      closed: c.closed,
      until: c.until,
    };
  }

  /**
   * Hands the highest voucher of every channel whose unclaimed value reaches `minClaimValue` (or
   * that is closing) to the outbox, which presents it on chain once. Returns the channels claimed.
   */
  async claimDue(at?: bigint): Promise<string[]> {
    const outbox = this.opts.outbox;
    if (!outbox) throw new MeterError("claims need the agent's outbox");
    const claimed: string[] = [];
    for (const c of this.channels.values()) {
      if (c.closed || !c.best) continue;
      const now = at ?? BigInt(Math.floor(Date.now() / 1000));
      const value = this.backed(c.id, now) - c.paid;
      const closing = c.closesAt !== 0n;
      if (value <= 0n || (!closing && value < (this.opts.minClaimValue ?? 0n))) continue;
      await outbox.add(this.voucherMessage(c.id)!, { ref: MeterPayee.claimRef(c.id, c.best.cumulativeAmount) });
      claimed.push(c.id);
    }
    return claimed;
  }

  /** The outbox reference of the claim of `channel`'s voucher for `amount` (whoever queues it). */
  static claimRef(channel: string, amount: bigint): string {
    return `voucher:${channel.toLowerCase()}:${amount}`;
  }

  /**
   * The highest voucher held for `channel` as the device message that claims it (undefined when
   * none is held): what `claimDue` queues, and what a watchtower presents for this payee.
   */
  voucherMessage(channel: string): SignedDeviceMessage | undefined {
    const c = this.book(channel);
    if (!c.best) return undefined;
    // A streamed voucher was checked without its recovery byte: make it the one the chain takes.
    const digest = this.opts.hasher.digest("Voucher", this.opts.deployment, {
      channel: c.id,
      cumulativeAmount: c.best.cumulativeAmount,
    });
    const signature = this.opts.verifier.chainValidSignature(c.best.key, digest, hexToBytes(c.best.signature));
    if (!signature) throw new MeterError(`the voucher held for ${c.id} does not verify`);
    return {
      type: "Voucher",
      key: c.best.key,
      message: { channel: c.id, cumulativeAmount: c.best.cumulativeAmount.toString() },
      signature: bytesToHex(signature),
      terms: termsToJson(c.terms),
    };
  }

  /** Whether the payee sells over `channel`. */
  has(channel: string): boolean {
    return this.channels.has(channel.toLowerCase());
  }

  /**
   * Reads every open channel's state from the chain (deposit, paid, a unilateral close, whether the
   * registry still trusts the payer in the pinned period) and, when one is closing, claims its
   * highest voucher at once. Returns the channels found closing.
   */
  async watch(): Promise<string[]> {
    const { provider, deployment } = this.opts;
    if (!provider) throw new MeterError("watching needs a provider");
    const channels = PaymentChannels__factory.connect(deployment.verifyingContract, provider);
    this.registry ??= IDeviceRegistry__factory.connect(await channels.registry(), provider);
    const closing: string[] = [];
    for (const c of this.channels.values()) {
      if (c.closed) continue;
      const s = await channels.channelState(c.id);
      if (s.deposit === 0n) {
        c.closed = true;
        await this.log.append({ op: "closed", channel: c.id });
        continue;
      }
      c.deposit = s.deposit;
      c.paid = s.paid;
      c.closesAt = s.closesAt;
      const [, , until] = await this.registry.keyTrustedUntil(c.key, c.terms.payerPeriod);
      if (until !== c.until) {
        c.until = until;
        await this.log.append({ op: "trust", channel: c.id, until: until.toString() });
        if (until !== TRUSTED)
          this.logger.warn("payer no longer trusted: its vouchers pay at most the cap when trust ended", {
            channel: c.id,
            until: until.toString(),
          });
      }
      if (s.closesAt !== 0n) {
        closing.push(c.id);
        this.logger.warn("channel closing: answering with the highest voucher", {
          channel: c.id,
          closesAt: s.closesAt.toString(),
        });
      }
    }
    if (closing.length > 0 && this.opts.outbox) await this.claimDue();
    return closing;
  }

  /** Every channel the payee sells over. */
  list(): string[] {
    return [...this.channels.keys()];
  }

  async close(): Promise<void> {
    await this.durable?.close();
  }
}

/** The complete records of a payee book (a line still being written is left out). */
function readRecords(file: string): PayeeRecord[] {
  let text = "";
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
  }
  const records: PayeeRecord[] = [];
  for (const line of text.split("\n").slice(0, -1)) {
    try {
      records.push(JSON.parse(line) as PayeeRecord);
    } catch {
      break;
    }
  }
  return records;
}

/** keccak256 of a payer key: what `terms.payerKeyHash` holds. */
export function payerKeyHash(key: string): string {
  return bytesToHex(keccak(hexToBytes(key, "key")));
}

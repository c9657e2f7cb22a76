/**
 * Subscriptions: accepted only from the owner of their target, kept in a durable log.
 *
 * `subscribe` checks, in this order, against one block of the chain: the request's shape; the
 * EIP-712 signature of the claimed owner over the message on this watch's domain (an EOA's ECDSA
 * with a low s, or an ERC-1271 wallet's approval — `isValidAccountSignature`, as OpenZeppelin's
 * SignatureChecker); the deadline (chain time); a nonce the owner has not used here before; and that
 * the owner owns the target on chain now ({@link OwnershipChecker}). Only then is the subscription
 * written (and synced) and its id and fresh secret returned. `unsubscribe` is signed the same way.
 */
import { randomBytes } from "node:crypto";
import path from "node:path";
import { getAddress, isHexString, type Provider } from "ethers";
import { digest, type Deployment, type TypeName } from "../../eip712/index.js";
import { isValidAccountSignature } from "../../crypto/signatureChecker.js";
import { DurableLog } from "../../store/durableLog.js";
import type { AlertKind } from "../alerts.js";
import { OwnershipChecker, type WatchAddresses } from "./ownership.js";
import { WebhookRefusal } from "./refusal.js";
import { parseSubscriptionRequest, type PublicSubscription, type Subscription } from "./subscription.js";

type SubscriptionRecord =
  | { t: "subscribed"; sub: Subscription; nonce: string }
  | { t: "unsubscribed"; id: string; owner: string; nonce: string; at: number };

/** The subscriptions and the nonces their owners used, rebuilt from the log at open. */
export class SubscriptionStore {
  private readonly subs = new Map<string, Subscription>();
  private readonly ended = new Set<string>();
  /** owner (checksummed) → nonces used, decimal. */
  private readonly nonces = new Map<string, Set<string>>();

  private constructor(private readonly log: DurableLog<SubscriptionRecord>) {
    for (const r of log.replayed) this.apply(r);
  }

  static open(dataDir: string): SubscriptionStore {
    return new SubscriptionStore(DurableLog.open<SubscriptionRecord>(path.join(dataDir, "subscriptions.log")));
  }

  private apply(r: SubscriptionRecord): void {
    if (r.t === "subscribed") {
      this.subs.set(r.sub.id, r.sub);
      this.useNonce(r.sub.owner, r.nonce);
    } else {
      this.ended.add(r.id);
      this.useNonce(r.owner, r.nonce);
    }
  }

  private useNonce(owner: string, nonce: string): void {
    let set = this.nonces.get(owner);
    if (!set) this.nonces.set(owner, (set = new Set()));
    set.add(nonce);
  }

  nonceUsed(owner: string, nonce: string): boolean {
    return this.nonces.get(owner)?.has(nonce) ?? false;
  }

  /**
   * Records an accepted subscription; resolves once it is on disk. The nonce is taken at once,
   * so a second request with it, however close behind, is a replay.
   */
  async add(sub: Subscription, nonce: string): Promise<void> {
    const record: SubscriptionRecord = { t: "subscribed", sub, nonce };
    this.apply(record);
    await this.log.append(record);
  }

  async remove(id: string, nonce: string, at: number): Promise<void> {
    const sub = this.subs.get(id);
    if (!sub) throw new WebhookRefusal("unknown_subscription", `there is no subscription ${id}`, "id");
    const record: SubscriptionRecord = { t: "unsubscribed", id, owner: sub.owner, nonce, at };
    this.apply(record);
    await this.log.append(record);
  }

  get(id: string): Subscription | undefined {
    return this.subs.get(id);
  }

  isActive(id: string): boolean {
    return this.subs.has(id) && !this.ended.has(id);
  }

  /** The subscriptions still active, in the order they were made. */
  active(): Subscription[] {
    return [...this.subs.values()].filter((s) => !this.ended.has(s.id));
  }

  /** `owner`'s subscriptions, active or ended, without their secrets. */
  listFor(owner: string): PublicSubscription[] {
    return [...this.subs.values()]
      .filter((s) => s.owner === owner)
      .map(({ secret: _secret, ...rest }) => ({ ...rest, active: !this.ended.has(rest.id) }));
  }

  close(): Promise<void> {
    return this.log.close();
  }
}

/** What `subscribe` answers: the secret is shown this once. */
export interface Subscribed {
  id: string;
  secret: string;
  fromBlock: string;
  subscription: PublicSubscription;
}

/** A fresh webhook secret in standardwebhooks' format: `whsec_` and 24 random bytes in base64. */
export function newSecret(): string {
  return `whsec_${randomBytes(24).toString("base64")}`;
}

export class SubscriptionService {
  private readonly ownership: OwnershipChecker;

  constructor(
    private readonly store: SubscriptionStore,
    private readonly provider: Provider,
    /** The watch's EIP-712 domain: the chain id and the DeviceRegistry's address. */
    private readonly deployment: Deployment,
    addresses: WatchAddresses,
    private readonly now: () => number = Date.now,
  ) {
    this.ownership = new OwnershipChecker(provider, addresses);
  }

  async subscribe(body: unknown): Promise<Subscribed> {
    const { request, message } = parseSubscriptionRequest(body);
    const block = await this.chain(() => this.provider.getBlock("latest"));
    if (!block) throw new WebhookRefusal("chain_unavailable", "the chain has no latest block");
    await this.checkSigned("WatchSubscription", message, request.owner, request.signature, block.number);
    this.checkFresh(message.deadline, block.timestamp, request.owner, request.nonce);
    const owners = await this.chain(() => this.ownership.ownersOf(request.scope, request.target, block.number));
    if (!owners.includes(request.owner))
      throw new WebhookRefusal(
        "not_owner",
        `${request.owner} does not own ${request.scope} ${request.target} on chain (block ${block.number}); ` +
          `the owner${owners.length > 1 ? "s are" : " is"} ${owners.join(", ")}`,
        "owner",
      );
    // Taken again here, synchronously before the write: two requests with one nonce cannot both pass.
    this.checkFresh(message.deadline, block.timestamp, request.owner, request.nonce);
    const sub: Subscription = {
      id: digest("WatchSubscription", this.deployment, { ...message }),
      owner: request.owner,
      scope: request.scope,
      target: request.target,
      url: request.url,
      events: request.events as AlertKind[], // parsed: "all" is already the list
      secret: newSecret(),
      fromBlock: String(block.number + 1),
      createdAt: this.now(),
    };
    await this.store.add(sub, request.nonce);
    const { secret, ...rest } = sub;
    return { id: sub.id, secret, fromBlock: sub.fromBlock, subscription: { ...rest, active: true } };
  }

  async unsubscribe(id: string, body: unknown): Promise<{ id: string; active: false }> {
    if (!isHexString(id, 32))
      throw new WebhookRefusal("invalid_field", "the subscription id must be a 0x bytes32", "id");
    const sub = this.store.get(id);
    if (!sub || !this.store.isActive(id))
      throw new WebhookRefusal("unknown_subscription", `there is no active subscription ${id}`, "id");
    if (typeof body !== "object" || body === null)
      throw new WebhookRefusal("invalid_json", "the body must be a JSON object");
    const b = body as Record<string, unknown>;
    for (const name of ["nonce", "deadline"])
      if (typeof b[name] !== "string" || !/^[0-9]{1,78}$/.test(b[name] as string))
        throw new WebhookRefusal("invalid_field", `${name} is required, a decimal string`, name);
    if (typeof b.signature !== "string" || !isHexString(b.signature))
      throw new WebhookRefusal("invalid_field", "signature is required, 0x-prefixed hex", "signature");
    const nonce = b.nonce as string;
    const message = {
      owner: sub.owner,
      subscription: id,
      nonce: BigInt(nonce),
      deadline: BigInt(b.deadline as string),
    };
    const block = await this.chain(() => this.provider.getBlock("latest"));
    if (!block) throw new WebhookRefusal("chain_unavailable", "the chain has no latest block");
    await this.checkSigned("WatchUnsubscription", message, sub.owner, b.signature, block.number);
    this.checkFresh(message.deadline, block.timestamp, sub.owner, nonce);
    await this.store.remove(id, nonce, this.now());
    return { id, active: false };
  }

  private async checkSigned(type: TypeName, message: object, owner: string, signature: string, blockTag: number) {
    const d = digest(type, this.deployment, { ...message });
    const ok = await this.chain(() =>
      isValidAccountSignature(this.provider, getAddress(owner), d, signature, blockTag),
    );
    if (!ok)
      throw new WebhookRefusal(
        "bad_signature",
        `the signature is not ${owner}'s over this ${type} for the watch on chain ${this.deployment.chainId} ` +
          `(registry ${this.deployment.verifyingContract}): sign the exact fields sent (url, events, target…), with a low s`,
        "signature",
      );
  }

  private checkFresh(deadline: bigint, chainTime: number, owner: string, nonce: string) {
    if (deadline < BigInt(chainTime))
      throw new WebhookRefusal(
        "expired",
        `the deadline ${deadline} has passed (chain time ${chainTime}): sign again`,
        "deadline",
      );
    if (this.store.nonceUsed(owner, nonce))
      throw new WebhookRefusal(
        "nonce_used",
        `${owner} already used nonce ${nonce} with this watch: sign with a new one`,
        "nonce",
      );
  }

  /** Runs a chain read; a failure to read (not a refusal) is `chain_unavailable`. */
  private async chain<T>(read: () => Promise<T>): Promise<T> {
    try {
      return await read();
    } catch (err) {
      if (err instanceof WebhookRefusal) throw err;
      throw new WebhookRefusal("chain_unavailable", `the chain could not be read: ${(err as Error).message}`);
    }
  }
}

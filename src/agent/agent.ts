/**
 * The device agent: signs a device's messages with the fast EIP-712 digests, persists each one in
 * the outbox before anything is sent, and delivers the outbox through a courier (direct JSON-RPC
 * or the relayer), retrying with backoff while the endpoint is down.
 *
 * - `Agent` is one device: its signer, its nonces (the registry's device nonce, and LocationBeacons'
 *   beacon nonce for its beacons: two independent sequences), `sign`, `drain`, `stop`.
 * - `Dispatcher` delivers an outbox: per device strictly in nonce order, devices side by side.
 *   Several agents (a gateway next to several devices) can share one outbox and one dispatcher:
 *   see {@link openAgentStack}.
 */
import { Serial } from "./serial.js";
import path from "node:path";
import { getAddress, type Provider } from "ethers";
import { TYPES, type Deployment, type Message } from "../eip712/index.js";
import { TypedDataHasher, bytesToHex } from "../eip712/fast.js";
import type { DeviceSigner } from "../crypto/deviceKey.js";
import { DeviceSignatureVerifier } from "../crypto/verify.js";
import { deviceIdOf } from "../registry/batch.js";
import {
  CONTRACT_OF,
  DEVICE_MESSAGE_TYPES,
  addressOf,
  messageId,
  type ContractName,
  type DeviceMessageType,
  type SignedDeviceMessage,
} from "../messages/index.js";
import {
  Backoff,
  Chain,
  Down,
  RelayerCourier,
  RpcCourier,
  type BackoffOptions,
  type ChainDeployment,
  type Courier,
  type ForwardSigner,
  type PayerSigner,
  type StepResult,
} from "./client.js";
import { silentLogger, type Logger } from "./log.js";
import { Outbox, type OutboxEntry, type OutboxOptions } from "./outbox.js";
import { contractOf } from "../messages/calls.js";

// ---------------------------------------------------------------- dispatcher

export interface DispatcherOptions {
  logger?: Logger;
  backoff?: BackoffOptions;
  /** Devices stepped at once. Default 8. */
  concurrency?: number;
  /** In watch mode, how often to look at an empty outbox (new messages wake it anyway). Default 5,000 ms. */
  idlePollMs?: number;
}

/**
 * Delivers the outbox: per device one message at a time in nonce order (its location beacons in a
 * lane of their own), devices side by side.
 */
export class Dispatcher {
  private loop: Promise<void> | null = null;
  private watching = false;
  private stopping = false;
  private readonly notBefore = new Map<string, number>();
  private wakeUp: ((reason: "news" | "stop") => void) | null = null;
  private idleWaiters: (() => void)[] = [];
  private readonly log: Logger;
  private readonly concurrency: number;
  private readonly idlePollMs: number;
  private readonly onAdded = () => this.wake();
  private readonly stepListeners = new Set<(e: OutboxEntry, r: StepResult) => void>();

  constructor(
    readonly outbox: Outbox,
    readonly courier: Courier,
    private readonly opts: DispatcherOptions = {},
  ) {
    this.log = opts.logger ?? silentLogger;
    this.concurrency = opts.concurrency ?? 8;
    this.idlePollMs = opts.idlePollMs ?? 5_000;
    outbox.on("added", this.onAdded);
  }

  /**
   * Delivers everything pending. Without `watch`, resolves once the outbox has nothing left to
   * deliver; with it, keeps delivering new messages until {@link stop}.
   */
  drain(opts: { watch?: boolean } = {}): Promise<void> {
    if (this.stopping) return Promise.resolve();
    if (opts.watch) this.watching = true;
    this.loop ??= this.run().finally(() => {
      this.loop = null;
    });
    if (opts.watch) return this.loop;
    const loop = this.loop;
    return new Promise<void>((resolve, reject) => {
      if (this.outbox.heads().length === 0) return resolve();
      this.idleWaiters.push(resolve);
      loop.then(resolve, reject);
    });
  }

  /** Calls `fn` after every step of every entry (one-shot commands watch their messages with it). */
  onStep(fn: (e: OutboxEntry, r: StepResult) => void): () => void {
    this.stepListeners.add(fn);
    return () => this.stepListeners.delete(fn);
  }

  /** Whether the loop is running. */
  get running(): boolean {
    return this.loop !== null;
  }

  /** Stops delivering (after the current step) and waits for the loop to end. */
  async stop(): Promise<void> {
    this.stopping = true;
    this.outbox.off("added", this.onAdded);
    this.wake("stop");
    await this.loop;
  }

  private wake(reason: "news" | "stop" = "news"): void {
    this.wakeUp?.(reason);
  }

  // Sleeps `ms`; news (a new message) cuts the sleep short only when `wakeOnNews`, a stop always.
  private sleep(ms: number, wakeOnNews: boolean): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        if (this.wakeUp === wake) this.wakeUp = null;
        resolve();
      };
      const wake = (reason: "news" | "stop") => {
        if (reason === "stop" || wakeOnNews) done();
      };
      const timer = setTimeout(done, Math.max(0, ms));
      this.wakeUp = wake;
      if (this.stopping) done();
    });
  }

  private async run(): Promise<void> {
    const backoff = new Backoff(this.opts.backoff);
    while (!this.stopping) {
      const heads = this.outbox.heads();
      if (heads.length === 0) {
        for (const w of this.idleWaiters.splice(0)) w();
        if (!this.watching) return;
        await this.sleep(this.idlePollMs, true);
        continue;
      }
      const now = Date.now();
      const ready = heads.filter((e) => (this.notBefore.get(e.id) ?? 0) <= now).slice(0, this.concurrency);
      if (ready.length === 0) {
        const soonest = Math.min(...heads.map((e) => this.notBefore.get(e.id) ?? now));
        await this.sleep(soonest - now, true);
        continue;
      }
      const results = await Promise.all(ready.map(async (e) => [e, await this.courier.step(e)] as const));
      let down: string | undefined;
      let moved = false;
      for (const [e, r] of results) {
        for (const fn of this.stepListeners) fn(e, r);
        if (r.kind === "down") {
          down = r.error;
          continue;
        }
        if (r.kind === "wait") {
          this.notBefore.set(e.id, Date.now() + r.ms);
          if (r.hold === "refused")
            this.log.warn("message refused for now; holding it", { id: e.id, reason: r.reason, retryInMs: r.ms });
          else this.log.debug("waiting", { id: e.id, reason: r.reason, ms: r.ms });
          continue;
        }
        moved = true;
        this.notBefore.delete(e.id);
        if (r.kind === "done") this.report(this.outbox.get(e.id) ?? e);
      }
      if (down !== undefined) {
        const ms = backoff.next();
        this.log.warn("endpoint unavailable; backing off", { via: this.courier.via, error: down, retryInMs: ms });
        await this.sleep(ms, false);
      } else if (moved) {
        if (backoff.attempts > 0) this.log.info("endpoint back", { via: this.courier.via });
        backoff.reset();
      }
    }
  }

  private report(e: OutboxEntry): void {
    if (e.outcome === "confirmed") return; // the courier logged it with its transaction
    const fields = { id: e.id, type: e.type, device: e.device, nonce: e.nonce, reason: e.reason };
    if (e.outcome === "rejected") this.log.warn("message refused", fields);
    else this.log.info("message already on chain; retired", { ...fields, txHash: e.txHash });
  }
}

// ---------------------------------------------------------------- agent

export interface AgentOptions {
  signer: DeviceSigner;
  deployment: ChainDeployment;
  hasher: TypedDataHasher;
  outbox: Outbox;
  chain: Chain;
  dispatcher: Dispatcher;
  logger?: Logger;
  /** Default signature lifetime (s) when a message gives no deadline. Default 3,600. */
  ttlSeconds?: number;
  /** How long `sign` waits for the chain when it has never learnt the device's nonce (ms). Default 30,000. */
  nonceTimeoutMs?: number;
  /** Called by `stop()`: closes what the agent owns (its stack, when it has one of its own). */
  onStop?: () => Promise<void>;
  /**
   * The device's id in the registry. Default: the id derived from the key, which is the device's
   * id only while it has its first key (a rotated-to key keeps the device's id: give it here, e.g.
   * from `resolveKey`).
   */
  deviceId?: bigint;
}

export interface SignOptions {
  /** An idempotency key: a message with this key already in the outbox is returned, not signed again. */
  ref?: string;
  /** A claim's Merkle leaf and proof (needed to deliver a `DeviceClaim`). */
  claim?: { model: string; firmwareHash: string; proof: string[] };
  /** Persist in the outbox (default). Only a `DeviceClaim`, which uses no nonce, may skip it. */
  persist?: boolean;
}

export interface Signed {
  id: string;
  message: SignedDeviceMessage;
  /** False when `ref` named a message that was already in the outbox. */
  fresh: boolean;
}

export class AgentError extends Error {
  constructor(
    readonly field: string | undefined,
    message: string,
  ) {
    super(message);
    this.name = "AgentError";
  }
}

/** Where the agent is in one of the device's nonce sequences (the registry's, or LocationBeacons'). */
interface NonceSequence {
  next: bigint | undefined;
  stale: boolean;
  /** Nonces of messages signed but not on disk yet. */
  inflight: Set<bigint>;
  changes: number;
}

/** One device: signs its messages, persists them, delivers them. */
export class Agent {
  readonly deviceId: bigint;
  readonly signer: DeviceSigner;
  readonly outbox: Outbox;
  readonly dispatcher: Dispatcher;
  private readonly log: Logger;
  private readonly verifier: DeviceSignatureVerifier;
  /** The device's nonce sequences, by the contract that keeps each. */
  private readonly sequences = new Map<ContractName, NonceSequence>();
  private clockOffset: number | undefined;
  private readonly refsInFlight = new Map<string, Promise<Signed>>();
  private readonly serial = new Serial();
  private readonly onDone = (e: OutboxEntry) => {
    if (e?.device === this.deviceId && e.outcome !== "confirmed") {
      const seq = this.sequence(contractOf(e.type));
      seq.stale = true;
      seq.changes++;
    }
  };

  constructor(private readonly opts: AgentOptions) {
    this.signer = opts.signer;
    this.outbox = opts.outbox;
    this.dispatcher = opts.dispatcher;
    // The id the registry derives from the device's first key, unless told (a rotated key keeps the old id).
    this.deviceId = opts.deviceId ?? deviceIdOf(opts.signer.signer);
    this.log = (opts.logger ?? silentLogger).child({ device: this.deviceId.toString() });
    const signer = opts.signer.signer;
    this.verifier = new DeviceSignatureVerifier(signer.length === 2 + 2 * 84 ? [signer.slice(0, 42)] : []);
    opts.outbox.on("done", this.onDone);
  }

  /** A one-device agent with its own outbox, chain connection and courier. */
  static async create(opts: StackOptions & { signer: DeviceSigner; ttlSeconds?: number }): Promise<Agent> {
    const stack = await openAgentStack(opts);
    return stack.agentFor(opts.signer, { ttlSeconds: opts.ttlSeconds, ownsStack: true });
  }

  /**
   * Signs a device message of `type` with `fields`: fills `device`, the device's next nonce and a
   * default deadline, signs the fast digest, checks the signature as the chain would, and persists
   * the message: resolves once it is on disk. Concurrent calls are numbered in call order and share
   * their disk syncs (group commit).
   */
  async sign(type: DeviceMessageType, fields: Message = {}, opts: SignOptions = {}): Promise<Signed> {
    if (!(DEVICE_MESSAGE_TYPES as readonly string[]).includes(type)) {
      throw new AgentError("type", `type must be one of ${DEVICE_MESSAGE_TYPES.join(", ")}`);
    }
    const persist = opts.persist ?? true;
    const usesNonce = TYPES[type].fields.some((f) => f.name === "nonce");
    if (!persist && usesNonce) throw new AgentError("persist", `a ${type} uses a nonce and must go through the outbox`);
    if (persist && type === "DeviceClaim" && !opts.claim) {
      throw new AgentError("claim", "a DeviceClaim needs its leaf and proof (model, firmwareHash, proof) to be sent");
    }
    if ("nonce" in fields && usesNonce) throw new AgentError("nonce", "the nonce is assigned by the agent");
    const deployment = this.deployment(type);
    const ref = opts.ref;
    if (ref !== undefined) {
      const known = this.known(ref);
      if (known) return known;
    }
    const signing = this.exclusive(async () => {
      // Signed and persisted while this call waited for its turn (by another agent on the outbox)?
      const existing = ref === undefined ? undefined : this.outbox.byRef(ref);
      if (existing) {
        return { signed: undefined, done: { id: existing.id, message: existing.message!, fresh: false } as Signed };
      }
      const seq = this.sequence(CONTRACT_OF[type]);
      const nonce = usesNonce ? await this.nextNonce(type, seq) : undefined;
      if (fields.deadline === undefined && this.clockOffset === undefined) await this.syncClock();
      const message = this.normalise(type, fields);
      if (nonce !== undefined) message.nonce = nonce.toString();
      const digest = this.opts.hasher.digest(type, deployment, message);
      const signature = await this.signer.sign(digest);
      if (!this.verifier.verify(this.signer.signer, digest, signature)) {
        throw new AgentError(undefined, "the device key produced a signature the chain would refuse");
      }
      const signed: SignedDeviceMessage = {
        type,
        key: this.signer.signer,
        message,
        signature: bytesToHex(signature),
        ...(opts.claim ? { claim: opts.claim } : {}),
      };
      if (!persist) return { signed, done: undefined };
      // The write starts here, in call order; the next signature need not wait for its sync.
      const adding = this.outbox.add(signed, ref === undefined ? {} : { ref });
      if (nonce !== undefined) {
        seq.next = nonce + 1n;
        seq.inflight.add(nonce);
        adding.then(
          () => seq.inflight.delete(nonce),
          () => {
            seq.inflight.delete(nonce);
            seq.stale = true; // never on disk: number from the chain and the outbox again
            seq.changes++;
          },
        );
      }
      return { signed, done: undefined, adding };
    });
    const result = signing.then(async (r): Promise<Signed> => {
      if (r.done) return r.done;
      if (!("adding" in r) || !r.adding) return { id: messageId(r.signed!), message: r.signed!, fresh: true };
      const entry = await r.adding;
      this.log.debug("message signed and persisted", { id: entry.id, type, nonce: r.signed!.message.nonce, ref });
      return { id: entry.id, message: r.signed!, fresh: true };
    });
    if (ref !== undefined) {
      this.refsInFlight.set(ref, result);
      const forget = () => this.refsInFlight.delete(ref);
      result.then(forget, forget);
    }
    return result;
  }

  /** The message already signed (or being signed) for `ref`, if any. */
  private known(ref: string): Promise<Signed> | undefined {
    const existing = this.outbox.byRef(ref);
    if (existing) return Promise.resolve({ id: existing.id, message: existing.message!, fresh: false });
    return this.refsInFlight.get(ref)?.then((s) => ({ ...s, fresh: false }));
  }

  /** Delivers everything pending (see {@link Dispatcher.drain}). */
  drain(opts: { watch?: boolean } = {}): Promise<void> {
    return this.dispatcher.drain(opts);
  }

  /**
   * Stops the agent. One made by {@link Agent.create} owns its stack and closes it (delivery stops,
   * the outbox is closed); one of several on a shared stack only detaches (close the stack instead).
   */
  async stop(): Promise<void> {
    this.outbox.off("done", this.onDone);
    await this.opts.onStop?.();
  }

  /** The chain connection the agent reads (nonces, the clock, a beacon's recipients). */
  get chain(): Chain {
    return this.opts.chain;
  }

  /** Where a message of `type` goes: its contract's EIP-712 deployment. */
  deploymentOf(type: DeviceMessageType): Deployment {
    return this.deployment(type);
  }

  /** The EIP-712 deployment a message of `type` is signed for: its contract's domain. */
  private deployment(type: DeviceMessageType) {
    const d = this.opts.deployment;
    const contract = CONTRACT_OF[type];
    if (!d[contract])
      throw new AgentError(contract, `a ${type} goes to the ${contract} contract: its address is not configured`);
    return { chainId: d.chainId, verifyingContract: addressOf(d, contract) };
  }

  /** The device's nonce sequence kept by `contract`. */
  private sequence(contract: ContractName): NonceSequence {
    let seq = this.sequences.get(contract);
    if (!seq) this.sequences.set(contract, (seq = { next: undefined, stale: true, inflight: new Set(), changes: 0 }));
    return seq;
  }

  /** The message's fields in their JSON form (integers as decimal strings), checked against the catalogue. */
  private normalise(type: DeviceMessageType, fields: Message): Message {
    const out: Message = {};
    const ttl = BigInt(this.opts.ttlSeconds ?? 3_600);
    for (const f of TYPES[type].fields) {
      let v = fields[f.name];
      // The device a message speaks for is this agent's (an unlock log's lock is the lock device).
      if (f.name === "device" || (type === "UnlockLog" && f.name === "lock")) {
        if (v !== undefined && BigInt(v as string) !== this.deviceId) {
          throw new AgentError(f.name, `${f.name} must be this agent's device ${this.deviceId}`);
        }
        v = this.deviceId;
      }
      if (f.name === "nonce") continue;
      if (f.name === "deadline" && v === undefined) {
        v = BigInt(Math.floor(Date.now() / 1000) + (this.clockOffset ?? 0)) + ttl;
      }
      if (v === undefined) throw new AgentError(f.name, `${type}.${f.name} is missing`);
      if (/^u?int\d+$/.test(f.type)) {
        try {
          v = BigInt(v as string).toString();
        } catch {
          throw new AgentError(f.name, `${type}.${f.name} must be an integer`);
        }
      } else if (f.type === "address") {
        try {
          v = getAddress(v as string);
        } catch {
          throw new AgentError(f.name, `${type}.${f.name} must be an address`);
        }
      } else if (typeof v === "string") {
        v = v.toLowerCase();
      }
      out[f.name] = v;
    }
    for (const name of Object.keys(fields)) {
      if (!TYPES[type].fields.some((f) => f.name === name)) {
        throw new AgentError(name, `${type} has no field ${name}`);
      }
    }
    // The fast encoder checks ranges and byte lengths and names the field it refuses.
    const probe = TYPES[type].fields.some((f) => f.name === "nonce") ? { ...out, nonce: "0" } : out;
    try {
      this.opts.hasher.structHash(type, probe);
    } catch (err) {
      const field = /\.(\w+) /.exec((err as Error).message)?.[1];
      throw new AgentError(field, (err as Error).message);
    }
    return out;
  }

  /**
   * The device's next nonce in the sequence `seq` that a message of `type` draws from (the
   * registry's device nonce, or LocationBeacons' beacon nonce): where the chain is, moved past every
   * message of this device in that sequence that is queued or landed. Re-read from the chain after
   * a message failed to land (its nonce is free again) and whenever it was never read; while the
   * chain cannot be reached, the outbox and the local count carry on.
   */
  private async nextNonce(type: DeviceMessageType, seq: NonceSequence): Promise<bigint> {
    if (seq.next !== undefined && !seq.stale) return seq.next;
    const contract = CONTRACT_OF[type];
    const changes = seq.changes;
    let fromOutbox = this.outbox.nextNonce(this.deviceId, contract);
    let chainNonce: bigint | undefined;
    const deadline = Date.now() + (this.opts.nonceTimeoutMs ?? 30_000);
    const backoff = new Backoff({ baseMs: 200, capMs: 5_000 });
    for (;;) {
      try {
        chainNonce = await this.opts.chain.nonceFor(type, this.deviceId);
        break;
      } catch (err) {
        if (!(err instanceof Down)) throw err;
        if (fromOutbox !== undefined || seq.next !== undefined) {
          this.log.warn("chain unreachable; numbering from the outbox", { error: err.message });
          break;
        }
        if (Date.now() > deadline)
          throw new AgentError(
            undefined,
            `cannot read the ${contract === "registry" ? "device" : "beacon"} nonce: ${err.message}`,
          );
        await new Promise((r) => setTimeout(r, backoff.next()));
      }
    }
    if (chainNonce !== undefined) await this.syncClock();
    // Read the outbox and the messages still being written after the awaits, not before: one may
    // have moved from the second to the first meanwhile.
    fromOutbox = this.outbox.nextNonce(this.deviceId, contract);
    let next = chainNonce ?? seq.next ?? 0n;
    if (fromOutbox !== undefined && fromOutbox > next) next = fromOutbox;
    for (const n of seq.inflight) if (n + 1n > next) next = n + 1n;
    seq.next = next;
    // Still stale if the chain could not be read, or if another message failed meanwhile.
    seq.stale = chainNonce === undefined || seq.changes !== changes;
    return next;
  }

  /**
   * Learns how far the chain's clock is from ours (a device without a real-time clock may be far
   * off), so that default deadlines are in the chain's time. Best effort: skipped when unreachable.
   */
  private async syncClock(): Promise<void> {
    try {
      const chainNow = Number(await this.opts.chain.latestTimestamp());
      this.clockOffset = chainNow - Math.floor(Date.now() / 1000);
      if (Math.abs(this.clockOffset) > 300) {
        this.log.warn("local clock differs from the chain's; deadlines follow the chain", {
          offsetSeconds: this.clockOffset,
        });
      }
    } catch (err) {
      if (!(err instanceof Down)) throw err;
    }
  }

  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    return this.serial.run(fn);
  }
}

// ---------------------------------------------------------------- wiring

export interface StackOptions {
  deployment: ChainDeployment;
  /** Where the outbox lives (`outbox.jsonl` inside). */
  dataDir: string;
  /** The node: a URL, or a provider (e.g. Hardhat's in-process one). Needed for reads in both modes. */
  rpc: string | Provider;
  /** Direct submission: the account that pays gas. */
  payer?: PayerSigner;
  /** Relayer submission: the gateway's base URL (wins over `payer`). */
  relayerUrl?: string;
  /** Relayer submission: signs public calls as forward requests (needs `deployment.forwarder`). */
  forwardSigner?: ForwardSigner;
  logger?: Logger;
  backoff?: BackoffOptions;
  pollMs?: number;
  holdMs?: number;
  /** A direct transaction still unmined (or refused) after this long is broadcast again (ms). */
  rebroadcastMs?: number;
  confirmations?: number;
  concurrency?: number;
  outbox?: OutboxOptions;
  hasher?: TypedDataHasher;
}

export interface AgentStack {
  hasher: TypedDataHasher;
  outbox: Outbox;
  chain: Chain;
  courier: Courier;
  dispatcher: Dispatcher;
  /** An agent for `signer` on this stack. */
  agentFor(signer: DeviceSigner, opts?: { ttlSeconds?: number; ownsStack?: boolean; deviceId?: bigint }): Agent;
  close(): Promise<void>;
}

/** Opens the outbox in `dataDir`, connects to the chain and builds the courier and dispatcher. */
export async function openAgentStack(opts: StackOptions): Promise<AgentStack> {
  const logger = opts.logger ?? silentLogger;
  const hasher = opts.hasher ?? (await TypedDataHasher.create());
  const deployment: ChainDeployment = {
    chainId: BigInt(opts.deployment.chainId),
    registry: getAddress(opts.deployment.registry),
    ...(opts.deployment.locationBeacons ? { locationBeacons: getAddress(opts.deployment.locationBeacons) } : {}),
    ...(opts.deployment.lockAccess ? { lockAccess: getAddress(opts.deployment.lockAccess) } : {}),
    ...(opts.deployment.paymentChannels ? { paymentChannels: getAddress(opts.deployment.paymentChannels) } : {}),
    ...(opts.deployment.custodyLedger ? { custodyLedger: getAddress(opts.deployment.custodyLedger) } : {}),
    ...(opts.deployment.guardianQuorum ? { guardianQuorum: getAddress(opts.deployment.guardianQuorum) } : {}),
    ...(opts.deployment.forwarder ? { forwarder: getAddress(opts.deployment.forwarder) } : {}),
  };
  const provider = typeof opts.rpc === "string" ? Chain.provider(opts.rpc, deployment.chainId) : opts.rpc;
  const chain = new Chain(provider, deployment, hasher);
  const outbox = Outbox.open(path.join(opts.dataDir, "outbox.jsonl"), opts.outbox);
  let courier: Courier;
  if (opts.relayerUrl) {
    courier = new RelayerCourier({
      url: opts.relayerUrl,
      outbox,
      chain,
      logger,
      forwardSigner: opts.forwardSigner,
      pollMs: opts.pollMs,
      holdMs: opts.holdMs,
    });
  } else if (opts.payer) {
    courier = new RpcCourier({
      chain,
      outbox,
      payer: opts.payer,
      logger,
      pollMs: opts.pollMs,
      holdMs: opts.holdMs,
      rebroadcastMs: opts.rebroadcastMs,
      confirmations: opts.confirmations,
    });
  } else {
    await outbox.close();
    throw new AgentError("payer", "direct submission needs a payer account (or give a relayer URL)");
  }
  const dispatcher = new Dispatcher(outbox, courier, {
    logger,
    backoff: opts.backoff,
    concurrency: opts.concurrency,
  });
  let closed = false;
  const stack: AgentStack = {
    hasher,
    outbox,
    chain,
    courier,
    dispatcher,
    agentFor(signer, o = {}) {
      const agent = new Agent({
        signer,
        deployment,
        hasher,
        outbox,
        chain,
        dispatcher,
        logger,
        ttlSeconds: o.ttlSeconds,
        deviceId: o.deviceId,
        onStop: o.ownsStack ? () => stack.close() : undefined,
      });
      return agent;
    },
    async close() {
      if (closed) return;
      closed = true;
      await dispatcher.stop();
      await courier.close();
      await outbox.close();
    },
  };
  return stack;
}

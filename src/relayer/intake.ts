/**
 * Intake: every check a message must pass before the relayer accepts it, in order of cost, each
 * refusing with its own code — shape, duplicate, deadline, signature (malleability first), rate
 * limit, target allowlist, chain state (device status, nonce used or queued, claim key and batch and
 * proof), gas cap — then a synchronous reservation of its lane slot and an fsync'd append before the
 * 202. Nothing here spends gas: the only node calls are cached reads and, for message shapes not yet
 * seen, one `eth_estimateGas`.
 */
import { AbiCoder, concat, keccak256, type JsonRpcProvider } from "ethers";
import type { FastifyBaseLogger } from "fastify";
import { DOMAINS, TYPES, type Deployment } from "../eip712/index.js";
import { TypedDataHasher, hexToBytes, keccak } from "../eip712/fast.js";
import { DeviceSignatureVerifier } from "../crypto/verify.js";
import { P256_N } from "../crypto/p256.js";
import {
  CONTRACT_OF,
  TERMS_FIELDS,
  checkShape,
  deadlineOf,
  deviceOf,
  encodeCall,
  messageId,
  nonceOf,
  type ContractName,
  type SignedDeviceMessage,
} from "../messages/index.js";
import { deviceIdOf, leafHash } from "../registry/batch.js";
import { ChainView, DeviceStatus, STATUS_NAMES, type OtherContracts } from "./chain.js";
import type { ResolvedConfig } from "./config.js";
import { Refusal, shapeRefusal } from "./errors.js";
import { checkForwardShape, forwardId, forwardMessage, forwardTuple, type ForwardRequestBody } from "./forward.js";
import { SUITE } from "./preflight.js";
import { RateLimiter } from "./rateLimit.js";
import { tryCall } from "./revert.js";
import type { Entry, MessageStatus, MessageStore } from "./store.js";

const SECP256K1_HALF_N = 0x7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0n;
const P256_HALF_N = P256_N / 2n;
const ZERO_ADDRESS = /^0x0{40}$/i;

/**
 * Gas a device message of a shape not yet estimated is assumed to cost alone (21,000 included),
 * until one of that shape is next in line and gets a real `eth_estimateGas`. Measured on the
 * registry (secp256k1 / P-256 key): attestation 52k / 63k, cancellation 50k / 61k, claim with a
 * 14-deep proof 127k / 139k; on LocationBeacons, a device's first beacon (its nonce slot written
 * from zero) 78k sealed to three recipients from a secp256k1 key, 85k to one from a P-256 key; each
 * further recipient adds its key and 56 bytes of ciphertext, up to eight. These bounds leave headroom.
 */
const GAS_BOUND: Record<SignedDeviceMessage["type"], bigint> = {
  DeviceClaim: 200_000n,
  FirmwareAttestation: 100_000n,
  LocationBeacon: 150_000n,
  NonceCancellation: 100_000n,
  UnlockLog: 100_000n,
  Voucher: 100_000n,
  Checkpoint: 100_000n,
};

export interface Reply {
  status: 200 | 202;
  body: { id: string; status: MessageStatus };
}

export interface IntakeContext {
  config: ResolvedConfig;
  provider: JsonRpcProvider;
  chain: ChainView;
  store: MessageStore;
  hasher: TypedDataHasher;
  registry: Deployment;
  /** LocationBeacons, when the relayer delivers beacons. */
  beacons?: Deployment;
  /** LockAccess, PaymentChannels and CustodyLedger, those the relayer was given. */
  others: OtherContracts;
  forwarder: Deployment;
  relayer: string;
  log: FastifyBaseLogger;
  /** Called once a message is durably accepted. */
  onAccepted: () => void;
}

export class Intake {
  private readonly limiter: RateLimiter;
  private readonly allowedVerifiers: Set<string>;
  private verifier: DeviceSignatureVerifier;
  /** Contracts device messages may be routed to. */
  private readonly callTargets: Map<ContractName, string>;
  /** Targets forward requests may call. */
  private readonly forwardTargets: Set<string>;
  /** Measured gas of a device message sent alone, by shape. */
  private readonly gasByShape = new Map<string, bigint>();
  readonly refused = new Map<string, number>();
  accepted = 0;
  duplicates = 0;

  constructor(private readonly ctx: IntakeContext) {
    this.limiter = new RateLimiter(ctx.config.rateLimit);
    this.allowedVerifiers = new Set(ctx.config.p256Verifiers.map((v) => v.toLowerCase()));
    this.verifier = new DeviceSignatureVerifier(this.allowedVerifiers);
    // Every contract of the suite the relayer was given is on its allowlist.
    this.callTargets = new Map([["registry", ctx.registry.verifyingContract.toLowerCase()]]);
    if (ctx.beacons) this.callTargets.set("locationBeacons", ctx.beacons.verifyingContract.toLowerCase());
    for (const name of ["lockAccess", "paymentChannels", "custodyLedger"] as const) {
      const address = ctx.others[name];
      if (address) this.callTargets.set(name, address.toLowerCase());
    }
    // Forward requests: every contract of the suite that takes them (ERC-2771), and --forward-target.
    this.forwardTargets = new Set(
      [
        ctx.registry.verifyingContract,
        ...[ctx.others.lockAccess, ctx.others.paymentChannels, ctx.others.custodyLedger].filter(
          (a): a is string => a !== undefined,
        ),
        ...ctx.config.forwardTargets,
      ].map((t) => t.toLowerCase()),
    );
  }

  /** Counts a refusal by code (for /health and the benches). */
  countRefusal(code: string): void {
    this.refused.set(code, (this.refused.get(code) ?? 0) + 1);
  }

  // ------------------------------------------------------------------ device messages

  async device(input: unknown): Promise<Reply> {
    return this.refundOnOurFault((charge) => this.checkDeviceMessage(input, charge));
  }

  async forward(input: unknown): Promise<Reply> {
    return this.refundOnOurFault((charge) => this.checkForwardRequest(input, charge));
  }

  /** Gives the rate-limit token back when a message is refused for the relayer's fault (node down, disk error). */
  private async refundOnOurFault(run: (charge: (sender: string, what: string) => void) => Promise<Reply>) {
    let charged: string | undefined;
    try {
      return await run((sender, what) => {
        this.rateLimit(sender, what);
        charged = sender;
      });
    } catch (err) {
      if (charged && !(err instanceof Refusal && err.code !== "chain_unavailable")) this.limiter.refund(charged);
      throw err;
    }
  }

  private async checkDeviceMessage(input: unknown, charge: (sender: string, what: string) => void): Promise<Reply> {
    let m: SignedDeviceMessage;
    try {
      m = checkShape(input);
    } catch (err) {
      throw shapeRefusal(err);
    }
    const id = messageId(m);
    const known = this.ctx.store.entries.get(id);
    if (known) return this.duplicate(known, m);

    // A type's contract depends on the type alone.
    const contract = CONTRACT_OF[m.type];
    const target = this.callTargets.get(contract);
    if (target === undefined) {
      const { name, flag } = SUITE[contract];
      throw new Refusal(
        "target_not_allowed",
        `${/^[AEIOU]/.test(m.type) ? "an" : "a"} ${m.type} goes to ${name}, which this relayer was not given: its operator starts it with ${flag}`,
        "type",
      );
    }
    const deployment: Deployment = { chainId: this.ctx.registry.chainId, verifyingContract: target };

    const key = m.key.toLowerCase();
    let digest: Uint8Array;
    try {
      digest = this.ctx.hasher.digest(m.type, deployment, m.message);
    } catch (err) {
      throw shapeRefusal(err, m.type);
    }
    if (m.type === "DeviceClaim") checkClaimShape(m);
    if (m.type === "Voucher") checkTerms(m);
    const deadline = deadlineOf(m);
    this.checkDeadline(deadline, "message.deadline");

    const device = deviceOf(m);
    const nonce = nonceOf(m) ?? null;
    const signature = hexToBytes(m.signature, "signature");
    await this.checkDeviceSignature(m, key, digest, signature, deployment);

    try {
      // Per key, not per named device: a forger's fresh key verifies its own signature in any
      // device's name, and must not spend that device's quota.
      charge(`k:${key}`, "device key");

      let nextInLine: boolean;
      let mustSimulate = false;
      let slot = nonce;
      if (m.type === "DeviceClaim") nextInLine = await this.checkClaim(m, id, key);
      else if (m.type === "UnlockLog") [nextInLine, slot] = await this.checkUnlockLog(m, id, key, device);
      else if (m.type === "Checkpoint") [nextInLine, slot, mustSimulate] = await this.checkCheckpoint(m, id, key);
      else if (m.type === "Voucher") [nextInLine, slot, mustSimulate] = await this.checkVoucher(m, id, key, device);
      else nextInLine = await this.checkDevice(m, id, key, device, nonce!);
      await this.checkDeviceGas(m, key, nextInLine, target, mustSimulate);

      return await this.reserve({
        id,
        kind: "device",
        body: m,
        lane: laneOf(m, key, device),
        nonce: slot,
        deadline,
      });
    } catch (err) {
      if (err instanceof Refusal) await this.attribute(err, m, id, key, device);
      throw err;
    }
  }

  /**
   * Tags a refusal decided after the signature verified with the device that signed the message,
   * when the key is that device's current key (the relayer's cached view of the registry). The
   * signature alone proves nothing about a device: a fresh key, or one recovered from any
   * signature, verifies too, and could speak for any device — those (`unknown_key`, another device's
   * key: `wrong_device`) stay unattributed, as does `chain_unavailable` (the relayer's own fault).
   */
  private async attribute(err: Refusal, m: SignedDeviceMessage, id: string, key: string, named: bigint) {
    if (err.code === "chain_unavailable" || this.ctx.config.refusalFeedSize === 0) return;
    let signer: bigint;
    try {
      signer = (await this.ctx.chain.deviceByKey(key)).id;
    } catch {
      return; // the node is down: the refusal stands, unattributed
    }
    // A checkpoint names no device (`deviceOf` is its key's first device): its signer's is the one.
    if (signer === 0n || (m.type !== "Checkpoint" && signer !== named)) return;
    err.attribution = { id, device: signer, message: m };
  }

  private async checkDeviceSignature(
    m: SignedDeviceMessage,
    key: string,
    digest: Uint8Array,
    signature: Uint8Array,
    deployment: Deployment,
  ): Promise<void> {
    const bytes = (key.length - 2) / 2;
    if (bytes === 20) {
      if (signature.length !== 65)
        throw new Refusal("bad_signature", "signature of a secp256k1 key must be 65 bytes (r, s, v)", "signature");
      if (word(signature, 32) > SECP256K1_HALF_N)
        throw new Refusal(
          "malleable_signature",
          "signature has a high s (the malleated twin of a signature); the chain refuses it",
          "signature",
        );
    } else if (bytes === 84) {
      const verifier = key.slice(0, 42);
      if (!this.allowedVerifiers.has(verifier)) {
        if (!(await this.read(() => this.ctx.chain.isKeyVerifier(verifier))))
          throw new Refusal("unsupported_key", `key's verifier ${verifier} is not allowed by the registry`, "key");
        this.allowedVerifiers.add(verifier);
        this.verifier = new DeviceSignatureVerifier(this.allowedVerifiers);
      }
      if (signature.length !== 64)
        throw new Refusal("bad_signature", "signature of a P-256 key must be 64 bytes (r, s)", "signature");
      if (word(signature, 32) > P256_HALF_N)
        throw new Refusal(
          "malleable_signature",
          "signature has a high s (the malleated twin of a signature); the chain refuses it",
          "signature",
        );
    } else {
      throw new Refusal("unsupported_key", "key must be a 20-byte address or an 84-byte P-256 verifier key", "key");
    }
    if (!this.verifier.verify(key, digest, signature)) {
      const { chainId, verifyingContract } = deployment;
      throw new Refusal(
        "bad_signature",
        `signature does not verify: key ${key} did not sign this ${m.type} for "${DOMAINS[TYPES[m.type].domain].name}" ` +
          `on chain ${chainId} at ${verifyingContract} (tampered fields, another key, chain or contract?)`,
        "signature",
      );
    }
  }

  /**
   * A message from a registered device: key current, status right for the type, nonce free (a
   * beacon's nonce is LocationBeacons' beacon nonce, a sequence of its own).
   */
  private async checkDevice(
    m: SignedDeviceMessage,
    id: string,
    key: string,
    device: bigint,
    nonce: bigint,
  ): Promise<boolean> {
    const beacon = m.type === "LocationBeacon";
    const ref = await this.read(() => this.ctx.chain.deviceByKey(key));
    let chainNonce: bigint;
    let onChain = true;
    if (ref.id === 0n) {
      // A device whose claim is queued here will exist, with nonce 0, once the claim lands (and be
      // active: no beacon of it can land).
      const claim = this.ctx.store.queued(`c:${key}`, null);
      if (!claim || deviceIdOf(key) !== device || beacon)
        throw new Refusal("unknown_key", `no device has key ${key} (never claimed, or rotated away)`, "key");
      chainNonce = 0n;
      onChain = false;
    } else {
      if (ref.id !== device)
        throw new Refusal(
          "wrong_device",
          `key ${key} belongs to device ${ref.id}, not to message.device ${device}`,
          "message.device",
        );
      if (beacon) {
        if (ref.status !== DeviceStatus.Quarantined)
          throw new Refusal(
            "device_not_active",
            `device ${device} is ${STATUS_NAMES[ref.status]}: only a quarantined device posts location beacons`,
            "key",
          );
      } else if (ref.status !== DeviceStatus.Active) {
        throw new Refusal("device_not_active", `device ${device} is ${STATUS_NAMES[ref.status]}, not Active`, "key");
      }
      chainNonce = await this.read(() =>
        beacon ? this.ctx.chain.beaconNonce(device) : this.ctx.chain.deviceNonce(device),
      );
    }
    this.checkNonce(
      laneOf(m, key, device),
      id,
      nonce,
      chainNonce,
      "message.nonce",
      beacon ? `device ${device}'s beacons` : `device ${device}`,
    );
    return onChain && nonce === chainNonce;
  }

  /** The device `key` belongs to, which must be `device` (when given) and Active. */
  private async activeDevice(key: string, device: bigint | undefined, field: string, what: string): Promise<bigint> {
    const ref = await this.read(() => this.ctx.chain.deviceByKey(key));
    if (ref.id === 0n)
      throw new Refusal("unknown_key", `no device has key ${key} (never claimed, or rotated away)`, "key");
    if (device !== undefined && ref.id !== device)
      throw new Refusal("wrong_device", `key ${key} belongs to device ${ref.id}, not to ${what} ${device}`, field);
    if (ref.status !== DeviceStatus.Active)
      throw new Refusal("device_not_active", `device ${ref.id} is ${STATUS_NAMES[ref.status]}, not Active`, "key");
    return ref.id;
  }

  /**
   * A lock's unlock-log batch: signed by the lock's current key, the lock Active, `seq` the lock's
   * next (its last anchored + 1) or waiting for the batches before it. Returns [next in line, seq].
   */
  private async checkUnlockLog(
    m: SignedDeviceMessage,
    id: string,
    key: string,
    lock: bigint,
  ): Promise<[boolean, bigint]> {
    await this.activeDevice(key, lock, "message.lock", "message.lock");
    const seq = BigInt(m.message.seq as string);
    const next = await this.read(() => this.ctx.chain.lockNextSeq(lock));
    this.checkNonce(laneOf(m, key, lock), id, seq, next, "message.seq", `lock ${lock}'s log`, "sequence number");
    return [seq === next, seq];
  }

  /**
   * A tracker's checkpoint: its key an Active device's, the shipment's tracker, `seq` the
   * shipment's next checkpoint (or waiting for those before it). Returns [next in line, seq, must
   * simulate (an unknown or delivered shipment: the contract names why)].
   */
  private async checkCheckpoint(m: SignedDeviceMessage, id: string, key: string): Promise<[boolean, bigint, boolean]> {
    const shipment = String(m.message.shipment).toLowerCase();
    const [tracker, state] = await Promise.all([
      this.activeDevice(key, undefined, "key", "device"),
      this.read(() => this.ctx.chain.shipment(shipment)),
    ]);
    if (state.tracker !== 0n && state.tracker !== tracker)
      throw new Refusal(
        "wrong_device",
        `key ${key} belongs to device ${tracker}, not to shipment ${shipment}'s tracker ${state.tracker}`,
        "key",
      );
    const seq = BigInt(m.message.seq as string);
    const next = state.checkpointSeq + 1n;
    // An unknown or delivered shipment is left to the simulation, which names it.
    const doomed = state.tracker === 0n || state.delivered;
    if (!doomed)
      this.checkNonce(`s:${shipment}`, id, seq, next, "message.seq", `shipment ${shipment}`, "sequence number");
    return [doomed || seq === next, seq, doomed];
  }

  /**
   * A payer's voucher (its terms hash to `message.channel`: `checkTerms`): the key is the payer's (pinned in the
   * terms, and its device Active), and it pays more than the channel paid so far. Vouchers are
   * cumulative: the lane's slot is the amount. Returns [next in line, amount, must simulate (a
   * channel not open: the contract names why)].
   */
  private async checkVoucher(
    m: SignedDeviceMessage,
    id: string,
    key: string,
    payer: bigint,
  ): Promise<[boolean, bigint, boolean]> {
    const t = m.terms!;
    const channel = String(m.message.channel).toLowerCase();
    if (keccak256(key) !== String(t.payerKeyHash).toLowerCase())
      throw new Refusal(
        "wrong_device",
        `key ${key} is not the payer key the channel pinned (terms.payerKeyHash)`,
        "key",
      );
    await this.activeDevice(key, payer, "terms.payer", "terms.payer");
    const amount = BigInt(m.message.cumulativeAmount as string);
    const state = await this.read(() => this.ctx.chain.channel(channel));
    if (state.deposit !== 0n && amount <= state.paid)
      throw new Refusal(
        "nonce_used",
        `channel ${channel} has paid ${state.paid} already, as much as this voucher's ${amount} or more`,
        "message.cumulativeAmount",
      );
    const queued = this.ctx.store.queued(`v:${channel}`, amount);
    if (queued && queued.id !== id)
      throw new Refusal(
        "nonce_queued",
        `a voucher of ${amount} on channel ${channel} is already queued (${queued.id})`,
        "message.cumulativeAmount",
      );
    return [true, amount, state.deposit === 0n];
  }

  /** A claim: key never registered, batch active, leaf and proof lead to the batch's root. */
  private async checkClaim(m: SignedDeviceMessage, id: string, key: string): Promise<boolean> {
    if (ZERO_ADDRESS.test(String(m.message.owner)))
      throw new Refusal("invalid_field", "message.owner must not be the zero address", "message.owner");
    const batchId = BigInt(m.message.batch as string);
    const [available, batch] = await Promise.all([
      this.read(() => this.ctx.chain.keyAvailable(key)),
      this.read(() => this.ctx.chain.batch(batchId)),
    ]);
    if (!available) throw new Refusal("key_taken", `key ${key} is already registered: a device is claimed once`, "key");
    const queued = this.ctx.store.queued(`c:${key}`, null);
    if (queued && queued.id !== id)
      throw new Refusal("nonce_queued", `another claim of key ${key} is already queued (${queued.id})`, "key");
    if (batch.status !== 1)
      throw new Refusal(
        "batch_not_active",
        `batch ${batchId} is ${["unknown", "Active", "Quarantined", "Revoked"][batch.status]}`,
        "message.batch",
      );
    const c = m.claim!;
    let node = hexToBytes(leafHash({ deviceKey: key, model: c.model, firmwareHash: c.firmwareHash }));
    for (const sibling of c.proof) {
      const s = hexToBytes(sibling);
      node = keccak(Buffer.compare(node, s) <= 0 ? concatBytes(node, s) : concatBytes(s, node));
    }
    if (Buffer.compare(node, hexToBytes(batch.root)) !== 0)
      throw new Refusal(
        "invalid_proof",
        `claim.proof does not prove (key, model, firmwareHash) in batch ${batchId}`,
        "claim.proof",
      );
    return true;
  }

  /**
   * Prices a message by its shape (simulated once per shape, when next in line). `mustSimulate`:
   * the chain state says it may revert (an unknown or delivered shipment, a channel not open):
   * simulated whatever the shape, so that the refusal names the contract's reason.
   */
  private async checkDeviceGas(
    m: SignedDeviceMessage,
    key: string,
    nextInLine: boolean,
    to: string,
    mustSimulate = false,
  ): Promise<void> {
    const shape = `${m.type}:${key.length}:${m.signature.length}:${m.claim?.proof.length ?? 0}`;
    let gas = this.gasByShape.get(shape);
    if ((gas === undefined && nextInLine) || mustSimulate) {
      const data = encodeCall(m).data;
      const r = await this.read(() =>
        tryCall(() => this.ctx.provider.estimateGas({ from: this.ctx.relayer, to, data })),
      );
      if (!r.ok) throw new Refusal("would_revert", `simulated, the call reverts: ${r.reason}`);
      gas = r.value;
      this.gasByShape.set(shape, gas);
    }
    gas ??= GAS_BOUND[m.type];
    if (gas > this.ctx.config.gasCap)
      throw new Refusal(
        "over_gas_cap",
        `this ${m.type} costs about ${gas} gas, over the relayer's cap of ${this.ctx.config.gasCap}`,
      );
  }

  // ------------------------------------------------------------------ forward requests

  private async checkForwardRequest(input: unknown, charge: (sender: string, what: string) => void): Promise<Reply> {
    let body: ForwardRequestBody;
    try {
      body = checkForwardShape(input);
    } catch (err) {
      throw shapeRefusal(err);
    }
    const id = forwardId(body);
    const known = this.ctx.store.entries.get(id);
    if (known) return this.duplicate(known, body);

    if (!this.forwardTargets.has(body.to))
      throw new Refusal("target_not_allowed", `to ${body.to} is not on the relayer's allowlist`, "to");
    if (BigInt(body.value) !== 0n)
      throw new Refusal("value_not_allowed", "value must be 0: the relayer does not pay value", "value");
    const deadline = BigInt(body.deadline);
    this.checkDeadline(deadline, "deadline");
    const gas = BigInt(body.gas);
    if (gas > this.ctx.config.gasCap)
      throw new Refusal("over_gas_cap", `gas ${gas} is over the relayer's cap of ${this.ctx.config.gasCap}`, "gas");

    const signature = hexToBytes(body.signature, "signature");
    if (word(signature, 32) > SECP256K1_HALF_N)
      throw new Refusal(
        "malleable_signature",
        "signature has a high s (the malleated twin of a signature); the forwarder refuses it",
        "signature",
      );
    const lane = `f:${body.from}`;
    const chainNonce = await this.read(() => this.ctx.chain.forwardNonce(body.from));
    // The request does not carry the nonce it was signed with: find it among the plausible ones.
    const queued = this.ctx.store.lanes.get(lane)?.size ?? 0;
    const candidates: bigint[] = [];
    if (body.nonce !== undefined) candidates.push(BigInt(body.nonce));
    else for (let n = chainNonce > 4n ? chainNonce - 4n : 0n; n <= chainNonce + BigInt(queued); n++) candidates.push(n);
    const nonce = candidates.find((n) =>
      this.verifier.verify(
        body.from,
        this.ctx.hasher.digest("ForwardRequest", this.ctx.forwarder, forwardMessage(body, n)),
        signature,
      ),
    );
    if (nonce === undefined) {
      const { chainId, verifyingContract } = this.ctx.forwarder;
      throw new Refusal(
        "bad_signature",
        `signature does not verify: ${body.from} did not sign this ForwardRequest for "${DOMAINS.forwarder.name}" ` +
          `on chain ${chainId} at ${verifyingContract} with nonce ${body.nonce ?? `${candidates[0]}..${candidates.at(-1)}`}`,
        "signature",
      );
    }
    charge(lane, "signer");
    this.checkNonce(lane, id, nonce, chainNonce, "nonce", body.from);

    if (nonce === chainNonce) {
      // Next in line: simulate it exactly as the forwarder would run it, and price it.
      const forwarder = this.ctx.forwarder.verifyingContract;
      const data = this.ctx.chain.forwarderContract.interface.encodeFunctionData("execute", [forwardTuple(body)]);
      const r = await this.read(() =>
        tryCall(() => this.ctx.provider.estimateGas({ from: this.ctx.relayer, to: forwarder, data })),
      );
      if (!r.ok) {
        const inner = await this.read(() =>
          tryCall(() => this.ctx.provider.call({ from: forwarder, to: body.to, data: concat([body.data, body.from]) })),
        );
        throw new Refusal("would_revert", `simulated, the call reverts: ${inner.ok ? r.reason : inner.reason}`, "data");
      }
      if (r.value > this.ctx.config.gasCap)
        throw new Refusal(
          "over_gas_cap",
          `this request costs about ${r.value} gas, over the relayer's cap of ${this.ctx.config.gasCap}`,
          "gas",
        );
    }
    return this.reserve({ id, kind: "forward", body: { ...body, nonce: nonce.toString() }, lane, nonce, deadline });
  }

  // ------------------------------------------------------------------ shared

  private checkDeadline(deadline: bigint, field: string): void {
    const now = this.ctx.chain.now();
    if (deadline <= now + BigInt(this.ctx.config.deadlineSlackSeconds))
      throw new Refusal(
        "expired",
        deadline <= now
          ? `${field} ${deadline} has passed (now ${now})`
          : `${field} ${deadline} leaves under ${this.ctx.config.deadlineSlackSeconds} s to land (now ${now})`,
        field,
      );
  }

  private checkNonce(
    lane: string,
    id: string,
    nonce: bigint,
    chainNonce: bigint,
    field: string,
    who: string,
    word = "nonce",
  ): void {
    if (nonce < chainNonce)
      throw new Refusal(
        "nonce_used",
        `${word} ${nonce} of ${who} is already used on chain (next is ${chainNonce}): a replay`,
        field,
      );
    const queued = this.ctx.store.queued(lane, nonce);
    if (queued && queued.id !== id)
      throw new Refusal("nonce_queued", `${word} ${nonce} of ${who} is already queued (${queued.id})`, field);
    const gap = BigInt(this.ctx.config.maxNonceGap);
    if (nonce > chainNonce + gap)
      throw new Refusal(
        "nonce_too_far",
        `${word} ${nonce} of ${who} is more than ${gap} past its next ${word} ${chainNonce}`,
        field,
      );
  }

  private rateLimit(sender: string, what: string): void {
    const wait = this.limiter.take(sender);
    if (wait > 0)
      throw new Refusal(
        "rate_limited",
        `rate limit of ${this.ctx.config.rateLimit} messages per minute per ${what} exceeded; retry in ${wait} s`,
        undefined,
        wait,
      );
  }

  private async reserve(e: Omit<Entry, "persisted" | "durable" | "status" | "acceptedAt">): Promise<Reply> {
    // Synchronous from here to the append: two requests for one nonce cannot both get in.
    const r = this.ctx.store.reserve(e);
    if (!r.fresh) {
      if (r.entry.id === e.id) return this.duplicate(r.entry, e.body);
      const [field, what] =
        e.kind === "forward"
          ? ["nonce", `nonce ${e.nonce}`]
          : e.nonce === null
            ? ["key", "a claim of this key"]
            : /^[ls]:/.test(e.lane)
              ? ["message.seq", `sequence number ${e.nonce}`]
              : e.lane.startsWith("v:")
                ? ["message.cumulativeAmount", `a voucher of ${e.nonce}`]
                : ["message.nonce", `nonce ${e.nonce}`];
      throw new Refusal("nonce_queued", `${what} is already queued (${r.entry.id})`, field);
    }
    await r.entry.persisted;
    this.accepted++;
    this.ctx.onAccepted();
    this.ctx.log.debug({ event: "accepted", id: e.id, kind: e.kind, lane: e.lane, nonce: e.nonce?.toString() });
    return { status: 202, body: { id: e.id, status: "accepted" } };
  }

  /**
   * The same message again: its status. The same id (signature) with other content is not the same
   * message — answering with the first one's status would tell the sender that altered content
   * landed — so it is a 409 conflict.
   */
  private async duplicate(e: Entry, posted: SignedDeviceMessage | ForwardRequestBody): Promise<Reply> {
    const diff =
      e.kind === "forward"
        ? firstDifference(e.body, posted, ["nonce"])
        : firstDifference(content(e.body as SignedDeviceMessage), content(posted as SignedDeviceMessage));
    if (diff !== undefined)
      throw new Refusal(
        "conflict",
        `message ${e.id} was accepted before with other content (${diff} differs): the same signature cannot carry ` +
          `other fields; its status stays with the message first accepted`,
        diff,
      );
    await e.persisted;
    this.duplicates++;
    return { status: 200, body: { id: e.id, status: e.status } };
  }

  /** A chain read; a node that cannot be reached becomes a 503 refusal. */
  private async read<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      if (err instanceof Refusal) throw err;
      this.ctx.log.warn({ event: "rpc_error", err: (err as Error).message }, "chain read failed");
      throw new Refusal("chain_unavailable", "the chain cannot be read right now; retry later", undefined, 2);
    }
  }
}

/**
 * The store lane of a device message: a claim's key (a claim has no nonce), a device's location
 * beacons (LocationBeacons' beacon nonces), or the device (the registry's device nonces).
 */
function laneOf(m: SignedDeviceMessage, key: string, device: bigint): string {
  switch (m.type) {
    case "DeviceClaim":
      return `c:${key}`;
    case "LocationBeacon":
      return `b:${device}`;
    case "UnlockLog":
      return `l:${device}`;
    case "Checkpoint":
      return `s:${String(m.message.shipment).toLowerCase()}`;
    case "Voucher":
      return `v:${String(m.message.channel).toLowerCase()}`;
    default:
      return `d:${device}`;
  }
}

/**
 * What a device message says — its type, key, signature, the type's signed fields, a claim's leaf
 * and proof, a voucher's terms — and nothing a sender may add beside it.
 */
function content(m: SignedDeviceMessage): Record<string, unknown> {
  const fields = TYPES[m.type]?.fields ?? [];
  return {
    type: m.type,
    key: m.key,
    signature: m.signature,
    message: Object.fromEntries(fields.map((f) => [f.name, m.message?.[f.name]])),
    claim: m.claim,
    terms: m.terms,
  };
}

/**
 * The first field (a dotted path) where two message bodies differ, or undefined when they are the
 * same message: hex in any case, integers as numbers or strings. `ignore`: top-level fields the
 * relayer adds or the sender may leave out (a forward request's nonce hint).
 */
export function firstDifference(
  stored: unknown,
  posted: unknown,
  ignore: readonly string[] = [],
  at = "",
): string | undefined {
  const norm = (v: unknown) =>
    typeof v === "number" || typeof v === "bigint" ? String(v) : typeof v === "string" ? v.toLowerCase() : v;
  const a = norm(stored);
  const b = norm(posted);
  if (a === b) return undefined;
  if (a && b && typeof a === "object" && typeof b === "object") {
    if (Array.isArray(a) !== Array.isArray(b)) return at || "body";
    const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
    for (const k of keys) {
      if (at === "" && ignore.includes(k)) continue;
      const d = firstDifference(
        (a as Record<string, unknown>)[k],
        (b as Record<string, unknown>)[k],
        ignore,
        at ? `${at}.${k}` : k,
      );
      if (d !== undefined) return d;
    }
    return undefined;
  }
  return at || "body";
}

/**
 * A voucher's terms hash to its channel. They are not signed (the payee presents them beside the
 * payer's voucher), so they are checked with the shape, before `deviceOf` reads `terms.payer`.
 */
function checkTerms(m: SignedDeviceMessage): void {
  const channel = String(m.message.channel).toLowerCase();
  let computed: string;
  try {
    computed = keccak256(
      AbiCoder.defaultAbiCoder().encode(
        ["uint256", "uint256", "address", "uint96", "uint96", "uint64", "uint32", "bytes32", "uint32"],
        TERMS_FIELDS.map((f) => m.terms![f]),
      ),
    );
  } catch (err) {
    throw new Refusal("invalid_field", `terms are malformed: ${(err as Error).message.split(" (")[0]}`, "terms");
  }
  if (computed !== channel)
    throw new Refusal(
      "invalid_field",
      `terms are not those of message.channel ${channel} (they give ${computed})`,
      "terms",
    );
}

// `checkShape` has checked the leaf and every proof item; the relayer adds a limit of its own.
function checkClaimShape(m: SignedDeviceMessage): void {
  if (m.claim!.proof.length > 64) throw new Refusal("invalid_field", "claim.proof is longer than 64", "claim.proof");
}

function word(bytes: Uint8Array, offset: number): bigint {
  if (bytes.length < offset + 32) return 0n;
  return BigInt("0x" + Buffer.from(bytes.buffer, bytes.byteOffset + offset, 32).toString("hex"));
}

function concatBytes(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}

/**
 * How the agent's messages reach the chain. A courier moves one outbox entry one step at a time:
 *
 * - `RpcCourier` sends transactions itself over JSON-RPC, paid by a funded account (the payer).
 *   It simulates first (`eth_estimateGas`), so a message the chain would refuse never costs gas;
 *   it numbers the payer's transactions itself and records each raw signed transaction in the
 *   outbox before broadcasting it, so that after a crash the very same transaction is broadcast
 *   again; it watches receipts, and retires a message that landed some other way.
 * - `RelayerCourier` hands messages to the relayer gateway over HTTP (`POST /v1/messages`,
 *   idempotent by message id) and follows their status (`GET /v1/messages/:id`).
 *
 * Both check `isSpent` before (re)sending: a message whose nonce the chain has already used is
 * retired, never sent again. Network failures are reported as "down" so that the dispatcher backs
 * off; outbox writes are never swallowed (a disk that cannot persist must stop the agent).
 */
import { Serial } from "./serial.js";
import {
  Interface,
  JsonRpcProvider,
  Network,
  Transaction,
  getAddress,
  keccak256,
  type Provider,
  type TransactionReceipt,
  type TransactionRequest,
} from "ethers";
import { bytesToHex, type TypedDataHasher } from "../eip712/fast.js";
import {
  CONTRACT_OF,
  addressOf,
  deadlineOf,
  deviceOf,
  encodeCall,
  isSpent,
  toJson,
  type ContractAddresses,
  type ContractName,
  type DeviceMessageType,
  type SignedDeviceMessage,
} from "../messages/index.js";
import {
  CustodyLedger__factory,
  GuardianQuorum__factory,
  DeviceRegistry__factory,
  ERC2771Forwarder__factory,
  LocationBeacons__factory,
  LockAccess__factory,
  PaymentChannels__factory,
} from "../../typechain-types/index.js";
import {
  CALL_GAS_LIMIT,
  contractOf,
  effectOf,
  encodePublicCall,
  isCallSpent,
  isPublicCall,
  type PublicCall,
} from "../messages/calls.js";
import { explainRevertData } from "../errors/index.js";
import { silentLogger, type Logger } from "./log.js";
import type { ForwardRequestJson, Outbox, OutboxEntry, RpcSubmission } from "./outbox.js";
import { typedData } from "../eip712/index.js";

/**
 * Where the contracts are deployed (LockAccess only for a lock that anchors its log, LocationBeacons
 * only for a device that posts beacons).
 */
export interface ChainDeployment extends ContractAddresses {
  chainId: bigint;
  /** The ERC-2771 forwarder: public calls go to the relayer as forward requests through it. */
  forwarder?: string;
}

/** What a courier says after one step on an entry. */
export type StepResult =
  /** The entry is finished (its outcome is in the outbox). */
  | { kind: "done" }
  /** The entry moved on; step it again at once. */
  | { kind: "progress" }
  /**
   * Nothing to do before `ms` (a receipt, the relayer, or a device status change is awaited).
   * `hold`: "refused" when the chain or the relayer refuses the message for now (a quarantined
   * device, an unknown key: it may pass later, until its deadline); "queued" when its nonce waits
   * for an earlier one.
   */
  | { kind: "wait"; ms: number; reason: string; hold?: "refused" | "queued" }
  /** The node or relayer could not be reached or failed: back off. */
  | { kind: "down"; error: string };

export interface Courier {
  readonly via: "rpc" | "relayer";
  step(entry: OutboxEntry): Promise<StepResult>;
  close(): Promise<void>;
}

// ---------------------------------------------------------------- errors and backoff

const TRANSIENT_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ECONNABORTED",
  "ETIMEDOUT",
  "EPIPE",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ENOTFOUND",
  "EAI_AGAIN",
  "UND_ERR_SOCKET",
  "UND_ERR_CONNECT_TIMEOUT",
  "UND_ERR_HEADERS_TIMEOUT",
  "UND_ERR_BODY_TIMEOUT",
  "UND_ERR_CLOSED",
  "TIMEOUT",
  "SERVER_ERROR",
  "NETWORK_ERROR",
]);

/** Whether `err` is a failure to reach (or get an answer from) an endpoint, rather than a refusal. */
export function isTransient(err: unknown): boolean {
  for (let e = err as { code?: unknown; cause?: unknown; name?: unknown } | undefined, i = 0; e && i < 5; i++) {
    if (typeof e.code === "string" && TRANSIENT_CODES.has(e.code)) return true;
    if (e.name === "TimeoutError" || e.name === "AbortError") return true;
    e = e.cause as typeof e;
  }
  return false;
}

/** A short, single-line description of an error. */
export function describe(err: unknown): string {
  const e = err as { code?: unknown; shortMessage?: unknown; message?: unknown; cause?: { code?: unknown } };
  const code = typeof e?.code === "string" ? e.code : typeof e?.cause?.code === "string" ? e.cause.code : undefined;
  const text = typeof e?.shortMessage === "string" ? e.shortMessage : String(e?.message ?? err);
  const line = text.split("\n")[0].slice(0, 300);
  return code && !line.includes(code) ? `${code}: ${line}` : line;
}

/** Thrown by endpoint calls when the node or relayer is unreachable or failing (worth retrying). */
export class Down extends Error {
  override readonly name = "EndpointDown";
}

export interface BackoffOptions {
  /** First delay (ms). Default 250. */
  baseMs?: number;
  /** Largest delay (ms). Default 30,000. */
  capMs?: number;
}

/** Exponential backoff with a cap and ±20% jitter. */
export class Backoff {
  private failures = 0;
  readonly baseMs: number;
  readonly capMs: number;

  constructor(opts: BackoffOptions = {}) {
    this.baseMs = opts.baseMs ?? 250;
    this.capMs = opts.capMs ?? 30_000;
  }

  /** The delay before the next attempt, growing with each consecutive failure. */
  next(): number {
    const exp = Math.min(this.capMs, this.baseMs * 2 ** Math.min(this.failures, 30));
    this.failures++;
    return Math.round(Math.min(this.capMs, exp * (0.8 + 0.4 * Math.random())));
  }

  reset(): void {
    this.failures = 0;
  }

  get attempts(): number {
    return this.failures;
  }
}

// ---------------------------------------------------------------- chain reads

const registryInterface: Interface = DeviceRegistry__factory.createInterface();
const beaconsInterface: Interface = LocationBeacons__factory.createInterface();
const lockInterface: Interface = LockAccess__factory.createInterface();
const channelsInterface: Interface = PaymentChannels__factory.createInterface();
const custodyInterface: Interface = CustodyLedger__factory.createInterface();
const quorumInterface: Interface = GuardianQuorum__factory.createInterface();

/** What an outbox entry delivers: a signed device message, or a public call. */
export type Payload = SignedDeviceMessage | PublicCall;

/** The payload of a live entry. */
export function payloadOf(e: OutboxEntry): Payload {
  const p = e.message ?? e.call;
  if (!p) throw new Error(`outbox entry ${e.id} is finished and compacted: nothing to deliver`);
  return p;
}

/** The contract and calldata that deliver an entry. */
function encodeEntry(e: OutboxEntry): { contract: ContractName; data: string } {
  const p = payloadOf(e);
  return isPublicCall(p) ? encodePublicCall(p) : encodeCall(p);
}

/** Errors of the device messages' contracts after which a message can never land: they retire it as rejected. */
const FINAL_ERRORS = new Set([
  "LockAccessExpired",
  "LockAccessInvalidSignature",
  "LockAccessUnknownLock",
  "PaymentChannelsInvalidSignature",
  "PaymentChannelsNotPayerKey",
  "PaymentChannelsUnknownChannel",
  "PaymentChannelsChallengeEnded",
  "PaymentChannelsNothingToClaim",
  "CustodyLedgerUnknownShipment",
  "CustodyLedgerDelivered",
  "CustodyLedgerNotTrackerKey",
  "CustodyLedgerInvalidTrackerSignature",
  "CustodyLedgerBadTime",
  // A public call whose flag is set already (by anyone): the chain never takes it again.
  "CustodyLedgerAlreadyFlagged",
  "DeviceRegistryExpired",
  "DeviceRegistryInvalidSignature",
  "DeviceRegistryInvalidProof",
  "DeviceRegistryInvalidOwner",
  "DeviceRegistryUnsupportedKey",
  "DeviceRegistryKeyTaken",
  "DeviceRegistryBatchRevoked",
  "LocationBeaconsExpired",
  "LocationBeaconsInvalidSignature",
  // Sealed to a recipient list that is no longer the owner's: it never lands (the device seals anew).
  "LocationBeaconsWrongRecipients",
  // A guardian's vote in a round it voted in already, or one whose decision is made (the device is
  // flagged already, or not flagged any more): the guardian votes again in the round that follows.
  "GuardianQuorumAlreadyVoted",
  "DeviceRegistryAlreadyFlagged",
  "DeviceRegistryNotFlagged",
  // Not (or no longer) a guardian: its votes count for nothing.
  "AccessControlUnauthorizedAccount",
]);

/** The revert data carried somewhere in a provider error, if any. */
export function revertData(err: unknown): string | undefined {
  const seen = new Set<unknown>();
  const visit = (e: unknown, depth: number): string | undefined => {
    if (!e || typeof e !== "object" || seen.has(e) || depth > 6) return undefined;
    seen.add(e);
    const o = e as Record<string, unknown>;
    if (typeof o.data === "string" && /^0x[0-9a-fA-F]{8,}$/.test(o.data)) return o.data;
    for (const k of ["data", "error", "info", "cause", "payload"]) {
      const found = visit(o[k], depth + 1);
      if (found) return found;
    }
    return undefined;
  };
  return visit(err, 0);
}

/** A revert decoded against the errors of the contracts device messages go to. */
export interface Revert {
  name: string;
  args: unknown[];
  text: string;
  /** Whether the message can never land after it (retire it), rather than maybe later (hold it). */
  final: boolean;
}

const REVOKED = 3n; // IDeviceRegistry.DeviceStatus.Revoked

export function decodeRevert(data: string | undefined): Revert {
  if (!data || data === "0x") return { name: "unknown", args: [], text: "reverted without a reason", final: true };
  // The sentence (arguments readable: device ids, dates, short keys) from the shared decoder.
  const info = explainRevertData(data);
  for (const iface of [
    registryInterface,
    beaconsInterface,
    lockInterface,
    channelsInterface,
    custodyInterface,
    quorumInterface,
  ]) {
    try {
      const parsed = iface.parseError(data);
      if (!parsed) continue;
      const args = [...parsed.args];
      const final =
        FINAL_ERRORS.has(parsed.name) ||
        (/^(DeviceRegistryWrongStatus|LocationBeaconsNotQuarantined|LockAccessLockNotActive|PaymentChannelsPayerNotActive)$/.test(
          parsed.name,
        ) &&
          BigInt(args[1]) === REVOKED) ||
        // A log batch behind the chain's sequence never lands; one ahead waits for those before it.
        (/^(LockAccessWrongSequence|CustodyLedgerWrongSequence)$/.test(parsed.name) &&
          BigInt(args[1]) < BigInt(args[0]));
      return { name: parsed.name, args, text: info.sentence, final };
    } catch {
      // not one of this contract's errors
    }
  }
  return { name: info.name ?? "unknown", args: info.argList, text: info.sentence, final: true };
}

/** Reads of the registry (and beacons) that the agent needs, with endpoint failures turned into {@link Down}. */
export class Chain {
  private checked = false;
  private beaconsChecked = false;
  private clock: { at: number; timestamp: bigint } | undefined;
  private readonly registry;
  private readonly beacons;

  /** Where the search for a landed message's event starts (a node may limit log ranges). */
  logsFromBlock = 0;

  constructor(
    readonly provider: Provider,
    readonly deployment: ChainDeployment,
    private readonly hasher: TypedDataHasher,
  ) {
    this.registry = DeviceRegistry__factory.connect(deployment.registry, provider);
    this.beacons = deployment.locationBeacons
      ? LocationBeacons__factory.connect(deployment.locationBeacons, provider)
      : undefined;
  }

  /**
   * A JSON-RPC provider for `url` that never probes the network (the chain id is known) and never
   * answers from a cache: ethers shares identical requests for 250 ms by default, so a receipt
   * looked up twice in a row could come back stale and a landed message be misjudged. A provider
   * handed to the agent instead must not cache either.
   */
  static provider(url: string, chainId: bigint): JsonRpcProvider {
    return new JsonRpcProvider(url, Network.from(chainId), { staticNetwork: true, batchMaxCount: 1, cacheTimeout: -1 });
  }

  /** Runs an endpoint call; a failure to reach it becomes {@link Down}. */
  async call<T>(what: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      if (err instanceof Down) throw err;
      this.checked = this.beaconsChecked = false;
      throw new Down(`${what}: ${describe(err)}`);
    }
  }

  /**
   * Checks once (again after any failure) that the endpoint serves the expected chain and registry:
   * the registry's EIP-712 domain separator binds both the chain id and the address, so it must
   * equal ours. Protects against a wrong URL, a wrong chain, or a node that lost its state.
   */
  async ensure(): Promise<void> {
    if (this.checked) return;
    const expected = bytesToHex(
      this.hasher.domainSeparator("registry", {
        chainId: this.deployment.chainId,
        verifyingContract: this.deployment.registry,
      }),
    );
    const actual = await this.call("DOMAIN_SEPARATOR", () => this.registry.DOMAIN_SEPARATOR());
    if (actual.toLowerCase() !== expected) {
      throw new Down(
        `the node at hand does not serve registry ${this.deployment.registry} on chain ${this.deployment.chainId}`,
      );
    }
    this.checked = true;
  }

  async deviceNonce(device: bigint): Promise<bigint> {
    await this.ensure();
    return BigInt(await this.call("deviceNonce", () => this.registry.deviceNonce(device)));
  }

  /** The nonce device `device`'s next location beacon must carry (LocationBeacons' own sequence). */
  async beaconNonce(device: bigint): Promise<bigint> {
    const beacons = this.beacons;
    if (!beacons) throw new Error("no locationBeacons address is configured");
    await this.ensure();
    if (!this.beaconsChecked) {
      // As for the registry: the domain separator binds the chain id and the address.
      const expected = bytesToHex(
        this.hasher.domainSeparator("beacons", {
          chainId: this.deployment.chainId,
          verifyingContract: this.deployment.locationBeacons!,
        }),
      );
      const actual = await this.call("DOMAIN_SEPARATOR", () => beacons.DOMAIN_SEPARATOR());
      if (actual.toLowerCase() !== expected)
        throw new Down(
          `the node at hand does not serve LocationBeacons ${this.deployment.locationBeacons} on chain ${this.deployment.chainId}`,
        );
      this.beaconsChecked = true;
    }
    return BigInt(await this.call("beaconNonce", () => beacons.beaconNonce(device)));
  }

  /**
   * The packed recipient keys a beacon of `device` must be sealed to now: those its current owner
   * registered on LocationBeacons (empty when the owner has set no beacon key).
   */
  async beaconRecipients(device: bigint): Promise<string> {
    const beacons = this.beacons;
    if (!beacons) throw new Error("no locationBeacons address is configured");
    await this.beaconNonce(device); // checks, once, that the node serves these LocationBeacons
    const owner = await this.call("ownerOf", () => this.registry.ownerOf(device));
    return (await this.call("beaconRecipients", () => beacons.beaconRecipients(owner))).toLowerCase();
  }

  /**
   * The next nonce of `device` that a message of `type` must carry: LocationBeacons' beacon nonce
   * for a beacon, the registry's device nonce for the rest.
   */
  nonceFor(type: DeviceMessageType, device: bigint): Promise<bigint> {
    return CONTRACT_OF[type] === "locationBeacons" ? this.beaconNonce(device) : this.deviceNonce(device);
  }

  async isSpent(m: Payload): Promise<boolean> {
    await this.ensure();
    if (isPublicCall(m)) return this.call("isSpent", () => isCallSpent(m, this.provider, this.deployment));
    return this.call("isSpent", () => isSpent(m, this.provider, this.deployment));
  }

  /**
   * Whether the chain has this very message: its nonce (sequence, key, channel amount) is used up,
   * and its effect is there — the event its call emits, with this message's content, in a
   * transaction that carried this message's signature. A nonce used by another message is not
   * this one on chain: that message is refused, never retired as landed.
   */
  async onChain(m: Payload): Promise<{ txHash: string } | undefined> {
    if (!(await this.isSpent(m))) return undefined;
    return this.landed(m);
  }

  /** The transaction that carried `m` (its event with its content, its signature in the calldata). */
  async landed(m: Payload): Promise<{ txHash: string } | undefined> {
    if (isPublicCall(m)) {
      // Whoever made the call, its effect is the same: the event is the answer.
      const { contract, iface, event, topics, match } = effectOf(m);
      const txHash = await this.findLog(contract, iface, event, topics, match);
      return txHash ? { txHash } : undefined;
    }
    const f = m.message;
    const device = deviceOf(m);
    const word = (v: bigint | string) => "0x" + BigInt(v).toString(16).padStart(64, "0");
    const eq = (a: unknown, b: unknown) => String(a).toLowerCase() === String(b).toLowerCase();
    const big = (a: unknown, b: unknown) => BigInt(a as string) === BigInt(b as string);
    let contract: ContractName;
    let iface: Interface;
    let event: string;
    let topics: string[];
    let match: (args: Record<string, unknown>) => boolean;
    let needsSignature = true;
    switch (m.type) {
      case "DeviceClaim":
        [contract, iface, event] = ["registry", registryInterface, "DeviceClaimed"];
        topics = [word(device), word(f.owner as string)];
        match = (a) => eq(a.deviceKey, m.key);
        needsSignature = false; // a key is claimed once: the event with this key and owner is this claim
        break;
      case "FirmwareAttestation":
        [contract, iface, event] = ["registry", registryInterface, "FirmwareAttested"];
        topics = [word(device)];
        match = (a) => eq(a.firmwareHash, f.firmwareHash);
        break;
      case "NonceCancellation":
        [contract, iface, event] = ["registry", registryInterface, "NonceCancelled"];
        topics = [word(device)];
        match = (a) => big(a.nonce, f.nonce);
        break;
      case "LocationBeacon":
        [contract, iface, event] = ["locationBeacons", beaconsInterface, "LocationBeaconPosted"];
        topics = [word(device)];
        match = (a) => big(a.nonce, f.nonce) && eq(a.ciphertext, f.ciphertext);
        break;
      case "UnlockLog":
        [contract, iface, event] = ["lockAccess", lockInterface, "LogAnchored"];
        topics = [word(device), word(f.seq as string)];
        match = (a) => eq(a.root, f.root) && big(a.count, f.count);
        break;
      case "Checkpoint":
        [contract, iface, event] = ["custodyLedger", custodyInterface, "CheckpointPosted"];
        topics = [(f.shipment as string).toLowerCase()];
        match = (a) => big(a.seq, f.seq) && eq(a.readingsRoot, f.readingsRoot);
        break;
      case "Voucher": {
        // A voucher's effect is the channel having paid at least its amount (a later, higher
        // voucher covers it): a claim or a close that paid that much.
        const channel = (f.channel as string).toLowerCase();
        for (const name of ["ChannelClaimed", "ChannelClosed"]) {
          const found = await this.findLog(
            "paymentChannels",
            channelsInterface,
            name,
            [channel],
            (a) => BigInt(a.paid as bigint) >= BigInt(f.cumulativeAmount as string),
          );
          if (found) return { txHash: found };
        }
        return undefined;
      }
    }
    const sig = m.signature.toLowerCase().replace(/^0x/, "");
    const txHash = await this.findLog(contract, iface, event, topics, match, needsSignature ? sig : undefined);
    return txHash ? { txHash } : undefined;
  }

  /** The hash of a transaction with a matching `event` log of `contract` (and `calldataHas` in its input). */
  private async findLog(
    contract: ContractName,
    iface: Interface,
    event: string,
    topics: string[],
    match: (args: Record<string, unknown>) => boolean,
    calldataHas?: string,
  ): Promise<string | undefined> {
    const address = this.deployment[contract];
    if (!address) return undefined;
    const ev = iface.getEvent(event)!;
    const logs = await this.call("getLogs", () =>
      this.provider.getLogs({
        address,
        topics: [ev.topicHash, ...topics],
        fromBlock: this.logsFromBlock,
        toBlock: "latest",
      }),
    );
    for (const log of logs) {
      const parsed = iface.parseLog(log);
      if (!parsed) continue;
      const args: Record<string, unknown> = {};
      ev.inputs.forEach((input, i) => (args[input.name] = parsed.args[i]));
      if (!match(args)) continue;
      if (calldataHas) {
        const tx = await this.call("getTransaction", () => this.provider.getTransaction(log.transactionHash));
        if (!tx || !tx.data.toLowerCase().includes(calldataHas)) continue;
      }
      return log.transactionHash;
    }
    return undefined;
  }

  async latestTimestamp(): Promise<bigint> {
    const block = await this.call("getBlock", () => this.provider.getBlock("latest"));
    if (!block) throw new Down("getBlock: no latest block");
    this.clock = { at: Date.now(), timestamp: BigInt(block.timestamp) };
    return this.clock.timestamp;
  }

  /**
   * The chain's time, read at most once a second: enough to retire an expired message before
   * simulating it (the simulation refuses one that expired in the last second anyway).
   */
  async recentTimestamp(): Promise<bigint> {
    if (this.clock && Date.now() - this.clock.at < 1_000) return this.clock.timestamp;
    return this.latestTimestamp();
  }
}

/**
 * Whether a message that has not landed can still land, judged from the chain's view before any
 * gas is spent. Returns the outcome to record, or a reason to wait.
 */
async function preflight(
  chain: Chain,
  outbox: Outbox,
  e: OutboxEntry,
  onDeviceNonce?: (device: bigint, nonce: bigint) => void,
): Promise<
  | { kind: "spent"; reason: string; txHash?: string }
  | { kind: "rejected"; reason: string }
  | { kind: "wait"; reason: string; hold: "queued" }
  | { kind: "go" }
> {
  const m = payloadOf(e);
  const contract = contractOf(e.type);
  if (!chain.deployment[contract])
    return {
      kind: "rejected",
      reason: `a ${e.type} goes to the ${contract} contract, and no address is configured for it`,
    };
  if (isPublicCall(m) || e.nonce === undefined) {
    // Only this very message on chain retires it; a sequence or key used by another message is
    // left to the simulation, which names the refusal.
    const found = await chain.onChain(m);
    if (found) return { kind: "spent", reason: "already on chain", txHash: found.txHash };
  } else {
    // One read answers both questions: spent (isSpent's rule: the nonce moved past it) and ready.
    // A beacon's nonce is LocationBeacons' beacon nonce, a sequence apart from the device nonce.
    const beacon = contract === "locationBeacons";
    const what = beacon ? "beacon nonce" : "device nonce";
    const chainNonce = await chain.nonceFor(m.type, e.device);
    if (!beacon) onDeviceNonce?.(e.device, chainNonce);
    if (chainNonce > e.nonce) {
      const found = await chain.landed(m);
      if (found) return { kind: "spent", reason: "already on chain", txHash: found.txHash };
      return {
        kind: "rejected",
        reason: `${what} ${e.nonce} was used by another message (the ${what} is now ${chainNonce}): this one can never land`,
      };
    }
    if (e.nonce > chainNonce) {
      // Everything before this message in its lane is finished; something below it never landed.
      const blocker = outbox
        .ofDevice(e.device)
        .find(
          (o) =>
            o.outcome === "rejected" &&
            o.nonce !== undefined &&
            contractOf(o.type) === contract &&
            o.nonce >= chainNonce &&
            o.nonce < e.nonce!,
        );
      if (blocker)
        return { kind: "rejected", reason: `blocked: nonce ${blocker.nonce} was rejected (${blocker.reason})` };
      return {
        kind: "wait",
        reason: `the ${what} is ${chainNonce}; nonce ${e.nonce} has to wait for it`,
        hold: "queued",
      };
    }
  }
  // A public call has no deadline: the simulation says when it no longer makes sense.
  if (isPublicCall(m)) return { kind: "go" };
  const deadline = deadlineOf(m);
  if ((await chain.recentTimestamp()) > deadline) return { kind: "rejected", reason: `expired (deadline ${deadline})` };
  return { kind: "go" };
}

/** The (lower-case) address of the contract an entry's message is delivered to. */
function targetOf(deployment: ChainDeployment, e: OutboxEntry): string {
  return addressOf(deployment, contractOf(e.type)).toLowerCase();
}

// ---------------------------------------------------------------- direct JSON-RPC

/** What the courier needs of the account that pays gas: an address and transaction signing. */
export interface PayerSigner {
  readonly address: string;
  signTransaction(tx: TransactionRequest): Promise<string>;
}

export interface RpcCourierOptions {
  chain: Chain;
  outbox: Outbox;
  payer: PayerSigner;
  logger?: Logger;
  /** Confirmations before a message counts as landed. Default 1. */
  confirmations?: number;
  /** Interval between receipt checks (ms). Default 1,000. */
  pollMs?: number;
  /** A transaction still unmined after this long is broadcast again (ms). Default 30,000. */
  rebroadcastMs?: number;
  /** How long to wait before looking again at a message that cannot be sent yet (ms). Default 5,000. */
  holdMs?: number;
  /** Called with every device nonce read from the chain. */
  onDeviceNonce?: (device: bigint, nonce: bigint) => void;
}

/** Sends each message as a transaction of its own, paid by the payer account. */
export class RpcCourier implements Courier {
  readonly via = "rpc" as const;
  private readonly chain: Chain;
  private readonly outbox: Outbox;
  private readonly payer: PayerSigner;
  private readonly log: Logger;
  private readonly confirmations: number;
  private readonly pollMs: number;
  private readonly rebroadcastMs: number;
  private readonly holdMs: number;
  private nextAccountNonce: number | undefined;
  private readonly accountSerial = new Serial();
  private readonly lastBroadcast = new Map<string, number>();
  private readonly spentChecked = new Set<string>();
  private readonly suspectedDead = new Map<string, number>();
  private readonly deadAfterMs: number;
  private fees: { at: number; maxFeePerGas: bigint; maxPriorityFeePerGas: bigint } | undefined;

  constructor(private readonly opts: RpcCourierOptions) {
    this.chain = opts.chain;
    this.outbox = opts.outbox;
    this.payer = opts.payer;
    this.log = opts.logger ?? silentLogger;
    this.confirmations = opts.confirmations ?? 1;
    this.pollMs = opts.pollMs ?? 1_000;
    this.rebroadcastMs = opts.rebroadcastMs ?? 30_000;
    this.holdMs = opts.holdMs ?? 5_000;
    this.deadAfterMs = Math.max(this.pollMs, 1_000);
  }

  async step(e: OutboxEntry): Promise<StepResult> {
    try {
      if (e.state === "pending") return await this.sendPending(e);
      if (e.submission?.via === "rpc") return await this.followSubmitted(e, e.submission);
      // Handed to the relayer by an earlier run (configured differently): the relayer holds it
      // and may still send it, and sending it too could only revert. Wait until it lands or its
      // deadline passes.
      const verdict = await preflight(this.chain, this.outbox, e, this.opts.onDeviceNonce);
      if (verdict.kind === "spent" || verdict.kind === "rejected") {
        await this.outbox.done(e.id, verdict.kind, {
          reason: verdict.kind === "spent" ? "landed through the relayer" : verdict.reason,
          ...(verdict.kind === "spent" && verdict.txHash ? { txHash: verdict.txHash } : {}),
        });
        return { kind: "done" };
      }
      return { kind: "wait", ms: this.holdMs, reason: "handed to the relayer by an earlier run", hold: "refused" };
    } catch (err) {
      if (err instanceof Down) {
        this.lastBroadcast.clear(); // the node may have lost its pool: broadcast again once it is back
        this.nextAccountNonce = undefined;
        return { kind: "down", error: err.message };
      }
      throw err;
    }
  }

  async close(): Promise<void> {
    const p = this.chain.provider as { destroy?: () => void };
    p.destroy?.();
  }

  private async sendPending(e: OutboxEntry): Promise<StepResult> {
    const verdict = await preflight(this.chain, this.outbox, e, this.opts.onDeviceNonce);
    if (verdict.kind === "spent" || verdict.kind === "rejected") {
      await this.outbox.done(e.id, verdict.kind, {
        reason: verdict.reason,
        ...(verdict.kind === "spent" && verdict.txHash ? { txHash: verdict.txHash } : {}),
      });
      return { kind: "done" };
    }
    if (verdict.kind === "wait") return { kind: "wait", ms: this.holdMs, reason: verdict.reason, hold: verdict.hold };

    const { contract, data } = encodeEntry(e);
    const to = addressOf(this.chain.deployment, contract);
    let gas: bigint;
    try {
      gas = await this.chain.provider.estimateGas({ from: this.payer.address, to, data });
    } catch (err) {
      const early = e.call ? await this.dueInNextBlock(e.call, err) : undefined;
      if (early === undefined) return this.refused(e, err);
      gas = early;
    }
    const fees = await this.feeData();
    await this.withAccount(async () => {
      await this.syncAccountNonce();
      const accountNonce = this.nextAccountNonce!;
      const raw = await this.payer.signTransaction({
        type: 2,
        chainId: this.chain.deployment.chainId,
        nonce: accountNonce,
        to,
        data,
        value: 0n,
        gasLimit: (gas * 12n) / 10n + 10_000n,
        maxFeePerGas: fees.maxFeePerGas,
        maxPriorityFeePerGas: fees.maxPriorityFeePerGas,
      });
      const submission: RpcSubmission = {
        via: "rpc",
        txHash: keccak256(raw),
        raw,
        from: getAddress(this.payer.address),
        accountNonce,
      };
      await this.outbox.submit(e.id, submission); // on disk before it is broadcast
      this.nextAccountNonce = accountNonce + 1;
      this.log.debug("transaction recorded", { id: e.id, txHash: submission.txHash, accountNonce });
      // Broadcast in account-nonce order: some nodes (Hardhat's automine) refuse a nonce gap.
      await this.broadcast(e, submission);
    });
    return { kind: "progress" };
  }

  /** What a simulation's refusal means for the entry: retired (refused for good, or landed), or held. */
  private async refused(e: OutboxEntry, err: unknown): Promise<StepResult> {
    if (isTransient(err)) throw new Down(`estimateGas: ${describe(err)}`);
    const data = revertData(err);
    if (!data && !/revert|CALL_EXCEPTION|execution/i.test(`${(err as { code?: string }).code} ${describe(err)}`)) {
      throw new Down(`estimateGas: ${describe(err)}`);
    }
    const revert = decodeRevert(data);
    if (revert.final) {
      // Look again: it may have landed a moment ago through someone else (this very message).
      const found = await this.chain.onChain(payloadOf(e));
      await this.outbox.done(
        e.id,
        found ? "spent" : "rejected",
        found ? { reason: "already on chain", txHash: found.txHash } : { reason: `refused: ${revert.text}` },
      );
      return { kind: "done" };
    }
    // Unknown key, a quarantined device or batch: the device's state may still change
    // before the deadline, so hold the message (the deadline retires it otherwise).
    return { kind: "wait", ms: this.holdMs, reason: `refused for now: ${revert.text}`, hold: "refused" };
  }

  /**
   * The gas limit to send a public call with, when its simulation said only "not yet"
   * (`CustodyLedgerNotYet(at)`) and the latest block's time is already at or past `at`: the
   * condition is `block.timestamp > at`, and every next block is later than the latest one. Some
   * nodes (anvil) simulate in the latest block's time, where the call fails; sending it now is what
   * lands it in the first block where it holds. Undefined when that is not the refusal.
   */
  private async dueInNextBlock(call: PublicCall, err: unknown): Promise<bigint | undefined> {
    if (isTransient(err)) return undefined;
    const revert = decodeRevert(revertData(err));
    if (revert.name !== "CustodyLedgerNotYet") return undefined;
    if ((await this.chain.latestTimestamp()) < BigInt(revert.args[0] as bigint)) return undefined;
    return CALL_GAS_LIMIT[call.type];
  }

  private async followSubmitted(e: OutboxEntry, s: RpcSubmission): Promise<StepResult> {
    const hashes = [s.txHash, ...(s.replaces ?? [])];
    const settled = await this.findReceipt(e, s, hashes);
    if (settled) return settled;

    const latest = await this.chain.call("getTransactionCount", () =>
      this.chain.provider.getTransactionCount(s.from, "latest"),
    );
    if (latest > s.accountNonce) {
      // The account nonce is used; unless one of ours used it (look once more), ours are dead.
      const again = await this.findReceipt(e, s, hashes);
      if (again) return again;
      if (await this.chain.isSpent(payloadOf(e))) {
        const found = await this.chain.landed(payloadOf(e));
        await this.outbox.done(
          e.id,
          found ? "spent" : "rejected",
          found
            ? { reason: "landed through someone else", txHash: found.txHash }
            : { reason: "its nonce was used by another message: it can never land" },
        );
        return { kind: "done" };
      }
      // Sending again is the one step that could deliver twice if the node misinformed us (a node
      // behind a load balancer, still syncing): only after it has said so twice, some time apart.
      const since = this.suspectedDead.get(s.txHash);
      if (since === undefined || Date.now() - since < this.deadAfterMs) {
        if (since === undefined) this.suspectedDead.set(s.txHash, Date.now());
        return { kind: "wait", ms: this.deadAfterMs, reason: "the transaction looks dead; checking again" };
      }
      this.suspectedDead.delete(s.txHash);
      await this.outbox.unsubmit(e.id, `account nonce ${s.accountNonce} was used by another transaction`);
      this.log.warn("transaction can no longer be mined; sending the message again", { id: e.id, txHash: s.txHash });
      return { kind: "progress" };
    }
    this.suspectedDead.delete(s.txHash);

    // Not mined yet. Before broadcasting again, make sure the message is still needed.
    if (!s.filler && !this.spentChecked.has(s.txHash)) {
      if (await this.chain.isSpent(payloadOf(e))) {
        await this.fill(e, s);
        return { kind: "progress" };
      }
      this.spentChecked.add(s.txHash);
    }
    const last = this.lastBroadcast.get(s.txHash);
    if (last === undefined || Date.now() - last >= this.rebroadcastMs) await this.broadcast(e, s);
    return { kind: "wait", ms: this.pollMs, reason: "waiting for the receipt" };
  }

  /** Settles the entry if one of its transactions has a receipt (with enough confirmations). */
  private async findReceipt(e: OutboxEntry, s: RpcSubmission, hashes: string[]): Promise<StepResult | undefined> {
    for (const hash of hashes) {
      const receipt = await this.chain.call("getTransactionReceipt", () =>
        this.chain.provider.getTransactionReceipt(hash),
      );
      if (!receipt) continue;
      if (this.confirmations > 1) {
        const head = await this.chain.call("getBlockNumber", () => this.chain.provider.getBlockNumber());
        if (head - receipt.blockNumber + 1 < this.confirmations) {
          return { kind: "wait", ms: this.pollMs, reason: "waiting for confirmations" };
        }
      }
      await this.settle(e, s, hash, receipt);
      return { kind: "done" };
    }
    return undefined;
  }

  private async settle(e: OutboxEntry, s: RpcSubmission, hash: string, receipt: TransactionReceipt): Promise<void> {
    const target = targetOf(this.chain.deployment, e);
    if (s.filler && hash === s.txHash) {
      // The filler only took the account nonce; where did the message go?
      // (The entry keeps the filler's hash: it is what this agent's account nonce went to.)
      const found = await this.chain.landed(payloadOf(e));
      await this.outbox.done(e.id, found ? "spent" : "rejected", {
        reason: found
          ? `landed through someone else (in ${found.txHash})`
          : "its nonce was used by another message: it can never land",
        txHash: hash,
      });
    } else if (receipt.status === 1 && receipt.logs.some((l) => l.address.toLowerCase() === target)) {
      await this.outbox.done(e.id, "confirmed", { txHash: hash });
      this.log.info("message landed", { id: e.id, type: e.type, device: e.device, nonce: e.nonce, txHash: hash });
    } else if (receipt.status === 1) {
      await this.outbox.done(e.id, "rejected", { reason: "mined without an event of its contract", txHash: hash });
      this.log.error("transaction mined without an event of its contract", { id: e.id, txHash: hash });
    } else {
      const found = await this.chain.onChain(payloadOf(e));
      await this.outbox.done(
        e.id,
        found ? "spent" : "rejected",
        found
          ? { reason: "already on chain", txHash: found.txHash }
          : { reason: "the transaction reverted", txHash: hash },
      );
      this.log.error("transaction reverted", { id: e.id, txHash: hash, alreadyOnChain: !!found });
    }
    this.lastBroadcast.delete(hash);
    this.spentChecked.delete(hash);
  }

  /**
   * The message landed some other way while our transaction is still unmined: put a zero-value
   * transfer in its account nonce instead (recorded before it is broadcast), so that the account's
   * later transactions are not stuck behind a hole and the message is not sent twice.
   */
  private async fill(e: OutboxEntry, s: RpcSubmission): Promise<void> {
    const fees = await this.feeData();
    const original = Transaction.from(s.raw);
    const bump = (a: bigint | null, b: bigint) => (a !== null && a * 2n > b ? a * 2n : b);
    const maxPriorityFeePerGas = bump(original.maxPriorityFeePerGas, fees.maxPriorityFeePerGas);
    const maxFeePerGas = bump(original.maxFeePerGas, fees.maxFeePerGas);
    const raw = await this.payer.signTransaction({
      type: 2,
      chainId: this.chain.deployment.chainId,
      nonce: s.accountNonce,
      to: s.from,
      value: 0n,
      data: "0x",
      gasLimit: 21_000n,
      maxFeePerGas: maxFeePerGas > maxPriorityFeePerGas ? maxFeePerGas : maxPriorityFeePerGas,
      maxPriorityFeePerGas,
    });
    const filler: RpcSubmission = {
      via: "rpc",
      txHash: keccak256(raw),
      raw,
      from: s.from,
      accountNonce: s.accountNonce,
      filler: true,
      replaces: [s.txHash, ...(s.replaces ?? [])],
    };
    await this.outbox.submit(e.id, filler);
    this.log.warn("message landed through someone else; filling its account nonce", {
      id: e.id,
      txHash: filler.txHash,
      accountNonce: s.accountNonce,
    });
    await this.broadcast(e, filler);
  }

  private async broadcast(e: OutboxEntry, s: RpcSubmission): Promise<void> {
    try {
      await this.chain.provider.broadcastTransaction(s.raw);
      this.lastBroadcast.set(s.txHash, Date.now());
    } catch (err) {
      if (isTransient(err)) throw new Down(`broadcast: ${describe(err)}`);
      const text = `${(err as { code?: string }).code} ${(err as Error).message}`;
      // Already in the pool or mined: the receipt check settles it.
      if (
        /already known|known transaction|already imported|nonce (is )?too low|nonce has already been used|NONCE_EXPIRED/i.test(
          text,
        )
      ) {
        this.lastBroadcast.set(s.txHash, Date.now());
        return;
      }
      // An earlier account nonce is not in the node yet (it is being broadcast too): next round.
      if (/nonce too high/i.test(text)) {
        this.log.debug("broadcast ahead of an earlier transaction; will retry", { id: e.id, txHash: s.txHash });
        return;
      }
      this.log.warn("broadcast refused; will retry", { id: e.id, txHash: s.txHash, error: describe(err) });
      this.lastBroadcast.set(s.txHash, Date.now());
    }
  }

  private async feeData(): Promise<{ maxFeePerGas: bigint; maxPriorityFeePerGas: bigint }> {
    if (this.fees && Date.now() - this.fees.at < 15_000) return this.fees;
    const f = await this.chain.call("getFeeData", () => this.chain.provider.getFeeData());
    const maxPriorityFeePerGas = f.maxPriorityFeePerGas ?? f.gasPrice ?? 1_000_000_000n;
    const maxFeePerGas = f.maxFeePerGas ?? (f.gasPrice ?? 1_000_000_000n) * 2n;
    this.fees = { at: Date.now(), maxFeePerGas, maxPriorityFeePerGas };
    return this.fees;
  }

  /**
   * The payer's next account nonce: past everything the node knows (mined or pooled) and past
   * every transaction the outbox recorded (the node may have lost its pool; they are sent again).
   */
  private async syncAccountNonce(): Promise<void> {
    if (this.nextAccountNonce !== undefined) return;
    const onChain = await this.chain.call("getTransactionCount", () =>
      this.chain.provider.getTransactionCount(this.payer.address, "pending"),
    );
    let next = onChain;
    for (const e of this.outbox.live()) {
      const s = e.submission;
      if (s?.via === "rpc" && s.accountNonce + 1 > next) next = s.accountNonce + 1;
    }
    this.nextAccountNonce = next;
  }

  // Account nonces are taken, signed and recorded one at a time, so that none is ever skipped.
  private withAccount<T>(fn: () => Promise<T>): Promise<T> {
    return this.accountSerial.run(fn);
  }
}

// ---------------------------------------------------------------- relayer over HTTP

/** Relayer refusals after which the message may still land: the device's state or queue may change. */
const RELAYER_HOLD = new Set([
  "nonce_queued",
  "nonce_too_far",
  "device_not_active",
  "unknown_key",
  "wrong_device",
  "batch_not_active",
  "rate_limited",
  "chain_unavailable",
]);
/** Relayer refusals that say the message (or its nonce, or its key) is already on chain. */
const RELAYER_SPENT = new Set(["nonce_used", "key_taken"]);

/**
 * What a relayer refusal means for the message (codes of `src/relayer/errors.ts`): `spent`,
 * `hold` (the deadline retires it if it never passes), or `final`. A simulated revert is final
 * only when it names a registry (or beacons) error that is.
 */
export function relayerRefusal(code: string | undefined, error: string | undefined): "spent" | "hold" | "final" {
  if (code && RELAYER_SPENT.has(code)) return "spent";
  if (code && RELAYER_HOLD.has(code)) return "hold";
  if (code === "would_revert") {
    const name = /(DeviceRegistry|LocationBeacons|LockAccess|PaymentChannels|CustodyLedger)\w+/.exec(error ?? "")?.[0];
    return name && (FINAL_ERRORS.has(name) || /Revoked|, 3\)/.test(error ?? "")) ? "final" : "hold";
  }
  if (!code && /status|active|quarantin|rate/i.test(error ?? "")) return "hold";
  return "final";
}

/** The relayer's status of a message (`GET /v1/messages/:id`). */
export interface RelayerStatus {
  id: string;
  status: "accepted" | "submitted" | "confirmed" | "failed" | "spent";
  txHash?: string;
  error?: string;
}

export interface RelayerCourierOptions {
  /** The relayer's base URL, e.g. `http://127.0.0.1:8545`. */
  url: string;
  outbox: Outbox;
  /** Chain reads (isSpent, the device nonce, deadlines) when the node can be reached. */
  chain: Chain;
  logger?: Logger;
  /** Interval between status checks (ms). Default 1,000. */
  pollMs?: number;
  /** Per-request timeout (ms). Default 10,000. */
  timeoutMs?: number;
  holdMs?: number;
  onDeviceNonce?: (device: bigint, nonce: bigint) => void;
  /**
   * Signs public calls as ERC-2771 forward requests (the relayer takes no plain calls); the account
   * needs no ETH. Without it a public call is held. Needs `chain.deployment.forwarder`.
   */
  forwardSigner?: ForwardSigner;
}

/** An account that signs EIP-712 data (an ethers `Wallet`). */
export interface ForwardSigner {
  readonly address: string;
  signTypedData(
    domain: Record<string, unknown>,
    types: Record<string, { name: string; type: string }[]>,
    value: Record<string, unknown>,
  ): Promise<string>;
}

/** Gas a forwarded public call may use (the forwarder's own work is on top, paid by the relayer). */
const FORWARD_GAS = 100_000n;
/** How long a forward request's signature lasts (s). */
const FORWARD_TTL = 3_600n;

/** Hands messages to the relayer gateway, one at a time per device, and follows them to the chain. */
export class RelayerCourier implements Courier {
  readonly via = "relayer" as const;
  private readonly base: string;
  private readonly log: Logger;
  private readonly pollMs: number;
  private readonly timeoutMs: number;
  private readonly holdMs: number;
  private readonly suspectedDead = new Map<string, number>();

  constructor(private readonly opts: RelayerCourierOptions) {
    this.base = opts.url.replace(/\/+$/, "");
    this.log = opts.logger ?? silentLogger;
    this.pollMs = opts.pollMs ?? 1_000;
    this.timeoutMs = opts.timeoutMs ?? 10_000;
    this.holdMs = opts.holdMs ?? 5_000;
  }

  async step(e: OutboxEntry): Promise<StepResult> {
    try {
      if (e.submission?.via === "rpc") return await this.followRaw(e, e.submission);
      return e.state === "pending" ? await this.post(e) : await this.follow(e);
    } catch (err) {
      if (err instanceof Down) return { kind: "down", error: err.message };
      throw err;
    }
  }

  async close(): Promise<void> {
    const p = this.opts.chain.provider as { destroy?: () => void };
    p.destroy?.();
  }

  /**
   * A transaction an earlier run sent directly (configured differently) may still be mined: follow
   * it (broadcasting its raw form needs no key) until it lands or can provably never be mined, and
   * only then hand the message to the relayer.
   */
  private async followRaw(e: OutboxEntry, s: RpcSubmission): Promise<StepResult> {
    const { outbox, chain } = this.opts;
    const target = targetOf(chain.deployment, e);
    for (const hash of [s.txHash, ...(s.replaces ?? [])]) {
      const receipt = await chain.call("getTransactionReceipt", () => chain.provider.getTransactionReceipt(hash));
      if (!receipt) continue;
      const landed =
        receipt.status === 1 &&
        !(s.filler && hash === s.txHash) &&
        receipt.logs.some((l) => l.address.toLowerCase() === target);
      if (landed) await outbox.done(e.id, "confirmed", { txHash: hash });
      else {
        const found = await chain.onChain(payloadOf(e));
        await outbox.done(
          e.id,
          found ? "spent" : "rejected",
          found
            ? { reason: "already on chain", txHash: found.txHash }
            : { reason: "the transaction failed", txHash: hash },
        );
      }
      return { kind: "done" };
    }
    const latest = await chain.call("getTransactionCount", () => chain.provider.getTransactionCount(s.from, "latest"));
    if (latest > s.accountNonce) {
      if (await chain.isSpent(payloadOf(e))) {
        const found = await chain.landed(payloadOf(e));
        await outbox.done(
          e.id,
          found ? "spent" : "rejected",
          found
            ? { reason: "landed through someone else", txHash: found.txHash }
            : { reason: "its nonce was used by another message: it can never land" },
        );
        return { kind: "done" };
      }
      const since = this.suspectedDead.get(s.txHash);
      if (since === undefined || Date.now() - since < Math.max(this.pollMs, 1_000)) {
        if (since === undefined) this.suspectedDead.set(s.txHash, Date.now());
        return { kind: "wait", ms: Math.max(this.pollMs, 1_000), reason: "the transaction looks dead; checking again" };
      }
      this.suspectedDead.delete(s.txHash);
      await outbox.unsubmit(e.id, `account nonce ${s.accountNonce} was used by another transaction`);
      return { kind: "progress" };
    }
    try {
      await chain.provider.broadcastTransaction(s.raw);
    } catch (err) {
      if (isTransient(err)) throw new Down(`broadcast: ${describe(err)}`);
    }
    return { kind: "wait", ms: this.pollMs, reason: "a transaction sent by an earlier run is pending" };
  }

  private async post(e: OutboxEntry): Promise<StepResult> {
    const { outbox, chain } = this.opts;
    if (e.call) return this.postCall(e);
    // The node may be down while the relayer is up: the relayer checks nonces itself, so go on.
    let verdict: Awaited<ReturnType<typeof preflight>> = { kind: "go" };
    try {
      verdict = await preflight(chain, outbox, e, this.opts.onDeviceNonce);
    } catch (err) {
      if (!(err instanceof Down)) throw err;
      this.log.debug("chain unreachable; relying on the relayer's checks", { id: e.id, error: err.message });
    }
    if (verdict.kind === "spent" || verdict.kind === "rejected") {
      await outbox.done(e.id, verdict.kind, {
        reason: verdict.reason,
        ...(verdict.kind === "spent" && verdict.txHash ? { txHash: verdict.txHash } : {}),
      });
      return { kind: "done" };
    }
    if (verdict.kind === "wait") return { kind: "wait", ms: this.holdMs, reason: verdict.reason, hold: verdict.hold };

    const res = await this.request("POST", "/v1/messages", toJson(e.message));
    if (res.status === 200 || res.status === 202) {
      const body = res.body as Partial<RelayerStatus>;
      await outbox.submit(e.id, { via: "relayer", relayerId: typeof body.id === "string" ? body.id : e.id });
      this.log.debug("relayer accepted the message", { id: e.id, status: body.status });
      return { kind: "progress" };
    }
    if (res.status === 429 || res.status === 503 || res.status >= 500) {
      const retry = Number(res.headers.get("retry-after"));
      if (res.status === 429 && Number.isFinite(retry) && retry > 0) {
        return { kind: "wait", ms: retry * 1000, reason: "rate limited by the relayer" };
      }
      throw new Down(`relayer answered ${res.status}`);
    }
    const body = (res.body ?? {}) as { error?: string; field?: string; code?: string };
    const reason = `relayer refused (${res.status}${body.code ? ` ${body.code}` : ""}${
      body.field ? ` ${body.field}` : ""
    }): ${body.error ?? "no reason given"}`;
    const meaning = relayerRefusal(body.code, body.error);
    // Retired as landed only if the chain has this very message (the relayer's "used" may mean
    // used by another message); otherwise a refusal is a refusal.
    const found = await this.onChainNow(e, meaning === "spent");
    if (found) {
      await outbox.done(e.id, "spent", { reason: "already on chain", txHash: found.txHash });
      return { kind: "done" };
    }
    if (meaning === "hold") return { kind: "wait", ms: this.holdMs, reason, hold: "refused" };
    await outbox.done(e.id, "rejected", { reason });
    return { kind: "done" };
  }

  /**
   * A public call: signed as a forward request by `forwardSigner` (at the forwarder's next nonce
   * for it), recorded in the outbox, then posted. Held when there is no signer.
   */
  private async postCall(e: OutboxEntry): Promise<StepResult> {
    const { outbox, chain, forwardSigner } = this.opts;
    const forwarder = chain.deployment.forwarder;
    if (!forwardSigner || !forwarder) {
      // Held, not dropped: an operator who configures a signer (or a payer account) gets it sent.
      return {
        kind: "wait",
        ms: this.holdMs,
        reason: `a ${e.type} is a plain call: the relayer takes it only as a forward request, and no forward signer is configured`,
        hold: "refused",
      };
    }
    const verdict = await preflight(chain, outbox, e);
    if (verdict.kind === "spent" || verdict.kind === "rejected") {
      await outbox.done(e.id, verdict.kind, {
        reason: verdict.reason,
        ...(verdict.kind === "spent" && verdict.txHash ? { txHash: verdict.txHash } : {}),
      });
      return { kind: "done" };
    }
    const { contract, data } = encodeEntry(e);
    const from = forwardSigner.address.toLowerCase();
    const nonce = await chain.call("nonces", () =>
      ERC2771Forwarder__factory.connect(forwarder, chain.provider).nonces(from),
    );
    const message = {
      from,
      to: addressOf(chain.deployment, contract).toLowerCase(),
      value: "0",
      gas: FORWARD_GAS.toString(),
      nonce: nonce.toString(),
      deadline: ((await chain.latestTimestamp()) + FORWARD_TTL).toString(),
      data,
    };
    const td = typedData(
      "ForwardRequest",
      { chainId: chain.deployment.chainId, verifyingContract: forwarder },
      message,
    );
    const forward: ForwardRequestJson = {
      ...message,
      signature: await forwardSigner.signTypedData(td.domain as Record<string, unknown>, td.types, td.message),
    };
    // On disk before it is posted: a restart posts this very request (idempotent by its id).
    await outbox.submit(e.id, { via: "relayer", relayerId: keccak256(forward.signature), forward });
    return this.postForward(e, forward);
  }

  private async postForward(e: OutboxEntry, forward: ForwardRequestJson): Promise<StepResult> {
    const { outbox } = this.opts;
    const res = await this.request("POST", "/v1/forward", JSON.stringify(forward));
    if (res.status === 200 || res.status === 202) return { kind: "progress" };
    if (res.status === 429 || res.status >= 500) throw new Down(`relayer answered ${res.status}`);
    const body = (res.body ?? {}) as { error?: string; code?: string };
    const reason = `relayer refused (${res.status}${body.code ? ` ${body.code}` : ""}): ${body.error ?? "no reason given"}`;
    const found = await this.onChainNow(e, false);
    if (found) {
      await outbox.done(e.id, "spent", { reason: "already on chain", txHash: found.txHash });
      return { kind: "done" };
    }
    if (relayerRefusal(body.code, body.error) === "final") {
      await outbox.done(e.id, "rejected", { reason });
      return { kind: "done" };
    }
    // Refused for now (not yet due, a forwarder nonce taken meanwhile): never accepted, so it can
    // never land; sign a fresh request next time.
    await outbox.unsubmit(e.id, reason);
    return { kind: "wait", ms: this.holdMs, reason, hold: "refused" };
  }

  private async follow(e: OutboxEntry): Promise<StepResult> {
    const s = e.submission as { relayerId: string; forward?: ForwardRequestJson };
    const res = await this.request("GET", `/v1/messages/${encodeURIComponent(s.relayerId)}`);
    // A forward request recorded but never posted (a crash in between): post this very one.
    if (res.status === 404 && s.forward) return this.postForward(e, s.forward);
    if (res.status === 404) {
      // The relayer has no record of it (it promised to persist): hand it over again.
      await this.opts.outbox.unsubmit(e.id, "the relayer does not know it");
      return { kind: "progress" };
    }
    if (res.status !== 200) throw new Down(`relayer status answered ${res.status}`);
    const st = res.body as RelayerStatus;
    switch (st.status) {
      case "confirmed":
        await this.opts.outbox.done(e.id, "confirmed", st.txHash ? { txHash: st.txHash } : {});
        this.log.info("message landed", {
          id: e.id,
          type: e.type,
          device: e.device,
          nonce: e.nonce,
          txHash: st.txHash,
        });
        return { kind: "done" };
      case "spent":
      case "failed": {
        const found = await this.onChainNow(e, true);
        if (!found && e.call) {
          // This forward request failed (say, simulated a moment too early); the call itself may
          // still be due: a fresh request goes through the relayer's checks again.
          await this.opts.outbox.unsubmit(e.id, `relayer: ${st.error ?? st.status}`);
          return { kind: "wait", ms: this.holdMs, reason: `relayer: ${st.error ?? st.status}`, hold: "refused" };
        }
        await this.opts.outbox.done(
          e.id,
          found ? "spent" : "rejected",
          found
            ? { reason: "already on chain", txHash: found.txHash }
            : {
                reason:
                  st.status === "spent"
                    ? "relayer: its nonce was used by another message: it can never land"
                    : `relayer: ${st.error ?? "failed"}`,
                ...(st.txHash ? { txHash: st.txHash } : {}),
              },
        );
        return { kind: "done" };
      }
      default:
        return { kind: "wait", ms: this.pollMs, reason: `relayer status ${st.status}` };
    }
  }

  /**
   * Whether the chain has this very message. When the relayer said it is used (`mustKnow`), an
   * unreachable node means "ask again later" (Down); otherwise it means "not known to be".
   */
  private async onChainNow(e: OutboxEntry, mustKnow: boolean): Promise<{ txHash: string } | undefined> {
    try {
      return await this.opts.chain.onChain(payloadOf(e));
    } catch (err) {
      if (err instanceof Down && !mustKnow) return undefined;
      throw err;
    }
  }

  private async request(
    method: "GET" | "POST",
    route: string,
    body?: string,
  ): Promise<{ status: number; body: unknown; headers: Headers }> {
    let res: Response;
    try {
      res = await fetch(this.base + route, {
        method,
        headers: body === undefined ? {} : { "content-type": "application/json" },
        body,
        signal: AbortSignal.timeout(this.timeoutMs),
      });
    } catch (err) {
      throw new Down(`relayer ${method} ${route}: ${describe(err)}`);
    }
    let parsed: unknown;
    try {
      parsed = await res.json();
    } catch {
      parsed = undefined;
    }
    return { status: res.status, body: parsed, headers: res.headers };
  }
}

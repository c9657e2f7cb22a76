/**
 * Public calls: contract calls that carry no device signature — a watchtower marking a shipment
 * overdue or silent (anyone may), a guardian's vote in the GuardianQuorum (its own account). They travel through the agent's outbox like
 * device messages (persisted before they are sent, checked against the chain before every
 * (re)send), so they need what `index.ts` gives device messages: a stable id, the calldata, and a
 * rule that tells that their effect is already on chain.
 *
 * Each of these calls can take effect once: a shipment's flag is never cleared, and a guardian has
 * one vote per device, side and round. So the id is derived from the call itself — the shipment, or
 * (guardian, device, side, round) — and a watchtower or guardian that restarts and decides the same
 * action again finds it in its outbox instead of queueing it twice.
 */
import {
  ZeroHash,
  getAddress,
  keccak256,
  toBeHex,
  toUtf8Bytes,
  zeroPadValue,
  type Interface,
  type Provider,
} from "ethers";
import { CustodyLedger__factory } from "../../typechain-types/factories/contracts/custody/CustodyLedger__factory.js";
import { GuardianQuorum__factory } from "../../typechain-types/factories/contracts/guardians/GuardianQuorum__factory.js";
import { CONTRACT_OF, addressOf, type ContractAddresses, type ContractName, type DeviceMessageType } from "./index.js";

/** The public calls, each named after what it does. */
export const PUBLIC_CALL_TYPES = ["MarkOverdue", "MarkSilent", "GuardianFlag", "GuardianClear"] as const;
export type PublicCallType = (typeof PUBLIC_CALL_TYPES)[number];

/** A watchtower's call on a shipment, as the outbox persists it (JSON-safe). */
export interface ShipmentCall {
  type: "MarkOverdue" | "MarkSilent";
  /** The shipment (0x-prefixed bytes32, lower case). */
  shipment: string;
}

/**
 * A guardian's vote (`GuardianQuorum.flag` / `clearFlag`), as the outbox persists it. `round` is the
 * quorum's round of the device's open votes when the guardian decided: a vote counts only in its
 * round, so once the round has moved on (this vote landed and closed it, or others decided) the vote
 * is spent, and a guardian that still sees the condition votes again in the new round.
 */
export interface GuardianVoteCall {
  type: "GuardianFlag" | "GuardianClear";
  /** The voting guardian's address (checksummed): the account that sends it. */
  guardian: string;
  /** The device id, decimal. */
  device: string;
  round: number;
  /** keccak256 of the evidence's canonical JSON (a flag); zero for a clear (the contract takes none). */
  reason: string;
}

/** A public call, as the outbox persists it (JSON-safe). */
export type PublicCall = ShipmentCall | GuardianVoteCall;

/** The contract each public call goes to. */
export const CALL_CONTRACT_OF = {
  MarkOverdue: "custodyLedger",
  MarkSilent: "custodyLedger",
  GuardianFlag: "guardianQuorum",
  GuardianClear: "guardianQuorum",
} as const satisfies Record<PublicCallType, ContractName>;

/** The contract a device message or a public call of `type` goes to. */
export function contractOf(type: DeviceMessageType | PublicCallType): ContractName {
  return isPublicCallType(type) ? CALL_CONTRACT_OF[type] : CONTRACT_OF[type];
}

const custody: Interface = CustodyLedger__factory.createInterface();
const quorum: Interface = GuardianQuorum__factory.createInterface();

/** The function and the event of each shipment call: the event with the shipment as topic is its effect. */
const SHAPE = {
  MarkOverdue: { fn: "markOverdue", event: "MarkedOverdue", flag: "overdue" },
  MarkSilent: { fn: "markSilent", event: "MarkedSilent", flag: "silent" },
} as const satisfies Record<ShipmentCall["type"], { fn: string; event: string; flag: string }>;

function isVote(c: PublicCall): c is GuardianVoteCall {
  return c.type === "GuardianFlag" || c.type === "GuardianClear";
}

/**
 * The gas limit of a call sent without a simulation (see the RpcCourier's `dueInNextBlock`): each
 * reads three slots and writes one (about 31,000 gas); the margin covers cold-access pricing changes.
 */
export const CALL_GAS_LIMIT = {
  MarkOverdue: 80_000n,
  MarkSilent: 80_000n,
  // A vote that reaches the quorum also writes the registry (a flag ends a trust period): about 90,000.
  GuardianFlag: 200_000n,
  GuardianClear: 200_000n,
} as const satisfies Record<PublicCallType, bigint>;

const BYTES32 = /^0x[0-9a-fA-F]{64}$/;
const ADDRESS = /^0x[0-9a-fA-F]{40}$/;

export function isPublicCallType(type: unknown): type is PublicCallType {
  return typeof type === "string" && (PUBLIC_CALL_TYPES as readonly string[]).includes(type);
}

/** Whether an outbox payload is a public call (device messages carry a key and a signature). */
export function isPublicCall(m: object): m is PublicCall {
  return isPublicCallType((m as { type?: unknown }).type) && !("signature" in m);
}

/** Checks a public call from outside; throws an error naming the first bad field. Returns it normalised. */
export function checkCallShape(input: unknown): PublicCall {
  const c = input as Partial<PublicCall> | null;
  if (!c || typeof c !== "object") throw new Error("call must be a JSON object");
  if (!isPublicCallType(c.type)) throw new Error(`call.type must be one of ${PUBLIC_CALL_TYPES.join(", ")}`);
  if (c.type === "GuardianFlag" || c.type === "GuardianClear") {
    const v = input as Partial<GuardianVoteCall>;
    if (typeof v.guardian !== "string" || !ADDRESS.test(v.guardian))
      throw new Error("call.guardian must be an address (the voting guardian's account)");
    if (typeof v.device !== "string" || !/^[0-9]+$/.test(v.device))
      throw new Error("call.device must be a decimal device id");
    if (typeof v.round !== "number" || !Number.isSafeInteger(v.round) || v.round < 0)
      throw new Error("call.round must be a non-negative integer (the quorum's round of the device's votes)");
    if (typeof v.reason !== "string" || !BYTES32.test(v.reason)) throw new Error("call.reason must be 32 bytes of hex");
    if (c.type === "GuardianClear" && v.reason !== ZeroHash)
      throw new Error("call.reason of a GuardianClear must be zero");
    return {
      type: c.type,
      guardian: getAddress(v.guardian),
      device: BigInt(v.device).toString(),
      round: v.round,
      reason: v.reason.toLowerCase(),
    };
  }
  const sc = c as Partial<ShipmentCall>;
  if (typeof sc.shipment !== "string" || !BYTES32.test(sc.shipment))
    throw new Error("call.shipment must be 32 bytes of hex (a shipment id)");
  return { type: c.type, shipment: sc.shipment.toLowerCase() };
}

/**
 * The stable id of a call: keccak256 of `<type>:<shipment>`, or of a vote
 * `<type>:<guardian>:<device>:<round>` — one vote per guardian, device, side and round, whatever
 * evidence a later evaluation in the same round would give (the first one is what is sent).
 */
export function callId(c: PublicCall): string {
  if (isVote(c)) return keccak256(toUtf8Bytes(`${c.type}:${c.guardian.toLowerCase()}:${c.device}:${c.round}`));
  return keccak256(toUtf8Bytes(`${c.type}:${c.shipment.toLowerCase()}`));
}

/** The contract and calldata that make the call. */
export function encodePublicCall(c: PublicCall): { contract: ContractName; data: string } {
  if (isVote(c))
    return {
      contract: CALL_CONTRACT_OF[c.type],
      data:
        c.type === "GuardianFlag"
          ? quorum.encodeFunctionData("flag", [BigInt(c.device), c.reason])
          : quorum.encodeFunctionData("clearFlag", [BigInt(c.device)]),
    };
  return {
    contract: CALL_CONTRACT_OF[c.type],
    data: custody.encodeFunctionData(SHAPE[c.type].fn, [c.shipment]),
  };
}

/**
 * Whether the call's effect is on chain (whoever made it): the shipment carries its flag. A
 * delivered shipment is never marked: that is a refusal, which the simulation names.
 */
export async function isCallSpent(c: PublicCall, provider: Provider, contracts: ContractAddresses): Promise<boolean> {
  if (isVote(c)) {
    // Spent once the quorum shows this guardian's vote in its round, or the round has moved on
    // (this vote closed it, or the others decided without it: either way it counts no more).
    const q = GuardianQuorum__factory.connect(addressOf(contracts, CALL_CONTRACT_OF[c.type]), provider);
    const [round, , voted] = await q.votes(BigInt(c.device), c.type === "GuardianFlag", c.guardian);
    return voted || Number(round) > c.round;
  }
  const ledger = CustodyLedger__factory.connect(addressOf(contracts, CALL_CONTRACT_OF[c.type]), provider);
  const s = await ledger.shipmentOf(c.shipment);
  return s[SHAPE[c.type].flag];
}

/** The event of a call's effect: its contract, interface, topics after the signature, and a match on its arguments. */
export interface CallEffect {
  contract: ContractName;
  iface: Interface;
  event: string;
  topics: string[];
  match: (args: Record<string, unknown>) => boolean;
}

/**
 * The event whose presence is the call's effect: a shipment's mark (whoever made it), or this
 * guardian's `GuardianVoted` for the device on this side in this round (only its own vote is it).
 */
export function effectOf(c: PublicCall): CallEffect {
  if (isVote(c))
    return {
      contract: CALL_CONTRACT_OF[c.type],
      iface: quorum,
      event: "GuardianVoted",
      topics: [toBeHex(BigInt(c.device), 32), zeroPadValue(c.guardian, 32).toLowerCase()],
      match: (a) => a.flag === (c.type === "GuardianFlag") && Number(a.round) === c.round,
    };
  return {
    contract: CALL_CONTRACT_OF[c.type],
    iface: custody,
    event: SHAPE[c.type].event,
    topics: [c.shipment.toLowerCase()],
    match: () => true,
  };
}

/**
 * Public calls: contract calls that anyone may make and that carry no device signature — a
 * watchtower marking a shipment overdue or silent. They travel through the agent's outbox like
 * device messages (persisted before they are sent, checked against the chain before every
 * (re)send), so they need what `index.ts` gives device messages: a stable id, the calldata, and a
 * rule that tells that their effect is already on chain.
 *
 * Each of these calls can take effect once per shipment (a flag that is never cleared), so the id
 * is derived from the call itself: the same action always has the same id, and a watchtower that
 * restarts and decides it again finds it in its outbox instead of queueing it twice.
 */
import { keccak256, toUtf8Bytes, type Interface, type Provider } from "ethers";
import { CustodyLedger__factory } from "../../typechain-types/factories/contracts/custody/CustodyLedger__factory.js";
import { CONTRACT_OF, addressOf, type ContractAddresses, type ContractName, type DeviceMessageType } from "./index.js";

/** The public calls, each named after what it does. */
export const PUBLIC_CALL_TYPES = ["MarkOverdue", "MarkSilent"] as const;
export type PublicCallType = (typeof PUBLIC_CALL_TYPES)[number];

/** A public call, as the outbox persists it (JSON-safe). */
export interface PublicCall {
  type: PublicCallType;
  /** The shipment (0x-prefixed bytes32, lower case). */
  shipment: string;
}

/** The contract each public call goes to. */
export const CALL_CONTRACT_OF = {
  MarkOverdue: "custodyLedger",
  MarkSilent: "custodyLedger",
} as const satisfies Record<PublicCallType, ContractName>;

/** The contract a device message or a public call of `type` goes to. */
export function contractOf(type: DeviceMessageType | PublicCallType): ContractName {
  return isPublicCallType(type) ? CALL_CONTRACT_OF[type] : CONTRACT_OF[type];
}

const custody: Interface = CustodyLedger__factory.createInterface();

/** The function and the event of each call: the event with the shipment as topic is its effect. */
const SHAPE = {
  MarkOverdue: { fn: "markOverdue", event: "MarkedOverdue", flag: "overdue" },
  MarkSilent: { fn: "markSilent", event: "MarkedSilent", flag: "silent" },
} as const satisfies Record<PublicCallType, { fn: string; event: string; flag: string }>;

/**
 * The gas limit of a call sent without a simulation (see the RpcCourier's `dueInNextBlock`): each
 * reads three slots and writes one (about 31,000 gas); the margin covers cold-access pricing changes.
 */
export const CALL_GAS_LIMIT = {
  MarkOverdue: 80_000n,
  MarkSilent: 80_000n,
} as const satisfies Record<PublicCallType, bigint>;

const BYTES32 = /^0x[0-9a-fA-F]{64}$/;

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
  if (typeof c.shipment !== "string" || !BYTES32.test(c.shipment))
    throw new Error("call.shipment must be 32 bytes of hex (a shipment id)");
  return { type: c.type, shipment: c.shipment.toLowerCase() };
}

/** The stable id of a call: keccak256 of `<type>:<shipment>`. */
export function callId(c: PublicCall): string {
  return keccak256(toUtf8Bytes(`${c.type}:${c.shipment.toLowerCase()}`));
}

/** The contract and calldata that make the call. */
export function encodePublicCall(c: PublicCall): { contract: ContractName; data: string } {
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
  const ledger = CustodyLedger__factory.connect(addressOf(contracts, CALL_CONTRACT_OF[c.type]), provider);
  const s = await ledger.shipmentOf(c.shipment);
  return s[SHAPE[c.type].flag];
}

/** The event (and its topics after the signature) whose presence is the call's effect. */
export function effectOf(c: PublicCall): { contract: ContractName; event: string; topics: string[] } {
  return { contract: CALL_CONTRACT_OF[c.type], event: SHAPE[c.type].event, topics: [c.shipment.toLowerCase()] };
}

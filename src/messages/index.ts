/**
 * Device messages on their way to the chain: which contract call carries each signed catalogue
 * type, the id that makes a message idempotent, and how to tell that one already landed (its nonce
 * is used, or its key is claimed). Shared by the agent core and the relayer. A message with a nonce
 * uses its own contract's nonce of its device: the registry's `deviceNonce`, or LocationBeacons'
 * `beaconNonce` for a beacon (two independent sequences).
 *
 * `encodeCall` and `messageId` are on the relayer's per-message path, so they avoid ethers' generic
 * ABI coder and keccak: the device calls are laid out by hand (head and tail, as the ABI spec
 * has it) and hashed with the fast keccak. The tests hold the calldata byte-identical to
 * `Interface.encodeFunctionData` for random messages of every type, accepting and refusing the same
 * values as ethers does.
 */
import { Interface, getAddress, getBigInt, type Provider } from "ethers";
import { TYPES, type Message } from "../eip712/index.js";
import { bytesToHex, keccak } from "../eip712/fast.js";
import { deviceIdOf } from "../registry/batch.js";
// The one factory, not the typechain index (which loads every contract's bindings).
import { DeviceRegistry__factory } from "../../typechain-types/factories/contracts/registry/DeviceRegistry__factory.js";
import { LockAccess__factory } from "../../typechain-types/factories/contracts/access/LockAccess__factory.js";
import { PaymentChannels__factory } from "../../typechain-types/factories/contracts/payments/PaymentChannels__factory.js";
import { CustodyLedger__factory } from "../../typechain-types/factories/contracts/custody/CustodyLedger__factory.js";
import { LocationBeacons__factory } from "../../typechain-types/factories/contracts/beacons/LocationBeacons__factory.js";
import { GuardianQuorum__factory } from "../../typechain-types/factories/contracts/guardians/GuardianQuorum__factory.js";

/** The catalogue types a device signs for a contract, and anyone may relay. */
export const DEVICE_MESSAGE_TYPES = [
  "DeviceClaim",
  "FirmwareAttestation",
  "LocationBeacon",
  "NonceCancellation",
  "UnlockLog",
  "Voucher",
  "Checkpoint",
] as const;
export type DeviceMessageType = (typeof DEVICE_MESSAGE_TYPES)[number];

/** The contracts a device message can be addressed to. */
export type ContractName =
  "registry" | "locationBeacons" | "lockAccess" | "paymentChannels" | "custodyLedger" | "guardianQuorum";

/** The contract each device message type is delivered to (a type's route depends on the type alone). */
export const CONTRACT_OF = {
  DeviceClaim: "registry",
  FirmwareAttestation: "registry",
  LocationBeacon: "locationBeacons",
  NonceCancellation: "registry",
  UnlockLog: "lockAccess",
  Voucher: "paymentChannels",
  Checkpoint: "custodyLedger",
} as const satisfies Record<DeviceMessageType, ContractName>;

/** Where the contracts are deployed (a contract the deployment lacks cannot be addressed). */
export interface ContractAddresses {
  registry: string;
  locationBeacons?: string;
  lockAccess?: string;
  paymentChannels?: string;
  custodyLedger?: string;
  /** The guardians' quorum: guardians' votes go to it (public calls). */
  guardianQuorum?: string;
}

/** The address of `contract` in `addresses`; throws when the deployment does not have it. */
export function addressOf(addresses: ContractAddresses, contract: ContractName): string {
  const a = addresses[contract];
  if (!a) throw new Error(`no ${contract} address is configured`);
  return a;
}

/** A signed device message, as the agent persists it and the relayer accepts it (JSON-safe: integers as strings). */
export interface SignedDeviceMessage {
  type: DeviceMessageType;
  /** ERC-7913 signer bytes of the device key that signed it. */
  key: string;
  /** The catalogue fields. */
  message: Message;
  signature: string;
  /** What the call needs beyond the signed fields: a claim's leaf and proof. */
  claim?: { model: string; firmwareHash: string; proof: string[] };
  /** A voucher's channel terms (the payee presents the payer's voucher with them). */
  terms?: ChannelTermsJson;
}

/** `PaymentChannels.Terms` in JSON (integers as decimal strings); keccak256 of its encoding is the channel id. */
export interface ChannelTermsJson {
  payer: string;
  payee: string;
  token: string;
  rate: string;
  allowance: string;
  openedAt: string;
  salt: string;
  payerKeyHash: string;
  payerPeriod: string;
}

/** The fields of `PaymentChannels.Terms`, in order. */
export const TERMS_FIELDS = [
  "payer",
  "payee",
  "token",
  "rate",
  "allowance",
  "openedAt",
  "salt",
  "payerKeyHash",
  "payerPeriod",
] as const satisfies readonly (keyof ChannelTermsJson)[];

const INTERFACES: Record<ContractName, [string, Interface]> = {
  registry: ["DeviceRegistry", DeviceRegistry__factory.createInterface()],
  locationBeacons: ["LocationBeacons", LocationBeacons__factory.createInterface()],
  lockAccess: ["LockAccess", LockAccess__factory.createInterface()],
  paymentChannels: ["PaymentChannels", PaymentChannels__factory.createInterface()],
  custodyLedger: ["CustodyLedger", CustodyLedger__factory.createInterface()],
  guardianQuorum: ["GuardianQuorum", GuardianQuorum__factory.createInterface()],
};

/**
 * The 4-byte selector of a contract function, from the typechain interface; refuses to load if the
 * function's signature is no longer the one its hand-written encoder below lays out.
 */
function selectorOf(contract: ContractName, name: string, signature: string): string {
  const [contractName, iface] = INTERFACES[contract];
  const fn = iface.getFunction(name);
  const actual = fn?.format("sighash");
  if (actual !== signature)
    throw new Error(
      `src/messages: ${contractName}.${name} is ${actual ?? "gone"}, not ${signature}: update encodeCall for it`,
    );
  return fn!.selector.toLowerCase(); // "0x" and 4 bytes: where the calldata starts
}

const SELECTORS = {
  DeviceClaim: selectorOf("registry", "claim", "claim((address,uint48,bytes,bytes32,bytes32,uint256),bytes32[],bytes)"),
  FirmwareAttestation: selectorOf("registry", "attestFirmware", "attestFirmware(bytes,bytes32,uint256,bytes)"),
  LocationBeacon: selectorOf(
    "locationBeacons",
    "postLocationBeacon",
    "postLocationBeacon(bytes,(bytes,bytes,uint64,uint256),bytes)",
  ),
  NonceCancellation: selectorOf("registry", "cancelNonce", "cancelNonce(bytes,uint256,bytes)"),
  UnlockLog: selectorOf(
    "lockAccess",
    "anchorLog",
    "anchorLog(bytes,(uint32,bytes32,uint32,uint64,uint64,uint256),bytes)",
  ),
  Voucher: selectorOf(
    "paymentChannels",
    "claim",
    "claim((uint256,uint256,address,uint96,uint96,uint64,uint32,bytes32,uint32),uint256,bytes,bytes)",
  ),
  Checkpoint: selectorOf(
    "custodyLedger",
    "checkpoint",
    "checkpoint((bytes32,uint32,bytes32,uint32,int16,int16,bytes32,uint64),bytes,bytes)",
  ),
} as const satisfies Record<DeviceMessageType, string>;

const BYTES32 = /^0x[0-9a-fA-F]{64}$/;

export function isDeviceMessageType(type: unknown): type is DeviceMessageType {
  return typeof type === "string" && (DEVICE_MESSAGE_TYPES as readonly string[]).includes(type);
}

/** Checks the shape of a message from outside; throws an error naming the first bad field. */
export function checkShape(input: unknown): SignedDeviceMessage {
  const m = input as Partial<SignedDeviceMessage> | null;
  if (!m || typeof m !== "object") throw new Error("message must be a JSON object");
  if (!isDeviceMessageType(m.type)) throw new Error(`type must be one of ${DEVICE_MESSAGE_TYPES.join(", ")}`);
  if (typeof m.key !== "string" || !/^0x([0-9a-fA-F]{2}){20,}$/.test(m.key))
    throw new Error("key must be hex bytes (20 or more)");
  if (typeof m.signature !== "string" || !/^0x([0-9a-fA-F]{2})*$/.test(m.signature))
    throw new Error("signature must be hex bytes");
  if (!m.message || typeof m.message !== "object") throw new Error("message must be an object of the type's fields");
  for (const f of TYPES[m.type].fields) {
    if (!(f.name in m.message)) throw new Error(`message.${f.name} is missing`);
  }
  if (m.type === "DeviceClaim") {
    const c = m.claim;
    if (!c || typeof c !== "object") throw new Error("claim must carry model, firmwareHash and proof");
    if (typeof c.model !== "string" || !BYTES32.test(c.model)) throw new Error("claim.model must be 32 bytes of hex");
    if (typeof c.firmwareHash !== "string" || !BYTES32.test(c.firmwareHash))
      throw new Error("claim.firmwareHash must be 32 bytes of hex");
    if (!Array.isArray(c.proof)) throw new Error("claim.proof must be an array of 32-byte hex strings");
    c.proof.forEach((p: unknown, i) => {
      if (typeof p !== "string" || !BYTES32.test(p)) throw new Error(`claim.proof[${i}] must be 32 bytes of hex`);
    });
  }
  if (m.type === "Voucher") {
    const t = m.terms as Partial<ChannelTermsJson> | undefined;
    if (!t || typeof t !== "object") throw new Error("terms must carry the channel's terms");
    for (const f of TERMS_FIELDS) if (!(f in t)) throw new Error(`terms.${f} is missing`);
  }
  return m as SignedDeviceMessage;
}

// ---------------------------------------------------------------- ABI encoding of the device calls
//
// The calldata is built as hex: the values arrive as hex strings, so each word is written out as its
// 64 hex digits and joined, with no trip through bytes. Each value is read as ethers' coders read it
// (integers: bigint, safe-integer number or any string `BigInt` parses; bytes: 0x-hex or a
// Uint8Array; addresses: hex with or without 0x, checksummed if mixed-case, or ICAP) and refused
// with an error naming its field.

/** Bytes in a word. */
const WORD = 32;
/** A word of zeros, in hex. */
const ZEROS = "0".repeat(2 * WORD);

/** The word of a small number (an offset or a length). */
const size = (n: number): string => n.toString(16).padStart(2 * WORD, "0");

/** The word of `n`, 0 ≤ n < 2²⁵⁶. */
const word = (n: bigint): string => (n === 0n ? ZEROS : n.toString(16).padStart(2 * WORD, "0"));

function integer(value: unknown, field: string): bigint {
  if (typeof value === "bigint") return value;
  if (typeof value === "string" && /^[0-9]+$/.test(value)) return BigInt(value);
  if (typeof value === "number" && Number.isSafeInteger(value)) return BigInt(value);
  try {
    return getBigInt(value as string); // the rarer forms, exactly as ethers takes them
  } catch {
    throw new Error(`${field} must be an integer`);
  }
}

/** A `uintN` value, as its word. */
function uint(value: unknown, bits: number, field: string): string {
  const n = integer(value, field);
  if (n < 0n || n >= 1n << BigInt(bits)) throw new Error(`${field} is out of range for uint${bits}`);
  return word(n);
}

/** An `intN` value, as its word (two's complement). */
function int(value: unknown, bits: number, field: string): string {
  const n = integer(value, field);
  const half = 1n << BigInt(bits - 1);
  if (n < -half || n >= half) throw new Error(`${field} is out of range for int${bits}`);
  return word(BigInt.asUintN(256, n));
}

/** A `bytes` value as lower-case hex digits (no 0x). */
function bytes(value: unknown, field: string): string {
  if (typeof value === "string" && /^0[xX]([0-9a-fA-F]{2})*$/.test(value)) return value.slice(2).toLowerCase();
  if (value instanceof Uint8Array) return Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString("hex");
  throw new Error(`${field} must be 0x-prefixed hex bytes`);
}

/** A `bytes32` value, as its word. */
function bytes32(value: unknown, field: string): string {
  const b = bytes(value, field);
  if (b.length !== 2 * WORD) throw new Error(`${field} must be 32 bytes`);
  return b;
}

/** The hex `bytes` value as a tail: its length, then its bytes padded to whole words. */
function tail(hex: string): string {
  return size(hex.length / 2) + hex + ZEROS.slice(0, (ZEROS.length - (hex.length % ZEROS.length)) % ZEROS.length);
}

/** Bytes that the hex `bytes` value takes as a tail. */
const tailSize = (hex: string): number => WORD + Math.ceil(hex.length / ZEROS.length) * WORD;

/** An `address` value, as its word. */
function address(value: unknown, field: string): string {
  if (typeof value === "string" && /^0x[0-9a-fA-F]{40}$/.test(value)) {
    const hex = value.slice(2);
    const lower = hex.toLowerCase();
    // Mixed case is an EIP-55 checksum, and must be right.
    if (hex === lower || hex === hex.toUpperCase() || isChecksummed(hex, lower)) return ZEROS.slice(40) + lower;
  }
  let checked: string; // the rarer forms (no 0x, ICAP) as ethers takes them, or its refusal
  try {
    checked = getAddress(value as string);
  } catch {
    throw new Error(`${field} must be an address (20 bytes of hex, checksummed if mixed-case)`);
  }
  return ZEROS.slice(40) + checked.slice(2).toLowerCase();
}

/** Whether the mixed-case `hex` (40 digits) has the EIP-55 checksum of the address `lower`. */
function isChecksummed(hex: string, lower: string): boolean {
  const hash = keccak(Buffer.from(lower, "ascii"));
  for (let i = 0; i < 40; i++) {
    const c = hex.charCodeAt(i);
    if (c < 0x41) continue; // a digit
    const upper = c < 0x61;
    const nibble = i % 2 === 0 ? hash[i >> 1] >> 4 : hash[i >> 1] & 0x0f;
    if (upper !== nibble >= 8) return false; // a letter is upper case where its hash nibble is 8 or more
  }
  return true;
}

/** The contract and calldata that deliver `m`; throws an error naming the first bad field. */
export function encodeCall(m: SignedDeviceMessage): { contract: ContractName; data: string } {
  const f = m.message;
  if (!f || typeof f !== "object") throw new Error("message must be an object of the type's fields");
  // A head's offsets count bytes from the start of its arguments (or of its struct).
  switch (m.type) {
    case "DeviceClaim": {
      // claim((address owner, uint48 batchId, bytes deviceKey, bytes32 model, bytes32 firmwareHash,
      //        uint256 deadline) c, bytes32[] proof, bytes signature); the struct holds bytes, so it
      // is dynamic: it goes in the tail, like the proof and the signature.
      const c = m.claim;
      if (!c || typeof c !== "object") throw new Error("claim must carry model, firmwareHash and proof");
      const owner = address(f.owner, "message.owner");
      const batch = uint(f.batch, 48, "message.batch");
      const key = bytes(m.key, "key");
      const model = bytes32(c.model, "claim.model");
      const firmwareHash = bytes32(c.firmwareHash, "claim.firmwareHash");
      const deadline = uint(f.deadline, 256, "message.deadline");
      if (!Array.isArray(c.proof)) throw new Error("claim.proof must be an array of 32-byte hex strings");
      const proof = c.proof.map((p, i) => bytes32(p, `claim.proof[${i}]`));
      const signature = bytes(m.signature, "signature");
      const struct = 3 * WORD;
      const list = struct + 6 * WORD + tailSize(key);
      const sig = list + WORD + proof.length * WORD;
      return {
        contract: "registry",
        data:
          SELECTORS.DeviceClaim +
          size(struct) +
          size(list) +
          size(sig) +
          (owner + batch + size(6 * WORD) + model + firmwareHash + deadline + tail(key)) +
          (size(proof.length) + proof.join("")) +
          tail(signature),
      };
    }
    case "FirmwareAttestation": {
      // attestFirmware(bytes key, bytes32 firmwareHash, uint256 deadline, bytes signature)
      const key = bytes(m.key, "key");
      const firmwareHash = bytes32(f.firmwareHash, "message.firmwareHash");
      const deadline = uint(f.deadline, 256, "message.deadline");
      const signature = bytes(m.signature, "signature");
      const sig = 4 * WORD + tailSize(key);
      return {
        contract: "registry",
        data:
          SELECTORS.FirmwareAttestation +
          size(4 * WORD) +
          firmwareHash +
          deadline +
          size(sig) +
          tail(key) +
          tail(signature),
      };
    }
    case "LocationBeacon": {
      // postLocationBeacon(bytes key, (bytes recipients, bytes ciphertext, uint64 at, uint256
      //                    deadline) beacon, bytes signature); the beacon is dynamic: a tail of
      // its own (four head words, then its recipients' and ciphertext's tails)
      const key = bytes(m.key, "key");
      const recipients = bytes(f.recipients, "message.recipients");
      const ciphertext = bytes(f.ciphertext, "message.ciphertext");
      const at = uint(f.at, 64, "message.at");
      const deadline = uint(f.deadline, 256, "message.deadline");
      const signature = bytes(m.signature, "signature");
      const beacon = 3 * WORD + tailSize(key);
      const sig = beacon + 4 * WORD + tailSize(recipients) + tailSize(ciphertext);
      return {
        contract: "locationBeacons",
        data:
          SELECTORS.LocationBeacon +
          size(3 * WORD) +
          size(beacon) +
          size(sig) +
          tail(key) +
          (size(4 * WORD) + size(4 * WORD + tailSize(recipients)) + at + deadline) +
          tail(recipients) +
          tail(ciphertext) +
          tail(signature),
      };
    }
    case "NonceCancellation": {
      // cancelNonce(bytes key, uint256 deadline, bytes signature)
      const key = bytes(m.key, "key");
      const deadline = uint(f.deadline, 256, "message.deadline");
      const signature = bytes(m.signature, "signature");
      const sig = 3 * WORD + tailSize(key);
      return {
        contract: "registry",
        data: SELECTORS.NonceCancellation + size(3 * WORD) + deadline + size(sig) + tail(key) + tail(signature),
      };
    }
    case "UnlockLog": {
      // anchorLog(bytes lockKey, (uint32 seq, bytes32 root, uint32 count, uint64 fromTime, uint64
      //           toTime, uint256 deadline) batch, bytes signature); the batch is static: in the head
      const key = bytes(m.key, "key");
      const seq = uint(f.seq, 32, "message.seq");
      const root = bytes32(f.root, "message.root");
      const count = uint(f.count, 32, "message.count");
      const fromTime = uint(f.fromTime, 64, "message.fromTime");
      const toTime = uint(f.toTime, 64, "message.toTime");
      const deadline = uint(f.deadline, 256, "message.deadline");
      const signature = bytes(m.signature, "signature");
      const sig = 8 * WORD + tailSize(key);
      return {
        contract: "lockAccess",
        data:
          SELECTORS.UnlockLog +
          size(8 * WORD) +
          (seq + root + count + fromTime + toTime + deadline) +
          size(sig) +
          tail(key) +
          tail(signature),
      };
    }
    case "Voucher": {
      // claim((uint256 payer, uint256 payee, address token, uint96 rate, uint96 allowance, uint64
      //       openedAt, uint32 salt, bytes32 payerKeyHash, uint32 payerPeriod) terms, uint256 amount,
      //       bytes key, bytes signature); the terms are static: in the head
      const t = m.terms;
      if (!t || typeof t !== "object") throw new Error("terms must carry the channel's terms");
      const terms =
        uint(t.payer, 256, "terms.payer") +
        uint(t.payee, 256, "terms.payee") +
        address(t.token, "terms.token") +
        uint(t.rate, 96, "terms.rate") +
        uint(t.allowance, 96, "terms.allowance") +
        uint(t.openedAt, 64, "terms.openedAt") +
        uint(t.salt, 32, "terms.salt") +
        bytes32(t.payerKeyHash, "terms.payerKeyHash") +
        uint(t.payerPeriod, 32, "terms.payerPeriod");
      const amount = uint(f.cumulativeAmount, 256, "message.cumulativeAmount");
      const key = bytes(m.key, "key");
      const signature = bytes(m.signature, "signature");
      const head = 12 * WORD;
      return {
        contract: "paymentChannels",
        data:
          SELECTORS.Voucher + terms + amount + size(head) + size(head + tailSize(key)) + tail(key) + tail(signature),
      };
    }
    case "Checkpoint": {
      // checkpoint((bytes32 shipment, uint32 seq, bytes32 readingsRoot, uint32 count, int16 minTemp,
      //            int16 maxTemp, bytes32 location, uint64 at) cp, bytes key, bytes signature); the
      // checkpoint is static: in the head
      const key = bytes(m.key, "key");
      const signature = bytes(m.signature, "signature");
      const head = 10 * WORD;
      return {
        contract: "custodyLedger",
        data:
          SELECTORS.Checkpoint +
          bytes32(f.shipment, "message.shipment") +
          uint(f.seq, 32, "message.seq") +
          bytes32(f.readingsRoot, "message.readingsRoot") +
          uint(f.count, 32, "message.count") +
          int(f.minTemp, 16, "message.minTemp") +
          int(f.maxTemp, 16, "message.maxTemp") +
          bytes32(f.location, "message.location") +
          uint(f.at, 64, "message.at") +
          size(head) +
          size(head + tailSize(key)) +
          tail(key) +
          tail(signature),
      };
    }
    default:
      throw new Error(`type must be one of ${DEVICE_MESSAGE_TYPES.join(", ")}`);
  }
}

/** The device a message speaks for. */
export function deviceOf(m: SignedDeviceMessage): bigint {
  if (m.type === "DeviceClaim") return deviceIdOf(m.key);
  if (m.type === "Voucher") return BigInt(m.terms!.payer);
  // A checkpoint names no device: its lane is the key's (its device id while the key is the first).
  if (m.type === "Checkpoint") return deviceIdOf(m.key);
  return BigInt((m.type === "UnlockLog" ? m.message.lock : m.message.device) as string);
}

/** The nonce the message uses, if its type has one (of its contract: see the top of this file). */
export function nonceOf(m: SignedDeviceMessage): bigint | undefined {
  return "nonce" in m.message ? BigInt(m.message.nonce as string) : undefined;
}

/** The deadline of the message's signature (seconds); a voucher has none (its channel's close bounds it). */
export function deadlineOf(m: SignedDeviceMessage): bigint {
  // A voucher's channel close bounds it; a checkpoint's sequence number does.
  return m.type === "Voucher" || m.type === "Checkpoint" ? (1n << 256n) - 1n : BigInt(m.message.deadline as string);
}

/** A stable id: the same signed message always has the same id, whoever submits it. */
export function messageId(m: SignedDeviceMessage): string {
  return bytesToHex(keccak(Buffer.from(bytes(m.signature, "signature"), "hex")));
}

/** JSON with bigints as decimal strings. */
export function toJson(value: unknown): string {
  return JSON.stringify(value, (_k, v) => (typeof v === "bigint" ? v.toString() : v));
}

/**
 * Whether `m` can no longer land because it (or another message with its nonce) already did:
 * its device's nonce (a beacon: its beacon nonce) moved past it, its key is registered, or (an
 * unlock log batch) the lock's last anchored sequence number reached it.
 */
export async function isSpent(
  m: SignedDeviceMessage,
  provider: Provider,
  contracts: ContractAddresses,
): Promise<boolean> {
  if (m.type === "Voucher") {
    const channels = PaymentChannels__factory.connect(addressOf(contracts, "paymentChannels"), provider);
    const state = await channels.channelState(String(m.message.channel));
    // Closed (or never opened), or paid up to this voucher already.
    return state.deposit === 0n || state.paid >= BigInt(m.message.cumulativeAmount as string);
  }
  if (m.type === "Checkpoint") {
    const ledger = CustodyLedger__factory.connect(addressOf(contracts, "custodyLedger"), provider);
    const s = await ledger.shipmentOf(String(m.message.shipment));
    return s.delivered || BigInt(s.checkpointSeq) >= BigInt(m.message.seq as string);
  }
  if (m.type === "UnlockLog") {
    const locks = LockAccess__factory.connect(addressOf(contracts, "lockAccess"), provider);
    return BigInt((await locks.lockState(deviceOf(m))).logSeq) >= BigInt(m.message.seq as string);
  }
  if (m.type === "LocationBeacon") {
    const beacons = LocationBeacons__factory.connect(addressOf(contracts, "locationBeacons"), provider);
    return BigInt(await beacons.beaconNonce(deviceOf(m))) > nonceOf(m)!;
  }
  const registry = DeviceRegistry__factory.connect(contracts.registry, provider);
  if (m.type === "DeviceClaim") return !(await registry.isKeyAvailable(m.key));
  return BigInt(await registry.deviceNonce(deviceOf(m))) > nonceOf(m)!;
}

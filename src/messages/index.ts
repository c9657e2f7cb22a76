/**
 * Device messages on their way to the chain: which contract call carries each signed catalogue
 * type, the id that makes a message idempotent, and how to tell that one already landed (its nonce
 * is used, or its key is claimed). Shared by the agent core and the relayer.
 */
import { Interface, keccak256, type Provider } from "ethers";
import { TYPES, type Message } from "../eip712";
import { deviceIdOf } from "../registry/batch";
// The one factory, not the typechain index (which loads every contract's bindings).
import { DeviceRegistry__factory } from "../../typechain-types/factories/contracts/registry/DeviceRegistry__factory";

/** The catalogue types a device signs for a contract, and anyone may relay. */
export const DEVICE_MESSAGE_TYPES = [
  "DeviceClaim",
  "FirmwareAttestation",
  "LocationBeacon",
  "NonceCancellation",
] as const;
export type DeviceMessageType = (typeof DEVICE_MESSAGE_TYPES)[number];

/** The contracts a device message can be addressed to. */
export type ContractName = "registry";

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
}

const registryInterface: Interface = DeviceRegistry__factory.createInterface();

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
    if (!c || typeof c.model !== "string" || typeof c.firmwareHash !== "string" || !Array.isArray(c.proof)) {
      throw new Error("claim must carry model, firmwareHash and proof");
    }
  }
  return m as SignedDeviceMessage;
}

/** The contract and calldata that deliver `m`. */
export function encodeCall(m: SignedDeviceMessage): { contract: ContractName; data: string } {
  const f = m.message;
  switch (m.type) {
    case "DeviceClaim":
      return {
        contract: "registry",
        data: registryInterface.encodeFunctionData("claim", [
          {
            owner: f.owner,
            batchId: f.batch,
            deviceKey: m.key,
            model: m.claim!.model,
            firmwareHash: m.claim!.firmwareHash,
            deadline: f.deadline,
          },
          m.claim!.proof,
          m.signature,
        ]),
      };
    case "FirmwareAttestation":
      return {
        contract: "registry",
        data: registryInterface.encodeFunctionData("attestFirmware", [m.key, f.firmwareHash, f.deadline, m.signature]),
      };
    case "LocationBeacon":
      return {
        contract: "registry",
        data: registryInterface.encodeFunctionData("postLocationBeacon", [
          m.key,
          { latitudeE7: f.latitudeE7, longitudeE7: f.longitudeE7, at: f.at, deadline: f.deadline },
          m.signature,
        ]),
      };
    case "NonceCancellation":
      return {
        contract: "registry",
        data: registryInterface.encodeFunctionData("cancelNonce", [m.key, f.deadline, m.signature]),
      };
  }
}

/** The device a message speaks for. */
export function deviceOf(m: SignedDeviceMessage): bigint {
  return m.type === "DeviceClaim" ? deviceIdOf(m.key) : BigInt(m.message.device as string);
}

/** The device nonce the message uses, if its type has one. */
export function nonceOf(m: SignedDeviceMessage): bigint | undefined {
  return "nonce" in m.message ? BigInt(m.message.nonce as string) : undefined;
}

/** The deadline of the message's signature (seconds). */
export function deadlineOf(m: SignedDeviceMessage): bigint {
  return BigInt(m.message.deadline as string);
}

/** A stable id: the same signed message always has the same id, whoever submits it. */
export function messageId(m: SignedDeviceMessage): string {
  return keccak256(m.signature);
}

/** JSON with bigints as decimal strings. */
export function toJson(value: unknown): string {
  return JSON.stringify(value, (_k, v) => (typeof v === "bigint" ? v.toString() : v));
}

/**
 * Whether `m` can no longer land because it (or another message with its nonce) already did:
 * its device's nonce moved past it, or its key is registered.
 */
export async function isSpent(m: SignedDeviceMessage, provider: Provider, registryAddress: string): Promise<boolean> {
  const registry = DeviceRegistry__factory.connect(registryAddress, provider);
  if (m.type === "DeviceClaim") return !(await registry.isKeyAvailable(m.key));
  return BigInt(await registry.deviceNonce(deviceOf(m))) > nonceOf(m)!;
}

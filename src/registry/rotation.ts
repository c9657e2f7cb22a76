/**
 * The key rotation file: what `custos-agent key rotate` writes and `npx hardhat registry:rotate
 * --rotation FILE` submits. It carries the signed `KeyRotation(device, newKey, nonce, deadline)`
 * (the new key's signature, and the old key's when the old key was still there to sign) together
 * with where it was signed for (chain id and registry: the EIP-712 domain), so the task can tell a
 * file made for another chain, registry, device or nonce before it spends gas on a revert.
 *
 *   {
 *     "format": "custos-key-rotation", "version": 1,
 *     "chainId": "31337", "registry": "0x5FbD…",            // the EIP-712 domain it was signed in
 *     "device": "4263…",                                    // device id, decimal
 *     "nonce": "3",                                         // the device's nonce it was signed at
 *     "deadline": "1795964218",                             // unix seconds, decimal
 *     "newKey": "0x…", "newKeySignature": "0x…",            // ERC-7913 signer bytes, its signature
 *     "oldKey": "0x…", "oldKeySignature": "0x…"             // both, or both absent / "0x"
 *   }
 *
 * Numbers are decimal strings (uint256 does not fit a JSON number); a parser error names the field.
 * This module imports only ethers and the EIP-712 catalogue: the agent and the tasks both load it.
 */
import { dataLength, getAddress, isAddress, isHexString } from "ethers";
import { digest, type Deployment } from "../eip712/index.js";

export const ROTATION_FORMAT = "custos-key-rotation";
export const ROTATION_VERSION = 1;

/** A parsed rotation file. Bytes are lower-case 0x-hex; `oldKey`/`oldKeySignature` are "0x" when absent. */
export interface RotationFile {
  format: typeof ROTATION_FORMAT;
  version: typeof ROTATION_VERSION;
  chainId: bigint;
  registry: string;
  device: bigint;
  nonce: bigint;
  deadline: bigint;
  newKey: string;
  newKeySignature: string;
  oldKey: string;
  oldKeySignature: string;
}

/** What the signer of a rotation supplies; `serializeRotation` adds the format and version. */
export type RotationInput = Omit<RotationFile, "format" | "version" | "oldKey" | "oldKeySignature"> & {
  oldKey?: string;
  oldKeySignature?: string;
};

/** A rotation file that cannot be used; `field` is the JSON field at fault ("" for the whole file). */
export class RotationFileError extends Error {
  constructor(
    readonly field: string,
    problem: string,
  ) {
    super(field ? `${field}: ${problem}` : problem);
    this.name = "RotationFileError";
  }
}

const MAX_UINT256 = (1n << 256n) - 1n;

function uint(value: unknown, field: string, max = MAX_UINT256): bigint {
  // Strings by the format; a safe JSON integer is accepted too (a hand-edited deadline, say).
  const text = typeof value === "number" && Number.isSafeInteger(value) ? String(value) : value;
  if (typeof text !== "string" || !/^[0-9]+$/.test(text))
    throw new RotationFileError(field, `must be a non-negative integer as a decimal string, not ${show(value)}`);
  const n = BigInt(text);
  if (n > max) throw new RotationFileError(field, `${text} is out of range`);
  return n;
}

function bytes(value: unknown, field: string, minLength = 1): string {
  if (typeof value !== "string" || !isHexString(value) || dataLength(value) < minLength)
    throw new RotationFileError(
      field,
      `must be 0x-hex bytes${minLength > 1 ? ` (at least ${minLength})` : ""}, not ${show(value)}`,
    );
  return value.toLowerCase();
}

function show(value: unknown): string {
  if (value === undefined) return "missing";
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 40 ? `${text.slice(0, 37)}…` : text;
}

/**
 * Checks a rotation file's JSON (already parsed) and returns it typed. Throws a
 * `RotationFileError` naming the first bad field.
 */
export function parseRotation(json: unknown): RotationFile {
  if (json === null || typeof json !== "object" || Array.isArray(json))
    throw new RotationFileError("", "a rotation file is a JSON object");
  const r = json as Record<string, unknown>;
  if (r.format !== ROTATION_FORMAT)
    throw new RotationFileError(
      "format",
      `must be "${ROTATION_FORMAT}" (a file from \`custos-agent key rotate\`), not ${show(r.format)}`,
    );
  if (r.version !== ROTATION_VERSION)
    throw new RotationFileError("version", `must be ${ROTATION_VERSION}, not ${show(r.version)}`);
  const known = new Set([
    "format",
    "version",
    "chainId",
    "registry",
    "device",
    "nonce",
    "deadline",
    "newKey",
    "newKeySignature",
    "oldKey",
    "oldKeySignature",
  ]);
  for (const k of Object.keys(r)) if (!known.has(k)) throw new RotationFileError(k, "is not a rotation file field");
  const chainId = uint(r.chainId, "chainId");
  if (chainId === 0n) throw new RotationFileError("chainId", "must not be 0");
  if (typeof r.registry !== "string" || !isAddress(r.registry))
    throw new RotationFileError("registry", `must be the registry's address, not ${show(r.registry)}`);
  const device = uint(r.device, "device", (1n << 192n) - 1n);
  if (device === 0n) throw new RotationFileError("device", "must not be 0");
  const nonce = uint(r.nonce, "nonce", (1n << 32n) - 1n);
  const deadline = uint(r.deadline, "deadline");
  const newKey = bytes(r.newKey, "newKey", 20);
  const newKeySignature = bytes(r.newKeySignature, "newKeySignature", 64);
  const absent = (v: unknown) => v === undefined || v === null || v === "0x";
  let oldKey = "0x";
  let oldKeySignature = "0x";
  if (absent(r.oldKey) !== absent(r.oldKeySignature))
    throw new RotationFileError(
      absent(r.oldKey) ? "oldKey" : "oldKeySignature",
      "oldKey and oldKeySignature go together: give both, or neither (the owner installs the key alone)",
    );
  if (!absent(r.oldKey)) {
    oldKey = bytes(r.oldKey, "oldKey", 20);
    oldKeySignature = bytes(r.oldKeySignature, "oldKeySignature", 64);
    if (oldKey === newKey) throw new RotationFileError("newKey", "is the old key: a rotation needs a new key");
  }
  return {
    format: ROTATION_FORMAT,
    version: ROTATION_VERSION,
    chainId,
    registry: getAddress(r.registry),
    device,
    nonce,
    deadline,
    newKey,
    newKeySignature,
    oldKey,
    oldKeySignature,
  };
}

/** Parses a rotation file's text (`source` names it in the error). */
export function parseRotationText(text: string, source = "rotation file"): RotationFile {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new RotationFileError("", `${source} is not JSON (${(err as Error).message})`);
  }
  return parseRotation(json);
}

/** The file's text (what `custos-agent key rotate` writes): decimal strings, "0x" fields left out. */
export function serializeRotation(input: RotationInput): string {
  const file = parseRotation({
    format: ROTATION_FORMAT,
    version: ROTATION_VERSION,
    chainId: input.chainId.toString(),
    registry: input.registry,
    device: input.device.toString(),
    nonce: input.nonce.toString(),
    deadline: input.deadline.toString(),
    newKey: input.newKey,
    newKeySignature: input.newKeySignature,
    ...(input.oldKey && input.oldKey !== "0x" ? { oldKey: input.oldKey, oldKeySignature: input.oldKeySignature } : {}),
  });
  const out: Record<string, unknown> = {
    format: file.format,
    version: file.version,
    chainId: file.chainId.toString(),
    registry: file.registry,
    device: file.device.toString(),
    nonce: file.nonce.toString(),
    deadline: file.deadline.toString(),
    newKey: file.newKey,
    newKeySignature: file.newKeySignature,
  };
  if (file.oldKey !== "0x") Object.assign(out, { oldKey: file.oldKey, oldKeySignature: file.oldKeySignature });
  return JSON.stringify(out, null, 2) + "\n";
}

/** The signed `KeyRotation` message of a rotation (what both keys sign). */
export function rotationMessage(r: Pick<RotationFile, "device" | "newKey" | "nonce" | "deadline">) {
  return { device: r.device, newKey: r.newKey, nonce: r.nonce, deadline: r.deadline };
}

/** The EIP-712 domain a rotation is signed in. */
export function rotationDeployment(r: Pick<RotationFile, "chainId" | "registry">): Deployment {
  return { chainId: r.chainId, verifyingContract: r.registry };
}

/** The digest both keys sign (a P-256 key signs its SHA-256, as every device message). */
export function rotationDigest(
  r: Pick<RotationFile, "chainId" | "registry" | "device" | "newKey" | "nonce" | "deadline">,
) {
  return digest("KeyRotation", rotationDeployment(r), rotationMessage(r));
}

/** `DeviceRegistry.rotateKey`'s `Rotation` argument. */
export function rotationStruct(r: RotationFile) {
  return {
    newKey: r.newKey,
    deadline: r.deadline,
    newKeySignature: r.newKeySignature,
    oldKey: r.oldKey,
    oldKeySignature: r.oldKeySignature,
  };
}

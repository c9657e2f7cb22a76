/**
 * The DeviceRegistry tasks' actions (definitions and flags: ../registry.ts). Each prints JSON (or a
 * progress bar on stderr), returns it, and fails with a message naming the flag that is wrong.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync, createWriteStream } from "node:fs";
import path from "node:path";
// Used row by row: straight from ethers, not through the connection's `ethers` (a lazy proxy).
import { dataLength, encodeBytes32String, isAddress, isHexString } from "ethers";
import type { HardhatRuntimeEnvironment } from "hardhat/types/hre";
import { DeviceBatch, deviceIdOf, type ProvisionedDevice } from "../../src/registry/batch.js";
import { deviceById, deviceByKey } from "../../src/registry/lookup.js";
import { loadKeccak } from "../../src/eip712/fast.js";
import { checkShape, encodeCall } from "../../src/messages/index.js";
import { contractAddress, deviceIdArg } from "../addresses.js";
import { chainOf, inputError, required } from "../support.js";

const STATUS = ["Unknown", "Active", "Quarantined", "Revoked"];

/** The registry address: the flag, else CUSTOS_REGISTRY, else this chain's Ignition deployment. */
export function registryAddress(hre: HardhatRuntimeEnvironment, flag?: string): Promise<string> {
  return contractAddress(hre, "DeviceRegistry", flag);
}

async function registryAt(hre: HardhatRuntimeEnvironment, flag?: string) {
  const ethers = await chainOf(hre);
  return ethers.getContractAt("DeviceRegistry", await registryAddress(hre, flag));
}

function progress(label: string, done: number, total: number): void {
  if (!process.stderr.isTTY && done !== total && done % Math.max(1, Math.floor(total / 10)) !== 0) return;
  const width = 30;
  const filled = Math.round((done / total) * width);
  process.stderr.write(`\r${label} [${"#".repeat(filled)}${".".repeat(width - filled)}] ${done}/${total}`);
  if (done === total) process.stderr.write("\n");
}

/** Reads `deviceKey,model,firmwareHash` rows; a model that is not 32-byte hex is text (at most 31 bytes). */
export function readDevicesCsv(file: string): ProvisionedDevice[] {
  if (!existsSync(file)) throw inputError(`--csv: ${file} does not exist`);
  const lines = readFileSync(file, "utf8")
    .split(/\r?\n/)
    .filter((l) => l.trim() !== "");
  const header = lines
    .shift()
    ?.split(",")
    .map((h) => h.trim());
  if (header?.join(",") !== "deviceKey,model,firmwareHash") {
    throw inputError(`--csv: the first line must be "deviceKey,model,firmwareHash", not "${header?.join(",")}"`);
  }
  return lines.map((line, i) => {
    const row = i + 2;
    const [deviceKey, model, firmwareHash, extra] = line.split(",").map((c) => c.trim());
    if (extra !== undefined || firmwareHash === undefined) throw inputError(`--csv line ${row}: expected 3 columns`);
    if (!isHexString(deviceKey) || dataLength(deviceKey) < 20) {
      throw inputError(`--csv line ${row}: deviceKey must be hex bytes (a 20-byte address or an 84-byte P-256 signer)`);
    }
    if (!isHexString(firmwareHash, 32)) throw inputError(`--csv line ${row}: firmwareHash must be 32 bytes of hex`);
    let model32: string;
    try {
      model32 = isHexString(model, 32) ? model : encodeBytes32String(model);
    } catch {
      throw inputError(`--csv line ${row}: model must be 32 bytes of hex or text of at most 31 bytes`);
    }
    return { deviceKey: deviceKey.toLowerCase(), model: model32, firmwareHash };
  });
}

export async function batch(
  args: { csv?: string; out?: string; commit: boolean; registry?: string; manufacturer?: string },
  hre: HardhatRuntimeEnvironment,
) {
  const csv = required(args.csv, "--csv");
  const out = required(args.out, "--out");
  await loadKeccak();
  const ethers = await chainOf(hre);
  const manufacturer = args.manufacturer ?? (await (await ethers.getSigners())[0].getAddress());
  if (!isAddress(manufacturer)) throw inputError(`--manufacturer: ${manufacturer} is not an address`);
  const devices = readDevicesCsv(csv);
  if (devices.length === 0) throw inputError(`--csv: ${csv} has no devices`);
  progress("hashing", 0, devices.length);
  const tree = new DeviceBatch(devices);
  progress("hashing", devices.length, devices.length);
  mkdirSync(out, { recursive: true });
  writeFileSync(path.join(out, "tree.json"), JSON.stringify(tree.dump()));
  const proofs = createWriteStream(path.join(out, "proofs.jsonl"));
  for (let i = 0; i < devices.length; i++) {
    const d = devices[i];
    const line = {
      ...d,
      deviceId: deviceIdOf(d.deviceKey).toString(),
      batchId: tree.idFor(manufacturer).toString(),
      proof: tree.proofAt(i),
    };
    if (!proofs.write(JSON.stringify(line) + "\n")) await new Promise<void>((r) => proofs.once("drain", () => r()));
    if ((i + 1) % 1000 === 0 || i + 1 === devices.length) progress("proofs ", i + 1, devices.length);
  }
  await new Promise<void>((resolve, reject) => proofs.end((err?: Error | null) => (err ? reject(err) : resolve())));
  const summary: Record<string, unknown> = {
    root: tree.root,
    manufacturer,
    batchId: tree.idFor(manufacturer).toString(),
    devices: devices.length,
  };
  if (args.commit) {
    const registry = await registryAt(hre, args.registry);
    const receipt = await (await registry.commitBatch(tree.root)).wait();
    summary.commitTx = receipt!.hash;
    summary.commitGas = Number(receipt!.gasUsed);
  }
  writeFileSync(path.join(out, "batch.json"), JSON.stringify(summary, null, 2) + "\n");
  console.log(JSON.stringify(summary));
  return summary;
}

export async function claim(args: { message?: string; registry?: string }, hre: HardhatRuntimeEnvironment) {
  const file = required(args.message, "--message");
  if (!existsSync(file)) throw inputError(`--message: ${file} does not exist`);
  const m = checkShape(JSON.parse(readFileSync(file, "utf8")));
  if (m.type !== "DeviceClaim") throw inputError(`--message: expected a DeviceClaim, got ${m.type}`);
  const registry = await registryAt(hre, args.registry);
  const [signer] = await (await chainOf(hre)).getSigners();
  const receipt = await (
    await signer.sendTransaction({ to: await registry.getAddress(), data: encodeCall(m).data })
  ).wait();
  const result = { deviceId: deviceIdOf(m.key).toString(), owner: m.message.owner, tx: receipt!.hash };
  console.log(JSON.stringify(result));
  return result;
}

export async function status(
  args: { device?: string; key?: string; registry?: string },
  hre: HardhatRuntimeEnvironment,
) {
  if (!args.device === !args.key) throw inputError("give exactly one of --device and --key");
  const device = args.device === undefined ? undefined : deviceIdArg(args.device);
  const registry = await registryAt(hre, args.registry);
  const id = device ?? (await deviceByKey(registry, args.key!)).id;
  const info = await registry.deviceInfo(id);
  const result = {
    id: info.id.toString(),
    owner: info.owner,
    status: STATUS[Number(info.status)],
    batchId: info.batchId.toString(),
    nonce: Number(info.nonce),
    keyGeneration: Number(info.keyGeneration),
    keyAttested: info.keyAttested,
    reportedStolen: info.reportedStolen,
    guardianFlagged: info.guardianFlagged,
    ownerEpoch: Number(info.ownerEpoch),
    trustPeriod: Number(info.period),
    untrustedSince: info.untrustedSince === 0n ? null : new Date(Number(info.untrustedSince) * 1000).toISOString(),
    firmware: info.firmware,
    firmwareRevoked: info.firmwareRevoked,
  };
  console.log(JSON.stringify(result));
  return result;
}

/** An owner's one-call status change: `reportStolen`, `release` or `decommission`. */
function ownerCall(fn: "reportStolen" | "release" | "decommission") {
  return async (args: { device?: string; registry?: string }, hre: HardhatRuntimeEnvironment) => {
    const device = required(args.device, "--device");
    const registry = await registryAt(hre, args.registry);
    const receipt = await (await registry[fn](deviceIdArg(device))).wait();
    const info = await deviceById(registry, deviceIdArg(device));
    const result = { device, status: STATUS[Number(info.status)], tx: receipt!.hash };
    console.log(JSON.stringify(result));
    return result;
  };
}

export const reportStolen = ownerCall("reportStolen");
export const release = ownerCall("release");
export const decommission = ownerCall("decommission");

function batchIdArg(value: string): bigint {
  if (!/^(0x[0-9a-fA-F]+|[0-9]+)$/.test(value)) throw inputError(`--batch: ${value} is not a batch id`);
  return BigInt(value);
}

export async function recall(
  args: { device?: string; batch?: string; reason: string; registry?: string },
  hre: HardhatRuntimeEnvironment,
) {
  if (!args.device === !args.batch) throw inputError("give exactly one of --device and --batch");
  const registry = await registryAt(hre, args.registry);
  let reason: string;
  try {
    reason = encodeBytes32String(args.reason);
  } catch {
    throw inputError(`--reason: "${args.reason}" is longer than 31 bytes`);
  }
  const tx = args.device
    ? await registry.recall(deviceIdArg(args.device), reason)
    : await registry.revokeBatch(batchIdArg(args.batch!), reason);
  const receipt = await tx.wait();
  const result = { device: args.device, batch: args.batch, tx: receipt!.hash };
  console.log(JSON.stringify(result));
  return result;
}

export async function rotate(
  args: { device?: string; rotation?: string; registry?: string },
  hre: HardhatRuntimeEnvironment,
) {
  const device = required(args.device, "--device");
  const file = required(args.rotation, "--rotation");
  if (!existsSync(file)) throw inputError(`--rotation: ${file} does not exist`);
  const r = JSON.parse(readFileSync(file, "utf8"));
  for (const field of ["newKey", "deadline", "newKeySignature"]) {
    if (!(field in r)) throw inputError(`--rotation: ${field} is missing`);
  }
  const registry = await registryAt(hre, args.registry);
  const rotation = { oldKey: "0x", oldKeySignature: "0x", ...r };
  const receipt = await (await registry.rotateKey(deviceIdArg(device), rotation)).wait();
  const result = { device, newKey: r.newKey, tx: receipt!.hash };
  console.log(JSON.stringify(result));
  return result;
}

export async function transfer(
  args: { device?: string; to?: string; signer: number; registry?: string; channels?: string },
  hre: HardhatRuntimeEnvironment,
) {
  const device = required(args.device, "--device");
  const to = required(args.to, "--to");
  if (!isAddress(to)) throw inputError(`--to: ${to} is not an address`);
  const signers = await (await chainOf(hre)).getSigners();
  if (!(args.signer >= 0 && args.signer < signers.length))
    throw inputError(`--signer: no account ${args.signer} on this network`);
  const owner = signers[args.signer];
  const id = deviceIdArg(device);
  const registry = (await registryAt(hre, args.registry)).connect(owner);
  const current = await registry.ownerOf(id).catch(() => null);
  if (current === null) throw inputError(`--device: no device ${device} in this registry`);
  if (current.toLowerCase() !== owner.address.toLowerCase())
    throw inputError(`--signer: account ${args.signer} (${owner.address}) does not own device ${device}`);
  // Refunds follow the payer device's owner at close (PaymentChannels): a sale hands them over.
  const moving = await openChannelsPaidBy(hre, id, args.channels);
  const receipt = await (await registry.transferFrom(owner.address, to, id)).wait();
  const result = { device, from: owner.address, to, tx: receipt!.hash, refundsMoveTo: to, channels: moving };
  if (moving.length > 0)
    console.warn(
      `registry:transfer: ${moving.length} open channel(s) paid by device ${device} now refund ${to} at close: ${moving.join(", ")}`,
    );
  console.log(JSON.stringify(result));
  return result;
}

/** The open channels whose payer is `device` (none when no PaymentChannels deployment is known). */
async function openChannelsPaidBy(hre: HardhatRuntimeEnvironment, device: bigint, flag?: string): Promise<string[]> {
  // With --channels its own errors stand; without it, a deployment with no PaymentChannels has none.
  const address = flag
    ? await contractAddress(hre, "PaymentChannels", flag)
    : await contractAddress(hre, "PaymentChannels").catch(() => null);
  if (address === null) return [];
  const channels = await (await chainOf(hre)).getContractAt("PaymentChannels", address);
  const opened = await channels.queryFilter(channels.filters.ChannelOpened(undefined, device));
  const open: string[] = [];
  for (const e of opened) if ((await channels.channelState(e.args.channel)).deposit !== 0n) open.push(e.args.channel);
  return open;
}

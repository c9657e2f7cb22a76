/**
 * Operator tasks for the DeviceRegistry. Each prints JSON (or a progress bar on stderr) and fails
 * with a message naming the argument that is wrong.
 *
 *   npx hardhat registry:batch --csv devices.csv --out batch/ --commit --network localhost
 *   npx hardhat registry:claim --message claim.json --network localhost
 *   npx hardhat registry:status --device 123... --network localhost
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync, createWriteStream } from "node:fs";
import path from "node:path";
import { task, types } from "hardhat/config";
// Used row by row: straight from ethers, not through hre.ethers (a lazy proxy that costs ~0.5 ms a call).
import { dataLength, encodeBytes32String, isAddress, isHexString } from "ethers";
import type { HardhatRuntimeEnvironment } from "hardhat/types";
import { DeviceBatch, deviceIdOf, type ProvisionedDevice } from "../src/registry/batch.js";
import { deviceById, deviceByKey } from "../src/registry/lookup.js";
import { loadKeccak } from "../src/eip712/fast.js";
import { contractAddress, deviceIdArg } from "./addresses.js";

const STATUS = ["Unknown", "Active", "Quarantined", "Revoked"];

/** The registry address: the flag, else CUSTOS_REGISTRY, else this chain's Ignition deployment. */
export function registryAddress(hre: HardhatRuntimeEnvironment, flag?: string): Promise<string> {
  return contractAddress(hre, "DeviceRegistry", flag);
}

async function registryAt(hre: HardhatRuntimeEnvironment, flag?: string) {
  return hre.ethers.getContractAt("DeviceRegistry", await registryAddress(hre, flag));
}

function progress(label: string, done: number, total: number): void {
  if (!process.stderr.isTTY && done !== total && done % Math.max(1, Math.floor(total / 10)) !== 0) return;
  const width = 30;
  const filled = Math.round((done / total) * width);
  process.stderr.write(`\r${label} [${"#".repeat(filled)}${".".repeat(width - filled)}] ${done}/${total}`);
  if (done === total) process.stderr.write("\n");
}

/** Reads `deviceKey,model,firmwareHash` rows; a model that is not 32-byte hex is text (at most 31 bytes). */
export function readDevicesCsv(hre: HardhatRuntimeEnvironment, file: string): ProvisionedDevice[] {
  if (!existsSync(file)) throw new Error(`--csv: ${file} does not exist`);
  const lines = readFileSync(file, "utf8")
    .split(/\r?\n/)
    .filter((l) => l.trim() !== "");
  const header = lines
    .shift()
    ?.split(",")
    .map((h) => h.trim());
  if (header?.join(",") !== "deviceKey,model,firmwareHash") {
    throw new Error(`--csv: the first line must be "deviceKey,model,firmwareHash", not "${header?.join(",")}"`);
  }
  return lines.map((line, i) => {
    const row = i + 2;
    const [deviceKey, model, firmwareHash, extra] = line.split(",").map((c) => c.trim());
    if (extra !== undefined || firmwareHash === undefined) throw new Error(`--csv line ${row}: expected 3 columns`);
    if (!isHexString(deviceKey) || dataLength(deviceKey) < 20) {
      throw new Error(`--csv line ${row}: deviceKey must be hex bytes (a 20-byte address or an 84-byte P-256 signer)`);
    }
    if (!isHexString(firmwareHash, 32)) throw new Error(`--csv line ${row}: firmwareHash must be 32 bytes of hex`);
    let model32: string;
    try {
      model32 = isHexString(model, 32) ? model : encodeBytes32String(model);
    } catch {
      throw new Error(`--csv line ${row}: model must be 32 bytes of hex or text of at most 31 bytes`);
    }
    return { deviceKey: deviceKey.toLowerCase(), model: model32, firmwareHash };
  });
}

task(
  "registry:batch",
  "Builds a manufacturer batch from a CSV of devices: tree, every proof, and (with --commit) the on-chain commit",
)
  .addParam("csv", "CSV file with the header deviceKey,model,firmwareHash")
  .addParam("out", "directory for tree.json (OpenZeppelin standard-v1), proofs.jsonl and batch.json")
  .addFlag("commit", "commit the root to the registry as the first signer (a manufacturer)")
  .addOptionalParam("registry", "DeviceRegistry address")
  .addOptionalParam(
    "manufacturer",
    "the manufacturer that will commit the batch (its id depends on it); default: the first signer",
  )
  .setAction(
    async (args: { csv: string; out: string; commit: boolean; registry?: string; manufacturer?: string }, hre) => {
      await loadKeccak();
      const manufacturer = args.manufacturer ?? (await (await hre.ethers.getSigners())[0].getAddress());
      if (!isAddress(manufacturer)) throw new Error(`--manufacturer: ${manufacturer} is not an address`);
      const devices = readDevicesCsv(hre, args.csv);
      if (devices.length === 0) throw new Error(`--csv: ${args.csv} has no devices`);
      progress("hashing", 0, devices.length);
      const batch = new DeviceBatch(devices);
      progress("hashing", devices.length, devices.length);
      mkdirSync(args.out, { recursive: true });
      writeFileSync(path.join(args.out, "tree.json"), JSON.stringify(batch.dump()));
      const proofs = createWriteStream(path.join(args.out, "proofs.jsonl"));
      for (let i = 0; i < devices.length; i++) {
        const d = devices[i];
        const line = {
          ...d,
          deviceId: deviceIdOf(d.deviceKey).toString(),
          batchId: batch.idFor(manufacturer).toString(),
          proof: batch.proofAt(i),
        };
        if (!proofs.write(JSON.stringify(line) + "\n")) await new Promise<void>((r) => proofs.once("drain", () => r()));
        if ((i + 1) % 1000 === 0 || i + 1 === devices.length) progress("proofs ", i + 1, devices.length);
      }
      await new Promise<void>((resolve, reject) => proofs.end((err?: Error | null) => (err ? reject(err) : resolve())));
      const summary: Record<string, unknown> = {
        root: batch.root,
        manufacturer,
        batchId: batch.idFor(manufacturer).toString(),
        devices: devices.length,
      };
      if (args.commit) {
        const registry = await registryAt(hre, args.registry);
        const receipt = await (await registry.commitBatch(batch.root)).wait();
        summary.commitTx = receipt!.hash;
        summary.commitGas = Number(receipt!.gasUsed);
      }
      writeFileSync(path.join(args.out, "batch.json"), JSON.stringify(summary, null, 2) + "\n");
      console.log(JSON.stringify(summary));
      return summary;
    },
  );

task("registry:claim", "Submits a device's signed claim (the JSON that `custos-agent sign claim` prints)")
  .addParam("message", "file with the signed DeviceClaim message")
  .addOptionalParam("registry", "DeviceRegistry address")
  .setAction(async (args: { message: string; registry?: string }, hre) => {
    if (!existsSync(args.message)) throw new Error(`--message: ${args.message} does not exist`);
    // Loaded here: it needs the typechain bindings, which do not exist before the first compile.
    const { checkShape, encodeCall } = await import("../src/messages/index.js");
    const m = checkShape(JSON.parse(readFileSync(args.message, "utf8")));
    if (m.type !== "DeviceClaim") throw new Error(`--message: expected a DeviceClaim, got ${m.type}`);
    const registry = await registryAt(hre, args.registry);
    const [signer] = await hre.ethers.getSigners();
    const receipt = await (
      await signer.sendTransaction({ to: await registry.getAddress(), data: encodeCall(m).data })
    ).wait();
    const result = { deviceId: deviceIdOf(m.key).toString(), owner: m.message.owner, tx: receipt!.hash };
    console.log(JSON.stringify(result));
    return result;
  });

task(
  "registry:status",
  "Prints a device's owner, status, batch, nonce, key generation and provenance, trust period and firmware",
)
  .addOptionalParam("device", "device id")
  .addOptionalParam("key", "device key (ERC-7913 signer bytes)")
  .addOptionalParam("registry", "DeviceRegistry address")
  .setAction(async (args: { device?: string; key?: string; registry?: string }, hre) => {
    if (!args.device === !args.key) throw new Error("give exactly one of --device and --key");
    const registry = await registryAt(hre, args.registry);
    const id = args.device ? deviceIdArg(args.device) : (await deviceByKey(registry, args.key!)).id;
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
  });

for (const [name, fn, description] of [
  ["registry:report-stolen", "reportStolen", "The owner reports the device stolen: quarantined until released"],
  ["registry:release", "release", "The owner lifts its theft report"],
  ["registry:decommission", "decommission", "The owner revokes the device for good"],
] as const) {
  task(name, description)
    .addParam("device", "device id")
    .addOptionalParam("registry", "DeviceRegistry address")
    .setAction(async (args: { device: string; registry?: string }, hre) => {
      const registry = await registryAt(hre, args.registry);
      const receipt = await (await registry[fn](deviceIdArg(args.device))).wait();
      const info = await deviceById(registry, deviceIdArg(args.device));
      const result = { device: args.device, status: STATUS[Number(info.status)], tx: receipt!.hash };
      console.log(JSON.stringify(result));
      return result;
    });
}

task("registry:recall", "A manufacturer (or the admin) revokes one device, or with --batch a whole batch")
  .addOptionalParam("device", "device id")
  .addOptionalParam("batch", "batch id")
  .addParam("reason", "why (text, at most 31 bytes)", "recall", types.string)
  .addOptionalParam("registry", "DeviceRegistry address")
  .setAction(async (args: { device?: string; batch?: string; reason: string; registry?: string }, hre) => {
    if (!args.device === !args.batch) throw new Error("give exactly one of --device and --batch");
    const registry = await registryAt(hre, args.registry);
    const reason = hre.ethers.encodeBytes32String(args.reason);
    const tx = args.device
      ? await registry.recall(deviceIdArg(args.device), reason)
      : await registry.revokeBatch(BigInt(args.batch!), reason);
    const receipt = await tx.wait();
    console.log(JSON.stringify({ device: args.device, batch: args.batch, tx: receipt!.hash }));
  });

task("registry:rotate", "The owner rotates a device's key with the signatures in a rotation file")
  .addParam("device", "device id")
  .addParam("rotation", "JSON file {newKey, deadline, newKeySignature, oldKey, oldKeySignature}")
  .addOptionalParam("registry", "DeviceRegistry address")
  .setAction(async (args: { device: string; rotation: string; registry?: string }, hre) => {
    if (!existsSync(args.rotation)) throw new Error(`--rotation: ${args.rotation} does not exist`);
    const r = JSON.parse(readFileSync(args.rotation, "utf8"));
    for (const field of ["newKey", "deadline", "newKeySignature"]) {
      if (!(field in r)) throw new Error(`--rotation: ${field} is missing`);
    }
    const registry = await registryAt(hre, args.registry);
    const rotation = { oldKey: "0x", oldKeySignature: "0x", ...r };
    const receipt = await (await registry.rotateKey(deviceIdArg(args.device), rotation)).wait();
    console.log(JSON.stringify({ device: args.device, newKey: r.newKey, tx: receipt!.hash }));
  });

task(
  "registry:transfer",
  "The owner sells or gives a device: the refunds of the channels it pays from go to the new owner at close",
)
  .addParam("device", "device id")
  .addParam("to", "the new owner's address")
  .addParam("signer", "index of the owner's account", 0, types.int)
  .addOptionalParam("registry", "DeviceRegistry address")
  .addOptionalParam("channels", "PaymentChannels address (to list the channels whose refunds move)")
  .setAction(
    async (args: { device: string; to: string; signer: number; registry?: string; channels?: string }, hre) => {
      if (!isAddress(args.to)) throw new Error(`--to: ${args.to} is not an address`);
      const signers = await hre.ethers.getSigners();
      if (!(args.signer >= 0 && args.signer < signers.length))
        throw new Error(`--signer: no account ${args.signer} on this network`);
      const owner = signers[args.signer];
      const id = deviceIdArg(args.device);
      const registry = (await registryAt(hre, args.registry)).connect(owner);
      const current = await registry.ownerOf(id).catch(() => null);
      if (current === null) throw new Error(`--device: no device ${args.device} in this registry`);
      if (current.toLowerCase() !== owner.address.toLowerCase())
        throw new Error(`--signer: account ${args.signer} (${owner.address}) does not own device ${args.device}`);
      // Refunds follow the payer device's owner at close (PaymentChannels): a sale hands them over.
      const moving = await openChannelsPaidBy(hre, id, args.channels);
      const receipt = await (await registry.transferFrom(owner.address, args.to, id)).wait();
      const result = {
        device: args.device,
        from: owner.address,
        to: args.to,
        tx: receipt!.hash,
        refundsMoveTo: args.to,
        channels: moving,
      };
      if (moving.length > 0)
        console.warn(
          `registry:transfer: ${moving.length} open channel(s) paid by device ${args.device} now refund ${args.to} at close: ${moving.join(", ")}`,
        );
      console.log(JSON.stringify(result));
      return result;
    },
  );

/** The open channels whose payer is `device` (none when no PaymentChannels deployment is known). */
async function openChannelsPaidBy(hre: HardhatRuntimeEnvironment, device: bigint, flag?: string): Promise<string[]> {
  // With --channels its own errors stand; without it, a deployment with no PaymentChannels has none.
  const address = flag
    ? await contractAddress(hre, "PaymentChannels", flag)
    : await contractAddress(hre, "PaymentChannels").catch(() => null);
  if (address === null) return [];
  const channels = await hre.ethers.getContractAt("PaymentChannels", address);
  const opened = await channels.queryFilter(channels.filters.ChannelOpened(undefined, device));
  const open: string[] = [];
  for (const e of opened) if ((await channels.channelState(e.args.channel)).deposit !== 0n) open.push(e.args.channel);
  return open;
}

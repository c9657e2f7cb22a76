/**
 * The DeviceRegistry tasks' actions (definitions and flags: ../registry.ts). Each checks before it
 * acts (../chain.ts: network, contract, signer and what the call needs), prints JSON (or a
 * progress bar on stderr), returns it, and fails with one line naming the flag that is wrong.
 */
import { existsSync, readFileSync } from "node:fs";
// Used row by row: straight from ethers, not through the connection's `ethers` (a lazy proxy).
import { dataLength, encodeBytes32String, getAddress, id as textHash, isAddress, isHexString, ZeroHash } from "ethers";
import type { HardhatRuntimeEnvironment } from "hardhat/types/hre";
import type { DeviceBatch, ProvisionedDevice } from "../../src/registry/batch.js";
import { deviceByKey } from "../../src/registry/lookup.js";
import { deviceIdArg, readJsonArg } from "../addresses.js";
import {
  contractAddress,
  contractAt,
  howToSignAs,
  needAccount,
  needRole,
  openChain,
  short,
  signerOf,
  taskAction,
  type Chain,
  type TaskSigner,
} from "../chain.js";
import { StagedFiles } from "../files.js";
import { inputError, required, type SignerArgs } from "../support.js";

const STATUS = ["Unknown", "Active", "Quarantined", "Revoked"];
const MANUFACTURER_ROLE = textHash("MANUFACTURER_ROLE");
const DEFAULT_ADMIN_ROLE = ZeroHash;

/** The DeviceRegistry (checked to be one), connected to `runner` when given. */
export async function registryAt(chain: Chain, flag?: string, runner?: TaskSigner) {
  const address = await contractAddress(chain, "DeviceRegistry", flag);
  return contractAt(chain, "DeviceRegistry", address, runner);
}

type Registry = Awaited<ReturnType<typeof registryAt>>;

/** Refuses a device id the registry does not know; returns its owner. */
async function ownerOfDevice(registry: Registry, id: bigint, flag = "--device"): Promise<string> {
  const [owner] = await registry.ownership(id);
  if ((await registry.deviceStatus(id)) === 0n)
    throw inputError(`${flag}: no device ${id} in the DeviceRegistry at ${short(await registry.getAddress())}`);
  return owner;
}

function progress(label: string, done: number, total: number): void {
  if (!process.stderr.isTTY && done !== total && done % Math.max(1, Math.floor(total / 10)) !== 0) return;
  const width = 30;
  const filled = Math.round((done / total) * width);
  process.stderr.write(`\r${label} [${"#".repeat(filled)}${".".repeat(width - filled)}] ${done}/${total}`);
  if (done === total) process.stderr.write("\n");
}

/**
 * Reads `deviceKey,model,firmwareHash` rows; a model that is not 32-byte hex is text (at most 31
 * bytes). Every error names the file's line (blank lines count), a repeated key both lines.
 */
export function readDevicesCsv(file: string): ProvisionedDevice[] {
  if (!existsSync(file)) throw inputError(`--csv: ${file} does not exist`);
  const lines = readFileSync(file, "utf8").split(/\r?\n/);
  const first = lines.findIndex((l) => l.trim() !== "");
  const header = first < 0 ? [] : lines[first].split(",").map((h) => h.trim());
  if (header.join(",") !== "deviceKey,model,firmwareHash") {
    throw inputError(`--csv: the first line must be "deviceKey,model,firmwareHash", not "${header.join(",")}"`);
  }
  const devices: ProvisionedDevice[] = [];
  const lineOfKey = new Map<string, number>();
  for (let i = first + 1; i < lines.length; i++) {
    if (lines[i].trim() === "") continue;
    const row = i + 1;
    const [deviceKey, model, firmwareHash, extra] = lines[i].split(",").map((c) => c.trim());
    if (extra !== undefined || firmwareHash === undefined)
      throw inputError(`--csv line ${row}: expected 3 columns (deviceKey,model,firmwareHash)`);
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
    const key = deviceKey.toLowerCase();
    const seen = lineOfKey.get(key);
    if (seen !== undefined)
      throw inputError(`--csv line ${row}: deviceKey ${short(key)} repeats line ${seen} (a key is registered once)`);
    lineOfKey.set(key, row);
    devices.push({ deviceKey: key, model: model32, firmwareHash });
  }
  return devices;
}

export const batch = taskAction(
  "registry:batch",
  async (
    args: SignerArgs & { csv?: string; out?: string; commit: boolean; registry?: string; manufacturer?: string },
    hre: HardhatRuntimeEnvironment,
  ) => {
    const csv = required(args.csv, "--csv");
    const out = required(args.out, "--out");
    if (args.manufacturer !== undefined && !isAddress(args.manufacturer))
      throw inputError(`--manufacturer: ${args.manufacturer} is not an address`);
    const devices = readDevicesCsv(csv);
    if (devices.length === 0) throw inputError(`--csv: ${csv} has no devices`);
    // What only this task needs is imported here: a task that reads starts without it.
    const { DeviceBatch, deviceIdOf } = await import("../../src/registry/batch.js");
    const build = async () => {
      const { loadKeccak } = await import("../../src/eip712/fast.js");
      await loadKeccak();
      progress("hashing", 0, devices.length);
      const built = new DeviceBatch(devices);
      progress("hashing", devices.length, devices.length);
      return built;
    };

    let tree: DeviceBatch;
    let manufacturer: string;
    let commit: (() => Promise<Record<string, unknown>>) | undefined;
    const signing = args.signer !== undefined || args.keystore !== undefined || args.signerVar !== undefined;
    if (args.commit) {
      // Everything the commit needs is checked before a file is staged.
      const chain = await openChain(hre, "registry:batch --commit", true);
      const who = await signerOf(chain, args, true);
      const registry = await registryAt(chain, args.registry, who);
      if (args.manufacturer !== undefined && getAddress(args.manufacturer) !== who.address)
        throw inputError(
          `--manufacturer: ${args.manufacturer} is not the signer, ${who.label}: the committer is the manufacturer (the batch id is its own); drop --manufacturer, or sign as it`,
        );
      manufacturer = who.address;
      await needRole(
        chain,
        who,
        registry,
        "DeviceRegistry",
        "MANUFACTURER_ROLE",
        MANUFACTURER_ROLE,
        "registry:batch --commit",
      );
      tree = await build(); // hashed once the commit is known to be allowed
      const batchId = tree.idFor(manufacturer);
      if ((await registry.batch(batchId)).status !== 0n)
        throw inputError(`--csv: this batch is committed already (batch ${batchId} of ${short(manufacturer)})`);
      const root = tree.root;
      commit = async () => {
        const receipt = (await (await registry.commitBatch(root)).wait())!;
        return {
          commitTx: receipt.hash,
          commitGas: Number(receipt.gasUsed),
          registry: await registry.getAddress(),
          chainId: chain.chainId.toString(),
        };
      };
    } else {
      if (args.manufacturer !== undefined) manufacturer = getAddress(args.manufacturer);
      else if (signing) manufacturer = (await signerOf(await openChain(hre, "registry:batch", false), args)).address;
      else
        throw inputError(
          "--manufacturer is required without --commit (the batch id is its committer's): the manufacturer's address, or --signer to name it",
        );
      tree = await build();
    }

    const batchId = tree.idFor(manufacturer).toString();
    const staged = new StagedFiles(out);
    try {
      staged.write("tree.json", JSON.stringify(tree.dump()));
      let n = 0;
      await staged.writeLines(
        "proofs.jsonl",
        (function* () {
          for (let i = 0; i < devices.length; i++) {
            const d = devices[i];
            yield JSON.stringify({
              ...d,
              deviceId: deviceIdOf(d.deviceKey).toString(),
              batchId,
              proof: tree.proofAt(i),
            });
            if (++n % 1000 === 0 || n === devices.length) progress("proofs ", n, devices.length);
          }
        })(),
      );
      const summary: Record<string, unknown> = { root: tree.root, manufacturer, batchId, devices: devices.length };
      if (commit) Object.assign(summary, await commit());
      staged.write("batch.json", JSON.stringify(summary, null, 2) + "\n");
      staged.publish();
      console.log(JSON.stringify(summary));
      return summary;
    } catch (err) {
      staged.discard();
      throw err;
    }
  },
);

export const claim = taskAction(
  "registry:claim",
  async (args: SignerArgs & { message?: string; registry?: string }, hre: HardhatRuntimeEnvironment) => {
    const file = required(args.message, "--message");
    const json = readJsonArg(file, "--message");
    const { checkShape, encodeCall } = await import("../../src/messages/index.js");
    const { deviceIdOf } = await import("../../src/registry/batch.js");
    let m;
    try {
      m = checkShape(json);
    } catch (err) {
      throw inputError(`--message: ${file}: ${(err as Error).message}`);
    }
    if (m.type !== "DeviceClaim") throw inputError(`--message: expected a DeviceClaim, got ${m.type}`);
    const chain = await openChain(hre, "registry:claim", true);
    const who = await signerOf(chain, args, true);
    const registry = await registryAt(chain, args.registry, who);
    const taken = await deviceByKey(registry, m.key);
    if (taken.id !== 0n)
      throw inputError(
        `--message: key ${short(m.key)} is registered already (device ${taken.id}, owner ${taken.owner})`,
      );
    const receipt = (await (
      await who.signer.sendTransaction({ to: await registry.getAddress(), data: encodeCall(m).data })
    ).wait())!;
    const result = { deviceId: deviceIdOf(m.key).toString(), owner: String(m.message.owner), tx: receipt.hash };
    console.log(JSON.stringify(result));
    return result;
  },
);

export const status = taskAction(
  "registry:status",
  async (
    args: { device?: string; key?: string; registry?: string; watch?: string },
    hre: HardhatRuntimeEnvironment,
  ) => {
    if (!args.device === !args.key) throw inputError("give exactly one of --device and --key");
    if (args.key !== undefined && (!isHexString(args.key) || dataLength(args.key) < 20))
      throw inputError(`--key: ${args.key} is not a device key (hex bytes: an address or a P-256 signer)`);
    const device = args.device === undefined ? undefined : deviceIdArg(args.device);
    const chain = await openChain(hre, "registry:status", false);
    const registry = await registryAt(chain, args.registry);
    const at = `the DeviceRegistry at ${short(await registry.getAddress())}`;
    let id = device;
    if (id === undefined) {
      id = (await deviceByKey(registry, args.key!)).id;
      if (id === 0n)
        throw inputError(`--key: ${short(args.key!)} is not registered in ${at} (never claimed, or rotated away)`);
    }
    const info = await registry.deviceInfo(id);
    if (info.id === 0n) throw inputError(`--device: no device ${id} in ${at}`);
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
    if (args.watch === undefined) {
      console.log(JSON.stringify(result));
      return result;
    }
    // What only --watch needs is imported here: the plain task starts without it.
    const { deviceHistory, watchClient } = await import("./watchIndex.js");
    const history = await deviceHistory(watchClient(args.watch), registry, id, Number(info.keyGeneration));
    const withHistory = { ...result, history };
    console.log(JSON.stringify(withHistory));
    if (!history.allConfirmed) {
      console.error(`${history.source} disagrees with the chain: ${history.problems.join("; ")}`);
      process.exitCode = 1;
    }
    return withHistory;
  },
);

/** An owner's one-call status change: `reportStolen`, `release` or `decommission`. */
function ownerCall(task: string, fn: "reportStolen" | "release" | "decommission") {
  return taskAction(
    task,
    async (args: SignerArgs & { device?: string; registry?: string }, hre: HardhatRuntimeEnvironment) => {
      const id = deviceIdArg(required(args.device, "--device"));
      const chain = await openChain(hre, task, true);
      const who = await signerOf(chain, args, true);
      const registry = await registryAt(chain, args.registry, who);
      await needAccount(chain, who, await ownerOfDevice(registry, id), `${task} needs device ${id}'s owner`);
      const receipt = (await (await registry[fn](id)).wait())!;
      const result = {
        device: id.toString(),
        status: STATUS[Number(await registry.deviceStatus(id))],
        tx: receipt.hash,
      };
      console.log(JSON.stringify(result));
      return result;
    },
  );
}

export const reportStolen = ownerCall("registry:report-stolen", "reportStolen");
export const release = ownerCall("registry:release", "release");
export const decommission = ownerCall("registry:decommission", "decommission");

function batchIdArg(value: string): bigint {
  if (!/^(0x[0-9a-fA-F]+|[0-9]+)$/.test(value) || BigInt(value) === 0n || BigInt(value) >= 1n << 48n)
    throw inputError(`--batch: ${value} is not a batch id`);
  return BigInt(value);
}

export const recall = taskAction(
  "registry:recall",
  async (
    args: SignerArgs & { device?: string; batch?: string; reason: string; registry?: string },
    hre: HardhatRuntimeEnvironment,
  ) => {
    if (!args.device === !args.batch) throw inputError("give exactly one of --device and --batch");
    let reason: string;
    try {
      reason = encodeBytes32String(args.reason);
    } catch {
      throw inputError(`--reason: "${args.reason}" is longer than 31 bytes`);
    }
    const device = args.device === undefined ? undefined : deviceIdArg(args.device);
    const chain = await openChain(hre, "registry:recall", true);
    const who = await signerOf(chain, args, true);
    const registry = await registryAt(chain, args.registry, who);
    let batchId: bigint;
    if (device !== undefined) {
      await ownerOfDevice(registry, device);
      batchId = (await registry.deviceInfo(device)).batchId;
    } else batchId = batchIdArg(args.batch!);
    const b = await registry.batch(batchId);
    if (b.status === 0n) throw inputError(`--batch: no batch ${batchId} in this registry`);
    // The batch's manufacturer (still holding the role), or the admin (the timelock, in a deployment).
    const isManufacturer =
      b.manufacturer.toLowerCase() === who.address.toLowerCase() &&
      (await registry.hasRole(MANUFACTURER_ROLE, who.address));
    if (!isManufacturer && !(await registry.hasRole(DEFAULT_ADMIN_ROLE, who.address)))
      throw inputError(
        `registry:recall needs batch ${batchId}'s manufacturer (or the admin): ${who.label} is neither; ${await howToSignAs(chain, b.manufacturer, "the manufacturer")}`,
      );
    const tx =
      device !== undefined ? await registry.recall(device, reason) : await registry.revokeBatch(batchId, reason);
    const receipt = (await tx.wait())!;
    const result = { device: args.device, batch: args.batch, tx: receipt.hash };
    console.log(JSON.stringify(result));
    return result;
  },
);

export const rotate = taskAction(
  "registry:rotate",
  async (
    args: SignerArgs & { device?: string; rotation?: string; registry?: string },
    hre: HardhatRuntimeEnvironment,
  ) => {
    const file = required(args.rotation, "--rotation");
    if (!existsSync(file)) throw inputError(`--rotation: ${file} does not exist`);
    const { parseRotationText, RotationFileError, rotationStruct } = await import("../../src/registry/rotation.js");
    let r;
    try {
      r = parseRotationText(readFileSync(file, "utf8"), file);
    } catch (err) {
      if (err instanceof RotationFileError) throw inputError(`--rotation: ${file}: ${err.message}`);
      throw err;
    }
    if (args.device !== undefined && deviceIdArg(args.device) !== r.device)
      throw inputError(`--device: ${args.device} is not the device ${file} rotates (${r.device})`);
    const chain = await openChain(hre, "registry:rotate", true);
    if (r.chainId !== chain.chainId)
      throw inputError(
        `--rotation: ${file} was signed for chain ${r.chainId}; network ${chain.network} is chain ${chain.chainId}`,
      );
    const who = await signerOf(chain, args, true);
    const registry = await registryAt(chain, args.registry, who);
    const address = await registry.getAddress();
    if (r.registry !== address)
      throw inputError(`--rotation: ${file} was signed for the registry at ${r.registry}, not this one (${address})`);
    await needAccount(
      chain,
      who,
      await ownerOfDevice(registry, r.device),
      `registry:rotate needs device ${r.device}'s owner`,
    );
    const nonce = await registry.deviceNonce(r.device);
    if (nonce !== r.nonce)
      throw inputError(
        `--rotation: ${file} was signed at device nonce ${r.nonce}; the device is at ${nonce} now: sign the rotation again (custos-agent key rotate)`,
      );
    const now = (await chain.provider.getBlock("latest"))!.timestamp;
    if (BigInt(now) > r.deadline)
      throw inputError(
        `--rotation: ${file} expired at ${new Date(Number(r.deadline) * 1000).toISOString()}: sign the rotation again (custos-agent key rotate)`,
      );
    const receipt = (await (await registry.rotateKey(r.device, rotationStruct(r))).wait())!;
    const result = {
      device: r.device.toString(),
      newKey: r.newKey,
      keyAttested: r.oldKey !== "0x",
      keyGeneration: Number((await registry.deviceInfo(r.device)).keyGeneration),
      tx: receipt.hash,
    };
    console.log(JSON.stringify(result));
    return result;
  },
);

export const transfer = taskAction(
  "registry:transfer",
  async (
    args: SignerArgs & { device?: string; to?: string; registry?: string; channels?: string },
    hre: HardhatRuntimeEnvironment,
  ) => {
    const id = deviceIdArg(required(args.device, "--device"));
    const to = required(args.to, "--to");
    if (!isAddress(to)) throw inputError(`--to: ${to} is not an address`);
    const chain = await openChain(hre, "registry:transfer", true);
    const owner = await signerOf(chain, args, true);
    const registry = await registryAt(chain, args.registry, owner);
    await needAccount(chain, owner, await ownerOfDevice(registry, id), `registry:transfer needs device ${id}'s owner`);
    // Refunds follow the payer device's owner at close (PaymentChannels): a sale hands them over.
    const moving = await openChannelsPaidBy(chain, id, args.channels);
    const receipt = (await (await registry.transferFrom(owner.address, to, id)).wait())!;
    const result = {
      device: id.toString(),
      from: owner.address,
      to: getAddress(to),
      tx: receipt.hash,
      refundsMoveTo: getAddress(to),
      channels: moving,
    };
    if (moving.length > 0)
      console.warn(
        `registry:transfer: ${moving.length} open channel(s) paid by device ${id} now refund ${to} at close: ${moving.join(", ")}`,
      );
    console.log(JSON.stringify(result));
    return result;
  },
);

/** The open channels whose payer is `device` (none when no PaymentChannels deployment is known). */
async function openChannelsPaidBy(chain: Chain, device: bigint, flag?: string): Promise<string[]> {
  // With --channels its own errors stand; without it, a deployment with no PaymentChannels has none.
  const address = flag
    ? await contractAddress(chain, "PaymentChannels", flag)
    : await contractAddress(chain, "PaymentChannels").catch(() => null);
  if (address === null) return [];
  const channels = await contractAt(chain, "PaymentChannels", address);
  const opened = await channels.queryFilter(channels.filters.ChannelOpened(undefined, device));
  const open: string[] = [];
  for (const e of opened) if ((await channels.channelState(e.args.channel)).deposit !== 0n) open.push(e.args.channel);
  return open;
}

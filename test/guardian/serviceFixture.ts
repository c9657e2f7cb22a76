/**
 * The guardian service's tests' world: a real node (`hardhat node`, or anvil with CUSTOS_NODE=anvil)
 * with the suite deployed for three guardians and a quorum of two, a claimed fleet, a real Ponder
 * index of it, policy files on disk, and one-second blocks while the guardians run.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import {
  Wallet,
  id as textHash,
  keccak256,
  parseEther,
  toUtf8Bytes,
  type JsonRpcProvider,
  type JsonRpcSigner,
} from "ethers";
import { startNode, freePort, type HardhatNode } from "../helpers/node.js";
import { rpcProvider, signAttestation, simulateFleet, type SimFleet } from "../../src/relayer/fleet.js";
import { encodeCall } from "../../src/messages/index.js";
import { startIndexer, type Indexer } from "../../src/watch/indexer/start.js";
import { DEFAULT_POLICY, type Policy } from "../../src/guardian/policy/index.js";
import { GuardianQuorum__factory, type GuardianQuorum } from "../../typechain-types/index.js";

/** The firmware image the misbehaving devices run (their manufacturer revokes it). */
export const BAD_FIRMWARE = textHash("firmware 0.9.0 (recalled)");

export interface GuardianWorld {
  node: HardhatNode;
  provider: JsonRpcProvider;
  admin: JsonRpcSigner;
  fleet: SimFleet;
  quorum: GuardianQuorum;
  /** Three funded guardian keys, each holding GUARDIAN_ROLE. */
  guardians: Wallet[];
  indexer: Indexer;
}

const dirs: string[] = [];

export function tempDir(prefix = "custos-guardian-"): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  dirs.push(dir);
  return dir;
}

export function removeTempDirs(): void {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
}

/** The policy the honest guardians run: the default one, a revoked image tolerated for no time at all. */
export const STRICT_FIRMWARE: Policy = {
  ...DEFAULT_POLICY,
  name: "test-firmware-now",
  rules: { ...DEFAULT_POLICY.rules, revokedFirmware: { enabled: true, graceSeconds: 0 } },
};

/** A wrong policy: any device silent for more than a second is "silent" (every honest device is). */
export const OVER_STRICT: Policy = {
  ...STRICT_FIRMWARE,
  name: "test-over-strict",
  rules: { ...STRICT_FIRMWARE.rules, silent: { enabled: true, heartbeatSeconds: 1, graceFactor: 1 } },
};

export function writePolicy(file: string, policy: Policy): string {
  writeFileSync(file, JSON.stringify(policy, null, 2) + "\n");
  return file;
}

/** Node, suite (three guardians, quorum two), `devices` claimed devices, and the index following it. */
export async function guardianWorld(devices: number): Promise<GuardianWorld> {
  const node = await startNode();
  await automine(node);
  const provider = rpcProvider(node.url);
  const admin = await provider.getSigner(0);
  const owner = await provider.getSigner(1);
  const guardians = [0, 1, 2].map(() => new Wallet(Wallet.createRandom().privateKey, provider));
  for (const g of guardians) await (await admin.sendTransaction({ to: g.address, value: parseEther("10") })).wait();
  const fleet = await simulateFleet({
    provider,
    admin,
    owner,
    devices,
    guardians: guardians.map((g) => g.address),
    guardianQuorum: 2,
  });
  const indexer = await startIndexer({
    rpcUrl: node.url,
    chainId: 31337,
    addresses: fleet.addresses,
    port: await freePort(),
    dataDir: tempDir("custos-guardian-index-"),
    schema: `guardian_${Date.now()}`,
    pollingInterval: 100,
  });
  await indexer.waitForBlock(await provider.getBlockNumber());
  return {
    node,
    provider,
    admin,
    fleet,
    quorum: GuardianQuorum__factory.connect(fleet.addresses.guardianQuorum, provider),
    guardians,
    indexer,
  };
}

/** Device `i` attests `firmware` (signed by its key, sent by the admin). */
export async function attest(w: GuardianWorld, i: number, firmware: string): Promise<void> {
  const d = w.fleet.devices[i];
  const nonce = await w.fleet.registry.deviceNonce(d.id);
  const head = await w.provider.getBlock("latest");
  const m = signAttestation(w.fleet.hasher, d, w.fleet.deployment, nonce, BigInt(head!.timestamp + 3600), firmware);
  const { data } = encodeCall(m);
  await (await w.admin.sendTransaction({ to: w.fleet.addresses.registry, data })).wait();
}

/** The manufacturer (the admin) revokes `firmware`; returns the block it landed in. */
export async function revokeFirmware(w: GuardianWorld, firmware: string): Promise<number> {
  const receipt = await (await w.fleet.registry.connect(w.admin).revokeFirmware(firmware)).wait();
  return receipt!.blockNumber;
}

/** A block every second from now on (automine off): Hardhat's interval is in ms, anvil's in s. */
export async function oneSecondBlocks(node: HardhatNode): Promise<void> {
  await node.send("evm_setAutomine", [false]);
  await node.send("evm_setIntervalMining", [node.kind === "hardhat" ? 1000 : 1]);
}

export async function automine(node: HardhatNode): Promise<void> {
  await node.send("evm_setIntervalMining", [0]);
  await node.send("evm_setAutomine", [true]);
}

/** The block of the first `event` (GuardianFlagged, GuardianCleared) of `device` at or after `fromBlock`. */
export async function waitForRegistryEvent(
  w: GuardianWorld,
  event: "GuardianFlagged" | "GuardianCleared",
  device: bigint,
  fromBlock: number,
  timeoutMs = 30_000,
): Promise<number> {
  const registry = w.fleet.registry;
  const until = Date.now() + timeoutMs;
  for (;;) {
    const logs = await registry.queryFilter(registry.filters[event](device), fromBlock, "latest");
    if (logs.length > 0) return logs[0].blockNumber;
    if (Date.now() > until) throw new Error(`no ${event} of device ${device} within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Every GuardianVoted of `guardian` (optionally for one device) since `fromBlock`. */
export async function votesOf(w: GuardianWorld, guardian: string, device?: bigint, fromBlock = 0) {
  const logs = await w.quorum.queryFilter(w.quorum.filters.GuardianVoted(device, guardian), fromBlock, "latest");
  return logs.map((l) => ({
    device: l.args.deviceId,
    flag: l.args.flag,
    round: Number(l.args.round),
    reason: l.args.reason,
    block: l.blockNumber,
    txHash: l.transactionHash,
  }));
}

export async function waitFor(cond: () => Promise<boolean>, timeoutMs = 30_000, what = "condition"): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** keccak256 of a UTF-8 body: what an auditor compares with a vote's reason. */
export const hashOf = (body: string) => keccak256(toUtf8Bytes(body));

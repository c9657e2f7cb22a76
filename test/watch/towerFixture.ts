/**
 * The watchtower's tests' chain: a real node (`hardhat node`, or anvil with CUSTOS_NODE=anvil), the
 * suite deployed on it with two claimed devices (`simulateFleet`), and one-second blocks while the
 * tower runs — the rhythm in which "the first block after the condition holds" means something.
 * Setup runs with automine (fast); `oneSecondBlocks` switches to a block a second.
 */
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { Wallet, ZeroHash, parseEther, type JsonRpcProvider, type JsonRpcSigner, type Log } from "ethers";
import { startNode, type HardhatNode } from "../helpers/node.js";
import { rpcProvider, simulateFleet, type SimFleet } from "../../src/relayer/fleet.js";
import { CustodyLedger__factory, PaymentChannels__factory } from "../../typechain-types/index.js";
import type { CustodyLedger, PaymentChannels } from "../../typechain-types/index.js";

export interface TowerChain {
  node: HardhatNode;
  provider: JsonRpcProvider;
  fleet: SimFleet;
  admin: JsonRpcSigner;
  owner: JsonRpcSigner;
  ledger: CustodyLedger;
  channels: PaymentChannels;
  /** A fresh funded account for the tower. */
  towerKey: Wallet;
}

const dirs: string[] = [];

export function tempDir(prefix = "custos-tower-"): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  dirs.push(dir);
  return dir;
}

export function removeTempDirs(): void {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
}

/** Starts a node, mining each transaction as it arrives, and deploys the suite on it. */
export async function towerChain(): Promise<TowerChain> {
  const node = await startNode();
  await node.send("evm_setIntervalMining", [0]);
  await node.send("evm_setAutomine", [true]);
  const provider = rpcProvider(node.url);
  const admin = await provider.getSigner(0);
  const owner = await provider.getSigner(1);
  const fleet = await simulateFleet({ provider, admin, owner, devices: 2 });
  const towerKey = new Wallet(Wallet.createRandom().privateKey, provider);
  await (await admin.sendTransaction({ to: towerKey.address, value: parseEther("10") })).wait();
  return {
    node,
    provider,
    fleet,
    admin,
    owner,
    ledger: CustodyLedger__factory.connect(fleet.addresses.custodyLedger, owner),
    channels: PaymentChannels__factory.connect(fleet.addresses.paymentChannels, owner),
    towerKey,
  };
}

/** A block every second from now on (automine off): Hardhat's interval is in ms, anvil's in s. */
export async function oneSecondBlocks(node: HardhatNode): Promise<void> {
  await node.send("evm_setAutomine", [false]);
  await node.send("evm_setIntervalMining", [node.kind === "hardhat" ? 1000 : 1]);
}

/** Back to a block per transaction. */
export async function automine(node: HardhatNode): Promise<void> {
  await node.send("evm_setIntervalMining", [0]);
  await node.send("evm_setAutomine", [true]);
}

let epcs = 0;

/**
 * Creates a shipment of `owner`'s, tracked by device 0, received by `receiver` (default: the admin);
 * `deadlineIn` and `maxSilence` in seconds from the head's time. Waits for it to be mined.
 */
export async function createShipment(
  c: TowerChain,
  opts: { deadlineIn: number; maxSilence: number; receiver?: string },
): Promise<{ id: string; deadline: bigint; createdIn: number }> {
  const head = await c.provider.getBlock("latest");
  const epc = `urn:epc:id:sscc:0614141.${Date.now()}${epcs++}`;
  const deadline = BigInt(head!.timestamp + opts.deadlineIn);
  const tx = await c.ledger.createShipment({
    epc,
    tracker: c.fleet.devices[0].id,
    receiver: opts.receiver ?? (await c.admin.getAddress()),
    deadline,
    maxSilence: opts.maxSilence,
    minTemp: 200,
    maxTemp: 800,
    metadataHash: ZeroHash,
    childrenRoot: ZeroHash,
    acceptOwnerKeys: false,
  });
  const receipt = await tx.wait();
  const id = await c.ledger.shipmentIdOf(await c.owner.getAddress(), epc);
  return { id: id.toLowerCase(), deadline, createdIn: receipt!.blockNumber };
}

/** The logs of `event` for `shipment`, waiting up to `timeoutMs` for at least one. */
export async function waitForEvent(
  c: TowerChain,
  event: "MarkedOverdue" | "MarkedSilent",
  shipment: string,
  timeoutMs = 30_000,
): Promise<Log> {
  const topic = c.ledger.interface.getEvent(event).topicHash;
  const until = Date.now() + timeoutMs;
  for (;;) {
    const logs = await c.provider.getLogs({
      address: c.fleet.addresses.custodyLedger,
      topics: [topic, shipment],
      fromBlock: 0,
      toBlock: "latest",
    });
    if (logs.length > 0) return logs[0];
    if (Date.now() > until) throw new Error(`no ${event} for ${shipment} within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * The first block after `from` whose timestamp is greater than `limit` (the contract's strict
 * `block.timestamp > limit`), and the timestamp of the block before it.
 */
export async function firstBlockPast(
  c: TowerChain,
  limit: bigint,
  from: number,
): Promise<{ number: number; previousTimestamp: bigint }> {
  let previous = BigInt((await c.provider.getBlock(from))!.timestamp);
  for (let n = from + 1; ; n++) {
    const b = await c.provider.getBlock(n);
    if (!b) throw new Error(`no block past ${limit} after block ${from}`);
    if (BigInt(b.timestamp) > limit) return { number: n, previousTimestamp: previous };
    previous = BigInt(b.timestamp);
  }
}

/**
 * The block the tower's call must land in, by the rule of `src/watch/tower/rules.ts`: it sends as
 * soon as the head's timestamp reaches the limit, so its call lands in the next block. When a
 * block has exactly the limit's timestamp, that next block is the first one past the limit (F);
 * when the chain skipped from below the limit to above it, the first block past the limit is the
 * first head the tower sees at or past the limit, and its call lands in the block after (F + 1).
 */
export function expectedBlock(first: { number: number; previousTimestamp: bigint }, limit: bigint): number {
  return first.previousTimestamp === limit ? first.number : first.number + 1;
}

export { ZeroHash };

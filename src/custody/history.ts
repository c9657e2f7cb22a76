/**
 * A shipment's full history rebuilt from the chain: its creation (and, for a child split off a
 * pallet, the pallet's history before the split), every handoff and checkpoint with its signatures
 * re-verified off chain (read from the transactions that carried them) by the chain's own rules,
 * breaches, flags and delivery; and its export as a GS1 EPCIS 2.0 JSON-LD document.
 *
 * The rules are the ledger's: a handoff signature as OpenZeppelin SignatureChecker judges it (low s,
 * v 27/28, 65 bytes; ERC-1271 for a contract custodian, asked now: contract signatures are
 * revocable); a checkpoint by the tracker key generation the shipment pinned, dated no later than
 * the end of its pinned trust period (registry `keyTrustedUntil`).
 */
import { TypedDataEncoder, type EventLog, type Provider, type Result } from "ethers";
import { domainOf, typesOf, type Deployment } from "../eip712/index.js";
import { DeviceSignatureVerifier } from "../crypto/verify.js";
import { isValidAccountSignature } from "../crypto/signatureChecker.js";
import { hexToBytes } from "../eip712/fast.js";
import { CustodyLedger__factory } from "../../typechain-types/factories/contracts/custody/CustodyLedger__factory.js";
import type { CustodyLedger } from "../../typechain-types/contracts/custody/CustodyLedger.js";
import { DeviceRegistry__factory } from "../../typechain-types/factories/contracts/registry/DeviceRegistry__factory.js";
import { cbvName } from "./index.js";

export type Verified = true | false | "not in calldata";

export type HistoryEntry = { block: number; logIndex: number; time: number; txHash: string; shipment: string } & (
  | {
      kind: "created";
      epc: string;
      creator: string;
      tracker: string;
      receiver: string;
      deadline: number;
      maxSilence: number;
      minTemp: number;
      maxTemp: number;
      metadataHash: string;
      childrenRoot: string;
    }
  | { kind: "split"; pallet: string; child: string }
  | {
      kind: "handoff";
      seq: number;
      from: string;
      to: string;
      bizStep: string;
      disposition: string;
      readPoint: string;
      at: number;
      signatures: { from: Verified; to: Verified };
    }
  | {
      kind: "checkpoint";
      seq: number;
      readingsRoot: string;
      count: number;
      minTemp: number;
      maxTemp: number;
      location: string;
      at: number;
      key?: string;
      signature: Verified;
    }
  | { kind: "breached"; checkpointSeq: number; temp: number; at: number }
  | { kind: "contradicted"; device: string; checkpointSeq: number; temp: number }
  | { kind: "overdue"; deadline: number }
  | { kind: "silent"; lastCheckpointAt: number }
  | { kind: "delivered"; receiver: string }
);

export interface ShipmentHistory {
  shipment: string;
  epc: string;
  /** The pallet it was split from, if any (whose entries before the split are included). */
  parent?: string;
  entries: HistoryEntry[];
  /** Every signature found re-verified. */
  allVerified: boolean;
}

/** Rebuilds the history of `shipment` from the ledger at `ledgerAddress`. */
export async function shipmentHistory(
  provider: Provider,
  ledgerAddress: string,
  shipment: string,
  opts: HistorySource = {},
): Promise<ShipmentHistory> {
  const ledger = CustodyLedger__factory.connect(ledgerAddress, provider);
  const { chainId } = await provider.getNetwork();
  const deployment: Deployment = { chainId, verifyingContract: ledgerAddress };
  const registry = DeviceRegistry__factory.connect(await ledger.registry(), provider);
  const id = shipment.toLowerCase();
  const events = opts.txHashes
    ? await ledgerEventsIn(provider, ledgerAddress, opts.txHashes)
    : await ledgerEventsOf(ledger, id, opts.fromBlock ?? 0);
  const named = (name: string, field: string) =>
    events.filter((e) => e.name === name && String(e.args[field]).toLowerCase() === id);
  const [created] = named("ShipmentCreated", "shipment");
  if (!created) throw new Error(`--shipment: no shipment ${shipment} on this ledger`);
  const [split] = named("ChildSplit", "child");
  const entries: HistoryEntry[] = [];
  let parent: string | undefined;
  if (split) {
    parent = String(split.args.pallet);
    const before = await shipmentHistory(provider, ledgerAddress, parent, opts);
    entries.push(
      ...before.entries.filter(
        (e) => e.block < split.blockNumber || (e.block === split.blockNumber && e.logIndex < split.index),
      ),
    );
  }
  const times = new Map<number, number>();
  const timeOf = async (block: number) => {
    if (!times.has(block)) times.set(block, (await provider.getBlock(block))!.timestamp);
    return times.get(block)!;
  };
  const base = async (e: { blockNumber: number; index: number; transactionHash: string }) => ({
    block: e.blockNumber,
    logIndex: e.index,
    time: await timeOf(e.blockNumber),
    txHash: e.transactionHash,
    shipment: id,
  });
  const iface = ledger.interface;
  const callOf = async (txHash: string, fn: string) => {
    const tx = await provider.getTransaction(txHash);
    if (!tx || tx.to?.toLowerCase() !== ledgerAddress.toLowerCase()) return undefined;
    const parsed = iface.parseTransaction({ data: tx.data });
    return parsed?.name === fn ? parsed : undefined;
  };
  const secpVerifier = new DeviceSignatureVerifier([]);
  const verifyAccount = (account: string, digest: string, signature: string) =>
    isValidAccountSignature(provider, account, digest, signature);

  const c = created.args;
  entries.push({
    ...(await base(created)),
    kind: "created",
    epc: c.epc,
    creator: c.creator,
    tracker: c.tracker.toString(),
    receiver: c.receiver,
    deadline: Number(c.deadline),
    maxSilence: Number(c.maxSilence),
    minTemp: Number(c.minTemp),
    maxTemp: Number(c.maxTemp),
    metadataHash: c.metadataHash,
    childrenRoot: c.childrenRoot,
  });
  if (split) entries.push({ ...(await base(split)), kind: "split", pallet: split.args.pallet, child: id });

  for (const e of named("HandedOff", "shipment")) {
    const a = e.args.toObject();
    const call = await callOf(e.transactionHash, "handoff");
    let signatures: { from: Verified; to: Verified } = { from: "not in calldata", to: "not in calldata" };
    if (call) {
      // toObject: a Result is an Array, whose `at` is a method, not the field.
      const h = (call.args[0] as Result).toObject();
      const message = {
        shipment: h.shipment,
        from: h.from,
        to: h.to,
        seq: h.seq,
        bizStep: h.bizStep,
        disposition: h.disposition,
        readPoint: h.readPoint,
        at: h.at,
        deadline: h.deadline,
      };
      const digest = TypedDataEncoder.hash(domainOf("custody", deployment), typesOf("Handoff"), message);
      // The chain emits what the calldata says: a record where they differ is not the chain's.
      const same =
        String(h.shipment).toLowerCase() === id &&
        h.from === a.from &&
        h.to === a.to &&
        h.seq === a.seq &&
        h.bizStep === a.bizStep &&
        h.disposition === a.disposition &&
        h.readPoint === a.readPoint &&
        h.at === a.at;
      signatures = same
        ? {
            from: await verifyAccount(a.from, digest, call.args[1]),
            to: await verifyAccount(a.to, digest, call.args[2]),
          }
        : { from: false, to: false };
    }
    entries.push({
      ...(await base(e)),
      kind: "handoff",
      seq: Number(a.seq),
      from: a.from,
      to: a.to,
      bizStep: cbvName(a.bizStep),
      disposition: cbvName(a.disposition),
      readPoint: a.readPoint,
      at: Number(a.at),
      signatures,
    });
  }
  const tracker = BigInt(c.tracker);
  // The tracker key generation and trust period the shipment pinned at creation (a child: its pallet's).
  const pinned = await ledger.shipmentOf(id);
  for (const e of named("CheckpointPosted", "shipment")) {
    const a = e.args.toObject();
    const call = await callOf(e.transactionHash, "checkpoint");
    let signature: Verified = "not in calldata";
    let key: string | undefined;
    if (call) {
      const cp = (call.args[0] as Result).toObject();
      key = (call.args[1] as string).toLowerCase();
      const message = {
        shipment: cp.shipment,
        seq: cp.seq,
        readingsRoot: cp.readingsRoot,
        count: cp.count,
        minTemp: cp.minTemp,
        maxTemp: cp.maxTemp,
        location: cp.location,
        at: cp.at,
      };
      const digest = TypedDataEncoder.hash(domainOf("custody", deployment), typesOf("Checkpoint"), message);
      // A P-256 key is judged only behind a verifier the registry allows.
      const v =
        key.length > 42 && (await registry.isKeyVerifier(key.slice(0, 42)))
          ? new DeviceSignatureVerifier([key.slice(0, 42)])
          : secpVerifier;
      const [device, generation, until] = await registry.keyTrustedUntil(key, pinned.trackerPeriod);
      const pinnedKey = device === tracker && generation === pinned.trackerKeyGeneration && BigInt(cp.at) <= until;
      signature = pinnedKey && v.verify(key, hexToBytes(digest), hexToBytes(call.args[2] as string));
    }
    entries.push({
      ...(await base(e)),
      kind: "checkpoint",
      seq: Number(a.seq),
      readingsRoot: a.readingsRoot,
      count: Number(a.count),
      minTemp: Number(a.minTemp),
      maxTemp: Number(a.maxTemp),
      location: a.location,
      at: Number(a.at),
      ...(key ? { key } : {}),
      signature,
    });
  }
  for (const e of named("Breached", "shipment"))
    entries.push({
      ...(await base(e)),
      kind: "breached",
      checkpointSeq: Number(e.args.checkpointSeq),
      temp: Number(e.args.temp),
      at: Number(e.args.toObject().at),
    });
  for (const e of named("DeviceContradicted", "shipment"))
    entries.push({
      ...(await base(e)),
      kind: "contradicted",
      device: e.args.device.toString(),
      checkpointSeq: Number(e.args.checkpointSeq),
      temp: Number(e.args.temp),
    });
  for (const e of named("MarkedOverdue", "shipment"))
    entries.push({ ...(await base(e)), kind: "overdue", deadline: Number(e.args.deadline) });
  for (const e of named("MarkedSilent", "shipment"))
    entries.push({ ...(await base(e)), kind: "silent", lastCheckpointAt: Number(e.args.lastCheckpointAt) });
  for (const e of named("Delivered", "shipment"))
    entries.push({ ...(await base(e)), kind: "delivered", receiver: e.args.receiver });

  entries.sort((a, b) => a.block - b.block || a.logIndex - b.logIndex);
  if (opts.txHashes) await checkComplete(ledger, id, entries, opts.sourceName ?? "the index");
  const allVerified = entries.every(
    (e) =>
      (e.kind !== "handoff" || (e.signatures.from === true && e.signatures.to === true)) &&
      (e.kind !== "checkpoint" || e.signature === true),
  );
  return { shipment: id, epc: c.epc, ...(parent ? { parent } : {}), entries, allVerified };
}

/** Where a history's events come from: the chain's logs (from `fromBlock`), or the transactions an index named. */
export interface HistorySource {
  fromBlock?: number;
  /**
   * The transactions that carry the shipment's events (and, for a child, its pallet's), as an index
   * such as the watch lists them. Their receipts are read from the chain and only the ledger's logs
   * in them count; the history is then checked complete against the ledger's own counters, so an
   * index can make a history slower or refuse it, never shorter or different.
   */
  txHashes?: string[];
  /** How errors name that index, e.g. "the watch at http://…". */
  sourceName?: string;
}

interface LedgerEvent {
  name: string;
  args: Result;
  blockNumber: number;
  index: number;
  transactionHash: string;
}

/** The ledger's events about `id` (as shipment or as child), from the chain's logs. */
async function ledgerEventsOf(ledger: CustodyLedger, id: string, fromBlock: number): Promise<LedgerEvent[]> {
  const f = ledger.filters;
  const queries = [
    f.ShipmentCreated(id),
    f.ChildSplit(undefined, id),
    f.HandedOff(id),
    f.CheckpointPosted(id),
    f.Breached(id),
    f.DeviceContradicted(undefined, id),
    f.MarkedOverdue(id),
    f.MarkedSilent(id),
    f.Delivered(id),
  ];
  const logs = (await Promise.all(queries.map((q) => ledger.queryFilter(q, fromBlock)))).flat();
  return logs.map((e) => ({
    name: (e as unknown as EventLog).eventName,
    args: (e as unknown as EventLog).args,
    blockNumber: e.blockNumber,
    index: e.index,
    transactionHash: e.transactionHash,
  }));
}

/** The ledger's events in the receipts of `txHashes`, read from the chain (a hash it does not know is an error). */
async function ledgerEventsIn(provider: Provider, ledgerAddress: string, txHashes: string[]): Promise<LedgerEvent[]> {
  const iface = CustodyLedger__factory.createInterface();
  const out: LedgerEvent[] = [];
  for (const hash of [...new Set(txHashes.map((h) => h.toLowerCase()))]) {
    const receipt = await provider.getTransactionReceipt(hash);
    if (!receipt) throw new Error(`the index names transaction ${hash}, which this chain does not have`);
    for (const log of receipt.logs) {
      if (log.address.toLowerCase() !== ledgerAddress.toLowerCase()) continue;
      const parsed = iface.parseLog(log);
      if (parsed)
        out.push({
          name: parsed.name,
          args: parsed.args,
          blockNumber: log.blockNumber,
          index: log.index,
          transactionHash: log.transactionHash,
        });
    }
  }
  return out;
}

/** An index-sourced history must have every handoff and checkpoint the ledger counted, and its marks. */
async function checkComplete(ledger: CustodyLedger, id: string, entries: HistoryEntry[], source: string) {
  const v = await ledger.shipmentOf(id);
  const seqs = (kind: "handoff" | "checkpoint") =>
    new Set(entries.flatMap((e) => (e.kind === kind && e.shipment === id ? [e.seq] : [])));
  const gaps: string[] = [];
  const handoffs = seqs("handoff");
  const palletHandoffs = entries.filter((e) => e.kind === "handoff" && e.shipment !== id).length;
  if (handoffs.size + palletHandoffs < Number(v.handoffSeq))
    gaps.push(`handoffs: ${handoffs.size + palletHandoffs} of ${v.handoffSeq}`);
  if (seqs("checkpoint").size < Number(v.checkpointSeq))
    gaps.push(`checkpoints: ${seqs("checkpoint").size} of ${v.checkpointSeq}`);
  for (const [flag, kind] of [
    [v.breached, "breached"],
    [v.overdue, "overdue"],
    [v.silent, "silent"],
    [v.delivered, "delivered"],
  ] as const)
    if (flag && !entries.some((e) => e.kind === kind && e.shipment === id)) gaps.push(`the ${kind} mark`);
  if (gaps.length)
    throw new Error(
      `${source} left out part of shipment ${id}'s history that the chain has (${gaps.join(", ")}); ` +
        "it may lag the chain: try again, or leave out --watch to read the history from the chain's logs",
    );
}

/** One line per entry: when, what, and whether its signatures verified. */
export function timeline(h: ShipmentHistory): string[] {
  const ok = (v: Verified) => (v === true ? "✓" : v === false ? "✗ BAD SIGNATURE" : "?");
  return h.entries.map((e) => {
    const when = new Date(e.time * 1000).toISOString();
    switch (e.kind) {
      case "created":
        return `${when}  created ${e.epc} by ${e.creator} for ${e.receiver}, tracker ${e.tracker}, ${e.minTemp / 100}–${e.maxTemp / 100} °C`;
      case "split":
        return `${when}  split off pallet ${e.pallet}`;
      case "handoff":
        return `${when}  handoff #${e.seq} ${e.from} → ${e.to} (${e.bizStep}, ${e.disposition}) signatures ${ok(e.signatures.from)} ${ok(e.signatures.to)}`;
      case "checkpoint":
        return `${when}  checkpoint #${e.seq}: ${e.count} readings, ${e.minTemp / 100}–${e.maxTemp / 100} °C, signature ${ok(e.signature)}`;
      case "breached":
        return `${when}  BREACHED at checkpoint #${e.checkpointSeq}: ${e.temp / 100} °C`;
      case "contradicted":
        return `${when}  tracker ${e.device} CONTRADICTED by its own reading of ${e.temp / 100} °C (checkpoint #${e.checkpointSeq})`;
      case "overdue":
        return `${when}  OVERDUE (deadline ${new Date(e.deadline * 1000).toISOString()})`;
      case "silent":
        return `${when}  SILENT since ${new Date(e.lastCheckpointAt * 1000).toISOString()}`;
      case "delivered":
        return `${when}  delivered to ${e.receiver}`;
    }
  });
}

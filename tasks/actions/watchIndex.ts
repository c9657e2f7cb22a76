/**
 * `--watch URL` on the tasks that read history: the watch's index says which transactions carry
 * the events, the chain gives their receipts, and the task re-verifies everything itself. The index
 * is trusted for nothing but where to look: what it leaves out is caught against the chain's
 * counters (src/custody/history.ts), what it alters never reaches the output.
 */
import type { CustodyLedger } from "../../typechain-types/contracts/custody/CustodyLedger.js";
import type { DeviceRegistry } from "../../typechain-types/contracts/registry/DeviceRegistry.js";
import type { PaymentChannels } from "../../typechain-types/contracts/payments/PaymentChannels.js";
import type { LocationBeacons } from "../../typechain-types/contracts/beacons/LocationBeacons.js";
import { IndexClient } from "../../src/watch/indexer/client.js";
import { inputError } from "../support.js";

/** How errors name the index, e.g. "the watch at http://127.0.0.1:8790". */
export function watchName(url: string): string {
  return `the watch at ${url.replace(/\/+$/, "")}`;
}

/** The watch's client, `--watch` checked to be an http(s) URL. */
export function watchClient(url: string): IndexClient {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw inputError(`--watch: ${url} is not a URL (e.g. http://127.0.0.1:8790, where npm run watch listens)`);
  }
  if (parsed.protocol !== "http:" && parsed.protocol !== "https:")
    throw inputError(`--watch: ${url} is not an http(s) URL`);
  return new IndexClient(url);
}

/** An answer from the watch, or an error naming it (unreachable, or refusing). */
async function ask<T>(watch: IndexClient, what: string, read: () => Promise<T>): Promise<T> {
  try {
    return await read();
  } catch (err) {
    throw inputError(`--watch: ${watchName(watch.url)} did not answer for ${what}: ${(err as Error).message}`);
  }
}

/**
 * The transactions the index lists for `shipment` and, for a child split off a pallet, for the
 * pallet too (the history includes the pallet's entries before the split). Its creation is read
 * from the chain in the block the index names (the shipment row keeps the block, not the hash).
 */
export async function shipmentTxHashes(watch: IndexClient, ledger: CustodyLedger, shipment: string): Promise<string[]> {
  const hashes = new Set<string>();
  const seen = new Set<string>();
  let next: string | undefined = shipment.toLowerCase();
  while (next && !seen.has(next)) {
    seen.add(next);
    const id: string = next;
    const answer = await ask(watch, `shipment ${id}`, () => watch.shipment(id));
    if (!answer)
      throw inputError(
        `--watch: ${watchName(watch.url)} does not know shipment ${id}; it may lag the chain ` +
          "(try again) or leave out --watch to read the history from the chain's logs",
      );
    for (const row of [...answer.handoffs, ...answer.checkpoints, ...answer.marks]) hashes.add(row.txHash);
    const block = Number(answer.shipment.createdBlock);
    const f = ledger.filters;
    for (const log of [
      ...(await ledger.queryFilter(f.ShipmentCreated(id), block, block)),
      ...(await ledger.queryFilter(f.ChildSplit(undefined, id), block, block)),
    ])
      hashes.add(log.transactionHash);
    next = answer.shipment.pallet ?? undefined;
  }
  return [...hashes];
}

/** One entry of a device's history as the index gives it, and what the chain says of it. */
export interface ConfirmedEntry {
  kind: "status" | "key";
  /** The event the index says it is (a status change's cause; DeviceClaimed or KeyRotated for a key). */
  event: string;
  block: number;
  txHash: string;
  logIndex: number;
  /** The index's fields (status and who; or key, generation, provenance). */
  fields: Record<string, string | number | boolean | null>;
  /** True when the transaction's receipt on the chain holds that event with those fields. */
  confirmed: boolean;
  /** Why it is not, when it is not. */
  mismatch?: string;
}

const STATUS_EVENTS = new Set([
  "DeviceClaimed",
  "ReportedStolen",
  "Released",
  "GuardianFlagged",
  "GuardianCleared",
  "DeviceRevoked",
]);

/**
 * The device's status changes and keys (with provenance) from the index, each confirmed against
 * the log at its place in its transaction's receipt on the chain: the registry's, the event the
 * index names, the same device and the same fields. The latest key generation is checked against
 * the registry's own, so an index that stops short is flagged too.
 */
export async function deviceHistory(
  watch: IndexClient,
  registry: DeviceRegistry,
  id: bigint,
  chainKeyGeneration: number,
): Promise<{ source: string; entries: ConfirmedEntry[]; allConfirmed: boolean; problems: string[] }> {
  const source = watchName(watch.url);
  const answer = await ask(watch, `device ${id}`, () => watch.device(id));
  if (!answer)
    throw inputError(
      `--watch: ${source} does not know device ${id}; it may lag the chain (try again) or leave out --watch`,
    );
  const provider = registry.runner!.provider!;
  const registryAddress = (await registry.getAddress()).toLowerCase();
  const iface = registry.interface;
  const receipts = new Map<string, Awaited<ReturnType<typeof provider.getTransactionReceipt>>>();
  const logAt = async (txHash: string, logIndex: number) => {
    if (!receipts.has(txHash)) receipts.set(txHash, await provider.getTransactionReceipt(txHash));
    const receipt = receipts.get(txHash);
    if (!receipt) return { error: `the chain has no transaction ${txHash}` };
    const log = receipt.logs.find((l) => l.index === logIndex);
    if (!log) return { error: `transaction ${txHash} has no log ${logIndex}` };
    if (log.address.toLowerCase() !== registryAddress)
      return { error: `log ${logIndex} of ${txHash} is not the registry's` };
    const parsed = iface.parseLog(log);
    if (!parsed) return { error: `log ${logIndex} of ${txHash} is no registry event` };
    return { parsed, block: log.blockNumber };
  };
  const check = async (
    e: ConfirmedEntry,
    expect: (args: Record<string, unknown>) => string | undefined,
  ): Promise<ConfirmedEntry> => {
    const got = await logAt(e.txHash, e.logIndex);
    let why: string | undefined;
    if ("error" in got) why = got.error;
    else if (got.parsed.name !== e.event) why = `the chain's log is ${got.parsed.name}, not ${e.event}`;
    else if (BigInt(got.parsed.args.deviceId as bigint) !== id)
      why = `the chain's log is about device ${got.parsed.args.deviceId}`;
    else if (got.block !== e.block) why = `the chain has it in block ${got.block}, not ${e.block}`;
    else why = expect(got.parsed.args as unknown as Record<string, unknown>);
    return why ? { ...e, confirmed: false, mismatch: why } : { ...e, confirmed: true };
  };
  const same = (a: unknown, b: unknown) => String(a).toLowerCase() === String(b).toLowerCase();
  const entries: ConfirmedEntry[] = [];
  for (const s of answer.statusHistory) {
    const base: ConfirmedEntry = {
      kind: "status",
      event: s.cause,
      block: Number(s.blockNumber),
      txHash: s.txHash,
      logIndex: s.logIndex,
      fields: { status: s.status, by: s.by ?? null, reason: s.reason ?? null },
      confirmed: false,
    };
    if (!STATUS_EVENTS.has(s.cause)) {
      entries.push({ ...base, mismatch: `${s.cause} is no status-changing event` });
      continue;
    }
    entries.push(
      await check(base, (args) => {
        if (s.cause === "DeviceClaimed" && !same(args.owner, s.by))
          return `the chain's owner is ${args.owner}, not ${s.by}`;
        if (s.cause === "DeviceRevoked" && !same(args.by, s.by))
          return `the chain's revoker is ${args.by}, not ${s.by}`;
        if (s.cause === "GuardianFlagged" && !same(args.reason, s.reason))
          return `the chain's reason is ${args.reason}`;
        return undefined;
      }),
    );
  }
  for (const k of answer.keys) {
    const event = k.source === "claim" ? "DeviceClaimed" : "KeyRotated";
    const base: ConfirmedEntry = {
      kind: "key",
      event,
      block: Number(k.blockNumber),
      txHash: k.txHash,
      logIndex: k.logIndex,
      fields: {
        key: k.key,
        generation: k.generation,
        attested: k.attested,
        source: k.source,
        attestedBy: k.attestedBy ?? null,
      },
      confirmed: false,
    };
    entries.push(
      await check(base, (args) => {
        const key = event === "DeviceClaimed" ? args.deviceKey : args.newKey;
        if (!same(key, k.key)) return `the chain's key is ${key}, not ${k.key}`;
        const generation = event === "DeviceClaimed" ? 0 : Number(args.generation);
        if (generation !== k.generation) return `the chain's generation is ${generation}, not ${k.generation}`;
        // A rotation's provenance is in its event; a later KeyAttested may only raise it to attested.
        if (event === "KeyRotated" && args.attested === true && !k.attested)
          return "the chain says this key was attested when installed";
        return undefined;
      }),
    );
  }
  entries.sort((a, b) => a.block - b.block || a.logIndex - b.logIndex || a.kind.localeCompare(b.kind));
  const problems = entries.flatMap((e) => (e.confirmed ? [] : [`${e.event} in ${e.txHash}: ${e.mismatch}`]));
  const latest = Math.max(-1, ...answer.keys.map((k) => k.generation));
  if (latest !== chainKeyGeneration)
    problems.push(`the index's latest key is generation ${latest}, the registry's is ${chainKeyGeneration}`);
  return { source, entries, allConfirmed: problems.length === 0, problems };
}

/**
 * The device's `LocationBeaconPosted` logs from the transactions the index lists, read from their
 * receipts on the chain; every nonce the contract has counted (0 to `beaconNonce` − 1) must be
 * there, so an index that leaves a beacon out makes the task fail rather than print fewer.
 */
export async function beaconLogs(watch: IndexClient, beacons: LocationBeacons, device: bigint) {
  const source = watchName(watch.url);
  const answer = await ask(watch, `device ${device}`, () => watch.device(device));
  const provider = beacons.runner!.provider!;
  const address = (await beacons.getAddress()).toLowerCase();
  const logs = [];
  for (const hash of new Set((answer?.locationBeacons ?? []).map((b) => b.txHash))) {
    const receipt = await provider.getTransactionReceipt(hash);
    if (!receipt) throw inputError(`--watch: ${source} names transaction ${hash}, which this chain does not have`);
    for (const log of receipt.logs) {
      if (log.address.toLowerCase() !== address) continue;
      const parsed = beacons.interface.parseLog(log);
      if (parsed?.name === "LocationBeaconPosted" && BigInt(parsed.args[0] as bigint) === device)
        logs.push({
          args: parsed.args,
          transactionHash: log.transactionHash,
          block: log.blockNumber,
          index: log.index,
        });
    }
  }
  logs.sort((a, b) => a.block - b.block || a.index - b.index);
  const counted = Number(await beacons.beaconNonce(device));
  const nonces = new Set(logs.map((l) => Number(l.args[2])));
  const missing = Array.from({ length: counted }, (_, n) => n).filter((n) => !nonces.has(n));
  if (missing.length)
    throw inputError(
      `--watch: ${source} left out beacons the chain has (device ${device}, nonces ${missing.join(", ")} of 0–${counted - 1}); ` +
        "it may lag the chain: try again, or leave out --watch to read them from the chain's logs",
    );
  return logs;
}

/**
 * The `ChannelOpened` log of channel `id`, from a transaction the index lists for the channel, read
 * from its receipt on the chain (the terms it carries are the ones the contract hashed into the id).
 */
export async function channelOpenedLog(watch: IndexClient, channels: PaymentChannels, id: string) {
  const source = watchName(watch.url);
  const answer = await ask(watch, `channel ${id}`, () => watch.channel(id));
  const provider = channels.runner!.provider!;
  const address = (await channels.getAddress()).toLowerCase();
  for (const hash of new Set((answer?.events ?? []).map((e) => e.txHash))) {
    const receipt = await provider.getTransactionReceipt(hash);
    for (const log of receipt?.logs ?? []) {
      if (log.address.toLowerCase() !== address) continue;
      const parsed = channels.interface.parseLog(log);
      if (parsed?.name === "ChannelOpened" && String(parsed.args.channel).toLowerCase() === id.toLowerCase())
        return parsed.args;
    }
  }
  throw inputError(
    `--watch: ${source} lists no transaction that opened channel ${id} on this chain; it may lag the chain ` +
      "(try again) or leave out --watch to read it from the chain's logs",
  );
}

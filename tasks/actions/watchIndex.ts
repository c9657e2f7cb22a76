/**
 * `--watch URL` on the tasks that read history: the watch's index says which transactions carry
 * the events, the chain gives their receipts, and the task re-verifies everything itself. The index
 * is trusted for nothing but where to look: what it leaves out is caught against the chain's
 * counters (src/custody/history.ts), what it alters never reaches the output.
 */
import type { CustodyLedger } from "../../typechain-types/contracts/custody/CustodyLedger.js";
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

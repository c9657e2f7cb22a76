/**
 * How fresh the index is: the block Ponder has indexed (its checkpoint table) and the chain's head
 * (from the node, cached for a moment so that a burst of reads costs one RPC call).
 */
import { sql } from "ponder";
import type { db as Db } from "ponder:api";
import type { PublicClient } from "viem";
import { readIndexerEnv } from "../../env.js";

export interface Freshness {
  chainId: number;
  /** Decimal strings: JSON carries them exactly. */
  indexedBlock: string;
  headBlock: string;
  lagBlocks: number;
}

// Ponder's checkpoint is fixed-width decimal: 10 digits of timestamp, 16 of chain id, 16 of block number, …
const BLOCK_NUMBER_AT = 10 + 16;
const BLOCK_NUMBER_DIGITS = 16;

/**
 * Ponder's checkpoint table, in the schema Ponder writes to (`--schema` or `DATABASE_SCHEMA`; Ponder
 * keeps the one it chose in a global, which its own SQL middleware reads too).
 */
function checkpointTable(): string {
  const chosen =
    (globalThis as { PONDER_NAMESPACE_BUILD?: { schema?: string } }).PONDER_NAMESPACE_BUILD?.schema ??
    process.env.DATABASE_SCHEMA;
  return chosen ? `"${chosen.replace(/"/g, '""')}"._ponder_checkpoint` : "_ponder_checkpoint";
}

const HEAD_CACHE_MS = 100;
let head: { at: number; value: Promise<bigint> } | undefined;

function headBlock(chain: PublicClient): Promise<bigint> {
  const now = Date.now();
  if (!head || now - head.at > HEAD_CACHE_MS) {
    const value = chain.getBlockNumber({ cacheTime: 0 });
    head = { at: now, value };
    value.catch(() => (head = undefined));
  }
  return head.value;
}

export async function freshness(db: typeof Db, chain: PublicClient): Promise<Freshness> {
  const [rows, headNumber] = await Promise.all([
    db.execute(sql.raw(`SELECT chain_id, latest_checkpoint FROM ${checkpointTable()}`)),
    headBlock(chain),
  ]);
  const row = (Array.isArray(rows) ? rows : (rows as { rows: unknown[] }).rows)[0] as
    { chain_id: number | string; latest_checkpoint: string } | undefined;
  const indexed = row
    ? BigInt(row.latest_checkpoint.slice(BLOCK_NUMBER_AT, BLOCK_NUMBER_AT + BLOCK_NUMBER_DIGITS))
    : 0n;
  // The head is read a moment apart from the checkpoint (and cached for a moment): never behind it.
  const headSeen = headNumber > indexed ? headNumber : indexed;
  return {
    chainId: row ? Number(row.chain_id) : readIndexerEnv().chainId,
    indexedBlock: indexed.toString(),
    headBlock: headSeen.toString(),
    lagBlocks: Number(headSeen - indexed),
  };
}

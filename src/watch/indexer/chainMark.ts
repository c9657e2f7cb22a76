/**
 * Which chain a data directory's index belongs to, by the chain's genesis block hash. A development
 * node restarted with the same chain id deploys the suite at the same addresses, and Ponder's sync
 * cache (kept in the same database, keyed by chain id) would replay the old chain's logs as if they
 * were the new one's: an index of a chain that no longer exists. So the directory is marked with
 * the genesis it was built from, and a different chain is refused — or, if asked, the old index is
 * deleted first.
 */
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";

interface Mark {
  chainId: number;
  genesis: string;
}

async function genesisOf(rpcUrl: string): Promise<string> {
  const reply = await fetch(rpcUrl, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "eth_getBlockByNumber", params: ["0x0", false] }),
  }).catch((error: Error) => {
    throw new Error(`startIndexer: the node at ${rpcUrl} does not answer (${error.message}): start it, or fix rpcUrl`);
  });
  const answer = (await reply.json()) as { result?: { hash?: string }; error?: { message?: string } };
  const hash = answer.result?.hash;
  if (!hash)
    throw new Error(
      `startIndexer: the node at ${rpcUrl} gave no genesis block (${answer.error?.message ?? "no result"})`,
    );
  return hash.toLowerCase();
}

/**
 * Checks (and on first use writes) `dataDir`'s mark against the chain at `rpcUrl`. With
 * `reset`, an index of another chain is deleted (`indexDir`, PGlite's files) instead of refused.
 */
export async function checkChainMark(opts: {
  dataDir: string;
  indexDir: string;
  rpcUrl: string;
  chainId: number;
  reset: boolean;
}): Promise<void> {
  const file = path.join(opts.dataDir, "chain.json");
  const here: Mark = { chainId: opts.chainId, genesis: await genesisOf(opts.rpcUrl) };
  if (existsSync(file)) {
    const before = JSON.parse(readFileSync(file, "utf8")) as Mark;
    if (before.chainId === here.chainId && before.genesis === here.genesis) return;
    if (!opts.reset)
      throw new Error(
        `startIndexer: ${opts.dataDir} holds the index of another chain (chain ${before.chainId}, genesis ${before.genesis}); ` +
          `the node at ${opts.rpcUrl} is chain ${here.chainId}, genesis ${here.genesis}. ` +
          `Give a fresh dataDir, or onOtherChain: "reset" to delete that index and build this chain's`,
      );
    rmSync(opts.indexDir, { recursive: true, force: true });
  }
  mkdirSync(opts.dataDir, { recursive: true });
  writeFileSync(file, JSON.stringify(here) + "\n");
}

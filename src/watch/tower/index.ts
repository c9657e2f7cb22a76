/**
 * `startTower`: the watchtower as one start function for `npm run watch` (and tests). It opens the
 * agent's outbox stack in `dataDir` (outbox, chain reads, the dispatcher, and the courier: the
 * RpcCourier paid by `sender.key`, or the RelayerCourier to `sender.relayerUrl`, with `sender.key`
 * signing the tower's calls as forward requests), and runs the loop of `tower.ts` beside it.
 */
import path from "node:path";
import { Wallet, getAddress, type Provider } from "ethers";
import { openAgentStack, AgentError } from "../../agent/agent.js";
import { Chain } from "../../agent/client.js";
import { silentLogger, type Logger } from "../../agent/log.js";
import type { Outbox, OutboxStats } from "../../agent/outbox.js";
import { TypedDataHasher } from "../../eip712/fast.js";
import { PayeeStores } from "./payees.js";
import { ChainSource, type WatchSource } from "./source.js";
import { TowerLoop, type TowerStats } from "./tower.js";

export { ChainSource, type WatchSource, type Touched, type CloseStarted } from "./source.js";
export { dueCalls, nextBlockTimestamp, type ShipmentState } from "./rules.js";
export type { TowerStats } from "./tower.js";

export interface TowerAddresses {
  registry: string;
  custodyLedger: string;
  /** Needed to answer unilateral closes (with `payeeStores`). */
  paymentChannels?: string;
  /** The registry's ERC-7913 P-256 verifier, to read P-256 payers' vouchers in the payees' books. */
  p256Verifier?: string;
  /** The ERC-2771 forwarder: needed with `sender.relayerUrl` (calls go to the relayer as forward requests). */
  forwarder?: string;
}

export interface TowerOptions {
  /** The node (HTTP JSON-RPC); or `provider`. */
  rpcUrl?: string;
  provider?: Provider;
  addresses: TowerAddresses;
  chainId: number | bigint;
  /**
   * Who sends the tower's transactions. `{ key }`: the private key of a funded account used by this
   * tower only (its account nonces are numbered locally). `{ relayerUrl, key }`: the relayer gateway
   * pays; `key` (no ETH needed) signs the tower's calls as ERC-2771 forward requests, the only form
   * in which the relayer takes a plain call (needs `addresses.forwarder`).
   */
  sender: { key: string; relayerUrl?: string };
  /** Where the tower's outbox lives (`outbox.jsonl`). */
  dataDir: string;
  /** Data directories of `custos-agent meter serve` payees whose unilateral closes the tower answers. */
  payeeStores?: string[];
  log?: Logger;
  /** How often the head block is polled (ms). Default 100. */
  pollMs?: number;
  /** The first block whose events are read when `dataDir` holds no cursor of an earlier run. Default 0. */
  fromBlock?: number;
  /** Blocks read again on every new head (reorgs). Default 12. */
  reorgDepth?: number;
  /** Where events come from. Default: the node (`ChainSource`). */
  source?: WatchSource;
}

export interface TowerHandle {
  stop(): Promise<void>;
  stats(): TowerStats & { outbox: OutboxStats };
  /** The tower's outbox (what it queued and what became of it). */
  outbox: Outbox;
  /** The tower's account: the one that pays, or (with the relayer) the one that signs its forward requests. */
  address: string;
}

export async function startTower(o: TowerOptions): Promise<TowerHandle> {
  const log = o.log ?? silentLogger;
  let payer: Wallet;
  try {
    payer = new Wallet(o.sender.key);
  } catch {
    throw new AgentError(
      "sender.key",
      "sender.key must be a private key (32 bytes of hex): the funded account that pays, or with " +
        "sender.relayerUrl the account that signs the tower's forward requests",
    );
  }
  const relayerUrl = o.sender.relayerUrl;
  if (relayerUrl !== undefined && !o.addresses.forwarder)
    throw new AgentError(
      "addresses.forwarder",
      "addresses.forwarder: with sender.relayerUrl the tower's calls go to the relayer as forward requests " +
        "through the suite's ERC2771Forwarder; give its address",
    );
  if (!o.rpcUrl && !o.provider) throw new AgentError("rpcUrl", "rpcUrl (or provider) must name the node to watch");
  if (o.payeeStores?.length && !o.addresses.paymentChannels)
    throw new AgentError("addresses.paymentChannels", "payeeStores need addresses.paymentChannels (their channels)");
  const chainId = BigInt(o.chainId);
  const provider = o.provider ?? Chain.provider(o.rpcUrl!, chainId);
  const hasher = await TypedDataHasher.create();
  const stack = await openAgentStack({
    deployment: {
      chainId,
      registry: o.addresses.registry,
      custodyLedger: o.addresses.custodyLedger,
      ...(o.addresses.paymentChannels ? { paymentChannels: o.addresses.paymentChannels } : {}),
      ...(o.addresses.forwarder ? { forwarder: o.addresses.forwarder } : {}),
    },
    dataDir: o.dataDir,
    rpc: provider,
    ...(relayerUrl === undefined ? { payer } : { relayerUrl, forwardSigner: payer }),
    logger: log.child({ part: "tower-sender" }),
    hasher,
    // A tower's actions are due in the next block: follow them closely.
    pollMs: 250,
    holdMs: 250,
    backoff: { baseMs: 100, capMs: 5_000 },
  });
  const payees = o.payeeStores?.length
    ? new PayeeStores(
        o.payeeStores,
        hasher,
        { chainId, verifyingContract: getAddress(o.addresses.paymentChannels!) },
        o.addresses.p256Verifier ? [o.addresses.p256Verifier] : [],
      )
    : undefined;
  const loop = new TowerLoop({
    provider,
    custodyLedger: o.addresses.custodyLedger,
    source: o.source ?? new ChainSource(provider, o.addresses),
    outbox: stack.outbox,
    payees,
    log: log.child({ part: "tower" }),
    pollMs: o.pollMs ?? 100,
    fromBlock: o.fromBlock ?? 0,
    reorgDepth: o.reorgDepth ?? 12,
    cursorFile: path.join(o.dataDir, "tower-cursor.json"),
  });
  const delivering = stack.dispatcher.drain({ watch: true });
  delivering.catch((err) => log.error("watchtower: delivery stopped", { error: String(err) }));
  loop.start();
  let stopped = false;
  return {
    outbox: stack.outbox,
    address: payer.address,
    stats: () => ({ ...loop.stats(), outbox: stack.outbox.stats() }),
    async stop() {
      if (stopped) return;
      stopped = true;
      await loop.stop();
      await stack.close();
    },
  };
}

/**
 * `startGuardian`: one guardian — its key, its policy file, the watch it reads, the node it votes
 * on, the relayers whose refusals it reads. It opens the agent's outbox stack in `dataDir` (the
 * RpcCourier paid by the guardian's own key: a vote must come from the guardian's account), keeps
 * evidence in `dataDir/evidence` and what it is told off chain in `dataDir/offchain.jsonl`, serves
 * both over HTTP, and runs the loop of `guardian.ts` beside the courier.
 */
import path from "node:path";
import { Wallet, getAddress, type Provider } from "ethers";
import { openAgentStack, AgentError } from "../../agent/agent.js";
import { Chain } from "../../agent/client.js";
import { silentLogger, type Logger } from "../../agent/log.js";
import type { Outbox, OutboxStats } from "../../agent/outbox.js";
import { IndexClient } from "../../watch/indexer/client.js";
import type { ContractAddresses } from "../../messages/index.js";
import { ChainClock, HeadClock } from "./clock.js";
import { EvidenceStore } from "./evidence.js";
import { GuardianLoop, type GuardianStats } from "./guardian.js";
import { startGuardianApi } from "./http.js";
import { IndexReader } from "./observe.js";
import { OffChainBook } from "./offChainBook.js";
import { RefusalFeeds } from "./refusalFeeds.js";
import { DeviceReports } from "./reports.js";
import { SignedMessageCheck } from "./signedMessages.js";
import { VoucherReports } from "./vouchers.js";

export { EvidenceStore } from "./evidence.js";
export { IndexReader, type FleetView, type IndexedDevice } from "./observe.js";
export type { GuardianStats } from "./guardian.js";
export { DeviceReports, type SignedPositionReport, type ReportVerdict } from "./reports.js";
export { VoucherReports, type VoucherVerdict } from "./vouchers.js";
export { OffChainBook } from "./offChainBook.js";

export interface GuardianOptions {
  /** The node (HTTP JSON-RPC) the guardian votes on; or `provider`. */
  rpcUrl?: string;
  provider?: Provider;
  chainId: number | bigint;
  /** The watch (or its indexer) whose index the guardian reads: its `/watch/status` and `/graphql`. */
  watchUrl: string;
  /** The suite: the registry and the quorum; PaymentChannels (vouchers) and the others (relayers' refusals) to check messages for them. */
  addresses: ContractAddresses & { guardianQuorum: string };
  /** Relayers whose feeds of refused device-signed messages the guardian reads (`GET /v1/refusals`). */
  relayers?: string[];
  /** The guardian's private key: a funded account holding GuardianQuorum's GUARDIAN_ROLE, used by this guardian only. */
  key: string;
  /** The policy file (JSON, `src/guardian/policy/schema.json`); edits take effect at the next block. */
  policyFile: string;
  /** The outbox (`outbox.jsonl`) and the evidence (`evidence/<hash>.json`). */
  dataDir: string;
  /** The HTTP port of `/evidence/:hash` (0: any free port; undefined: no HTTP). */
  port?: number;
  host?: string;
  /** Watch only these owners' devices (default: every device the index knows). */
  owners?: string[];
  /** The registry's ERC-7913 P-256 verifiers (P-256 devices' signed reports); secp256k1 needs none. */
  p256Verifiers?: string[];
  log?: Logger;
  /** How often the index is polled for a new block (ms). Default 100. */
  pollMs?: number;
}

export interface GuardianHandle {
  address: string;
  /** The HTTP API's base URL, when it serves one. */
  url?: string;
  outbox: Outbox;
  evidence: EvidenceStore;
  /** The devices' signed position reports (`POST /reports`), checked against their registered keys. */
  reports: DeviceReports;
  /** Payers' vouchers as payees report them (`POST /vouchers`). */
  vouchers: VoucherReports;
  /** What the guardian was told off chain, kept on disk. */
  book: OffChainBook;
  /** The relayers' refusal feeds, when given. */
  refusals?: RefusalFeeds;
  stats(): GuardianStats & { outbox: OutboxStats };
  stop(): Promise<void>;
}

export async function startGuardian(o: GuardianOptions): Promise<GuardianHandle> {
  const log = o.log ?? silentLogger;
  let wallet: Wallet;
  try {
    wallet = new Wallet(o.key);
  } catch {
    throw new AgentError("key", "key must be a private key (32 bytes of hex): the guardian's funded account");
  }
  if (!o.rpcUrl && !o.provider) throw new AgentError("rpcUrl", "rpcUrl (or provider) must name the node to vote on");
  const chainId = BigInt(o.chainId);
  const provider = o.provider ?? Chain.provider(o.rpcUrl!, chainId);
  const evidence = new EvidenceStore(path.join(o.dataDir, "evidence"));
  const book = await OffChainBook.open(o.dataDir);
  // The loop evaluates on the index's time; news off chain is dated on the head's (the index may lag).
  const clock = new ChainClock();
  const head = new HeadClock(provider);
  const reports = new DeviceReports({
    provider,
    deployment: { chainId, verifyingContract: getAddress(o.addresses.registry) },
    book,
    clock: head,
    p256Verifiers: o.p256Verifiers,
  });
  const check = new SignedMessageCheck({ provider, chainId, addresses: o.addresses, p256Verifiers: o.p256Verifiers });
  const vouchers = new VoucherReports({ check, book, clock: head });
  const refusals = o.relayers?.length
    ? new RefusalFeeds({
        relayers: o.relayers,
        check,
        book,
        clock: head,
        provider,
        addresses: o.addresses,
        log: log.child({ part: "refusals" }),
      })
    : undefined;
  const stack = await openAgentStack({
    deployment: {
      chainId,
      registry: o.addresses.registry,
      guardianQuorum: o.addresses.guardianQuorum,
    },
    dataDir: o.dataDir,
    rpc: provider,
    payer: wallet,
    logger: log.child({ part: "guardian-sender" }),
    // A vote is due in the next block: follow it closely.
    pollMs: 250,
    holdMs: 250,
    backoff: { baseMs: 100, capMs: 5_000 },
  });
  let loop: GuardianLoop;
  try {
    loop = new GuardianLoop({
      index: new IndexClient(o.watchUrl),
      reader: new IndexReader(o.watchUrl),
      provider,
      registry: getAddress(o.addresses.registry),
      guardianQuorum: getAddress(o.addresses.guardianQuorum),
      guardian: wallet.address,
      outbox: stack.outbox,
      evidence,
      policyFile: o.policyFile,
      log: log.child({ part: "guardian" }),
      pollMs: o.pollMs ?? 100,
      owners: o.owners,
      offChain: { of: (device) => book.observations(device), version: () => book.version },
      clock,
    });
  } catch (err) {
    await stack.close();
    await book.close();
    throw err;
  }
  const api =
    o.port === undefined
      ? undefined
      : await startGuardianApi({
          evidence,
          reports,
          vouchers,
          port: o.port,
          host: o.host,
          status: () => ({ ...loop.stats(), refusals: refusals?.stats }),
        }).catch(async (err) => {
          await stack.close();
          await book.close();
          throw err;
        });
  const delivering = stack.dispatcher.drain({ watch: true });
  delivering.catch((err) => log.error("guardian: delivery stopped", { error: String(err) }));
  loop.start();
  refusals?.start();
  log.info("guardian: started", { guardian: wallet.address, policy: o.policyFile, api: api?.url });
  let stopped = false;
  return {
    address: wallet.address,
    ...(api ? { url: api.url } : {}),
    outbox: stack.outbox,
    evidence,
    reports,
    vouchers,
    book,
    ...(refusals ? { refusals } : {}),
    stats: () => ({ ...loop.stats(), outbox: stack.outbox.stats() }),
    async stop() {
      if (stopped) return;
      stopped = true;
      await refusals?.stop();
      await loop.stop();
      await api?.app.close();
      await stack.close();
      await book.close();
    },
  };
}

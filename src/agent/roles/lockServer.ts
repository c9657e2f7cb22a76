/**
 * A smart lock as a service: the lock role's decisions over HTTP (what a door's radio link would
 * carry), its chain state kept fresh by a periodic sync, every decision in the durable unlock log,
 * and the log anchored on chain through the agent's outbox.
 *
 *   GET  /v1/challenge       → {lock, challenge, expiresAt}
 *   POST /v1/unlock          {certificate: {key, signature}, request: {request, signature}}
 *                            → {open, reason?, at, record}
 *   POST /v1/checkpoint      {checkpoint, signature, revoked}: an owner's revocation checkpoint
 *   GET  /v1/log/:index      → the record, and once anchored its batch and Merkle proof
 *   GET  /v1/state           → owner, key epoch, key provenance, freshness, log size
 *
 * The lock opens from cached state only; the chain is read by the sync loop (and once for a holder
 * it has never met, within `holderLookupTimeoutMs`), so a chain that is down slows nothing.
 *
 * Sealed batches go to the outbox only while LockAccess would take them: the lock Active and its
 * key's provenance reaching its manufacturer. A key its owner installed alone signs nothing the
 * chain counts, so batches wait, sealed on disk, until the manufacturer re-attests the key.
 */
import Fastify, { type FastifyInstance } from "fastify";
import path from "node:path";
import type { Provider } from "ethers";
import type { TypedDataHasher } from "../../eip712/fast.js";
import type { DeviceSignatureVerifier } from "../../crypto/verify.js";
import { addressOf } from "../../messages/index.js";
import type { Agent } from "../agent.js";
import type { ChainDeployment } from "../client.js";
import { silentLogger, type Logger } from "../log.js";
import { LockRole, type Decision, type LockChainState, type SignedCertificate, type SignedCheckpoint } from "./lock.js";
import { UnlockLogBook, type SealedBatch } from "./lockLog.js";
import { LockChainReader } from "./lockSync.js";

export interface LockServiceOptions {
  /** The lock device's agent: it signs the log batches into its outbox. */
  agent: Agent;
  lock: bigint;
  deployment: ChainDeployment;
  /** Chain reads (the sync); the lock keeps deciding when they fail. */
  provider: Provider;
  hasher: TypedDataHasher;
  verifier: DeviceSignatureVerifier;
  /** Where the unlock log lives. */
  dataDir: string;
  maxStalenessS: number;
  challengeTtlS?: number;
  clock?: () => number;
  /** First block of the deployment (events are read from it). Default 0. */
  fromBlock?: number;
  /** How often the chain state is re-read (ms). Default 15,000. */
  syncIntervalMs?: number;
  /** How often the unlock log is sealed and anchored (ms). Default 60,000. */
  anchorIntervalMs?: number;
  /** Seal as soon as this many records wait. Default 256. */
  anchorEvery?: number;
  /** How long to look up a holder never met before deciding without it (ms). Default 1,000. */
  holderLookupTimeoutMs?: number;
  /** Lifetime of an anchoring signature (s). Default 30 days: the outbox retries until it lands. */
  logDeadlineS?: number;
  host?: string;
  /** 0 picks a free port. Default 0. */
  port?: number;
  logger?: Logger;
}

const ID = /^\d+$/;

export class LockService {
  readonly role: LockRole;
  readonly book: UnlockLogBook;
  readonly reader: LockChainReader;
  private state: LockChainState | undefined;
  private app: FastifyInstance | undefined;
  private timers: NodeJS.Timeout[] = [];
  private anchoring: Promise<SealedBatch | undefined> | null = null;
  /** The last batch handed to the outbox (or anchored before this process started). */
  private handedOver: number | undefined;
  /** Why sealed batches are being held back from the outbox (logged once per reason). */
  private holding: string | undefined;
  private readonly log: Logger;
  private readonly clock: () => number;
  url = "";

  constructor(private readonly opts: LockServiceOptions) {
    this.clock = opts.clock ?? (() => Date.now() / 1000);
    this.log = (opts.logger ?? silentLogger).child({ role: "lock", lock: opts.lock.toString() });
    const lockAccess = addressOf(opts.deployment, "lockAccess");
    this.role = new LockRole({
      lock: opts.lock,
      deployment: { chainId: opts.deployment.chainId, verifyingContract: lockAccess },
      hasher: opts.hasher,
      verifier: opts.verifier,
      maxStalenessS: opts.maxStalenessS,
      challengeTtlS: opts.challengeTtlS,
      clock: this.clock,
    });
    this.reader = new LockChainReader({
      provider: opts.provider,
      registry: opts.deployment.registry,
      lockAccess,
      lock: opts.lock,
      fromBlock: opts.fromBlock,
      clock: () => this.role.now(),
    });
    this.book = UnlockLogBook.open(path.join(opts.dataDir, `unlock-log-${opts.lock}.jsonl`), opts.lock);
  }

  /** Reads the chain state; false (and the lock keeps its cache) when the chain cannot be reached. */
  async sync(): Promise<boolean> {
    try {
      this.state = await this.reader.read();
      this.role.update(this.state);
      return true;
    } catch (err) {
      this.log.warn("chain state not refreshed; deciding from the cache", { error: (err as Error).message });
      return false;
    }
  }

  /** Decides one unlock request and logs the decision (on disk before it returns). */
  async unlock(cert: SignedCertificate, req: { request: Record<string, unknown>; signature: string }) {
    const holder = String(cert.key?.holder ?? "");
    if (this.state && /^0x([0-9a-fA-F]{2})+$/.test(holder) && this.state.holderStatus(holder) === undefined) {
      await this.lookupHolder(holder);
    }
    const decision: Decision = this.role.decide(cert, req);
    const record = await this.book.record(decision, {
      accessKey: String(req.request.accessKey ?? ""),
      challenge: String(req.request.challenge ?? ""),
      requestSignature: req.signature,
    });
    if (this.book.unsealed >= (this.opts.anchorEvery ?? 256)) void this.anchor();
    return { ...decision, record: record.index };
  }

  private async lookupHolder(holder: string): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, this.opts.holderLookupTimeoutMs ?? 1_000);
    });
    try {
      await Promise.race([this.reader.lookupHolder(holder), timeout]);
    } catch (err) {
      this.log.warn("holder status unavailable", { holder, error: (err as Error).message });
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Seals the unlogged records into the next batch and hands it to the outbox (which delivers it
   * to `LockAccess.anchorLog`); also hands over any sealed batch a crash kept from the outbox.
   */
  anchor(): Promise<SealedBatch | undefined> {
    this.anchoring ??= this.anchorNow().finally(() => {
      this.anchoring = null;
    });
    return this.anchoring;
  }

  private async anchorNow(): Promise<SealedBatch | undefined> {
    const sealed = this.book.sealed();
    let batch: SealedBatch | undefined;
    if (this.book.unsealed > 0) {
      const seq = sealed.length > 0 ? sealed[sealed.length - 1].seq + 1 : (await this.reader.logSeq()) + 1;
      batch = await this.book.seal(seq);
    }
    const held = this.refusedByChain();
    if (held !== this.holding) {
      this.holding = held;
      if (held) this.log.warn("holding sealed log batches: LockAccess would refuse them", { reason: held });
      else this.log.info("handing sealed log batches to the outbox again");
    }
    if (held) return batch;
    // After a start, batches sealed before it may not have reached the outbox: hand over every one
    // the chain has not anchored (the outbox ignores one it holds already: same ref).
    this.handedOver ??= await this.reader.logSeq().catch(() => 0);
    for (const b of this.book.sealed()) {
      if (b.seq <= this.handedOver) continue;
      await this.submit(b);
      this.handedOver = b.seq;
    }
    return batch;
  }

  /**
   * Why LockAccess.anchorLog would refuse the lock's log as of the last sync (undefined: it would
   * take it, or the lock has not read the chain yet and lets the outbox find out).
   */
  private refusedByChain(): string | undefined {
    const s = this.state;
    if (!s) return undefined;
    if (s.lockStatus !== 1) return "the lock is not active in the registry";
    if (!s.keyAttested) return "the lock's key was installed by its owner; its manufacturer must re-attest it";
    return undefined;
  }

  private async submit(b: SealedBatch): Promise<void> {
    const deadline = BigInt(Math.floor(this.role.now()) + (this.opts.logDeadlineS ?? 30 * 86_400));
    await this.opts.agent.sign(
      "UnlockLog",
      { seq: b.seq, root: b.root, count: b.to - b.from, fromTime: b.fromTime, toTime: b.toTime, deadline },
      { ref: `unlock-log:${this.opts.lock}:${b.seq}` },
    );
  }

  /** Syncs, then serves HTTP and runs the sync and anchoring loops. */
  async start(): Promise<string> {
    if (!(await this.sync())) this.log.warn("starting without chain state: every unlock fails closed until a sync");
    const app = Fastify({ logger: false, bodyLimit: 64 * 1024 });
    app.get("/v1/challenge", async () => ({
      lock: this.opts.lock.toString(),
      challenge: this.role.challenge(),
      expiresAt: this.role.now() + (this.opts.challengeTtlS ?? 30),
    }));
    app.post("/v1/unlock", async (req, reply) => {
      const body = req.body as {
        certificate?: SignedCertificate;
        request?: { request?: unknown; signature?: unknown };
      };
      const problem = unlockShape(body);
      if (problem) return reply.code(400).send({ error: problem });
      try {
        return await this.unlock(
          body.certificate!,
          body.request as { request: Record<string, unknown>; signature: string },
        );
      } catch (err) {
        return reply.code(400).send({ error: (err as Error).message });
      }
    });
    app.post("/v1/checkpoint", async (req, reply) => {
      const body = req.body as SignedCheckpoint;
      if (
        !body ||
        typeof body.checkpoint !== "object" ||
        typeof body.signature !== "string" ||
        !Array.isArray(body.revoked)
      )
        return reply.code(400).send({ error: "body must be {checkpoint, signature, revoked}" });
      try {
        const r = this.role.applyCheckpoint(body);
        return r.accepted ? r : reply.code(409).send(r);
      } catch (err) {
        return reply.code(400).send({ error: (err as Error).message });
      }
    });
    app.get("/v1/log/:index", async (req, reply) => {
      const { index } = req.params as { index: string };
      const p = ID.test(index) ? this.book.proof(Number(index)) : undefined;
      return p ?? reply.code(404).send({ error: `no record ${index}` });
    });
    app.get("/v1/state", async () => ({
      lock: this.opts.lock.toString(),
      owner: this.state?.owner,
      epoch: this.state?.epoch,
      keyAttested: this.state?.keyAttested,
      freshAt: this.role.freshAt(),
      now: this.role.now(),
      records: this.book.size,
      anchoredBatches: this.book.sealed().length,
    }));
    this.app = app;
    this.url = await app.listen({ host: this.opts.host ?? "127.0.0.1", port: this.opts.port ?? 0 });
    this.timers.push(setInterval(() => void this.sync(), this.opts.syncIntervalMs ?? 15_000));
    this.timers.push(
      setInterval(
        () => void this.anchor().catch((err) => this.log.warn("anchoring failed", { error: (err as Error).message })),
        this.opts.anchorIntervalMs ?? 60_000,
      ),
    );
    for (const t of this.timers) t.unref();
    this.log.info("lock listening", { url: this.url });
    return this.url;
  }

  async close(): Promise<void> {
    for (const t of this.timers) clearInterval(t);
    await this.app?.close();
    await this.anchoring?.catch(() => undefined);
    await this.book.close();
  }
}

/** What is wrong with an unlock body, naming the field; undefined when its shape is right. */
function unlockShape(body: unknown): string | undefined {
  const b = body as { certificate?: SignedCertificate; request?: { request?: unknown; signature?: unknown } } | null;
  if (!b || typeof b !== "object") return "body must be {certificate, request}";
  if (!b.certificate || typeof b.certificate.key !== "object" || b.certificate.key === null)
    return "certificate.key must be the AccessKey fields";
  if (typeof b.certificate.signature !== "string") return "certificate.signature must be hex";
  if (!b.request || typeof b.request.request !== "object" || b.request.request === null)
    return "request.request must be the UnlockRequest fields";
  if (typeof b.request.signature !== "string") return "request.signature must be hex";
  return undefined;
}

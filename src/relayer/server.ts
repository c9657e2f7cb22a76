/**
 * The relayer gateway: a fastify HTTP service in front of the intake checks, the durable store and
 * the batch submitter. `startRelayer(config)` runs one in this process (tests, benches, e2e); the
 * CLI (`npm run relayer`) wraps it.
 *
 *   POST /v1/messages      a SignedDeviceMessage          → 202 {id, status: "accepted"} | 200 duplicate | 4xx refusal
 *   POST /v1/forward       an OpenZeppelin ForwardRequestData → same
 *   GET  /v1/messages/:id  → {id, status, txHash?, error?}
 *   GET  /v1/refusals?after=&limit=  → {epoch, next, items}: refused device messages, signed by their device
 *   GET  /health           → {ok, chainId, latestBlock, queueDepth, relayerBalance, …}
 *
 * Logs are JSON lines (pino, through fastify).
 */
import Fastify, { LogController, type FastifyInstance, type FastifyReply } from "fastify";
import { Wallet, getAddress } from "ethers";
import type { Deployment } from "../eip712/index.js";
import { TypedDataHasher } from "../eip712/fast.js";
import { ChainView, type OtherContracts } from "./chain.js";
import { resolveConfig, type RelayerConfig } from "./config.js";
import { Refusal, type RefusalBody } from "./errors.js";
import { Intake } from "./intake.js";
import { RefusalFeed, parsePage } from "./refusalFeed.js";
import { MessageStore } from "./store.js";
import { preflight, StartError } from "./preflight.js";
import { Submitter } from "./submitter.js";

export interface RelayerStats {
  accepted: number;
  duplicates: number;
  refused: Record<string, number>;
  batches: number;
  revertedTxs: number;
  gasUsed: string;
  landed: number;
  failed: number;
  spent: number;
  queueDepth: number;
  /** Items held by the refusal feed, and the last seq it gave (both 0 when it is off). */
  refusalFeed: { size: number; lastSeq: number };
}

export interface RelayerHandle {
  /** Base URL, e.g. http://127.0.0.1:8545 */
  url: string;
  /** The relayer's account. */
  address: string;
  registry: string;
  /** LocationBeacons, when configured (location beacons are delivered to it). */
  locationBeacons?: string;
  /** LockAccess, PaymentChannels and CustodyLedger, those configured. */
  lockAccess?: string;
  paymentChannels?: string;
  custodyLedger?: string;
  forwarder: string;
  chainId: bigint;
  stats(): RelayerStats;
  /** Stops taking requests and submitting; a transaction in flight is resolved at the next start. */
  close(): Promise<void>;
}

const ID = /^0x[0-9a-fA-F]{64}$/;

/** Fastify's body errors, each with its own refusal: too large (413), not JSON content (415), not JSON. */
function bodyRefusal(err: { code?: string; statusCode?: number; message: string }, limit: number): Refusal {
  if (err.code === "FST_ERR_CTP_BODY_TOO_LARGE" || err.statusCode === 413)
    return new Refusal("body_too_large", `the body is over the relayer's limit of ${limit / 1024} KiB`);
  if (err.code === "FST_ERR_CTP_INVALID_MEDIA_TYPE" || err.statusCode === 415)
    return new Refusal(
      "unsupported_media_type",
      "the body must be JSON, sent with the header content-type: application/json",
      "content-type",
    );
  return new Refusal("invalid_json", `the body is not JSON: ${err.message}`);
}

const BODY_LIMIT = 64 * 1024;

export async function startRelayer(config: RelayerConfig): Promise<RelayerHandle> {
  const cfg = resolveConfig(config);
  const app: FastifyInstance = Fastify({
    logger: { level: cfg.logLevel, base: { service: "custos-relayer" } },
    bodyLimit: BODY_LIMIT,
    // One JSON line per event the relayer names, not two per request.
    logController: new LogController({ disableRequestLogging: true }),
    forceCloseConnections: true,
  });
  const log = app.log;

  let account: Wallet;
  if (cfg.privateKey) account = new Wallet(cfg.privateKey);
  else {
    try {
      const decrypted = await Wallet.fromEncryptedJson(cfg.keystore!.json, cfg.keystore!.password);
      account = decrypted instanceof Wallet ? decrypted : new Wallet(decrypted.privateKey);
    } catch (err) {
      throw new StartError(
        cfg.accountSource.split(" ")[0],
        /password/i.test((err as Error).message)
          ? `${cfg.accountSource}: the password does not open this keystore`
          : `${cfg.accountSource}: not a Web3 Secret Storage JSON keystore (${(err as Error).message.split(" (")[0]})`,
      );
    }
  }
  const relayer = account.address.toLowerCase();
  const lower = (a: string | undefined) => (a ? getAddress(a).toLowerCase() : undefined);
  const registry = lower(cfg.registry)!;
  const beacons = lower(cfg.locationBeacons);
  const others: OtherContracts = {
    lockAccess: lower(cfg.lockAccess),
    paymentChannels: lower(cfg.paymentChannels),
    custodyLedger: lower(cfg.custodyLedger),
  };
  const checked = await preflight(
    {
      rpc: cfg.rpc,
      chainId: cfg.chainId,
      contracts: { registry, forwarder: lower(cfg.forwarder), locationBeacons: beacons, ...others },
      account: relayer,
      accountSource: cfg.accountSource,
    },
    cfg.pollIntervalMs,
  );
  const { chainId, provider, forwarder } = checked;
  const wallet = account.connect(provider);
  const chain = new ChainView(provider, registry, forwarder, cfg.pollIntervalMs, log, beacons, others);
  const registryDeployment: Deployment = { chainId, verifyingContract: registry };
  const forwarderDeployment: Deployment = { chainId, verifyingContract: forwarder };
  const beaconsDeployment: Deployment | undefined = beacons ? { chainId, verifyingContract: beacons } : undefined;

  let store: MessageStore;
  try {
    store = await MessageStore.open(cfg.dataDir, cfg.retainMs);
  } catch (err) {
    provider.destroy();
    throw err;
  }
  try {
    return await serve();
  } catch (err) {
    chain.stop();
    await app.close().catch(() => undefined);
    await store.close().catch(() => undefined);
    provider.destroy();
    throw err;
  }

  async function serve(): Promise<RelayerHandle> {
    await chain.start();
    const hasher = await TypedDataHasher.create();
    const submitter = new Submitter({
      config: cfg,
      provider,
      wallet,
      relayer,
      chainId,
      chain,
      store,
      registry,
      beacons,
      others,
      forwarder,
      log,
    });
    const intake = new Intake({
      config: cfg,
      provider,
      chain,
      store,
      hasher,
      registry: registryDeployment,
      beacons: beaconsDeployment,
      others,
      forwarder: forwarderDeployment,
      relayer,
      log,
      onAccepted: () => submitter.wake(),
    });
    const unsubscribe = chain.onBlock(() => submitter.wake());
    const feed = cfg.refusalFeedSize > 0 ? new RefusalFeed(cfg.refusalFeedSize) : undefined;

    const refuse = (reply: FastifyReply, err: unknown) => {
      if (err instanceof Refusal) {
        intake.countRefusal(err.code);
        if (err.attribution) feed?.add(err.code, err.message, err.attribution);
        // debug: refusals are counted in /health; logging each at info would let an attacker flood the logs.
        log.debug({ event: "refused", code: err.code, field: err.field, error: err.message });
        if (err.retryAfter) reply.header("retry-after", String(err.retryAfter));
        return reply.code(err.status).send(err.body());
      }
      log.error({ event: "internal_error", err: (err as Error).message, stack: (err as Error).stack });
      return reply.code(500).send({ error: "internal error", code: "internal" } satisfies RefusalBody);
    };

    app.setErrorHandler((err: { code?: string; statusCode?: number; message: string }, _req, reply) => {
      if (err.statusCode && err.statusCode < 500) return refuse(reply, bodyRefusal(err, BODY_LIMIT));
      return refuse(reply, err);
    });
    // A POST must declare JSON: fastify would hand the route an empty body without a content type,
    // and a string for text/plain (vague "must be an object" refusals); refused by name instead.
    app.addHook("preValidation", async (req) => {
      if (req.method === "POST" && !/^application\/json\s*(;|$)/i.test(req.headers["content-type"] ?? ""))
        throw Object.assign(new Error("not JSON content"), { code: "FST_ERR_CTP_INVALID_MEDIA_TYPE", statusCode: 415 });
    });
    app.setNotFoundHandler((req, reply) =>
      reply.code(404).send({ error: `no route ${req.method} ${req.url}`, code: "not_found" } satisfies RefusalBody),
    );

    app.post("/v1/messages", async (req, reply) => {
      try {
        const r = await intake.device(req.body);
        return reply.code(r.status).send(r.body);
      } catch (err) {
        return refuse(reply, err);
      }
    });

    app.post("/v1/forward", async (req, reply) => {
      try {
        const r = await intake.forward(req.body);
        return reply.code(r.status).send(r.body);
      } catch (err) {
        return refuse(reply, err);
      }
    });

    app.get<{ Params: { id: string } }>("/v1/messages/:id", async (req, reply) => {
      const id = req.params.id.toLowerCase();
      const e = ID.test(id) ? store.entries.get(id) : undefined;
      if (!e) return reply.code(404).send({ error: `no message ${req.params.id}`, code: "not_found" });
      const body: { id: string; status: string; txHash?: string; error?: string } = { id: e.id, status: e.status };
      if (e.txHash) body.txHash = e.txHash;
      if (e.error) body.error = e.error;
      return reply.send(body);
    });

    // Off (refusalFeedSize 0): no route, so the not-found handler's 404.
    if (feed)
      app.get("/v1/refusals", async (req, reply) => {
        try {
          const { after, limit } = parsePage(req.query);
          return reply.send(feed.page(after, limit));
        } catch (err) {
          // Not through refuse(): a reader's bad query is no refusal of a message (stats, feed).
          if (err instanceof Refusal) return reply.code(err.status).send(err.body());
          throw err;
        }
      });

    app.get("/health", async (_req, reply) => {
      try {
        const [latestBlock, balance] = await Promise.all([provider.getBlockNumber(), provider.getBalance(relayer)]);
        return reply.send({
          ok: true,
          chainId: chainId.toString(),
          latestBlock,
          queueDepth: store.queueDepth(),
          relayerBalance: balance.toString(),
          relayer,
          registry,
          ...(beacons ? { locationBeacons: beacons } : {}),
          ...definedOf(others),
          forwarder,
          stats: stats(),
        });
      } catch (err) {
        return reply.code(503).send({
          ok: false,
          chainId: chainId.toString(),
          queueDepth: store.queueDepth(),
          error: `the chain cannot be read: ${(err as Error).message}`,
        });
      }
    });

    const stats = (): RelayerStats => ({
      accepted: intake.accepted,
      duplicates: intake.duplicates,
      refused: Object.fromEntries(intake.refused),
      batches: submitter.metrics.batches,
      revertedTxs: submitter.metrics.revertedTxs,
      gasUsed: submitter.metrics.gasUsed.toString(),
      landed: submitter.metrics.landed,
      failed: submitter.metrics.failed,
      spent: submitter.metrics.spent,
      queueDepth: store.queueDepth(),
      refusalFeed: { size: feed?.size ?? 0, lastSeq: feed?.lastSeq ?? 0 },
    });

    const address = await app.listen({ host: cfg.host, port: cfg.port });
    submitter.start();
    log.info(
      {
        event: "listening",
        url: address,
        relayer,
        registry,
        locationBeacons: beacons,
        ...definedOf(others),
        forwarder,
        chainId: chainId.toString(),
        balance: checked.balance.toString(),
      },
      "relayer listening",
    );

    let closing: Promise<void> | undefined;
    return {
      url: address,
      address: relayer,
      registry,
      ...(beacons ? { locationBeacons: beacons } : {}),
      ...definedOf(others),
      forwarder,
      chainId,
      stats,
      close: () =>
        (closing ??= (async () => {
          await app.close();
          unsubscribe();
          await submitter.stop();
          chain.stop();
          await store.close();
          provider.destroy();
        })()),
    };
  }
}

function definedOf(o: OtherContracts): OtherContracts {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined));
}

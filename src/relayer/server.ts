/**
 * The relayer gateway: a fastify HTTP service in front of the intake checks, the durable store and
 * the batch submitter. `startRelayer(config)` runs one in this process (tests, benches, e2e); the
 * CLI (`npm run relayer`) wraps it.
 *
 *   POST /v1/messages      a SignedDeviceMessage          → 202 {id, status: "accepted"} | 200 duplicate | 4xx refusal
 *   POST /v1/forward       an OpenZeppelin ForwardRequestData → same
 *   GET  /v1/messages/:id  → {id, status, txHash?, error?}
 *   GET  /health           → {ok, chainId, latestBlock, queueDepth, relayerBalance, …}
 *
 * Logs are JSON lines (pino, through fastify).
 */
import Fastify, { LogController, type FastifyInstance, type FastifyReply } from "fastify";
import { JsonRpcProvider, Network, Wallet, getAddress } from "ethers";
import { DOMAINS, type Deployment } from "../eip712/index.js";
import { TypedDataHasher } from "../eip712/fast.js";
import { ChainView } from "./chain.js";
import { resolveConfig, type RelayerConfig } from "./config.js";
import { Refusal, type RefusalBody } from "./errors.js";
import { Intake } from "./intake.js";
import { MessageStore } from "./store.js";
import { Submitter } from "./submitter.js";
import { DeviceRegistry__factory } from "../../typechain-types/index.js";

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
}

export interface RelayerHandle {
  /** Base URL, e.g. http://127.0.0.1:8545 */
  url: string;
  /** The relayer's account. */
  address: string;
  registry: string;
  /** LocationBeacons, when configured (location beacons are delivered to it). */
  locationBeacons?: string;
  forwarder: string;
  chainId: bigint;
  stats(): RelayerStats;
  /** Stops taking requests and submitting; a transaction in flight is resolved at the next start. */
  close(): Promise<void>;
}

const ID = /^0x[0-9a-fA-F]{64}$/;

/** Reads the chain id with one plain JSON-RPC call (ethers would retry network detection forever). */
async function chainIdOf(rpc: string): Promise<bigint> {
  const res = await fetch(rpc, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "eth_chainId", params: [] }),
  });
  const json = (await res.json()) as { result?: string; error?: { message: string } };
  if (!json.result) throw new Error(`relayer: eth_chainId failed at ${rpc}: ${json.error?.message ?? res.status}`);
  return BigInt(json.result);
}

/** Checks that a deployed contract's EIP-712 domain (ERC-5267) is the catalogue's. */
async function checkDomain(
  contract: { eip712Domain(): Promise<[string, string, string, bigint, string, string, bigint[]]> },
  expected: { name: string; version: string },
  deployment: Deployment,
  what: string,
): Promise<void> {
  const [, name, version, chainId, verifyingContract] = await contract.eip712Domain();
  if (
    name !== expected.name ||
    version !== expected.version ||
    chainId !== BigInt(deployment.chainId) ||
    verifyingContract.toLowerCase() !== deployment.verifyingContract.toLowerCase()
  )
    throw new Error(
      `relayer: the ${what}'s EIP-712 domain (${name} v${version}, chain ${chainId}, ${verifyingContract}) ` +
        `is not the catalogue's (${expected.name} v${expected.version}, chain ${deployment.chainId}, ${deployment.verifyingContract})`,
    );
}

export async function startRelayer(config: RelayerConfig): Promise<RelayerHandle> {
  const cfg = resolveConfig(config);
  const app: FastifyInstance = Fastify({
    logger: { level: cfg.logLevel, base: { service: "custos-relayer" } },
    bodyLimit: 64 * 1024,
    // One JSON line per event the relayer names, not two per request.
    logController: new LogController({ disableRequestLogging: true }),
    forceCloseConnections: true,
  });
  const log = app.log;

  const chainId = await chainIdOf(cfg.rpc);
  const network = Network.from(chainId);
  const provider = new JsonRpcProvider(cfg.rpc, network, {
    staticNetwork: network,
    batchStallTime: 2,
    pollingInterval: cfg.pollIntervalMs,
    cacheTimeout: -1, // ethers would answer repeated reads (the head!) from a 250 ms cache; ChainView caches instead
  });
  const account = cfg.privateKey
    ? new Wallet(cfg.privateKey)
    : await Wallet.fromEncryptedJson(cfg.keystore!.json, cfg.keystore!.password);
  const wallet = (account instanceof Wallet ? account : new Wallet(account.privateKey)).connect(provider);
  const relayer = wallet.address.toLowerCase();

  const registry = getAddress(cfg.registry).toLowerCase();
  const forwarder = getAddress(
    cfg.forwarder ?? (await DeviceRegistry__factory.connect(registry, provider).trustedForwarder()),
  ).toLowerCase();
  const beacons = cfg.locationBeacons ? getAddress(cfg.locationBeacons).toLowerCase() : undefined;
  const chain = new ChainView(provider, registry, forwarder, cfg.pollIntervalMs, log, beacons);
  if (!(await chain.registryContract.isTrustedForwarder(forwarder)))
    throw new Error(`relayer: the registry at ${registry} does not trust the forwarder ${forwarder}`);
  const registryDeployment: Deployment = { chainId, verifyingContract: registry };
  const forwarderDeployment: Deployment = { chainId, verifyingContract: forwarder };
  await checkDomain(chain.registryContract, DOMAINS.registry, registryDeployment, "registry");
  await checkDomain(chain.forwarderContract, DOMAINS.forwarder, forwarderDeployment, "forwarder");
  let beaconsDeployment: Deployment | undefined;
  if (beacons) {
    beaconsDeployment = { chainId, verifyingContract: beacons };
    const beaconsRegistry = (await chain.beaconsContract!.registry()).toLowerCase();
    if (beaconsRegistry !== registry)
      throw new Error(`relayer: the LocationBeacons at ${beacons} read registry ${beaconsRegistry}, not ${registry}`);
    await checkDomain(chain.beaconsContract!, DOMAINS.beacons, beaconsDeployment, "LocationBeacons");
  }

  const store = await MessageStore.open(cfg.dataDir, cfg.retainMs);
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
      forwarder: forwarderDeployment,
      relayer,
      log,
      onAccepted: () => submitter.wake(),
    });
    const unsubscribe = chain.onBlock(() => submitter.wake());

    const refuse = (reply: FastifyReply, err: unknown) => {
      if (err instanceof Refusal) {
        intake.countRefusal(err.code);
        // debug: refusals are counted in /health; logging each at info would let an attacker flood the logs.
        log.debug({ event: "refused", code: err.code, field: err.field, error: err.message });
        if (err.retryAfter) reply.header("retry-after", String(err.retryAfter));
        return reply.code(err.status).send(err.body());
      }
      log.error({ event: "internal_error", err: (err as Error).message, stack: (err as Error).stack });
      return reply.code(500).send({ error: "internal error", code: "internal" } satisfies RefusalBody);
    };

    app.setErrorHandler((err: { statusCode?: number; message: string }, _req, reply) => {
      if (err.statusCode && err.statusCode < 500) {
        intake.countRefusal("invalid_json");
        return reply.code(400).send({ error: err.message, code: "invalid_json" } satisfies RefusalBody);
      }
      return refuse(reply, err);
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
        forwarder,
        chainId: chainId.toString(),
      },
      "relayer listening",
    );

    let closing: Promise<void> | undefined;
    return {
      url: address,
      address: relayer,
      registry,
      ...(beacons ? { locationBeacons: beacons } : {}),
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

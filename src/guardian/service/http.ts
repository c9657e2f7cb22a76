/**
 * The guardian's HTTP API: `GET /evidence/:hash` serves the canonical JSON kept under a vote's
 * reason hash, byte for byte (anyone checks keccak256 of the body against the on-chain reason);
 * `GET /status` the loop's counters; `POST /reports` takes a device's signed `PositionReport`
 * and `POST /vouchers` a payee's report of a payer-signed voucher (202 when taken as an
 * observation, 200 for one taken before, 400 naming the field when refused).
 */
import Fastify, { type FastifyInstance } from "fastify";
import { RateLimiter } from "../../relayer/rateLimit.js";
import type { EvidenceStore } from "./evidence.js";
import type { DeviceReports, SignedPositionReport } from "./reports.js";
import type { VoucherReports } from "./vouchers.js";

export async function startGuardianApi(opts: {
  evidence: EvidenceStore;
  status: () => object;
  reports: DeviceReports;
  vouchers: VoucherReports;
  port: number;
  host?: string;
  /** Posts a minute per client address (each costs the guardian chain reads). Default 600. */
  postsPerMinute?: number;
}): Promise<{ app: FastifyInstance; url: string }> {
  const app = Fastify({ logger: false });
  const limiter = new RateLimiter(opts.postsPerMinute ?? 600);
  app.addHook("preHandler", async (req, reply) => {
    if (req.method !== "POST") return;
    const wait = limiter.take(req.ip);
    if (wait > 0)
      return reply
        .code(429)
        .header("retry-after", String(wait))
        .send({
          accepted: false,
          error: "rate_limited",
          reason: `over ${limiter.perMinute} posts a minute; retry in ${wait} s`,
        });
  });
  app.get<{ Params: { hash: string } }>("/evidence/:hash", async (req, reply) => {
    if (!/^0x[0-9a-fA-F]{64}$/.test(req.params.hash))
      return reply.code(400).send({ error: "hash must be 32 bytes of hex (a vote's reason)" });
    const json = opts.evidence.get(req.params.hash);
    if (json === undefined) return reply.code(404).send({ error: `no evidence under ${req.params.hash}` });
    // The stored bytes as they are: re-serialising could change what the hash commits to.
    return reply.type("application/json; charset=utf-8").send(json);
  });
  app.get("/status", async () => opts.status());
  app.post<{ Body: SignedPositionReport }>("/reports", async (req, reply) => {
    const verdict = await opts.reports.submit(req.body);
    if (!verdict.accepted)
      return reply.code(400).send({ error: "report_refused", field: verdict.field, message: verdict.reason });
    return reply.code(202).send({ accepted: true });
  });
  app.post("/vouchers", async (req, reply) => {
    const verdict = await opts.vouchers.submit(req.body);
    if (!verdict.accepted)
      return reply
        .code(400)
        .send({ accepted: false, error: "voucher_refused", field: verdict.field, reason: verdict.reason });
    return reply.code(verdict.duplicate ? 200 : 202).send(verdict);
  });
  const host = opts.host ?? "127.0.0.1";
  await app.listen({ port: opts.port, host });
  const address = app.server.address();
  const port = typeof address === "object" && address ? address.port : opts.port;
  return { app, url: `http://${host}:${port}` };
}

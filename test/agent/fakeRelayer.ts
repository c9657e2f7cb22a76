/**
 * A stand-in for the relayer gateway, implementing only its HTTP contract (the real one lives in
 * src/relayer): `POST /v1/messages` (202 accepted, 200 for a duplicate, 4xx `{error, field, code}`
 * when refused), `GET /v1/messages/:id`, `GET /health`. Accepted messages are submitted one by one
 * from `submitter`. Lets the agent's relayer courier be tested against the contract alone.
 */
import Fastify, { type FastifyInstance } from "fastify";
import type { Signer } from "ethers";
import { checkShape, encodeCall, messageId, type SignedDeviceMessage } from "../../src/messages/index.js";

export interface FakeRelayerRecord {
  id: string;
  status: "accepted" | "submitted" | "confirmed" | "failed" | "spent";
  txHash?: string;
  error?: string;
}

export class FakeRelayer {
  /** Every POST body it received, duplicates included. */
  readonly posts: SignedDeviceMessage[] = [];
  readonly records = new Map<string, FakeRelayerRecord>();
  /** `refuse`: answers 400 bad_signature to every new message; `busy`: answers 503. */
  mode: "ok" | "refuse" | "busy" = "ok";
  private server: FastifyInstance | null = null;
  private queue: Promise<void> = Promise.resolve();

  constructor(
    private readonly registry: string,
    private readonly submitter: Signer,
  ) {}

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  port = 0;

  async listen(port = 0): Promise<void> {
    const app = Fastify({ logger: false });
    app.get("/health", async () => ({ ok: true }));
    app.post("/v1/messages", async (req, reply) => {
      let m: SignedDeviceMessage;
      try {
        m = checkShape(req.body);
      } catch (err) {
        return reply.code(400).send({ error: (err as Error).message, code: "bad_shape" });
      }
      this.posts.push(m);
      const id = messageId(m);
      const known = this.records.get(id);
      if (known) return reply.code(200).send({ id, status: known.status });
      if (this.mode === "busy") return reply.code(503).send({ error: "busy", code: "busy" });
      if (this.mode === "refuse") {
        return reply.code(400).send({ error: "signature does not verify", field: "signature", code: "bad_signature" });
      }
      const record: FakeRelayerRecord = { id, status: "accepted" };
      this.records.set(id, record);
      this.queue = this.queue.then(() => this.submit(m, record));
      return reply.code(202).send({ id, status: "accepted" });
    });
    app.get("/v1/messages/:id", async (req, reply) => {
      const record = this.records.get((req.params as { id: string }).id);
      if (!record) return reply.code(404).send({ error: "unknown message", code: "not_found" });
      return reply.code(200).send(record);
    });
    await app.listen({ host: "127.0.0.1", port });
    this.server = app;
    this.port = (app.server.address() as { port: number }).port;
  }

  async close(): Promise<void> {
    await this.server?.close();
    this.server = null;
  }

  /** Waits until everything accepted so far was submitted. */
  async settled(): Promise<void> {
    await this.queue;
  }

  private async submit(m: SignedDeviceMessage, record: FakeRelayerRecord): Promise<void> {
    try {
      const tx = await this.submitter.sendTransaction({ to: this.registry, data: encodeCall(m).data });
      record.status = "submitted";
      record.txHash = tx.hash;
      const receipt = await tx.wait();
      record.status = receipt?.status === 1 ? "confirmed" : "failed";
    } catch (err) {
      record.status = "failed";
      record.error = (err as Error).message.split("\n")[0];
    }
  }
}

/**
 * A JSON-RPC proxy on loopback in front of a node, for crash tests that decide when to kill a
 * process by its progress, not by the clock: every call is forwarded, except the one an armed
 * trigger picks, which is held unanswered (before the node sees it, or after the node has acted on
 * it) while the test kills the caller. A process waiting on a held call cannot get past it, so a
 * kill aimed at it lands there on any machine, however fast.
 */
import http from "node:http";
import type { AddressInfo } from "node:net";

export interface RpcCall {
  id?: unknown;
  method: string;
  params: unknown[];
}

/** Picks the call to hold: `before` sees each call before it is forwarded, `after` with the node's answer. */
export interface Trigger {
  before?(call: RpcCall): boolean;
  after?(call: RpcCall, answer: { result?: unknown; error?: unknown }): boolean;
  /** Runs the moment a call is held (e.g. the SIGKILL), before anything else can happen. */
  onHold?(held: HeldCall): void;
  /** Stays armed after its first hold, holding every later call it picks too (until `disarm`). */
  keep?: boolean;
}

export interface HeldCall extends RpcCall {
  when: "before" | "after";
  answer?: { result?: unknown; error?: unknown };
}

export class RpcGate {
  private trigger: Trigger | undefined;
  private onHeld: ((held: HeldCall) => void) | undefined;
  /** The responses of held calls, never sent. */
  private readonly parked = new Set<http.ServerResponse>();

  private constructor(
    private readonly server: http.Server,
    private readonly target: string,
    readonly url: string,
  ) {}

  /** Starts a proxy to `target` on a free loopback port. */
  static async start(target: string): Promise<RpcGate> {
    let gate: RpcGate | undefined;
    const server = http.createServer((req, res) => void gate!.handle(req, res));
    server.keepAliveTimeout = 1_000;
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const { port } = server.address() as AddressInfo;
    gate = new RpcGate(server, target, `http://127.0.0.1:${port}`);
    return gate;
  }

  /** Holds the first call `trigger` picks (every one, with `keep`); resolves with the first. One trigger at a time. */
  arm(trigger: Trigger): Promise<HeldCall> {
    if (this.trigger) throw new Error("rpc gate: already armed");
    this.trigger = trigger;
    return new Promise((resolve) => (this.onHeld = resolve));
  }

  /** Forgets the trigger and drops every unanswered response (its caller is gone by now). */
  disarm(): void {
    this.trigger = undefined;
    this.onHeld = undefined;
    for (const res of this.parked) res.destroy();
    this.parked.clear();
  }

  async close(): Promise<void> {
    this.disarm();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private hold(res: http.ServerResponse, held: HeldCall): void {
    const trigger = this.trigger!;
    const first = this.parked.size === 0;
    if (!trigger.keep) this.trigger = undefined; // used once: every later call goes through
    this.parked.add(res);
    if (!first) return;
    trigger.onHold?.(held);
    this.onHeld!(held);
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    res.on("error", () => undefined); // the caller may be killed mid-answer
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const body = Buffer.concat(chunks).toString();
    let payload: RpcCall | RpcCall[];
    try {
      payload = JSON.parse(body) as RpcCall | RpcCall[];
    } catch {
      res.writeHead(400).end("not JSON");
      return;
    }
    const calls = Array.isArray(payload) ? payload : [payload];
    const before = this.trigger?.before;
    const pick = before && calls.find((c) => before(c));
    if (pick) return this.hold(res, { method: pick.method, params: pick.params, when: "before" });

    let text: string;
    try {
      const reply = await fetch(this.target, { method: "POST", headers: { "content-type": "application/json" }, body });
      text = await reply.text();
    } catch (err) {
      res.writeHead(502).end(String(err));
      return;
    }
    const after = this.trigger?.after;
    if (after) {
      type Answer = { id?: unknown; result?: unknown; error?: unknown };
      const answers = JSON.parse(text) as Answer | Answer[];
      // A batch's answers may come in any order: matched to their calls by id.
      const answerOf = (c: RpcCall) => (Array.isArray(answers) ? answers.find((a) => a.id === c.id) : answers);
      const picked = calls.find((c) => answerOf(c) !== undefined && after(c, answerOf(c)!));
      if (picked) {
        const { method, params } = picked;
        return this.hold(res, { method, params, when: "after", answer: answerOf(picked) });
      }
    }
    res.writeHead(200, { "content-type": "application/json" }).end(text);
  }
}

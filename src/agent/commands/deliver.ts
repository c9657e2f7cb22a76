/**
 * How a one-shot command (`attest-firmware`, `send`, `run`) delivers its messages and returns:
 * it never loops forever. It ends when every message is decided — delivered, or refused for good —
 * or, without `--wait`, as soon as each one left is held (refused for now, e.g. its device is
 * quarantined: it stays queued), or when `--timeout` passes. The exit status says which.
 */
import type { AgentStack } from "../agent.js";
import type { StepResult } from "../client.js";
import type { OutboxEntry } from "../outbox.js";
import { contractOf } from "../../messages/calls.js";
import { DEFAULT_TIMEOUT_S, EXIT, parseNumber, print, type Ctx } from "./common.js";

export type DeliveryStatus = "delivered" | "already on chain" | "refused" | "held" | "timed out" | "queued";

export interface DeliveryOptions {
  wait?: boolean;
  timeout?: string;
  queueOnly?: boolean;
}

/** One message's line in a command's report. */
export function summary(entries: OutboxEntry[], status?: Map<string, DeliveryStatus>) {
  return entries.map((e) => ({
    id: e.id,
    ...(e.ref === undefined ? {} : { ref: e.ref }),
    type: e.type,
    device: e.device,
    ...(e.nonce === undefined ? {} : { nonce: e.nonce }),
    state: e.state,
    ...(status?.has(e.id) ? { status: status.get(e.id) } : {}),
    ...(e.outcome ? { outcome: e.outcome } : {}),
    ...(e.reason ? { reason: e.reason } : {}),
    ...(e.txHash ? { txHash: e.txHash } : e.submission?.via === "rpc" ? { txHash: e.submission.txHash } : {}),
  }));
}

/**
 * Delivers `ids` (and what is queued before them), prints the report and returns the exit status:
 * 0 delivered, 3 held, 4 refused, 5 timed out.
 */
export async function deliverAndReport(
  ctx: Ctx,
  stack: AgentStack,
  ids: string[],
  o: DeliveryOptions,
): Promise<number> {
  const { outbox, dispatcher } = stack;
  const status = new Map<string, DeliveryStatus>();
  if (o.queueOnly) {
    for (const id of ids) status.set(id, outbox.get(id)?.state === "done" ? statusOf(outbox.get(id)!) : "queued");
    report(ctx, stack, ids, status);
    return EXIT.ok;
  }
  const timeoutS = o.timeout === undefined ? DEFAULT_TIMEOUT_S : parseNumber(o.timeout, "--timeout", 0);
  const last = new Map<string, StepResult>();
  let finish!: (why: "decided" | "held" | "timeout") => void;
  const finished = new Promise<"decided" | "held" | "timeout">((resolve) => (finish = resolve));

  const isHeld = (e: OutboxEntry, seen = new Set<string>()): boolean => {
    if (seen.has(e.id)) return false;
    seen.add(e.id);
    const r = last.get(e.id);
    if (r?.kind !== "wait" || !r.hold) return false;
    if (r.hold === "refused") return true;
    // Waiting for an earlier nonce: held if no earlier message is queued here, or each one is held.
    const before = outbox
      .ofDevice(e.device)
      .filter(
        (o) =>
          o.state !== "done" &&
          o.nonce !== undefined &&
          e.nonce !== undefined &&
          o.nonce < e.nonce &&
          contractOf(o.type) === contractOf(e.type),
      );
    return before.every((o) => isHeld(o, seen));
  };
  const look = () => {
    const entries = ids.map((id) => outbox.get(id)).filter((e): e is OutboxEntry => e !== undefined);
    const open = entries.filter((e) => e.state !== "done");
    if (open.length === 0) finish("decided");
    else if (!o.wait && open.every((e) => isHeld(e))) finish("held");
  };
  const unsubscribe = dispatcher.onStep((e, r) => {
    last.set(e.id, r);
    look();
  });
  const onDone = () => look();
  outbox.on("done", onDone);
  const timer = timeoutS > 0 ? setTimeout(() => finish("timeout"), timeoutS * 1000) : undefined;
  look();
  const draining = dispatcher.drain().then(look, (err: unknown) => {
    throw err;
  });
  let why: "decided" | "held" | "timeout";
  try {
    why = await Promise.race([finished, draining.then(() => finished)]);
  } finally {
    clearTimeout(timer);
    unsubscribe();
    outbox.off("done", onDone);
  }
  // The current step finishes (a stuck request is not waited for long: the outbox is durable).
  await Promise.race([dispatcher.stop(), new Promise((r) => setTimeout(r, 5_000).unref())]);

  let code: number = EXIT.ok;
  const rank = { [EXIT.ok]: 0, [EXIT.held]: 1, [EXIT.timedOut]: 2, [EXIT.refused]: 3 } as Record<number, number>;
  const worse = (c: number) => {
    if (rank[c] > rank[code]) code = c;
  };
  for (const id of ids) {
    const e = outbox.get(id);
    if (!e) continue;
    let s: DeliveryStatus;
    if (e.state === "done") s = statusOf(e);
    else if (why === "timeout") s = "timed out";
    else s = "held";
    if (why === "timeout" && e.state !== "done") worse(EXIT.timedOut);
    else if (s === "held") worse(EXIT.held);
    if (s === "refused") worse(EXIT.refused);
    status.set(id, s);
  }
  report(ctx, stack, ids, status);
  const log = ctx.io.stderr;
  for (const id of ids) {
    const e = outbox.get(id);
    const s = status.get(id);
    if (!e || s === "delivered" || s === "already on chain") continue;
    const reason = e.reason ?? (last.get(id) as { reason?: string } | undefined)?.reason;
    const what = `${e.type}${e.nonce === undefined ? "" : ` nonce ${e.nonce}`} of device ${e.device}`;
    if (s === "refused") log.write(`custos-agent: refused: ${what}: ${reason ?? "no reason given"}\n`);
    else if (s === "held")
      log.write(
        `custos-agent: held: ${what}: ${reason ?? "refused for now"} (still queued: \`custos-agent run\` delivers it later; --wait waits)\n`,
      );
    else
      log.write(
        `custos-agent: timed out after ${timeoutS} s: ${what}${reason ? `: ${reason}` : ""} (still queued: \`custos-agent run\` delivers it later)\n`,
      );
  }
  return code;
}

function statusOf(e: OutboxEntry): DeliveryStatus {
  return e.outcome === "confirmed" ? "delivered" : e.outcome === "spent" ? "already on chain" : "refused";
}

function report(ctx: Ctx, stack: AgentStack, ids: string[], status: Map<string, DeliveryStatus>) {
  const entries = ids.map((id) => stack.outbox.get(id)).filter((e): e is OutboxEntry => e !== undefined);
  print(ctx.io, { messages: summary(entries, status), outbox: stack.outbox.stats() });
}

/**
 * `custos-agent outbox` (what the outbox holds: no key, no passphrase, no lock) and `run` (deliver
 * what it holds: until each message is decided or held, or for good with --watch).
 */
import path from "node:path";
import type { Command } from "commander";
import { deliveryOptions, print, withStack, type Ctx } from "./common.js";
import type { DeliveryOptions } from "./deliver.js";

export const OUTBOX_EXAMPLES: Record<string, string> = {
  outbox: "custos-agent outbox --all",
  run: "custos-agent run --watch",
};

export function registerOutbox(program: Command, ctx: Ctx): void {
  const { io } = ctx;
  ctx.example(
    program
      .command("outbox")
      .description(
        "show the outbox: counts, and the messages not delivered yet (no key or passphrase needed; safe while `run` is going)",
      )
      .option("--all", "list delivered and refused messages too")
      .action(async (o: { all?: boolean }) => {
        const { Outbox } = await import("../outbox.js");
        const { summary } = await import("./deliver.js");
        const outbox = Outbox.read(path.join(ctx.config().dataDir, "outbox.jsonl"));
        print(io, {
          file: outbox.file,
          stats: outbox.stats(),
          messages: summary(o.all ? outbox.all() : outbox.live()),
        });
      }),
    "outbox",
    OUTBOX_EXAMPLES.outbox,
  );
  ctx.example(
    deliveryOptions(
      program
        .command("run")
        .description(
          "deliver what the outbox holds; exit once each message is delivered, refused or held, or keep going with --watch",
        )
        .option("--watch", "keep running (until SIGINT or SIGTERM)"),
      false,
    ).action(async (o: DeliveryOptions & { watch?: boolean }) => {
      await withStack(ctx, async (stack) => {
        if (!o.watch) {
          const { deliverAndReport } = await import("./deliver.js");
          ctx.exit.code = await deliverAndReport(
            ctx,
            stack,
            stack.outbox.live().map((e) => e.id),
            o,
          );
          return;
        }
        const stop = () => void stack.dispatcher.stop();
        process.once("SIGINT", stop);
        process.once("SIGTERM", stop);
        try {
          await stack.dispatcher.drain({ watch: true });
        } finally {
          process.off("SIGINT", stop);
          process.off("SIGTERM", stop);
        }
        print(io, { outbox: stack.outbox.stats() });
      });
    }),
    "run",
    OUTBOX_EXAMPLES.run,
  );
}

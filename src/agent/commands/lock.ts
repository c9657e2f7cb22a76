/** `custos-agent lock serve`: the device as a smart lock. */
import type { Command } from "commander";
import { CliError, parseInteger, print, withAgents, pickAgent, type Ctx } from "./common.js";

export const LOCK_EXAMPLES: Record<string, string> = {
  "lock serve":
    "custos-agent lock serve --keystore lock.json --lock-access 0xe7f1…0512 --max-staleness 3600 --port 8700",
};

export function registerLock(program: Command, ctx: Ctx): void {
  const lock = program.command("lock").description("run this device as a smart lock");
  ctx.example(
    lock
      .command("serve")
      .description(
        "serve unlock decisions over HTTP from cached chain state, log every decision and anchor the log on chain",
      )
      .option("--max-staleness <seconds>", "how old the chain state may be before the lock fails closed", "3600")
      .option("--host <host>", "listen address", "127.0.0.1")
      .option("--port <port>", "listen port (0: any free one)", "8700")
      .option("--sync-ms <ms>", "how often the chain state is re-read", "15000")
      .option("--anchor-ms <ms>", "how often the unlock log is anchored", "60000")
      .option("--from-block <n>", "first block to read events from", "0")
      .action(
        async (o: {
          maxStaleness: string;
          host: string;
          port: string;
          syncMs: string;
          anchorMs: string;
          fromBlock: string;
        }) => {
          const cfg = ctx.config();
          if (!cfg.lockAccess) throw new CliError("--lock-access (or CUSTOS_LOCK_ACCESS) is required");
          const num = (v: string, flag: string, min: bigint) => Number(parseInteger(v, flag, { min }));
          const maxStalenessS = num(o.maxStaleness, "--max-staleness", 1n);
          const port = num(o.port, "--port", 0n);
          const syncIntervalMs = num(o.syncMs, "--sync-ms", 1n);
          const anchorIntervalMs = num(o.anchorMs, "--anchor-ms", 1n);
          const fromBlock = num(o.fromBlock, "--from-block", 0n);
          await withAgents(
            ctx,
            async (agents, stack) => {
              const agent = await pickAgent(agents, undefined, "--keystore");
              const { LockService } = await import("../roles/lockServer.js");
              const { DeviceSignatureVerifier } = await import("../../crypto/verify.js");
              const service = new LockService({
                agent,
                lock: agent.deviceId,
                deployment: stack.chain.deployment,
                provider: stack.chain.provider,
                hasher: stack.hasher,
                verifier: new DeviceSignatureVerifier(cfg.verifier ? [cfg.verifier] : []),
                dataDir: cfg.dataDir,
                maxStalenessS,
                fromBlock,
                syncIntervalMs,
                anchorIntervalMs,
                host: o.host,
                port,
                logger: ctx.logger(),
              });
              const url = await service.start();
              print(ctx.io, { lock: agent.deviceId.toString(), url });
              const delivering = stack.dispatcher.drain({ watch: true });
              await new Promise<void>((resolve) => {
                process.once("SIGINT", resolve);
                process.once("SIGTERM", resolve);
              });
              await service.anchor().catch(() => undefined);
              await service.close();
              await stack.dispatcher.stop();
              await delivering;
            },
            { need: ["lockAccess"] },
          );
        },
      ),
    "lock serve",
    LOCK_EXAMPLES["lock serve"],
  );
}

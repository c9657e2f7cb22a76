/**
 * `custos-agent beacon`: a quarantined device reports where it is, its location sealed to the keys
 * its owner registered on LocationBeacons (read from the chain now), persisted and delivered.
 */
import type { Command } from "commander";
import { CliError, deliveryOptions, parseDeadline, parseInteger, pickAgent, withAgents, type Ctx } from "./common.js";
import type { DeliveryOptions } from "./deliver.js";

export const BEACON_EXAMPLES: Record<string, string> = {
  beacon: "custos-agent beacon --location-beacons 0xCf7E…0Fc9 --latitude-e7 473700000 --longitude-e7 85400000",
};

export function registerBeacon(program: Command, ctx: Ctx): void {
  ctx.example(
    deliveryOptions(
      program
        .command("beacon")
        .description("seal the device's location to its owner's beacon key and responders, sign it, and deliver it")
        .requiredOption("--latitude-e7 <n>", "latitude in 1e-7 degrees (−900000000 to 900000000)")
        .requiredOption("--longitude-e7 <n>", "longitude in 1e-7 degrees (−1800000000 to 1800000000)")
        .option("--at <unix>", "when the fix was taken (default now)")
        .option("--deadline <time>", "unix seconds or +N[s|m|h|d] (default now + --ttl)")
        .option("--ref <key>", "idempotency key: a beacon with this key already queued is not signed again")
        .option("--device <selector>", "which loaded key when several"),
    ).action(
      async (
        o: DeliveryOptions & {
          latitudeE7: string;
          longitudeE7: string;
          at?: string;
          deadline?: string;
          ref?: string;
          device?: string;
        },
      ) => {
        const latitudeE7 = Number(
          parseInteger(o.latitudeE7, "--latitude-e7", { min: -900_000_000n, max: 900_000_000n }),
        );
        const longitudeE7 = Number(
          parseInteger(o.longitudeE7, "--longitude-e7", { min: -1_800_000_000n, max: 1_800_000_000n }),
        );
        const at = o.at === undefined ? undefined : parseInteger(o.at, "--at", { min: 0n, max: (1n << 64n) - 1n });
        const deadline = o.deadline ? parseDeadline(o.deadline) : undefined;
        const { signLocationBeacon } = await import("../roles/beacon.js");
        const { AgentError } = await import("../agent.js");
        await withAgents(
          ctx,
          async (agents, stack) => {
            const agent = await pickAgent(agents, o.device);
            const s = await signLocationBeacon(
              agent,
              { latitudeE7, longitudeE7 },
              {
                ...(at === undefined ? {} : { at }),
                ...(deadline === undefined ? {} : { deadline }),
                ...(o.ref === undefined ? {} : { ref: o.ref }),
              },
            ).catch((err: Error) => {
              throw err instanceof AgentError ? new CliError(`beacon: ${err.message}`) : err;
            });
            const { deliverAndReport } = await import("./deliver.js");
            ctx.exit.code = await deliverAndReport(ctx, stack, [s.id], o);
          },
          { need: ["locationBeacons"] },
        );
      },
    ),
    "beacon",
    BEACON_EXAMPLES.beacon,
  );
}

/** The body of `tracker run` (loaded only when it runs). */
import { createInterface } from "node:readline";
import { locationId } from "../../custody/index.js";
import { CustodyLedger__factory } from "../../../typechain-types/factories/contracts/custody/CustodyLedger__factory.js";
import type { Agent, AgentStack } from "../agent.js";
import { SimulatedSensor, TrackerRole, type SensorSource } from "../roles/tracker.js";
import { CliError, print, type Ctx } from "./common.js";
import { deliverAndReport } from "./deliver.js";
import { parseReading } from "./tracker.js";

export interface TrackerRunOptions {
  shipment: string;
  source: "simulated" | "file" | "stdin";
  fileReadings?: { at?: number; temp: number }[];
  sampleMs: number;
  checkpointMs: number;
  base: number;
  amplitude: number;
  location: string;
  samples?: number;
  durationS?: number;
  wait?: boolean;
  timeout?: string;
}

/** A sensor whose next reading is set by the caller (a line of a file or of stdin). */
class FedSensor implements SensorSource {
  next = 0;
  read(): number {
    return this.next;
  }
}

export async function runTracker(ctx: Ctx, agent: Agent, stack: AgentStack, o: TrackerRunOptions): Promise<number> {
  const cfg = ctx.config();
  const log = ctx.logger().child({ role: "tracker", shipment: o.shipment });
  const ledger = CustodyLedger__factory.connect(stack.chain.deployment.custodyLedger!, stack.chain.provider);
  const s = await ledger.shipmentOf(o.shipment);
  if (s.tracker === 0n)
    throw new CliError(`--shipment ${o.shipment}: no such shipment on the CustodyLedger at --custody-ledger`);
  if (s.tracker !== agent.deviceId)
    throw new CliError(
      `--shipment ${o.shipment}: its tracker is device ${s.tracker}, not this device ${agent.deviceId} (--keystore)`,
    );
  if (s.delivered) throw new CliError(`--shipment ${o.shipment}: already delivered; it takes no more checkpoints`);

  const fed = new FedSensor();
  const sensor = o.source === "simulated" ? new SimulatedSensor({ base: o.base, amplitude: o.amplitude }) : fed;
  // Readings are dated by the chain's clock (its latest block), not the wall clock: a checkpoint
  // must be dated no earlier than the shipment's last one and no later than the block it lands in,
  // and a node's clock runs ahead of the wall clock (an automining node, several blocks a second)
  // or behind it (the head lags by up to a block time). The latest block's time meets both.
  let chainNow = Number((await stack.chain.latestTimestamp()) ?? 0n);
  const refreshChainTime = async () => {
    chainNow = Number(await stack.chain.latestTimestamp());
  };
  const role = new TrackerRole({
    agent,
    sensor,
    dataDir: cfg.dataDir,
    location: () => locationId(o.location),
    clock: () => chainNow,
  });
  const firstSeq = Number(s.checkpointSeq) + 1;
  const ids: string[] = [];
  let taken = 0;
  const seal = async () => {
    const c = await role.checkpoint(o.shipment, firstSeq);
    if (!c) return;
    const entry = stack.outbox.byRef(`checkpoint:${o.shipment}:${c.seq}`);
    if (entry) ids.push(entry.id);
    print(ctx.io, {
      checkpoint: c.seq,
      readings: c.to - c.from,
      minTemp: c.message.minTemp,
      maxTemp: c.message.maxTemp,
      at: c.message.at,
      id: entry?.id,
    });
    log.info("checkpoint sealed", { seq: c.seq, readings: c.to - c.from });
  };
  // One thing at a time: a reading and a seal never interleave.
  let chain = Promise.resolve();
  const serial = (fn: () => Promise<void>) => (chain = chain.then(fn));
  const sample = (at?: number, temp?: number) =>
    serial(async () => {
      if (temp !== undefined) fed.next = temp;
      if (at === undefined) await refreshChainTime().catch(() => undefined); // unreachable: the last one read
      await role.sample(o.shipment, at);
      taken++;
    });

  let stop!: () => void;
  const stopped = new Promise<void>((resolve) => (stop = resolve));
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
  const timers: NodeJS.Timeout[] = [];
  if (o.durationS !== undefined) timers.push(setTimeout(stop, o.durationS * 1000));
  timers.push(setInterval(() => void serial(seal).catch(fail), o.checkpointMs));
  let failure: unknown;
  function fail(err: unknown) {
    failure ??= err;
    stop();
  }
  const delivering = stack.dispatcher.drain({ watch: true });
  log.info("tracker started", { source: o.source, firstSeq, sampleMs: o.sampleMs, checkpointMs: o.checkpointMs });

  try {
    if (o.source === "simulated") {
      const tick = () => {
        if (o.samples !== undefined && taken >= o.samples) return stop();
        void sample().then(() => {
          if (o.samples !== undefined && taken >= o.samples) stop();
        }, fail);
      };
      tick();
      timers.push(setInterval(tick, o.sampleMs));
      await stopped;
    } else {
      const lines =
        o.source === "file"
          ? (async function* () {
              yield* o.fileReadings!;
            })()
          : (async function* () {
              let n = 0;
              for await (const line of createInterface({ input: process.stdin })) {
                n++;
                if (line.trim().length > 0) yield parseReading(line, `stdin:${n}`);
              }
            })();
      const feeding = (async () => {
        for await (const r of lines) {
          await sample(r.at, r.temp);
          if (o.samples !== undefined && taken >= o.samples) break;
        }
      })().then(stop, fail);
      await Promise.race([stopped, feeding]);
      if (o.source === "stdin") process.stdin.destroy(); // stopped early: stop reading
    }
  } finally {
    for (const t of timers) clearInterval(t);
    process.off("SIGINT", stop);
    process.off("SIGTERM", stop);
  }
  await chain;
  if (failure) throw failure;
  await serial(seal);
  // Deliver what is still queued, as a one-shot command does (it ends the watching loop too).
  const code = await deliverAndReport(ctx, stack, ids, { wait: o.wait, timeout: o.timeout });
  await delivering;
  await role.close();
  return code;
}

/**
 * Submission: many accepted messages in one transaction, and nothing sent that would fail.
 *
 * - Device messages go in one `multicall` on the registry, each device's in nonce order (a gap
 *   waits); location beacons in one `multicall` on LocationBeacons, each device's in beacon-nonce
 *   order; forward requests in one `executeBatch` on the forwarder with the relayer as refund
 *   receiver (so a request that turns invalid is skipped, not fatal), one per signer per batch.
 * - Before sending, the batch is simulated (`eth_estimateGas`). When it reverts, the first failing
 *   message is found by bisecting prefixes (multicall is atomic, so failure is monotone in the
 *   prefix), marked `spent` (it landed elsewhere) or `failed` with its revert reason, and the rest is
 *   simulated again. Forwarded calls are also simulated one by one from the forwarder's address.
 * - The signed transaction is persisted (raw bytes) before it is broadcast, and its receipt decides
 *   the statuses. If it reverted on chain after all (state changed in between), its messages are
 *   re-queued, simulated again, and the survivors resent.
 * - One batch transaction is in flight at a time, so the relayer's account nonce and the devices'
 *   nonces are always known when the next batch is built.
 * - At start, transactions that were signed but not resolved are looked up (receipt, mempool) and,
 *   if they never reached the node, rebroadcast when they still simulate; then every queued message
 *   is checked with `isSpent`.
 */
import type { JsonRpcProvider, Wallet } from "ethers";
import type { FastifyBaseLogger } from "fastify";
import { encodeCall, isSpent, type SignedDeviceMessage } from "../messages/index.js";
import { deviceIdOf } from "../registry/batch.js";
import type { ChainView, OtherContracts, RawLog } from "./chain.js";
import type { ResolvedConfig } from "./config.js";
import { forwardTuple, type ForwardRequestBody } from "./forward.js";
import { tryCall } from "./revert.js";
import { signEip1559 } from "./tx.js";
import { FINAL, type Entry, type MessageKind, type MessageStore } from "./store.js";

export interface SubmitterContext {
  config: ResolvedConfig;
  provider: JsonRpcProvider;
  wallet: Wallet;
  relayer: string;
  chainId: bigint;
  chain: ChainView;
  store: MessageStore;
  registry: string;
  /** LocationBeacons, when the relayer delivers beacons. */
  beacons?: string;
  /** LockAccess, PaymentChannels and CustodyLedger, those the relayer delivers to. */
  others: OtherContracts;
  forwarder: string;
  log: FastifyBaseLogger;
}

/**
 * Where a batch goes: device messages to the registry (claims, and lanes `c:`, `d:`), to
 * LocationBeacons (lanes `b:`), to LockAccess (locks' log batches, lanes `l:<lock>` by sequence
 * number) — each in one `multicall` —, vouchers to PaymentChannels (lanes `v:<channel>`, the highest
 * voucher of each channel, in one `claimMany`), checkpoints to CustodyLedger (lanes `s:<shipment>`
 * by sequence number; it has no multicall: one per transaction); forward requests to the forwarder.
 */
type Target = "registry" | "beacons" | "locks" | "channels" | "custody" | "forwarder";

/** The lane prefixes of each device target. */
const LANES: Record<Exclude<Target, "forwarder">, string[]> = {
  registry: ["c:", "d:"],
  beacons: ["b:"],
  locks: ["l:"],
  channels: ["v:"],
  custody: ["s:"],
};

/** Which target a device lane's messages go to. */
function targetOfLane(lane: string): Exclude<Target, "forwarder"> {
  for (const [target, prefixes] of Object.entries(LANES))
    if (prefixes.some((p) => lane.startsWith(p))) return target as Exclude<Target, "forwarder">;
  return "registry";
}

export interface SubmitterMetrics {
  batches: number;
  /** Batch transactions that reverted on chain. */
  revertedTxs: number;
  /** Gas used by all of the relayer's batch transactions. */
  gasUsed: bigint;
  /** Messages that landed in the relayer's transactions. */
  landed: number;
  failed: number;
  spent: number;
  simulations: number;
}

interface Simulated {
  entries: Entry[];
  gas: bigint;
  data: string;
  /** The contract the batch transaction calls. */
  to: string;
}

const BROADCAST_RETRY_MS = [200, 500, 1000, 2000, 5000];

/** What the relayer reads of a receipt (ethers' own formatting checksums every log address: slow on big batches). */
export interface Receipt {
  hash: string;
  status: number;
  gasUsed: bigint;
  blockNumber: number;
  logs: RawLog[];
}

/**
 * ABI encoding of `multicall(bytes[] calls)` by hand: a head word, the array length, one offset
 * per call, then each call's length and bytes padded to 32. ethers' generic coder took half the
 * submitter's time on 100-call batches; a test cross-checks this against it.
 */
export function encodeMulticall(selector: string, calls: readonly string[]): string {
  const bodies = calls.map((c) => Buffer.from(c.slice(2), "hex"));
  const head = 32 * calls.length;
  const size = 4 + 64 + head + bodies.reduce((sum, b) => sum + 32 + Math.ceil(b.length / 32) * 32, 0);
  const out = Buffer.alloc(size);
  out.write(selector.slice(2), 0, "hex");
  out.writeUInt32BE(32, 4 + 28);
  out.writeUInt32BE(calls.length, 4 + 32 + 28);
  let offset = head;
  let at = 4 + 64 + head;
  bodies.forEach((b, i) => {
    out.writeUInt32BE(offset, 4 + 64 + 32 * i + 28);
    out.writeUInt32BE(b.length, at + 28);
    b.copy(out, at + 32);
    const step = 32 + Math.ceil(b.length / 32) * 32;
    at += step;
    offset += step;
  });
  return "0x" + out.toString("hex");
}

export class Submitter {
  readonly metrics: SubmitterMetrics = {
    batches: 0,
    revertedTxs: 0,
    gasUsed: 0n,
    landed: 0,
    failed: 0,
    spent: 0,
    simulations: 0,
  };
  private running = false;
  private loop: Promise<void> | undefined;
  private wakeUp: (() => void) | undefined;
  private accountNonce: number | undefined;
  private cursor = 0;
  private lastBuild = 0;
  private windowStart: number | undefined;
  private unsendable = 0;
  /** `multicall(bytes[])` of OpenZeppelin's Multicall: the registry's and LocationBeacons' alike. */
  private readonly multicall;
  private readonly executeBatch;
  /** Calldata of each device message, encoded once. */
  private readonly callData = new WeakMap<Entry, string>();

  constructor(private readonly ctx: SubmitterContext) {
    const registry = ctx.chain.registryContract.interface;
    const forwarder = ctx.chain.forwarderContract.interface;
    const selector = registry.getFunction("multicall")!.selector;
    this.multicall = (calls: string[]) => encodeMulticall(selector, calls);
    this.executeBatch = (requests: ReturnType<typeof forwardTuple>[], refundReceiver: string) =>
      forwarder.encodeFunctionData("executeBatch", [requests, refundReceiver]);
  }

  start(): void {
    this.running = true;
    this.loop = this.run();
  }

  /** Stops after the current step; a transaction in flight stays `submitted` and is resolved at next start. */
  async stop(): Promise<void> {
    this.running = false;
    this.wake();
    await this.loop;
  }

  wake(): void {
    this.wakeUp?.();
  }

  private sleep(ms: number): Promise<void> {
    if (!this.running) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      const self = this;
      function done() {
        clearTimeout(timer);
        if (self.wakeUp === done) self.wakeUp = undefined;
        resolve();
      }
      this.wakeUp = done;
    });
  }

  private async run(): Promise<void> {
    let backoff = 0;
    while (this.running) {
      try {
        await this.recover();
        break;
      } catch (err) {
        this.ctx.log.warn({ event: "recover_error", err: (err as Error).message }, "resuming failed; retrying");
        await this.sleep(BROADCAST_RETRY_MS[Math.min(backoff++, BROADCAST_RETRY_MS.length - 1)]);
      }
    }
    backoff = 0;
    while (this.running) {
      try {
        const progressed = await this.cycle();
        backoff = 0;
        if (!progressed) await this.sleep(1000);
      } catch (err) {
        this.ctx.log.warn({ event: "submit_error", err: (err as Error).message }, "batch step failed; retrying");
        await this.sleep(BROADCAST_RETRY_MS[Math.min(backoff++, BROADCAST_RETRY_MS.length - 1)]);
      }
    }
  }

  /**
   * Waits for a batch to fill (or for `batchIntervalMs` since its first message, and since the last
   * batch was built), then sends what is ready. Messages that were not sendable at the last build
   * (a nonce gap) do not count towards a full batch.
   */
  private async cycle(): Promise<boolean> {
    const { batchSize, batchIntervalMs } = this.ctx.config;
    const ready = this.ctx.store.acceptedCount;
    if (ready === 0) {
      this.windowStart = undefined;
      return false;
    }
    this.windowStart ??= Date.now();
    const opens = Math.max(this.windowStart, this.lastBuild) + batchIntervalMs;
    if (ready - this.unsendable < batchSize && Date.now() < opens) {
      await this.sleep(opens - Date.now());
      return true;
    }
    this.lastBuild = Date.now();
    this.windowStart = undefined;
    let taken = 0;
    for (const target of ["registry", "beacons", "locks", "channels", "custody", "forwarder"] as const)
      if (this.running && (target === "registry" || target === "forwarder" || this.addressOf(target)))
        taken += await this.submit(target);
    this.unsendable = Math.max(0, ready - taken);
    return taken > 0;
  }

  /** Builds, simulates and sends one batch to `target`; returns how many messages it took up. */
  private async submit(target: Target): Promise<number> {
    if (target === "forwarder") {
      const candidates = await this.buildForward();
      if (candidates.length === 0) return 0;
      const batch = await this.simulateForward(candidates);
      if (batch && this.running) await this.send("forward", batch);
      return candidates.length;
    }
    const candidates =
      target === "registry" || target === "beacons"
        ? await this.buildDevice(target)
        : target === "channels"
          ? await this.buildVouchers()
          : await this.buildSequenced(target);
    if (candidates.length === 0) return 0;
    const batch = await this.simulateDevice(candidates, target);
    if (batch && this.running) await this.send("device", batch);
    return candidates.length;
  }

  /** The contract a device target's batches call (undefined when the relayer was not given it). */
  private addressOf(target: Exclude<Target, "forwarder">): string | undefined {
    switch (target) {
      case "registry":
        return this.ctx.registry;
      case "beacons":
        return this.ctx.beacons;
      case "locks":
        return this.ctx.others.lockAccess;
      case "channels":
        return this.ctx.others.paymentChannels;
      case "custody":
        return this.ctx.others.custodyLedger;
    }
  }

  /** The calldata of one batch of `target`: a multicall, a claimMany, or the one checkpoint call. */
  private encodeBatch(target: Exclude<Target, "forwarder">, entries: Entry[], calls: Map<Entry, string>): string {
    if (target === "custody") return calls.get(entries[0])!;
    if (target === "channels") {
      const iface = this.ctx.chain.channelsContract!.interface;
      return iface.encodeFunctionData("claimMany", [
        entries.map((e) => {
          const m = e.body as SignedDeviceMessage;
          const t = m.terms!;
          return {
            terms: { ...t },
            amount: BigInt(m.message.cumulativeAmount as string),
            key: m.key,
            signature: m.signature,
          };
        }),
      ]);
    }
    return this.multicall(entries.map((e) => calls.get(e)!));
  }

  // ------------------------------------------------------------------ building

  private lanesOf(prefixes: string[]): [string, Map<string, Entry>][] {
    const lanes = [...this.ctx.store.lanes].filter(([name]) => prefixes.some((p) => name.startsWith(p)));
    // Rotate the starting lane so one busy device cannot starve the others.
    const start = lanes.length ? this.cursor++ % lanes.length : 0;
    return [...lanes.slice(start), ...lanes.slice(0, start)];
  }

  private async expireOrKeep(e: Entry): Promise<boolean> {
    if (e.deadline > this.ctx.chain.now() + BigInt(this.ctx.config.sendMarginSeconds)) return true;
    await this.finish(e, "failed", "deadline passed before it could be sent");
    return false;
  }

  /**
   * The next registry batch (claims, then device lanes) or LocationBeacons batch (beacon lanes):
   * each lane from its chain nonce on, in nonce order, up to the batch size.
   */
  private async buildDevice(target: "registry" | "beacons"): Promise<Entry[]> {
    const { batchSize } = this.ctx.config;
    const chain = this.ctx.chain;
    const beacons = target === "beacons";
    const lanes = this.lanesOf(beacons ? ["b:"] : ["c:", "d:"]);
    const out: Entry[] = [];
    const claimed = new Set<bigint>();
    // Claims first: the device messages that follow a claim in this batch can then land with it.
    for (const [name, lane] of lanes) {
      if (!name.startsWith("c:") || out.length >= batchSize) continue;
      const e = lane.get("claim");
      if (!e || e.status !== "accepted" || !e.durable || !(await this.expireOrKeep(e))) continue;
      if (!(await chain.keyAvailable(name.slice(2)))) {
        await this.finish(e, "spent", "key is already registered");
        continue;
      }
      out.push(e);
      claimed.add(deviceIdOf(name.slice(2)));
    }
    const deviceLanes = lanes.filter(([name]) => name.startsWith(beacons ? "b:" : "d:"));
    const nonces = await Promise.all(
      deviceLanes.map(([name]) => {
        const device = BigInt(name.slice(2));
        return beacons ? chain.beaconNonce(device) : chain.deviceNonce(device);
      }),
    );
    for (let i = 0; i < deviceLanes.length && out.length < batchSize; i++) {
      const [name, lane] = deviceLanes[i];
      const device = BigInt(name.slice(2));
      let next = nonces[i];
      const first = [...lane.values()][0];
      // (A beacon's device is on chain: the intake took it from a quarantined device.)
      if (!beacons && next === 0n && first && !claimed.has(device)) {
        const ref = await chain.deviceByKey((first.body as SignedDeviceMessage).key);
        if (ref.id === 0n) continue; // waits for its claim
      }
      for (const e of [...lane.values()]) {
        if (e.status === "accepted" && e.nonce! < next) await this.finish(e, "spent", "its nonce was used on chain");
        else if (e.status === "accepted") await this.expireOrKeep(e);
      }
      while (out.length < batchSize) {
        const e = lane.get(next.toString());
        if (!e || e.status !== "accepted" || !e.durable) break;
        out.push(e);
        next++;
      }
    }
    return out;
  }

  /**
   * The next LockAccess batch (lanes `l:<lock>`, from the lock's next sequence number on) or the
   * next checkpoint (lanes `s:<shipment>`, one: CustodyLedger has no multicall).
   */
  private async buildSequenced(target: "locks" | "custody"): Promise<Entry[]> {
    const chain = this.ctx.chain;
    const max = target === "custody" ? 1 : this.ctx.config.batchSize;
    const lanes = this.lanesOf(LANES[target]);
    const out: Entry[] = [];
    for (const [name, lane] of lanes) {
      if (out.length >= max) break;
      const key = name.slice(2);
      let next: bigint;
      if (target === "locks") next = await chain.lockNextSeq(BigInt(key));
      else {
        const s = await chain.shipment(key);
        next = s.checkpointSeq + 1n;
      }
      for (const e of [...lane.values()]) {
        if (e.status === "accepted" && e.nonce! < next)
          await this.finish(e, "spent", "its sequence number was used on chain");
        else if (e.status === "accepted") await this.expireOrKeep(e);
      }
      while (out.length < max) {
        const e = lane.get(next.toString());
        if (!e || e.status !== "accepted" || !e.durable) break;
        out.push(e);
        next++;
      }
    }
    return out;
  }

  /** The highest voucher of each channel (lanes `v:<channel>`) that pays more than the channel paid. */
  private async buildVouchers(): Promise<Entry[]> {
    const out: Entry[] = [];
    for (const [name, lane] of this.lanesOf(LANES.channels)) {
      if (out.length >= this.ctx.config.batchSize) break;
      const { paid } = await this.ctx.chain.channel(name.slice(2));
      let best: Entry | undefined;
      for (const e of [...lane.values()]) {
        if (e.status !== "accepted") continue;
        if (e.nonce! <= paid) await this.finish(e, "spent", `the channel has paid ${paid} already`);
        else if (e.durable && (!best || e.nonce! > best.nonce!)) best = e;
      }
      if (best) out.push(best);
    }
    return out;
  }

  private async buildForward(): Promise<Entry[]> {
    const lanes = this.lanesOf(["f:"]);
    const nonces = await Promise.all(lanes.map(([name]) => this.ctx.chain.forwardNonce(name.slice(2))));
    const out: Entry[] = [];
    for (let i = 0; i < lanes.length && out.length < this.ctx.config.batchSize; i++) {
      const lane = lanes[i][1];
      for (const e of [...lane.values()]) {
        if (e.status === "accepted" && e.nonce! < nonces[i])
          await this.finish(e, "spent", "its forwarder nonce was used on chain");
        else if (e.status === "accepted") await this.expireOrKeep(e);
      }
      const e = lane.get(nonces[i].toString());
      if (e && e.status === "accepted" && e.durable) out.push(e);
    }
    return out;
  }

  // ------------------------------------------------------------------ simulation

  /** `eth_estimateGas` as the relayer (raw JSON-RPC: ethers would copy and re-hexlify big calldata). */
  private estimate(to: string, data: string) {
    this.metrics.simulations++;
    return tryCall(async () =>
      BigInt(await this.ctx.provider.send("eth_estimateGas", [{ from: this.ctx.relayer, to, data }])),
    );
  }

  /** Simulates the batch for `target`; drops failing messages (and what depends on them) until it passes. */
  private async simulateDevice(candidates: Entry[], target: Exclude<Target, "forwarder">): Promise<Simulated | null> {
    const to = this.addressOf(target)!;
    const calls = new Map<Entry, string>();
    let list: Entry[] = [];
    for (const [i, e] of candidates.entries()) {
      // A large batch is built in chunks, so that the intake keeps answering meanwhile.
      if (i % 16 === 15) await new Promise((resolve) => setImmediate(resolve));
      let data = this.callData.get(e);
      if (data === undefined) {
        try {
          data = encodeCall(e.body as SignedDeviceMessage).data;
        } catch (err) {
          await this.finish(e, "failed", `cannot encode the call: ${(err as Error).message}`);
          continue;
        }
        this.callData.set(e, data);
      }
      calls.set(e, data);
      list.push(e);
    }
    while (list.length > 0) {
      const data = this.encodeBatch(target, list, calls);
      const full = await this.estimate(to, data);
      if (full.ok) return { entries: list, gas: full.value, data, to };
      // Bisect: the shortest failing prefix ends with the first failing message.
      let [lo, hi, reason] = [0, list.length, full.reason];
      while (hi - lo > 1) {
        const mid = (lo + hi) >> 1;
        const r = await this.estimate(to, this.encodeBatch(target, list.slice(0, mid), calls));
        if (r.ok) lo = mid;
        else [hi, reason] = [mid, r.reason];
      }
      const bad = list[hi - 1];
      await this.dropFailing(bad, reason);
      const dependent = new Set([bad.lane]);
      if (bad.lane.startsWith("c:")) dependent.add(`d:${deviceIdOf(bad.lane.slice(2))}`);
      list = list.filter((e, i) => i < hi - 1 || !dependent.has(e.lane));
    }
    return null;
  }

  /** Simulates each forwarded call from the forwarder, then the whole batch in atomic mode. */
  private async simulateForward(candidates: Entry[]): Promise<Simulated | null> {
    const inner = await Promise.all(
      candidates.map((e) => {
        const b = e.body as ForwardRequestBody;
        this.metrics.simulations++;
        return tryCall(() =>
          this.ctx.provider.call({ from: this.ctx.forwarder, to: b.to, data: b.data + b.from.slice(2) }),
        );
      }),
    );
    let list: Entry[] = [];
    for (let i = 0; i < candidates.length; i++) {
      const r = inner[i];
      if (r.ok) list.push(candidates[i]);
      else await this.dropFailing(candidates[i], r.reason);
    }
    const tuples = new Map(list.map((e) => [e, forwardTuple(e.body as ForwardRequestBody)]));
    while (list.length > 0) {
      const atomic = await this.estimate(
        this.ctx.forwarder,
        this.executeBatch(
          list.map((e) => tuples.get(e)!),
          "0x0000000000000000000000000000000000000000",
        ),
      );
      if (atomic.ok) {
        const data = this.executeBatch(
          list.map((e) => tuples.get(e)!),
          this.ctx.relayer,
        );
        return { entries: list, gas: atomic.value, data, to: this.ctx.forwarder };
      }
      let [lo, hi, reason] = [0, list.length, atomic.reason];
      while (hi - lo > 1) {
        const mid = (lo + hi) >> 1;
        const r = await this.estimate(
          this.ctx.forwarder,
          this.executeBatch(
            list.slice(0, mid).map((e) => tuples.get(e)!),
            "0x0000000000000000000000000000000000000000",
          ),
        );
        if (r.ok) lo = mid;
        else [hi, reason] = [mid, r.reason];
      }
      await this.dropFailing(list[hi - 1], reason);
      list = list.filter((_, i) => i !== hi - 1);
    }
    return null;
  }

  /** A message that fails in simulation: `spent` when it (or its nonce) already landed, else `failed`. */
  private async dropFailing(e: Entry, reason: string): Promise<void> {
    if (await this.isSpent(e)) await this.finish(e, "spent", `already landed elsewhere (${reason})`);
    else await this.finish(e, "failed", reason);
  }

  /**
   * Whether the chain has `e` (or its nonce, sequence number or amount) already: only then is a
   * message `spent`; anything else that fails is `failed`, with its reason.
   */
  private async isSpent(e: Entry): Promise<boolean> {
    if (e.kind === "device") {
      const m = e.body as SignedDeviceMessage;
      const chain = this.ctx.chain;
      // Read here, not through src/messages' isSpent: a checkpoint of a delivered shipment or a
      // voucher of a closed channel never landed.
      if (m.type === "Checkpoint")
        return !!chain.custodyContract && (await chain.shipment(e.lane.slice(2))).checkpointSeq >= e.nonce!;
      if (m.type === "Voucher")
        return !!chain.channelsContract && (await chain.channel(e.lane.slice(2))).paid >= e.nonce!;
      if (m.type === "UnlockLog")
        return !!chain.lockContract && (await chain.lockNextSeq(BigInt(e.lane.slice(2)))) > e.nonce!;
      return isSpent(m, this.ctx.provider, {
        registry: this.ctx.registry,
        ...(this.ctx.beacons ? { locationBeacons: this.ctx.beacons } : {}),
      });
    }
    const from = (e.body as ForwardRequestBody).from;
    this.ctx.chain.invalidateSigner(from);
    return (await this.ctx.chain.forwardNonce(from)) > e.nonce!;
  }

  private async finish(e: Entry, status: "confirmed" | "failed" | "spent", error?: string): Promise<void> {
    if (status === "failed") this.metrics.failed++;
    if (status === "spent") this.metrics.spent++;
    if (status !== "confirmed")
      this.ctx.log.info(
        { event: status, id: e.id, lane: e.lane, nonce: e.nonce?.toString(), error },
        `message ${status}`,
      );
    await this.ctx.store.setStatus(e, status, error === undefined ? {} : { error });
  }

  // ------------------------------------------------------------------ sending

  private async send(kind: MessageKind, batch: Simulated): Promise<void> {
    const { provider, wallet, chainId } = this.ctx;
    const to = batch.to;
    let gasLimit = (batch.gas * 6n) / 5n + 25_000n;
    if (kind === "forward") {
      // The forwarder must be able to hand each request its full gas (63/64 rule), or it burns all.
      const floor = batch.entries.reduce(
        (sum, e) => sum + (BigInt((e.body as ForwardRequestBody).gas) * 64n) / 63n + 40_000n,
        50_000n,
      );
      if (gasLimit < floor) gasLimit = floor;
    }
    this.accountNonce ??= await provider.getTransactionCount(this.ctx.relayer, "pending");
    const fee = await provider.getFeeData();
    const maxPriorityFeePerGas = fee.maxPriorityFeePerGas ?? 1_000_000_000n;
    let maxFeePerGas = fee.maxFeePerGas ?? (fee.gasPrice ?? 0n) * 2n + maxPriorityFeePerGas;
    if (maxFeePerGas < maxPriorityFeePerGas) maxFeePerGas = maxPriorityFeePerGas;
    const { raw, hash } = signEip1559(
      {
        chainId,
        nonce: this.accountNonce,
        to,
        data: batch.data,
        value: 0n,
        gasLimit,
        maxFeePerGas,
        maxPriorityFeePerGas,
      },
      wallet.signingKey,
    );
    await this.ctx.store.recordTx(
      { hash, raw, kind, ids: batch.entries.map((e) => e.id), nonce: this.accountNonce, to, data: batch.data },
      batch.entries,
    );
    this.ctx.chain.markOwnTx(hash);
    this.metrics.batches++;
    this.ctx.log.info(
      { event: "batch", kind, tx: hash, messages: batch.entries.length, gasLimit: gasLimit.toString() },
      "batch signed",
    );
    await this.ctx.config.hooks.beforeBroadcast?.(hash);
    const outcome = await this.broadcast(raw, hash);
    if (outcome === "dropped") {
      await this.requeue(batch.entries, hash, "dropped");
      return;
    }
    this.accountNonce++;
    await this.ctx.config.hooks.afterBroadcast?.(hash);
    const receipt = await this.waitReceipt(hash, raw);
    if (receipt) await this.settle(kind, batch.entries, receipt);
  }

  /** Sends `raw` until the node has it. "dropped" when its account nonce went to another transaction. */
  private async broadcast(raw: string, hash: string): Promise<"sent" | "dropped"> {
    for (let attempt = 0; ; attempt++) {
      try {
        await this.ctx.provider.send("eth_sendRawTransaction", [raw]);
        return "sent";
      } catch (err) {
        const text = errorText(err);
        if (/already known|known transaction|already imported/i.test(text)) return "sent";
        if (/nonce too low|nonce has already been used|replacement transaction underpriced/i.test(text)) {
          const known = await this.ctx.provider.getTransaction(hash).catch(() => null);
          if (known) return "sent";
          this.accountNonce = undefined;
          this.ctx.log.warn({ event: "tx_dropped", tx: hash, err: text }, "account nonce taken by another transaction");
          return "dropped";
        }
        if (!this.running) throw err;
        this.ctx.log.warn({ event: "broadcast_error", tx: hash, err: text }, "broadcast failed; retrying");
        await this.sleep(BROADCAST_RETRY_MS[Math.min(attempt, BROADCAST_RETRY_MS.length - 1)]);
        if (!this.running) throw err;
      }
    }
  }

  /** Polls for the receipt (quickly at first); rebroadcasts if the node forgot the transaction. Null when stopping. */
  private async receipt(hash: string): Promise<Receipt | null> {
    const r = (await this.ctx.provider.send("eth_getTransactionReceipt", [hash])) as {
      status: string;
      gasUsed: string;
      blockNumber: string | null;
      logs: RawLog[];
    } | null;
    if (!r || r.blockNumber === null) return null;
    return {
      hash,
      status: Number(r.status),
      gasUsed: BigInt(r.gasUsed),
      blockNumber: Number(r.blockNumber),
      logs: r.logs,
    };
  }

  private async waitReceipt(hash: string, raw?: string): Promise<Receipt | null> {
    let delay = 5;
    let lastSeen = Date.now();
    while (this.running) {
      const receipt = await this.receipt(hash).catch(() => null);
      if (receipt) return receipt;
      if (raw && Date.now() - lastSeen > 15_000) {
        lastSeen = Date.now();
        const known = await this.ctx.provider.getTransaction(hash).catch(() => undefined);
        if (known === null) await this.ctx.provider.send("eth_sendRawTransaction", [raw]).catch(() => undefined);
      }
      await this.sleep(delay);
      delay = Math.min(delay * 2, 1000);
    }
    return null;
  }

  /** Applies a batch transaction's receipt to its messages. */
  private async settle(kind: MessageKind, entries: Entry[], receipt: Receipt): Promise<void> {
    this.metrics.gasUsed += receipt.gasUsed;
    if (receipt.status === 1 && kind === "device") {
      // The next nonce of each lane (`d:` device nonces, `b:` beacon nonces) the batch moved.
      const next = new Map<string, bigint>();
      for (const e of entries)
        if (e.nonce !== null && (next.get(e.lane) ?? -1n) < e.nonce + 1n) next.set(e.lane, e.nonce + 1n);
      this.ctx.chain.applyOwnReceipt(receipt.logs, next);
    } else {
      this.ctx.chain.noteReceipt(receipt.blockNumber, receipt.logs);
    }
    if (receipt.status !== 1) {
      this.metrics.revertedTxs++;
      this.ctx.log.warn({ event: "tx_reverted", tx: receipt.hash }, "batch reverted on chain; simulating again");
      for (const e of entries) {
        if (e.lane.startsWith("b:")) this.ctx.chain.invalidateBeaconNonce(BigInt(e.lane.slice(2)));
        else if (e.kind === "device")
          this.ctx.chain.invalidateDevice(BigInt(e.lane.startsWith("d:") ? e.lane.slice(2) : 0));
        else this.ctx.chain.invalidateSigner((e.body as ForwardRequestBody).from);
      }
      await this.requeue(entries, receipt.hash, "reverted");
      return;
    }
    if (kind === "device") {
      this.metrics.landed += entries.length;
      await Promise.all(entries.map((e) => this.finish(e, "confirmed")));
    } else {
      const iface = this.ctx.chain.forwarderContract.interface;
      const executed = new Map<string, boolean>();
      for (const log of receipt.logs) {
        if (log.address.toLowerCase() !== this.ctx.forwarder.toLowerCase()) continue;
        const parsed = iface.parseLog({ topics: [...log.topics], data: log.data });
        if (parsed?.name === "ExecutedForwardRequest")
          executed.set(`${String(parsed.args.signer).toLowerCase()}:${parsed.args.nonce}`, parsed.args.success);
      }
      for (const e of entries) {
        const b = e.body as ForwardRequestBody;
        const success = executed.get(`${b.from}:${e.nonce}`);
        if (success === true) {
          this.metrics.landed++;
          await this.finish(e, "confirmed");
        } else if (success === false) {
          await this.finish(e, "failed", "the forwarded call reverted (the request used its nonce)");
        } else if (await this.isSpent(e)) {
          await this.finish(e, "spent", "its forwarder nonce was used by another transaction");
        } else {
          await this.ctx.store.setStatus(e, "accepted");
        }
      }
    }
    this.ctx.log.info(
      { event: "batch_mined", kind, tx: receipt.hash, block: receipt.blockNumber, gasUsed: receipt.gasUsed.toString() },
      "batch mined",
    );
    await this.ctx.store.txDone(receipt.hash, "mined");
  }

  private async requeue(entries: Entry[], hash: string, outcome: string): Promise<void> {
    await Promise.all(
      entries.filter((e) => e.status === "submitted").map((e) => this.ctx.store.setStatus(e, "accepted")),
    );
    await this.ctx.store.txDone(hash, outcome);
  }

  // ------------------------------------------------------------------ recovery

  /** Resolves what a previous run left in flight, then retires queued messages that landed elsewhere. */
  private async recover(): Promise<void> {
    const store = this.ctx.store;
    // A transaction's messages: those its record names (a crash can tear the log right after the
    // record, before every status line) and those marked submitted with it.
    const byTx = new Map<string, Set<Entry>>();
    const add = (hash: string, e: Entry | undefined) => {
      if (!byTx.has(hash)) byTx.set(hash, new Set());
      if (e && !FINAL.has(e.status)) byTx.get(hash)!.add(e);
    };
    for (const [hash, rec] of store.openTxs) {
      add(hash, undefined);
      for (const id of rec.ids) add(hash, store.entries.get(id));
    }
    for (const e of store.entries.values()) if (e.status === "submitted" && e.txHash) add(e.txHash, e);
    for (const [hash, set] of byTx) {
      const entries = [...set];
      const rec = store.openTxs.get(hash);
      let receipt = await this.receipt(hash);
      if (!receipt) {
        const pending = await this.ctx.provider.getTransaction(hash);
        if (!pending && rec) {
          // Signed and persisted, but the node never got it (or dropped it): send it as it is, if it still works.
          const sim = await this.estimate(rec.to, rec.data);
          const nonce = await this.ctx.provider.getTransactionCount(this.ctx.relayer, "pending");
          if (sim.ok && nonce === rec.nonce)
            await Promise.all(entries.map((e) => store.setStatus(e, "submitted", { txHash: hash })));
          if (sim.ok && nonce === rec.nonce && (await this.broadcast(rec.raw, hash)) === "sent") {
            this.ctx.log.info({ event: "rebroadcast", tx: hash }, "rebroadcast a batch signed before a crash");
            receipt = await this.waitReceipt(hash, rec.raw);
          }
        } else if (pending) {
          receipt = await this.waitReceipt(hash, rec?.raw);
        }
        if (!this.running) return;
      }
      const kind = rec?.kind ?? entries[0]?.kind ?? "device";
      if (receipt) await this.settle(kind, entries, receipt);
      else await this.requeue(entries, hash, "dropped");
    }
    this.accountNonce = undefined;
    let spent = 0;
    // Messages accepted by a run that was given a contract this one was not: it cannot deliver them.
    const flags = {
      beacons: "LocationBeacons (--location-beacons)",
      locks: "LockAccess (--lock-access)",
      channels: "PaymentChannels (--payment-channels)",
      custody: "CustodyLedger (--custody-ledger)",
    } as const;
    for (const e of [...store.entries.values()]) {
      if (e.status !== "accepted" || e.kind !== "device") continue;
      const target = targetOfLane(e.lane);
      if (target !== "registry" && !this.addressOf(target))
        await this.finish(e, "failed", `this relayer was not given ${flags[target]}`);
    }
    const queued = [...store.entries.values()].filter((e) => e.status === "accepted");
    const checks = await Promise.all(queued.map((e) => this.isSpent(e)));
    for (let i = 0; i < queued.length; i++)
      if (checks[i]) {
        spent++;
        await this.finish(queued[i], "spent", "already landed (found at restart)");
      }
    if (byTx.size || queued.length)
      this.ctx.log.info(
        { event: "resumed", transactions: byTx.size, queued: queued.length - spent, spent },
        "resumed after restart",
      );
  }
}

function errorText(err: unknown): string {
  const e = err as { message?: string; info?: { error?: { message?: string } }; error?: { message?: string } };
  return [e.message, e.info?.error?.message, e.error?.message].filter(Boolean).join(" | ");
}

/** The bodies of `meter serve` and `meter pay` (loaded only when they run). */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { createInterface } from "node:readline";
import type { AddressInfo } from "node:net";
import { keccak256, type Provider } from "ethers";
import { PaymentChannels__factory } from "../../../typechain-types/factories/contracts/payments/PaymentChannels__factory.js";
import type { DeviceKey } from "../../crypto/deviceKey.js";
import { DeviceSignatureVerifier } from "../../crypto/verify.js";
import { TypedDataHasher } from "../../eip712/fast.js";
import { Chain } from "../client.js";
import { preflight } from "../preflight.js";
import {
  MeterPayee,
  MeterPayer,
  termsFromOpened,
  type ChannelTerms,
  type MeterSource,
  type SignedVoucher,
} from "../roles/meter.js";
import { VoucherReports } from "../roles/voucherReports.js";
import type { Logger } from "../log.js";
import {
  CliError,
  EXIT,
  loadSigners,
  pickSigner,
  print,
  readText,
  requireRegistry,
  requireRpc,
  withStack,
  type Ctx,
} from "./common.js";
import { deliverAndReport } from "./deliver.js";

/** A channel's terms from its `ChannelOpened` event, and its deposit now; refuses an unknown or closed one. */
async function channelOf(provider: Provider, address: string, channel: string, flag: string) {
  const channels = PaymentChannels__factory.connect(address, provider);
  const opened = await channels.queryFilter(channels.filters.ChannelOpened(channel), 0, "latest");
  if (opened.length === 0)
    throw new CliError(`${flag} ${channel}: no such channel on the PaymentChannels at --payment-channels ${address}`);
  const terms = termsFromOpened(opened[0].args);
  const state = await channels.channelState(channel);
  if (state.deposit === 0n) throw new CliError(`${flag} ${channel}: the channel is closed`);
  return { terms, deposit: state.deposit, paid: state.paid };
}

// ---------------------------------------------------------------- payee

export interface ServeOptions {
  channels: string[];
  price: bigint;
  minClaim: bigint;
  host: string;
  port: number;
  claimMs: number;
  watchMs: number;
  timeout?: string;
  /** Guardians' base URLs the payers' vouchers are reported to (none: not reported). */
  guardians: string[];
  /** Least time between two reports of one channel (ms). */
  guardianReportMs: number;
}

export async function serveMeter(ctx: Ctx, o: ServeOptions): Promise<number> {
  const cfg = ctx.config();
  let code: number = EXIT.ok;
  await withStack(
    ctx,
    async (stack, checked) => {
      const log = ctx.logger().child({ role: "meter-payee" });
      const address = checked.deployment.paymentChannels!;
      const verifier = new DeviceSignatureVerifier(cfg.verifier ? [cfg.verifier] : []);
      const payee = MeterPayee.open({
        hasher: stack.hasher,
        deployment: { chainId: checked.chainId, verifyingContract: address },
        verifier,
        dataDir: cfg.dataDir,
        outbox: stack.outbox,
        provider: stack.chain.provider,
        minClaimValue: o.minClaim,
        logger: log,
      });
      // Channels served but not in the payee's book yet: added at the first voucher, whose key
      // must be the one the channel pins.
      const waiting = new Map<string, { terms: ChannelTerms; deposit: bigint }>();
      const known = new Set(payee.list());
      for (const [i, channel] of o.channels.entries()) {
        const c = await channelOf(
          stack.chain.provider,
          address,
          channel,
          o.channels.length > 1 ? `--channel[${i}]` : "--channel",
        );
        if (!known.has(channel)) waiting.set(channel, c);
      }
      const reports =
        o.guardians.length > 0
          ? new VoucherReports({ payee, guardians: o.guardians, intervalMs: o.guardianReportMs, logger: log })
          : undefined;
      const server = payeeServer({ payee, waiting, price: o.price, log, reports });
      await new Promise<void>((resolve, reject) => {
        server.once("error", (err: NodeJS.ErrnoException) =>
          reject(new CliError(`--port ${o.port}: cannot listen on ${o.host} (${err.code ?? err.message})`)),
        );
        server.listen(o.port, o.host, resolve);
      });
      const { port } = server.address() as AddressInfo;
      const url = `http://${o.host}:${port}`;
      print(ctx.io, { url, channels: o.channels });
      log.info("meter payee serving", { url, channels: o.channels.length, guardians: o.guardians.length });

      const delivering = stack.dispatcher.drain({ watch: true });
      const safely = (what: string, fn: () => Promise<unknown>) => () =>
        void fn().catch((err: Error) => log.warn(`${what} failed; will try again`, { error: err.message }));
      const timers = [
        setInterval(
          safely("claim", () => payee.claimDue()),
          o.claimMs,
        ),
        setInterval(
          safely("watch", () => payee.watch()),
          o.watchMs,
        ),
      ];
      await new Promise<void>((resolve) => {
        process.once("SIGINT", resolve);
        process.once("SIGTERM", resolve);
      });
      for (const t of timers) clearInterval(t);
      await new Promise((r) => server.close(r));
      // Bounded (the request timeout): it goes on while the last claims are made and delivered.
      const reported = reports?.close();
      await payee.claimDue().catch((err: Error) => log.warn("last claim failed", { error: err.message }));
      const ids = stack.outbox
        .live()
        .filter((e) => e.type === "Voucher")
        .map((e) => e.id);
      code = await deliverAndReport(ctx, stack, ids, { timeout: o.timeout });
      await delivering;
      await reported;
      await payee.close();
    },
    { need: ["paymentChannels"] },
  );
  return code;
}

export interface PayeeHttp {
  payee: MeterPayee;
  /** Channels served but not in the payee's book yet (added at their first voucher). */
  waiting: Map<string, { terms: ChannelTerms; deposit: bigint }>;
  /** The price of one unit a channel added at its first voucher sells at. */
  price: bigint;
  log: Logger;
  /** Where accepted vouchers are reported to guardians (none: not reported). */
  reports?: VoucherReports;
}

/** The payee's HTTP side, as `meter serve` listens with it: `POST /v1/vouchers`, `GET /v1/channels/:id`. */
export function payeeServer({ payee, waiting, price, log, reports }: PayeeHttp): Server {
  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? "/", "http://x");
    const m = /^\/v1\/channels\/(0x[0-9a-fA-F]{64})$/.exec(url.pathname);
    if (req.method === "GET" && m) {
      const id = m[1].toLowerCase();
      if (!payee.list().includes(id)) {
        if (waiting.has(id)) return send(res, 200, { channel: id, vouchers: 0 });
        return send(res, 404, { error: `channel ${id} is not served here` });
      }
      const best = payee.best(id);
      return send(res, 200, { channel: id, ...payee.state(id), best: best?.cumulativeAmount });
    }
    if (req.method !== "POST" || url.pathname !== "/v1/vouchers")
      return send(res, 404, { error: `no route ${req.method} ${url.pathname}` });
    if (!/^application\/json\b/.test(req.headers["content-type"] ?? ""))
      return send(res, 415, { error: "content-type must be application/json" });
    const body = await readBody(req, 64 * 1024);
    if (body === undefined) return send(res, 413, { error: "body larger than 64 KB" });
    let v: Record<string, unknown>;
    try {
      v = JSON.parse(body) as Record<string, unknown>;
    } catch {
      return send(res, 400, { error: "body is not valid JSON" });
    }
    const bad = (field: string, what: string) => send(res, 400, { error: `${field} must be ${what}`, field });
    if (typeof v.channel !== "string" || !/^0x[0-9a-fA-F]{64}$/.test(v.channel))
      return bad("channel", "32 bytes of hex");
    if (typeof v.cumulativeAmount !== "string" || !/^[0-9]{1,78}$/.test(v.cumulativeAmount))
      return bad("cumulativeAmount", "a decimal integer string");
    if (typeof v.key !== "string" || !/^0x([0-9a-fA-F]{2}){20,}$/.test(v.key)) return bad("key", "hex bytes");
    if (typeof v.signature !== "string" || !/^0x([0-9a-fA-F]{2})+$/.test(v.signature))
      return bad("signature", "hex bytes");
    const channel = v.channel.toLowerCase();
    const pending = waiting.get(channel);
    if (pending) {
      if (keccak256(v.key) !== pending.terms.payerKeyHash.toLowerCase())
        return send(res, 409, { accepted: false, reason: "not-payer-key" });
      await payee.addChannel({ ...pending, pricePerUnit: price, payerKey: v.key });
      waiting.delete(channel);
    } else if (!payee.list().includes(channel)) {
      return send(res, 404, { accepted: false, reason: "unknown-channel" });
    }
    const voucher: SignedVoucher = {
      channel,
      cumulativeAmount: BigInt(v.cumulativeAmount),
      key: v.key,
      signature: v.signature,
    };
    const r = payee.accept(voucher);
    if (!r.accepted) {
      log.warn("voucher refused", { channel, amount: v.cumulativeAmount, reason: r.reason });
      return send(res, 409, { accepted: false, reason: r.reason });
    }
    await r.persisted; // on disk before it is acknowledged
    reports?.accepted(channel); // returns at once: guardians never delay the payer's answer
    const now = BigInt(Math.floor(Date.now() / 1000));
    log.debug("voucher accepted", { channel, amount: v.cumulativeAmount });
    return send(res, 200, {
      accepted: true,
      channel,
      cumulativeAmount: v.cumulativeAmount,
      backed: payee.backed(channel, now).toString(),
    });
  };
  return createServer((req, res) => {
    handle(req, res).catch((err: Error) => {
      log.error("request failed", { error: err.message });
      if (!res.headersSent) send(res, 500, { error: "internal error" });
      else res.destroy();
    });
  });
}

function send(res: ServerResponse, status: number, body: unknown): void {
  // Amounts are bigints: serialised as decimal strings, before the head goes out, so a body that
  // cannot be written never leaves a response half sent.
  const text = JSON.stringify(body, (_key, value) => (typeof value === "bigint" ? value.toString() : value));
  res.writeHead(status, { "content-type": "application/json" });
  res.end(text);
}

function readBody(req: IncomingMessage, limit: number): Promise<string | undefined> {
  return new Promise((resolve, reject) => {
    let size = 0;
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => {
      size += c.length;
      if (size > limit) {
        resolve(undefined);
        req.destroy();
      } else chunks.push(c);
    });
    req.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    req.on("error", reject);
  });
}

// ---------------------------------------------------------------- payer

export interface PayOptions {
  channel: string;
  payee: string;
  price: bigint;
  ahead: bigint;
  source: "simulated" | "file" | "stdin";
  readings?: string;
  rate: bigint;
  intervalMs: number;
  units?: bigint;
  durationS?: number;
  device?: string;
}

/** A meter whose cumulative reading is set from outside (a file or stdin), never going down. */
class FedMeter implements MeterSource {
  private units = 0n;
  set(units: bigint, where: string): void {
    if (units < this.units)
      throw new CliError(`${where}: the meter went down (${units} < ${this.units}); readings are cumulative`);
    this.units = units;
  }
  read(): bigint {
    return this.units;
  }
}

export async function payMeter(ctx: Ctx, o: PayOptions): Promise<number> {
  const cfg = ctx.config();
  const log = ctx.logger().child({ role: "meter-payer", channel: o.channel });
  const rpc = requireRpc(cfg, "the payer reads its channel's terms from the chain");
  const registry = requireRegistry(cfg);
  if (!cfg.paymentChannels) throw new CliError("--payment-channels (or CUSTOS_PAYMENT_CHANNELS) is required");
  const key = (await pickSigner(await loadSigners(cfg, ctx.io.env), o.device)) as DeviceKey;
  const checked = await preflight({
    rpc,
    chainId: cfg.chainId,
    contracts: { registry, paymentChannels: cfg.paymentChannels },
    signers: [{ signer: key.signer, file: cfg.keystore[0] ?? "(key)" }],
    logger: ctx.logger(),
  });
  const address = checked.deployment.paymentChannels!;
  const provider = Chain.provider(rpc, checked.chainId);
  let terms: ChannelTerms;
  try {
    ({ terms } = await channelOf(provider, address, o.channel, "--channel"));
  } finally {
    provider.destroy();
  }
  if (keccak256(key.signer) !== terms.payerKeyHash.toLowerCase())
    throw new CliError(
      `--keystore: key ${key.signer.slice(0, 12)}… is not the key channel ${o.channel} was opened with`,
    );

  const fed = new FedMeter();
  const simulated = { units: 0n };
  const meter: MeterSource = o.source === "simulated" ? { read: () => simulated.units } : fed;
  const payer = new MeterPayer({
    key,
    hasher: await TypedDataHasher.create(),
    deployment: { chainId: checked.chainId, verifyingContract: address },
    terms,
    pricePerUnit: o.price,
    aheadUnits: o.ahead,
    meter,
  });
  const stats = { sent: 0, accepted: 0, refused: 0, unreachable: 0, lastRefusal: undefined as string | undefined };
  const post = async (v: SignedVoucher) => {
    stats.sent++;
    let res: Response;
    try {
      res = await fetch(`${o.payee}/v1/vouchers`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({
          channel: v.channel,
          cumulativeAmount: v.cumulativeAmount.toString(),
          key: v.key,
          signature: v.signature,
        }),
        signal: AbortSignal.timeout(10_000),
      });
    } catch (err) {
      stats.unreachable++;
      log.warn("payee unreachable; the next voucher covers this one", {
        payee: o.payee,
        error: (err as Error).message,
      });
      return;
    }
    const body = (await res.json().catch(() => ({}))) as { reason?: string; error?: string };
    // "not-higher": the payee already holds this much (a retried voucher): nothing is owed.
    if (res.ok || body.reason === "not-higher") {
      stats.accepted++;
      log.debug("voucher accepted", { amount: v.cumulativeAmount.toString() });
    } else {
      stats.refused++;
      stats.lastRefusal = `${res.status} ${body.reason ?? body.error ?? ""}`.trim();
      log.warn("payee refused the voucher", { amount: v.cumulativeAmount.toString(), reason: stats.lastRefusal });
    }
  };

  let stop!: () => void;
  const stopped = new Promise<void>((resolve) => (stop = resolve));
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
  const timers: NodeJS.Timeout[] = [];
  if (o.durationS !== undefined) timers.push(setTimeout(stop, o.durationS * 1000));
  const reached = () => o.units !== undefined && meter.read() >= o.units;
  log.info("meter payer started", { payee: o.payee, source: o.source });
  try {
    if (o.source === "simulated") {
      const started = Date.now();
      let busy = false;
      const tick = async () => {
        if (busy) return;
        busy = true;
        try {
          const consumed = (o.rate * BigInt(Date.now() - started)) / 1000n;
          simulated.units = o.units !== undefined && consumed > o.units ? o.units : consumed;
          const v = payer.pay();
          if (v) await post(v);
          if (reached()) stop();
        } finally {
          busy = false;
        }
      };
      timers.push(setInterval(() => void tick(), o.intervalMs));
      await stopped;
      await tick();
    } else {
      const source =
        o.source === "file"
          ? readText(o.readings!, "--readings").split("\n")
          : createInterface({ input: process.stdin });
      const where = o.source === "file" ? `--readings ${o.readings}` : "stdin";
      const feeding = (async () => {
        let n = 0;
        for await (const line of source) {
          n++;
          if (line.trim().length === 0) continue;
          if (!/^[0-9]+$/.test(line.trim()))
            throw new CliError(
              `${where}:${n}: a reading is the cumulative units consumed (an integer), not ${line.trim()}`,
            );
          fed.set(BigInt(line.trim()), `${where}:${n}`);
          const v = payer.pay();
          if (v) await post(v);
          if (reached()) break;
        }
      })();
      await Promise.race([stopped, feeding]);
      if (o.source === "stdin") process.stdin.destroy(); // stopped early: stop reading
    }
  } finally {
    for (const t of timers) clearInterval(t);
    process.off("SIGINT", stop);
    process.off("SIGTERM", stop);
  }
  print(ctx.io, {
    channel: o.channel,
    units: meter.read(),
    paid: payer.paid,
    vouchers: { sent: stats.sent, accepted: stats.accepted, refused: stats.refused, unreachable: stats.unreachable },
  });
  if (stats.refused > 0) {
    ctx.io.stderr.write(`custos-agent: refused: the payee refused a voucher (${stats.lastRefusal})\n`);
    return EXIT.refused;
  }
  if (stats.sent > 0 && stats.accepted === 0) {
    ctx.io.stderr.write(`custos-agent: failed: the payee at --payee ${o.payee} never answered\n`);
    return EXIT.failure;
  }
  return EXIT.ok;
}

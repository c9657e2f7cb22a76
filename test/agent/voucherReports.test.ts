/**
 * A payee reports its payers' vouchers to guardians (`roles/voucherReports.ts`, `meter serve
 * --guardian`). A node:http server stands in for a guardian's network side (`POST /vouchers`) and
 * records what arrives; the payer talks to the payee's own HTTP side (`payeeServer`), as in
 * `meter serve`.
 */
import { expect } from "chai";
import { createServer, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { getBytes } from "ethers";
import { loadFixture } from "../helpers/hardhat.js";
import { digest } from "../../src/eip712/index.js";
import { TypedDataHasher } from "../../src/eip712/fast.js";
import { DeviceSignatureVerifier } from "../../src/crypto/verify.js";
import { randomDeviceKey } from "../../src/crypto/deviceKey.js";
import { checkShape, type SignedDeviceMessage } from "../../src/messages/index.js";
import { createLogger, silentLogger } from "../../src/agent/log.js";
import {
  MeterPayer,
  SimulatedMeter,
  channelIdOf,
  termsFromJson,
  type SignedVoucher,
} from "../../src/agent/roles/meter.js";
import { VoucherReports } from "../../src/agent/roles/voucherReports.js";
import { payeeServer } from "../../src/agent/commands/meterRun.js";
import { guardianUrls } from "../../src/agent/commands/meter.js";
import { CliError } from "../../src/agent/commands/common.js";
import { METER_PRICE, eventually, meterFixture, meterSetup, type MeterFixture, type Opened } from "./helpers.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A guardian's network side: records each request, answers as told, after `delayMs`. */
class FakeGuardian {
  readonly received: { method?: string; path?: string; contentType?: string; body: SignedDeviceMessage }[] = [];
  delayMs = 0;
  answer: { status: number; body: object } = { status: 202, body: { accepted: true } };
  port = 0;
  private server: Server | undefined;
  private readonly answering = new Set<NodeJS.Timeout>();

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** The amounts reported, in the order they arrived. */
  amounts(): bigint[] {
    return this.received.map((r) => BigInt(String(r.body.message.cumulativeAmount)));
  }

  async start(port = this.port): Promise<this> {
    const server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        this.received.push({
          method: req.method,
          path: req.url,
          contentType: req.headers["content-type"],
          body: JSON.parse(Buffer.concat(chunks).toString("utf8")) as SignedDeviceMessage,
        });
        const { status, body } = this.answer;
        const reply = (r: ServerResponse) =>
          r.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(body));
        if (this.delayMs === 0) return reply(res);
        const t = setTimeout(() => {
          this.answering.delete(t);
          reply(res);
        }, this.delayMs);
        this.answering.add(t);
      });
    });
    await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve));
    this.port = (server.address() as AddressInfo).port;
    this.server = server;
    return this;
  }

  /** Stops answering at all: connections refused until `start` again. */
  async stop(): Promise<void> {
    for (const t of this.answering) clearTimeout(t);
    this.answering.clear();
    const server = this.server;
    this.server = undefined;
    if (!server) return;
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  }

  close(): Promise<void> {
    return this.stop();
  }
}

describe("meter payee: its payers' vouchers reported to guardians", function () {
  this.timeout(60_000);
  let hasher: TypedDataHasher;
  const open: Opened = [];

  before(async function () {
    hasher = await TypedDataHasher.create();
  });
  afterEach(async function () {
    for (const o of open.splice(0).reverse()) await o.close();
  });

  /** Guardians listening (the first `down` of them stopped again: their port refuses connections). */
  async function guardians(n: number, down = 0): Promise<FakeGuardian[]> {
    const gs = await Promise.all(Array.from({ length: n }, () => new FakeGuardian().start()));
    open.push(...gs);
    for (const g of gs.slice(0, down)) await g.stop();
    return gs;
  }

  /** A channel, its payee serving HTTP as `meter serve` does, and its reports to `gs`. */
  async function payeeWith(f: MeterFixture, gs: FakeGuardian[], reportOpts: { intervalMs: number; logs?: string[] }) {
    const s = await meterSetup(f, hasher, open);
    const logger = reportOpts.logs
      ? createLogger({ level: "debug", stream: { write: (line: string) => reportOpts.logs!.push(line) } })
      : silentLogger;
    const reports = new VoucherReports({
      payee: s.payee,
      guardians: gs.map((g) => g.url),
      intervalMs: reportOpts.intervalMs,
      logger,
    });
    const server = payeeServer({ payee: s.payee, waiting: new Map(), price: METER_PRICE, log: silentLogger, reports });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    open.push({
      close: () => {
        server.closeAllConnections();
        return new Promise((r) => server.close(r));
      },
    });
    open.push(reports);
    /** The payer sends `v` to the payee: its answer, and how long it took. */
    const post = async (v: SignedVoucher) => {
      const started = performance.now();
      const res = await fetch(`${url}/v1/vouchers`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ ...v, cumulativeAmount: v.cumulativeAmount.toString() }),
      });
      const body = (await res.json()) as { accepted: boolean; reason?: string };
      return { status: res.status, body, ms: performance.now() - started };
    };
    /** The payer's meter goes on by `units`, and it pays for them: the voucher, accepted. */
    const pay = async (units = 5n) => {
      s.meter.add(units);
      const v = s.payer.pay()!;
      const r = await post(v);
      expect(r.status, JSON.stringify(r.body)).to.equal(200);
      return { v, ms: r.ms };
    };
    return { ...s, reports, post, pay };
  }

  it("each guardian gets the voucher as the device message that claims it: POST /vouchers, a Voucher whose signature verifies with the catalogue digest and whose terms hash to the channel", async function () {
    const f = await loadFixture(meterFixture);
    const gs = await guardians(2);
    const s = await payeeWith(f, gs, { intervalMs: 60_000 });
    const { v } = await s.pay();
    await eventually(() => gs.every((g) => g.received.length === 1), 10_000, "a report at each guardian");
    const deployment = { chainId: f.channelDeployment.chainId, verifyingContract: await f.channels.getAddress() };
    const verifier = new DeviceSignatureVerifier([f.verifierAddress]);
    for (const g of gs) {
      const [r] = g.received;
      expect(r).to.include({ method: "POST", path: "/vouchers", contentType: "application/json" });
      const m = checkShape(r.body);
      expect(m.type).to.equal("Voucher");
      expect(m.key).to.equal(f.payerKeys[0].signer.toLowerCase());
      expect(m.message).to.deep.equal({ channel: s.id, cumulativeAmount: v.cumulativeAmount.toString() });
      const d = getBytes(digest("Voucher", deployment, m.message));
      expect(verifier.verify(m.key, d, getBytes(m.signature)), "signature by the channel's key").to.equal(true);
      expect(channelIdOf(termsFromJson(m.terms!))).to.equal(s.id);
      // The claim's builder, not a second one: the guardian gets what the chain would take.
      expect(m).to.deep.equal(s.payee.voucherMessage(s.id));
    }
    expect(s.reports.counts).to.deep.equal({ sent: 2, taken: 2, refused: 0, failed: 0 });
  });

  it("throttled: 30 vouchers within one interval are at most 2 requests per guardian, the last with the highest amount", async function () {
    const f = await loadFixture(meterFixture);
    const [g] = await guardians(1);
    const intervalMs = 2_000;
    const s = await payeeWith(f, [g], { intervalMs });
    const started = performance.now();
    let last: SignedVoucher | undefined;
    for (let i = 0; i < 30; i++) last = (await s.pay(1n)).v;
    const took = performance.now() - started;
    expect(took, "30 vouchers must fit in one interval for this test to mean anything").to.be.below(intervalMs);
    await sleep(intervalMs + 500 - took);
    await eventually(() => g.amounts().at(-1) === last!.cumulativeAmount, 5_000, "the highest voucher reported");
    expect(g.received.length).to.be.within(1, 2);
    await sleep(intervalMs); // nothing new: nothing more is sent
    expect(g.received.length).to.be.within(1, 2);
    expect(s.reports.counts.sent).to.equal(g.received.length);
  });

  it("a guardian down, then up: warned about once, and it gets the latest voucher later", async function () {
    const f = await loadFixture(meterFixture);
    const [g] = await guardians(1, 1);
    const logs: string[] = [];
    const s = await payeeWith(f, [g], { intervalMs: 200, logs });
    await s.pay();
    await eventually(() => s.reports.counts.failed >= 1, 10_000, "a failed report");
    const { v: latest } = await s.pay();
    await eventually(() => s.reports.counts.failed >= 3, 10_000, "more failed reports");
    await g.start();
    await eventually(() => g.received.length > 0, 10_000, "the report once the guardian is up");
    expect(g.amounts()).to.deep.equal([latest.cumulativeAmount]);
    await sleep(600);
    expect(g.received.length, "taken: not sent again").to.equal(1);
    const said = logs.map((l) => JSON.parse(l)).filter((l) => l.level !== "debug");
    expect(said.map((l) => [l.level, l.msg])).to.deep.equal([
      ["warn", "guardian unreachable; trying again at the next report"],
      ["info", "guardian answers again"],
    ]);
    expect(said[0]).to.include({ guardian: g.url, channel: s.id });
  });

  it("a voucher the payee refuses is never reported", async function () {
    const f = await loadFixture(meterFixture);
    const [g] = await guardians(1);
    const s = await payeeWith(f, [g], { intervalMs: 100 });
    const { v: good } = await s.pay();
    await eventually(() => g.received.length === 1, 10_000, "the accepted voucher reported");
    // A replay, a forged signature for more, and a voucher by a key that is not the channel's.
    s.meter.add(100n);
    const more = s.payer.justified();
    const stranger = new MeterPayer({
      key: randomDeviceKey("secp256k1"),
      hasher,
      deployment: f.channelDeployment,
      terms: s.terms,
      pricePerUnit: METER_PRICE,
      meter: Object.assign(new SimulatedMeter(), { read: () => 1_000n }),
    }).pay()!;
    for (const [v, reason] of [
      [good, "not-higher"],
      [{ ...good, cumulativeAmount: more }, "signature"],
      [stranger, "not-payer-key"],
    ] as const) {
      const r = await s.post(v);
      expect(r.status).to.equal(409);
      expect(r.body).to.deep.equal({ accepted: false, reason });
    }
    await sleep(500);
    await s.reports.close();
    expect(g.amounts()).to.deep.equal([good.cumulativeAmount]);
  });

  it("the payer's answer does not wait on a slow guardian (one that sleeps 3 s)", async function () {
    const f = await loadFixture(meterFixture);
    const [g] = await guardians(1);
    g.delayMs = 3_000;
    const s = await payeeWith(f, [g], { intervalMs: 60_000 });
    const first = await s.pay();
    await eventually(() => g.received.length === 1, 10_000, "the first report at the guardian, which sleeps");
    const next = await s.pay();
    const latest = await s.pay();
    for (const { ms } of [first, next, latest]) expect(ms).to.be.below(1_000);
    expect(s.reports.counts.taken, "the guardian has not answered yet").to.equal(0);
    // On shutdown, the report in flight ends and the latest voucher is flushed.
    g.delayMs = 0;
    await s.reports.close();
    expect(g.amounts()).to.deep.equal([first.v.cumulativeAmount, latest.v.cumulativeAmount]);
    expect(s.reports.counts).to.include({ taken: 2, failed: 0 });
  });

  it("a stop flushes what is due but never hangs on a guardian: close(bound) gives up after bound ms", async function () {
    const f = await loadFixture(meterFixture);
    const [g] = await guardians(1);
    g.delayMs = 3_000;
    const logs: string[] = [];
    const s = await payeeWith(f, [g], { intervalMs: 60_000, logs });
    await s.pay();
    await eventually(() => g.received.length === 1, 10_000, "the report at the guardian, which sleeps");
    const started = performance.now();
    await s.reports.close(200);
    expect(performance.now() - started).to.be.below(1_500);
    expect(s.reports.counts).to.include({ taken: 0, failed: 1 });
    const warned = logs.map((l) => JSON.parse(l)).filter((l) => l.level === "warn");
    expect(warned.map((l) => l.msg)).to.deep.equal(["voucher not reported: the payee stopped first"]);
    // Closed: a later voucher is not reported.
    await s.pay();
    await sleep(100);
    expect(g.received).to.have.length(1);
  });

  it("a guardian that refuses a voucher is warned about and not asked again for it; the next voucher goes", async function () {
    const f = await loadFixture(meterFixture);
    const [g] = await guardians(1);
    g.answer = { status: 400, body: { accepted: false, field: "signature", reason: "does not verify" } };
    const logs: string[] = [];
    const s = await payeeWith(f, [g], { intervalMs: 100, logs });
    await s.pay();
    await eventually(() => s.reports.counts.refused === 1, 10_000, "the refusal");
    await sleep(400);
    expect(g.received.length).to.equal(1);
    const warned = logs.map((l) => JSON.parse(l)).filter((l) => l.level === "warn");
    expect(warned).to.have.length(1);
    expect(warned[0]).to.include({
      msg: "guardian refused the voucher",
      guardian: g.url,
      status: 400,
      field: "signature",
    });
    g.answer = { status: 200, body: { accepted: true, duplicate: true } };
    const { v } = await s.pay();
    await eventually(() => s.reports.counts.taken === 1, 10_000, "the next voucher taken");
    expect(g.amounts().at(-1)).to.equal(v.cumulativeAmount);
  });

  it("--guardian: http(s) URLs, else CUSTOS_GUARDIANS (comma-separated); a bad one names the flag", function () {
    expect(guardianUrls(["http://g1:8791/", "https://g2.example/custos"], "http://ignored")).to.deep.equal([
      "http://g1:8791",
      "https://g2.example/custos",
    ]);
    expect(guardianUrls(undefined, " http://a:1, http://b:2 ,")).to.deep.equal(["http://a:1", "http://b:2"]);
    expect(guardianUrls(undefined, undefined)).to.deep.equal([]);
    expect(() => guardianUrls(["g1:8791"], undefined)).to.throw(CliError, /^--guardian must be an http\(s\) URL/);
    expect(() => guardianUrls(["http://a:1", "ftp://b"], undefined)).to.throw(CliError, /^--guardian\[1\] must be/);
    expect(() => guardianUrls(undefined, "http://a:1,nope")).to.throw(CliError, /^CUSTOS_GUARDIANS\[1\] must be/);
  });
});

/**
 * Relayer figures for `npm run bench`:
 *
 * - `relayer.accepted_per_s`: signed device messages (FirmwareAttestation, 100 devices, one in ten
 *   with a P-256 key) accepted per second over loopback HTTP — full checks, fsync'd before each
 *   202, batches being simulated and sent meanwhile. Budget ≥ 500.
 * - `relayer.batch20_gas_ratio`: gas per message of a 20-message multicall batch sent by the
 *   relayer, against the same message sent alone as a plain `attestFirmware` transaction (21,000
 *   base gas included in both). Budget ≤ 0.6.
 *
 * Runs against `rpc` (with `funder`, an account holding ETH), or starts its own `hardhat node`.
 */
import http from "node:http";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { id, type Signer } from "ethers";
import type { DeviceKeyKind } from "../src/crypto/deviceKey.js";
import { encodeCall, type SignedDeviceMessage } from "../src/messages/index.js";
import { startHardhatNode } from "../test/helpers/node.js";
import { rpcProvider, signAttestation, simulateFleet, type SimFleet } from "../src/relayer/fleet.js";
import { startRelayer, type RelayerHandle } from "../src/relayer/server.js";

export interface RelayerFigures {
  "relayer.accepted_per_s": number;
  "relayer.batch20_gas_ratio": number;
  /** Gas of one attestation sent alone, directly. */
  "relayer.attestation_alone_gas": number;
  /** Gas per attestation in the relayer's 20-message batch. */
  "relayer.batch20_gas_per_message": number;
  /** Gas of one attestation relayed in a batch of one (multicall overhead included). */
  "relayer.batch1_gas": number;
  /** The relayer's CPU time per accepted message during the intake run (checks, fsync, batching and sending). */
  "relayer.cpu_ms_per_message": number;
}

export interface MeasureOptions {
  rpc?: string;
  funder?: Signer;
  owner?: Signer;
  devices?: number;
  messagesPerDevice?: number;
  concurrency?: number;
  log?: (line: string) => void;
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 128 });

function postJson(url: string, body: unknown): Promise<{ status: number; body: Record<string, unknown> }> {
  const payload = JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = http.request(
      url,
      {
        method: "POST",
        agent,
        headers: { "content-type": "application/json", "content-length": Buffer.byteLength(payload) },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => resolve({ status: res.statusCode!, body: JSON.parse(Buffer.concat(chunks).toString()) }));
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    req.end(payload);
  });
}

async function getJson(url: string): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    http
      .get(url, { agent }, (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => resolve(JSON.parse(Buffer.concat(chunks).toString())));
        res.on("error", reject);
      })
      .on("error", reject);
  });
}

/**
 * Posts `messages` from a separate Node process (plain JS, keep-alive HTTP, `concurrency` requests
 * in flight), as devices would: the relayer's process then does only the relayer's work.
 */
async function loadFromChild(
  url: string,
  messages: SignedDeviceMessage[],
  concurrency: number,
): Promise<{ accepted: number; seconds: number; refused: string[] }> {
  const dir = mkdtempSync(path.join(os.tmpdir(), "custos-relayer-load-"));
  const file = path.join(dir, "messages.json");
  writeFileSync(file, JSON.stringify(messages.map((m) => JSON.stringify(m))));
  const script = `
    const http = require("node:http");
    const bodies = JSON.parse(require("node:fs").readFileSync(${JSON.stringify(file)}, "utf8"));
    const agent = new http.Agent({ keepAlive: true, maxSockets: ${concurrency} });
    const post = (body) => new Promise((resolve, reject) => {
      const req = http.request(${JSON.stringify(url)}, { method: "POST", agent,
        headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body) } }, (res) => {
        let text = ""; res.on("data", (c) => (text += c)); res.on("end", () => resolve({ status: res.statusCode, text }));
      });
      req.on("error", reject); req.end(body);
    });
    (async () => {
      let next = 0, accepted = 0; const refused = [];
      const t0 = performance.now();
      await Promise.all(Array.from({ length: ${concurrency} }, async () => {
        while (next < bodies.length) {
          const r = await post(bodies[next++]);
          if (r.status === 202) accepted++; else refused.push(r.text);
        }
      }));
      const seconds = (performance.now() - t0) / 1000;
      process.stdout.write(JSON.stringify({ accepted, seconds, refused }));
      agent.destroy();
    })().catch((err) => { console.error(err); process.exit(1); });
  `;
  try {
    const out = await new Promise<string>((resolve, reject) => {
      const child = spawn(process.execPath, ["-e", script], { stdio: ["ignore", "pipe", "inherit"] });
      let text = "";
      child.stdout.on("data", (c: Buffer) => (text += c.toString()));
      child.on("error", reject);
      child.on("exit", (code) =>
        code === 0 ? resolve(text) : reject(new Error(`bench: load generator exited with ${code}`)),
      );
    });
    return JSON.parse(out) as { accepted: number; seconds: number; refused: string[] };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function drain(relayer: RelayerHandle, timeoutMs = 120_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while ((await getJson(`${relayer.url}/health`)).queueDepth !== 0) {
    if (Date.now() > end) throw new Error("bench: the relayer did not drain its queue");
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function withRelayer<T>(
  fleet: SimFleet,
  rpc: string,
  config: { batchSize: number; batchIntervalMs: number },
  fn: (r: RelayerHandle) => Promise<T>,
): Promise<T> {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), "custos-relayer-bench-"));
  const relayer = await startRelayer({
    rpc,
    privateKey: fleet.relayerWallet.privateKey,
    registry: fleet.addresses.registry,
    locationBeacons: fleet.addresses.locationBeacons,
    dataDir,
    logLevel: "silent",
    rateLimit: 100_000,
    pollIntervalMs: 50,
    ...config,
  });
  try {
    return await fn(relayer);
  } finally {
    await relayer.close();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

/** Gas used by the relayer's transactions from block `from` on (all must have succeeded). */
async function relayerGas(fleet: SimFleet, relayer: string, from: number): Promise<bigint[]> {
  const head = await fleet.provider.getBlockNumber();
  const out: bigint[] = [];
  for (let b = from; b <= head; b++) {
    const block = await fleet.provider.getBlock(b, true);
    for (const tx of block?.prefetchedTransactions ?? []) {
      if (tx.from.toLowerCase() !== relayer) continue;
      const receipt = await fleet.provider.getTransactionReceipt(tx.hash);
      if (receipt!.status !== 1) throw new Error(`bench: relayer transaction ${tx.hash} failed`);
      out.push(receipt!.gasUsed);
    }
  }
  return out;
}

export async function measureRelayer(opts: MeasureOptions = {}): Promise<RelayerFigures> {
  const log = opts.log ?? (() => undefined);
  const node = opts.rpc ? undefined : await startHardhatNode();
  const rpc = opts.rpc ?? node!.url;
  try {
    const provider = rpcProvider(rpc, Number((await rpcProvider(rpc).getNetwork()).chainId));
    const admin = opts.funder ?? (await provider.getSigner(0));
    const owner = opts.owner ?? (await provider.getSigner(1));
    const devices = opts.devices ?? 100;
    const perDevice = opts.messagesPerDevice ?? 20;
    const kinds: DeviceKeyKind[] = ["secp256k1", "secp256k1", "secp256k1", "p256", ...Array(6).fill("secp256k1")];
    const fleet = await simulateFleet({ provider, admin, owner, devices: Math.max(devices, 22), kinds });
    const head = await provider.getBlock("latest");
    const deadline = BigInt(Math.max(head!.timestamp, Math.floor(Date.now() / 1000)) + 3600);
    const h = fleet.hasher;

    // --- gas: one attestation alone (direct), one relayed alone, twenty relayed in one batch.
    const secp = fleet.devices.filter((d) => d.key.kind === "secp256k1").slice(0, 22);
    const alone = signAttestation(h, secp[0], fleet.deployment, 0n, deadline, id("alone"));
    const direct = await (
      await fleet.registry
        .connect(owner)
        .attestFirmware(alone.key, alone.message.firmwareHash as string, deadline, alone.signature)
    ).wait();
    const aloneGas = direct!.gasUsed;
    const single = signAttestation(h, secp[1], fleet.deployment, 0n, deadline, id("single"));
    const batch1 = await withRelayer(fleet, rpc, { batchSize: 1, batchIntervalMs: 0 }, async (r) => {
      const from = (await provider.getBlockNumber()) + 1;
      await postJson(`${r.url}/v1/messages`, single);
      await drain(r);
      return relayerGas(fleet, r.address, from);
    });
    const twenty = secp
      .slice(2, 22)
      .map((d, i) => signAttestation(h, d, fleet.deployment, 0n, deadline, id(`b20 ${i}`)));
    const batch20 = await withRelayer(fleet, rpc, { batchSize: 20, batchIntervalMs: 5_000 }, async (r) => {
      const from = (await provider.getBlockNumber()) + 1;
      await Promise.all(twenty.map((m) => postJson(`${r.url}/v1/messages`, m)));
      await drain(r);
      return relayerGas(fleet, r.address, from);
    });
    if (batch20.length !== 1) throw new Error(`bench: expected one batch of 20, got ${batch20.length} transactions`);
    const perMessage20 = Number(batch20[0]) / 20;
    log(
      `relayer gas: alone ${aloneGas}, relayed alone ${batch1[0]}, batch of 20 ${batch20[0]} (${perMessage20.toFixed(0)} per message)`,
    );

    // --- throughput: every device sends `perDevice` attestations, `concurrency` requests in flight.
    const messages: SignedDeviceMessage[] = [];
    for (let n = 0; n < perDevice; n++)
      for (const [i, d] of fleet.devices.slice(0, devices).entries()) {
        const first = d === secp[0] || d === secp[1] || secp.slice(2, 22).includes(d) ? 1n : 0n;
        messages.push(signAttestation(h, d, fleet.deployment, first + BigInt(n), deadline, id(`load ${i}.${n}`)));
      }
    encodeCall(messages[0]); // warm ethers' ABI coder outside the timed run
    const figures = await withRelayer(fleet, rpc, { batchSize: 100, batchIntervalMs: 100 }, async (r) => {
      const cpu0 = process.cpuUsage();
      const client = await loadFromChild(`${r.url}/v1/messages`, messages, opts.concurrency ?? 64);
      const cpu = process.cpuUsage(cpu0);
      if (client.refused.length)
        throw new Error(`bench: valid messages were refused: ${client.refused.slice(0, 3).join("; ")}`);
      await drain(r);
      return {
        perSecond: client.accepted / client.seconds,
        cpuMs: (cpu.user + cpu.system) / 1000 / client.accepted,
        seconds: client.seconds,
      };
    });
    log(
      `relayer intake: ${messages.length} messages in ${figures.seconds.toFixed(2)} s = ${figures.perSecond.toFixed(0)}/s ` +
        `(relayer CPU ${figures.cpuMs.toFixed(2)} ms per message)`,
    );
    return {
      "relayer.accepted_per_s": Math.round(figures.perSecond),
      "relayer.batch20_gas_ratio": Number((perMessage20 / Number(aloneGas)).toFixed(3)),
      "relayer.attestation_alone_gas": Number(aloneGas),
      "relayer.batch20_gas_per_message": Math.round(perMessage20),
      "relayer.batch1_gas": Number(batch1[0]),
      "relayer.cpu_ms_per_message": Number(figures.cpuMs.toFixed(3)),
    };
  } finally {
    agent.destroy();
    await node?.stop();
  }
}

if (import.meta.main) {
  measureRelayer({ log: (l) => console.log(l) }).then(
    (figures) => console.log(JSON.stringify(figures, null, 2)),
    (err) => {
      console.error(err);
      process.exitCode = 1;
    },
  );
}

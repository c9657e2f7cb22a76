/**
 * The agent against a real node on loopback (`hardhat node`, or anvil with its block time and
 * mempool when CUSTOS_NODE=anvil): the CLI end to end, crash safety under
 * SIGKILL (200 messages, 20 kills at points of its progress), and an RPC node that stops and comes back
 * on the same port while the agent keeps working.
 */
import { expect } from "chai";
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import {
  JsonRpcProvider,
  Transaction,
  Wallet,
  encodeBytes32String,
  keccak256,
  parseEther,
  id as textHash,
  type Signer,
} from "ethers";
import { deploySuite } from "../../src/deploy/suite.js";
import { digest } from "../../src/eip712/index.js";
import { loadKeccak } from "../../src/eip712/fast.js";
import { randomDeviceKey, type DeviceKey } from "../../src/crypto/deviceKey.js";
import { DeviceBatch, deviceIdOf } from "../../src/registry/batch.js";
import { openAgentStack } from "../../src/agent/agent.js";
import { createLogger } from "../../src/agent/log.js";
import { generateKey, saveKeystore } from "../../src/agent/keystore.js";
import { Outbox } from "../../src/agent/outbox.js";
import { DeviceRegistry__factory, LocationBeacons__factory } from "../../typechain-types/index.js";
import { generateBeaconKey, openLocation } from "../../src/beacons/index.js";
import { NODE_KIND, freePort, startNode, type HardhatNode } from "../helpers/node.js";
import { eventually, onceWritten, tempDir } from "./helpers.js";
import { reapAll, runCli, startCli, type CliRun } from "../helpers/cli.js";
import { RpcGate, type HeldCall } from "../helpers/rpcGate.js";
import { crashSeed } from "../helpers/crashSeed.js";
import { deviceByKey } from "../../src/registry/lookup.js";

const PASSWORD = "device passphrase";
const MODEL = encodeBytes32String("custos-tracker-v1");
const FIRMWARE = textHash("firmware 1.0.0");

// ------------------------------------------------------------ a chain on the node

interface Chain {
  provider: JsonRpcProvider;
  admin: Signer;
  manufacturer: Signer;
  owner: Signer;
  chainId: bigint;
  registry: string;
  locationBeacons: string;
  verifier: string;
}

async function deployOn(node: HardhatNode): Promise<Chain> {
  const provider = new JsonRpcProvider(node.url, 31337n, {
    staticNetwork: true,
    pollingInterval: 50,
    cacheTimeout: -1,
  });
  const [admin, manufacturer, owner] = await Promise.all([0, 1, 2].map((i) => provider.getSigner(i)));
  const suite = await deploySuite(admin, { manufacturers: [await manufacturer.getAddress()] });
  return {
    provider,
    admin,
    manufacturer,
    owner,
    chainId: 31337n,
    registry: suite.registry,
    locationBeacons: suite.locationBeacons,
    verifier: suite.p256Verifier,
  };
}

/** Commits a batch of `keys` and, unless `claim` is false, claims each for the owner. */
async function provision(chain: Chain, keys: { signer: string }[], claim = true): Promise<DeviceBatch> {
  const batch = new DeviceBatch(
    keys.map((k) => ({ deviceKey: k.signer, model: MODEL, firmwareHash: FIRMWARE })),
    await chain.manufacturer.getAddress(),
  );
  const registry = DeviceRegistry__factory.connect(chain.registry, chain.provider);
  await (await registry.connect(chain.manufacturer).commitBatch(batch.root)).wait();
  if (claim) {
    const owner = await chain.owner.getAddress();
    const deadline = BigInt(Math.floor(Date.now() / 1000) + 3600);
    for (const key of keys as DeviceKey[]) {
      const signature = key.signDigest(
        digest(
          "DeviceClaim",
          { chainId: chain.chainId, verifyingContract: chain.registry },
          { owner, batch: batch.id, deadline },
        ),
      );
      const c = { owner, batchId: batch.id, deviceKey: key.signer, model: MODEL, firmwareHash: FIRMWARE, deadline };
      await (await registry.connect(chain.owner).claim(c, batch.proof(key.signer), signature)).wait();
    }
  }
  return batch;
}

async function fundedPayer(chain: Chain): Promise<Wallet> {
  const payer = new Wallet(Wallet.createRandom().privateKey);
  await (await chain.admin.sendTransaction({ to: payer.address, value: parseEther("100") })).wait();
  return payer;
}

/** `FirmwareAttested` firmware hashes per device id, in chain order. */
async function attested(chain: Chain): Promise<Map<bigint, string[]>> {
  const registry = DeviceRegistry__factory.connect(chain.registry, chain.provider);
  const out = new Map<bigint, string[]>();
  for (const e of await registry.queryFilter(registry.filters.FirmwareAttested(), 0, "latest")) {
    out.set(e.args.deviceId, [...(out.get(e.args.deviceId) ?? []), e.args.firmwareHash]);
  }
  return out;
}

/** Every transaction `from` sent, with its receipt status, scanning blocks `fromBlock`..latest. */
async function transactionsFrom(
  chain: Chain,
  from: string,
  fromBlock = 0,
): Promise<{ hash: string; status: number }[]> {
  const out = [];
  const latest = await chain.provider.getBlockNumber();
  for (let n = fromBlock; n <= latest; n++) {
    const block = await chain.provider.getBlock(n, true);
    for (const tx of block!.prefetchedTransactions) {
      if (tx.from.toLowerCase() !== from.toLowerCase()) continue;
      const receipt = await chain.provider.getTransactionReceipt(tx.hash);
      out.push({ hash: tx.hash, status: receipt!.status! });
    }
  }
  return out;
}

// ------------------------------------------------------------ tests

describe(`agent against ${NODE_KIND === "anvil" ? "anvil" : "a hardhat node"} on loopback`, function () {
  this.timeout(300_000);
  before(loadKeccak);
  after(reapAll);
  afterEach(reapAll);

  describe("one node", function () {
    let node: HardhatNode;
    let chain: Chain;
    before(async function () {
      node = await startNode();
      chain = await deployOn(node);
    });
    after(async function () {
      chain?.provider.destroy();
      await node?.stop();
    });

    it("CLI end to end: key create, key show, sign claim, send --signed, attest-firmware, beacon, outbox", async function () {
      const dir = tempDir();
      const keystore = path.join(dir, "device.json");
      const payer = await fundedPayer(chain);
      const env = { CUSTOS_PASSWORD: PASSWORD, CUSTOS_PAYER_KEY: payer.privateKey, CUSTOS_LOG_LEVEL: "warn" };
      const created = await runCli(
        ["key", "create", "--kind", "secp256k1", "--out", keystore, "--scrypt-n", "1024"],
        env,
      );
      expect(created.code, created.stderr).to.equal(0);
      const { signer, deviceId } = JSON.parse(created.stdout);
      const shown = await runCli(["key", "show", "--keystore", keystore], env);
      expect(JSON.parse(shown.stdout)).to.include({ signer, deviceId });

      // The manufacturer provisions it; the buyer gets the leaf and proof.
      const batch = await provision(chain, [{ signer }], false);
      const leaf = path.join(dir, "leaf.json");
      writeFileSync(leaf, JSON.stringify({ model: MODEL, firmwareHash: FIRMWARE, proof: batch.proof(signer) }));
      const config = path.join(dir, "agent.json");
      writeFileSync(
        config,
        JSON.stringify({
          rpc: node.url,
          registry: chain.registry,
          locationBeacons: chain.locationBeacons,
          keystore: "device.json",
          dataDir: "data",
          pollMs: 20,
        }),
      );
      const owner = await chain.owner.getAddress();
      const claim = await runCli(
        ["--config", config, "sign", "claim", "--owner", owner, "--batch", batch.id.toString(), "--leaf", leaf],
        env,
      );
      expect(claim.code, claim.stderr).to.equal(0);
      const claimFile = path.join(dir, "claim.json");
      writeFileSync(claimFile, claim.stdout);

      const sent = await runCli(["--config", config, "send", "--signed", claimFile], env);
      expect(sent.code, sent.stderr).to.equal(0);
      expect(JSON.parse(sent.stdout).messages[0]).to.include({ type: "DeviceClaim", outcome: "confirmed" });
      const registry = DeviceRegistry__factory.connect(chain.registry, chain.provider);
      expect((await deviceByKey(registry, signer)).owner).to.equal(owner);

      const firmware = textHash("firmware 1.0.1");
      const attest = await runCli(["--config", config, "attest-firmware", "--firmware-hash", firmware], env);
      expect(attest.code, attest.stderr).to.equal(0);
      expect(JSON.parse(attest.stdout).messages[0]).to.include({
        type: "FirmwareAttestation",
        nonce: "0",
        outcome: "confirmed",
      });
      expect((await attested(chain)).get(BigInt(deviceId))).to.deep.equal([firmware]);

      // Stolen: the device posts where it is to LocationBeacons, with its first beacon nonce.
      // Sealed to the owner's beacon key, registered on LocationBeacons first.
      const beacons = LocationBeacons__factory.connect(chain.locationBeacons, chain.provider);
      const ownerBeaconKey = await generateBeaconKey();
      await (await beacons.connect(chain.owner).setBeaconKey(ownerBeaconKey.publicKey)).wait();
      await (await registry.connect(chain.owner).reportStolen(deviceId)).wait();
      const beacon = await runCli(
        [
          "--config",
          config,
          "beacon",
          "--latitude-e7",
          "473700000",
          "--longitude-e7",
          "-85400000",
          "--at",
          "1767225600",
        ],
        env,
      );
      expect(beacon.code, beacon.stderr).to.equal(0);
      expect(JSON.parse(beacon.stdout).messages[0]).to.include({
        type: "LocationBeacon",
        nonce: "0",
        outcome: "confirmed",
      });
      const posted = await beacons.queryFilter(beacons.filters.LocationBeaconPosted(deviceId));
      expect(posted.map((e) => [e.args.owner, e.args.recipients])).to.deep.equal([[owner, ownerBeaconKey.publicKey]]);
      const { chainId } = await chain.provider.getNetwork();
      const [, , , at, recipients, ciphertext] = posted[0].args;
      const context = { chainId, contract: chain.locationBeacons, device: BigInt(deviceId), at };
      expect(await openLocation(ciphertext, recipients, context, ownerBeaconKey.privateKey)).to.deep.equal({
        latitudeE7: 473_700_000,
        longitudeE7: -85_400_000,
      });
      expect(await registry.deviceNonce(deviceId)).to.equal(1n);

      const outbox = await runCli(["--config", config, "outbox", "--all"], env);
      expect(JSON.parse(outbox.stdout).stats).to.include({ confirmed: 3, pending: 0, submitted: 0 });
    });

    it("CRASH: 200 messages from 4 devices, the agent SIGKILLed at 20 points of its progress and restarted; each lands exactly once", async function () {
      const started = Date.now();
      const { seed, random } = crashSeed();
      const dir = tempDir();
      const dataDir = path.join(dir, "data");
      const materials = [
        generateKey("secp256k1"),
        generateKey("secp256k1"),
        generateKey("secp256k1"),
        generateKey("p256", { verifier: chain.verifier }),
      ];
      const keystores: string[] = [];
      const keys: { signer: string }[] = [];
      for (const [i, m] of materials.entries()) {
        const file = path.join(dir, `device${i}.json`);
        keys.push(await saveKeystore(file, m, PASSWORD, { scryptN: 1024 }));
        keystores.push(file);
      }
      const { deviceKeyOf } = await import("../../src/agent/keystore.js");
      await provision(chain, materials.map(deviceKeyOf));
      const payer = await fundedPayer(chain);
      const firstBlock = await chain.provider.getBlockNumber();

      const PER_DEVICE = 50;
      const ALL = keys.length * PER_DEVICE;
      const ids = keys.map((k) => deviceIdOf(k.signer));
      const expected = new Map<bigint, string[]>();
      const lines: string[] = [];
      for (let i = 0; i < PER_DEVICE; i++) {
        keys.forEach((k, d) => {
          const firmwareHash = textHash(`crash device ${d} image ${i}`);
          expected.set(ids[d], [...(expected.get(ids[d]) ?? []), firmwareHash]);
          lines.push(
            JSON.stringify({
              ref: `d${d}-m${i}`,
              device: String(d),
              type: "FirmwareAttestation",
              fields: { firmwareHash },
            }),
          );
        });
      }
      const batchFile = path.join(dir, "messages.jsonl");
      writeFileSync(batchFile, lines.join("\n") + "\n");
      // The agent talks to the node through the gate, which holds the call a kill is aimed at.
      const gate = await RpcGate.start(node.url);
      const sendBatch = (rpc: string) => [
        "send",
        "--batch",
        batchFile,
        ...keystores.flatMap((k) => ["--keystore", k]),
        "--rpc",
        rpc,
        "--registry",
        chain.registry,
        "--chain-id",
        "31337",
        "--data-dir",
        dataDir,
        "--poll-ms",
        "20",
        "--backoff-max-ms",
        "500",
        "--log-level",
        "info",
      ];
      const args = sendBatch(gate.url);
      const env = { CUSTOS_PASSWORD: PASSWORD, CUSTOS_PAYER_KEY: payer.privateKey };
      mkdirSync(dataDir); // watched for the outbox's writes from the first run on
      const outboxFile = path.join(dataDir, "outbox.jsonl");
      const registry = DeviceRegistry__factory.connect(chain.registry, chain.provider);
      const nonceReads = ids.map((id) => registry.interface.encodeFunctionData("deviceNonce", [id]).toLowerCase());
      const submittedWith = (o: Outbox, hash: string) =>
        o.all().find((e) => e.submission?.via === "rpc" && e.submission.txHash === hash);

      // Where the kills land, decided by the agent's progress only. The first four while signing:
      // the gate holds the nonce reads of some of the devices with messages left to sign (they
      // cannot sign, so signing cannot finish), and the kill comes once the others have persisted
      // all of theirs. (Between a device's nonce read and its last signature the agent makes no
      // call to hold: it signs locally, faster than a kill from outside can aim.) The
      // other sixteen, four of each kind in a random order: at the run's first call to the node
      // (start-up, key loading, outbox replay); holding its n-th transaction before the node sees
      // it (persisted, never broadcast), or the node's answer to it (broadcast and mined, not
      // known to the agent); or the node's n-th receipt (landed, not recorded). Each n is drawn
      // within the work the run cannot finish without, and so that the kills spread over the
      // whole delivery; a held call is one the run needs, so every run gets its kill.
      type Point = "signing" | "start-up" | "before-broadcast" | "after-broadcast" | "receipt";
      const later: Point[] = (["start-up", "before-broadcast", "after-broadcast", "receipt"] as const).flatMap((p) => [
        p,
        p,
        p,
        p,
      ]);
      for (let i = later.length - 1; i > 0; i--) {
        const j = Math.floor(random() * (i + 1));
        [later[i], later[j]] = [later[j], later[i]];
      }
      const schedule: Point[] = ["signing", "signing", "signing", "signing", ...later];
      /** A number from 1 to `n`, about `n / left` on average: `left` kills share `n` steps. */
      const step = (n: number, left: number) => 1 + Math.floor(random() * Math.min(n, Math.ceil((2 * n) / left)));

      const kills: { point: Point; persisted: number; landed: number }[] = [];
      const broadcastAtKill: { where: string; hash: string }[] = [];
      try {
        for (const [k, planned] of schedule.entries()) {
          const before = Outbox.read(outboxFile);
          const stats = before.stats();
          const unsignedOf = ids.map((id) => PER_DEVICE - before.ofDevice(id).length);
          const unsigned = unsignedOf.reduce((a, b) => a + b, 0);
          const toSend = stats.pending + unsigned; // each needs a transaction of its own
          const undelivered = ALL - stats.confirmed; // each needs its receipt
          const left = schedule.length - k;
          let point = planned;
          if ((point === "before-broadcast" || point === "after-broadcast") && toSend === 0) point = "receipt";
          let run: CliRun | undefined;
          const kill = () => run!.child.kill("SIGKILL");
          let held: Promise<HeldCall>;
          let signingUntil = 0;
          let holding: number[] = [];
          if (point === "signing") {
            // Some of the devices with messages left to sign sign them all; the others are held,
            // at least one, more while there are more signing kills to come.
            const waiting = ids.map((_, d) => d).filter((d) => unsignedOf[d] > 0);
            const signingLeft = schedule.slice(k).filter((p) => p === "signing").length;
            const signers = Math.floor(
              random() * (Math.min(waiting.length - 1, Math.ceil(waiting.length / signingLeft)) + 1),
            );
            for (let i = waiting.length - 1; i > 0; i--) {
              const j = Math.floor(random() * (i + 1));
              [waiting[i], waiting[j]] = [waiting[j], waiting[i]];
            }
            holding = waiting.slice(signers);
            signingUntil = before.all().length + waiting.slice(0, signers).reduce((n, d) => n + unsignedOf[d], 0);
            const heldReads = new Set(holding.map((d) => nonceReads[d]));
            held = gate.arm({
              keep: true,
              before: (c) =>
                c.method === "eth_call" && heldReads.has(String((c.params[0] as { data?: string }).data).toLowerCase()),
            });
          } else if (point === "start-up") {
            held = gate.arm({ before: () => true, onHold: kill });
          } else if (point === "receipt") {
            const n = step(undelivered, left);
            let seen = 0;
            held = gate.arm({
              after: (c, a) => c.method === "eth_getTransactionReceipt" && a.result != null && ++seen === n,
              onHold: kill,
            });
          } else {
            const n = step(toSend, left);
            let seen = 0;
            const isSend = (c: { method: string }) => c.method === "eth_sendRawTransaction";
            held = gate.arm(
              point === "before-broadcast"
                ? { before: (c) => isSend(c) && ++seen === n, onHold: kill }
                : { after: (c, a) => isSend(c) && a.result !== undefined && ++seen === n, onHold: kill },
            );
          }
          run = startCli(args, env);
          const ended = run.exited.then(({ code, signal }) => {
            throw new Error(
              `kill ${k + 1} (${point}): the agent ended (${code ?? signal}) before it:\n${run!.stderr()}`,
            );
          });
          const call = await Promise.race([held, ended]);
          if (point === "signing") {
            await Promise.race([
              onceWritten(dataDir, () => Outbox.read(outboxFile).all().length >= signingUntil, "signing progress"),
              ended,
            ]);
            kill();
          }
          const { signal } = await run.exited;
          ended.catch(() => undefined);
          gate.disarm();
          expect(signal, run.stderr()).to.equal("SIGKILL");

          // The kill landed where it was aimed.
          const after = Outbox.read(outboxFile);
          const now = after.stats();
          const where = `kill ${k + 1} (${point})`;
          expect(now.confirmed, `${where}: work remained`).to.be.lessThan(ALL);
          if (point === "signing") {
            for (const d of holding)
              expect(after.ofDevice(ids[d]).length, `${where}: held device ${d} signed`).to.equal(
                PER_DEVICE - unsignedOf[d],
              );
            expect(after.all().length, `${where}: persisted`).to.equal(signingUntil);
          } else if (point === "start-up") {
            const { records: _r1, ...was } = stats;
            const { records: _r2, ...is } = now;
            expect(is, `${where}: nothing happened before the first call`).to.deep.equal(was);
          } else {
            const hash = point === "receipt" ? String(call.params[0]) : keccak256(String(call.params[0])).toLowerCase();
            const entry = submittedWith(after, hash);
            expect(entry?.state, `${where}: the message of ${hash} is recorded as sent, not landed`).to.equal(
              "submitted",
            );
            if (point === "before-broadcast") {
              // On anvil a transaction an earlier run broadcast can still wait in the mempool when
              // this run starts, which broadcasts it again: holding that repeat proves nothing. An
              // earlier run may have broadcast it whenever it recorded it (the record comes first),
              // whatever point that run was killed at.
              const repeat = broadcastAtKill.some((b) => b.hash === hash) || submittedWith(before, hash) !== undefined;
              if (!repeat)
                expect(await chain.provider.getTransaction(hash), `${where}: never broadcast`).to.equal(null);
            } else if (node.blockTime === 0) {
              const receipt = await chain.provider.getTransactionReceipt(hash);
              expect(receipt?.status, `${where}: mined`).to.equal(1);
            } else {
              // With a block time (anvil) it may still wait in the mempool when the next run starts,
              // which has to find it there: it is checked for a successful receipt at the end.
              expect(await chain.provider.getTransaction(hash), `${where}: in the node`).to.not.equal(null);
              broadcastAtKill.push({ where, hash });
            }
          }
          kills.push({ point, persisted: after.all().length, landed: now.confirmed });
        }
      } catch (err) {
        (err as Error).message += ` (crash seed ${seed}; replay with CUSTOS_CRASH_SEED=${seed})`;
        throw err;
      } finally {
        await gate.close();
      }
      const beforeFinal = Outbox.read(outboxFile).stats().confirmed;
      const finalStarted = Date.now();
      const final = await runCli(sendBatch(node.url), env);
      expect(final.code, final.stderr).to.equal(0);
      const finalSeconds = (Date.now() - finalStarted) / 1000;

      // Every message landed exactly once, per device in nonce order, and the agent never sent a
      // transaction that reverted or a second one for a message.
      const onChain = await attested(chain);
      for (const [device, hashes] of expected) expect(onChain.get(device), `device ${device}`).to.deep.equal(hashes);
      for (const device of expected.keys()) expect(await registry.deviceNonce(device)).to.equal(BigInt(PER_DEVICE));
      const txs = await transactionsFrom(chain, payer.address, firstBlock + 1);
      expect(
        txs.filter((t) => t.status !== 1),
        "reverted transactions from the agent",
      ).to.deep.equal([]);
      expect(txs).to.have.length(ALL);
      for (const { where, hash } of broadcastAtKill)
        expect((await chain.provider.getTransactionReceipt(hash))?.status, `${where}: mined`).to.equal(1);
      const stats = Outbox.read(outboxFile).stats();
      expect(stats).to.include({ confirmed: ALL, pending: 0, submitted: 0, spent: 0, rejected: 0 });
      const count = (p: Point) => kills.filter((k) => k.point === p).length;
      console.log(
        `      crash: seed ${seed}; 20 SIGKILLs (${count("signing")} while signing, ${count("start-up")} at start-up, ` +
          `${count("before-broadcast")} before a broadcast, ${count("after-broadcast")} after one, ${count("receipt")} on a receipt); ` +
          `persisted/landed after each kill: ${kills.map((k) => `${k.persisted}/${k.landed}`).join(" ")}; ${ALL}/${ALL} landed once, ${txs.length} transactions, 0 reverted; ` +
          `the last run (start-up included) delivered ${ALL - beforeFinal} in ${finalSeconds.toFixed(1)} s; ` +
          `${((Date.now() - started) / 1000).toFixed(1)} s`,
      );
    });
  });

  it("RPC node stopped and restarted on the same port mid-run: the agent queues, then drains", async function () {
    const port = await freePort();
    let node = await startNode(port);
    let chain = await deployOn(node);
    const keys = [randomDeviceKey("secp256k1"), randomDeviceKey("p256", chain.verifier)];
    await provision(chain, keys);
    const payer = await fundedPayer(chain);
    const lines: string[] = [];
    const stack = await openAgentStack({
      deployment: { chainId: chain.chainId, registry: chain.registry },
      dataDir: tempDir(),
      rpc: node.url,
      payer,
      logger: createLogger({ level: "debug", stream: { write: (l: string) => lines.push(l) } }),
      pollMs: 20,
      holdMs: 100,
      rebroadcastMs: 1_000,
      backoff: { baseMs: 50, capMs: 400 },
    });
    const agents = keys.map((k) => stack.agentFor(k));
    const draining = stack.dispatcher.drain({ watch: true });
    const expected = new Map<bigint, string[]>();
    const sign = async (d: number, label: string) => {
      const firmwareHash = textHash(`restart ${d} ${label}`);
      expected.set(agents[d].deviceId, [...(expected.get(agents[d].deviceId) ?? []), firmwareHash]);
      await agents[d].sign("FirmwareAttestation", { firmwareHash });
    };
    try {
      for (let i = 0; i < 3; i++) for (const d of [0, 1]) await sign(d, `before ${i}`);
      await eventually(() => stack.outbox.stats().confirmed === 6, 30_000, "the first six to land");

      // The node stops mining, then dies: what it had in its pool is lost with it.
      await node.pauseMining();
      for (const d of [0, 1]) await sign(d, "in the pool");
      await eventually(() => stack.outbox.stats().submitted === 2, 10_000, "two transactions in the pool");
      const blocks: string[][] = [];
      const latest = await chain.provider.getBlockNumber();
      for (let n = 1; n <= latest; n++) {
        const block = await chain.provider.getBlock(n, true);
        blocks.push(block!.prefetchedTransactions.map((tx) => Transaction.from(tx).serialized));
      }
      chain.provider.destroy();
      await node.stop();

      // Down: the agent keeps signing and queueing, and backs off.
      const backoffsBefore = lines.filter((l) => l.includes("backing off")).length;
      for (let i = 0; i < 2; i++) for (const d of [0, 1]) await sign(d, `while down ${i}`);
      await eventually(
        () => lines.filter((l) => l.includes("backing off")).length >= backoffsBefore + 3,
        20_000,
        "backoff",
      );
      expect(stack.outbox.stats()).to.include({ confirmed: 6, submitted: 2, pending: 4 });

      // Back on the same port, with its chain. The test nodes keep their chain in memory only, so
      // a restart that keeps the chain (what a real node does) is made by sending it every raw
      // transaction the old one had mined, block by block (mining paused in between, so that no
      // node reorders them across senders): same hashes, same addresses, same state. Its pool is
      // lost, as in a real restart; the agent broadcasts its recorded transactions again.
      node = await startNode(port);
      const provider = new JsonRpcProvider(node.url, 31337n, {
        staticNetwork: true,
        pollingInterval: 50,
        cacheTimeout: -1,
      });
      await node.pauseMining();
      for (const raws of blocks) {
        for (const raw of raws) {
          try {
            await provider.broadcastTransaction(raw);
          } catch (err) {
            // The agent may have broadcast its own recorded transaction first.
            if (!/already been used|known|already imported/i.test((err as Error).message)) throw err;
          }
        }
        await node.mine();
      }
      await node.resumeMining();
      chain = { ...chain, provider };
      await eventually(() => stack.outbox.stats().confirmed === 12, 60_000, "the queue to drain").catch((err) => {
        console.log(lines.slice(-60).join(""));
        throw err;
      });
      expect(lines.some((l) => JSON.parse(l).msg === "endpoint back")).to.equal(true);

      const onChain = await attested(chain);
      for (const [device, hashes] of expected) expect(onChain.get(device), `device ${device}`).to.deep.equal(hashes);
      const txs = await transactionsFrom(chain, payer.address);
      expect(txs).to.have.length(12);
      expect(txs.every((t) => t.status === 1)).to.equal(true);
    } finally {
      await stack.close();
      await draining.catch(() => undefined);
      chain.provider.destroy();
      await node.stop();
    }
  });
});

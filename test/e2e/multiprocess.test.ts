/**
 * Custos as it runs in the field, every part a process of its own on loopback: a node (`hardhat
 * node`, or anvil with its block time and mempool when CUSTOS_NODE=anvil), the relayer gateway, and
 * three device agents (`custos-agent`): a smart lock serving unlocks over HTTP and anchoring its
 * log, a tracker attesting its firmware through the relayer and posting a checkpoint, and a charger
 * presenting the voucher a car paid it with. Beside them the watch (`npm run watch`'s CLI, with a
 * funded tower keystore) indexes it all, and an owner's subscription, made with the subscriber
 * library, gets its alerts at a loopback receiver built with the receiver library. The scenario
 * crosses the registry, the locks, the custody ledger and the channels; every process is stopped at
 * the end, whatever happens.
 */
import { expect } from "chai";
import { spawn, type ChildProcess } from "node:child_process";
import { writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { JsonRpcProvider, Wallet, encodeBytes32String, id as textHash, parseEther, type Signer } from "ethers";
import { deploySuite, type SuiteAddresses } from "../../src/deploy/suite.js";
import { digest } from "../../src/eip712/index.js";
import { TypedDataHasher } from "../../src/eip712/fast.js";
import { deviceKeyOf, generateKey, saveKeystore } from "../../src/agent/keystore.js";
import { issueCertificate } from "../../src/agent/roles/lockOwner.js";
import { ReadingsBatch, locationId, shipmentIdOf } from "../../src/custody/index.js";
import type { DeviceKey } from "../../src/crypto/deviceKey.js";
import { DeviceBatch } from "../../src/registry/batch.js";
import {
  CustodyLedger__factory,
  DeviceRegistry__factory,
  LockAccess__factory,
  PaymentChannels__factory,
} from "../../typechain-types/index.js";
import { NODE_KIND, freePort, startNode, type HardhatNode } from "../helpers/node.js";
import { keystoreFiles, spawnRelayer, type RelayerProcess } from "../relayer/process.js";
import { tempDir } from "../agent/helpers.js";
import { reapAll, startCli, type CliRun } from "../helpers/cli.js";
import { deviceByKey } from "../../src/registry/lookup.js";
import { subscribe } from "../../src/watch/webhooks/subscriber.js";
import { WebhookReceiver, type WebhookEvent } from "../../src/watch/webhooks/receiver.js";

const ROOT = path.join(import.meta.dirname, "..", "..");

interface WatchProcess {
  child: ChildProcess;
  url: string;
  output: () => string;
  stop(): Promise<void>;
}

/** `npm run watch -- args…` (the same `tsx src/watch/cli.ts`), started and waited for until it listens. */
async function spawnWatch(args: string[]): Promise<WatchProcess> {
  const child = spawn(process.execPath, ["--import", import.meta.resolve("tsx"), "src/watch/cli.ts", ...args], {
    cwd: ROOT,
    env: { PATH: process.env.PATH, HOME: process.env.HOME },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  child.stdout!.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr!.on("data", (d: Buffer) => (out += d.toString()));
  const exited = new Promise<void>((resolve) => child.on("exit", () => resolve()));
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), 15_000);
    await exited;
    clearTimeout(timer);
  };
  const until = Date.now() + 120_000;
  for (;;) {
    const line = out.split("\n").find((l) => l.includes('"event":"listening"'));
    if (line) return { child, url: (JSON.parse(line) as { url: string }).url, output: () => out, stop };
    if (child.exitCode !== null || Date.now() > until) {
      await stop();
      throw new Error(`the watch did not start:\n${out}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** A subscriber's loopback endpoint: 503 until it knows its secret (which the subscription returns). */
async function loopbackReceiver() {
  const events: WebhookEvent[] = [];
  const ids: string[] = [];
  let handle: ((req: never, res: never) => void) | undefined;
  const server: Server = createServer((req, res) =>
    handle ? handle(req as never, res as never) : void res.writeHead(503).end(),
  );
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`,
    events,
    ids,
    use(secret: string) {
      handle = new WebhookReceiver({ secret }).nodeHandler((e) => {
        ids.push(e.id);
        events.push(e);
      }) as never;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

const PASSWORD = "device passphrase";
const MODEL = encodeBytes32String("custos-e2e");
const FIRMWARE = textHash("firmware 1.0.0");

/** `custos-agent args…` with the device passphrase in its environment. */
function agent(args: string[], env: NodeJS.ProcessEnv): CliRun {
  return startCli(args, { CUSTOS_PASSWORD: PASSWORD, CUSTOS_LOG_LEVEL: "warn", ...env });
}

async function finished(run: CliRun, what: string) {
  const { code } = await run.exited;
  expect(code, `${what}:\n${run.stdout()}\n${run.stderr()}`).to.equal(0);
  return run.stdout();
}

async function device(dir: string, name: string): Promise<{ file: string; key: DeviceKey }> {
  const material = generateKey("secp256k1");
  const file = path.join(dir, `${name}.json`);
  await saveKeystore(file, material, PASSWORD, { scryptN: 1 << 10 });
  return { file, key: deviceKeyOf(material) };
}

describe(`e2e: ${NODE_KIND} node, relayer, three agents and the watch as processes, across all four parts`, function () {
  this.timeout(300_000);

  it("a lock opens for a guest and anchors its log, a tracker attests through the relayer and posts a checkpoint, a charger claims a car's voucher; the watch indexes it and the shipper's alert arrives signed", async function () {
    const dir = tempDir("custos-e2e-mp-");
    let node: HardhatNode | undefined;
    let relayer: RelayerProcess | undefined;
    let lockServer: CliRun | undefined;
    let watch: WatchProcess | undefined;
    let receiver: Awaited<ReturnType<typeof loopbackReceiver>> | undefined;
    try {
      node = await startNode();
      const provider = new JsonRpcProvider(node.url, 31337n, { staticNetwork: true, cacheTimeout: -1 });
      const [admin, owner, shipper, fleet, chargeCo] = await Promise.all(
        [0, 1, 2, 3, 4].map((i) => provider.getSigner(i)),
      );
      const suite: SuiteAddresses = await deploySuite(admin, { manufacturers: [await admin.getAddress()] });
      const chainId = 31337n;
      const registry = DeviceRegistry__factory.connect(suite.registry, admin);

      // Four devices, provisioned in one batch and claimed by their owners.
      const [lock, tracker, car, charger] = await Promise.all(
        ["lock", "tracker", "car", "charger"].map((n) => device(dir, n)),
      );
      const batch = new DeviceBatch(
        [lock, tracker, car, charger].map((d) => ({ deviceKey: d.key.signer, model: MODEL, firmwareHash: FIRMWARE })),
        await admin.getAddress(),
      );
      await (await registry.commitBatch(batch.root)).wait();
      const claim = async (d: { key: DeviceKey }, by: Signer) => {
        const ownerAddress = await by.getAddress();
        const deadline = BigInt(Math.floor(Date.now() / 1000) + 3600);
        const signature = d.key.signDigest(
          digest(
            "DeviceClaim",
            { chainId, verifyingContract: suite.registry },
            { owner: ownerAddress, batch: batch.id, deadline },
          ),
        );
        await (
          await registry.connect(by).claim(
            {
              owner: ownerAddress,
              batchId: batch.id,
              deviceKey: d.key.signer,
              model: MODEL,
              firmwareHash: FIRMWARE,
              deadline,
            },
            batch.proof(d.key.signer),
            signature,
          )
        ).wait();
        return (await deviceByKey(registry, d.key.signer)).id;
      };
      const lockId = await claim(lock, owner);
      const trackerId = await claim(tracker, shipper);
      const carId = await claim(car, fleet);
      const chargerId = await claim(charger, chargeCo);

      // The agents' gas payer, the relayer's account and the watchtower's.
      const payer = Wallet.createRandom();
      const relayerWallet = Wallet.createRandom();
      const towerWallet = Wallet.createRandom();
      for (const w of [payer, relayerWallet, towerWallet])
        await (await admin.sendTransaction({ to: w.address, value: parseEther("10") })).wait();
      const { keystore, passwordFile } = keystoreFiles(relayerWallet as unknown as Wallet);
      relayer = await spawnRelayer([
        "--rpc",
        node.url,
        "--keystore",
        keystore,
        "--password-file",
        passwordFile,
        "--registry",
        suite.registry,
        "--location-beacons",
        suite.locationBeacons,
        "--data",
        path.join(dir, "relayer"),
        "--batch-interval-ms",
        "200",
        "--poll-interval-ms",
        "50",
        "--log-level",
        "info",
      ]);
      // The watch, as `npm run watch` starts it, with the tower's funded keystore.
      const tower = keystoreFiles(towerWallet as unknown as Wallet);
      watch = await spawnWatch([
        "--rpc",
        node.url,
        "--registry",
        suite.registry,
        "--location-beacons",
        suite.locationBeacons,
        "--lock-access",
        suite.lockAccess,
        "--payment-channels",
        suite.paymentChannels,
        "--custody-ledger",
        suite.custodyLedger,
        "--keystore",
        tower.keystore,
        "--password-file",
        tower.passwordFile,
        "--port",
        String(await freePort()),
        "--data",
        path.join(dir, "watch"),
      ]);
      // The shipper subscribes, as owner, to every alert about what it owns.
      receiver = await loopbackReceiver();
      const chainNow = (await provider.getBlock("latest"))!.timestamp;
      const subscription = await subscribe(
        watch.url,
        shipper,
        { chainId, verifyingContract: suite.registry },
        {
          owner: await shipper.getAddress(),
          scope: "owner",
          target: await shipper.getAddress(),
          url: receiver.url,
          events: "all",
          nonce: "1",
          deadline: String(chainNow + 600),
        },
      );
      receiver.use(subscription.secret);

      const env = {
        CUSTOS_RPC_URL: node.url,
        CUSTOS_REGISTRY: suite.registry,
        CUSTOS_LOCATION_BEACONS: suite.locationBeacons,
        CUSTOS_CHAIN_ID: "31337",
        CUSTOS_PAYER_KEY: payer.privateKey,
        CUSTOS_POLL_MS: "50",
      };

      // 1. The lock: an agent process serving unlocks; a guest process asks it to open.
      const lockPort = await freePort();
      lockServer = agent(
        [
          "--keystore",
          lock.file,
          "--lock-access",
          suite.lockAccess,
          "--data-dir",
          path.join(dir, "lock-agent"),
          "lock",
          "serve",
          "--port",
          String(lockPort),
          "--anchor-ms",
          "500",
          "--sync-ms",
          "500",
        ],
        env,
      );
      const lockUrl = `http://127.0.0.1:${lockPort}`;
      const until = Date.now() + 60_000;
      while (!lockServer.stdout().includes('"url"')) {
        if (Date.now() > until || lockServer.child.exitCode !== null)
          throw new Error(`lock did not start:\n${lockServer.stderr()}`);
        await new Promise((r) => setTimeout(r, 100));
      }
      const guest = await device(dir, "guest");
      const now = (await provider.getBlock("latest"))!.timestamp;
      const cert = await issueCertificate(
        owner,
        { chainId, verifyingContract: suite.lockAccess },
        {
          lock: lockId,
          holder: guest.key.signer,
          keyId: 1n,
          issuedAt: now,
          validFrom: now - 60,
          validUntil: now + 3600,
        },
      );
      const certFile = path.join(dir, "key.json");
      writeFileSync(certFile, JSON.stringify(cert));
      const opened = JSON.parse(
        await finished(
          agent(["guest", "unlock", "--cert", certFile, "--lock", lockUrl, "--keystore", guest.file], env),
          "guest unlock",
        ),
      );
      expect(opened).to.include({ open: true });
      const locks = LockAccess__factory.connect(suite.lockAccess, provider);
      const anchoredBy = Date.now() + 60_000;
      while ((await locks.lockState(lockId)).logSeq === 0n) {
        if (Date.now() > anchoredBy) throw new Error(`the lock never anchored its log:\n${lockServer.stderr()}`);
        await new Promise((r) => setTimeout(r, 200));
      }

      // 2. The tracker: its firmware attestation goes through the relayer process (the device
      //    holds no ETH); its checkpoint goes straight to the node.
      const attest = agent(
        [
          "--keystore",
          tracker.file,
          "--data-dir",
          path.join(dir, "tracker-agent"),
          "--relayer",
          relayer.url,
          "attest-firmware",
          "--firmware-hash",
          textHash("firmware 1.0.1"),
        ],
        env,
      );
      await finished(attest, "attest-firmware through the relayer");
      // The registry keeps the first 64 bits of the attested firmware's hash.
      expect((await registry.deviceInfo(trackerId)).firmware).to.equal(textHash("firmware 1.0.1").slice(0, 18));
      const ledger = CustodyLedger__factory.connect(suite.custodyLedger, shipper);
      const epc = "urn:epc:id:sscc:0614141.1234567890";
      await (
        await ledger.createShipment({
          epc,
          tracker: trackerId,
          receiver: await fleet.getAddress(),
          deadline: now + 86_400,
          maxSilence: 3600,
          minTemp: 200,
          maxTemp: 800,
          metadataHash: textHash("e2e"),
          childrenRoot: "0x" + "00".repeat(32),
          acceptOwnerKeys: false,
        })
      ).wait();
      const readings = new ReadingsBatch([
        { at: now + 10, temp: 450 },
        { at: now + 20, temp: 470 },
      ]);
      const block = (await provider.getBlock("latest"))!.timestamp;
      const fields = {
        shipment: shipmentIdOf(await shipper.getAddress(), epc),
        seq: "1",
        readingsRoot: readings.root,
        count: "2",
        minTemp: String(readings.min),
        maxTemp: String(readings.max),
        location: locationId("geo:52.37,4.89"),
        at: String(block),
      };
      const cp = agent(
        [
          "--keystore",
          tracker.file,
          "--data-dir",
          path.join(dir, "tracker-agent-rpc"),
          "--custody-ledger",
          suite.custodyLedger,
          "send",
          "Checkpoint",
          ...Object.entries(fields).flatMap(([k, v]) => ["--field", `${k}=${v}`]),
        ],
        env,
      );
      await finished(cp, "send Checkpoint");
      expect((await ledger.shipmentOf(fields.shipment)).checkpointSeq).to.equal(1n);

      // 3. The channel: the fleet funds the car's channel; the car pays a voucher; the charger's
      //    agent process presents it.
      const channels = PaymentChannels__factory.connect(suite.paymentChannels, fleet);
      const receipt = await (
        await channels.open(
          {
            payer: carId,
            payee: chargerId,
            token: "0x" + "00".repeat(20),
            rate: (1n << 96n) - 1n,
            allowance: 0n,
            salt: 0,
          },
          car.key.signer,
          parseEther("1"),
          { value: parseEther("1") },
        )
      ).wait();
      const openedLog = receipt!.logs
        .map((l) => channels.interface.parseLog(l))
        .find((l) => l?.name === "ChannelOpened")!;
      const t = openedLog.args;
      const terms = {
        payer: t.payer.toString(),
        payee: t.payee.toString(),
        token: t.token,
        rate: t.rate.toString(),
        allowance: t.allowance.toString(),
        openedAt: t.openedAt.toString(),
        salt: t.salt.toString(),
        payerKeyHash: t.payerKeyHash,
        payerPeriod: t.payerPeriod.toString(),
      };
      const amount = 123_456n;
      const hasher = await TypedDataHasher.create();
      const voucherSig = car.key.signDigest(
        "0x" +
          Buffer.from(
            hasher.digest(
              "Voucher",
              { chainId, verifyingContract: suite.paymentChannels },
              { channel: t.channel, cumulativeAmount: amount },
            ),
          ).toString("hex"),
      );
      const voucherFile = path.join(dir, "voucher.json");
      writeFileSync(
        voucherFile,
        JSON.stringify({
          type: "Voucher",
          key: car.key.signer,
          message: { channel: t.channel, cumulativeAmount: amount.toString() },
          signature: voucherSig,
          terms,
        }),
      );
      const claimRun = agent(
        [
          "--keystore",
          charger.file,
          "--data-dir",
          path.join(dir, "charger-agent"),
          "--payment-channels",
          suite.paymentChannels,
          "send",
          "--signed",
          voucherFile,
        ],
        env,
      );
      await finished(claimRun, "send --signed voucher");
      expect(await channels.deviceBalance(chargerId, "0x" + "00".repeat(20))).to.equal(amount);

      // 4. The shipper reports its tracker stolen: the watch's alert reaches its receiver, signed
      //    (WebhookReceiver checked it), each delivery once.
      await (await registry.connect(shipper).reportStolen(trackerId)).wait();
      const alertBy = Date.now() + 60_000;
      while (!receiver.events.some((e) => e.type === "device.quarantined")) {
        if (Date.now() > alertBy) throw new Error(`no quarantine alert arrived:\n${watch.output().slice(-4000)}`);
        await new Promise((r) => setTimeout(r, 100));
      }
      const quarantined = receiver.events.find((e) => e.type === "device.quarantined")!;
      expect(quarantined.data.subscription).to.equal(subscription.id);
      expect(String(quarantined.data.alert.subjects.device)).to.equal(trackerId.toString());
      expect(new Set(receiver.ids).size, "each delivery id arrives once").to.equal(receiver.ids.length);

      // 5. The watch's answer for the shipment matches the chain: its checkpoint and the
      //    transaction that carried it.
      const [posted] = await ledger.queryFilter(ledger.filters.CheckpointPosted(fields.shipment));
      let answer: {
        shipment: { checkpointSeq: string; tracker: string };
        checkpoints: { seq: string; txHash: string; readingsRoot: string }[];
      };
      const indexedBy = Date.now() + 60_000;
      for (;;) {
        answer = (await (await fetch(`${watch.url}/watch/shipments/${fields.shipment}`)).json()) as typeof answer;
        if (answer.checkpoints?.length) break;
        if (Date.now() > indexedBy) throw new Error("the watch never indexed the checkpoint");
        await new Promise((r) => setTimeout(r, 200));
      }
      const onChain = await ledger.shipmentOf(fields.shipment);
      expect(answer.shipment.checkpointSeq).to.equal(onChain.checkpointSeq.toString());
      expect(answer.shipment.tracker).to.equal(trackerId.toString());
      expect(answer.checkpoints.map((c) => [c.seq, c.txHash, c.readingsRoot])).to.deep.equal([
        ["1", posted.transactionHash, readings.root],
      ]);
    } finally {
      await receiver?.close();
      await watch?.stop();
      if (lockServer && lockServer.child.exitCode === null) {
        lockServer.child.kill("SIGTERM");
        await Promise.race([lockServer.exited, new Promise((r) => setTimeout(r, 10_000))]);
      }
      reapAll();
      await relayer?.kill();
      await node?.stop();
    }
  });
});

/**
 * The mistakes a fleet operator makes with `custos-agent`, each run as the user types it (the real
 * CLI against a hardhat node, or anvil with CUSTOS_NODE=anvil), each expecting its clear error and
 * its exit status (0 delivered, 2 bad input or a failed start-up check, 3 held, 4 refused,
 * 5 timed out); and the operator flows that got a command: key create --count, key rotate,
 * tracker run, meter pay / serve.
 */
import { expect } from "chai";
import { readFileSync, readdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import {
  JsonRpcProvider,
  Wallet,
  ZeroAddress,
  encodeBytes32String,
  parseEther,
  id as textHash,
  type Signer,
} from "ethers";
import { deploySuite, type SuiteAddresses } from "../../src/deploy/suite.js";
import { digest } from "../../src/eip712/index.js";
import { loadKeccak } from "../../src/eip712/fast.js";
import type { DeviceKey } from "../../src/crypto/deviceKey.js";
import { DeviceBatch } from "../../src/registry/batch.js";
import { parseRotationText, rotationStruct } from "../../src/registry/rotation.js";
import { shipmentIdOf } from "../../src/custody/index.js";
import { decryptKey, deviceKeyOf, generateKey, loadKeyMaterial, saveKeystore } from "../../src/agent/keystore.js";
import { issueCertificate } from "../../src/agent/roles/lockOwner.js";
import {
  CustodyLedger__factory,
  DeviceRegistry__factory,
  PaymentChannels__factory,
} from "../../typechain-types/index.js";
import { startNode, type HardhatNode } from "../helpers/node.js";
import { reapAll, runCli, saidLines as said, startCli } from "../helpers/cli.js";
import { eventually, tempDir } from "./helpers.js";

const PASSWORD = "device passphrase";
const MODEL = encodeBytes32String("custos-tracker-v1");
const FIRMWARE = textHash("firmware 1.0.0");
const UNCAPPED = (1n << 96n) - 1n;

interface Chain extends SuiteAddresses {
  provider: JsonRpcProvider;
  admin: Signer;
  manufacturer: Signer;
  owner: Signer;
  chainId: bigint;
}

describe("agent CLI: operator mistakes fail loudly, with their exit status", function () {
  this.timeout(300_000);
  let node: HardhatNode;
  let chain: Chain;
  let payer: Wallet;
  /** A registered, claimed device: its keystore file and key. */
  let device: { file: string; key: DeviceKey; id: bigint };
  let dir: string;

  before(async function () {
    await loadKeccak();
    node = await startNode();
    const provider = new JsonRpcProvider(node.url, 31337n, {
      staticNetwork: true,
      pollingInterval: 50,
      cacheTimeout: -1,
    });
    const [admin, manufacturer, owner] = await Promise.all([0, 1, 2].map((i) => provider.getSigner(i)));
    const suite = await deploySuite(admin, { manufacturers: [await manufacturer.getAddress()] });
    chain = { ...suite, provider, admin, manufacturer, owner, chainId: 31337n };
    payer = new Wallet(Wallet.createRandom().privateKey);
    await (await admin.sendTransaction({ to: payer.address, value: parseEther("100") })).wait();
    dir = tempDir();
    device = await newDevice("device.json");
  });
  after(async function () {
    reapAll();
    chain?.provider.destroy();
    await node?.stop();
  });
  afterEach(reapAll);

  /** A new secp256k1 key in a keystore, committed in a batch and claimed by the owner. */
  async function newDevice(name: string, claim = true) {
    const material = generateKey("secp256k1");
    const file = path.join(dir, name);
    await saveKeystore(file, material, PASSWORD, { scryptN: 1024 });
    const key = deviceKeyOf(material) as DeviceKey;
    const ids = await provision([key], claim);
    return { file, key, id: ids[0] };
  }

  async function provision(keys: DeviceKey[], claim = true): Promise<bigint[]> {
    const batch = new DeviceBatch(
      keys.map((k) => ({ deviceKey: k.signer, model: MODEL, firmwareHash: FIRMWARE })),
      await chain.manufacturer.getAddress(),
    );
    const registry = DeviceRegistry__factory.connect(chain.registry, chain.provider);
    await (await registry.connect(chain.manufacturer).commitBatch(batch.root)).wait();
    const ids: bigint[] = [];
    for (const key of keys) {
      if (claim) {
        const owner = await chain.owner.getAddress();
        const deadline = BigInt(Math.floor(Date.now() / 1000) + 3600);
        const sig = key.signDigest(
          digest(
            "DeviceClaim",
            { chainId: chain.chainId, verifyingContract: chain.registry },
            { owner, batch: batch.id, deadline },
          ),
        );
        const c = { owner, batchId: batch.id, deviceKey: key.signer, model: MODEL, firmwareHash: FIRMWARE, deadline };
        await (await registry.connect(chain.owner).claim(c, batch.proof(key.signer), sig)).wait();
      }
      ids.push((await registry.resolveKey(key.signer))[0]);
    }
    return ids;
  }

  const env = (extra: NodeJS.ProcessEnv = {}) => ({
    CUSTOS_PASSWORD: PASSWORD,
    CUSTOS_PAYER_KEY: payer.privateKey,
    CUSTOS_LOG_LEVEL: "info",
    CUSTOS_POLL_MS: "50",
    ...extra,
  });
  const base = (file = device.file) => [
    "--rpc",
    node.url,
    "--registry",
    chain.registry,
    "--keystore",
    file,
    "--data-dir",
    tempDir(),
  ];

  // ------------------------------------------------------------ preflight (issue item 3)

  it("mistake: a --registry that holds no contract → one line naming --registry, exit 2, never 'agent started' (no silent hang)", async function () {
    const started = Date.now();
    const args = [
      ...base(),
      "--registry",
      Wallet.createRandom().address,
      "attest-firmware",
      "--firmware-hash",
      FIRMWARE,
    ];
    const res = await runCli(args, env({ CUSTOS_LOG_LEVEL: "debug" }), { timeoutMs: 30_000 });
    expect(res.hung, "the agent hung").to.equal(false);
    expect(res.code, res.stderr).to.equal(2);
    expect(said(res.stderr)).to.have.length(1);
    expect(said(res.stderr)[0]).to.match(/--registry 0x[0-9a-fA-F]{40}: no contract at this address on chain 31337/);
    expect(res.stderr).to.not.include("agent started");
    expect(res.stderr).to.include('"msg":"checking the chain"'); // progress is logged at info
    expect(Date.now() - started).to.be.below(20_000);
  });

  it("mistake: --registry given another Custos contract's address (LockAccess) → names both, exit 2", async function () {
    const res = await runCli(
      [...base(), "--registry", chain.lockAccess, "attest-firmware", "--firmware-hash", FIRMWARE],
      env(),
    );
    expect(res.code).to.equal(2);
    expect(said(res.stderr)[0]).to.match(
      /--registry .*"Custos LockAccess", not Custos DeviceRegistry \(is it the --lock-access address\?\)/,
    );
  });

  it("mistake: --custody-ledger pointing at the registry → names --custody-ledger, exit 2", async function () {
    const res = await runCli([...base(), "--custody-ledger", chain.registry, "send", "NonceCancellation"], env());
    expect(res.code).to.equal(2);
    expect(said(res.stderr)[0]).to.match(
      /--custody-ledger .*not Custos CustodyLedger \(is it the --registry address\?\)/,
    );
  });

  it("mistake: --rpc where no node answers → names --rpc, exit 2 within seconds", async function () {
    const res = await runCli(
      [...base(), "--rpc", "http://127.0.0.1:9", "attest-firmware", "--firmware-hash", FIRMWARE],
      env(),
    );
    expect(res.code).to.equal(2);
    expect(said(res.stderr)[0]).to.match(/--rpc http:\/\/127\.0\.0\.1:9: no node answers there/);
  });

  it("mistake: --chain-id that is not the node's → names --chain-id, exit 2", async function () {
    const res = await runCli([...base(), "--chain-id", "5", "attest-firmware", "--firmware-hash", FIRMWARE], env());
    expect(res.code).to.equal(2);
    expect(said(res.stderr)[0]).to.match(/--chain-id 5: the node at --rpc .* serves chain 31337/);
  });

  it("mistake: a device key that is not registered → names --keystore, exit 2, nothing queued", async function () {
    const file = path.join(dir, "stranger.json");
    await saveKeystore(file, generateKey("secp256k1"), PASSWORD, { scryptN: 1024 });
    const args = base(file);
    const res = await runCli([...args, "attest-firmware", "--firmware-hash", FIRMWARE], env());
    expect(res.code).to.equal(2);
    expect(said(res.stderr)[0]).to.match(
      /--keystore .*stranger\.json: key 0x\S+ is not registered in the registry at --registry/,
    );
    const outbox = await runCli(["outbox", "--data-dir", args[args.indexOf("--data-dir") + 1]], {});
    expect(JSON.parse(outbox.stdout).stats.pending).to.equal(0);
  });

  // ------------------------------------------------------------ exit statuses (issue item 9)

  it("delivered: attest-firmware exits 0 with status delivered", async function () {
    const res = await runCli([...base(), "attest-firmware", "--firmware-hash", textHash("fw ok")], env());
    expect(res.code, res.stderr).to.equal(0);
    expect(JSON.parse(res.stdout).messages[0]).to.include({ status: "delivered", outcome: "confirmed" });
  });

  it("mistake: attest-firmware of a quarantined device → exit 3 (held) at once instead of looping; --wait --timeout 2 → exit 5", async function () {
    const d = await newDevice("stolen.json");
    const registry = DeviceRegistry__factory.connect(chain.registry, chain.owner);
    await (await registry.reportStolen(d.id)).wait();
    const args = base(d.file);
    const started = Date.now();
    const held = await runCli([...args, "attest-firmware", "--firmware-hash", textHash("fw held")], env(), {
      timeoutMs: 60_000,
    });
    expect(held.hung, "attest-firmware looped on the hold").to.equal(false);
    expect(held.code, held.stderr).to.equal(3);
    expect(Date.now() - started).to.be.below(30_000);
    expect(JSON.parse(held.stdout).messages[0]).to.include({ status: "held", state: "pending" });
    expect(said(held.stderr).join("\n")).to.match(
      /held: FirmwareAttestation nonce 0 of device \d+: refused for now: .*Quarantined.*still queued/,
    );
    // The same message (queued) with --wait: it waits, then gives up at --timeout.
    const waited = await runCli([...args, "run", "--wait", "--timeout", "2"], env());
    expect(waited.code, waited.stderr).to.equal(5);
    expect(said(waited.stderr).join("\n")).to.match(/timed out after 2 s/);
    await (await registry.release(d.id)).wait();
  });

  it("mistake: send Checkpoint for a shipment that does not exist → refused (exit 4) with the decoded reason, never 'already on chain'", async function () {
    const res = await runCli(
      [
        ...base(),
        "--custody-ledger",
        chain.custodyLedger,
        "send",
        "Checkpoint",
        "--field",
        `shipment=${textHash("no such shipment")}`,
        "--field",
        "seq=0",
        "--field",
        `readingsRoot=${textHash("r")}`,
        "--field",
        "count=1",
        "--field",
        "minTemp=400",
        "--field",
        "maxTemp=400",
        "--field",
        `location=${textHash("geo:0,0")}`,
        "--field",
        `at=${Math.floor(Date.now() / 1000) - 60}`,
      ],
      env(),
    );
    expect(res.code, res.stderr).to.equal(4);
    const m = JSON.parse(res.stdout).messages[0];
    expect(m).to.include({ status: "refused", outcome: "rejected" });
    expect(m.reason).to.match(/\(CustodyLedger\w+\)/);
    expect(res.stderr).to.not.include("already on chain");
    expect(res.stderr).to.not.include("already registered");
  });

  it("mistake: send Voucher (it cannot work without channel terms) → points to meter pay, exit 2; not listed in send --help", async function () {
    const res = await runCli([...base(), "send", "Voucher", "--field", `channel=${textHash("c")}`], env());
    expect(res.code).to.equal(2);
    expect(said(res.stderr)[0]).to.include("meter pay");
    const help = await runCli(["send", "--help"], {});
    expect(help.stdout).to.match(/Types: [^\n]*/);
    expect(/Types: ([^\n]*)/.exec(help.stdout)![1]).to.not.include("Voucher");
    expect(help.stdout).to.include("Exit status: 0 done");
  });

  // ------------------------------------------------------------ no passphrase (issue item 11)

  it("mistake fixed: key show and outbox ask for no passphrase (they read public data only)", async function () {
    const shown = await runCli(["key", "show", "--keystore", device.file], {});
    expect(shown.code, shown.stderr).to.equal(0);
    expect(JSON.parse(shown.stdout)).to.include({ signer: device.key.signer });
    const outbox = await runCli(["outbox", "--keystore", device.file, "--data-dir", tempDir()], {});
    expect(outbox.code, outbox.stderr).to.equal(0);
    const verify = await runCli(["key", "show", "--verify", "--keystore", device.file], {});
    expect(verify.code).to.equal(2);
    expect(verify.stderr).to.include("CUSTOS_PASSWORD");
  });

  // ------------------------------------------------------------ new commands (issue item 6)

  it("key create --count 25 --out-dir: loadable keys, keys.jsonl, devices.csv for registry:batch, progress on stderr", async function () {
    const out = path.join(tempDir(), "fleet");
    const res = await runCli(
      [
        "key",
        "create",
        "--kind",
        "secp256k1",
        "--count",
        "25",
        "--out-dir",
        out,
        "--scrypt-n",
        "1024",
        "--model",
        MODEL,
        "--firmware-hash",
        FIRMWARE,
      ],
      env(),
    );
    expect(res.code, res.stderr).to.equal(0);
    expect(JSON.parse(res.stdout)).to.include({ count: 25 });
    expect(res.stderr).to.include("25/25 keys (100%");
    const files = readdirSync(out).filter((f) => /^device-\d+\.json$/.test(f));
    expect(files).to.have.length(25);
    const index = readFileSync(path.join(out, "keys.jsonl"), "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    for (const k of index.slice(0, 3)) {
      const m = await decryptKey(readFileSync(path.join(out, k.file), "utf8"), PASSWORD);
      expect(deviceKeyOf(m).signer).to.equal(k.signer);
    }
    const csv = readFileSync(path.join(out, "devices.csv"), "utf8").trim().split("\n");
    expect(csv[0]).to.equal("deviceKey,model,firmwareHash");
    expect(csv).to.have.length(26);
    const again = await runCli(["key", "create", "--kind", "secp256k1", "--count", "2", "--out-dir", out], env());
    expect(again.code).to.equal(2);
    expect(said(again.stderr)[0]).to.match(/--out-dir .*device-0001\.json already exists; refusing to overwrite keys/);
  });

  it("key rotate: signed by the new and the current key, the file registry:rotate takes; after it lands the agent works with the new key under the same device id", async function () {
    const d = await newDevice("rotating.json");
    const fresh = path.join(dir, "rotating-2.json");
    await saveKeystore(fresh, generateKey("secp256k1"), PASSWORD, { scryptN: 1024 });
    const out = path.join(dir, "rotation.json");
    const res = await runCli(
      [...base(d.file), "key", "rotate", "--new-keystore", fresh, "--out", out, "--deadline", "+1h"],
      env(),
    );
    expect(res.code, res.stderr).to.equal(0);
    expect(JSON.parse(res.stdout)).to.include({ device: d.id.toString(), signedBy: "the new key and the current key" });
    const rotation = parseRotationText(readFileSync(out, "utf8"));
    expect(rotation.device).to.equal(d.id);
    expect(rotation.oldKey).to.equal(d.key.signer);
    // What registry:rotate does with it: the owner's rotateKey.
    const registry = DeviceRegistry__factory.connect(chain.registry, chain.owner);
    await (await registry.rotateKey(rotation.device, rotationStruct(rotation))).wait();
    const newSigner = deviceKeyOf(await loadKeyMaterial(fresh, PASSWORD)).signer;
    expect((await registry.resolveKey(newSigner))[0]).to.equal(d.id);
    const attest = await runCli([...base(fresh), "attest-firmware", "--firmware-hash", textHash("fw rotated")], env());
    expect(attest.code, attest.stderr).to.equal(0);
    expect(JSON.parse(attest.stdout).messages[0]).to.include({ device: d.id.toString(), status: "delivered" });
    // A key that is already someone's is refused as the new key.
    const taken = await runCli(
      [...base(fresh), "key", "rotate", "--new-keystore", device.file, "--out", path.join(dir, "r2.json")],
      env(),
    );
    expect(taken.code).to.equal(2);
    expect(said(taken.stderr)[0]).to.match(/--new-keystore .*already device \d+'s/);
  });

  /** A new shipment tracked by device `tracker`, created by the owner; its id. */
  async function newShipment(tracker: bigint): Promise<string> {
    const ledger = CustodyLedger__factory.connect(chain.custodyLedger, chain.owner);
    const epc = `urn:epc:id:sscc:0614141.${Date.now()}${Math.floor(Math.random() * 1000)}`;
    const block = await chain.provider.getBlock("latest");
    await (
      await ledger.createShipment({
        epc,
        tracker,
        receiver: Wallet.createRandom().address,
        deadline: BigInt(block!.timestamp + 86_400),
        maxSilence: 3600,
        minTemp: 200,
        maxTemp: 800,
        metadataHash: textHash("vaccines"),
        childrenRoot: "0x" + "00".repeat(32),
        acceptOwnerKeys: false,
      })
    ).wait();
    return shipmentIdOf(await chain.owner.getAddress(), epc);
  }

  it("tracker run --source file: readings kept, checkpoints sealed and landed on the CustodyLedger", async function () {
    const d = await newDevice("tracker.json");
    const ledger = CustodyLedger__factory.connect(chain.custodyLedger, chain.owner);
    const shipment = await newShipment(d.id);
    // Temperatures only (hundredths of °C): each reading is dated when it is read, after the shipment's creation.
    const readings = path.join(dir, "readings.csv");
    writeFileSync(readings, [0, 1, 2, 3, 4].map((i) => `${400 + i}`).join("\n") + "\n");
    const res = await runCli(
      [
        ...base(d.file),
        "--custody-ledger",
        chain.custodyLedger,
        "tracker",
        "run",
        "--shipment",
        shipment,
        "--source",
        "file",
        "--readings",
        readings,
      ],
      env(),
    );
    expect(res.code, res.stderr).to.equal(0);
    const lines = res.stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    expect(lines[0]).to.include({ checkpoint: 1, readings: 5 });
    expect(lines.at(-1).messages[0]).to.include({ type: "Checkpoint", status: "delivered" });
    const s = await ledger.shipmentOf(shipment);
    expect(s.checkpointSeq).to.equal(1n);
    // A shipment this device does not track is refused by name.
    const other = await runCli(
      [...base(), "--custody-ledger", chain.custodyLedger, "tracker", "run", "--shipment", shipment, "--samples", "1"],
      env(),
    );
    expect(other.code).to.equal(2);
    expect(said(other.stderr)[0]).to.match(/--shipment .*: its tracker is device \d+, not this device \d+/);
  });

  it("meter serve + meter pay: the payer streams vouchers over HTTP, the payee checks each and claims on chain", async function () {
    const payerDevice = await newDevice("meter-payer.json");
    const payeeDevice = await newDevice("meter-payee.json");
    const channels = PaymentChannels__factory.connect(chain.paymentChannels, chain.owner);
    const opened = await (
      await channels.open(
        { payer: payerDevice.id, payee: payeeDevice.id, token: ZeroAddress, rate: UNCAPPED, allowance: 0n, salt: 7 },
        payerDevice.key.signer,
        parseEther("1"),
        { value: parseEther("1") },
      )
    ).wait();
    const channel = channels.interface.parseLog(opened!.logs.find((l) => l.address === chain.paymentChannels)!)!.args
      .channel as string;
    const serve = startCli(
      [
        ...base(payeeDevice.file),
        "--payment-channels",
        chain.paymentChannels,
        "meter",
        "serve",
        "--channel",
        channel,
        "--price",
        "1000",
        "--port",
        "0",
        "--claim-ms",
        "500",
      ],
      env(),
    );
    await eventually(() => serve.stdout().includes('"url"'), 30_000, "meter serve to listen");
    const { url } = JSON.parse(serve.stdout().split("\n")[0]);
    const readings = path.join(dir, "meter.txt");
    writeFileSync(readings, "10\n25\n40\n");
    const pay = await runCli(
      [
        ...base(payerDevice.file),
        "--payment-channels",
        chain.paymentChannels,
        "meter",
        "pay",
        "--channel",
        channel,
        "--payee",
        url,
        "--price",
        "1000",
        "--source",
        "file",
        "--readings",
        readings,
      ],
      env(),
    );
    expect(pay.code, pay.stderr).to.equal(0);
    expect(JSON.parse(pay.stdout)).to.deep.include({ paid: "40000" });
    const state = PaymentChannels__factory.connect(chain.paymentChannels, chain.provider);
    await eventually(async () => (await state.channelState(channel)).paid === 40_000n, 30_000, "the payee's claim");
    // The payee's view of the channel: its amounts are bigints, which once crashed the payee.
    const view = await fetch(`${url}/v1/channels/${channel}`);
    expect(view.status, serve.stderr()).to.equal(200);
    expect(await view.json()).to.include({ channel: channel.toLowerCase(), best: "40000" });
    expect(serve.child.exitCode, serve.stderr()).to.equal(null);
    serve.child.kill("SIGTERM");
    const { code } = await serve.exited;
    expect(code, serve.stderr()).to.equal(0);
    // A payer key that is not the channel's is refused by name.
    const wrong = await runCli(
      [
        ...base(payeeDevice.file),
        "--payment-channels",
        chain.paymentChannels,
        "meter",
        "pay",
        "--channel",
        channel,
        "--payee",
        url,
        "--price",
        "1000",
      ],
      env(),
    );
    expect(wrong.code).to.equal(2);
    expect(said(wrong.stderr)[0]).to.match(/--keystore: key .* is not the key channel .* was opened with/);
  });

  it("mistake: guest show of a certificate signed by someone who is not the lock's owner, or for a lock that does not exist → with --rpc, not usable, exit 4, named", async function () {
    const lockAccess = { chainId: chain.chainId, verifyingContract: chain.lockAccess };
    const holder = Wallet.createRandom().address.toLowerCase();
    const validUntil = Math.floor(Date.now() / 1000) + 3600;
    const stranger = Wallet.createRandom();
    const forged = path.join(dir, "forged-key.json");
    writeFileSync(
      forged,
      JSON.stringify(await issueCertificate(stranger, lockAccess, { lock: device.id, holder, keyId: 1n, validUntil })),
    );
    const offline = await runCli(["guest", "show", "--cert", forged], {});
    expect(offline.code, offline.stderr).to.equal(0);
    expect(JSON.parse(offline.stdout)).to.include({ checkedOnChain: false });
    const checked = await runCli(["guest", "show", "--cert", forged, "--rpc", node.url], {});
    expect(checked.code, checked.stderr).to.equal(4);
    const shown = JSON.parse(checked.stdout);
    expect(shown).to.include({ checkedOnChain: true, usableNow: false, signatureValid: true });
    expect(shown.problems.join(" ")).to.match(/not issued for the lock's owner/);
    expect(said(checked.stderr)[0]).to.match(/the lock will refuse this key/);

    const nowhere = path.join(dir, "nowhere-key.json");
    writeFileSync(
      nowhere,
      JSON.stringify(await issueCertificate(stranger, lockAccess, { lock: 12345n, holder, keyId: 1n, validUntil })),
    );
    const missing = await runCli(["guest", "show", "--cert", nowhere, "--rpc", node.url], {});
    expect(missing.code).to.equal(4);
    expect(JSON.parse(missing.stdout).problems[0]).to.match(/lock 12345 does not exist/);

    // The owner's own certificate is usable.
    const ownerKey = await issueCertificate(chain.owner as unknown as Wallet, lockAccess, {
      lock: device.id,
      holder,
      keyId: 2n,
      validUntil,
    });
    const good = path.join(dir, "good-key.json");
    writeFileSync(good, JSON.stringify(ownerKey));
    const ok = await runCli(["guest", "show", "--cert", good, "--rpc", node.url], {});
    expect(ok.code, ok.stderr).to.equal(0);
    expect(JSON.parse(ok.stdout)).to.include({ checkedOnChain: true, usableNow: true, issuedBy: "owner" });
  });

  it("tracker run --source stdin and --source simulated: each seals and lands its checkpoint, then exits 0", async function () {
    const d = await newDevice("tracker-2.json");
    const ledger = CustodyLedger__factory.connect(chain.custodyLedger, chain.provider);
    const args = (shipment: string) => [
      ...base(d.file),
      "--custody-ledger",
      chain.custodyLedger,
      "tracker",
      "run",
      "--shipment",
      shipment,
    ];
    const viaStdin = await newShipment(d.id);
    const piped = await runCli([...args(viaStdin), "--source", "stdin"], env(), {
      input: "401\n402\n403\n",
      timeoutMs: 60_000,
    });
    expect(piped.code, piped.stderr).to.equal(0);
    expect(JSON.parse(piped.stdout.trim().split("\n")[0])).to.include({ checkpoint: 1, readings: 3 });
    expect((await ledger.shipmentOf(viaStdin)).checkpointSeq).to.equal(1n);

    const simulated = await newShipment(d.id);
    const sim = await runCli(
      [...args(simulated), "--source", "simulated", "--samples", "3", "--sample-ms", "100"],
      env(),
      {
        timeoutMs: 60_000,
      },
    );
    expect(sim.code, sim.stderr).to.equal(0);
    expect(JSON.parse(sim.stdout.trim().split("\n")[0])).to.include({ checkpoint: 1, readings: 3 });
    expect((await ledger.shipmentOf(simulated)).checkpointSeq).to.equal(1n);

    // A bad line on stdin is named by its line number.
    const bad = await runCli([...args(simulated), "--source", "stdin"], env(), {
      input: "401\nwarm\n",
      timeoutMs: 60_000,
    });
    expect(bad.code).to.equal(2);
    expect(said(bad.stderr)[0]).to.match(/stdin:2: temp must be an integer in hundredths of °C/);
  });
});

/**
 * The console in a real browser (Debian's Chromium, driven by playwright-core) against a hardhat
 * node with the watch's story deployed, served by the watch itself (`startWatch`: index API,
 * subscription routes and console/dist behind one front): every page renders the story's
 * data, each signature re-checked in the page from the chain; the chart shows the breach; an owner
 * reports a device stolen from the page and the chain and the alerts follow; a certificate granted
 * from the page opens the story's lock (the lock role decides); a watch that lies about a handoff's
 * custodian and a checkpoint's max is shown as not matching the chain; axe-core finds no serious or
 * critical violation. Screenshots of each page go to docs/console/.
 */
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { expect } from "chai";
import { chromium, type Browser, type Page } from "playwright-core";
import type { Indexer } from "../../src/watch/indexer/start.js";
import { randomDeviceKey } from "../../src/crypto/deviceKey.js";
import { DeviceSignatureVerifier } from "../../src/crypto/verify.js";
import { TypedDataHasher, bytesToHex } from "../../src/eip712/fast.js";
import { digest } from "../../src/eip712/index.js";
import { LockRole } from "../../src/agent/roles/lock.js";
import { LockChainReader } from "../../src/agent/roles/lockSync.js";
import { UnlockLogBook } from "../../src/agent/roles/lockLog.js";
import type { Decision } from "../../src/agent/roles/lock.js";
import { hexlify, randomBytes } from "ethers";
import { rotationDigest, serializeRotation } from "../../src/registry/rotation.js";
import { startHardhatNode } from "../helpers/node.js";
import { dataDir } from "../watch/backends.js";
import { deployOn, runStory, type Story, type Suite } from "../watch/story.js";
import { buildConsole, serveConsole } from "./serve.js";
import { startWatch, type Watch } from "../../src/watch/watch.js";
import { silentLogger } from "../../src/agent/log.js";

const SHOTS = path.join(import.meta.dirname, "..", "..", "docs", "console");
const AXE = createRequire(import.meta.url).resolve("axe-core/axe.min.js");
const STATUS = ["unknown", "active", "quarantined", "revoked"];

describe("console: the web app in Chromium against a real node and the watch's index", function () {
  this.timeout(300_000);
  let suite: Suite;
  let story: Story;
  let indexer: Indexer;
  let watch: Watch;
  let browser: Browser;
  let page: Page;
  let owner: string;

  /** The console's URL for `route`, reading the node and the suite the test deployed, acting as the owner's dev account. */
  function at(base: string, route: string) {
    const q = new URLSearchParams({
      owner,
      dev: owner,
      rpc: suite.node.url,
      registry: suite.addresses.registry,
      lockAccess: suite.addresses.lockAccess,
      custodyLedger: suite.addresses.custodyLedger,
      paymentChannels: suite.addresses.paymentChannels,
      locationBeacons: suite.addresses.locationBeacons,
    });
    return `${base}/?${q}#${route}`;
  }

  async function visit(route: string, base = watch.url) {
    await page.goto(at(base, route));
    await page.waitForSelector("main h1");
  }

  /** axe-core in the page: no serious or critical violation. */
  async function accessible(name: string) {
    await page.addScriptTag({ path: AXE });
    // Expressions as strings: they run in the page (the root tsconfig has no DOM types).
    const violations = (await page.evaluate("axe.run().then((r) => r.violations)")) as {
      id: string;
      impact: string;
      nodes: { target: string[] }[];
    }[];
    const bad = violations.filter((v) => v.impact === "serious" || v.impact === "critical");
    expect(
      bad.map((v) => `${v.id} (${v.impact}) at ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`),
      name,
    ).to.deep.equal([]);
  }

  async function shot(name: string) {
    await page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });
  }

  /** Connects the owner's development account (wagmi reconnects it on later visits). */
  async function connect() {
    await page.waitForSelector("text=/Connect development account|Acting as/");
    if (await page.locator("text=Connect development account").count())
      await page.click("text=Connect development account");
    await page.waitForSelector("text=Acting as");
  }

  const badges = (selector: string) => page.locator(`${selector} [data-check]`);

  before(async function () {
    mkdirSync(SHOTS, { recursive: true });
    buildConsole();
    suite = await deployOn(await startHardhatNode());
    story = await runStory(suite);
    owner = (await suite.owner.getAddress()).toLowerCase();
    // The console as `npm run watch` serves it: the watch's one front (index API, subscription
    // routes, console/dist at /), no tower key (it sends nothing here).
    watch = await startWatch({
      rpcUrl: suite.node.url,
      chainId: 31337,
      addresses: suite.addresses,
      startBlock: suite.deployBlock,
      port: 0,
      dataDir: dataDir(),
      log: silentLogger,
    });
    indexer = watch.indexer;
    await indexer.waitForBlock(await suite.provider.getBlockNumber());
    browser = await chromium.launch({
      executablePath: "/usr/bin/chromium",
      args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"],
    });
    page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    page.on("pageerror", (e) => console.log(`      page error: ${e.message}`));
  });

  after(async function () {
    await browser?.close();
    await watch?.stop();
    await suite?.node.stop();
  });

  it("fleet: the owner's devices by status and batch, and its alerts", async function () {
    await visit("/");
    await page.waitForSelector("[data-testid=total]");
    expect(await page.textContent("[data-testid=total]")).to.equal("5");
    const rows = await page.locator("table:has(caption:text('Devices')) tbody tr").count();
    expect(rows).to.equal(5);
    await page.waitForSelector("text=shipment.excursion_proven");
    expect(await page.textContent("main")).to.include("device.quarantined");
    await accessible("fleet");
    await shot("fleet");
  });

  it("fleet: search by device key finds the device on the chain; keyboard: the search is reachable and submits with Enter", async function () {
    await visit("/");
    // The heading has focus after navigation; the search field is the next stop.
    for (let i = 0; i < 4 && (await page.evaluate("document.activeElement?.id")) !== "search"; i++)
      await page.keyboard.press("Tab");
    expect(await page.evaluate("document.activeElement?.id")).to.equal("search");
    await page.keyboard.type(story.keys.lock.signer);
    await page.keyboard.press("Enter");
    await page.waitForFunction(`location.hash === "#/device/${story.devices.lock}"`);
  });

  it("device: the timeline with key provenance, the index checked against the registry, the beacon opened with the owner's key", async function () {
    await visit(`/device/${story.devices.stolen}`);
    await page.waitForSelector("[data-testid=device-status]");
    const text = await page.textContent("main");
    expect(text).to.include("reported stolen → quarantined");
    expect(text).to.include("released by its owner → active");
    expect(text).to.match(/key generation \d+ \(rotation, attested/);
    // The claim's and the rotation's device-key signatures, re-checked from their calldata.
    await page.waitForFunction(`document.querySelectorAll("[data-testid=key-check] [data-check]").length === 2`);
    expect(
      await badges("[data-testid=key-check]").evaluateAll((b) => b.map((x) => x.getAttribute("data-check"))),
    ).to.deep.equal(["verified", "verified"]);
    expect(await page.getAttribute("[data-testid=key-check] >> nth=1 >> [data-check]", "title")).to.include(
      "old key's ✓",
    );
    await page.waitForSelector(".cards [data-check]");
    expect(await page.getAttribute(".cards [data-check]", "data-check")).to.equal("verified");
    await page.waitForSelector("[data-testid=beacon-check] [data-check]");
    expect(await page.getAttribute("[data-testid=beacon-check] [data-check]", "data-check")).to.equal("verified");
    await page.fill("#beacon-key", story.beaconKeys.owner.privateKey);
    await page.click("text=Open");
    await page.waitForSelector("[data-testid=beacon-location]:text('47.37000, 8.54000')");
    await accessible("device");
    await shot("device");
  });

  it("device: a stranger's beacon key does not open the sealed location", async function () {
    await visit(`/device/${story.devices.stolen}`);
    await page.fill(
      "#beacon-key",
      (await import("../../src/beacons/index.js").then((b) => b.generateBeaconKey())).privateKey,
    );
    await page.click("text=Open");
    await page.waitForSelector("[data-testid=beacon-location]:text('not opened')");
  });

  it("shipment: both signatures of each handoff and each tracker signature verified from calldata; the chart shows the proven excursion; marks; EPCIS download", async function () {
    await visit(`/shipment/${story.shipment}`);
    await page.waitForSelector("[data-testid=handoff-2] [data-check]");
    await page.waitForSelector("[data-testid=checkpoint-2] [data-check]");
    expect(
      await badges("[data-testid^=handoff-]").evaluateAll((b) => b.map((x) => x.getAttribute("data-check"))),
    ).to.deep.equal(["verified", "verified"]);
    expect(
      await badges("[data-testid^=checkpoint-]").evaluateAll((b) => b.map((x) => x.getAttribute("data-check"))),
    ).to.deep.equal(["verified", "verified"]);
    expect(await page.textContent("[data-testid=handoff-1]")).to.match(/@\d+/);
    // The excursion's reading proven in the checkpoint's readings tree and outside what it claimed.
    await page.waitForSelector("[data-testid=excursion-check] [data-check]");
    expect(await page.getAttribute("[data-testid=excursion-check] [data-check]", "data-check")).to.equal("verified");
    expect(await page.locator("[data-testid=temp-chart] canvas").count()).to.be.greaterThan(0);
    expect(await page.textContent("[data-testid=chart-breaches]")).to.include("excursion_proven: 9.5 °C");
    const marks = await page.textContent("[data-testid=marks]");
    for (const m of ["overdue", "excursion_proven", "delivered"]) expect(marks).to.include(m);
    const [download] = await Promise.all([
      page.waitForEvent("download"),
      page.click("text=Download EPCIS 2.0 document"),
    ]);
    const doc = JSON.parse(readFileSync((await download.path())!, "utf8"));
    expect(doc.type).to.equal("EPCISDocument");
    expect(doc.schemaVersion).to.equal("2.0");
    const steps = doc.epcisBody.eventList.map((e: { bizStep: string }) => e.bizStep);
    expect(steps).to.deep.equal([
      "commissioning",
      "shipping",
      "sensor_reporting",
      "sensor_reporting",
      "shipping",
      "receiving",
    ]);
    await accessible("shipment");
    await shot("shipment");
  });

  it("shipment: the silent pallet is marked silent", async function () {
    await visit(`/shipment/${story.pallet}`);
    await page.waitForSelector("[data-testid=marks]:has-text('silent')");
  });

  it("lock: revoked key, epochs, managers, the anchored log batch's lock signature verified", async function () {
    await visit(`/lock/${story.devices.lock}`);
    await page.waitForSelector("table:has(caption:text('Anchored')) [data-check]");
    expect(await page.getAttribute("table:has(caption:text('Anchored')) [data-check]", "data-check")).to.equal(
      "verified",
    );
    const text = await page.textContent("main");
    expect(text).to.include("Revoked keys");
    expect(await page.locator("table:has(caption:text('Revoked keys')) tbody tr").count()).to.equal(1);
    expect(await page.textContent("table:has(caption:text('Managers'))")).to.include("removed");
    await accessible("lock");
    await shot("lock");
  });

  it("lock: an unlock record pasted with its proof is proven against the root the chain anchored; attack: an altered record is not", async function () {
    const book = UnlockLogBook.open(path.join(dataDir(), "unlocks.log"), story.devices.lock);
    const t = (await suite.provider.getBlock("latest"))!.timestamp;
    const decisions: Decision[] = [
      { open: true, at: t - 30 },
      { open: false, at: t - 20, reason: "expired" },
      { open: true, at: t - 10 },
    ];
    for (const d of decisions)
      await book.record(d, {
        accessKey: hexlify(randomBytes(32)),
        challenge: hexlify(randomBytes(32)),
        requestSignature: "0x1234",
      });
    const sealed = (await book.seal(2))!;
    const log = {
      seq: 2,
      root: sealed.root,
      count: 3,
      fromTime: BigInt(sealed.fromTime),
      toTime: BigInt(sealed.toTime),
      deadline: BigInt(t + 3600),
    };
    const signature = story.keys.lock.signDigest(
      digest(
        "UnlockLog",
        { chainId: 31337n, verifyingContract: suite.addresses.lockAccess },
        { lock: story.devices.lock, ...log },
      ),
    );
    await (await suite.locks.anchorLog(story.keys.lock.signer, log, signature)).wait();
    await indexer.waitForBlock(await suite.provider.getBlockNumber());
    await visit(`/lock/${story.devices.lock}`);
    await page.waitForSelector("table:has(caption:text('Anchored')) tbody tr:nth-child(2) [data-check=verified]");
    const proof = book.proof(1)!;
    await page.fill("#record-proof", JSON.stringify(proof));
    await page.click("text=Verify against the anchored root");
    await page.waitForSelector("[data-testid=record-result]:has-text('Proven')");
    expect(await page.textContent("[data-testid=record-result]")).to.include("denied");
    // The same record claimed as an opening: its leaf is another, the proof leads elsewhere.
    await page.fill("#record-proof", JSON.stringify({ ...proof, record: { ...proof.record, outcome: 0 } }));
    await page.click("text=Verify against the anchored root");
    await page.waitForSelector("[data-testid=record-result]:has-text('Not proven')");
    await book.close();
  });

  it("channel: deposit, paid and refund, closed; each voucher's payer signature verified", async function () {
    await visit(`/channel/${story.channel}`);
    await page.waitForSelector("[data-testid=channel-state]:text('closed')");
    await page.waitForFunction(`document.querySelectorAll("[data-check]").length >= 2`);
    expect(
      await page.locator("[data-check]").evaluateAll((b) => b.map((x) => x.getAttribute("data-check"))),
    ).to.deep.equal(["verified", "verified"]);
    expect(await page.textContent("main")).to.include("Deposit 1.5 ETH");
    await accessible("channel");
    await shot("channel");
  });

  it("lock actions from the page: appoint and remove a manager, revoke one key — the chain records each", async function () {
    const lock = story.devices.lock;
    const manager = (await suite.other.getAddress()).toLowerCase();
    const ownerEpoch = Math.floor(Number(await suite.locks.keyEpoch(lock)) / 65_536);
    await visit(`/lock/${lock}`);
    await connect();
    await page.fill("#manager", manager);
    await page.click("text=Appoint manager");
    await page.waitForSelector("text=Appoint manager: done in block");
    expect(await suite.locks.managerExpiry(lock, ownerEpoch, manager)).to.be.greaterThan(0n);
    await page.click("text=Remove manager");
    await page.waitForSelector("text=Remove manager: done in block");
    expect(await suite.locks.managerExpiry(lock, ownerEpoch, manager)).to.equal(0n);
    await page.fill("#key-id", "42");
    await page.click("text=Revoke this key");
    await page.waitForSelector("text=Revoke this key: done in block");
    expect(await suite.locks.isRevoked(lock, ownerEpoch, 42n)).to.equal(true);
    await indexer.waitForBlock(await suite.provider.getBlockNumber());
    await page.waitForSelector("table:has(caption:text('Revoked keys')) td:text-is('42')");
  });

  it("a certificate granted from the page with the owner's wallet opens the story's lock (the lock role decides)", async function () {
    await visit(`/lock/${story.devices.lock}`);
    await connect();
    const guest = randomDeviceKey("secp256k1");
    await page.fill("#holder", guest.signer);
    const [download] = await Promise.all([
      page.waitForEvent("download"),
      page.click("text=Sign and download certificate"),
    ]);
    const cert = JSON.parse(readFileSync((await download.path())!, "utf8"));
    const deployment = { chainId: 31337n, verifyingContract: suite.addresses.lockAccess };
    const clock = () => Math.floor(Date.now() / 1000);
    const reader = new LockChainReader({
      provider: suite.provider,
      registry: suite.addresses.registry,
      lockAccess: suite.addresses.lockAccess,
      lock: story.devices.lock,
      fromBlock: suite.deployBlock,
      clock,
    });
    await reader.lookupHolder(guest.signer);
    const hasher = await TypedDataHasher.create();
    const role = new LockRole({
      lock: story.devices.lock,
      deployment,
      hasher,
      verifier: new DeviceSignatureVerifier([]),
      maxStalenessS: 3600,
      clock,
    });
    role.update(await reader.read());
    const request = {
      lock: story.devices.lock,
      accessKey: bytesToHex(hasher.structHash("AccessKey", cert.key)),
      challenge: role.challenge(),
      deadline: BigInt(clock() + 60),
    };
    const decision = role.decide(cert, {
      request,
      signature: guest.signDigest(digest("UnlockRequest", deployment, request)),
    });
    expect(decision).to.include({ open: true });
    // The same certificate after the owner revokes all keys from the page: the lock refuses it.
    await page.click("text=Revoke all keys");
    await page.waitForSelector("text=Revoke all keys: done in block");
    role.update(await reader.read());
    const again = { ...request, challenge: role.challenge() };
    expect(
      role.decide(cert, { request: again, signature: guest.signDigest(digest("UnlockRequest", deployment, again)) }),
    ).to.include({
      open: false,
      reason: "epoch",
    });
  });

  it("reporting a device stolen from the page quarantines it on chain, and the alert shows up in the fleet", async function () {
    const id = story.devices.tracker;
    await visit(`/device/${id}`);
    await connect();
    await page.click("text=Report stolen");
    await page.waitForSelector("text=Report stolen: done in block");
    const info = await suite.registry.deviceInfo(id);
    expect(STATUS[Number(info.status)]).to.equal("quarantined");
    expect(info.reportedStolen).to.equal(true);
    await indexer.waitForBlock(await suite.provider.getBlockNumber());
    await page.waitForSelector("[data-testid=device-status]:text('quarantined')");
    await visit("/");
    await page.waitForSelector(`tr:has(a[href='#/device/${id}']):has-text('device.quarantined')`);
  });

  it("rotating a key from the page with the device's rotation file: the registry takes the new key, the timeline shows its provenance", async function () {
    const id = story.devices.payer;
    const newKey = randomDeviceKey("secp256k1");
    const fields = {
      chainId: 31337n,
      registry: suite.addresses.registry,
      device: id,
      nonce: await suite.registry.deviceNonce(id),
      deadline: BigInt((await suite.provider.getBlock("latest"))!.timestamp + 3600),
      newKey: newKey.signer,
    };
    const d = rotationDigest(fields);
    const file = path.join(dataDir(), "rotation.json");
    writeFileSync(
      file,
      serializeRotation({
        ...fields,
        newKeySignature: newKey.signDigest(d),
        oldKey: story.keys.payer.signer,
        oldKeySignature: story.keys.payer.signDigest(d),
      }),
    );
    await visit(`/device/${id}`);
    await connect();
    await page.setInputFiles("#rotation", file);
    await page.click("text=Rotate key");
    await page.waitForSelector("text=Rotate key: done in block");
    const [resolved] = await suite.registry.resolveKey(newKey.signer);
    expect(resolved).to.equal(id);
    await indexer.waitForBlock(await suite.provider.getBlockNumber());
    await page.waitForSelector(`text=/key generation 1 \\(rotation, attested/`);
  });

  it("subscribe to alerts: the owner's wallet signs the watch's subscription, the watch checks it against the chain and keeps it", async function () {
    await visit("/");
    await connect();
    await page.fill("#hook-url", "https://hooks.example/custos");
    await page.click("text=Sign and subscribe");
    await page.waitForSelector("[data-testid=subscription]:has-text('Subscribed')");
    const listed = (await (await fetch(`${watch.url}/subscriptions?owner=${owner}`)).json()) as {
      subscriptions: { url: string; scope: string; target: string }[];
    };
    expect(listed.subscriptions.map((s) => [s.url, s.scope, s.target.toLowerCase()])).to.deep.equal([
      ["https://hooks.example/custos", "owner", owner],
    ]);
  });

  it("attack: a watch that alters one handoff's custodian and one checkpoint's max is flagged as not matching the chain", async function () {
    const stranger = "0x000000000000000000000000000000000000dead";
    const liar = await serveConsole(watch.url, {
      tamper: (_path, body) => {
        const handoffs = body.handoffs as Record<string, unknown>[];
        const checkpoints = body.checkpoints as Record<string, unknown>[];
        return {
          ...body,
          handoffs: handoffs.map((h) => (String(h.seq) === "2" ? { ...h, to: stranger } : h)),
          checkpoints: checkpoints.map((c) => (String(c.seq) === "2" ? { ...c, maxTemp: 950 } : c)),
        };
      },
    });
    try {
      await visit(`/shipment/${story.shipment}`, liar.url);
      await page.waitForSelector("[data-testid=handoff-2] [data-check]");
      await page.waitForSelector("[data-testid=checkpoint-2] [data-check]");
      expect(await page.getAttribute("[data-testid=handoff-1] [data-check]", "data-check")).to.equal("verified");
      expect(await page.getAttribute("[data-testid=handoff-2] [data-check]", "data-check")).to.equal("mismatch");
      expect(await page.textContent("[data-testid=handoff-2]")).to.include("to");
      expect(await page.getAttribute("[data-testid=checkpoint-1] [data-check]", "data-check")).to.equal("verified");
      expect(await page.getAttribute("[data-testid=checkpoint-2] [data-check]", "data-check")).to.equal("mismatch");
      expect(await page.textContent("[data-testid=checkpoint-2]")).to.include("maxTemp");
      await shot("shipment-tampered");
    } finally {
      await liar.close();
    }
  });

  it("error and empty states: an unknown device, a malformed id, a watch that does not answer", async function () {
    await visit("/device/12345");
    await page.waitForSelector(".state.empty:has-text('not in the index')");
    await visit("/shipment/0x1234");
    await page.waitForSelector(".state.error:has-text('64 hex digits')");
    await page.goto(at(watch.url, "/").replace("/?", `/?watch=${encodeURIComponent("http://127.0.0.1:9")}&`));
    await page.waitForSelector(".state.error:has-text('does not answer')");
    await accessible("error state");
    // Settings: a bad value is refused naming the field and the fix; nothing is saved.
    await visit("/settings");
    await page.fill("#owner", "0x1234");
    await page.click("text=Save");
    await page.waitForSelector("[role=alert]:has-text('Owner must be 0x and 40 hex digits')");
    await page.fill("#owner", owner);
    await page.fill("#rpc", "not a url");
    await page.click("text=Save");
    await page.waitForSelector("[role=alert]:has-text('The node URL must be an absolute URL')");
    await accessible("settings");
    await shot("settings");
    // A watch whose indexer lags the chain says so, and the page passes it on.
    const lagging = await serveConsole(watch.url, {
      tamper: (_path, body) => ({ ...body, headBlock: Number(body.indexedBlock) + 7, lagBlocks: 7 }),
    });
    try {
      await visit(`/shipment/${story.shipment}`, lagging.url);
      await page.waitForSelector(".state.lagging:has-text('7 blocks behind')");
    } finally {
      await lagging.close();
    }
  });
});

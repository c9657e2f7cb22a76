import { expect } from "chai";
import { ethers, connection, loadFixture, time } from "../helpers/hardhat.js";
import { BrowserProvider } from "ethers";
import { Agent } from "../../src/agent/agent.js";
import { SimulatedSensor, TrackerRole } from "../../src/agent/roles/tracker.js";
import { checkpointSummary, submitExcursion, summaryHash } from "../../src/custody/excursion.js";
import { createShipment, deployCustody } from "../helpers/custody.js";
import { fundedWallet, tempDir } from "./helpers.js";

const FAST = { pollMs: 5, holdMs: 20, backoff: { baseMs: 20, capMs: 200 } };

async function trackerFixture() {
  const f = await deployCustody();
  const { id } = await createShipment(f);
  const payer = await fundedWallet();
  const { chainId } = await ethers.provider.getNetwork();
  const deployment = { chainId, registry: await f.registry.getAddress(), custodyLedger: await f.ledger.getAddress() };
  return { ...f, id, payer, deployment };
}

describe("tracker role: readings kept on disk, checkpoints signed into the outbox", function () {
  const open: { close(): Promise<unknown> }[] = [];
  afterEach(async function () {
    for (const o of open.splice(0).reverse()) await o.close();
  });

  async function start(f: Awaited<ReturnType<typeof trackerFixture>>, dataDir = tempDir()) {
    const agent = await Agent.create({
      signer: f.trackerKeys[0],
      deployment: f.deployment,
      dataDir,
      rpc: ethers.provider,
      payer: f.payer,
      ...FAST,
    });
    open.push({ close: () => agent.stop() });
    const now = await time.latest();
    const tracker = new TrackerRole({
      agent,
      dataDir,
      // 5 °C with a ±0.5 °C wave; a door left open for ten minutes at 12 °C.
      sensor: new SimulatedSensor({
        base: 500,
        amplitude: 50,
        excursions: [{ from: now + 1200, to: now + 1800, temp: 1200 }],
      }),
    });
    open.push(tracker);
    return { agent, tracker, now };
  }

  it("checkpoints land in order; an excursion breaches the shipment; any reading is proven against its root on chain", async function () {
    const f = await loadFixture(trackerFixture);
    const { agent, tracker, now } = await start(f);
    for (let i = 0; i < 4; i++) await tracker.sample(f.id, now + 10 + i * 150);
    await time.increaseTo(now + 500);
    const first = await tracker.checkpoint(f.id);
    expect(first).to.include({ seq: 1, from: 0, to: 4 });
    for (let i = 0; i < 6; i++) await tracker.sample(f.id, now + 1000 + i * 100);
    await time.increaseTo(now + 1600);
    expect(await tracker.checkpoint(f.id)).to.include({ seq: 2, from: 4, to: 10 });
    expect(await tracker.checkpoint(f.id)).to.equal(undefined); // nothing new
    await agent.drain();
    const s = await f.ledger.shipmentOf(f.id);
    expect([s.checkpointSeq, s.breached]).to.deep.equal([2n, true]);

    const p = tracker.proof(f.id, 2, 3); // the reading at now + 1300: 12 °C
    expect(p.reading.temp).to.equal(1200);
    expect(await f.ledger.verifyReading(p.root, p.reading, p.proof)).to.equal(true);
    expect(await f.ledger.verifyReading(p.root, { ...p.reading, temp: 500 }, p.proof)).to.equal(false);
    // Checkpoint 2 is the tracker's latest: the proof needs no signature.
    const [payer] = await ethers.getSigners();
    const latest = await submitExcursion(await f.ledger.getAddress(), payer, p);
    expect(latest.latest).to.equal(true);
    await expect(latest.tx).to.not.emit(f.ledger, "DeviceContradicted"); // an honest tracker's min/max hide nothing

    // Once checkpoint 3 is posted, checkpoint 2's reading is proven with the tracker's signature.
    await tracker.sample(f.id, now + 1700);
    await time.increaseTo(now + 1750);
    expect(await tracker.checkpoint(f.id)).to.include({ seq: 3 });
    await agent.drain();
    const signed = await submitExcursion(await f.ledger.getAddress(), payer, p);
    expect(signed.latest).to.equal(false);
    expect((await signed.tx.wait())!.status).to.equal(1);

    // Checkpoint 3 landing between the read and the send: a provider whose read of the latest
    // checkpoint is stale. The signature-free proof's gas estimate refuses, and the signed one goes.
    const selector = f.ledger.interface.getFunction("latestCheckpoint")!.selector;
    const stale = summaryHash(checkpointSummary(p.checkpoint, { minTemp: 200, maxTemp: 800 }));
    const staleReads = new BrowserProvider({
      request: async ({ method, params }: { method: string; params?: unknown[] }) => {
        const call = (params?.[0] ?? {}) as { data?: string };
        if (method === "eth_call" && call.data?.startsWith(selector)) return ethers.zeroPadValue(stale, 32);
        return connection.provider.request({ method, params });
      },
    });
    const racer = (await fundedWallet()).connect(staleReads);
    const raced = await submitExcursion(await f.ledger.getAddress(), racer, p);
    expect(raced.latest).to.equal(false);
    expect((await raced.tx.wait())!.status).to.equal(1);
  });

  it("CRASH: readings and checkpoints survive a restart; the next checkpoint continues the sequence", async function () {
    const f = await loadFixture(trackerFixture);
    const dataDir = tempDir();
    const first = await start(f, dataDir);
    for (let i = 0; i < 3; i++) await first.tracker.sample(f.id, first.now + 10 + i * 100);
    await first.tracker.checkpoint(f.id);
    await first.tracker.sample(f.id, first.now + 300);
    await time.increaseTo(first.now + 400);
    for (const o of open.splice(0).reverse()) await o.close();

    const second = await start(f, dataDir);
    expect(second.tracker.rawReadings(f.id)).to.have.length(4);
    expect(await second.tracker.checkpoint(f.id)).to.include({ seq: 2, from: 3, to: 4 });
    await second.agent.drain();
    expect((await f.ledger.shipmentOf(f.id)).checkpointSeq).to.equal(2n);
  });
});

import { expect } from "chai";
import { ethers, time } from "../helpers/hardhat.js";
import { runTask } from "./run.js";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
// CommonJS packages: their ESM default import is module.exports, so the class and the plugin by name.
import { Ajv } from "ajv";
import formats from "ajv-formats";
import { deploySuite } from "../../src/deploy/suite.js";
import { typedData, type Message } from "../../src/eip712/index.js";
import { randomDeviceKey } from "../../src/crypto/deviceKey.js";
import { Agent } from "../../src/agent/agent.js";
import { SimulatedSensor, TrackerRole } from "../../src/agent/roles/tracker.js";
import { cbv, locationId, shipmentIdOf } from "../../src/custody/index.js";
import { DeviceBatch } from "../../src/registry/batch.js";
import { FIRMWARE, MODEL } from "../helpers/registry.js";
import { fundedWallet } from "../agent/helpers.js";
import { deviceByKey } from "../../src/registry/lookup.js";

const SHARED = path.join(import.meta.dirname, "..", "..", "..", "shared", "epcis");

function epcisValidator() {
  const ajv = new Ajv({ strict: false, allErrors: true });
  formats.default(ajv);
  return ajv.compile(JSON.parse(readFileSync(path.join(SHARED, "EPCIS-JSON-Schema.json"), "utf8")));
}

describe("Hardhat tasks: custody (history, prove-reading, EPCIS export)", function () {
  const dir = mkdtempSync(path.join(tmpdir(), "custos-custody-"));

  it("GS1's own sensor examples validate against GS1's schema (the validator works)", function () {
    const validate = epcisValidator();
    for (const f of ["SensorDataExample1.jsonld", "SensorDataExample2.jsonld", "SensorDataExample5.jsonld"]) {
      expect(validate(JSON.parse(readFileSync(path.join(SHARED, f), "utf8"))), f).to.equal(true);
    }
    expect(validate({ type: "EPCISDocument", schemaVersion: "2.0" })).to.equal(false);
  });

  it("a cold-chain shipment through three custodians: history re-verifies every signature, one reading is proven, and the EPCIS export validates against GS1's schema", async function () {
    const [admin, shipper, carrier, receiver] = await ethers.getSigners();
    const suite = await deploySuite(admin, { manufacturers: [admin.address] });
    const registry = await ethers.getContractAt("DeviceRegistry", suite.registry);
    const ledger = await ethers.getContractAt("CustodyLedger", suite.custodyLedger);
    const { chainId } = await ethers.provider.getNetwork();
    // A tracker device, provisioned and claimed by the shipper.
    const key = randomDeviceKey("p256", suite.p256Verifier);
    // Committed by `admin`, the suite's manufacturer: the batch id is the manufacturer's.
    const batch = new DeviceBatch([{ deviceKey: key.signer, model: MODEL, firmwareHash: FIRMWARE }], admin.address);
    await (await registry.commitBatch(batch.root)).wait();
    const claim = { owner: shipper.address, batch: batch.id, deadline: BigInt((await time.latest()) + 3600) };
    const t = typedData("DeviceClaim", { chainId, verifyingContract: suite.registry }, claim);
    await registry.connect(shipper).claim(
      {
        owner: shipper.address,
        batchId: batch.id,
        deviceKey: key.signer,
        model: MODEL,
        firmwareHash: FIRMWARE,
        deadline: claim.deadline,
      },
      batch.proof(key.signer),
      ethers.hexlify(await key.sign(ethers.getBytes(ethers.TypedDataEncoder.hash(t.domain, t.types, claim)))),
    );
    const epc = "urn:epc:id:sscc:0614141.1234567890";
    const id = shipmentIdOf(shipper.address, epc);
    await ledger.connect(shipper).createShipment({
      epc,
      tracker: (await deviceByKey(registry, key.signer)).id,
      receiver: receiver.address,
      deadline: BigInt((await time.latest()) + 86_400),
      maxSilence: 3600,
      minTemp: 200,
      maxTemp: 800,
      metadataHash: ethers.id("vaccines"),
      childrenRoot: ethers.ZeroHash,
      acceptOwnerKeys: false,
    });
    const custody = { chainId, verifyingContract: suite.custodyLedger };
    const hand = async (
      from: typeof shipper,
      to: typeof shipper,
      seq: number,
      bizStep: string,
      disposition: string,
    ) => {
      const h: Message = {
        shipment: id,
        from: from.address,
        to: to.address,
        seq,
        bizStep: cbv(bizStep),
        disposition: cbv(disposition),
        readPoint: locationId("urn:epc:id:sgln:0614141.00001.0"),
        at: BigInt(await time.latest()),
        deadline: BigInt((await time.latest()) + 600),
      };
      const td = typedData("Handoff", custody, h);
      await ledger.handoff(
        h as never,
        await from.signTypedData(td.domain, td.types, h),
        await to.signTypedData(td.domain, td.types, h),
      );
    };
    await hand(shipper, carrier, 1, "shipping", "in_transit");

    // The tracker rides along: readings every 5 minutes, a door open for ten minutes at 11 °C.
    const trackerDir = path.join(dir, "tracker");
    const agent = await Agent.create({
      signer: key,
      deployment: { chainId, registry: suite.registry, custodyLedger: suite.custodyLedger },
      dataDir: trackerDir,
      rpc: ethers.provider,
      payer: await fundedWallet(),
      pollMs: 5,
      holdMs: 20,
    });
    const start = await time.latest();
    const tracker = new TrackerRole({
      agent,
      dataDir: trackerDir,
      sensor: new SimulatedSensor({
        base: 450,
        amplitude: 30,
        excursions: [{ from: start + 900, to: start + 1500, temp: 1100 }],
      }),
      location: () => locationId("geo:52.37,4.89"),
    });
    for (let i = 1; i <= 12; i++) await tracker.sample(id, start + i * 300);
    await time.increaseTo(start + 3700);
    await tracker.checkpoint(id);
    await agent.drain();
    const excursionIndex = tracker.rawReadings(id).findIndex((r) => r.temp === 1100);
    await tracker.close();
    await agent.stop();
    // Proven and submitted while the shipment is on its way (already breached: no new event).
    const submitted = await runTask("custody:prove-reading", {
      shipment: id,
      seq: "1",
      index: String(excursionIndex),
      readings: trackerDir,
      ledger: suite.custodyLedger,
      submit: true,
    });
    expect(submitted).to.include({ verified: true, outOfRange: true, against: "the tracker's latest checkpoint" });
    expect((await ethers.provider.getTransactionReceipt(submitted.submitted))!.status).to.equal(1);
    await hand(carrier, receiver, 2, "receiving", "in_progress");
    await ledger.connect(receiver).deliver(id);

    const h = await runTask("custody:history", { shipment: id, ledger: suite.custodyLedger, json: false });
    expect(h.allVerified).to.equal(true);
    expect(h.entries.map((e: { kind: string }) => e.kind)).to.deep.equal([
      "created",
      "handoff",
      "checkpoint",
      "breached",
      "handoff",
      "delivered",
    ]);

    const proof = await runTask("custody:prove-reading", {
      shipment: id,
      seq: "1",
      index: String(excursionIndex),
      readings: trackerDir,
      ledger: suite.custodyLedger,
      submit: false,
    });
    expect(proof).to.include({ verified: true, outOfRange: true });
    await expect(
      runTask("custody:prove-reading", {
        shipment: id,
        seq: "2",
        index: "0",
        readings: trackerDir,
        ledger: suite.custodyLedger,
        submit: false,
      }),
    ).to.be.rejectedWith(/--seq\/--index: no checkpoint 2/);

    // Named by its EPC, a shipment needs its creator: the default (the first account) did not create it.
    const byEpc = await runTask("custody:history", {
      epc,
      creator: shipper.address,
      ledger: suite.custodyLedger,
      json: true,
    });
    expect(byEpc.entries).to.deep.equal(h.entries);
    await expect(runTask("custody:history", { epc, ledger: suite.custodyLedger, json: true })).to.be.rejectedWith(
      new RegExp(`no shipment ${shipmentIdOf(admin.address, epc)}`),
    );
    await expect(
      runTask("custody:history", { shipment: id, epc, ledger: suite.custodyLedger, json: true }),
    ).to.be.rejectedWith(/not both/);
    await expect(runTask("custody:history", { ledger: suite.custodyLedger, json: true })).to.be.rejectedWith(
      /--shipment or --epc/,
    );

    const out = path.join(dir, "shipment.jsonld");
    await runTask("custody:epcis", { epc, creator: shipper.address, out, ledger: suite.custodyLedger });
    const doc = JSON.parse(readFileSync(out, "utf8"));
    const validate = epcisValidator();
    expect(validate(doc), JSON.stringify(validate.errors, null, 2)).to.equal(true);
    const events = doc.epcisBody.eventList;
    expect(events.map((e: { bizStep: string }) => e.bizStep)).to.deep.equal([
      "commissioning",
      "shipping",
      "sensor_reporting",
      "receiving",
      "receiving",
    ]);
    // Every event names the on-chain shipment: an EPC alone does not (ids are their creators').
    expect(new Set(events.map((e: Record<string, string>) => e["custos:shipment"]))).to.deep.equal(new Set([id]));
    expect(events[0]["custos:creator"]).to.equal(shipper.address);
    expect(events[2].sensorElementList[0].sensorReport[0]).to.deep.include({
      type: "Temperature",
      maxValue: 11,
      uom: "CEL",
    });
    await expect(runTask("custody:history", { shipment: "0x1234", json: true })).to.be.rejectedWith(/--shipment/);
  });
});

/**
 * The messages devices send their guardians: signed `PositionReport`s, taken as observations only
 * from the key the registry resolves to the device. A genuine lock's reports from outside its
 * fleet's geofence fire the geofence rule; forged, foreign and replayed reports are refused.
 */
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { expect } from "chai";
import { ZeroHash } from "ethers";
import { ethers, loadFixture } from "../helpers/hardhat.js";
import { deployRegistry, makeKeys, provision, rotation } from "../helpers/registry.js";
import { secp256k1Key } from "../../src/crypto/deviceKey.js";
import { TypedDataHasher } from "../../src/eip712/fast.js";
import { signPositionReport, sendToGuardians } from "../../src/agent/roles/positionReport.js";
import { DeviceReports } from "../../src/guardian/service/reports.js";
import { OffChainBook } from "../../src/guardian/service/offChainBook.js";
import { ChainClock } from "../../src/guardian/service/clock.js";
import { SignedMessageCheck } from "../../src/guardian/service/signedMessages.js";
import { VoucherReports } from "../../src/guardian/service/vouchers.js";
import { EvidenceStore } from "../../src/guardian/service/evidence.js";
import { startGuardianApi } from "../../src/guardian/service/http.js";
import {
  DEFAULT_POLICY,
  evaluate,
  observationsOf,
  type DeviceObservations,
  type Policy,
} from "../../src/guardian/policy/index.js";

const HOME = { latitudeE7: 473_700_000, longitudeE7: 85_400_000 };
const AWAY = { latitudeE7: 481_400_000, longitudeE7: 115_800_000 }; // Munich: ~240 km from home
const T = 1_800_000_000;
// The chain's time as the guardian sees it: a little after the reports.
const clock = { now: () => T + 1_000 };

async function fixture() {
  const ctx = await deployRegistry();
  const keys = makeKeys(ctx, 2);
  const { ids } = await provision(ctx, keys);
  const hasher = await TypedDataHasher.create();
  const guardians = { chainId: ctx.deployment.chainId, registry: ctx.deployment.verifyingContract };
  // Each inbox keeps its book in `dir` (a fresh one unless given: a restarted guardian reopens its own).
  const reports = async (dir = mkdtempSync(path.join(os.tmpdir(), "custos-reports-"))) =>
    new DeviceReports({
      provider: ethers.provider,
      deployment: ctx.deployment,
      book: await OffChainBook.open(dir),
      clock,
    });
  const report = (key = keys[0], seq = 1, position = AWAY, device = ids[0]) =>
    signPositionReport(key, hasher, guardians, { device, seq, at: T + seq, record: ZeroHash, ...position });
  return { ctx, keys, ids, report, reports };
}

const policy: Policy = {
  ...DEFAULT_POLICY,
  scopes: [{ name: "home", match: { fleet: "home" }, geofence: { circle: { center: HOME, radiusMeters: 1_000 } } }],
};

function observations(device: bigint, locations: DeviceObservations["locations"]): DeviceObservations {
  return observationsOf(device, {
    fleet: "home",
    manufacturer: "0x" + "a1".repeat(20),
    firstSeenAt: T - 86_400,
    lastSeenAt: T,
    locations,
  });
}

describe("guardian: devices' signed position reports", function () {
  it("genuine reports from outside the geofence are observations that fire the geofence rule", async function () {
    const { ids, report, reports } = await loadFixture(fixture);
    const inbox = await reports();
    for (let seq = 1; seq <= 3; seq++)
      expect(await inbox.submit(await report(undefined, seq))).to.deep.equal({ accepted: true });
    const locations = inbox.locations(ids[0]);
    expect(locations).to.have.length(3);
    expect(locations[0].signed?.signature).to.match(/^0x/);
    const e = evaluate(policy, observations(ids[0], locations), T + 10);
    expect(e.findings.find((f) => f.rule === "geofence")?.decision).to.equal("fire");
    expect(e.decision).to.equal("fire");
  });

  it("genuine reports from inside the geofence do not fire it", async function () {
    const { ids, report, reports } = await loadFixture(fixture);
    const inbox = await reports();
    for (let seq = 1; seq <= 3; seq++) await inbox.submit(await report(undefined, seq, HOME));
    const e = evaluate(policy, observations(ids[0], inbox.locations(ids[0])), T + 10);
    expect(e.findings.find((f) => f.rule === "geofence")?.decision).to.equal("clear");
  });

  it("attack: a forged report (signed by a key that is not the device's) is refused and never observed", async function () {
    const { ids, report, reports } = await loadFixture(fixture);
    const inbox = await reports();
    const forger = secp256k1Key(ethers.id("a stranger's key"));
    // Claiming the device's key but signed by another: the signature does not check.
    const forged = { ...(await report(forger, 1)), key: (await report(undefined, 1)).key };
    expect(await inbox.submit(forged)).to.include({ accepted: false, field: "signature" });
    // Signed by its own unregistered key, naming the device: the registry does not resolve it to the device.
    expect(await inbox.submit(await report(forger, 2))).to.include({ accepted: false, field: "key" });
    expect(inbox.locations(ids[0])).to.deep.equal([]);
  });

  it("attack: another registered device's key cannot report for this device", async function () {
    const { ids, keys, report, reports } = await loadFixture(fixture);
    const inbox = await reports();
    expect(await inbox.submit(await report(keys[1], 1, AWAY, ids[0]))).to.include({ accepted: false, field: "key" });
    expect(inbox.locations(ids[0])).to.deep.equal([]);
  });

  it("attack: a replayed report (same seq) is refused", async function () {
    const { ids, report, reports } = await loadFixture(fixture);
    const inbox = await reports();
    const r = await report(undefined, 5);
    expect(await inbox.submit(r)).to.deep.equal({ accepted: true });
    expect(await inbox.submit(r)).to.include({ accepted: false, field: "seq" });
    expect(await inbox.submit(await report(undefined, 4))).to.include({ accepted: false, field: "seq" });
    expect(inbox.locations(ids[0])).to.have.length(1);
  });

  it("attack: a report dated ahead of the chain is refused (it would keep the device looking alive); a leaked key's huge seq does not block the device's next key", async function () {
    const { ids, keys, report, reports, ctx } = await loadFixture(fixture);
    const inbox = await reports();
    const hasher = await TypedDataHasher.create();
    const guardians = { chainId: ctx.deployment.chainId, registry: ctx.deployment.verifyingContract };
    const future = await signPositionReport(keys[0], hasher, guardians, {
      device: ids[0],
      seq: 1,
      at: T + 1_000 + 3_600,
      record: ZeroHash,
      ...AWAY,
    });
    expect(await inbox.submit(future)).to.include({ accepted: false, field: "at" });
    const huge = await signPositionReport(keys[0], hasher, guardians, {
      device: ids[0],
      seq: 2n ** 64n - 1n,
      at: T + 1,
      record: ZeroHash,
      ...AWAY,
    });
    expect(await inbox.submit(huge)).to.deep.equal({ accepted: true });
    // The same key stays bound by its seq…
    expect(await inbox.submit(await report(undefined, 2))).to.include({ accepted: false, field: "seq" });
    // …but the seq is the key's: the device's next key (the owner rotates the leaked one away) starts afresh.
    const next = makeKeys(ctx, 1)[0];
    await ctx.registry.connect(ctx.owner).rotateKey(ids[0], await rotation(ctx, ids[0], next, keys[0]));
    expect(await inbox.submit(await report(next, 1))).to.deep.equal({ accepted: true });
  });

  it("a restart: reports taken before it are still observed, and a replay stays refused", async function () {
    const { ids, report, reports } = await loadFixture(fixture);
    const dir = mkdtempSync(path.join(os.tmpdir(), "custos-reports-"));
    const first = await reports(dir);
    for (let seq = 1; seq <= 3; seq++)
      expect(await first.submit(await report(undefined, seq))).to.deep.equal({ accepted: true });
    // Not closed first: what was acknowledged is on disk (fdatasync) before the answer.
    const again = await reports(dir);
    expect(again.locations(ids[0]).map((l) => l.at)).to.deep.equal([T + 1, T + 2, T + 3]);
    expect(await again.submit(await report(undefined, 3))).to.include({ accepted: false, field: "seq" });
    const e = evaluate(policy, observations(ids[0], again.locations(ids[0])), T + 10);
    expect(e.findings.find((f) => f.rule === "geofence")?.decision).to.equal("fire");
    rmSync(dir, { recursive: true, force: true });
  });

  it("POST /reports: 202 for a genuine report, 400 naming the field for a forged or malformed one", async function () {
    const { report, reports, ids, ctx } = await loadFixture(fixture);
    const dir = mkdtempSync(path.join(os.tmpdir(), "custos-reports-"));
    const inbox = await reports();
    const api = await startGuardianApi({
      evidence: new EvidenceStore(path.join(dir, "evidence")),
      reports: inbox,
      vouchers: new VoucherReports({
        check: new SignedMessageCheck({
          provider: ethers.provider,
          chainId: BigInt(ctx.deployment.chainId),
          addresses: { registry: ctx.deployment.verifyingContract },
        }),
        book: await OffChainBook.open(dir),
        clock: new ChainClock(),
      }),
      status: () => ({}),
      port: 0,
    });
    try {
      const good = await report(undefined, 1);
      expect(await sendToGuardians([api.url], good)).to.deep.equal([{ url: api.url, accepted: true }]);
      const [forged] = await sendToGuardians([api.url], { ...good, seq: "2" }); // the signature covers seq
      expect(forged.accepted).to.equal(false);
      expect(forged.reason).to.include("signature");
      const [malformed] = await sendToGuardians([api.url], { ...good, latitudeE7: 1e10 });
      expect(malformed.reason).to.include("latitudeE7");
      expect(inbox.locations(ids[0])).to.have.length(1);
    } finally {
      await api.app.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

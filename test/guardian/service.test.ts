import { expect } from "chai";
import path from "node:path";
import { createLogger } from "../../src/agent/log.js";
import { startGuardian, type GuardianHandle } from "../../src/guardian/service/index.js";
import {
  BAD_FIRMWARE,
  OVER_STRICT,
  STRICT_FIRMWARE,
  attest,
  guardianWorld,
  hashOf,
  oneSecondBlocks,
  removeTempDirs,
  revokeFirmware,
  tempDir,
  votesOf,
  waitFor,
  waitForRegistryEvent,
  writePolicy,
  type GuardianWorld,
} from "./serviceFixture.js";

const ACTIVE = 1n; // IDeviceRegistry.DeviceStatus.Active

describe("guardian service: three guardians, quorum two, a real node with 1 s blocks and a real index", function () {
  this.timeout(300_000);
  let w: GuardianWorld;
  const running: GuardianHandle[] = [];
  const policyFiles: string[] = [];
  const log = process.env.CUSTOS_TEST_LOG ? createLogger({ level: "debug", stream: process.stderr }) : undefined;

  async function start(i: number): Promise<GuardianHandle> {
    const dataDir = tempDir();
    const g = await startGuardian({
      rpcUrl: w.node.url,
      chainId: 31337,
      watchUrl: w.indexer.url,
      addresses: w.fleet.addresses,
      key: w.guardians[i].privateKey,
      policyFile: policyFiles[i],
      dataDir,
      port: 0,
      ...(log ? { log: log.child({ guardian: i }) } : {}),
    });
    running.push(g);
    return g;
  }

  before(async function () {
    w = await guardianWorld(3);
    // Device 0 updates to an image its manufacturer will recall; devices 1 and 2 stay on the shipped one.
    await attest(w, 0, BAD_FIRMWARE);
    const dir = tempDir();
    for (let i = 0; i < 3; i++) policyFiles.push(writePolicy(path.join(dir, `policy-${i}.json`), STRICT_FIRMWARE));
    await oneSecondBlocks(w.node);
  });

  after(async function () {
    for (const g of running) await g.stop();
    await w?.indexer.stop();
    await w?.node.stop();
    removeTempDirs();
  });

  it("attack: a device keeps running firmware its manufacturer revoked, one guardian of three offline — the other two quarantine it within two blocks, with evidence anyone can check", async function () {
    const [a, b] = [await start(0), await start(1)]; // guardian 2 is offline
    await waitFor(async () => a.stats().block >= 0 && b.stats().block >= 0, 30_000, "both guardians evaluating");
    const device = w.fleet.devices[0].id;
    const revokedIn = await revokeFirmware(w, BAD_FIRMWARE);
    const flaggedIn = await waitForRegistryEvent(w, "GuardianFlagged", device, revokedIn);
    console.log(
      `      revoked in block ${revokedIn}, quarantined in block ${flaggedIn} (${flaggedIn - revokedIn} blocks)`,
    );
    expect(flaggedIn - revokedIn).to.be.within(1, 2);
    expect(await w.fleet.registry.deviceStatus(device)).to.not.equal(ACTIVE);
    // The innocent devices were not touched.
    for (const d of w.fleet.devices.slice(1)) expect(await w.fleet.registry.deviceStatus(d.id)).to.equal(ACTIVE);

    // The reason each guardian voted with is the keccak256 of the evidence it serves, byte for byte.
    for (const g of [a, b]) {
      const [vote] = await votesOf(w, g.address, device);
      expect(vote.flag).to.equal(true);
      const reply = await fetch(`${g.url}/evidence/${vote.reason}`);
      expect(reply.status).to.equal(200);
      const body = await reply.text();
      expect(hashOf(body)).to.equal(vote.reason);
      const evidence = JSON.parse(body);
      expect(evidence.device).to.equal(device.toString());
      expect(evidence.decision).to.equal("fire");
      const finding = evidence.findings.find((f: { rule: string }) => f.rule === "revokedFirmware");
      expect(finding, "the revokedFirmware finding").to.not.equal(undefined);
      const revocationTx = (
        await w.fleet.registry.queryFilter(w.fleet.registry.filters.FirmwareRevoked(), revokedIn, revokedIn)
      )[0].transactionHash;
      expect(finding.observations.map((o: { txHash?: string }) => o.txHash)).to.include(revocationTx);
    }
    expect((await fetch(`${a.url}/evidence/0x${"00".repeat(32)}`)).status).to.equal(404);
    expect((await fetch(`${a.url}/evidence/not-a-hash`)).status).to.equal(400);
  });

  it("attack: one guardian with a wrong (malicious) policy votes against an innocent device alone — it stays active", async function () {
    writePolicy(policyFiles[2], OVER_STRICT);
    const c = await start(2);
    const innocent = w.fleet.devices[1].id;
    const from = await w.provider.getBlockNumber();
    await waitFor(
      async () => (await votesOf(w, c.address, innocent, from)).length > 0,
      30_000,
      "the wrong guardian's vote",
    );
    const votedIn = (await votesOf(w, c.address, innocent, from))[0].block;
    // Three more blocks: the honest guardians do not join it.
    await waitFor(async () => (await w.provider.getBlockNumber()) >= votedIn + 3, 10_000, "three blocks");
    expect(await w.fleet.registry.deviceStatus(innocent)).to.equal(ACTIVE);
    const [round, count] = await w.quorum.votes(innocent, true, c.address);
    expect(count).to.equal(1n);
    expect(Number(round)).to.equal(0);
    for (const g of running.slice(0, 2)) expect(await votesOf(w, g.address, innocent)).to.deep.equal([]);
  });

  it("a false positive — two guardians with an over-strict policy quarantine an innocent device — is cleared by the quorum once their policy is corrected", async function () {
    const innocent = w.fleet.devices[2].id;
    const from = await w.provider.getBlockNumber();
    writePolicy(policyFiles[0], OVER_STRICT); // guardian 2 runs it already
    const flaggedIn = await waitForRegistryEvent(w, "GuardianFlagged", innocent, from);
    expect(await w.fleet.registry.deviceStatus(innocent)).to.not.equal(ACTIVE);

    // Corrected: guardians 0 and 2 go back to the right policy; the condition no longer holds for them.
    writePolicy(policyFiles[0], STRICT_FIRMWARE);
    writePolicy(policyFiles[2], STRICT_FIRMWARE);
    const clearedIn = await waitForRegistryEvent(w, "GuardianCleared", innocent, flaggedIn);
    expect(await w.fleet.registry.deviceStatus(innocent)).to.equal(ACTIVE);
    // Guardian 1, whose policy was right all along, never voted to flag it (only to clear it).
    expect((await votesOf(w, running[1].address, innocent)).map((v) => v.flag)).to.not.include(true);
    // The misbehaving device stays quarantined: it still runs the recalled image.
    await waitFor(async () => (await w.provider.getBlockNumber()) >= clearedIn + 3, 10_000, "three blocks");
    expect(await w.fleet.registry.deviceStatus(w.fleet.devices[0].id)).to.not.equal(ACTIVE);
    expect(await w.fleet.registry.deviceStatus(innocent)).to.equal(ACTIVE);
  });
});

import { expect } from "chai";
import { spawn, type ChildProcess } from "node:child_process";
import path from "node:path";
import { Outbox } from "../../src/agent/outbox.js";
import { EvidenceStore } from "../../src/guardian/service/index.js";
import {
  BAD_FIRMWARE,
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
  writePolicy,
  type GuardianWorld,
} from "./serviceFixture.js";

const children = new Set<ChildProcess>();
const killGroup = (child: ChildProcess) => {
  try {
    if (child.pid) process.kill(-child.pid, "SIGKILL");
  } catch {
    // already gone
  }
};
process.on("exit", () => children.forEach(killGroup));

/** Starts the guardian process; resolves when it exits (killed). */
function startGuardianProcess(options: object): { child: ChildProcess; exited: Promise<void> } {
  const child = spawn(
    process.execPath,
    [
      "--import",
      import.meta.resolve("tsx"),
      path.join(import.meta.dirname, "guardianProcess.ts"),
      JSON.stringify(options),
    ],
    { detached: true, stdio: ["ignore", "pipe", "pipe"] },
  );
  children.add(child);
  let rest = "";
  child.stdout!.on("data", (chunk: Buffer) => {
    const parts = (rest + chunk.toString()).split("\n");
    rest = parts.pop()!;
    for (const line of parts) child.emit("line", line);
  });
  child.stderr!.resume();
  const exited = new Promise<void>((resolve) => child.once("exit", () => (children.delete(child), resolve())));
  return { child, exited };
}

describe("guardian service: kill -9 while it votes", function () {
  this.timeout(300_000);
  let w: GuardianWorld;

  before(async function () {
    w = await guardianWorld(12);
  });

  after(async function () {
    children.forEach(killGroup);
    await w?.indexer.stop();
    await w?.node.stop();
    removeTempDirs();
  });

  it("attack: SIGKILL when a vote is queued, when its transaction is recorded, or at random — no vote lost, none sent twice", async function () {
    // Every device runs the image about to be recalled: the guardian owes each one a flag vote. It
    // votes alone (the other two guardians are offline), so each vote stays open in round 0 and the
    // chain shows exactly what it sent.
    const N = w.fleet.devices.length;
    for (let i = 0; i < N; i++) await attest(w, i, BAD_FIRMWARE);
    const dataDir = tempDir();
    const policyFile = writePolicy(path.join(tempDir(), "policy.json"), STRICT_FIRMWARE);
    const guardian = w.guardians[0];
    const options = {
      rpcUrl: w.node.url,
      chainId: 31337,
      watchUrl: w.indexer.url,
      addresses: w.fleet.addresses,
      key: guardian.privateKey,
      policyFile,
      dataDir,
    };
    await oneSecondBlocks(w.node);
    await revokeFirmware(w, BAD_FIRMWARE);

    const triggers = [/guardian: vote queued/, /transaction recorded/, null];
    const reached: string[] = [];
    let kills = 0;
    const voted = async () => new Set((await votesOf(w, guardian.address)).map((v) => v.device)).size;
    // Every kill point at least once, then on until every vote is on chain.
    for (let round = 0; round < 3 || (round < 12 && (await voted()) < N); round++) {
      const p = startGuardianProcess(options);
      const trigger = triggers[round % triggers.length];
      const killAt = new Promise<void>((resolve) => {
        if (trigger)
          p.child.on("line", (line: string) => {
            if (!trigger.test(line)) return;
            reached.push(trigger.source);
            resolve();
          });
        else setTimeout(resolve, 1_500 + Math.floor(Math.random() * 3_000));
        setTimeout(resolve, 10_000); // nothing to do this round
      });
      await Promise.race([killAt, p.exited]);
      killGroup(p.child);
      await p.exited;
      kills++;
    }

    // Then let one run to the end.
    const last = startGuardianProcess(options);
    await waitFor(async () => (await voted()) === N, 60_000, "a vote on every device");
    // A moment for a stray second transaction, if one were coming.
    await new Promise((r) => setTimeout(r, 3_000));
    killGroup(last.child);
    await last.exited;

    expect(kills).to.be.greaterThan(2);
    expect(reached).to.include("guardian: vote queued");
    expect(reached).to.include("transaction recorded");
    const votes = await votesOf(w, guardian.address);
    // One vote per device, all flags in round 0, and the guardian's account sent exactly N transactions.
    expect(votes).to.have.length(N);
    expect(new Set(votes.map((v) => v.device)).size).to.equal(N);
    expect(votes.every((v) => v.flag && v.round === 0)).to.equal(true);
    expect(await w.provider.getTransactionCount(guardian.address, "latest")).to.equal(N);
    expect(await w.provider.getTransactionCount(guardian.address, "pending")).to.equal(N);
    // Every reason on chain has its evidence on disk, hashing to it.
    const store = new EvidenceStore(path.join(dataDir, "evidence"));
    for (const v of votes) {
      const json = store.get(v.reason);
      expect(json, `evidence of ${v.reason}`).to.not.equal(undefined);
      expect(hashOf(json!)).to.equal(v.reason);
    }
    const calls = Outbox.read(path.join(dataDir, "outbox.jsonl"))
      .all()
      .filter((e) => e.type === "GuardianFlag");
    expect(calls).to.have.length(N);
    expect(calls.map((e) => e.outcome)).to.deep.equal(Array(N).fill("confirmed"));
    console.log(`      ${kills} kills; ${N} votes, ${N} transactions`);
  });
});

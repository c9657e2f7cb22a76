import { expect } from "chai";
import { spawn, type ChildProcess } from "node:child_process";
import path from "node:path";
import { Outbox } from "../../src/agent/outbox.js";
import {
  createShipment,
  oneSecondBlocks,
  removeTempDirs,
  tempDir,
  towerChain,
  waitForEvent,
  type TowerChain,
} from "./towerFixture.js";

const children = new Set<ChildProcess>();
const killGroup = (child: ChildProcess) => {
  try {
    if (child.pid) process.kill(-child.pid, "SIGKILL");
  } catch {
    // already gone
  }
};
process.on("exit", () => children.forEach(killGroup));

/** Starts the tower process; resolves when it exits (killed), with its stdout lines so far. */
function startTowerProcess(options: object): { child: ChildProcess; lines: string[]; exited: Promise<void> } {
  const child = spawn(
    process.execPath,
    [
      "--import",
      import.meta.resolve("tsx"),
      path.join(import.meta.dirname, "towerProcess.ts"),
      JSON.stringify(options),
    ],
    { detached: true, stdio: ["ignore", "pipe", "pipe"] },
  );
  children.add(child);
  const lines: string[] = [];
  let rest = "";
  child.stdout!.on("data", (chunk: Buffer) => {
    const parts = (rest + chunk.toString()).split("\n");
    rest = parts.pop()!;
    for (const line of parts) {
      lines.push(line);
      child.emit("line", line);
    }
  });
  child.stderr!.resume();
  const exited = new Promise<void>((resolve) => child.once("exit", () => (children.delete(child), resolve())));
  return { child, lines, exited };
}

describe("watchtower: kill -9 while it sends", function () {
  this.timeout(300_000);
  let c: TowerChain;

  before(async function () {
    c = await towerChain();
  });

  after(async function () {
    children.forEach(killGroup);
    await c?.node.stop();
    removeTempDirs();
  });

  it("attack: SIGKILL at the moment an action is queued, recorded as a transaction, or at random: none lost, none broadcast twice", async function () {
    const N = 8;
    const shipments: Awaited<ReturnType<typeof createShipment>>[] = [];
    for (let i = 0; i < N; i++) shipments.push(await createShipment(c, { deadlineIn: 6 + i, maxSilence: 1_000_000 }));
    const dataDir = tempDir();
    const options = {
      rpcUrl: c.node.url,
      chainId: 31337,
      addresses: c.fleet.addresses,
      sender: { key: c.towerKey.privateKey },
      dataDir,
    };
    await oneSecondBlocks(c.node);

    // Kill points, in turn: right after an action is on disk (not sent yet), right after its
    // transaction is recorded (broadcast in flight), and after a random time.
    const triggers = [/watchtower: queued/, /transaction recorded/, null];
    let kills = 0;
    /** The kill points that were reached (a round with nothing left to do times out instead). */
    const reached: string[] = [];
    const marked = async () => {
      let n = 0;
      for (const s of shipments) if ((await c.ledger.shipmentOf(s.id)).overdue) n++;
      return n;
    };
    for (let round = 0; round < 12 && (await marked()) < N; round++) {
      const p = startTowerProcess(options);
      const trigger = triggers[round % triggers.length];
      const killAt = new Promise<void>((resolve) => {
        if (trigger)
          p.child.on("line", (line: string) => {
            if (!trigger.test(line)) return;
            reached.push(trigger.source);
            resolve();
          });
        else setTimeout(resolve, 1_000 + Math.floor(Math.random() * 2_000));
        setTimeout(resolve, 8_000); // nothing to do this round
      });
      await Promise.race([killAt, p.exited]);
      killGroup(p.child);
      await p.exited;
      kills++;
    }

    // Then let one run to the end.
    const last = startTowerProcess(options);
    for (const s of shipments) await waitForEvent(c, "MarkedOverdue", s.id, 60_000);
    // A moment for a stray second transaction, if one were coming.
    await new Promise((r) => setTimeout(r, 3_000));
    killGroup(last.child);
    await last.exited;

    expect(kills).to.be.greaterThan(2);
    expect(reached).to.include("watchtower: queued");
    expect(reached).to.include("transaction recorded");
    expect(await marked()).to.equal(N);
    // Every shipment marked by the tower, and the tower's account sent exactly one transaction per
    // shipment: no action sent twice (a second markOverdue would revert, but still be a transaction).
    for (const s of shipments) {
      const log = await waitForEvent(c, "MarkedOverdue", s.id);
      expect((await c.provider.getTransaction(log.transactionHash))!.from).to.equal(c.towerKey.address);
    }
    expect(await c.provider.getTransactionCount(c.towerKey.address, "latest")).to.equal(N);
    expect(await c.provider.getTransactionCount(c.towerKey.address, "pending")).to.equal(N);
    const calls = Outbox.read(path.join(dataDir, "outbox.jsonl"))
      .all()
      .filter((e) => e.type === "MarkOverdue");
    expect(calls).to.have.length(N);
    expect(calls.map((e) => e.outcome)).to.deep.equal(Array(N).fill("confirmed"));
  });
});

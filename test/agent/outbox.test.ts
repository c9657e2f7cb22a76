import { expect } from "chai";
import { spawnSync } from "node:child_process";
import { appendFileSync, readFileSync, statSync, truncateSync, writeFileSync } from "node:fs";
import path from "node:path";
import { hexlify, id as textHash, randomBytes } from "ethers";
import { Outbox, type RpcSubmission } from "../../src/agent/outbox.js";
import { messageId, type SignedDeviceMessage } from "../../src/messages/index.js";
import { tempDir } from "./helpers.js";

const KEY_A = "0x" + "a1".repeat(20);
const KEY_B = "0x" + "b2".repeat(20);

/** A message of the right shape (its signature is random bytes: the outbox does not judge it). */
function attestation(key: string, device: bigint, nonce: number): SignedDeviceMessage {
  return {
    type: "FirmwareAttestation",
    key,
    message: {
      device: device.toString(),
      firmwareHash: textHash(`fw ${nonce}`),
      nonce: String(nonce),
      deadline: "99999999999",
    },
    signature: hexlify(randomBytes(65)),
  };
}

/** A location beacon with beacon nonce `nonce` (LocationBeacons' sequence, not the device nonce). */
function beacon(key: string, device: bigint, nonce: number): SignedDeviceMessage {
  return {
    type: "LocationBeacon",
    key,
    message: {
      device: device.toString(),
      nonce: String(nonce),
      recipients: "0x" + "11".repeat(32),
      ciphertext: "0x" + "22".repeat(56),
      at: String(nonce),
      deadline: "99999999999",
    },
    signature: hexlify(randomBytes(65)),
  };
}

function submission(n: number): RpcSubmission {
  return { via: "rpc", txHash: hexlify(randomBytes(32)), raw: hexlify(randomBytes(120)), from: KEY_A, accountNonce: n };
}

function logLines(file: string): Record<string, unknown>[] {
  return readFileSync(file, "utf8")
    .split("\n")
    .filter((l) => l.length > 0)
    .map((l) => JSON.parse(l));
}

describe("agent outbox", function () {
  it("is on disk when add resolves, and replays every state after a reopen", async function () {
    const file = path.join(tempDir(), "outbox.jsonl");
    const outbox = Outbox.open(file);
    const [m0, m1, m2] = [0, 1, 2].map((n) => attestation(KEY_A, 7n, n));
    const e0 = await outbox.add(m0, { ref: "r0" });
    // Another reader sees it already: it is in the file, not only in memory.
    expect(Outbox.read(file).get(e0.id)?.state).to.equal("pending");
    await outbox.add(m1);
    await outbox.add(m2);
    const s = submission(4);
    await outbox.submit(messageId(m0), s);
    await outbox.done(messageId(m1), "spent", { reason: "landed elsewhere" });
    await outbox.submit(messageId(m2), submission(5));
    await outbox.done(messageId(m2), "confirmed", { txHash: "0x01" });
    await outbox.close();

    const again = Outbox.open(file);
    expect(again.get(messageId(m0))).to.deep.include({
      state: "submitted",
      submission: s,
      ref: "r0",
      nonce: 0n,
      device: 7n,
    });
    expect(again.get(messageId(m0))!.message).to.deep.equal(m0);
    expect(again.get(messageId(m1))).to.deep.include({ state: "done", outcome: "spent", reason: "landed elsewhere" });
    expect(again.get(messageId(m2))).to.deep.include({ state: "done", outcome: "confirmed", txHash: "0x01" });
    expect(again.byRef("r0")!.id).to.equal(messageId(m0));
    expect(again.stats()).to.deep.include({ pending: 0, submitted: 1, confirmed: 1, spent: 1, rejected: 0 });
    await again.close();
  });

  it("attack: a torn last line (kill -9 or power loss mid-write) is cut off; everything before it replays", async function () {
    const file = path.join(tempDir(), "outbox.jsonl");
    const outbox = Outbox.open(file);
    const msgs = [0, 1, 2, 3].map((n) => attestation(KEY_A, 7n, n));
    for (const m of msgs.slice(0, 3)) await outbox.add(m);
    await outbox.submit(messageId(msgs[0]), submission(0));
    await outbox.close();
    const good = statSync(file).size;

    // The crash: the fourth add was half written.
    const torn = JSON.stringify({ op: "add", id: messageId(msgs[3]), seq: 3, message: msgs[3], at: 1 });
    appendFileSync(file, torn.slice(0, torn.length / 2));
    const reopened = Outbox.open(file);
    expect(statSync(file).size).to.equal(good);
    expect(reopened.live().map((e) => e.nonce)).to.deep.equal([0n, 1n, 2n]);
    expect(reopened.get(messageId(msgs[0]))!.state).to.equal("submitted");
    expect(reopened.get(messageId(msgs[3]))).to.equal(undefined);
    // It carries on writing whole lines after the cut.
    await reopened.add(msgs[3]);
    await reopened.close();
    expect(logLines(file)).to.have.length(5);
    const last = Outbox.open(file);
    expect(last.live().map((e) => e.nonce)).to.deep.equal([0n, 1n, 2n, 3n]);
    await last.close();
  });

  it("attack: a torn tail inside a submit record loses only that step: the message is still there, pending", async function () {
    const file = path.join(tempDir(), "outbox.jsonl");
    const outbox = Outbox.open(file);
    const m = attestation(KEY_A, 7n, 0);
    await outbox.add(m);
    await outbox.submit(messageId(m), submission(0));
    await outbox.close();
    truncateSync(file, statSync(file).size - 10); // the submit record loses its end
    const reopened = Outbox.open(file);
    expect(reopened.get(messageId(m))!.state).to.equal("pending");
    await reopened.close();
  });

  it("adds a message or a ref once: a second add writes nothing", async function () {
    const file = path.join(tempDir(), "outbox.jsonl");
    const outbox = Outbox.open(file);
    const m = attestation(KEY_A, 7n, 0);
    const [a, b] = await Promise.all([outbox.add(m, { ref: "x" }), outbox.add(m, { ref: "x" })]);
    expect(a.id).to.equal(b.id);
    const c = await outbox.add(attestation(KEY_A, 7n, 1), { ref: "x" }); // same ref, other message
    expect(c.id).to.equal(a.id);
    expect(logLines(file)).to.have.length(1);
    await outbox.close();
  });

  it("hands out each device's messages in nonce order, one device after another", async function () {
    const outbox = Outbox.open(path.join(tempDir(), "outbox.jsonl"));
    for (const [key, device, nonce] of [
      [KEY_A, 1n, 2],
      [KEY_B, 2n, 5],
      [KEY_A, 1n, 0],
      [KEY_A, 1n, 1],
      [KEY_B, 2n, 4],
    ] as const) {
      await outbox.add(attestation(key, device, nonce));
    }
    expect(outbox.live().map((e) => `${e.device}:${e.nonce}`)).to.deep.equal(["1:0", "1:1", "1:2", "2:4", "2:5"]);
    expect(outbox.heads().map((e) => `${e.device}:${e.nonce}`)).to.deep.equal(["1:0", "2:4"]);
    expect(outbox.nextNonce(1n)).to.equal(3n);
    await outbox.done(outbox.heads()[0].id, "rejected", { reason: "expired" });
    expect(outbox.heads().map((e) => `${e.device}:${e.nonce}`)).to.deep.equal(["1:1", "2:4"]);
    expect(outbox.nextNonce(3n)).to.equal(undefined);
    await outbox.close();
  });

  it("hands out a device's location beacons in a lane of their own, numbered apart from its device nonces", async function () {
    const file = path.join(tempDir(), "outbox.jsonl");
    const outbox = Outbox.open(file);
    await outbox.add(attestation(KEY_A, 1n, 7));
    await outbox.add(attestation(KEY_A, 1n, 8));
    await outbox.add(beacon(KEY_A, 1n, 1));
    await outbox.add(beacon(KEY_A, 1n, 0));
    const label = (e: { type: string; nonce?: bigint }) => `${e.type === "LocationBeacon" ? "b" : "d"}${e.nonce}`;
    expect(outbox.live().map(label)).to.deep.equal(["d7", "d8", "b0", "b1"]);
    // A held registry message does not hold the device's beacons back, nor the other way round.
    expect(outbox.heads().map(label)).to.deep.equal(["d7", "b0"]);
    expect(outbox.nextNonce(1n)).to.equal(9n);
    expect(outbox.nextNonce(1n, "registry")).to.equal(9n);
    expect(outbox.nextNonce(1n, "locationBeacons")).to.equal(2n);
    await outbox.done(outbox.heads()[1].id, "confirmed");
    expect(outbox.heads().map(label)).to.deep.equal(["d7", "b1"]);
    // Summaries of finished beacons keep their lane after compaction and a reopen.
    await outbox.compact();
    await outbox.close();
    const again = Outbox.open(file);
    expect(again.nextNonce(1n, "locationBeacons")).to.equal(2n);
    expect(again.nextNonce(1n, "registry")).to.equal(9n);
    await again.close();
  });

  it("compacts when finished entries dominate, keeping live entries whole and the refs of finished ones", async function () {
    const file = path.join(tempDir(), "outbox.jsonl");
    const outbox = Outbox.open(file, { compactMinRecords: 50, retainDone: 20 });
    const ids: string[] = [];
    for (let n = 0; n < 60; n++) ids.push((await outbox.add(attestation(KEY_A, 7n, n), { ref: `r${n}` })).id);
    const live = submission(99);
    await outbox.submit(ids[59], live);
    for (let n = 0; n < 55; n++) await outbox.done(ids[n], "confirmed", { txHash: `0x${n}` });
    const records = logLines(file);
    expect(records.length).to.be.lessThan(100);
    expect(records.some((r) => r.op === "retired")).to.equal(true);
    await outbox.close();

    const again = Outbox.open(file, { compactMinRecords: 50, retainDone: 20 });
    expect(again.live().map((e) => e.nonce)).to.deep.equal([55n, 56n, 57n, 58n, 59n]);
    expect(again.get(ids[59])!.submission).to.deep.equal(live);
    expect(again.get(ids[59])!.message).to.deep.equal(outbox.get(ids[59])!.message);
    // The newest finished entries keep their refs, so a re-run never signs them again.
    expect(again.byRef("r54")).to.deep.include({ state: "done", outcome: "confirmed", txHash: "0x54" });
    expect(again.nextNonce(7n)).to.equal(60n);
    expect(again.stats().confirmed).to.be.at.most(55);
    await again.close();
  });

  it("keeps a public call (no device, no nonce) once by its own id, in a lane of its own, across replay and compaction", async function () {
    const file = path.join(tempDir(), "outbox.jsonl");
    const outbox = Outbox.open(file, { compactMinRecords: 10_000 });
    const shipment = "0x" + "5a".repeat(32);
    const call = await outbox.addCall({ type: "MarkOverdue", shipment });
    // The same call decided again (a restarted watchtower): the same entry, nothing written.
    const records = logLines(file).length;
    expect(
      (await outbox.addCall({ type: "MarkOverdue", shipment: shipment.toUpperCase().replace("0X", "0x") })).id,
    ).to.equal(call.id);
    expect(logLines(file)).to.have.length(records);
    const silent = await outbox.addCall({ type: "MarkSilent", shipment });
    expect(silent.id).to.not.equal(call.id);
    // Device messages queue behind each other; a call waits for none of them, nor for another call.
    const [m0, m1] = [0, 1].map((n) => attestation(KEY_A, 7n, n));
    await outbox.add(m0);
    await outbox.add(m1);
    expect(outbox.heads().map((e) => e.type)).to.deep.equal(["MarkOverdue", "MarkSilent", "FirmwareAttestation"]);
    expect(outbox.nextNonce(7n)).to.equal(2n);
    const sub = submission(3);
    await outbox.submit(call.id, sub);
    await outbox.done(silent.id, "spent", { reason: "already on chain" });
    await outbox.compact();
    await outbox.close();

    const again = Outbox.open(file);
    expect(again.get(call.id)).to.deep.include({ type: "MarkOverdue", state: "submitted", device: 0n });
    expect(again.get(call.id)!.call).to.deep.equal({ type: "MarkOverdue", shipment });
    expect(again.get(call.id)!.submission).to.deep.equal(sub);
    expect(again.get(silent.id)).to.deep.include({ state: "done", outcome: "spent" });
    await again.close();
  });

  it("attack: a public call of the wrong shape is refused, naming the field", async function () {
    const outbox = Outbox.open(path.join(tempDir(), "outbox.jsonl"));
    const refusal = (c: unknown) =>
      outbox.addCall(c as never).then(
        () => "",
        (err: Error) => err.message,
      );
    expect(await refusal({ type: "Settle", shipment: "0x" + "00".repeat(32) })).to.match(/^call\.type must be one of/);
    expect(await refusal({ type: "MarkOverdue", shipment: "0x1234" })).to.match(/^call\.shipment must be 32 bytes/);
    expect(outbox.all()).to.have.length(0);
    await outbox.close();
  });

  it("keeps appends made during a compaction", async function () {
    const file = path.join(tempDir(), "outbox.jsonl");
    const outbox = Outbox.open(file, { compactMinRecords: 10_000 });
    const ids: string[] = [];
    for (let n = 0; n < 20; n++) ids.push((await outbox.add(attestation(KEY_A, 7n, n))).id);
    for (let n = 0; n < 10; n++) await outbox.done(ids[n], "confirmed");
    const adds = [20, 21, 22].map((n) => outbox.add(attestation(KEY_A, 7n, n)));
    await Promise.all([outbox.compact(), ...adds, outbox.done(ids[10], "spent")]);
    await outbox.close();
    const again = Outbox.read(file);
    expect(again.live().map((e) => Number(e.nonce))).to.deep.equal([11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22]);
    expect(again.get(ids[10])!.outcome).to.equal("spent");
  });

  it("attack: a second process cannot open an outbox in use; a dead owner's lock is taken over", async function () {
    const dir = tempDir();
    const file = path.join(dir, "outbox.jsonl");
    const outbox = Outbox.open(file);
    expect(() => Outbox.open(file)).to.throw(/in use by process/);
    await outbox.close();

    // A lock left by a process that was killed: its pid no longer runs.
    const dead = spawnSync(process.execPath, ["-e", "console.log(process.pid)"]).stdout.toString().trim();
    writeFileSync(`${file}.lock`, dead);
    const taken = Outbox.open(file);
    expect(readFileSync(`${file}.lock`, "utf8")).to.equal(String(process.pid));
    await taken.close();
  });
});

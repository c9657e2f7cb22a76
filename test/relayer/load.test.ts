/**
 * Load: 2,000 messages from 100 simulated devices over loopback HTTP, a tenth of them invalid (bad
 * signature, expired, replayed, quarantined device). Nothing valid is lost or lands twice, every
 * invalid one is refused before any gas is spent (the relayer's account sent no failing
 * transaction, and every transaction carried only valid messages), and the figures are printed.
 */
import { expect } from "chai";
import { ethers } from "ethers";
import type { SignedDeviceMessage } from "../../src/messages/index.js";
import type { DeviceKeyKind } from "../../src/crypto/deviceKey.js";
import {
  attestation,
  deadlineIn,
  fastHasher,
  get,
  makeFleet,
  post,
  relayerFor,
  transactionsFrom,
  until,
  type HttpReply,
} from "./fixtures.js";

type Case = "valid" | "bad signature" | "expired" | "replay of a landed message" | "quarantined device" | "resent";

interface Sent {
  kind: Case;
  msg: SignedDeviceMessage;
  reply?: HttpReply;
}

/** Sends every item with `concurrency` requests in flight. */
async function sendAll(url: string, items: Sent[], concurrency: number): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < items.length) {
        const item = items[next++];
        item.reply = await post(url, "/v1/messages", item.msg);
      }
    }),
  );
}

function shuffle<T>(items: T[], seed = 7): T[] {
  let s = seed;
  const rand = () => (s = (s * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [items[i], items[j]] = [items[j], items[i]];
  }
  return items;
}

describe("relayer load: 2,000 messages from 100 devices, a tenth invalid", function () {
  this.timeout(180_000);

  it("loses no valid message, lands none twice, refuses every invalid one before spending gas", async function () {
    const DEVICES = 100;
    const QUARANTINED = 10; // the last ten devices
    const PER_DEVICE = 20;
    const LANDED_BEFORE = 25; // devices whose nonce 0 landed directly before the run
    // One device in ten has a P-256 key (a secure element), the rest secp256k1.
    const kinds: DeviceKeyKind[] = ["secp256k1", "secp256k1", "secp256k1", "p256", ...Array(6).fill("secp256k1")];
    const fleet = await makeFleet({ devices: DEVICES, kinds });
    const h = await fastHasher();
    const deadline = await deadlineIn(fleet.provider);
    const active = fleet.devices.slice(0, DEVICES - QUARANTINED);
    const quarantined = fleet.devices.slice(DEVICES - QUARANTINED);
    const owner = fleet.registry.connect(fleet.owner);
    for (const d of quarantined) await (await owner.reportStolen(d.id)).wait();

    // Nonce 0 of 25 devices lands directly (the owner relays it): the run replays those.
    const landed = active.slice(0, LANDED_BEFORE).map((d) => attestation(h, d, fleet.deployment, 0n, deadline));
    await (
      await owner.multicall(
        landed.map((m) =>
          fleet.registry.interface.encodeFunctionData("attestFirmware", [
            m.key,
            m.message.firmwareHash as string,
            m.message.deadline as string,
            m.signature,
          ]),
        ),
      )
    ).wait();

    const items: Sent[] = [];
    active.forEach((d, i) => {
      const first = i < LANDED_BEFORE ? 1n : 0n;
      for (let n = 0n; n < BigInt(PER_DEVICE); n++)
        items.push({
          kind: "valid",
          msg: attestation(h, d, fleet.deployment, first + n, deadline, ethers.id(`fw ${i}.${n}`)),
        });
    });
    const past = (await deadlineIn(fleet.provider, 0)) - 60n;
    for (let i = 0; i < 50; i++) {
      const d = active[i % active.length];
      const tampered = attestation(h, d, fleet.deployment, 5n, deadline, ethers.id(`evil ${i}`));
      const sig = ethers.getBytes(tampered.signature);
      sig[7] ^= 0x5a; // a flipped bit in r: another signer, or none
      items.push({ kind: "bad signature", msg: { ...tampered, signature: ethers.hexlify(sig) } });
      items.push({ kind: "expired", msg: attestation(h, active[(i + 7) % active.length], fleet.deployment, 3n, past) });
    }
    for (const m of landed.slice(0, 25)) items.push({ kind: "replay of a landed message", msg: m });
    quarantined.forEach((d) => {
      for (let n = 0n; n < 5n; n++)
        items.push({ kind: "quarantined device", msg: attestation(h, d, fleet.deployment, n, deadline) });
    });
    shuffle(items);
    // Resent: 25 valid messages posted again once the first copy was accepted (idempotent: 200, same id, queued once).
    const resent: Sent[] = items
      .filter((s) => s.kind === "valid")
      .slice(0, 25)
      .map((s) => ({ kind: "resent", msg: s.msg }));
    expect(items.length + resent.length).to.equal(2000);
    expect(items.filter((s) => s.kind !== "valid").length + resent.length).to.equal(200);

    const relayer = await relayerFor(fleet, { batchSize: 100, batchIntervalMs: 100 });
    const startBlock = await fleet.provider.getBlockNumber();
    const balanceBefore = await fleet.provider.getBalance(relayer.address);

    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    await sendAll(relayer.url, items, 64);
    await sendAll(relayer.url, resent, 16);
    const tIntake = performance.now();
    const cpu = process.cpuUsage(cpu0);
    const valid = items.filter((s) => s.kind === "valid");
    await until(
      async () => (await get<{ queueDepth: number }>(relayer.url, "/health")).body.queueDepth === 0,
      120_000,
      "the queue to drain",
    );
    const tLanded = performance.now();

    // Every valid message accepted (202) and confirmed.
    const lost = valid.filter((s) => s.reply!.status !== 202);
    expect(
      lost.map((s) => s.reply!.body),
      "valid messages refused",
    ).to.deep.equal([]);
    const statuses = await Promise.all(valid.map((s) => get(relayer.url, `/v1/messages/${s.reply!.body.id}`)));
    expect(statuses.filter((r) => r.body.status !== "confirmed").map((r) => r.body)).to.deep.equal([]);

    // Every invalid one refused with its own code; resends answered 200 with the first copy's id.
    const expected: Record<Exclude<Case, "valid" | "resent">, [number, string]> = {
      "bad signature": [400, "bad_signature"],
      expired: [400, "expired"],
      "replay of a landed message": [409, "nonce_used"],
      "quarantined device": [409, "device_not_active"],
    };
    for (const [kind, [status, code]] of Object.entries(expected)) {
      const wrong = items.filter((s) => s.kind === kind && (s.reply!.status !== status || s.reply!.body.code !== code));
      expect(
        wrong.map((s) => s.reply!.body),
        kind,
      ).to.deep.equal([]);
    }
    const firstIds = new Map(valid.map((s) => [s.msg.signature, s.reply!.body.id]));
    for (const s of resent) {
      expect(s.reply!.status).to.equal(200);
      expect(s.reply!.body.id).to.equal(firstIds.get(s.msg.signature));
    }

    // On chain: each active device's nonce moved exactly by its valid messages; one event each.
    const nonces = await Promise.all(fleet.devices.map((d) => fleet.registry.deviceNonce(d.id)));
    active.forEach((_, i) => expect(nonces[i]).to.equal(BigInt(PER_DEVICE + (i < LANDED_BEFORE ? 1 : 0))));
    quarantined.forEach((_, i) => expect(nonces[active.length + i]).to.equal(0n));
    const events = await fleet.registry.queryFilter(fleet.registry.filters.FirmwareAttested(), startBlock + 1);
    expect(events.length, "attestations landed (0 lost, 0 duplicated)").to.equal(valid.length);
    const landedFirmware = new Set(events.map((e) => `${e.args.deviceId}:${e.args.firmwareHash}`));
    expect(landedFirmware.size).to.equal(valid.length);

    // The relayer's account sent only successful batch transactions, to the registry.
    const txs = await transactionsFrom(fleet.provider, relayer.address, startBlock + 1);
    expect(
      txs.filter((t) => t.status !== 1),
      "failing transactions",
    ).to.deep.equal([]);
    expect(new Set(txs.map((t) => t.to!.toLowerCase()))).to.deep.equal(
      new Set([fleet.addresses.registry.toLowerCase()]),
    );
    const gas = txs.reduce((sum, t) => sum + t.gasUsed, 0n);
    const balanceAfter = await fleet.provider.getBalance(relayer.address);
    expect(balanceAfter < balanceBefore).to.equal(true);

    const intakeSeconds = (tIntake - t0) / 1000;
    const figures = {
      messages: items.length + resent.length,
      valid: valid.length,
      refused: items.length + resent.length - valid.length - resent.length,
      resent_idempotent: resent.length,
      "requests/s": Math.round((items.length + resent.length) / intakeSeconds),
      "accepted/s": Math.round(valid.length / intakeSeconds),
      "intake time (s)": Number(intakeSeconds.toFixed(2)),
      "total time to last confirmation (s)": Number(((tLanded - t0) / 1000).toFixed(2)),
      "test process CPU during intake (%)": Math.round(((cpu.user + cpu.system) / 1000 / (tIntake - t0)) * 100),
      transactions: txs.length,
      "messages per transaction": Number((valid.length / txs.length).toFixed(1)),
      "gas per message": Math.round(Number(gas) / valid.length),
    };
    console.log("      relayer load figures:", JSON.stringify(figures, null, 2).replace(/\n/g, "\n      "));
    await relayer.close();
  });
});

/**
 * Model-based (stateful) test of the CustodyLedger: fast-check generates random sequences of
 * handoffs (signed by both sides, by one side only, by a stranger, with a repeated or skipped seq),
 * tracker checkpoints (in and out of range, in and out of sequence, honest or with a min and max that
 * hide readings), excursion proofs (against the tracker's latest checkpoint without a signature, or
 * against any posted one with it), overdue and silence flags, time passing, and deliveries (by the
 * receiver or not). A model predicts each step; after every step the
 * chain is compared with the model and invariant 5 of DESIGN.md is checked: `seq` grew by exactly
 * one per handoff, the custodian changed only with both signatures, and a delivered shipment never
 * changed again.
 *
 * Every sequence opens with a handoff, a checkpoint with a reading out of range and its excursion
 * proof, and closes with a delivery, so that each of those is exercised in every sequence.
 *
 * Runs: `FC_RUNS` (default 200; 10 under `hardhat coverage`); seeds as `assertProperty` says
 * (test/helpers/property.ts). Reproduce with `FC_SEED` / `FC_PATH`.
 */
import { expect } from "chai";
import fc from "fast-check";
import hre, { ethers } from "hardhat";
import { loadFixture, time } from "@nomicfoundation/hardhat-network-helpers";
import type { Result, Signer } from "ethers";
import { digest, type Message } from "../../src/eip712";
import { ReadingsBatch, cbv, locationId, shipmentIdOf } from "../../src/custody";
import { checkpointSummary, type ExcursionEvidence } from "../../src/custody/excursion";
import { HOUR, deployCustody, signHandoff } from "../helpers/custody";
import { expectOutcome, tick } from "../helpers/stateful";
import { assertProperty } from "../helpers/property";

const UNDER_COVERAGE = Boolean((hre as { __SOLIDITY_COVERAGE_RUNNING?: boolean }).__SOLIDITY_COVERAGE_RUNNING);
const RUNS = Number(process.env.FC_RUNS ?? (UNDER_COVERAGE ? 10 : 200));
const GAS = { gasLimit: 2_000_000 };

interface Party {
  address: string;
  /** The key that signs for it (the wallet's owner key for the ERC-1271 wallet). */
  signer: Signer;
}

interface ShipmentModel {
  id: string;
  custodian: string;
  seq: number;
  checkpointSeq: number;
  lastAt: bigint;
  deadline: bigint;
  breached: boolean;
  overdue: boolean;
  silent: boolean;
  delivered: boolean;
  /** The chain's view when it was delivered: it must never differ afterwards. */
  frozen?: unknown;
  /** Its checkpoints as posted, with the tracker's signature and the readings behind them. */
  posted: PostedCheckpoint[];
}

interface PostedCheckpoint {
  cp: Message;
  signature: string;
  batch: ReadingsBatch;
}

interface Model {
  now: bigint;
  shipments: ShipmentModel[];
  /** The tracker's latest checkpoint (both shipments share one tracker). */
  latest?: PostedCheckpoint;
}

type World = Awaited<ReturnType<typeof world>>;

async function world() {
  const f = await deployCustody();
  const parties: Party[] = [
    { address: f.shipper.address, signer: f.shipper },
    { address: f.carrier.address, signer: f.carrier },
    { address: f.walletAddress, signer: f.stranger },
    { address: f.receiver.address, signer: f.receiver },
  ];
  const now = BigInt(await time.latest());
  const initial: ShipmentModel[] = [];
  for (const epc of ["urn:epc:id:sscc:0614141.1000000001", "urn:epc:id:sscc:0614141.1000000002"]) {
    const deadline = now + 6n * BigInt(HOUR);
    await f.ledger.connect(f.shipper).createShipment({
      epc,
      tracker: f.trackers[0],
      receiver: f.receiver.address,
      deadline,
      maxSilence: HOUR,
      minTemp: 200,
      maxTemp: 800,
      metadataHash: ethers.ZeroHash,
      childrenRoot: ethers.ZeroHash,
    });
    initial.push({
      id: shipmentIdOf(epc),
      custodian: f.shipper.address,
      seq: 0,
      checkpointSeq: 0,
      lastAt: BigInt(await time.latest()),
      deadline,
      breached: false,
      overdue: false,
      silent: false,
      delivered: false,
      posted: [],
    });
  }
  return { ...f, parties, initial };
}

const tally = { steps: 0, refused: 0, handoffs: 0, checkpoints: 0, deliveries: 0, excursions: 0 };

async function checkInvariants(m: Model, w: World, at: string): Promise<void> {
  for (const s of m.shipments) {
    const v = await w.ledger.shipmentOf(s.id);
    expect(
      [v.custodian, Number(v.handoffSeq), Number(v.checkpointSeq), v.breached, v.overdue, v.silent, v.delivered],
      `${at}: shipment ${s.id}`,
    ).to.deep.equal([s.custodian, s.seq, s.checkpointSeq, s.breached, s.overdue, s.silent, s.delivered]);
    if (s.frozen !== undefined)
      expect((v as unknown as Result).toArray(), `${at}: a delivered shipment changed`).to.deep.equal(s.frozen);
  }
  // The whole custody chain from events: gap-free, each step from the custodian before it.
  for (const s of m.shipments) {
    const events = await w.ledger.queryFilter(w.ledger.filters.HandedOff(s.id));
    events.forEach((e, i) => expect(Number(e.args.seq), `${at}: handoff seq`).to.equal(i + 1));
    let holder = w.shipper.address;
    for (const e of events) {
      expect(e.args.from, `${at}: a handoff not from the custodian`).to.equal(holder);
      holder = e.args.to;
    }
    expect(holder).to.equal(s.custodian);
  }
}

abstract class Step implements fc.AsyncCommand<Model, World> {
  constructor(readonly which: number) {}
  check(): boolean {
    return true;
  }
  shipment(m: Model): ShipmentModel {
    return m.shipments[this.which % m.shipments.length];
  }
  abstract apply(m: Model, w: World): Promise<void>;
  async run(m: Model, w: World): Promise<void> {
    tally.steps++;
    await this.apply(m, w);
    await checkInvariants(m, w, this.toString());
  }
  abstract toString(): string;
}

type Signing = "both" | "fromOnly" | "strangerFrom" | "strangerTo";

class Handoff extends Step {
  constructor(
    which: number,
    /** A party, or -1: the current custodian. */
    readonly from: number,
    readonly to: number,
    readonly seqDelta: 0 | 1 | 2,
    readonly signing: Signing,
  ) {
    super(which);
  }
  async apply(m: Model, w: World) {
    const s = this.shipment(m);
    const from = this.from < 0 ? w.parties.find((p) => p.address === s.custodian)! : w.parties[this.from];
    const to = w.parties[this.to];
    await tick(m);
    const h = {
      shipment: s.id,
      from: from.address,
      to: to.address,
      seq: s.seq + this.seqDelta,
      bizStep: cbv("shipping"),
      disposition: cbv("in_transit"),
      readPoint: locationId("urn:epc:id:sgln:0614141.00001.0"),
      at: m.now,
      deadline: m.now + 600n,
    };
    const d = w.custodyDeployment;
    const fromSig = await signHandoff(this.signing === "strangerFrom" ? w.guardians[0] : from.signer, d, h);
    const toSig =
      this.signing === "fromOnly"
        ? "0x"
        : await signHandoff(this.signing === "strangerTo" ? w.guardians[0] : to.signer, d, h);
    const expected = s.delivered
      ? "CustodyLedgerDelivered"
      : from.address !== s.custodian
        ? "CustodyLedgerNotCustodian"
        : h.seq !== s.seq + 1
          ? "CustodyLedgerWrongSequence"
          : this.signing !== "both"
            ? "CustodyLedgerInvalidSignature"
            : null;
    await expectOutcome(
      w.ledger,
      tally,
      this.toString(),
      () => w.ledger.connect(w.guardians[1]).handoff(h, fromSig, toSig, GAS),
      expected,
    );
    if (expected === null) {
      tally.handoffs++;
      s.custodian = to.address;
      s.seq += 1;
    }
  }
  toString() {
    return `handoff(#${this.which}, ${this.from}→${this.to}, seq +${this.seqDelta}, ${this.signing})`;
  }
}

class Checkpoint extends Step {
  constructor(
    which: number,
    readonly temps: number[],
    readonly seqDelta: 0 | 1 | 2,
    /** A lying tracker: its signed min and max are clamped into the allowed range. */
    readonly lie = false,
  ) {
    super(which);
  }
  async apply(m: Model, w: World) {
    const s = this.shipment(m);
    await tick(m);
    const batch = new ReadingsBatch(this.temps.map((temp, i) => ({ at: Number(m.now) - i, temp })));
    const [minTemp, maxTemp] = this.lie
      ? [Math.min(Math.max(batch.min, 200), 800), Math.max(Math.min(batch.max, 800), 200)]
      : [batch.min, batch.max];
    const cp: Message = {
      shipment: s.id,
      seq: s.checkpointSeq + this.seqDelta,
      readingsRoot: batch.root,
      count: batch.count,
      minTemp,
      maxTemp,
      location: locationId("geo:52.37,4.89"),
      at: m.now,
    };
    const key = w.trackerKeys[0];
    const signature = key.signDigest(digest("Checkpoint", w.custodyDeployment, cp));
    const expected = s.delivered
      ? "CustodyLedgerDelivered"
      : Number(cp.seq) !== s.checkpointSeq + 1
        ? "CustodyLedgerWrongSequence"
        : null;
    await expectOutcome(
      w.ledger,
      tally,
      this.toString(),
      () => w.ledger.checkpoint(cp as never, key.signer, signature, GAS),
      expected,
    );
    if (expected === null) {
      tally.checkpoints++;
      s.checkpointSeq += 1;
      s.lastAt = m.now;
      if (minTemp < 200 || maxTemp > 800) s.breached = true;
      m.latest = { cp, signature, batch };
      s.posted.push(m.latest);
    }
  }
  toString() {
    return `checkpoint(#${this.which}, [${this.temps}], seq +${this.seqDelta}${this.lie ? ", lying" : ""})`;
  }
}

/** A proof of one reading of a posted checkpoint, without the signature (latest) or with it. */
class Excursion extends Step {
  constructor(
    which: number,
    readonly checkpoint: number,
    readonly reading: number,
    readonly path: "latest" | "signed",
    readonly aim: boolean,
  ) {
    super(which);
  }
  async apply(m: Model, w: World) {
    const s = this.shipment(m);
    if (s.posted.length === 0) return;
    await tick(m);
    const p = s.posted[this.checkpoint % s.posted.length];
    // Aimed: the first reading out of the allowed range, when there is one.
    const hot = p.batch.readings.findIndex((r) => r.temp < 200 || r.temp > 800);
    const index = this.aim && hot >= 0 ? hot : this.reading % p.batch.count;
    const reading = p.batch.readings[index];
    const proof = p.batch.proof(index);
    const outside = reading.temp < 200 || reading.temp > 800;
    const expected = s.delivered
      ? "CustodyLedgerDelivered"
      : this.path === "latest" && p !== m.latest
        ? "CustodyLedgerNotLatestCheckpoint"
        : outside
          ? null
          : "CustodyLedgerNotAnExcursion";
    const send = () =>
      this.path === "latest"
        ? w.ledger.proveLatestExcursion(
            checkpointSummary(p.cp as unknown as ExcursionEvidence["checkpoint"], { minTemp: 200, maxTemp: 800 }),
            reading,
            proof,
            GAS,
          )
        : w.ledger.proveExcursion(p.cp as never, w.trackerKeys[0].signer, p.signature, reading, proof, GAS);
    await expectOutcome(w.ledger, tally, this.toString(), send, expected);
    if (expected === null) {
      tally.excursions++;
      s.breached = true;
    }
  }
  toString() {
    return `excursion(#${this.which}, checkpoint ${this.checkpoint}, reading ${this.aim ? "aimed" : this.reading}, ${this.path})`;
  }
}

class Flag extends Step {
  constructor(
    which: number,
    readonly kind: "overdue" | "silent",
  ) {
    super(which);
  }
  async apply(m: Model, w: World) {
    const s = this.shipment(m);
    await tick(m);
    const due = this.kind === "overdue" ? m.now > s.deadline : m.now > s.lastAt + BigInt(HOUR);
    const flagged = this.kind === "overdue" ? s.overdue : s.silent;
    const expected = !due
      ? "CustodyLedgerNotYet"
      : s.delivered
        ? "CustodyLedgerDelivered"
        : flagged
          ? "CustodyLedgerAlreadyFlagged"
          : null;
    await expectOutcome(
      w.ledger,
      tally,
      this.toString(),
      () => (this.kind === "overdue" ? w.ledger.markOverdue(s.id, GAS) : w.ledger.markSilent(s.id, GAS)),
      expected,
    );
    if (expected === null) {
      if (this.kind === "overdue") s.overdue = true;
      else s.silent = true;
    }
  }
  toString() {
    return `mark ${this.kind}(#${this.which})`;
  }
}

class Deliver extends Step {
  constructor(
    which: number,
    readonly by: number,
  ) {
    super(which);
  }
  async apply(m: Model, w: World) {
    const s = this.shipment(m);
    const by = w.parties[this.by];
    await tick(m);
    const expected =
      by.address !== w.receiver.address
        ? "CustodyLedgerNotReceiver"
        : s.custodian !== w.receiver.address
          ? "CustodyLedgerNotHeldByReceiver"
          : s.delivered
            ? "CustodyLedgerDelivered"
            : null;
    const sender = this.by === 2 ? w.stranger : (by.signer as typeof w.receiver);
    await expectOutcome(w.ledger, tally, this.toString(), () => w.ledger.connect(sender).deliver(s.id, GAS), expected);
    if (expected === null) {
      tally.deliveries++;
      s.delivered = true;
      s.frozen = ((await w.ledger.shipmentOf(s.id)) as unknown as Result).toArray();
    }
  }
  toString() {
    return `deliver(#${this.which}, by party ${this.by})`;
  }
}

class Wait extends Step {
  constructor(readonly seconds: number) {
    super(0);
  }
  async apply(m: Model) {
    m.now += BigInt(this.seconds);
    await time.setNextBlockTimestamp(m.now);
    await ethers.provider.send("evm_mine", []);
  }
  toString() {
    return `wait(${this.seconds} s)`;
  }
}

/**
 * The closing step of every sequence: a shipment still in transit (the `which`-th first) is handed
 * to the receiver by its custodian with both signatures, unless the receiver holds it already, and
 * the receiver delivers it. When both were delivered before, there is nothing left to do.
 */
class CloseOut extends Step {
  async apply(m: Model, w: World) {
    const open = m.shipments.map((s, i) => ({ s, i })).filter(({ s }) => !s.delivered);
    if (open.length === 0) return;
    const { s, i } = open[this.which % open.length];
    if (s.custodian !== w.receiver.address) await new Handoff(i, -1, RECEIVER, 1, "both").apply(m, w);
    await new Deliver(i, RECEIVER).apply(m, w);
  }
  toString() {
    return `close out(#${this.which}: hand to the receiver, deliver)`;
  }
}

const RECEIVER = 3; // its index in `parties`
const party = fc.integer({ min: 0, max: 3 });
const temps = fc.array(fc.integer({ min: 100, max: 900 }), { minLength: 1, maxLength: 6 });
const handoff = fc
  .tuple(
    fc.nat(),
    fc.constantFrom(-1, -1, -1, -1, 0, 1, 2, 3),
    party,
    fc.constantFrom<0 | 1 | 2>(1, 1, 1, 0, 2),
    fc.constantFrom<Signing>("both", "both", "both", "fromOnly", "strangerFrom", "strangerTo"),
  )
  .map(([i, a, b, d, s]) => new Handoff(i, a, b, d, s));
const allCommands = [
  handoff,
  handoff,
  handoff,
  handoff,
  fc.tuple(fc.nat(), temps, fc.constantFrom<0 | 1 | 2>(1, 1, 0, 2)).map(([i, t, d]) => new Checkpoint(i, t, d)),
  fc.tuple(fc.nat(), temps).map(([i, t]) => new Checkpoint(i, t, 1, true)),
  fc
    .tuple(fc.nat(), fc.nat(), fc.nat(), fc.constantFrom<"latest" | "signed">("latest", "signed"), fc.boolean())
    .map(([i, c, r, p, a]) => new Excursion(i, c, r, p, a)),
  fc.tuple(fc.nat(), fc.constantFrom<"overdue" | "silent">("overdue", "silent")).map(([i, k]) => new Flag(i, k)),
  fc.tuple(fc.nat(), party).map(([i, b]) => new Deliver(i, b)),
  fc.tuple(fc.nat(), fc.constant(RECEIVER)).map(([i, b]) => new Deliver(i, b)),
  fc.constantFrom(60, 1800, 4000, 6 * HOUR).map((s) => new Wait(s)),
];

/**
 * What every sequence does first, from the fixture's fresh shipments, so that each sequence
 * exercises a handoff and an excursion proof by construction, not by chance: a valid handoff (to
 * any party), then a checkpoint (honest or lying) with a reading out of range among random ones,
 * and the proof of that reading (without or with the signature).
 */
const opening = fc
  .tuple(
    fc.nat(),
    party,
    fc.nat(),
    fc.array(fc.integer({ min: 100, max: 900 }), { maxLength: 5 }),
    fc.oneof(fc.integer({ min: 100, max: 199 }), fc.integer({ min: 801, max: 900 })),
    fc.nat(),
    fc.boolean(),
    fc.constantFrom<"latest" | "signed">("latest", "signed"),
  )
  .map(([h, to, c, others, hot, at, lie, path]) => {
    const readings = [...others.slice(0, at % (others.length + 1)), hot, ...others.slice(at % (others.length + 1))];
    return [
      new Handoff(h, -1, to, 1, "both"),
      new Checkpoint(c, readings, 1, lie),
      new Excursion(c, 0, 0, path, true),
    ] as Step[];
  });

describe("CustodyLedger stateful model: random sequences try to break invariant 5", function () {
  it("seq grows by exactly one per handoff, the custodian changes only with both signatures, a delivered shipment never changes — after every step of random handoff/checkpoint/flag/deliver sequences", async function () {
    const runs = await assertProperty(
      fc.asyncProperty(
        opening,
        fc.commands(allCommands, { maxCommands: 20, size: "max" }),
        fc.nat(),
        async (first, cmds, last) => {
          const w = await loadFixture(world);
          const model: Model = {
            now: BigInt(await time.latest()),
            shipments: w.initial.map((s) => ({ ...s, posted: [] })),
          };
          await fc.asyncModelRun(() => ({ model, real: w }), [...first, ...cmds, new CloseOut(last)]);
        },
      ),
      RUNS,
    );
    console.log(
      `      ${runs} sequences: ${tally.steps} steps, ${tally.refused} refused as the model predicted, ${tally.handoffs} handoffs, ${tally.checkpoints} checkpoints, ${tally.excursions} excursions proven, ${tally.deliveries} deliveries`,
    );
    // Every sequence opens with a handoff and an excursion proof and closes with a delivery: had
    // the chain refused one of them where the model expected it, the run would have failed; fewer
    // here means those steps stopped being what they are meant to be.
    expect(tally.handoffs).to.be.at.least(runs);
    expect(tally.excursions).to.be.at.least(runs);
    expect(tally.deliveries).to.be.at.least(runs);
  });
});

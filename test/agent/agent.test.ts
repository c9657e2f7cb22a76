/**
 * The agent on the in-process Hardhat network: signing (nonces, deadlines, field checks), direct
 * delivery over JSON-RPC with its crash windows, and delivery through the relayer's HTTP contract.
 */
import { expect } from "chai";
import { ethers, loadFixture, time } from "../helpers/hardhat.js";
import { Wallet, keccak256, id as textHash } from "ethers";
import { Agent, AgentError, openAgentStack, type Signed } from "../../src/agent/agent.js";
import { relayerRefusal } from "../../src/agent/client.js";
import { createLogger } from "../../src/agent/log.js";
import type { RpcSubmission } from "../../src/agent/outbox.js";
import { encodeCall, toJson, type SignedDeviceMessage } from "../../src/messages/index.js";
import { randomDeviceKey } from "../../src/crypto/deviceKey.js";
import { commit, deadlineIn, makeBatch, signAs } from "../helpers/registry.js";
import { FakeRelayer } from "./fakeRelayer.js";
import { agentFixture, eventually, firmwareEvents, tempDir } from "./helpers.js";
import { freePort } from "../helpers/node.js";
import { deviceByKey } from "../../src/registry/lookup.js";
import { signLocationBeacon } from "../../src/agent/roles/beacon.js";
import { openPosted } from "../helpers/beacons.js";

type Fixture = Awaited<ReturnType<typeof agentFixture>>;

const FAST = { pollMs: 5, holdMs: 20, backoff: { baseMs: 20, capMs: 200 } };

async function agentFor(
  f: Fixture,
  which: 0 | 1,
  opts: { dataDir?: string; relayerUrl?: string; logLines?: string[] } = {},
) {
  const logger = opts.logLines
    ? createLogger({ level: "debug", stream: { write: (l: string) => opts.logLines!.push(l) } })
    : undefined;
  return Agent.create({
    signer: f.keys[which],
    deployment: f.deployment,
    dataDir: opts.dataDir ?? tempDir(),
    rpc: ethers.provider,
    ...(opts.relayerUrl ? { relayerUrl: opts.relayerUrl } : { payer: f.payer }),
    logger,
    ...FAST,
  });
}

const payerTxCount = (f: Fixture) => ethers.provider.getTransactionCount(f.payer.address, "latest");
const fw = (label: string) => textHash(`firmware ${label}`);

/** Delivers a signed message as a third party would (another relayer, the owner), to its contract. */
async function relayElsewhere(f: Fixture, m: SignedDeviceMessage) {
  const { contract, data } = encodeCall(m);
  const to = contract === "locationBeacons" ? f.deployment.locationBeacons : f.deployment.registry;
  await (await f.ctx.stranger.sendTransaction({ to, data })).wait();
}

/** Device `agent`'s n-th location beacon, sealed to its owner's recipients (the beacon role). */
const beacon = (agent: Agent, n: number, opts: { deadline?: bigint } = {}) =>
  signLocationBeacon(
    agent,
    { latitudeE7: 473_700_000 + n, longitudeE7: 85_400_000 },
    { at: BigInt(1_767_225_600 + n), ...opts },
  );

/** Records a direct submission as the courier does just before it broadcasts: the crash window. */
async function persistUnbroadcastTx(f: Fixture, agent: Agent, id: string, nonce?: number): Promise<RpcSubmission> {
  const m = agent.outbox.get(id)!.message!;
  const fee = await ethers.provider.getFeeData();
  const accountNonce = nonce ?? (await payerTxCount(f));
  const raw = await f.payer.signTransaction({
    type: 2,
    chainId: f.deployment.chainId,
    nonce: accountNonce,
    to: f.deployment.registry,
    data: encodeCall(m).data,
    gasLimit: 300_000n,
    maxFeePerGas: fee.maxFeePerGas! * 2n,
    maxPriorityFeePerGas: fee.maxPriorityFeePerGas!,
  });
  const s: RpcSubmission = { via: "rpc", txHash: keccak256(raw), raw, from: f.payer.address, accountNonce };
  await agent.outbox.submit(id, s);
  return s;
}

describe("agent (in-process network)", function () {
  describe("signing", function () {
    it("fills device, nonce and deadline; numbers queued messages locally from the chain's deviceNonce", async function () {
      const f = await loadFixture(agentFixture);
      // The device already used nonces 0 and 1 (cancelled by hand).
      for (const nonce of [0n, 1n]) {
        const message = { device: f.ids[0], nonce, deadline: await deadlineIn() };
        await f.ctx.registry.cancelNonce(
          f.keys[0].signer,
          message.deadline,
          signAs(f.keys[0], "NonceCancellation", f.ctx.deployment, message),
        );
      }
      const agent = await agentFor(f, 0);
      const signed = [];
      for (let i = 0; i < 4; i++) signed.push(await agent.sign("FirmwareAttestation", { firmwareHash: fw(`${i}`) }));
      expect(signed.map((s) => s.message.message.nonce)).to.deep.equal(["2", "3", "4", "5"]);
      const now = BigInt(await time.latest());
      for (const s of signed) {
        expect(s.message.message.device).to.equal(f.ids[0].toString());
        const deadline = BigInt(s.message.message.deadline as string);
        expect(deadline > now + 3000n && deadline <= now + 3700n, "deadline about an hour ahead of the chain").to.equal(
          true,
        );
        expect(agent.outbox.get(s.id)!.state).to.equal("pending");
      }
      await agent.drain();
      expect(await f.ctx.registry.deviceNonce(f.ids[0])).to.equal(6n);
      expect(await payerTxCount(f)).to.equal(4);
      await agent.stop();
    });

    it("numbers concurrent signatures in call order and persists them with shared syncs; a ref is signed once", async function () {
      const f = await loadFixture(agentFixture);
      const agent = await agentFor(f, 1);
      const signed = await Promise.all(
        Array.from({ length: 40 }, (_, i) =>
          agent.sign("FirmwareAttestation", { firmwareHash: fw(`c${i}`) }, { ref: `r${i % 30}` }),
        ),
      );
      expect(signed.slice(0, 30).map((s) => s.message.message.nonce)).to.deep.equal(
        Array.from({ length: 30 }, (_, i) => String(i)),
      );
      // The last ten repeat refs r0..r9: the messages already signed for them come back.
      expect(signed.slice(30).map((s) => s.id)).to.deep.equal(signed.slice(0, 10).map((s) => s.id));
      expect(signed.slice(30).every((s) => !s.fresh)).to.equal(true);
      expect(agent.outbox.stats().pending).to.equal(30);
      expect((await agent.sign("NonceCancellation")).message.message.nonce).to.equal("30");
      await agent.drain();
      expect(await f.ctx.registry.deviceNonce(f.ids[1])).to.equal(31n);
      await agent.stop();
    });

    it("attack: malformed or foreign fields are refused before signing, naming the field", async function () {
      const f = await loadFixture(agentFixture);
      const agent = await agentFor(f, 0);
      const cases: [string, () => Promise<unknown>][] = [
        ["firmwareHash", () => agent.sign("FirmwareAttestation", { firmwareHash: "0x1234" })],
        ["firmwareHash", () => agent.sign("FirmwareAttestation", {})],
        ["device", () => agent.sign("FirmwareAttestation", { firmwareHash: fw("x"), device: f.ids[1] })],
        ["nonce", () => agent.sign("FirmwareAttestation", { firmwareHash: fw("x"), nonce: 7 })],
        ["colour", () => agent.sign("NonceCancellation", { colour: "red" })],
        ["latitudeE7", () => signLocationBeacon(agent, { latitudeE7: 2 ** 31, longitudeE7: 0 }, { at: 1n })],
        ["deadline", () => agent.sign("NonceCancellation", { deadline: "soon" })],
        ["type", () => agent.sign("KeyRotation" as never, {})],
        ["claim", () => agent.sign("DeviceClaim", { owner: f.ctx.owner.address, batch: 1 })],
      ];
      for (const [field, attempt] of cases) {
        const err = await attempt().then(
          () => null,
          (e: Error) => e,
        );
        expect(err, field).to.be.instanceOf(AgentError);
        expect((err as AgentError).field, `${field}: ${err?.message}`).to.equal(field);
      }
      expect(agent.outbox.stats().pending).to.equal(0);
      await agent.stop();
    });

    it("numbers location beacons from the device's beacon nonce, apart from its device nonce", async function () {
      const f = await loadFixture(agentFixture);
      const agent = await agentFor(f, 0);
      // Device nonce 0 and 1 used; then the device is reported stolen.
      for (let i = 0; i < 2; i++) await agent.sign("NonceCancellation");
      await agent.drain();
      await f.ctx.registry.connect(f.ctx.owner).reportStolen(f.ids[0]);
      const signed = [];
      for (let i = 0; i < 3; i++) signed.push(await beacon(agent, i));
      expect(signed.map((s) => s.message.message.nonce)).to.deep.equal(["0", "1", "2"]);
      // The registry sequence goes on where it was.
      const held = await agent.sign("FirmwareAttestation", { firmwareHash: fw("while stolen") });
      expect(held.message.message.nonce).to.equal("2");
      await agent.stop();
    });

    it("attack: a LocationBeacon without a LocationBeacons address configured is refused before signing", async function () {
      const f = await loadFixture(agentFixture);
      const agent = await Agent.create({
        signer: f.keys[0],
        deployment: { chainId: f.deployment.chainId, registry: f.deployment.registry },
        dataDir: tempDir(),
        rpc: ethers.provider,
        payer: f.payer,
        ...FAST,
      });
      const err = await beacon(agent, 0).then(
        () => null,
        (e: Error) => e,
      );
      expect(err).to.be.instanceOf(AgentError);
      expect((err as AgentError).field).to.equal("locationBeacons");
      expect(agent.outbox.stats().pending).to.equal(0);
      await agent.stop();
    });

    it("signs a DeviceClaim without persisting it; the claim lands when sent", async function () {
      const f = await loadFixture(agentFixture);
      const key = randomDeviceKey("p256", f.ctx.verifierAddress);
      const batch = makeBatch([key]);
      const batchId = await commit(f.ctx.registry, f.ctx.manufacturer, batch);
      const agent = await Agent.create({
        signer: key,
        deployment: f.deployment,
        dataDir: tempDir(),
        rpc: ethers.provider,
        payer: f.payer,
        ...FAST,
      });
      const leaf = batch.device(key.signer);
      const claim = { model: leaf.model, firmwareHash: leaf.firmwareHash, proof: batch.proof(key.signer) };
      const printed = await agent.sign(
        "DeviceClaim",
        { owner: f.ctx.owner.address, batch: batchId },
        { persist: false, claim },
      );
      expect(agent.outbox.get(printed.id)).to.equal(undefined);
      // The owner's tool sends it later, e.g. with `custos-agent send --signed`.
      await agent.outbox.add(JSON.parse(toJson(printed.message)));
      await agent.drain();
      expect(agent.outbox.get(printed.id)!.outcome).to.equal("confirmed");
      expect((await deviceByKey(f.ctx.registry, key.signer)).owner).to.equal(f.ctx.owner.address);
      // Now a device: its first message uses nonce 0.
      expect((await agent.sign("NonceCancellation")).message.message.nonce).to.equal("0");
      await agent.stop();
    });
  });

  describe("direct delivery over JSON-RPC", function () {
    it("delivers every device message type of secp256k1 and P-256 devices, each exactly once, in nonce order", async function () {
      const f = await loadFixture(agentFixture);
      const lines: string[] = [];
      // Two devices share one outbox and one payer (a gateway next to both).
      const stack = await openAgentStack({
        deployment: f.deployment,
        dataDir: tempDir(),
        rpc: ethers.provider,
        payer: f.payer,
        logger: createLogger({ level: "debug", stream: { write: (l: string) => lines.push(l) } }),
        ...FAST,
      });
      const [secp, p256] = [stack.agentFor(f.keys[0]), stack.agentFor(f.keys[1])];
      await secp.sign("FirmwareAttestation", { firmwareHash: fw("a0") });
      await p256.sign("FirmwareAttestation", { firmwareHash: fw("b0") });
      await secp.sign("NonceCancellation");
      await p256.sign("NonceCancellation");
      await secp.sign("FirmwareAttestation", { firmwareHash: fw("a1") });
      await stack.dispatcher.drain();
      await f.ctx.registry.connect(f.ctx.owner).reportStolen(f.ids[1]);
      await signLocationBeacon(p256, { latitudeE7: 473_700_000, longitudeE7: -85_400_000 }, { at: 1_767_225_600n });
      await stack.dispatcher.drain();

      expect(stack.outbox.stats()).to.deep.include({ confirmed: 6, pending: 0, submitted: 0, spent: 0, rejected: 0 });
      expect(await payerTxCount(f)).to.equal(6);
      // Per device in nonce order (the two devices go side by side, so their interleaving varies).
      const events = await firmwareEvents(ethers.provider, f.deployment.registry);
      expect(events.filter((e) => e.startsWith(`${f.ids[0]}:`))).to.deep.equal([
        `${f.ids[0]}:${fw("a0")}`,
        `${f.ids[0]}:${fw("a1")}`,
      ]);
      expect(events.filter((e) => e.startsWith(`${f.ids[1]}:`))).to.deep.equal([`${f.ids[1]}:${fw("b0")}`]);
      // The beacon went to LocationBeacons with the device's first beacon nonce, apart from its device nonce.
      const beacons = await f.beacons.queryFilter(f.beacons.filters.LocationBeaconPosted());
      const opened = await Promise.all(beacons.map((e) => openPosted(f.beacons, e.args, f.ownerKey)));
      expect(
        beacons.map((e, i) => [e.args.deviceId, e.args.owner, opened[i].latitudeE7, opened[i].longitudeE7]),
      ).to.deep.equal([[f.ids[1], f.ctx.owner.address, 473_700_000, -85_400_000]]);
      expect(await f.ctx.registry.deviceNonce(f.ids[0])).to.equal(3n);
      expect(await f.ctx.registry.deviceNonce(f.ids[1])).to.equal(2n);
      expect(await f.beacons.beaconNonce(f.ids[1])).to.equal(1n);
      // Structured logs: one JSON object per line with level, time and msg.
      for (const line of lines) expect(JSON.parse(line)).to.include.keys("level", "time", "msg");
      expect(lines.filter((l) => JSON.parse(l).msg === "message landed")).to.have.length(6);
      await stack.close();
    });

    it("a stolen device's beacons land while its registry messages are held (a lane of their own)", async function () {
      const f = await loadFixture(agentFixture);
      const agent = await agentFor(f, 1);
      await f.ctx.registry.connect(f.ctx.owner).reportStolen(f.ids[1]);
      // Signed first: held while the device is quarantined (the chain refuses it for now).
      const held = await agent.sign("FirmwareAttestation", { firmwareHash: fw("held") });
      const beacons: Signed[] = [];
      for (let i = 0; i < 2; i++) beacons.push(await beacon(agent, i));
      const draining = agent.drain();
      await eventually(
        () => beacons.every((b) => agent.outbox.get(b.id)!.outcome === "confirmed"),
        20_000,
        "the beacons to land",
      );
      expect(agent.outbox.get(held.id)!.state).to.not.equal("done");
      const posted = await f.beacons.queryFilter(f.beacons.filters.LocationBeaconPosted());
      const opened = await Promise.all(posted.map((e) => openPosted(f.beacons, e.args, f.ownerKey)));
      expect(opened.map((o) => o.latitudeE7)).to.deep.equal([0, 1].map((n) => 473_700_000 + n));
      expect(await f.beacons.beaconNonce(f.ids[1])).to.equal(2n);
      expect(await f.ctx.registry.deviceNonce(f.ids[1])).to.equal(0n);
      await agent.stop();
      await draining;
    });

    it("attack: a beacon that already landed through someone else is retired, never sent again", async function () {
      const f = await loadFixture(agentFixture);
      const agent = await agentFor(f, 0);
      await f.ctx.registry.connect(f.ctx.owner).reportStolen(f.ids[0]);
      const s = await beacon(agent, 0);
      await relayElsewhere(f, s.message);
      await agent.drain();
      expect(agent.outbox.get(s.id)).to.deep.include({ state: "done", outcome: "spent" });
      expect(await payerTxCount(f)).to.equal(0);
      // The next beacon follows the beacons' nonce; the device nonce is untouched.
      expect((await beacon(agent, 1)).message.message.nonce).to.equal("1");
      await agent.drain();
      expect(await f.beacons.beaconNonce(f.ids[0])).to.equal(2n);
      expect(await f.ctx.registry.deviceNonce(f.ids[0])).to.equal(0n);
      await agent.stop();
    });

    it("attack: an active device's beacon is held, and rejected once its deadline passes; never paid for", async function () {
      const f = await loadFixture(agentFixture);
      const agent = await agentFor(f, 0);
      const deadline = BigInt(await time.latest()) + 60n;
      const s = await beacon(agent, 0, { deadline });
      const draining = agent.drain();
      await new Promise((r) => setTimeout(r, 300)); // simulated, refused for now, held
      expect(agent.outbox.get(s.id)!.state).to.equal("pending");
      await time.increase(120);
      await draining;
      expect(agent.outbox.get(s.id)).to.deep.include({ state: "done", outcome: "rejected" });
      expect(await payerTxCount(f)).to.equal(0);
      await agent.stop();
    });

    it("attack: a message that already landed through someone else is retired, never sent again", async function () {
      const f = await loadFixture(agentFixture);
      const agent = await agentFor(f, 0);
      const s = await agent.sign("FirmwareAttestation", { firmwareHash: fw("once") });
      await relayElsewhere(f, s.message);
      await agent.drain();
      expect(agent.outbox.get(s.id)).to.deep.include({ state: "done", outcome: "spent" });
      expect(await payerTxCount(f)).to.equal(0);
      expect(await firmwareEvents(ethers.provider, f.deployment.registry)).to.have.length(1);
      // The next message follows the chain's nonce.
      expect((await agent.sign("NonceCancellation")).message.message.nonce).to.equal("1");
      await agent.drain();
      expect(await payerTxCount(f)).to.equal(1);
      await agent.stop();
    });

    it("attack: an expired message is refused before any gas is spent; the ones behind it are released and the nonce reused", async function () {
      const f = await loadFixture(agentFixture);
      const agent = await agentFor(f, 0);
      const first = await agent.sign("FirmwareAttestation", {
        firmwareHash: fw("late"),
        deadline: await deadlineIn(30),
      });
      const second = await agent.sign("FirmwareAttestation", { firmwareHash: fw("blocked") });
      await time.increase(120);
      await agent.drain();
      expect(agent.outbox.get(first.id)).to.deep.include({ outcome: "rejected" });
      expect(agent.outbox.get(first.id)!.reason).to.match(/expired/i);
      expect(agent.outbox.get(second.id)!.reason).to.match(/blocked: nonce 0 was rejected/);
      expect(await payerTxCount(f)).to.equal(0);
      const again = await agent.sign("FirmwareAttestation", { firmwareHash: fw("again") });
      expect(again.message.message.nonce).to.equal("0");
      await agent.drain();
      expect(await firmwareEvents(ethers.provider, f.deployment.registry)).to.deep.equal([
        `${f.ids[0]}:${fw("again")}`,
      ]);
      await agent.stop();
    });

    it("attack: a revoked device's message is refused by simulation, before any gas is spent", async function () {
      const f = await loadFixture(agentFixture);
      const agent = await agentFor(f, 0);
      const s = await agent.sign("NonceCancellation");
      await f.ctx.registry.connect(f.ctx.owner).decommission(f.ids[0]);
      await agent.drain();
      expect(agent.outbox.get(s.id)!.outcome).to.equal("rejected");
      // Decoded into a sentence: the device, its status, the error name.
      expect(agent.outbox.get(s.id)!.reason).to.match(/device \S+ is Revoked.*\(DeviceRegistryWrongStatus\)/);
      expect(await payerTxCount(f)).to.equal(0);
      await agent.stop();
    });

    it("attack: a message signed while the device is stolen is held, and never lands after the release voids it", async function () {
      const f = await loadFixture(agentFixture);
      const lines: string[] = [];
      const agent = await agentFor(f, 0, { logLines: lines });
      await f.ctx.registry.connect(f.ctx.owner).reportStolen(f.ids[0]);
      const held = await agent.sign("FirmwareAttestation", { firmwareHash: fw("held") });
      const draining = agent.drain();
      // Once the agent has tried it twice (it has had its chance to reject it), not after some time.
      const holds = () => lines.filter((l) => JSON.parse(l).msg === "message refused for now; holding it").length;
      await eventually(() => holds() >= 2, 10_000, "the agent to try the message twice");
      expect(agent.outbox.get(held.id)!.state).to.equal("pending"); // held, not rejected: the status may change
      await f.ctx.registry.connect(f.ctx.owner).release(f.ids[0]); // moves the nonce on
      await draining;
      // Its nonce went to the release, not to it: a refusal, never "already on chain".
      expect(agent.outbox.get(held.id)).to.deep.include({ outcome: "rejected" });
      expect(agent.outbox.get(held.id)!.reason).to.match(/device nonce 0 was used by another message/);
      expect(await payerTxCount(f)).to.equal(0);
      // The agent follows the chain's nonce again.
      const next = await agent.sign("FirmwareAttestation", { firmwareHash: fw("after") });
      expect(next.message.message.nonce).to.equal("1");
      await agent.drain();
      expect(await firmwareEvents(ethers.provider, f.deployment.registry)).to.deep.equal([
        `${f.ids[0]}:${fw("after")}`,
      ]);
      await agent.stop();
    });

    it("restart: another agent on the same outbox delivers what the first one persisted, exactly once", async function () {
      const f = await loadFixture(agentFixture);
      const dataDir = tempDir();
      const first = await agentFor(f, 1, { dataDir });
      for (let i = 0; i < 3; i++) await first.sign("FirmwareAttestation", { firmwareHash: fw(`r${i}`) });
      await first.stop(); // as if killed: nothing was sent
      const second = await agentFor(f, 1, { dataDir });
      expect(second.outbox.stats().pending).to.equal(3);
      await second.drain();
      expect(await firmwareEvents(ethers.provider, f.deployment.registry)).to.have.length(3);
      expect(await payerTxCount(f)).to.equal(3);
      // A fresh signature continues after the persisted nonces.
      expect((await second.sign("NonceCancellation")).message.message.nonce).to.equal("3");
      await second.stop();
    });

    it("attack: a crash between persisting the raw transaction and broadcasting it: the same transaction is broadcast", async function () {
      const f = await loadFixture(agentFixture);
      const dataDir = tempDir();
      const first = await agentFor(f, 0, { dataDir });
      const s = await first.sign("FirmwareAttestation", { firmwareHash: fw("crash") });
      const recorded = await persistUnbroadcastTx(f, first, s.id);
      await first.stop();
      const second = await agentFor(f, 0, { dataDir });
      await second.drain();
      expect(second.outbox.get(s.id)).to.deep.include({ outcome: "confirmed", txHash: recorded.txHash });
      expect((await ethers.provider.getTransactionReceipt(recorded.txHash))!.status).to.equal(1);
      expect(await payerTxCount(f)).to.equal(1);
      await second.stop();
    });

    it("attack: a crash after the broadcast, before the receipt was seen: the receipt is found, nothing is sent again", async function () {
      const f = await loadFixture(agentFixture);
      const dataDir = tempDir();
      const first = await agentFor(f, 0, { dataDir });
      const s = await first.sign("FirmwareAttestation", { firmwareHash: fw("crash2") });
      const recorded = await persistUnbroadcastTx(f, first, s.id);
      await ethers.provider.broadcastTransaction(recorded.raw);
      await first.stop();
      const second = await agentFor(f, 0, { dataDir });
      await second.drain();
      expect(second.outbox.get(s.id)).to.deep.include({ outcome: "confirmed", txHash: recorded.txHash });
      expect(await payerTxCount(f)).to.equal(1);
      expect(await firmwareEvents(ethers.provider, f.deployment.registry)).to.have.length(1);
      await second.stop();
    });

    it("attack: the message lands elsewhere while its transaction is unsent: the account nonce gets a zero-value filler, no second delivery", async function () {
      const f = await loadFixture(agentFixture);
      const dataDir = tempDir();
      const first = await agentFor(f, 0, { dataDir });
      const s = await first.sign("FirmwareAttestation", { firmwareHash: fw("raced") });
      const recorded = await persistUnbroadcastTx(f, first, s.id);
      await first.stop();
      await relayElsewhere(f, s.message);
      const second = await agentFor(f, 0, { dataDir });
      await second.drain();
      const e = second.outbox.get(s.id)!;
      expect(e.outcome).to.equal("spent");
      expect(e.txHash).to.not.equal(recorded.txHash);
      const filler = await ethers.provider.getTransaction(e.txHash!);
      expect(filler).to.deep.include({ to: f.payer.address, value: 0n, nonce: recorded.accountNonce, data: "0x" });
      expect((await ethers.provider.getTransactionReceipt(e.txHash!))!.status).to.equal(1);
      expect(await firmwareEvents(ethers.provider, f.deployment.registry)).to.have.length(1);
      await second.stop();
    });

    it("attack: the recorded account nonce was taken by another transaction: the dead transaction is replaced, the message lands once", async function () {
      const f = await loadFixture(agentFixture);
      const dataDir = tempDir();
      const first = await agentFor(f, 0, { dataDir });
      const s = await first.sign("FirmwareAttestation", { firmwareHash: fw("dead") });
      const recorded = await persistUnbroadcastTx(f, first, s.id);
      await first.stop();
      // Someone else used the payer key at the same account nonce.
      await (
        await f.payer
          .connect(ethers.provider)
          .sendTransaction({ to: Wallet.createRandom().address, value: 1n, nonce: recorded.accountNonce })
      ).wait();
      const second = await agentFor(f, 0, { dataDir });
      await second.drain();
      const e = second.outbox.get(s.id)!;
      expect(e.outcome).to.equal("confirmed");
      expect(e.txHash).to.not.equal(recorded.txHash);
      expect(await ethers.provider.getTransactionReceipt(recorded.txHash)).to.equal(null);
      expect(await firmwareEvents(ethers.provider, f.deployment.registry)).to.have.length(1);
      await second.stop();
    });
  });

  describe("delivery through the relayer (HTTP contract)", function () {
    let relayer: FakeRelayer | undefined;
    afterEach(async function () {
      await relayer?.close();
      relayer = undefined;
    });

    it("hands messages over and follows them to the chain, one at a time per device", async function () {
      const f = await loadFixture(agentFixture);
      relayer = new FakeRelayer(f.deployment.registry, f.ctx.other);
      await relayer.listen();
      const agent = await agentFor(f, 1, { relayerUrl: relayer.url });
      const ids = [];
      for (let i = 0; i < 3; i++)
        ids.push((await agent.sign("FirmwareAttestation", { firmwareHash: fw(`rl${i}`) })).id);
      await agent.drain();
      for (const id of ids) expect(agent.outbox.get(id)!.outcome).to.equal("confirmed");
      expect(relayer.posts).to.have.length(3);
      expect(await firmwareEvents(ethers.provider, f.deployment.registry)).to.deep.equal(
        [0, 1, 2].map((i) => `${f.ids[1]}:${fw(`rl${i}`)}`),
      );
      await agent.stop();
    });

    it("attack: the relayer is down: the agent queues and backs off, then delivers once it is up", async function () {
      const f = await loadFixture(agentFixture);
      const port = await freePort();
      const lines: string[] = [];
      const agent = await agentFor(f, 0, { relayerUrl: `http://127.0.0.1:${port}`, logLines: lines });
      const s = await agent.sign("FirmwareAttestation", { firmwareHash: fw("later") });
      const draining = agent.drain();
      await eventually(() => lines.filter((l) => l.includes("backing off")).length >= 2, 10_000, "backoff");
      expect(agent.outbox.get(s.id)!.state).to.equal("pending");
      relayer = new FakeRelayer(f.deployment.registry, f.ctx.other);
      await relayer.listen(port);
      await draining;
      expect(agent.outbox.get(s.id)!.outcome).to.equal("confirmed");
      expect(lines.some((l) => JSON.parse(l).msg === "endpoint back")).to.equal(true);
      await agent.stop();
    });

    it("attack: a crash after handing a message over: the second hand-over is a duplicate and it lands once", async function () {
      const f = await loadFixture(agentFixture);
      relayer = new FakeRelayer(f.deployment.registry, f.ctx.other);
      await relayer.listen();
      const agent = await agentFor(f, 0, { relayerUrl: relayer.url });
      const s = await agent.sign("NonceCancellation");
      // The previous run posted it, then died before recording the answer.
      await fetch(`${relayer.url}/v1/messages`, {
        method: "POST",
        body: toJson(s.message),
        headers: { "content-type": "application/json" },
      });
      await relayer.settled();
      await agent.drain();
      expect(agent.outbox.get(s.id)!.outcome).to.be.oneOf(["confirmed", "spent"]);
      expect(relayer.records.size).to.equal(1);
      const cancelled = await f.ctx.registry.queryFilter(f.ctx.registry.filters.NonceCancelled());
      expect(cancelled).to.have.length(1);
      await agent.stop();
    });

    it("attack: switching to the relayer with a direct transaction in flight: that transaction is followed, not doubled", async function () {
      const f = await loadFixture(agentFixture);
      relayer = new FakeRelayer(f.deployment.registry, f.ctx.other);
      await relayer.listen();
      const dataDir = tempDir();
      const direct = await agentFor(f, 0, { dataDir });
      const s = await direct.sign("FirmwareAttestation", { firmwareHash: fw("switch") });
      const recorded = await persistUnbroadcastTx(f, direct, s.id);
      await direct.stop();
      const viaRelayer = await agentFor(f, 0, { dataDir, relayerUrl: relayer.url });
      await viaRelayer.drain();
      expect(viaRelayer.outbox.get(s.id)).to.deep.include({ outcome: "confirmed", txHash: recorded.txHash });
      expect(relayer.posts).to.have.length(0);
      expect(await firmwareEvents(ethers.provider, f.deployment.registry)).to.have.length(1);
      await viaRelayer.stop();
    });

    it("attack: switching to direct delivery with a message held by the relayer: it is never sent a second time", async function () {
      const f = await loadFixture(agentFixture);
      relayer = new FakeRelayer(f.deployment.registry, f.ctx.other);
      await relayer.listen();
      const dataDir = tempDir();
      const viaRelayer = await agentFor(f, 0, { dataDir, relayerUrl: relayer.url });
      const s = await viaRelayer.sign("FirmwareAttestation", { firmwareHash: fw("held by relayer") });
      // Handed over; the run ends before it follows the message to the chain.
      const res = await fetch(`${relayer.url}/v1/messages`, {
        method: "POST",
        body: toJson(s.message),
        headers: { "content-type": "application/json" },
      });
      await viaRelayer.outbox.submit(s.id, { via: "relayer", relayerId: ((await res.json()) as { id: string }).id });
      await viaRelayer.stop();
      await relayer.settled();
      const direct = await agentFor(f, 0, { dataDir });
      await direct.drain();
      expect(direct.outbox.get(s.id)).to.deep.include({ outcome: "spent" });
      expect(await payerTxCount(f)).to.equal(0);
      expect(await firmwareEvents(ethers.provider, f.deployment.registry)).to.have.length(1);
      await direct.stop();
    });

    it("reads the relayer's refusal codes: already on chain, may pass later, or final", function () {
      const table: [string | undefined, string, "spent" | "hold" | "final"][] = [
        ["nonce_used", "", "spent"],
        ["key_taken", "", "spent"],
        ["device_not_active", "device is quarantined", "hold"],
        ["nonce_too_far", "", "hold"],
        ["rate_limited", "", "hold"],
        ["would_revert", "reverts: DeviceRegistryWrongStatus(12, 2)", "hold"],
        ["would_revert", "reverts: DeviceRegistryWrongStatus(12, 3)", "final"],
        ["would_revert", "reverts: DeviceRegistryInvalidSignature()", "final"],
        ["would_revert", "reverts: LocationBeaconsNotQuarantined(12, 1)", "hold"],
        ["would_revert", "reverts: LocationBeaconsNotQuarantined(12, 3)", "final"],
        ["would_revert", "reverts: LocationBeaconsExpired(5)", "final"],
        ["would_revert", "reverts: LocationBeaconsUnknownKey(0x12)", "hold"],
        ["bad_signature", "", "final"],
        ["expired", "", "final"],
        ["invalid_field", "message.nonce is missing", "final"],
        [undefined, "device not active", "hold"],
      ];
      for (const [code, error, meaning] of table)
        expect(relayerRefusal(code, error), `${code} ${error}`).to.equal(meaning);
    });

    it("attack: the relayer refuses a message: it is retired as rejected with the relayer's code and field", async function () {
      const f = await loadFixture(agentFixture);
      relayer = new FakeRelayer(f.deployment.registry, f.ctx.other);
      relayer.mode = "refuse";
      await relayer.listen();
      const agent = await agentFor(f, 0, { relayerUrl: relayer.url });
      const s = await agent.sign("NonceCancellation");
      await agent.drain();
      const e = agent.outbox.get(s.id)!;
      expect(e.outcome).to.equal("rejected");
      expect(e.reason).to.include("400").and.include("bad_signature").and.include("signature");
      await agent.stop();
    });
  });
});

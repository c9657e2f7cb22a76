/**
 * The guardians' off-chain inputs, live: a relayer's feed of refused device-signed messages and a
 * payee's reports of its payer's vouchers, read by three guardians (quorum two) on a real node with
 * one-second blocks and a real index — each message re-checked by each guardian, never taken on the
 * relayer's or the payee's word.
 */
import { expect } from "chai";
import { Wallet, getBytes, parseEther } from "ethers";
import { digest } from "../../src/eip712/index.js";
import { DeviceSignatureVerifier } from "../../src/crypto/verify.js";
import { randomDeviceKey } from "../../src/crypto/deviceKey.js";
import { encodeCall, type SignedDeviceMessage } from "../../src/messages/index.js";
import { signAttestation } from "../../src/relayer/fleet.js";
import { startRelayer, type RelayerHandle } from "../../src/relayer/index.js";
import { startGuardian, type GuardianHandle } from "../../src/guardian/service/index.js";
import { DEFAULT_POLICY, type Policy } from "../../src/guardian/policy/index.js";
import {
  guardianWorld,
  hashOf,
  oneSecondBlocks,
  removeTempDirs,
  tempDir,
  votesOf,
  waitForRegistryEvent,
  writePolicy,
  type GuardianWorld,
} from "./serviceFixture.js";
import path from "node:path";
import type { AddressInfo } from "node:net";
import { ZeroAddress } from "ethers";
import { silentLogger } from "../../src/agent/log.js";
import {
  MeterPayee,
  MeterPayer,
  SimulatedMeter,
  termsFromOpened,
  type ChannelTerms,
} from "../../src/agent/roles/meter.js";
import { VoucherReports } from "../../src/agent/roles/voucherReports.js";
import { payeeServer } from "../../src/agent/commands/meterRun.js";
import { PaymentChannels__factory } from "../../typechain-types/index.js";

const ACTIVE = 1n;

/** The default policy with bursts and rates a test can reach in seconds. */
const LIVE: Policy = {
  ...DEFAULT_POLICY,
  name: "test-live-inputs",
  rules: {
    ...DEFAULT_POLICY.rules,
    refusalBurst: { enabled: true, windowSeconds: 600, maxRefusals: 5 },
    overRate: { enabled: true, windowSeconds: 600, tolerance: 0.1, burstSeconds: 5 },
  },
};

describe("guardian service: live off-chain inputs — relayers' refusals, payees' voucher reports", function () {
  this.timeout(300_000);
  let w: GuardianWorld;
  let relayer: RelayerHandle;
  const guardians: GuardianHandle[] = [];

  before(async function () {
    w = await guardianWorld(4);
    const relayerKey = Wallet.createRandom();
    await (await w.admin.sendTransaction({ to: relayerKey.address, value: parseEther("10") })).wait();
    relayer = await startRelayer({
      rpc: w.node.url,
      privateKey: relayerKey.privateKey,
      ...w.fleet.addresses,
      dataDir: tempDir(),
      batchIntervalMs: 50,
      pollIntervalMs: 50,
      logLevel: "silent",
    });
    const policyFile = writePolicy(path.join(tempDir(), "policy.json"), LIVE);
    for (const g of w.guardians)
      guardians.push(
        await startGuardian({
          rpcUrl: w.node.url,
          chainId: 31337,
          watchUrl: w.indexer.url,
          addresses: w.fleet.addresses,
          relayers: [relayer.url],
          key: g.privateKey,
          policyFile,
          dataDir: tempDir(),
          port: 0,
        }),
      );
  });

  after(async function () {
    for (const g of guardians) await g.stop();
    await relayer?.close();
    await w?.indexer.stop();
    await w?.node.stop();
    removeTempDirs();
  });

  it("attack: a clone holding a device's key floods a relayer with messages that cannot land — refused, published, re-checked by each guardian, and the quorum quarantines the device; replays of its landed messages and a forger's in another device's name count for nothing", async function () {
    const target = w.fleet.devices[0];
    const bystander = w.fleet.devices[1];
    // The device sends five attestations; they land (here sent by the admin, not through the relayer).
    const landed: SignedDeviceMessage[] = [];
    const head = await w.provider.getBlock("latest");
    const deadline = BigInt(head!.timestamp + 3600);
    for (let n = 0n; n < 5n; n++) {
      const m = signAttestation(w.fleet.hasher, target, w.fleet.deployment, n, deadline);
      await (await w.admin.sendTransaction({ to: w.fleet.addresses.registry, data: encodeCall(m).data })).wait();
      landed.push(m);
    }
    await oneSecondBlocks(w.node);
    const from = await w.provider.getBlockNumber();
    // Anyone replays the bystander's landed messages (from the chain's calldata), again and again:
    // refused and published, but spent — they say nothing of its key.
    const bystanderLanded: SignedDeviceMessage[] = [];
    for (let n = 0n; n < 5n; n++) {
      const m = signAttestation(w.fleet.hasher, bystander, w.fleet.deployment, n, deadline);
      await (await w.admin.sendTransaction({ to: w.fleet.addresses.registry, data: encodeCall(m).data })).wait();
      bystanderLanded.push(m);
    }
    for (let round = 0; round < 3; round++)
      for (const m of bystanderLanded) expect((await post(relayer.url, "/v1/messages", m)).code).to.equal("nonce_used");
    // A forger signs in the bystander's name with fresh keys: refused before it counts (unknown key).
    for (let n = 100n; n < 110n; n++) {
      const forged = signAttestation(
        w.fleet.hasher,
        { ...bystander, key: randomDeviceKey("secp256k1") },
        w.fleet.deployment,
        n,
        deadline,
      );
      expect((await post(relayer.url, "/v1/messages", forged)).code).to.equal("unknown_key");
    }
    // The clone signs with the target's key, far ahead of its nonce: none of it can land.
    const cloneFrom = await w.provider.getBlockNumber();
    for (let n = 1_000n; n < 1_005n; n++) {
      const m = signAttestation(w.fleet.hasher, target, w.fleet.deployment, n, deadline);
      expect((await post(relayer.url, "/v1/messages", m)).code).to.equal("nonce_too_far");
    }

    const flaggedIn = await waitForRegistryEvent(w, "GuardianFlagged", target.id, from, 60_000);
    expect(await w.fleet.registry.deviceStatus(target.id)).to.not.equal(ACTIVE);
    expect(await w.fleet.registry.deviceStatus(bystander.id)).to.equal(ACTIVE);

    // Each flagging guardian's evidence names the five signed messages; anyone re-checks them.
    const verifier = new DeviceSignatureVerifier([]);
    const voters = [];
    for (const g of guardians) {
      const [vote] = await votesOf(w, g.address, target.id, from);
      if (!vote?.flag) continue;
      voters.push(g);
      const body = await (await fetch(`${g.url}/evidence/${vote.reason}`)).text();
      expect(hashOf(body)).to.equal(vote.reason);
      const finding = JSON.parse(body).findings.find((f: { rule: string }) => f.rule === "refusalBurst");
      expect(finding.decision).to.equal("fire");
      const refusals = finding.observations as {
        kind: string;
        code: string;
        relayer: string;
        message: SignedDeviceMessage;
      }[];
      expect(refusals).to.have.length(5);
      for (const r of refusals) {
        expect(r).to.include({ kind: "relayerRefusal", code: "nonce_too_far", relayer: relayer.url });
        const d = digest(r.message.type, w.fleet.deployment, r.message.message);
        expect(verifier.verify(r.message.key, getBytes(d), getBytes(r.message.signature))).to.equal(true);
      }
    }
    expect(voters.length).to.be.at.least(2);
    // The replays were read and set aside as spent.
    for (const g of guardians) expect(g.refusals!.stats.spent).to.be.at.least(5);
    console.log(
      `      quarantined in block ${flaggedIn}, ${flaggedIn - cloneFrom} blocks after the clone's messages began`,
    );
  });

  it("attack: a payer's meter signs at ten times its channel's rate — the payee serving it reports the vouchers, guardians re-check them and quarantine the payer; an honest payer beside it stays active", async function () {
    const RATE = 1_000n; // wei a second: one unit a second at the price
    const PRICE = 1_000n;
    const [bad, honest, payeeDevice] = [2, 3, 1];
    const terms = [await openChannel(w, bad, payeeDevice, RATE), await openChannel(w, honest, payeeDevice, RATE)];
    const channelsDeployment = { chainId: 31337n, verifyingContract: w.fleet.addresses.paymentChannels };
    // The payee device's meter: the real book, its real HTTP side, reporting to the three guardians.
    const payee = MeterPayee.open({
      hasher: w.fleet.hasher,
      deployment: channelsDeployment,
      verifier: new DeviceSignatureVerifier([w.fleet.addresses.p256Verifier]),
      dataDir: tempDir(),
    });
    for (const [i, t] of terms.entries())
      await payee.addChannel({
        terms: t,
        deposit: parseEther("1"),
        pricePerUnit: PRICE,
        payerKey: w.fleet.devices[[bad, honest][i]].key.signer,
      });
    const reports = new VoucherReports({ payee, guardians: guardians.map((g) => g.url!), intervalMs: 500 });
    const server = payeeServer({ payee, waiting: new Map(), price: PRICE, log: silentLogger, reports });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const payeeUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const meters = [new SimulatedMeter(), new SimulatedMeter()];
    const payers = terms.map(
      (t, i) =>
        new MeterPayer({
          key: w.fleet.devices[[bad, honest][i]].key,
          hasher: w.fleet.hasher,
          deployment: channelsDeployment,
          terms: t,
          pricePerUnit: PRICE,
          meter: meters[i],
        }),
    );
    const from = await w.provider.getBlockNumber();
    const badId = w.fleet.devices[bad].id;
    try {
      // Every half second for ten seconds: the honest payer's meter reads its rate, the bad one's
      // ten times it (the honest one goes on beside a quarantined neighbour: it must stay active).
      const until = Date.now() + 10_000;
      let tick = 0;
      while (Date.now() < until) {
        tick++;
        meters[0].add(5n); // ten units a second
        if (tick % 2 === 0) meters[1].add(1n); // one unit a second
        for (const p of payers) {
          const v = p.pay();
          if (!v) continue;
          const r = await fetch(`${payeeUrl}/v1/vouchers`, {
            method: "POST",
            headers: { "content-type": "application/json" },
            body: JSON.stringify({ ...v, cumulativeAmount: v.cumulativeAmount.toString() }),
          });
          expect(r.status, await r.clone().text()).to.equal(200);
        }
        await new Promise((r) => setTimeout(r, 500));
      }
      const flaggedIn = await waitForRegistryEvent(w, "GuardianFlagged", badId, from, 30_000);
      expect(await w.fleet.registry.deviceStatus(w.fleet.devices[honest].id)).to.equal(ACTIVE);
      expect(reports.counts.taken).to.be.greaterThan(0);
      const verifier = new DeviceSignatureVerifier([w.fleet.addresses.p256Verifier]);
      let voters = 0;
      for (const g of guardians) {
        const [vote] = await votesOf(w, g.address, badId, from);
        if (!vote?.flag) continue;
        voters++;
        const body = await (await fetch(`${g.url}/evidence/${vote.reason}`)).text();
        expect(hashOf(body)).to.equal(vote.reason);
        const finding = JSON.parse(body).findings.find((f: { rule: string }) => f.rule === "overRate");
        expect(finding.decision).to.equal("fire");
        const vouchers = finding.observations.filter((o: { kind: string }) => o.kind === "voucher") as {
          message: SignedDeviceMessage;
        }[];
        expect(vouchers).to.have.length(1);
        for (const { message: m } of vouchers) {
          const d = digest("Voucher", channelsDeployment, m.message);
          expect(verifier.verify(m.key, getBytes(d), getBytes(m.signature))).to.equal(true);
        }
      }
      expect(voters).to.be.at.least(2);
      console.log(
        `      quarantined in block ${flaggedIn} (${flaggedIn - from} blocks after the first voucher); ` +
          `reports taken ${reports.counts.taken}, the honest payer's channel untouched`,
      );
    } finally {
      await reports.close();
      await new Promise((r) => server.close(r));
      await payee.close();
    }
  });
});

/** Opens a channel from `payer` to `payee` at `rate` (wei a second), funded with 1 ETH by the admin. */
async function openChannel(w: GuardianWorld, payer: number, payee: number, rate: bigint): Promise<ChannelTerms> {
  const channels = PaymentChannels__factory.connect(w.fleet.addresses.paymentChannels, w.admin);
  const d = w.fleet.devices[payer];
  const opening = {
    payer: d.id,
    payee: w.fleet.devices[payee].id,
    token: ZeroAddress,
    rate,
    allowance: 0n,
    salt: payer,
  };
  const receipt = await (
    await channels.open(opening, d.key.signer, parseEther("1"), { value: parseEther("1") })
  ).wait();
  for (const log of receipt!.logs) {
    const parsed = channels.interface.parseLog(log);
    if (parsed?.name === "ChannelOpened") return termsFromOpened(parsed.args);
  }
  throw new Error("no ChannelOpened");
}

async function post(url: string, route: string, body: unknown): Promise<{ status: number; code?: string }> {
  const reply = await fetch(url + route, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  const json = (await reply.json()) as { code?: string };
  return { status: reply.status, code: json.code };
}

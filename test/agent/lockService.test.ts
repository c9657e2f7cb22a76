import { expect } from "chai";
import { ethers, loadFixture } from "../helpers/hardhat.js";
import { StandardMerkleTree } from "@openzeppelin/merkle-tree";
import { switchable } from "../../src/agent/switchable.js";
import { Agent } from "../../src/agent/agent.js";
import { TypedDataHasher } from "../../src/eip712/fast.js";
import { DeviceSignatureVerifier } from "../../src/crypto/verify.js";
import { randomDeviceKey } from "../../src/crypto/deviceKey.js";
import { LockService } from "../../src/agent/roles/lockServer.js";
import { unlockAt, showCertificate, describeSchedule } from "../../src/agent/roles/guest.js";
import { issueCertificate, signCheckpoint } from "../../src/agent/roles/lockOwner.js";
import { RECORD_ENCODING, recordLeaf } from "../../src/agent/roles/lockLog.js";
import { deployLocks } from "../helpers/lock.js";
import { rotation } from "../helpers/registry.js";
import { fundedWallet, tempDir } from "./helpers.js";

const FAST = { pollMs: 5, holdMs: 20, backoff: { baseMs: 20, capMs: 200 } };

async function lockFixture() {
  const ctx = await deployLocks();
  const payer = await fundedWallet();
  const { chainId } = await ethers.provider.getNetwork();
  const deployment = {
    chainId,
    registry: await ctx.registry.getAddress(),
    lockAccess: await ctx.locks.getAddress(),
  };
  return { ...ctx, payer, chainId, deployment };
}

describe("lock service: HTTP unlocks from cached chain state, the log anchored through the outbox", function () {
  let hasher: TypedDataHasher;
  const open: { close(): Promise<unknown> }[] = [];

  before(async function () {
    hasher = await TypedDataHasher.create();
  });

  afterEach(async function () {
    for (const s of open.splice(0).reverse()) await s.close();
  });

  async function start(
    f: Awaited<ReturnType<typeof lockFixture>>,
    opts: { maxStalenessS?: number; dataDir?: string } = {},
  ) {
    const chainNow = (await ethers.provider.getBlock("latest"))!.timestamp;
    const offset = chainNow - Date.now() / 1000 + 5;
    const time = { skew: 0 }; // how far a test moves the lock's clock ahead
    const clock = () => Date.now() / 1000 + offset + time.skew;
    const net = switchable(ethers.provider);
    const agent = await Agent.create({
      signer: f.lockKeys[0],
      deployment: f.deployment,
      dataDir: tempDir(),
      rpc: ethers.provider,
      payer: f.payer,
      ...FAST,
    });
    open.push({ close: () => agent.stop() });
    const service = new LockService({
      agent,
      lock: f.lock,
      deployment: f.deployment,
      provider: net.provider,
      hasher,
      verifier: new DeviceSignatureVerifier([f.verifierAddress]),
      dataDir: opts.dataDir ?? tempDir(),
      maxStalenessS: opts.maxStalenessS ?? 3600,
      clock,
    });
    await service.start();
    open.push(service);
    const lockDeployment = { chainId: f.chainId, verifyingContract: f.deployment.lockAccess };
    const grant = async (holder: string, fields: { keyId?: bigint; issuer?: typeof f.owner } = {}) =>
      issueCertificate(fields.issuer ?? f.owner, lockDeployment, {
        lock: f.lock,
        holder,
        keyId: fields.keyId ?? 1n,
        issuedAt: BigInt(Math.floor(clock())),
        validUntil: BigInt(Math.floor(clock()) + 86400),
      });
    return { service, agent, clock, time, net, grant, lockDeployment };
  }

  /** The guest's phone asks the lock at `s` to open (its clock agrees with the lock's). */
  const guestOpens = (
    s: Awaited<ReturnType<typeof start>>,
    cert: Parameters<typeof unlockAt>[1],
    key: Parameters<typeof unlockAt>[2],
    h: TypedDataHasher,
  ) => unlockAt(s.service.url, cert, key, h, { now: s.clock() });

  it("a guest opens over HTTP; the decision is on disk, sealed, anchored through the outbox, and proven against the root on chain", async function () {
    const f = await loadFixture(lockFixture);
    const s = await start(f);
    const guest = randomDeviceKey("secp256k1");
    const cert = await s.grant(guest.signer);
    expect(showCertificate(cert, hasher, s.clock())).to.include({ signatureValid: true, usableNow: true });
    expect(await guestOpens(s, cert, guest, hasher)).to.include({ open: true, record: 0 });
    const thief = randomDeviceKey("secp256k1");
    await expect(guestOpens(s, cert, thief, hasher)).to.be.rejectedWith(/not the certificate's holder/);

    const batch = await s.service.anchor();
    expect(batch).to.include({ seq: 1, from: 0, to: 1 });
    await s.agent.drain();
    expect(s.agent.outbox.ofDevice(f.lock).map((e) => [e.outcome, e.reason])).to.deep.equal([["confirmed", undefined]]);
    expect((await f.locks.lockState(f.lock)).logSeq).to.equal(1n);
    const [event] = await f.locks.queryFilter(f.locks.filters.LogAnchored(f.lock));
    expect(event.args.root).to.equal(batch!.root);

    const p = s.service.book.proof(0)!;
    expect(await f.locks.verifyLogRecord(batch!.root, p.leaf, p.proof!)).to.equal(true);
    // The record's leaf is OpenZeppelin StandardMerkleTree's leaf for the same values.
    const r = p.record;
    const values = [r.lock, r.at, r.outcome, r.accessKey, r.challenge, r.requestHash];
    expect(StandardMerkleTree.of([values], [...RECORD_ENCODING]).leafHash(values)).to.equal(recordLeaf(r));
    // A tampered record (deny turned into open, or another time) does not verify.
    expect(await f.locks.verifyLogRecord(batch!.root, recordLeaf({ ...r, at: r.at + 1 }), p.proof!)).to.equal(false);

    // Nothing new: no batch; the next batch continues the chain's sequence.
    expect(await s.service.anchor()).to.equal(undefined);
    await guestOpens(s, cert, guest, hasher);
    expect(await s.service.anchor()).to.include({ seq: 2 });
    await s.agent.drain();
    expect((await f.locks.lockState(f.lock)).logSeq).to.equal(2n);
  });

  it("CRASH: a batch sealed but never handed to the outbox (the process died between) is anchored after the restart", async function () {
    const f = await loadFixture(lockFixture);
    const dataDir = tempDir();
    const first = await start(f, { dataDir });
    const guest = randomDeviceKey("secp256k1");
    const cert = await first.grant(guest.signer);
    await guestOpens(first, cert, guest, hasher);
    await guestOpens(first, cert, guest, hasher);
    const sealed = await first.service.book.seal(1); // sealed and on disk; the outbox never heard of it
    for (const s of open.splice(0).reverse()) await s.close();

    const second = await start(f, { dataDir });
    expect(second.service.book.size).to.equal(2);
    expect(await second.service.anchor()).to.equal(undefined); // nothing new to seal
    await second.agent.drain();
    const [event] = await f.locks.queryFilter(f.locks.filters.LogAnchored(f.lock));
    expect([event.args.seq, event.args.root, event.args.count]).to.deep.equal([1n, sealed!.root, 2n]);
  });

  it("attack: a key the owner revoked on chain, and every key after a revoke-all, are refused after the next sync", async function () {
    const f = await loadFixture(lockFixture);
    const s = await start(f);
    const guest = randomDeviceKey("p256", f.verifierAddress);
    const cert = await s.grant(guest.signer, { keyId: 7n });
    expect(await guestOpens(s, cert, guest, hasher)).to.include({ open: true });
    await f.locks.connect(f.owner).revokeKey(f.lock, 7n);
    await s.service.sync();
    expect(await guestOpens(s, cert, guest, hasher)).to.include({ open: false, reason: "revoked" });
    const other = await s.grant(guest.signer, { keyId: 8n });
    expect(await guestOpens(s, other, guest, hasher)).to.include({ open: true });
    await f.locks.connect(f.owner).revokeAll(f.lock);
    await s.service.sync();
    expect(await guestOpens(s, other, guest, hasher)).to.include({ open: false, reason: "epoch" });
  });

  it("attack: after the lock is sold, keys issued by the previous owner or their manager die; the new owner's work", async function () {
    const f = await loadFixture(lockFixture);
    const s = await start(f);
    const guest = randomDeviceKey("secp256k1");
    await f.locks.connect(f.owner).appointManager(f.lock, f.other.address, BigInt(Math.floor(s.clock()) + 86400));
    await s.service.sync();
    const byOwner = await s.grant(guest.signer);
    const byManager = await issueCertificate(f.other, s.lockDeployment, {
      lock: f.lock,
      holder: guest.signer,
      owner: f.owner.address,
      keyId: 2n,
      issuedAt: BigInt(Math.floor(s.clock())),
      validUntil: BigInt(Math.floor(s.clock()) + 86400),
    });
    expect(await guestOpens(s, byManager, guest, hasher)).to.include({ open: true });
    const sale = await (
      await f.registry.connect(f.owner).transferFrom(f.owner.address, f.stranger.address, f.lock)
    ).wait();
    const soldAt = (await sale!.getBlock()).timestamp;
    await s.service.sync();
    expect(await guestOpens(s, byOwner, guest, hasher)).to.include({ reason: "previous-owner" });
    expect(await guestOpens(s, byManager, guest, hasher)).to.include({ reason: "previous-owner" });
    const buyersKey = {
      lock: f.lock,
      holder: guest.signer,
      keyId: 1n,
      issuedAt: BigInt(soldAt),
      validFrom: BigInt(soldAt - 60),
      validUntil: BigInt(soldAt + 86400),
    };
    // The buyer's certificates carry the new ownership period's key epoch (1 << 16).
    const epoch = Number(await f.locks.keyEpoch(f.lock));
    expect(epoch).to.equal(1 << 16);
    const byBuyer = await issueCertificate(f.stranger, s.lockDeployment, { ...buyersKey, epoch });
    expect(await guestOpens(s, byBuyer, guest, hasher)).to.include({ open: true });
    const withTheOldEpoch = await issueCertificate(f.stranger, s.lockDeployment, { ...buyersKey, keyId: 2n });
    expect(await guestOpens(s, withTheOldEpoch, guest, hasher)).to.include({ reason: "previous-owner" });
  });

  it("attack: after a buy-back, the owner's keys and its manager's of the earlier ownership stay dead; the old manager signs nothing", async function () {
    const f = await loadFixture(lockFixture);
    const s = await start(f);
    const guest = randomDeviceKey("secp256k1");
    await f.locks.connect(f.owner).appointManager(f.lock, f.other.address, BigInt(Math.floor(s.clock()) + 86400));
    await s.service.sync();
    const byOwner = await s.grant(guest.signer);
    expect(await guestOpens(s, byOwner, guest, hasher)).to.include({ open: true });
    await f.registry.connect(f.owner).transferFrom(f.owner.address, f.stranger.address, f.lock);
    await f.registry.connect(f.stranger).transferFrom(f.stranger.address, f.owner.address, f.lock);
    await s.service.sync();
    expect(await guestOpens(s, byOwner, guest, hasher)).to.include({ reason: "previous-owner" });
    const epoch = Number(await f.locks.keyEpoch(f.lock));
    const fields = {
      lock: f.lock,
      holder: guest.signer,
      owner: f.owner.address,
      issuedAt: BigInt(Math.floor(s.clock())),
      validUntil: BigInt(Math.floor(s.clock()) + 86400),
      epoch,
    };
    const byOldManager = await issueCertificate(f.other, s.lockDeployment, { ...fields, keyId: 2n });
    expect(await guestOpens(s, byOldManager, guest, hasher)).to.include({ reason: "issuer" });
    const again = await issueCertificate(f.owner, s.lockDeployment, { ...fields, keyId: 3n });
    expect(await guestOpens(s, again, guest, hasher)).to.include({ open: true });
  });

  it("a lock whose key its owner installed alone holds its sealed log until the manufacturer re-attests the key", async function () {
    const f = await loadFixture(lockFixture);
    const installed = randomDeviceKey("secp256k1");
    const registryDomain = { chainId: f.chainId, verifyingContract: f.deployment.registry };
    const rotate = await rotation({ ...f, deployment: registryDomain }, f.lock, installed, null);
    await f.registry.connect(f.owner).rotateKey(f.lock, rotate);
    // What the service hands its agent's outbox (an agent of a rotated-in key is not this test's subject).
    const handed: { seq: unknown }[] = [];
    const agent = {
      sign: async (_type: string, fields: { seq: unknown }) => void handed.push(fields),
    } as unknown as Agent;
    const chainNow = (await ethers.provider.getBlock("latest"))!.timestamp;
    const clock = () => chainNow + 5;
    const service = new LockService({
      agent,
      lock: f.lock,
      deployment: f.deployment,
      provider: ethers.provider,
      hasher,
      verifier: new DeviceSignatureVerifier([f.verifierAddress]),
      dataDir: tempDir(),
      maxStalenessS: 3600,
      clock,
    });
    await service.start();
    open.push(service);
    expect(await (await fetch(`${service.url}/v1/state`)).json()).to.include({ keyAttested: false });
    const guest = randomDeviceKey("secp256k1");
    const cert = await issueCertificate(
      f.owner,
      { chainId: f.chainId, verifyingContract: f.deployment.lockAccess },
      {
        lock: f.lock,
        holder: guest.signer,
        keyId: 1n,
        issuedAt: BigInt(chainNow),
        validUntil: BigInt(chainNow + 86400),
      },
    );
    expect(await unlockAt(service.url, cert, guest, hasher, { now: clock() })).to.include({ open: true });
    expect(await service.anchor()).to.include({ seq: 1 }); // sealed on disk...
    expect(handed).to.deep.equal([]); // ...but not handed over: LockAccess would refuse it
    await f.registry.connect(f.manufacturer).attestKey(f.lock);
    await service.sync();
    expect(await service.anchor()).to.equal(undefined); // nothing new to seal; the held batch goes
    expect(handed.map((b) => b.seq)).to.deep.equal([1]);
  });

  it("attack: a holder that is a quarantined device is refused (looked up when first met); a stolen lock opens nothing", async function () {
    const f = await loadFixture(lockFixture);
    const s = await start(f);
    const deviceHolder = f.lockKeys[1]; // a registered (P-256) device of the same owner
    await f.registry.connect(f.owner).reportStolen(f.lockIds[1]);
    const cert = await s.grant(deviceHolder.signer);
    expect(await guestOpens(s, cert, deviceHolder, hasher)).to.include({ reason: "holder-not-active" });
    const guest = randomDeviceKey("secp256k1");
    const guestCert = await s.grant(guest.signer);
    await f.registry.connect(f.owner).reportStolen(f.lock);
    await s.service.sync();
    expect(await guestOpens(s, guestCert, guest, hasher)).to.include({ reason: "lock-not-active" });
  });

  it("offline: with the chain unreachable the lock keeps opening from its cache, fails closed past maxStaleness, and an owner's checkpoint over HTTP revives it", async function () {
    const f = await loadFixture(lockFixture);
    const s = await start(f, { maxStalenessS: 600 });
    const guest = randomDeviceKey("secp256k1");
    const cert = await s.grant(guest.signer, { keyId: 3n });
    expect(await guestOpens(s, cert, guest, hasher)).to.include({ open: true }); // met online
    s.net.link.down = true;
    expect(await s.service.sync()).to.equal(false);
    expect(await guestOpens(s, cert, guest, hasher)).to.include({ open: true });
    // A guest never met, offline: its device status cannot be known.
    const stranger = randomDeviceKey("secp256k1");
    expect(await guestOpens(s, await s.grant(stranger.signer), stranger, hasher)).to.include({
      reason: "holder-unknown",
    });
    s.time.skew = 700;
    expect(await guestOpens(s, cert, guest, hasher)).to.include({ reason: "stale-state" });
    const checkpoint = await signCheckpoint(f.owner, s.lockDeployment, {
      lock: f.lock,
      epoch: 0,
      revoked: [9n],
      issuedAt: BigInt(Math.floor(s.clock() - 10)),
    });
    const res = await fetch(`${s.service.url}/v1/checkpoint`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(checkpoint),
    });
    expect(await res.json()).to.deep.equal({ accepted: true });
    expect(await guestOpens(s, cert, guest, hasher)).to.include({ open: true });
    const replay = await fetch(`${s.service.url}/v1/checkpoint`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(checkpoint),
    });
    expect(replay.status).to.equal(409);
    s.net.link.down = false;
  });

  it("bad input gets an error naming the field, and is still logged when it reached a decision", async function () {
    const f = await loadFixture(lockFixture);
    const s = await start(f);
    const post = (body: unknown) =>
      fetch(`${s.service.url}/v1/unlock`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(body),
      });
    const r1 = await post({ certificate: { key: {} } });
    expect(r1.status).to.equal(400);
    expect(((await r1.json()) as { error: string }).error).to.match(/certificate.signature/);
    const r2 = await post({ certificate: { key: {}, signature: "0x" }, request: {} });
    expect(((await r2.json()) as { error: string }).error).to.match(/request.request/);
    expect((await fetch(`${s.service.url}/v1/log/999`)).status).to.equal(404);
  });

  it("shows a schedule in words", function () {
    const mondayNineToFive = [...Array(8).keys()].reduce((m, h) => m | (1n << BigInt(9 + h)), 0n);
    expect(describeSchedule(mondayNineToFive)).to.deep.equal(["Mon 09:00–17:00 UTC"]);
    expect(describeSchedule(0n)).to.deep.equal(["any time"]);
  });
});

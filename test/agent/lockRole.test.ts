import { expect } from "chai";
import { Wallet } from "ethers";
import { TypedDataHasher, bytesToHex } from "../../src/eip712/fast.js";
import { digest, type Deployment, type Message } from "../../src/eip712/index.js";
import { randomDeviceKey, secp256k1Key, type DeviceKey } from "../../src/crypto/deviceKey.js";
import { DeviceSignatureVerifier } from "../../src/crypto/verify.js";
import { LockRole, hourOfWeek, revokedRootOf, type LockChainState } from "../../src/agent/roles/lock.js";

const LOCK = 1234567n;
const VERIFIER = "0x00000000000000000000000000000000000a7256";
const deployment: Deployment = { chainId: 31337n, verifyingContract: "0x5FbDB2315678afecb367f032d93F642f64180aa3" };
const T0 = 1_700_000_000; // a Tuesday, 22:13 UTC

describe("lock role: unlock decisions from cached chain state", function () {
  let hasher: TypedDataHasher;
  const owner = secp256k1Key(Wallet.createRandom().privateKey);
  const manager = secp256k1Key(Wallet.createRandom().privateKey);
  const stranger = secp256k1Key(Wallet.createRandom().privateKey);

  before(async function () {
    hasher = await TypedDataHasher.create();
  });

  function setup(opts: { clock?: () => number; maxStalenessS?: number } = {}) {
    let time = T0;
    const clock = opts.clock ?? (() => time);
    const role = new LockRole({
      lock: LOCK,
      deployment,
      hasher,
      verifier: new DeviceSignatureVerifier([VERIFIER]),
      maxStalenessS: opts.maxStalenessS ?? 3600,
      clock,
    });
    const revoked = new Set<bigint>();
    const managers = new Map<string, bigint>();
    const quarantinedHolders = new Set<string>();
    const state: LockChainState = {
      owner: owner.signer,
      lockStatus: 1,
      keyAttested: true,
      epoch: 0,
      isRevoked: (id) => revoked.has(id),
      managerExpiry: (m) => managers.get(m.toLowerCase()) ?? 0n,
      holderStatus: (h) => (quarantinedHolders.has(h.toLowerCase()) ? 2 : 0),
      readAt: T0,
    };
    role.update(state);
    return { role, state, revoked, managers, quarantinedHolders, setTime: (t: number) => (time = t) };
  }

  function certificate(holder: DeviceKey, fields: Partial<Message> = {}, issuer: DeviceKey = owner, d = deployment) {
    const key: Message = {
      lock: LOCK,
      holder: holder.signer,
      owner: owner.signer,
      issuer: issuer.signer,
      issuedAt: BigInt(T0 - 3600),
      validFrom: BigInt(T0 - 3600),
      validUntil: BigInt(T0 + 86400),
      schedule: 0n,
      epoch: 0,
      keyId: 1n,
      ...fields,
    };
    return { key, signature: issuer.signDigest(digest("AccessKey", d, key)) };
  }

  function request(
    holder: DeviceKey,
    cert: { key: Message },
    challenge: string,
    d = deployment,
    lock = LOCK,
    deadline = BigInt(T0 + 86400),
  ) {
    const r = { lock, accessKey: bytesToHex(hasher.structHash("AccessKey", cert.key)), challenge, deadline };
    return { request: r, signature: holder.signDigest(digest("UnlockRequest", d, r)) };
  }

  for (const kind of ["secp256k1", "p256"] as const) {
    it(`opens for a valid certificate held by a ${kind} key, and logs the time`, function () {
      const { role } = setup();
      const guest = randomDeviceKey(kind, VERIFIER);
      const cert = certificate(guest);
      expect(role.decide(cert, request(guest, cert, role.challenge()))).to.deep.equal({ open: true, at: T0 });
    });
  }

  const denied = (f: ReturnType<typeof setup>, guest: DeviceKey, cert: ReturnType<typeof certificate>) =>
    f.role.decide(cert, request(guest, cert, f.role.challenge()));

  it("attack: an expired key, and a key not yet valid, are refused", function () {
    const f = setup();
    const guest = randomDeviceKey("secp256k1");
    expect(denied(f, guest, certificate(guest, { validUntil: BigInt(T0 - 1) }))).to.include({
      open: false,
      reason: "expired",
    });
    expect(denied(f, guest, certificate(guest, { validFrom: BigInt(T0 + 1) }))).to.include({ reason: "not-yet-valid" });
  });

  it("attack: a key used outside its weekly schedule is refused", function () {
    const f = setup();
    const guest = randomDeviceKey("secp256k1");
    const now = hourOfWeek(T0);
    expect(denied(f, guest, certificate(guest, { schedule: 1n << BigInt((now + 1) % 168) }))).to.include({
      reason: "schedule",
    });
    expect(denied(f, guest, certificate(guest, { schedule: 1n << BigInt(now) }))).to.include({ open: true });
  });

  it("attack: a revoked key, and every key after a revoke-all, are refused", function () {
    const f = setup();
    const guest = randomDeviceKey("secp256k1");
    f.revoked.add(1n);
    expect(denied(f, guest, certificate(guest))).to.include({ reason: "revoked" });
    f.state.epoch = 1;
    expect(denied(f, guest, certificate(guest, { keyId: 2n }))).to.include({ reason: "epoch" });
    expect(denied(f, guest, certificate(guest, { keyId: 2n, epoch: 1 }))).to.include({ open: true });
  });

  it("attack: a key from the previous owner after a sale, or from the same owner's earlier ownership period after a buy-back, is refused", function () {
    const f = setup();
    const guest = randomDeviceKey("secp256k1");
    const cert = certificate(guest);
    f.state.owner = stranger.signer;
    f.state.epoch = 1 << 16; // sold: ownership epoch 1
    expect(denied(f, guest, cert)).to.include({ reason: "previous-owner" });
    f.state.owner = owner.signer;
    f.state.epoch = 2 << 16; // bought back: ownership epoch 2, however recent the certificate's dates
    const fresh = certificate(guest, { issuedAt: BigInt(T0), validFrom: BigInt(T0) });
    expect(denied(f, guest, fresh)).to.include({ reason: "previous-owner" });
    expect(denied(f, guest, certificate(guest, { epoch: 2 << 16 }))).to.include({ open: true });
    // The same ownership period, an older revoke-all count: a plain epoch refusal.
    f.state.epoch = (2 << 16) + 1;
    expect(denied(f, guest, certificate(guest, { epoch: 2 << 16 }))).to.include({ reason: "epoch" });
  });

  it("attack: a certificate that opened before is refused once revoked (its checked signature is remembered, not its validity)", function () {
    const f = setup();
    const guest = randomDeviceKey("secp256k1");
    const cert = certificate(guest);
    expect(denied(f, guest, cert)).to.include({ open: true });
    f.revoked.add(1n);
    expect(denied(f, guest, cert)).to.include({ reason: "revoked" });
    const tampered = { ...cert, key: { ...cert.key, validUntil: BigInt(T0 + 10 * 86400) } };
    expect(f.role.decide(tampered, request(guest, tampered, f.role.challenge()))).to.include({
      reason: "certificate-signature",
    });
  });

  it("attack: a replayed challenge, an unknown one, or one that timed out is refused", function () {
    const f = setup();
    const guest = randomDeviceKey("secp256k1");
    const cert = certificate(guest);
    const req = request(guest, cert, f.role.challenge());
    expect(f.role.decide(cert, req)).to.include({ open: true });
    expect(f.role.decide(cert, req)).to.include({ reason: "challenge" });
    expect(f.role.decide(cert, request(guest, cert, bytesToHex(new Uint8Array(32))))).to.include({
      reason: "challenge",
    });
    const late = request(guest, cert, f.role.challenge());
    f.setTime(T0 + 31);
    expect(f.role.decide(cert, late)).to.include({ reason: "challenge" });
  });

  it("attack: a challenge issued by another lock, or a request and key for another lock, are refused", function () {
    const f = setup();
    const other = setup();
    const guest = randomDeviceKey("secp256k1");
    const cert = certificate(guest);
    expect(f.role.decide(cert, request(guest, cert, other.role.challenge()))).to.include({ reason: "challenge" });
    expect(f.role.decide(cert, request(guest, cert, f.role.challenge(), deployment, LOCK + 1n))).to.include({
      reason: "foreign-lock",
    });
    const foreign = certificate(guest, { lock: LOCK + 1n });
    expect(denied(f, guest, foreign)).to.include({ reason: "foreign-lock" });
  });

  it("attack: a certificate signed by a stranger, or by a manager whose appointment expired, is refused", function () {
    const f = setup();
    const guest = randomDeviceKey("secp256k1");
    expect(denied(f, guest, certificate(guest, {}, stranger))).to.include({ reason: "issuer" });
    f.managers.set(manager.signer, BigInt(T0 + 10));
    expect(denied(f, guest, certificate(guest, {}, manager))).to.include({ open: true });
    f.setTime(T0 + 11);
    f.state.readAt = T0 + 11;
    expect(denied(f, guest, certificate(guest, {}, manager))).to.include({ reason: "issuer" });
    // A certificate whose signature does not match its issuer field.
    const forged = certificate(guest, {}, owner);
    forged.signature = stranger.signDigest(digest("AccessKey", deployment, forged.key));
    expect(denied(f, guest, forged)).to.include({ reason: "certificate-signature" });
  });

  for (const [attack, change] of [
    ["another chain", { chainId: 1n }],
    ["another contract", { verifyingContract: Wallet.createRandom().address }],
  ] as const) {
    it(`attack: a request or a certificate signed for ${attack} is refused`, function () {
      const f = setup();
      const guest = randomDeviceKey("p256", VERIFIER);
      const cert = certificate(guest);
      const other = { ...deployment, ...change };
      expect(f.role.decide(cert, request(guest, cert, f.role.challenge(), other))).to.include({
        reason: "request-signature",
      });
      const foreignCert = certificate(guest, {}, owner, other);
      expect(denied(f, guest, foreignCert)).to.include({ reason: "certificate-signature" });
    });
  }

  it("attack: a request past its own deadline is refused", function () {
    const f = setup();
    const guest = randomDeviceKey("secp256k1");
    const cert = certificate(guest);
    const late = request(guest, cert, f.role.challenge(), deployment, LOCK, BigInt(T0 - 1));
    expect(f.role.decide(cert, late)).to.include({ reason: "request-expired" });
  });

  it("attack: a request signed by someone other than the key's holder is refused", function () {
    const f = setup();
    const guest = randomDeviceKey("secp256k1");
    const thief = randomDeviceKey("secp256k1");
    const cert = certificate(guest);
    expect(f.role.decide(cert, request(thief, cert, f.role.challenge()))).to.include({ reason: "request-signature" });
  });

  it("attack: a quarantined lock, or a holder that is a quarantined device, opens nothing", function () {
    const f = setup();
    const guest = randomDeviceKey("secp256k1");
    f.state.lockStatus = 2;
    expect(denied(f, guest, certificate(guest))).to.include({ reason: "lock-not-active" });
    f.state.lockStatus = 1;
    f.quarantinedHolders.add(guest.signer);
    expect(denied(f, guest, certificate(guest))).to.include({ reason: "holder-not-active" });
  });

  it("offline: opens while the cached state is within maxStaleness, fails closed beyond it", function () {
    const f = setup({ maxStalenessS: 600 });
    const guest = randomDeviceKey("secp256k1");
    f.setTime(T0 + 600);
    expect(denied(f, guest, certificate(guest))).to.include({ open: true });
    f.setTime(T0 + 601);
    expect(denied(f, guest, certificate(guest))).to.include({ reason: "stale-state" });
  });

  function checkpoint(
    fields: Partial<Message> & { revoked?: bigint[] } = {},
    signer: DeviceKey = owner,
    d: Deployment = deployment,
  ) {
    const revoked = fields.revoked ?? [];
    const c: Message = {
      lock: LOCK,
      owner: owner.signer,
      epoch: 0,
      revokedRoot: revokedRootOf(revoked),
      revokedCount: revoked.length,
      issuedAt: BigInt(T0 + 3000),
      ...fields,
    };
    delete c.revoked;
    return { checkpoint: c, signature: signer.signDigest(digest("RevocationCheckpoint", d, c)), revoked };
  }

  it("offline past maxStaleness: an owner-signed revocation checkpoint carried by a guest keeps the lock deciding, with its revocations and epoch", function () {
    const f = setup({ maxStalenessS: 600 });
    const guest = randomDeviceKey("secp256k1");
    f.setTime(T0 + 3300);
    expect(denied(f, guest, certificate(guest))).to.include({ reason: "stale-state" });
    expect(f.role.applyCheckpoint(checkpoint({ revoked: [1n, 7n] }))).to.deep.equal({ accepted: true });
    expect(f.role.freshAt()).to.equal(T0 + 3000);
    expect(denied(f, guest, certificate(guest))).to.include({ reason: "revoked" });
    expect(denied(f, guest, certificate(guest, { keyId: 2n }))).to.include({ open: true });
    // A later checkpoint bumps the epoch: every earlier key dies.
    expect(f.role.applyCheckpoint(checkpoint({ epoch: 1, issuedAt: BigInt(T0 + 3200) }))).to.deep.equal({
      accepted: true,
    });
    expect(denied(f, guest, certificate(guest, { keyId: 2n }))).to.include({ reason: "epoch" });
    expect(denied(f, guest, certificate(guest, { keyId: 2n, epoch: 1 }))).to.include({ open: true });
    // ...and it too grows stale.
    f.setTime(T0 + 3801);
    expect(denied(f, guest, certificate(guest, { keyId: 2n, epoch: 1 }))).to.include({ reason: "stale-state" });
  });

  it("attack: a revocation checkpoint signed by a stranger, for another lock, chain or contract, or for a previous owner is refused", function () {
    const f = setup({ maxStalenessS: 600 });
    f.setTime(T0 + 3300);
    expect(f.role.applyCheckpoint(checkpoint({}, stranger))).to.deep.equal({ accepted: false, reason: "signature" });
    expect(f.role.applyCheckpoint(checkpoint({ lock: LOCK + 1n }))).to.include({ reason: "foreign-lock" });
    expect(f.role.applyCheckpoint(checkpoint({}, owner, { ...deployment, chainId: 1n }))).to.include({
      reason: "signature",
    });
    expect(
      f.role.applyCheckpoint(
        checkpoint({}, owner, { ...deployment, verifyingContract: Wallet.createRandom().address }),
      ),
    ).to.include({ reason: "signature" });
    expect(f.role.applyCheckpoint(checkpoint({ owner: stranger.signer }, stranger))).to.include({
      reason: "not-owner",
    });
    // The same owner, but another ownership period: after a buy-back its old word does not count.
    f.role.update({ ...f.state, epoch: 2 << 16 });
    expect(f.role.applyCheckpoint(checkpoint({ epoch: 1 }))).to.include({ reason: "not-owner" });
    expect(f.role.freshAt()).to.equal(T0);
  });

  it("attack: a checkpoint whose revoked list was trimmed, reordered or miscounted is refused", function () {
    const f = setup({ maxStalenessS: 600 });
    f.setTime(T0 + 3300);
    const good = checkpoint({ revoked: [1n, 7n] });
    expect(f.role.applyCheckpoint({ ...good, revoked: [7n] })).to.include({ reason: "revoked-list" });
    expect(f.role.applyCheckpoint({ ...good, revoked: [7n, 1n] })).to.include({ reason: "revoked-list" });
    const miscounted = checkpoint({ revoked: [1n, 7n], revokedCount: 1 });
    expect(f.role.applyCheckpoint(miscounted)).to.include({ reason: "revoked-list" });
  });

  it("attack: an old checkpoint replayed, one dated in the future, or one that moves the epoch back is refused", function () {
    const f = setup({ maxStalenessS: 600 });
    f.state.epoch = 2;
    f.setTime(T0 + 3300);
    expect(f.role.applyCheckpoint(checkpoint({ issuedAt: BigInt(T0 - 10), epoch: 2 }))).to.include({
      reason: "not-newer",
    });
    expect(f.role.applyCheckpoint(checkpoint({ issuedAt: BigInt(T0 + 4000), epoch: 2 }))).to.include({
      reason: "from-the-future",
    });
    expect(f.role.applyCheckpoint(checkpoint({ epoch: 1 }))).to.include({ reason: "epoch-behind" });
    expect(f.role.applyCheckpoint(checkpoint({ epoch: 2 }))).to.include({ accepted: true });
    expect(f.role.applyCheckpoint(checkpoint({ epoch: 2 }))).to.include({ reason: "not-newer" });
  });

  it("a newer chain read supersedes a checkpoint; a holder the lock never looked up is refused", function () {
    const f = setup({ maxStalenessS: 600 });
    const guest = randomDeviceKey("secp256k1");
    f.setTime(T0 + 3300);
    f.role.applyCheckpoint(checkpoint({ revoked: [5n] }));
    f.role.update({ ...f.state, readAt: T0 + 3300 });
    expect(f.role.freshAt()).to.equal(T0 + 3300);
    expect(denied(f, guest, certificate(guest, { keyId: 5n }))).to.include({ open: true });
    f.role.update({ ...f.state, readAt: T0 + 3300, holderStatus: () => undefined });
    expect(denied(f, guest, certificate(guest))).to.include({ reason: "holder-unknown" });
  });

  it("attack: a clock set back cannot revive an expired key", function () {
    const f = setup();
    const guest = randomDeviceKey("secp256k1");
    const cert = certificate(guest, { validUntil: BigInt(T0 + 100) });
    f.setTime(T0 + 200);
    expect(denied(f, guest, cert)).to.include({ reason: "expired" });
    f.setTime(T0); // someone resets the lock's clock
    expect(f.role.now()).to.equal(T0 + 200);
    expect(denied(f, guest, cert)).to.include({ reason: "expired" });
  });

  it("knows the hour of the week (Monday 00:00 UTC is hour 0)", function () {
    expect(hourOfWeek(Date.UTC(2024, 0, 1, 0, 30) / 1000)).to.equal(0); // Monday
    expect(hourOfWeek(Date.UTC(2024, 0, 7, 23, 59) / 1000)).to.equal(167); // Sunday
  });
});

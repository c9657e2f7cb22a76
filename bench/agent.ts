/**
 * Off-chain throughput on one core: EIP-712 typed-data signing and verification of device messages
 * (fast digest + native signature), for secp256k1 and P-256 keys. Each figure is the best of three
 * timed loops of at least one second, after a warm-up.
 */
import { Wallet, id as labelHash } from "ethers";
import { TypedDataHasher } from "../src/eip712/fast.js";
import { p256Key, secp256k1Key, type DeviceKey } from "../src/crypto/deviceKey.js";
import { p256KeyFromScalar } from "../src/crypto/p256.js";
import { DeviceSignatureVerifier } from "../src/crypto/verify.js";
import { digest, type Deployment } from "../src/eip712/index.js";
import { bytesToHex } from "../src/eip712/fast.js";
import { LockRole } from "../src/agent/roles/lock.js";
import { MeterPayee, MeterPayer, UNCAPPED, payerKeyHash } from "../src/agent/roles/meter.js";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";

/**
 * Operations per second of `op`, best of three loops of at least `ms` milliseconds of `op` alone.
 * `op` is called in batches of BATCH; `ready(BATCH)`, when given, runs before each batch outside
 * the timed part, so an operation that consumes prepared work (a challenge is answered once, a
 * voucher must raise the last one) never runs out of it, however fast the machine.
 */
export function rate(op: (i: number) => void, ms = 1000, ready?: (count: number) => void): number {
  for (let i = 0; i < WARM_UP; i += BATCH) {
    ready?.(BATCH);
    for (let k = 0; k < BATCH; k++) op(i + k);
  }
  let best = 0;
  for (let round = 0; round < 3; round++) {
    let n = 0;
    let elapsed = 0;
    while (elapsed < ms) {
      ready?.(BATCH);
      const start = process.hrtime.bigint();
      for (let k = 0; k < BATCH; k++) op(n++);
      elapsed += Number(process.hrtime.bigint() - start) / 1e6;
    }
    best = Math.max(best, (n * 1000) / elapsed);
  }
  return Math.round(best);
}

const WARM_UP = 2000;
const BATCH = 200;

/**
 * Work made ahead of a timed loop and consumed by it: `take()` hands out the next item, `ready(n)`
 * (outside the timed part) makes sure `n` more are there, making them `chunk` at a time.
 */
export class Prepared<T> {
  private items: T[] = [];
  private next = 0;

  constructor(
    private readonly make: () => T,
    private readonly chunk = 2000,
  ) {}

  ready(count: number): void {
    if (this.items.length - this.next >= count) return;
    // Drop what was consumed, so memory stays at about one chunk whatever the rate.
    this.items = this.items.slice(this.next);
    this.next = 0;
    while (this.items.length < count) for (let i = 0; i < this.chunk; i++) this.items.push(this.make());
  }

  take(): T {
    if (this.next === this.items.length) throw new Error("bench: an operation ran ahead of its prepared work");
    return this.items[this.next++];
  }
}

export async function benchAgent(): Promise<Record<string, number>> {
  const hasher = await TypedDataHasher.create();
  const deployment: Deployment = {
    chainId: 31337n,
    verifyingContract: new Wallet(labelHash("bench registry")).address,
  };
  const verifierAddress = new Wallet(labelHash("bench p256 verifier")).address;
  const verifier = new DeviceSignatureVerifier([verifierAddress]);
  const keys: Record<string, DeviceKey> = {
    secp256k1: secp256k1Key(labelHash("bench agent secp256k1")),
    p256: p256Key(verifierAddress, p256KeyFromScalar(labelHash("bench agent p256"))),
  };
  const firmwareHash = labelHash("firmware");
  const message = (i: number) => ({ device: 12345n, firmwareHash, nonce: BigInt(i), deadline: 1_900_000_000n });
  const results: Record<string, number> = {};
  for (const [kind, key] of Object.entries(keys)) {
    results[`${kind}.sign_per_s`] = rate((i) =>
      key.signBytes(hasher.digest("FirmwareAttestation", deployment, message(i))),
    );
    const signed = Array.from({ length: 1024 }, (_, i) => {
      const digest = hasher.digest("FirmwareAttestation", deployment, message(i));
      return { i, signature: key.signBytes(digest) };
    });
    results[`${kind}.verify_per_s`] = rate((i) => {
      const s = signed[i & 1023];
      if (!verifier.verify(key.signer, hasher.digest("FirmwareAttestation", deployment, message(s.i)), s.signature)) {
        throw new Error(`bench: ${kind} signature did not verify`);
      }
    });
  }
  results["eip712.digest_per_s"] = rate((i) => hasher.digest("FirmwareAttestation", deployment, message(i)));
  results["lock.decisions_per_s"] = lockDecisions(hasher, deployment, verifier, keys);
  Object.assign(results, await meterVouchers(hasher, verifier, keys.secp256k1));
  return results;
}

/**
 * Vouchers per second in the meter role: the payer signing what its meter justifies (`MeterPayer.pay`),
 * and the payee checking each in memory and keeping it (`MeterPayee.accept`: channel, key, amount,
 * signature, then the append to its durable log, whose syncs are grouped).
 */
async function meterVouchers(
  hasher: TypedDataHasher,
  verifier: DeviceSignatureVerifier,
  key: DeviceKey,
): Promise<Record<string, number>> {
  const deployment = { chainId: 31337n, verifyingContract: new Wallet(labelHash("bench channels")).address };
  const terms = {
    payer: 1n,
    payee: 2n,
    token: "0x0000000000000000000000000000000000000000",
    rate: UNCAPPED,
    allowance: 0n,
    openedAt: 1_700_000_000n,
    salt: 0n,
    payerKeyHash: payerKeyHash(key.signer),
    payerPeriod: 0n,
  };
  let units = 0n;
  const payer = new MeterPayer({ key, hasher, deployment, terms, pricePerUnit: 1000n, meter: { read: () => ++units } });
  const sign = rate(() => payer.pay());
  // Each voucher must raise the last accepted one: signed ahead, in order, as the payee consumes them.
  const vouchers = new Prepared(() => payer.pay()!);
  const dir = mkdtempSync(path.join(os.tmpdir(), "custos-bench-meter-"));
  const payee = MeterPayee.open({ hasher, deployment, verifier, dataDir: dir });
  await payee.addChannel({ terms, deposit: 1n << 90n, pricePerUnit: 1000n, payerKey: key.signer });
  let last: Promise<void> = Promise.resolve();
  const verify = rate(
    () => {
      const r = payee.accept(vouchers.take());
      if (!r.accepted) throw new Error(`bench: a valid voucher was refused (${r.reason})`);
      last = r.persisted;
    },
    1000,
    (count) => vouchers.ready(count),
  );
  await last;
  await payee.close();
  rmSync(dir, { recursive: true, force: true });
  return { "voucher.sign_per_s": sign, "voucher.verify_per_s": verify };
}

/**
 * Unlock decisions per second in the lock role, every check from the cached chain state: a fresh
 * challenge, the request's and the certificate's signatures, then owner, epoch, revocation, window.
 * The guest holds a P-256 key (a phone); the owner signs certificates with secp256k1.
 */
function lockDecisions(
  hasher: TypedDataHasher,
  deployment: Deployment,
  verifier: DeviceSignatureVerifier,
  keys: Record<string, DeviceKey>,
): number {
  const owner = keys.secp256k1;
  const guest = keys.p256;
  const now = 1_700_000_000; // the clock stands still, so every challenge stays fresh
  const role = new LockRole({ lock: 7n, deployment, hasher, verifier, maxStalenessS: 3600, clock: () => now });
  role.update({
    owner: owner.signer,
    lockStatus: 1,
    keyAttested: true,
    epoch: 0,
    isRevoked: () => false,
    managerExpiry: () => 0n,
    holderStatus: () => 0,
    readAt: now,
  });
  const key = {
    lock: 7n,
    holder: guest.signer,
    owner: owner.signer,
    issuer: owner.signer,
    issuedAt: 1n,
    validFrom: 1n,
    validUntil: 2_000_000_000n,
    schedule: 0n,
    epoch: 0,
    keyId: 1n,
  };
  const cert = { key, signature: owner.signDigest(digest("AccessKey", deployment, key)) };
  const accessKey = bytesToHex(hasher.structHash("AccessKey", key));
  // The guests' answers are made outside the timed part, as the lock consumes them (each challenge
  // is answered once): the lock only checks them.
  const requests = new Prepared(() => {
    const request = { lock: 7n, accessKey, challenge: role.challenge(), deadline: 2_000_000_000n };
    return { request, signature: guest.signDigest(digest("UnlockRequest", deployment, request)) };
  });
  return rate(
    () => {
      if (!role.decide(cert, requests.take()).open) throw new Error("bench: a valid unlock was refused");
    },
    300,
    (count) => requests.ready(count),
  );
}

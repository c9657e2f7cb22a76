/**
 * Off-chain throughput on one core: EIP-712 typed-data signing and verification of device messages
 * (fast digest + native signature), for secp256k1 and P-256 keys. Each figure is the best of three
 * timed loops of at least one second, after a warm-up.
 */
import { Wallet, id as labelHash } from "ethers";
import { TypedDataHasher } from "../src/eip712/fast";
import { p256Key, secp256k1Key, type DeviceKey } from "../src/crypto/deviceKey";
import { p256KeyFromScalar } from "../src/crypto/p256";
import { DeviceSignatureVerifier } from "../src/crypto/verify";
import { digest, type Deployment } from "../src/eip712";
import { bytesToHex } from "../src/eip712/fast";
import { LockRole } from "../src/agent/roles/lock";
import { MeterPayee, MeterPayer, UNCAPPED, payerKeyHash } from "../src/agent/roles/meter";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";

/** Operations per second of `op`, best of three loops of at least `ms` milliseconds. */
export function rate(op: (i: number) => void, ms = 1000): number {
  for (let i = 0; i < 2000; i++) op(i); // warm-up
  let best = 0;
  for (let round = 0; round < 3; round++) {
    let n = 0;
    const start = process.hrtime.bigint();
    let elapsed = 0;
    while (elapsed < ms) {
      for (let k = 0; k < 200; k++) op(n++);
      elapsed = Number(process.hrtime.bigint() - start) / 1e6;
    }
    best = Math.max(best, (n * 1000) / elapsed);
  }
  return Math.round(best);
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
  const vouchers = Array.from({ length: 60_000 }, () => payer.pay()!);
  const dir = mkdtempSync(path.join(os.tmpdir(), "custos-bench-meter-"));
  const payee = MeterPayee.open({ hasher, deployment, verifier, dataDir: dir });
  await payee.addChannel({ terms, deposit: 1n << 90n, pricePerUnit: 1000n, payerKey: key.signer });
  let next = 0;
  let last: Promise<void> = Promise.resolve();
  const verify = rate(() => {
    if (next === vouchers.length) throw new Error("bench: ran out of prepared vouchers");
    const r = payee.accept(vouchers[next++]);
    if (!r.accepted) throw new Error(`bench: a valid voucher was refused (${r.reason})`);
    last = r.persisted;
  });
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
  // The guests' answers are made outside the timed loop: the lock only checks them.
  const requests = Array.from({ length: 12_000 }, () => {
    const request = { lock: 7n, accessKey, challenge: role.challenge(), deadline: 2_000_000_000n };
    return { request, signature: guest.signDigest(digest("UnlockRequest", deployment, request)) };
  });
  let next = 0;
  return rate(() => {
    if (next === requests.length) throw new Error("bench: ran out of prepared unlock requests");
    if (!role.decide(cert, requests[next++]).open) throw new Error("bench: a valid unlock was refused");
  }, 300);
}

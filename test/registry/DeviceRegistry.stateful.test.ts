/**
 * Model-based (stateful) test of the DeviceRegistry: fast-check generates random sequences of
 * claims, owner actions (report, release, decommission, rotate with or without the old key, sell),
 * guardian votes in the GuardianQuorum (quorum 1 or 2), manufacturer recalls and key attestations,
 * batch status changes and device-signed messages; every step is predicted by a small TypeScript
 * model, sent to the chain, and followed by a full comparison of the chain with the model plus the
 * checks of DESIGN.md invariants 1 and 3. The model keeps every trust period of every device (its
 * tag, predicted from the block hash, and when trust in it ended), key provenance and ownership
 * epochs: after each step `deviceTrust`, and `keyTrustedUntil` of every key a device ever had for
 * every period it had (and one it never had), must answer what the model says.
 *
 * Every sequence starts from the same snapshot (`loadFixture`): a registry with two committed
 * batches of six and four keys (secp256k1 and P-256; one per manufacturer; two keys in both), the
 * second one quarantined, and three devices already claimed, one of them reported stolen and
 * flagged by the guardians.
 *
 * Runs: `FC_RUNS` (default 200; 10 under `hardhat coverage`); seeds as `assertProperty` says
 * (test/helpers/property.ts). Reproduce a failure with `FC_SEED` (and `FC_PATH`) as printed.
 */
import { expect } from "chai";
import fc from "fast-check";
import { ethers, loadFixture, UNDER_COVERAGE } from "../helpers/hardhat.js";
import { AbiCoder, ZeroAddress, keccak256, id as textHash, type FunctionFragment, type Interface } from "ethers";
import type { HardhatEthersSigner } from "@nomicfoundation/hardhat-ethers/types";
import type { DeviceRegistry, GuardianQuorum } from "../../typechain-types/index.js";
import { digest, type Message, type TypeName } from "../../src/eip712/index.js";
import { randomDeviceKey, type DeviceKey } from "../../src/crypto/deviceKey.js";
import { deviceIdOf, type DeviceBatch } from "../../src/registry/batch.js";
import { CheckedStep, tick } from "../helpers/stateful.js";
import {
  BatchStatus,
  FIRMWARE,
  QUORUM,
  Status,
  TRUSTED_FOREVER,
  claimArgs,
  deployRegistry,
  guardianDecide,
  makeBatch,
  type RegistryContext,
} from "../helpers/registry.js";
import { assertProperty, propertyTimeout } from "../helpers/property.js";

/**
 * Under `hardhat coverage` every step is instrumented and many times slower; the property's
 * strength comes from `npm test`, coverage only needs the paths, so it runs a few sequences.
 */
const RUNS = Number(process.env.FC_RUNS ?? (UNDER_COVERAGE ? 10 : 200));
const MAX_COMMANDS = 12;
/** Far enough for every signature of a run; only compared with block.timestamp. */
const DEADLINE = 2n ** 40n;
/** Skips eth_estimateGas: every transaction is sent and mined, reverting or not. */
const GAS = { gasLimit: 10_000_000 };
const FIRMWARES = [FIRMWARE, textHash("firmware 1.1.0"), textHash("firmware 2.0.0")];
/** The registry keeps the first 64 bits of a firmware hash. */
const bytes8 = (hash: string) => hash.slice(0, 18).toLowerCase();
const GUARDIAN_ROLE = textHash("GUARDIAN_ROLE");

// ------------------------------------------------------------------------------------- world

interface Leaf {
  batch: number;
  key: DeviceKey;
}

interface BatchInfo {
  tree: DeviceBatch;
  id: bigint;
  /** Index into `manufacturers` of the account that committed it. */
  maker: number;
  committedAt: bigint;
}

/** What the fixture sets up; the same object (and keys) for every run, the chain is restored. */
interface World {
  ctx: RegistryContext;
  registry: DeviceRegistry;
  quorum: GuardianQuorum;
  iface: Interface;
  /** The accounts that own devices: owner, other, stranger. */
  owners: HardhatEthersSigner[];
  guardians: HardhatEthersSigner[];
  manufacturers: HardhatEthersSigner[];
  batches: BatchInfo[];
  /** Every Merkle leaf of both batches (two keys appear in both). */
  leaves: Leaf[];
  /** Every distinct key in a batch, then fresh keys in no batch (rotation targets only). */
  keys: DeviceKey[];
  /** Device ids derived from the batch keys. */
  leafDeviceIds: bigint[];
  /** Claimed in the fixture: leaf index and owner index. */
  preclaimed: { leaf: number; owner: number }[];
  /** When the fixture reported device 3 stolen, and quarantined batch 2 (its last block). */
  stolenAt: bigint;
  quarantinedAt: bigint;
}

async function minedAt(tx: Promise<{ wait(): Promise<{ blockNumber: number } | null> }>): Promise<bigint> {
  const receipt = await (await tx).wait();
  return BigInt((await ethers.provider.getBlock(receipt!.blockNumber))!.timestamp);
}

async function registryWithBatches(): Promise<World> {
  const ctx = await deployRegistry();
  const key = (kind: "secp256k1" | "p256") => randomDeviceKey(kind, ctx.verifierAddress);
  // k0..k7 are in batches, k8..k11 are fresh keys that only ever arrive by rotation.
  const batchKeys = [
    key("secp256k1"),
    key("secp256k1"),
    key("p256"),
    key("secp256k1"),
    key("p256"),
    key("secp256k1"),
    key("secp256k1"),
    key("p256"),
  ];
  const fresh = [key("secp256k1"), key("p256"), key("secp256k1"), key("secp256k1")];
  const members = [
    [0, 1, 2, 3, 4, 5],
    [6, 7, 2, 3], // k2 and k3 were provisioned in both batches
  ];
  const manufacturers = [ctx.manufacturer, ctx.manufacturer2];
  const batches: BatchInfo[] = [];
  for (const [i, idx] of members.entries()) {
    const tree = makeBatch(idx.map((k) => batchKeys[k]));
    const committedAt = await minedAt(ctx.registry.connect(manufacturers[i]).commitBatch(tree.root));
    batches.push({ tree, id: tree.idFor(manufacturers[i].address), maker: i, committedAt });
  }
  const leaves = members.flatMap((idx, batch) => idx.map((k) => ({ batch, key: batchKeys[k] })));
  const owners = [ctx.owner, ctx.other, ctx.stranger];
  const preclaimed = [
    { leaf: 0, owner: 0 }, // secp256k1
    { leaf: 2, owner: 1 }, // P-256, also leaf 8 of batch 2
    { leaf: 5, owner: 2 }, // secp256k1, reported stolen and flagged by the guardians below
  ];
  for (const p of preclaimed) {
    const leaf = leaves[p.leaf];
    const b = batches[leaf.batch];
    const a = await claimArgs(ctx, leaf.key, b.tree, b.id, owners[p.owner].address, { deadline: DEADLINE });
    await ctx.registry.connect(owners[p.owner]).claim(a.claim, a.proof, a.signature);
  }
  // Start some runs' paths half-way (release, guardian clear, batch release), so that short
  // sequences reach them: device 3 is reported stolen and flagged, batch 2 is quarantined.
  const stolen = deviceIdOf(leaves[5].key.signer);
  const stolenAt = await minedAt(ctx.registry.connect(owners[2]).reportStolen(stolen));
  await guardianDecide(ctx, "flag", stolen);
  const quarantinedAt = await minedAt(
    ctx.registry.connect(manufacturers[1]).quarantineBatch(batches[1].id, textHash("suspect run")),
  );
  return {
    ctx,
    registry: ctx.registry,
    quorum: ctx.guardianQuorum,
    iface: ctx.registry.interface,
    owners,
    guardians: ctx.guardians,
    manufacturers,
    batches,
    leaves,
    keys: [...batchKeys, ...fresh],
    leafDeviceIds: batchKeys.map((k) => deviceIdOf(k.signer)),
    preclaimed,
    stolenAt,
    quarantinedAt,
  };
}

// ------------------------------------------------------------------------------------- model

/** A trust period: its tag, and when trust in what the device signed in it ended (null: it has not). */
interface PeriodModel {
  tag: bigint;
  end: bigint | null;
  /** The generation of the key that signed in it: another key's signatures count for nothing in it. */
  generation: number;
}

interface DeviceModel {
  id: bigint;
  /** Index into `World.batches` of the batch it was claimed through. */
  batch: number;
  /** Index into `World.owners`. */
  owner: number;
  /** Moves at every transfer. */
  epoch: number;
  key: DeviceKey;
  /** Keys rotated away, oldest first: `retired[g]` is the key of generation g. */
  retired: DeviceKey[];
  /** Whether the current key's provenance reaches the manufacturer. */
  attested: boolean;
  reported: boolean;
  flagged: boolean;
  revoked: boolean;
  nonce: number;
  generation: number;
  /** bytes8 of the last attested firmware hash. */
  firmware: string;
  /** Every period the device had, oldest first; the last one is current. */
  periods: PeriodModel[];
}

/** The guardians' open votes on one device id (claimed or not): the round, and who voted which way. */
interface VotesModel {
  round: number;
  flag: Set<number>;
  clear: Set<number>;
}

interface BatchModel {
  status: BatchStatus;
  /** When it took that status (a recall of a quarantined batch: when the quarantine began). */
  since: bigint;
}

interface Model {
  /** Claimed devices, in claim order. */
  devices: Map<bigint, DeviceModel>;
  batches: BatchModel[];
  /** Every key (signer bytes) ever claimed or rotated to. */
  used: Set<string>;
  votes: Map<bigint, VotesModel>;
  /** M of the guardians' quorum. */
  quorum: number;
  /** The time of the last block (each step's transaction is mined one second later). */
  now: bigint;
}

function newDevice(id: bigint, batch: number, owner: number, key: DeviceKey): DeviceModel {
  return {
    id,
    batch,
    owner,
    epoch: 0,
    key,
    retired: [],
    attested: true,
    reported: false,
    flagged: false,
    revoked: false,
    nonce: 0,
    generation: 0,
    firmware: bytes8(FIRMWARE),
    periods: [{ tag: 0n, end: null, generation: 0 }],
  };
}

function initialModel(w: World): Model {
  const m: Model = {
    devices: new Map(),
    batches: w.batches.map((b) => ({ status: BatchStatus.Active, since: b.committedAt })),
    used: new Set(),
    votes: new Map(),
    quorum: QUORUM,
    // The fixture's last block: every run starts from it (loadFixture restores the chain).
    now: w.quarantinedAt,
  };
  for (const p of w.preclaimed) {
    const leaf = w.leaves[p.leaf];
    const id = deviceIdOf(leaf.key.signer);
    m.devices.set(id, newDevice(id, leaf.batch, p.owner, leaf.key));
    m.used.add(leaf.key.signer);
  }
  // See the end of the fixture.
  const stolen = m.devices.get(deviceIdOf(w.leaves[5].key.signer))!;
  Object.assign(stolen, { reported: true, flagged: true, periods: [{ tag: 0n, end: w.stolenAt, generation: 0 }] });
  m.votes.set(stolen.id, { round: 1, flag: new Set(), clear: new Set() });
  m.batches[1] = { status: BatchStatus.Quarantined, since: w.quarantinedAt };
  return m;
}

/** The status the contract must report: revoked (device or batch) beats quarantined beats active. */
function statusOf(m: Model, d: DeviceModel): Status {
  const b = m.batches[d.batch].status;
  if (d.revoked || b === BatchStatus.Revoked) return Status.Revoked;
  if (d.reported || d.flagged || b === BatchStatus.Quarantined) return Status.Quarantined;
  return Status.Active;
}

/** The device's own holds (not its batch's): while one lasts, the device is out of its owner's trust. */
const held = (d: DeviceModel) => d.reported || d.flagged || d.revoked;
const current = (d: DeviceModel) => d.periods[d.periods.length - 1];

/** Trust in the current period ends now, unless it already had. */
function distrust(m: Model, d: DeviceModel): void {
  current(d).end ??= m.now;
}

/**
 * The current period ends (now, unless it had) and a new one starts, tagged with 32 bits of
 * keccak256(previous block's hash, device, previous tag), never a tag the device had; it starts
 * untrusted when a hold remains (a rotation while reported).
 */
function newPeriod(m: Model, d: DeviceModel, parentHash: string): void {
  const last = current(d);
  last.end ??= m.now;
  const hash = keccak256(
    AbiCoder.defaultAbiCoder().encode(["bytes32", "uint256", "uint32"], [parentHash, d.id, last.tag]),
  );
  let tag = BigInt(hash) & 0xffffffffn;
  while (d.periods.some((p) => p.tag === tag)) tag++;
  d.periods.push({ tag, end: held(d) ? m.now : null, generation: d.generation });
}

/**
 * What `keyTrustedUntil` must answer for a period tag of device `d` and a key of `generation`: 0 for
 * a period it never had, or another key generation's;
 * the end of trust in it, or never-ending (uint40 max) while it is current and trusted; bounded by
 * a batch quarantine while it lasts (current period only) and by a recall (every period).
 */
function trustedUntil(m: Model, d: DeviceModel, tag: bigint, generation: number): bigint {
  const period = d.periods.find((p) => p.tag === tag);
  if (!period || period.generation !== generation) return 0n;
  const isCurrent = period === current(d);
  let until = period.end ?? TRUSTED_FOREVER;
  const b = m.batches[d.batch];
  const bounds = b.status === BatchStatus.Revoked || (isCurrent && b.status === BatchStatus.Quarantined);
  if (bounds && b.since < until) until = b.since;
  return until;
}

function votesOf(m: Model, id: bigint): VotesModel {
  let v = m.votes.get(id);
  if (!v) {
    v = { round: 0, flag: new Set(), clear: new Set() };
    m.votes.set(id, v);
  }
  return v;
}

/** The device whose current key is `signer`, if any (retired and never-used keys resolve to none). */
function deviceOfKey(m: Model, signer: string): DeviceModel | undefined {
  for (const d of m.devices.values()) if (d.key.signer === signer) return d;
  return undefined;
}

/**
 * Resolves a generated device pick against the model: 0..7 a claimed device the command can act on
 * (`prefer`), when there is one; 0..15 any claimed device; otherwise any batch key's device id,
 * claimed or not. Preferring actionable devices lets a short sequence pile several actions on one
 * device (report then release, votes up to the quorum, rotate then sign with the old key...).
 */
function pickDevice(m: Model, w: World, pick: number, prefer?: (d: DeviceModel) => boolean): bigint {
  const claimed = [...m.devices.values()];
  const preferred = prefer ? claimed.filter(prefer) : [];
  if (pick < 8 && preferred.length > 0) return preferred[pick % preferred.length].id;
  if (pick < 16 && claimed.length > 0) return claimed[pick % claimed.length].id;
  return w.leafDeviceIds[pick % w.leafDeviceIds.length];
}

/** `who` 0..3: the device's owner; 4, 5: one of the two other owner accounts. */
function pickCaller(m: Model, w: World, id: bigint, who: number): HardhatEthersSigner {
  const d = m.devices.get(id);
  if (!d) return w.owners[who % w.owners.length];
  return w.owners[who <= 3 ? d.owner : (d.owner + who - 3) % w.owners.length];
}

/**
 * Before a step's transaction: the next block is mined one second later, and the hash of the block
 * before it is what a period tag that the transaction starts derives from.
 */
async function nextBlock(m: Model): Promise<string> {
  await tick(m);
  return (await ethers.provider.getBlock("latest"))!.hash!;
}

// --------------------------------------------------------------------------------- signatures

const signatureCache = new Map<string, string>();

/** A device key's signature of a catalogue message (memoised: the same message is signed often). */
function sign(w: World, key: DeviceKey, type: TypeName, message: Message): string {
  const d = digest(type, w.ctx.deployment, message);
  const cacheKey = `${key.signer}:${d}`;
  let signature = signatureCache.get(cacheKey);
  if (signature === undefined) {
    signature = key.signDigest(d);
    signatureCache.set(cacheKey, signature);
  }
  return signature;
}

function attestation(w: World, key: DeviceKey, id: bigint, firmwareHash: string, nonce: number): string {
  return sign(w, key, "FirmwareAttestation", { device: id, firmwareHash, nonce, deadline: DEADLINE });
}

// ------------------------------------------------------------------------------ expectations

/**
 * `null`: the transaction must succeed; otherwise the custom error (and its arguments) it must
 * revert with, of the registry or (`quorum`) of the guardians' quorum contract.
 */
type Outcome = null | { error: string; args?: unknown[]; quorum?: boolean };

const fail = (error: string, ...args: unknown[]): Outcome => ({ error, args });
const quorumFail = (error: string, ...args: unknown[]): Outcome => ({ error, args, quorum: true });

async function expectOutcome(w: World, label: string, send: () => Promise<unknown>, outcome: Outcome): Promise<void> {
  if (outcome === null) {
    try {
      const tx = (await send()) as { wait(): Promise<unknown> };
      await tx.wait();
    } catch (e) {
      throw new Error(`${label}: the model expects success, the chain refused: ${(e as Error).message}`);
    }
    return;
  }
  const assertion = expect(send(), `${label}: the model expects ${outcome.error}`).to.be.revertedWithCustomError(
    outcome.quorum ? w.quorum : w.registry,
    outcome.error,
  );
  if (outcome.args) await assertion.withArgs(...outcome.args);
  else await assertion;
}

// ------------------------------------------------------------------------------- invariants

const encoded = new Map<string, string>();
const fragments = new Map<string, FunctionFragment>();

function fragment(w: World, fn: string): FunctionFragment {
  let f = fragments.get(fn);
  if (f === undefined) {
    f = w.iface.getFunction(fn)!;
    fragments.set(fn, f);
  }
  return f;
}

/** Call data of a registry view (memoised: the same views are read after every step). */
function encode(w: World, fn: string, args: unknown[]): string {
  const cacheKey = `${fn}(${args.map(String).join(",")})`;
  let data = encoded.get(cacheKey);
  if (data === undefined) {
    data = w.iface.encodeFunctionData(fragment(w, fn), args);
    encoded.set(cacheKey, data);
  }
  return data;
}

/** The outputs of `fn` decoded as plain arrays (positional: cheaper than ethers' named `Result`). */
function decode(w: World, fn: string, data: string): any[] {
  return AbiCoder.defaultAbiCoder().decode(fragment(w, fn).outputs, data).toArray(true);
}

const canonical = (v: unknown) => JSON.stringify(v, (_k, x) => (typeof x === "bigint" ? `${x}n` : x));

/** What `resolveKey` returns (id, status), and what it returns for a key that resolves to nothing. */
const resolved = (r: any[]) => ({ id: r[0] as bigint, status: Number(r[1]) });
const nothing = { id: 0n, status: Status.Unknown };
/** What `keyTrustedUntil` returns. */
const keyTrust = (r: any[]) => ({ id: r[0] as bigint, generation: Number(r[1]), until: r[2] as bigint });
/** What `deviceTrust` returns. */
const trust = (r: any[]) => {
  const [status, keyGeneration, keyAttested, period] = r[0];
  return { status: Number(status), keyGeneration: Number(keyGeneration), keyAttested, period };
};
/** A tag no device of a run has: its trust is 0 (nothing counts). */
const NEVER_A_PERIOD = 0xdeadbeefn;

/**
 * Compares the whole contract view with the model in one multicall (all views, then a correctly
 * signed attestation from every active device), and the guardians' open votes; then tries a
 * correctly signed message from every quarantined or revoked device and from every rotated-away
 * key, which must all be refused.
 */
async function checkInvariants(m: Model, w: World, after: string): Promise<void> {
  const { registry, iface } = w;
  const at = `after ${after}`;
  // Each view is read into `actual[label]` and compared with `expected[label]` in one deep equal.
  const calls: { fn: string; data: string; label: string; read: (r: any[]) => unknown }[] = [];
  const expected: Record<string, unknown> = {};
  const view = (label: string, fn: string, args: unknown[], want: unknown, read: (r: any[]) => unknown) => {
    calls.push({ fn, data: encode(w, fn, args), label, read });
    expected[label] = want;
  };

  w.batches.forEach((b, i) =>
    view(`batch ${i} status`, "batch", [b.id], m.batches[i], (r) => ({
      status: Number(r[0][3]),
      since: r[0][4] as bigint,
    })),
  );

  const owned = w.owners.map(() => 0);
  const active: DeviceModel[] = [];
  for (const d of m.devices.values()) {
    const status = statusOf(m, d);
    const owner = w.owners[d.owner].address;
    const dev = `device ${d.id}`;
    const period = current(d);
    owned[d.owner]++;
    if (status === Status.Active) active.push(d);
    view(
      `${dev} deviceInfo`,
      "deviceInfo",
      [d.id],
      {
        id: d.id,
        owner,
        status,
        batchId: w.batches[d.batch].id,
        nonce: d.nonce,
        keyGeneration: d.generation,
        keyAttested: d.attested,
        reportedStolen: d.reported,
        guardianFlagged: d.flagged,
        ownerEpoch: d.epoch,
        period: period.tag,
        untrustedSince: period.end ?? 0n,
        firmware: d.firmware,
        firmwareRevoked: false,
      },
      (r) => {
        const [id, owner, status, batchId, nonce, keyGeneration, keyAttested, reportedStolen, guardianFlagged] = r[0];
        const [ownerEpoch, period, untrustedSince, firmware, firmwareRevoked] = r[0].slice(9);
        return {
          id,
          owner,
          status: Number(status),
          batchId,
          nonce: Number(nonce),
          keyGeneration: Number(keyGeneration),
          keyAttested,
          reportedStolen,
          guardianFlagged,
          ownerEpoch: Number(ownerEpoch),
          period,
          untrustedSince,
          firmware: String(firmware).toLowerCase(),
          firmwareRevoked,
        };
      },
    );
    // Invariant 1: the status other contracts read says quarantined / revoked as the model does.
    view(`${dev} deviceStatus`, "deviceStatus", [d.id], status, (r) => Number(r[0]));
    view(`${dev} deviceNonce`, "deviceNonce", [d.id], d.nonce, (r) => Number(r[0]));
    view(`${dev} ownerOf`, "ownerOf", [d.id], owner, (r) => r[0]);
    // The ownership epoch moves at every transfer, and only then.
    view(`${dev} ownership`, "ownership", [d.id], { owner, epoch: d.epoch }, (r) => ({
      owner: r[0],
      epoch: Number(r[1]),
    }));
    // What a contract pins: status, key generation and provenance, the current period.
    view(
      `${dev} deviceTrust`,
      "deviceTrust",
      [d.id],
      { status, keyGeneration: d.generation, keyAttested: d.attested, period: period.tag },
      trust,
    );
    // Invariant 3: the current key resolves to this device (so to no other), with its status.
    view(`${dev} resolveKey(current ${d.key.signer})`, "resolveKey", [d.key.signer], { id: d.id, status }, resolved);
    // Invariant 3: a rotated-away key resolves to nothing, at once and forever.
    for (const old of d.retired) {
      view(`${dev} resolveKey(retired ${old.signer})`, "resolveKey", [old.signer], nothing, resolved);
    }
    // Trust periods: every key the device ever had, for every period it had (and one it never had),
    // resolves to the device and the key's generation, with the model's end of trust in that period.
    const tags = [...d.periods.map((p) => p.tag), NEVER_A_PERIOD];
    [...d.retired, d.key].forEach((key, generation) => {
      for (const tag of tags) {
        view(
          `${dev} keyTrustedUntil(generation ${generation}, period ${tag})`,
          "keyTrustedUntil",
          [key.signer, tag],
          { id: d.id, generation, until: trustedUntil(m, d, tag, generation) },
          keyTrust,
        );
      }
    });
  }
  for (const id of w.leafDeviceIds) {
    if (m.devices.has(id)) continue;
    view(`unclaimed ${id} deviceStatus`, "deviceStatus", [id], Status.Unknown, (r) => Number(r[0]));
    view(
      `unclaimed ${id} deviceTrust`,
      "deviceTrust",
      [id],
      { status: Status.Unknown, keyGeneration: 0, keyAttested: false, period: 0n },
      trust,
    );
    view(`unclaimed ${id} ownership`, "ownership", [id], { owner: ZeroAddress, epoch: 0 }, (r) => ({
      owner: r[0],
      epoch: Number(r[1]),
    }));
  }
  for (const key of w.keys) {
    // Invariant 3: a key ever claimed or rotated to (and so also rotated away) can never be registered again.
    const used = m.used.has(key.signer);
    view(`isKeyAvailable(${key.signer})`, "isKeyAvailable", [key.signer], !used, (r) => r[0]);
    if (!used) {
      view(`resolveKey(unused ${key.signer})`, "resolveKey", [key.signer], nothing, resolved);
      view(
        `keyTrustedUntil(unused ${key.signer})`,
        "keyTrustedUntil",
        [key.signer, 0n],
        { id: 0n, generation: 0, until: 0n },
        keyTrust,
      );
    }
  }
  w.owners.forEach((o, i) => view(`balanceOf(owner ${i})`, "balanceOf", [o.address], BigInt(owned[i]), (r) => r[0]));
  // Invariant 1, positive side: a correctly signed message from every active device is accepted.
  // Last in the multicall, so that the nonces they consume do not disturb the views above.
  const data = calls.map((c) => c.data);
  for (const d of active) {
    const signature = attestation(w, d.key, d.id, FIRMWARES[1], d.nonce);
    data.push(iface.encodeFunctionData("attestFirmware", [d.key.signer, FIRMWARES[1], DEADLINE, signature]));
  }

  let results: string[];
  try {
    results = await registry.multicall.staticCall(data);
  } catch (e) {
    // Views do not revert: find the active device whose correct signature was refused.
    for (const d of active) {
      const signature = attestation(w, d.key, d.id, FIRMWARES[1], d.nonce);
      try {
        await registry.attestFirmware.staticCall(d.key.signer, FIRMWARES[1], DEADLINE, signature);
      } catch (refused) {
        throw new Error(
          `${at}: active device ${d.id} (nonce ${d.nonce}): its correct attestFirmware was refused: ${(refused as Error).message}`,
        );
      }
    }
    throw new Error(`${at}: the view multicall reverted: ${(e as Error).message}`);
  }
  const actual: Record<string, unknown> = {};
  calls.forEach((c, i) => (actual[c.label] = c.read(decode(w, c.fn, results[i]))));

  // The guardians' open votes (the quorum contract has no multicall: who voted is read only where
  // a side has votes, one read per side is enough otherwise).
  const reads: Promise<[string, unknown]>[] = [];
  for (const [id, v] of m.votes) {
    for (const [isFlag, side] of [
      [true, v.flag],
      [false, v.clear],
    ] as const) {
      w.guardians.slice(0, side.size > 0 ? w.guardians.length : 1).forEach((g, gi) => {
        const label = `${id} votes(${isFlag ? "flag" : "clear"}, guardian ${gi})`;
        expected[label] = { round: v.round, count: side.size, voted: side.has(gi) };
        reads.push(
          w.quorum
            .votes(id, isFlag, g.address)
            .then((r) => [label, { round: Number(r[0]), count: Number(r[1]), voted: r[2] }]),
        );
      });
    }
  }
  // In the order of `expected`: the comparison below is of canonical JSON.
  for (const [label, value] of await Promise.all(reads)) actual[label] = value;
  actual["quorum"] = Number(await w.quorum.quorum());
  expected["quorum"] = m.quorum;

  // chai's deep equal is slow on this many values: compare canonical JSON, let chai print a diff.
  if (canonical(actual) !== canonical(expected)) {
    expect(actual, `${at}: the registry's state differs from the model`).to.deep.equal(expected);
    expect.fail(`${at}: the registry's state differs from the model`);
  }

  // Invariant 1: a quarantined or revoked device's correct signature (right key, nonce, deadline)
  // is refused; so is a signature by a key rotated away.
  for (const d of m.devices.values()) {
    const status = statusOf(m, d);
    if (status !== Status.Active) {
      const signature = attestation(w, d.key, d.id, FIRMWARES[2], d.nonce);
      await expectRefused(
        w,
        iface.encodeFunctionData("attestFirmware", [d.key.signer, FIRMWARES[2], DEADLINE, signature]),
        iface.encodeErrorResult("DeviceRegistryWrongStatus", [d.id, status]),
        `${at}: device ${d.id} is ${Status[status]}: its correctly signed attestFirmware`,
      );
    }
    for (const old of d.retired) {
      const signature = attestation(w, old, d.id, FIRMWARES[2], d.nonce);
      await expectRefused(
        w,
        iface.encodeFunctionData("attestFirmware", [old.signer, FIRMWARES[2], DEADLINE, signature]),
        iface.encodeErrorResult("DeviceRegistryUnknownKey", [keccak256(old.signer)]),
        `${at}: device ${d.id}'s retired key ${old.signer}: its correctly signed attestFirmware`,
      );
    }
  }
}

/** Simulates a registry call (eth_call) that must revert with exactly `revertData`. */
async function expectRefused(w: World, data: string, revertData: string, label: string): Promise<void> {
  let got: string | undefined;
  try {
    await ethers.provider.call({ to: w.ctx.deployment.verifyingContract, data });
  } catch (e) {
    got = (e as { data?: string }).data ?? `(no revert data: ${(e as Error).message})`;
  }
  if (got?.toLowerCase() !== revertData.toLowerCase()) {
    const show = (x: string) => {
      try {
        const e = w.iface.parseError(x);
        return e ? `${e.name}(${e.args.join(", ")})` : x;
      } catch {
        return x;
      }
    };
    expect.fail(`${label} must revert with ${show(revertData)}, got ${got === undefined ? "success" : show(got)}`);
  }
}

// --------------------------------------------------------------------------------- commands

type Cmd = fc.AsyncCommand<Model, World>;

/**
 * Every command is always run (`check` is true, so that refused calls are tested too): `run`
 * first takes the model's verdict (`outcome`: null for success, or the custom error and its
 * arguments), sends the transaction, asserts exactly that verdict, applies the effect to the
 * model, and re-checks every invariant.
 */
abstract class Step extends CheckedStep<Model, World> {
  protected checkInvariants(m: Model, w: World, label: string): Promise<void> {
    return checkInvariants(m, w, label);
  }
}

class ClaimStep extends Step {
  constructor(
    readonly leaf: number,
    readonly owner: number,
    readonly submitter: number,
    readonly sig: "ok" | "otherKey" | "otherOwner",
  ) {
    super();
  }

  async apply(m: Model, w: World) {
    // 0..9: that leaf; 10+: a leaf that can still be claimed, when there is one.
    const claimable = w.leaves.filter(
      (l) => m.batches[l.batch].status === BatchStatus.Active && !m.used.has(l.key.signer),
    );
    const leaf =
      this.leaf < w.leaves.length || claimable.length === 0
        ? w.leaves[this.leaf % w.leaves.length]
        : claimable[this.leaf % claimable.length];
    const b = w.batches[leaf.batch];
    const owner = w.owners[this.owner];
    const id = deviceIdOf(leaf.key.signer);
    const a = await claimArgs(w.ctx, leaf.key, b.tree, b.id, owner.address, {
      deadline: DEADLINE,
      signOwner: this.sig === "otherOwner" ? w.owners[(this.owner + 1) % w.owners.length].address : undefined,
    });
    if (this.sig === "otherKey") {
      const other = w.keys.find((k) => k.signer !== leaf.key.signer)!;
      a.signature = sign(w, other, "DeviceClaim", { owner: owner.address, batch: b.id, deadline: DEADLINE });
    }

    let outcome: Outcome = null;
    const batchStatus = m.batches[leaf.batch].status;
    if (batchStatus !== BatchStatus.Active) outcome = fail("DeviceRegistryBatchNotActive", b.id, batchStatus);
    // Invariant 3: a leaf is claimed once; a key claimed or rotated to by any device is taken.
    else if (m.used.has(leaf.key.signer)) outcome = fail("DeviceRegistryKeyTaken", keccak256(leaf.key.signer));
    else if (this.sig !== "ok") outcome = fail("DeviceRegistryInvalidSignature");

    await nextBlock(m);
    await expectOutcome(
      w,
      this.toString(),
      () => w.registry.connect(w.owners[this.submitter]).claim(a.claim, a.proof, a.signature, GAS),
      outcome,
    );
    if (outcome === null) {
      m.devices.set(id, newDevice(id, leaf.batch, this.owner, leaf.key));
      m.used.add(leaf.key.signer);
    }
  }

  toString() {
    return `claim(leaf ${this.leaf}, for owner ${this.owner}, by ${this.submitter}, sig ${this.sig})`;
  }
}

/** reportStolen, release and decommission: the owner's own actions on a device. */
class OwnerStep extends Step {
  constructor(
    readonly action: "reportStolen" | "release" | "decommission",
    readonly pick: number,
    readonly who: number,
  ) {
    super();
  }

  async apply(m: Model, w: World) {
    const prefer = {
      reportStolen: (d: DeviceModel) => !d.revoked && !d.reported,
      release: (d: DeviceModel) => !d.revoked && d.reported,
      decommission: (d: DeviceModel) => !d.revoked,
    }[this.action];
    const id = pickDevice(m, w, this.pick, prefer);
    const d = m.devices.get(id);
    const caller = pickCaller(m, w, id, this.who);
    let outcome: Outcome = null;
    if (!d || w.owners[d.owner] !== caller) outcome = fail("DeviceRegistryNotOwner", id, caller.address);
    // Owner actions look at the device's own revoked flag only, not at its batch (documented).
    else if (d.revoked) outcome = fail("DeviceRegistryWrongStatus", id, Status.Revoked);
    else if (this.action === "reportStolen" && d.reported) outcome = fail("DeviceRegistryAlreadyReported", id);
    else if (this.action === "release" && !d.reported) outcome = fail("DeviceRegistryNotReported", id);

    const parent = await nextBlock(m);
    const r = w.registry.connect(caller);
    await expectOutcome(w, this.toString(), () => r[this.action](id, GAS), outcome);
    if (outcome !== null || !d) return;
    if (this.action === "reportStolen") {
      d.reported = true;
      distrust(m, d);
    }
    if (this.action === "release") {
      d.reported = false;
      // The last hold lifted: a fresh period, and every earlier signature of the device is void.
      if (!held(d)) {
        d.nonce++;
        newPeriod(m, d, parent);
      }
    }
    if (this.action === "decommission") {
      d.revoked = true;
      distrust(m, d);
    }
  }

  toString() {
    return `${this.action}(device #${this.pick}, who ${this.who})`;
  }
}

/**
 * Guardian votes to flag or to clear, cast in the GuardianQuorum: `votes` successive votes on one
 * device (each one predicted, sent and followed by the invariant checks). The first voter is
 * guardian `voter` (0..2), a non-guardian (3), or the first guardian that has not voted on this
 * side in this round (4+); the next ones are always guardians that have not voted yet.
 */
class GuardianStep extends Step {
  constructor(
    readonly action: "flag" | "clearFlag",
    readonly pick: number,
    readonly voter: number,
    readonly votes: number,
  ) {
    super();
  }

  override async run(m: Model, w: World): Promise<void> {
    const prefer =
      this.action === "flag" ? (d: DeviceModel) => !d.revoked && !d.flagged : (d: DeviceModel) => d.flagged;
    const id = pickDevice(m, w, this.pick, prefer);
    for (let i = 0; i < this.votes; i++) {
      const side = this.action === "flag" ? m.votes.get(id)?.flag : m.votes.get(id)?.clear;
      const fresh = (start: number) =>
        [0, 1, 2].map((k) => (start + k) % w.guardians.length).find((g) => !side?.has(g)) ?? start;
      const guardian = i === 0 && this.voter < 4 ? this.voter : fresh(i === 0 ? this.voter - 4 : 0);
      await this.vote(m, w, id, guardian);
      await checkInvariants(m, w, `${this.toString()}, vote ${i + 1} by guardian ${guardian}`);
    }
  }

  /** Unused: `run` casts the votes one by one, each followed by the invariant checks. */
  async apply(): Promise<void> {}

  private async vote(m: Model, w: World, id: bigint, guardian: number) {
    const d = m.devices.get(id);
    const isFlag = this.action === "flag";
    const isGuardian = guardian < w.guardians.length;
    const voter = isGuardian ? w.guardians[guardian] : w.ctx.stranger;
    const v = m.votes.get(id) ?? { round: 0, flag: new Set<number>(), clear: new Set<number>() };
    const side = isFlag ? v.flag : v.clear;
    const decides = side.size + 1 >= m.quorum;
    let outcome: Outcome = null;
    if (!isGuardian) outcome = quorumFail("AccessControlUnauthorizedAccount", voter.address, GUARDIAN_ROLE);
    else if (side.has(guardian)) outcome = quorumFail("GuardianQuorumAlreadyVoted", id, voter.address);
    // Below the quorum a vote is only recorded; the one that reaches it asks the registry.
    else if (!decides) outcome = null;
    else if (!d) outcome = fail("DeviceRegistryUnknownDevice", id);
    else if (d.revoked) outcome = fail("DeviceRegistryWrongStatus", id, Status.Revoked);
    else if (isFlag && d.flagged) outcome = fail("DeviceRegistryAlreadyFlagged", id);
    else if (!isFlag && !d.flagged) outcome = fail("DeviceRegistryNotFlagged", id);

    const parent = await nextBlock(m);
    const q = w.quorum.connect(voter);
    await expectOutcome(
      w,
      `${this.toString()}: vote by guardian ${guardian}`,
      () => (isFlag ? q.flag(id, textHash("misbehaving"), GAS) : q.clearFlag(id, GAS)),
      outcome,
    );
    if (outcome !== null) return;
    if (!decides) {
      votesOf(m, id);
      (isFlag ? votesOf(m, id).flag : votesOf(m, id).clear).add(guardian);
      return;
    }
    // The deciding vote closes the round for both sides: every open vote is void.
    const decided = votesOf(m, id);
    Object.assign(decided, { round: decided.round + 1, flag: new Set(), clear: new Set() });
    if (isFlag) {
      d!.flagged = true;
      distrust(m, d!);
    } else {
      d!.flagged = false;
      if (!held(d!)) {
        d!.nonce++;
        newPeriod(m, d!, parent);
      }
    }
  }

  toString() {
    const voter = this.voter < 4 ? `voter ${this.voter}` : `fresh voters from ${this.voter - 4}`;
    return `${this.action}(device #${this.pick}, ${voter}, ${this.votes} vote${this.votes > 1 ? "s" : ""})`;
  }
}

/** The admin (or a guardian, refused) sets the guardians' quorum to 1 or 2. */
class QuorumStep extends Step {
  constructor(
    readonly quorum: number,
    readonly byAdmin: boolean,
  ) {
    super();
  }

  async apply(m: Model, w: World) {
    const caller = this.byAdmin ? w.ctx.admin : w.guardians[0];
    const outcome = this.byAdmin
      ? null
      : quorumFail("AccessControlUnauthorizedAccount", caller.address, ethers.ZeroHash);
    await nextBlock(m);
    await expectOutcome(w, this.toString(), () => w.quorum.connect(caller).setQuorum(this.quorum, GAS), outcome);
    if (outcome === null) m.quorum = this.quorum;
  }

  toString() {
    return `setQuorum(${this.quorum}, by ${this.byAdmin ? "the admin" : "a guardian"})`;
  }
}

/** The manufacturer (or someone else) recalls one device. */
class RecallStep extends Step {
  constructor(
    readonly pick: number,
    readonly caller: number,
  ) {
    super();
  }

  async apply(m: Model, w: World) {
    const id = pickDevice(m, w, this.pick, (d) => !d.revoked);
    const d = m.devices.get(id);
    const { account, authorized } = batchCaller(w, d ? d.batch : 0, this.caller);
    let outcome: Outcome = null;
    if (!d) outcome = fail("DeviceRegistryUnknownDevice", id);
    else if (!authorized) outcome = fail("DeviceRegistryUnauthorized", account.address);
    else if (d.revoked) outcome = fail("DeviceRegistryWrongStatus", id, Status.Revoked);

    await nextBlock(m);
    await expectOutcome(
      w,
      this.toString(),
      () => w.registry.connect(account).recall(id, textHash("recall"), GAS),
      outcome,
    );
    if (outcome === null && d) {
      d.revoked = true;
      distrust(m, d);
    }
  }

  toString() {
    return `recall(device #${this.pick}, caller ${this.caller})`;
  }
}

/**
 * The manufacturer (or someone else) re-attests a device's owner-installed key: the device is one
 * whose key is owner-installed when there is one (picks 0..7).
 */
class AttestKeyStep extends Step {
  constructor(
    readonly pick: number,
    readonly caller: number,
  ) {
    super();
  }

  async apply(m: Model, w: World) {
    const id = pickDevice(m, w, this.pick, (d) => !d.attested);
    const d = m.devices.get(id);
    const { account, authorized } = batchCaller(w, d ? d.batch : 0, this.caller);
    let outcome: Outcome = null;
    if (!d) outcome = fail("DeviceRegistryUnknownDevice", id);
    else if (!authorized) outcome = fail("DeviceRegistryUnauthorized", account.address);
    else if (d.attested) outcome = fail("DeviceRegistryKeyAlreadyAttested", id);

    await nextBlock(m);
    await expectOutcome(w, this.toString(), () => w.registry.connect(account).attestKey(id, GAS), outcome);
    // Provenance only: no new period, the nonce stays.
    if (outcome === null && d) d.attested = true;
  }

  toString() {
    return `attestKey(device #${this.pick}, caller ${this.caller})`;
  }
}

/** 0: the batch's manufacturer, 1: the other manufacturer, 2: the admin, 3: a device owner. */
function batchCaller(w: World, batch: number, caller: number) {
  const maker = w.batches[batch].maker;
  switch (caller) {
    case 0:
      return { account: w.manufacturers[maker], authorized: true };
    case 1:
      return { account: w.manufacturers[1 - maker], authorized: false };
    case 2:
      return { account: w.ctx.admin, authorized: true };
    default:
      return { account: w.ctx.owner, authorized: false };
  }
}

class BatchStep extends Step {
  constructor(
    readonly action: "quarantineBatch" | "releaseBatch" | "revokeBatch",
    readonly batch: number,
    readonly caller: number,
  ) {
    super();
  }

  async apply(m: Model, w: World) {
    const target = {
      quarantineBatch: BatchStatus.Quarantined,
      releaseBatch: BatchStatus.Active,
      revokeBatch: BatchStatus.Revoked,
    }[this.action];
    // 0, 1: that batch; 2, 3: a batch this action can change, when there is one.
    const changeable = [0, 1].filter(
      (i) => m.batches[i].status !== BatchStatus.Revoked && m.batches[i].status !== target,
    );
    const batch =
      this.batch < 2 || changeable.length === 0 ? this.batch % 2 : changeable[this.batch % changeable.length];
    const b = w.batches[batch];
    const { account, authorized } = batchCaller(w, batch, this.caller);
    const now = m.batches[batch].status;
    let outcome: Outcome = null;
    if (!authorized) outcome = fail("DeviceRegistryUnauthorized", account.address);
    else if (now === BatchStatus.Revoked) outcome = fail("DeviceRegistryBatchRevoked", b.id);
    else if (now === target) outcome = fail("DeviceRegistryBatchNotActive", b.id, now);

    await nextBlock(m);
    const r = w.registry.connect(account);
    await expectOutcome(
      w,
      this.toString(),
      () =>
        this.action === "releaseBatch"
          ? r.releaseBatch(b.id, GAS)
          : r[this.action](b.id, textHash("batch incident"), GAS),
      outcome,
    );
    if (outcome !== null) return;
    // A recall of a quarantined batch ends its devices' trust when the quarantine began.
    const keep = now === BatchStatus.Quarantined && target === BatchStatus.Revoked;
    m.batches[batch] = { status: target, since: keep ? m.batches[batch].since : m.now };
  }

  toString() {
    return `${this.action}(batch ${this.batch}, caller ${this.caller})`;
  }
}

/**
 * Key rotation to any known key (fresh, an unclaimed batch key, or one already used by any
 * device or rotated away), with or without the old key's signature, or with a wrong old key,
 * a wrong old signature or a stale nonce.
 */
class RotateStep extends Step {
  constructor(
    readonly pick: number,
    readonly who: number,
    readonly target: number,
    readonly old: "none" | "current" | "foreign" | "badSig",
    readonly staleNonce: boolean,
  ) {
    super();
  }

  async apply(m: Model, w: World) {
    const id = pickDevice(m, w, this.pick, (d) => !d.revoked);
    const d = m.devices.get(id);
    const caller = pickCaller(m, w, id, this.who);
    // Targets 0..11 are the world's keys; 12+ the first key nobody used yet, when there is one.
    const unused = w.keys.filter((k) => !m.used.has(k.signer));
    const newKey =
      this.target < w.keys.length || unused.length === 0
        ? w.keys[this.target % w.keys.length]
        : unused[this.target % unused.length];
    const currentKey = d ? d.key : w.keys[w.leafDeviceIds.indexOf(id)];
    const nonce = d ? d.nonce : 0;
    const signedNonce = this.staleNonce ? (nonce > 0 ? nonce - 1 : nonce + 1) : nonce;
    const message = { device: id, newKey: newKey.signer, nonce: signedNonce, deadline: DEADLINE };
    // 'foreign': a key that is not the device's current one (a retired one when there is one).
    const foreign =
      d?.retired[d.retired.length - 1] ??
      w.keys.find((k) => k.signer !== currentKey.signer && k.signer !== newKey.signer)!;
    let oldKey = "0x";
    let oldKeySignature = "0x";
    if (this.old === "current" || this.old === "badSig") {
      oldKey = currentKey.signer;
      oldKeySignature = sign(w, this.old === "current" ? currentKey : foreign, "KeyRotation", message);
    } else if (this.old === "foreign") {
      oldKey = foreign.signer;
      oldKeySignature = sign(w, foreign, "KeyRotation", message);
    }
    const rotation = {
      newKey: newKey.signer,
      deadline: DEADLINE,
      newKeySignature: sign(w, newKey, "KeyRotation", message),
      oldKey,
      oldKeySignature,
    };

    let outcome: Outcome = null;
    if (!d || w.owners[d.owner] !== caller) outcome = fail("DeviceRegistryNotOwner", id, caller.address);
    else if (d.revoked) outcome = fail("DeviceRegistryWrongStatus", id, Status.Revoked);
    // Invariant 3: a key already used by any device, or rotated away, is taken for good.
    else if (m.used.has(newKey.signer)) outcome = fail("DeviceRegistryKeyTaken", keccak256(newKey.signer));
    else if (this.staleNonce) outcome = fail("DeviceRegistryInvalidSignature");
    else if (this.old === "foreign") outcome = fail("DeviceRegistryUnknownKey", keccak256(foreign.signer));
    else if (this.old === "badSig") outcome = fail("DeviceRegistryInvalidSignature");

    const parent = await nextBlock(m);
    await expectOutcome(w, this.toString(), () => w.registry.connect(caller).rotateKey(id, rotation, GAS), outcome);
    if (outcome !== null || !d) return;
    d.retired.push(d.key);
    d.key = newKey;
    d.nonce++;
    d.generation++;
    // Without the old key's signature the owner installed the key alone; with it, the new key
    // inherits the old one's provenance (an owner-installed key cannot launder another).
    if (this.old === "none") d.attested = false;
    // The old key's period ends at the rotation (or when trust in it had ended).
    newPeriod(m, d, parent);
    m.used.add(newKey.signer);
  }

  toString() {
    return `rotateKey(device #${this.pick}, who ${this.who}, to key ${this.target}, old ${this.old}${this.staleNonce ? ", stale nonce" : ""})`;
  }
}

/** ERC-721 transferFrom(owner, to, id) sent by the owner or by another owner account. */
class TransferStep extends Step {
  constructor(
    readonly pick: number,
    readonly who: number,
    readonly to: number,
  ) {
    super();
  }

  async apply(m: Model, w: World) {
    const id = pickDevice(m, w, this.pick, (d) => statusOf(m, d) === Status.Active);
    const d = m.devices.get(id);
    const caller = pickCaller(m, w, id, this.who);
    const from = d ? w.owners[d.owner].address : w.owners[0].address;
    const to = w.owners[this.to];
    let outcome: Outcome = null;
    if (!d) outcome = fail("ERC721NonexistentToken", id);
    // Only an active device changes hands, whoever asks.
    else if (statusOf(m, d) !== Status.Active) outcome = fail("DeviceRegistryWrongStatus", id, statusOf(m, d));
    else if (w.owners[d.owner] !== caller) outcome = fail("ERC721InsufficientApproval", caller.address, id);

    await nextBlock(m);
    await expectOutcome(
      w,
      this.toString(),
      () => w.registry.connect(caller).transferFrom(from, to.address, id, GAS),
      outcome,
    );
    if (outcome === null && d) {
      d.owner = this.to;
      // A new ownership period, even back to the same owner.
      d.epoch = (d.epoch + 1) % 65_536;
    }
  }

  toString() {
    return `transferFrom(device #${this.pick}, who ${this.who}, to owner ${this.to})`;
  }
}

/**
 * A device-signed message relayed by anyone: attestFirmware or cancelNonce, signed by the
 * device's current key, by a key it rotated away, or by a key no device uses; with the right or
 * a stale nonce.
 */
class DeviceMessageStep extends Step {
  constructor(
    readonly action: "attestFirmware" | "cancelNonce",
    readonly pick: number,
    readonly keyMode: "current" | "retired" | "unused",
    readonly staleNonce: boolean,
    readonly firmware: number,
    readonly relayer: number,
  ) {
    super();
  }

  async apply(m: Model, w: World) {
    const id = pickDevice(m, w, this.pick, (d) =>
      this.keyMode === "retired" ? d.retired.length > 0 : statusOf(m, d) === Status.Active,
    );
    const d = m.devices.get(id);
    const ownKey = d ? d.key : w.keys[w.leafDeviceIds.indexOf(id)];
    let key = ownKey;
    if (this.keyMode === "retired" && d && d.retired.length > 0) key = d.retired[d.retired.length - 1];
    if (this.keyMode === "unused") key = w.keys.find((k) => !m.used.has(k.signer)) ?? ownKey;
    const nonce = d ? d.nonce : 0;
    const signedNonce = this.staleNonce ? (nonce > 0 ? nonce - 1 : nonce + 1) : nonce;
    const firmwareHash = FIRMWARES[this.firmware];
    const signature =
      this.action === "attestFirmware"
        ? attestation(w, key, id, firmwareHash, signedNonce)
        : sign(w, key, "NonceCancellation", { device: id, nonce: signedNonce, deadline: DEADLINE });

    const signer = deviceOfKey(m, key.signer);
    let outcome: Outcome = null;
    if (!signer) outcome = fail("DeviceRegistryUnknownKey", keccak256(key.signer));
    // Invariant 1: only an active device's signature is accepted.
    else if (statusOf(m, signer) !== Status.Active)
      outcome = fail("DeviceRegistryWrongStatus", signer.id, statusOf(m, signer));
    else if (this.staleNonce || signer.id !== id) outcome = fail("DeviceRegistryInvalidSignature");

    await nextBlock(m);
    const r = w.registry.connect(w.owners[this.relayer]);
    await expectOutcome(
      w,
      this.toString(),
      () =>
        this.action === "attestFirmware"
          ? r.attestFirmware(key.signer, firmwareHash, DEADLINE, signature, GAS)
          : r.cancelNonce(key.signer, DEADLINE, signature, GAS),
      outcome,
    );
    if (outcome !== null || !signer) return;
    signer.nonce++;
    if (this.action === "attestFirmware") signer.firmware = bytes8(firmwareHash);
  }

  toString() {
    return `${this.action}(device #${this.pick}, key ${this.keyMode}${this.staleNonce ? ", stale nonce" : ""}, relayer ${this.relayer})`;
  }
}

// ------------------------------------------------------------------------------ arbitraries

/** A device pick, resolved by `pickDevice`. */
const device = fc.nat({ max: 19 });
const who = fc.nat({ max: 5 });
const owner = fc.nat({ max: 2 });
const mostly = (p: number) => fc.integer({ min: 0, max: 99 }).map((n) => n < p);

const claimArb = fc
  .tuple(fc.nat({ max: 15 }), owner, owner, fc.constantFrom("ok", "ok", "ok", "ok", "otherKey", "otherOwner"))
  .map(([leaf, o, s, sig]) => new ClaimStep(leaf, o, s, sig as ClaimStep["sig"]));
const ownerArb = (action: OwnerStep["action"]) => fc.tuple(device, who).map(([p, c]) => new OwnerStep(action, p, c));
const guardianArb = (action: GuardianStep["action"]) =>
  fc
    .tuple(device, fc.nat({ max: 9 }), fc.constantFrom(1, 1, QUORUM))
    .map(([p, g, n]) => new GuardianStep(action, p, g, n));
const quorumArb = fc
  .tuple(fc.constantFrom(1, 2), mostly(85))
  .map(([quorum, byAdmin]) => new QuorumStep(quorum, byAdmin));
const recallArb = fc.tuple(device, fc.constantFrom(0, 0, 2, 1, 3)).map(([p, c]) => new RecallStep(p, c));
const attestKeyArb = fc.tuple(device, fc.constantFrom(0, 0, 2, 1, 3)).map(([p, c]) => new AttestKeyStep(p, c));
const batchArb = fc
  .tuple(
    fc.constantFrom("quarantineBatch", "releaseBatch", "quarantineBatch", "releaseBatch", "revokeBatch"),
    fc.nat({ max: 3 }),
    fc.constantFrom(0, 0, 2, 1, 3),
  )
  .map(([a, b, c]) => new BatchStep(a as BatchStep["action"], b, c));
const rotateArb = fc
  .tuple(
    device,
    who,
    fc.nat({ max: 15 }),
    fc.constantFrom("current", "none", "current", "none", "foreign", "badSig"),
    mostly(15),
  )
  .map(([p, c, t, o, stale]) => new RotateStep(p, c, t, o as RotateStep["old"], stale));
const transferArb = fc.tuple(device, who, owner).map(([p, c, to]) => new TransferStep(p, c, to));
const messageArb = (action: DeviceMessageStep["action"]) =>
  fc
    .tuple(
      device,
      fc.constantFrom("current", "current", "current", "retired", "unused"),
      mostly(15),
      fc.nat({ max: 2 }),
      owner,
    )
    .map(
      ([p, k, stale, fw, relayer]) =>
        new DeviceMessageStep(action, p, k as DeviceMessageStep["keyMode"], stale, fw, relayer),
    );

/** Repeats are weights. */
const allCommands: fc.Arbitrary<Cmd>[] = [
  claimArb,
  claimArb,
  claimArb,
  ownerArb("reportStolen"),
  ownerArb("reportStolen"),
  ownerArb("release"),
  ownerArb("release"),
  ownerArb("decommission"),
  guardianArb("flag"),
  guardianArb("flag"),
  guardianArb("clearFlag"),
  guardianArb("clearFlag"),
  quorumArb,
  recallArb,
  attestKeyArb,
  batchArb,
  batchArb,
  rotateArb,
  rotateArb,
  rotateArb,
  transferArb,
  transferArb,
  messageArb("attestFirmware"),
  messageArb("cancelNonce"),
];

// ------------------------------------------------------------------------------------ tests

describe("DeviceRegistry stateful model: random operation sequences try to break invariants 1 and 3", function () {
  /** The fixture's state is the same for every run: the model is compared with it once. */
  let fixtureChecked = false;

  it("invariants 1 and 3 hold after every step of random claim/report/flag/clear/release/revoke/recall/batch/rotate/transfer/device-message sequences", async function () {
    this.timeout(propertyTimeout(RUNS, 3_000, UNDER_COVERAGE));
    await assertProperty(
      fc.asyncProperty(fc.commands(allCommands, { maxCommands: MAX_COMMANDS, size: "max" }), async (cmds) => {
        const w = await loadFixture(registryWithBatches);
        const model = initialModel(w);
        if (!fixtureChecked) {
          await checkInvariants(model, w, "the fixture");
          fixtureChecked = true;
        }
        await fc.asyncModelRun(() => ({ model, real: w }), cmds);
      }),
      RUNS,
    );
  });
});

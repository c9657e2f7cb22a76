/**
 * A deployed suite on a real node (`hardhat node` or anvil, from test/helpers/node.ts) and a story
 * that touches every contract: claims, a theft and its release, a guardian flag and its clearing, a
 * key rotation, a transfer, a batch quarantine, lock revocations, managers and an anchored log, a
 * shipment handed off, checkpointed, breached (a lying tracker proven), overdue and delivered, a
 * pallet split and gone silent, and a payment channel opened, topped up, claimed and closed. The
 * watch's tests index it and compare the index with the chain.
 */
import { JsonRpcProvider, encodeBytes32String, id as textHash, parseEther, type Signer } from "ethers";
import { deploySuite, type SuiteAddresses } from "../../src/deploy/suite.js";
import { digest, typedData, type Deployment, type Message } from "../../src/eip712/index.js";
import { randomDeviceKey, type DeviceKey } from "../../src/crypto/deviceKey.js";
import { DeviceBatch, deviceIdOf } from "../../src/registry/batch.js";
import {
  PalletChildren,
  ReadingsBatch,
  cbv,
  childIdOf,
  locationId,
  shipmentIdOf,
  type Reading,
} from "../../src/custody/index.js";
import { generateBeaconKey, sealLocation, type BeaconKeyPair } from "../../src/beacons/index.js";
import { termsFromOpened, type ChannelTerms } from "../../src/agent/roles/meter.js";
import {
  CustodyLedger__factory,
  DeviceRegistry__factory,
  GuardianQuorum__factory,
  LocationBeacons__factory,
  LockAccess__factory,
  PaymentChannels__factory,
  type CustodyLedger,
  type DeviceRegistry,
  type GuardianQuorum,
  type LocationBeacons,
  type LockAccess,
  type PaymentChannels,
} from "../../typechain-types/index.js";
import type { HardhatNode } from "../helpers/node.js";

export const MODEL = encodeBytes32String("custos-watch");
export const FIRMWARE = textHash("firmware 1.0.0");
const EPC = "urn:epc:id:sscc:0614141.1234567890";
const PALLET_EPC = "urn:epc:id:sscc:0614141.2234567890";
const CHILD_EPCS = ["urn:epc:id:sscc:0614141.3234567890", "urn:epc:id:sscc:0614141.4234567890"];

export interface Suite {
  node: HardhatNode;
  provider: JsonRpcProvider;
  chainId: bigint;
  addresses: SuiteAddresses;
  /** The block after which the suite exists (the indexer's start block). */
  deployBlock: number;
  registry: DeviceRegistry;
  quorum: GuardianQuorum;
  beacons: LocationBeacons;
  locks: LockAccess;
  ledger: CustodyLedger;
  channels: PaymentChannels;
  admin: Signer;
  owner: Signer;
  other: Signer;
  carrier: Signer;
  receiver: Signer;
  guardians: Signer[];
  payeeOwner: Signer;
}

/** Deploys the suite on `node`: the admin is the manufacturer; two guardians, quorum 2; a 1-hour challenge period. */
export async function deployOn(node: HardhatNode): Promise<Suite> {
  const provider = new JsonRpcProvider(node.url, 31337n, {
    staticNetwork: true,
    cacheTimeout: -1,
    pollingInterval: 50,
  });
  const [admin, owner, other, carrier, receiver, g1, g2, payeeOwner] = await Promise.all(
    [0, 1, 2, 3, 4, 5, 6, 7].map((i) => provider.getSigner(i)),
  );
  const addresses = await deploySuite(admin, {
    manufacturers: [await admin.getAddress()],
    guardians: [await g1.getAddress(), await g2.getAddress()],
    guardianQuorum: 2,
    challengePeriod: 3_600,
  });
  const deployBlock = await provider.getBlockNumber();
  return {
    node,
    provider,
    chainId: 31337n,
    addresses,
    deployBlock,
    registry: DeviceRegistry__factory.connect(addresses.registry, admin),
    quorum: GuardianQuorum__factory.connect(addresses.guardianQuorum, admin),
    beacons: LocationBeacons__factory.connect(addresses.locationBeacons, admin),
    locks: LockAccess__factory.connect(addresses.lockAccess, admin),
    ledger: CustodyLedger__factory.connect(addresses.custodyLedger, admin),
    channels: PaymentChannels__factory.connect(addresses.paymentChannels, admin),
    admin,
    owner,
    other,
    carrier,
    receiver,
    guardians: [g1, g2],
    payeeOwner,
  };
}

/** Sends a transaction and waits for its receipt (each is a block of its own on `hardhat node`). */
async function sent(tx: Promise<{ wait(): Promise<unknown> }>) {
  await (await tx).wait();
}

async function now(s: Suite): Promise<number> {
  return (await s.provider.getBlock("latest"))!.timestamp;
}

/** Moves the node's clock `seconds` ahead and mines a block. */
export async function advance(s: Suite, seconds: number) {
  await s.node.send("evm_increaseTime", [seconds]);
  await s.node.mine();
}

function deployment(s: Suite, address: string): Deployment {
  return { chainId: s.chainId, verifyingContract: address };
}

/** Commits a batch of `keys` and claims each for the matching owner; returns the batch id. */
export async function provision(s: Suite, keys: DeviceKey[], owners: Signer[]): Promise<bigint> {
  const batch = new DeviceBatch(
    keys.map((k) => ({ deviceKey: k.signer, model: MODEL, firmwareHash: FIRMWARE })),
    await s.admin.getAddress(),
  );
  await sent(s.registry.commitBatch(batch.root));
  for (const [i, key] of keys.entries()) {
    const owner = await owners[i].getAddress();
    const deadline = BigInt((await now(s)) + 3_600);
    const signature = key.signDigest(
      digest("DeviceClaim", deployment(s, s.addresses.registry), { owner, batch: batch.id, deadline }),
    );
    await sent(
      s.registry
        .connect(owners[i])
        .claim(
          { owner, batchId: batch.id, deviceKey: key.signer, model: MODEL, firmwareHash: FIRMWARE, deadline },
          batch.proof(key.signer),
          signature,
        ),
    );
  }
  return batch.id;
}

/** What the story made, for the tests to look up. */
export interface Story {
  devices: {
    lock: bigint;
    tracker: bigint;
    stolen: bigint;
    payer: bigint;
    payee: bigint;
    flagged: bigint;
    recalled: bigint;
  };
  /** The owner's and a responder's beacon keys (the stolen device's beacon is sealed to both). */
  beaconKeys: { owner: BeaconKeyPair; responder: BeaconKeyPair };
  keys: {
    lock: DeviceKey;
    tracker: DeviceKey;
    stolen: DeviceKey;
    payer: DeviceKey;
    payee: DeviceKey;
    rotated: DeviceKey;
  };
  batches: { main: bigint; quarantined: bigint };
  shipment: string;
  pallet: string;
  children: string[];
  channel: string;
  terms: ChannelTerms;
}

export async function runStory(s: Suite): Promise<Story> {
  const kinds = ["lock", "tracker", "stolen", "payer", "payee", "flagged"] as const;
  const keys = Object.fromEntries(kinds.map((k) => [k, randomDeviceKey("secp256k1")])) as Record<
    (typeof kinds)[number],
    DeviceKey
  >;
  const main = await provision(
    s,
    kinds.map((k) => keys[k]),
    [s.owner, s.owner, s.owner, s.owner, s.payeeOwner, s.other],
  );
  const id = Object.fromEntries(kinds.map((k) => [k, deviceIdOf(keys[k].signer)])) as Record<
    (typeof kinds)[number],
    bigint
  >;

  // A second batch, quarantined by its manufacturer: one alert for the batch.
  const recalledKey = randomDeviceKey("secp256k1");
  const quarantined = await provision(s, [recalledKey], [s.other]);
  await sent(s.registry.quarantineBatch(quarantined, textHash("bad solder")));

  // Theft: reported, a beacon from the quarantined device, released.
  await sent(s.registry.connect(s.owner).reportStolen(id.stolen));
  // The owner's beacon key and a responder's: the location is sealed to both, readable by no one else.
  const ownerBeaconKey = await generateBeaconKey();
  const responderBeaconKey = await generateBeaconKey();
  await sent(s.beacons.connect(s.owner).setBeaconKey(ownerBeaconKey.publicKey));
  await sent(s.beacons.connect(s.owner).addResponder(responderBeaconKey.publicKey));
  const recipients = (await s.beacons.beaconRecipients(await s.owner.getAddress())).toLowerCase();
  const at = BigInt(await now(s));
  const ciphertext = await sealLocation({ latitudeE7: 473_700_000, longitudeE7: 85_400_000 }, recipients, {
    chainId: s.chainId,
    contract: s.addresses.locationBeacons,
    device: id.stolen,
    at,
  });
  const beacon = { recipients, ciphertext, at, deadline: BigInt((await now(s)) + 3_600) };
  const beaconSig = keys.stolen.signDigest(
    digest("LocationBeacon", deployment(s, s.addresses.locationBeacons), { device: id.stolen, nonce: 0n, ...beacon }),
  );
  await sent(s.beacons.postLocationBeacon(keys.stolen.signer, beacon, beaconSig));
  await sent(s.registry.connect(s.owner).release(id.stolen));

  // The guardians' quorum flags a device and clears it; its owner then sells it.
  for (const g of s.guardians) await sent(s.quorum.connect(g).flag(id.flagged, textHash("misbehaving")));
  for (const g of s.guardians) await sent(s.quorum.connect(g).clearFlag(id.flagged));
  await sent(
    s.registry.connect(s.other).transferFrom(await s.other.getAddress(), await s.owner.getAddress(), id.flagged),
  );

  // A key rotation signed by the old key (its provenance stays attested).
  const rotated = randomDeviceKey("secp256k1");
  const rotationDeadline = BigInt((await now(s)) + 3_600);
  const nonce = await s.registry.deviceNonce(id.stolen);
  const msg = { device: id.stolen, newKey: rotated.signer, nonce, deadline: rotationDeadline };
  const reg = deployment(s, s.addresses.registry);
  await sent(
    s.registry.connect(s.owner).rotateKey(id.stolen, {
      newKey: rotated.signer,
      deadline: rotationDeadline,
      newKeySignature: rotated.signDigest(digest("KeyRotation", reg, msg)),
      oldKey: keys.stolen.signer,
      oldKeySignature: keys.stolen.signDigest(digest("KeyRotation", reg, msg)),
    }),
  );

  // Locks: a manager appointed and removed, a key revoked, a log batch anchored, all keys revoked.
  const carrierAddress = await s.carrier.getAddress();
  await sent(s.locks.connect(s.owner).appointManager(id.lock, carrierAddress, BigInt((await now(s)) + 86_400)));
  await sent(s.locks.connect(s.carrier).revokeKey(id.lock, 7n));
  await sent(s.locks.connect(s.owner).removeManager(id.lock, carrierAddress));
  const log = {
    seq: 1,
    root: textHash("unlocks 1"),
    count: 16,
    fromTime: 1_700_000_000n,
    toTime: 1_700_003_600n,
    deadline: BigInt((await now(s)) + 3_600),
  };
  const logSig = keys.lock.signDigest(
    digest("UnlockLog", deployment(s, s.addresses.lockAccess), { lock: id.lock, ...log }),
  );
  await sent(s.locks.anchorLog(keys.lock.signer, log, logSig));
  await sent(s.locks.connect(s.owner).revokeAll(id.lock));

  // A shipment: created, handed to a carrier, checkpointed twice (the second hides a hot reading),
  // the excursion proven, overdue, handed to the receiver and delivered.
  const ownerAddress = await s.owner.getAddress();
  const receiverAddress = await s.receiver.getAddress();
  const shipment = shipmentIdOf(ownerAddress, EPC);
  await sent(
    s.ledger.connect(s.owner).createShipment({
      epc: EPC,
      tracker: id.tracker,
      receiver: receiverAddress,
      deadline: BigInt((await now(s)) + 600),
      maxSilence: 3_600,
      minTemp: 200,
      maxTemp: 800,
      metadataHash: textHash("vaccines"),
      childrenRoot: "0x" + "00".repeat(32),
      acceptOwnerKeys: false,
    }),
  );
  const custody = deployment(s, s.addresses.custodyLedger);
  const handOff = async (from: Signer, to: Signer, seq: number) => {
    const h: Message = {
      shipment,
      from: await from.getAddress(),
      to: await to.getAddress(),
      seq,
      bizStep: cbv("shipping"),
      disposition: cbv("in_transit"),
      readPoint: locationId("urn:epc:id:sgln:0614141.00001.0"),
      at: BigInt(await now(s)),
      deadline: BigInt((await now(s)) + 3_600),
    };
    const sign = (signer: Signer) => {
      const t = typedData("Handoff", custody, h);
      return signer.signTypedData(t.domain, t.types, h);
    };
    await sent(s.ledger.handoff(h as never, await sign(from), await sign(to)));
  };
  await handOff(s.owner, s.carrier, 1);
  const checkpointOf = async (seq: number, readings: Reading[], claimed?: { min: number; max: number }) => {
    const batch = new ReadingsBatch(readings);
    const cp = {
      shipment,
      seq,
      readingsRoot: batch.root,
      count: batch.count,
      minTemp: claimed?.min ?? batch.min,
      maxTemp: claimed?.max ?? batch.max,
      location: locationId("geo:52.37,4.89"),
      at: BigInt(await now(s)),
    };
    return { cp, batch, signature: keys.tracker.signDigest(digest("Checkpoint", custody, cp)) };
  };
  const t0 = await now(s);
  const first = await checkpointOf(1, [
    { at: t0 - 600, temp: 400 },
    { at: t0 - 300, temp: 450 },
  ]);
  await sent(s.ledger.checkpoint(first.cp, keys.tracker.signer, first.signature));
  const hot = [
    { at: t0 - 200, temp: 500 },
    { at: t0 - 100, temp: 950 },
  ];
  const lying = await checkpointOf(2, hot, { min: 500, max: 700 });
  await sent(s.ledger.checkpoint(lying.cp, keys.tracker.signer, lying.signature));
  await sent(s.ledger.proveExcursion(lying.cp, keys.tracker.signer, lying.signature, hot[1], lying.batch.proof(1)));

  // A pallet of two children, one split off; the pallet then goes silent.
  const children = new PalletChildren(CHILD_EPCS);
  const pallet = shipmentIdOf(ownerAddress, PALLET_EPC);
  await sent(
    s.ledger.connect(s.owner).createShipment({
      epc: PALLET_EPC,
      tracker: id.tracker,
      receiver: receiverAddress,
      deadline: BigInt((await now(s)) + 86_400),
      maxSilence: 300,
      minTemp: 200,
      maxTemp: 800,
      metadataHash: textHash("pallet"),
      childrenRoot: children.root,
      acceptOwnerKeys: false,
    }),
  );
  await sent(s.ledger.connect(s.owner).splitChild(pallet, CHILD_EPCS[0], children.proof(CHILD_EPCS[0])));

  await advance(s, 900);
  await sent(s.ledger.markOverdue(shipment));
  await sent(s.ledger.markSilent(pallet));
  await handOff(s.carrier, s.receiver, 2);
  await sent(s.ledger.connect(s.receiver).deliver(shipment));

  // A channel: opened with 1 ETH, topped up, a voucher claimed, a close started by the payer's
  // owner, and closed by the payee's owner with a later voucher.
  const opened = await (
    await s.channels.connect(s.owner).open(
      {
        payer: id.payer,
        payee: id.payee,
        token: "0x" + "00".repeat(20),
        rate: (1n << 96n) - 1n,
        allowance: 0n,
        salt: 1,
      },
      keys.payer.signer,
      parseEther("1"),
      { value: parseEther("1") },
    )
  ).wait();
  const log0 = opened!.logs.map((l) => s.channels.interface.parseLog(l)).find((p) => p?.name === "ChannelOpened")!;
  const channel = log0.args.channel as string;
  const terms = termsFromOpened(log0.args);
  await sent(s.channels.connect(s.owner).topUp(terms, parseEther("0.5"), { value: parseEther("0.5") }));
  const chan = deployment(s, s.addresses.paymentChannels);
  const voucher = (amount: bigint) =>
    keys.payer.signDigest(digest("Voucher", chan, { channel, cumulativeAmount: amount }));
  await sent(s.channels.claim(terms, parseEther("0.1"), keys.payer.signer, voucher(parseEther("0.1"))));
  await sent(s.channels.connect(s.owner).startClose(terms));
  await sent(
    s.channels
      .connect(s.payeeOwner)
      .closeMany([{ terms, amount: parseEther("0.3"), key: keys.payer.signer, signature: voucher(parseEther("0.3")) }]),
  );

  return {
    devices: { ...id, recalled: deviceIdOf(recalledKey.signer) },
    keys: { ...keys, rotated },
    beaconKeys: { owner: ownerBeaconKey, responder: responderBeaconKey },
    batches: { main, quarantined },
    shipment,
    pallet,
    children: [childIdOf(pallet, CHILD_EPCS[0])],
    channel,
    terms,
  };
}

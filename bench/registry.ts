/** DeviceRegistry operations, each in the situation its budget names. */
import { ethers } from "../test/helpers/hardhat.js";
import { Wallet, id as labelHash } from "ethers";
import { DeviceBatch, deviceIdOf } from "../src/registry/batch.js";
import { p256Key, secp256k1Key, type DeviceKey } from "../src/crypto/deviceKey.js";
import { p256KeyFromScalar } from "../src/crypto/p256.js";
import { deployRegistry, claimArgs, rotation, signAs, deadlineIn, MODEL, FIRMWARE } from "../test/helpers/registry.js";
import { beaconArgs, deployBeacons } from "../test/helpers/beacons.js";
import { generateBeaconKey } from "../src/beacons/index.js";
import { benchEvidence } from "./guardian/evidence.js";
import type { GasRecorder } from "./lib.js";
import { deviceById } from "../src/registry/lookup.js";

/** Leaves in the bench batch: 2^14, so every proof is 14 hashes deep. */
export const BATCH_SIZE = 16_384;

// Every key, address and leaf is derived from a label, so that calldata (and so gas) repeats run to run.
const secpKey = (label: string): DeviceKey => secp256k1Key(labelHash(label));
const address = (label: string): string => new Wallet(labelHash(label)).address;

export async function benchRegistry(gas: GasRecorder): Promise<void> {
  const ctx = await deployRegistry();
  const { registry, manufacturer, guardians, admin } = ctx;
  const secp = secpKey("bench device secp256k1");
  const p256 = p256Key(ctx.verifierAddress, p256KeyFromScalar(labelHash("bench device p256")));
  const spare = secpKey("bench device spare");
  const filler = Array.from({ length: BATCH_SIZE - 3 }, (_, i) => ({
    deviceKey: address(`bench filler ${i}`),
    model: MODEL,
    firmwareHash: FIRMWARE,
  }));
  const batch = new DeviceBatch(
    [...[secp, p256, spare].map((k) => ({ deviceKey: k.signer, model: MODEL, firmwareHash: FIRMWARE })), ...filler],
    manufacturer.address,
  );
  if (batch.proof(secp.signer).length !== 14) throw new Error("bench: expected a 14-deep proof");

  // The first batch pays for the counter's first write; steady state is every batch after it.
  await registry.connect(manufacturer).commitBatch(labelHash("bench first batch"));
  await gas.record("registry.commitBatch", registry.connect(manufacturer).commitBatch(batch.root));
  const batchId = batch.id;

  // Claims are relayed by a third party to an owner that holds no device yet.
  const relayer = admin;
  const owner = new Wallet(labelHash("bench owner"), ethers.provider);
  await admin.sendTransaction({ to: owner.address, value: ethers.parseEther("1") });
  let a = await claimArgs(ctx, secp, batch, batchId, owner.address);
  await gas.record("registry.claim.secp256k1", registry.connect(relayer).claim(a.claim, a.proof, a.signature));
  a = await claimArgs(ctx, p256, batch, batchId, address("bench p256 owner"));
  await gas.record("registry.claim.p256", registry.connect(relayer).claim(a.claim, a.proof, a.signature));

  const id = deviceIdOf(secp.signer);
  await gas.record("registry.reportStolen", registry.connect(owner).reportStolen(id));
  await gas.record("registry.release", registry.connect(owner).release(id));
  // Guardians vote in the GuardianQuorum: the first vote is recorded, the second (the quorum) flags.
  const quorum = ctx.guardianQuorum;
  await gas.record("registry.guardianFlag", quorum.connect(guardians[0]).flag(id, ethers.id("tamper")));
  await gas.record("registry.guardianFlag.quorum", quorum.connect(guardians[1]).flag(id, ethers.id("tamper")));
  await quorum.connect(guardians[0]).clearFlag(id);
  await quorum.connect(guardians[1]).clearFlag(id);
  // A guardian service's vote: a flag whose reason is the keccak256 of its canonical evidence JSON
  // (src/guardian/policy), the first on its device (below the quorum).
  const evidence = benchEvidence(deviceIdOf(p256.signer));
  await gas.record("guardian.vote", quorum.connect(guardians[2]).flag(deviceIdOf(p256.signer), evidence.reason));

  const firmware = ethers.id("firmware 1.0.1");
  let nonce = await registry.deviceNonce(id);
  let deadline = await deadlineIn();
  await gas.record(
    "registry.attestFirmware",
    registry.attestFirmware(
      secp.signer,
      firmware,
      deadline,
      signAs(secp, "FirmwareAttestation", ctx.deployment, { device: id, firmwareHash: firmware, nonce, deadline }),
    ),
  );

  const next = secpKey("bench rotation 1");
  await gas.record(
    "registry.rotateKey.withOldKey",
    registry.connect(owner).rotateKey(id, await rotation(ctx, id, next, secp)),
  );
  const third = secpKey("bench rotation 2");
  await gas.record("registry.rotateKey", registry.connect(owner).rotateKey(id, await rotation(ctx, id, third, null)));

  await gas.record(
    "registry.transfer",
    registry.connect(owner).transferFrom(owner.address, address("bench buyer"), id),
  );

  const p256Id = deviceIdOf(p256.signer);
  const p256Owner = await ethers.getImpersonatedSigner((await deviceById(registry, p256Id)).owner);
  await admin.sendTransaction({ to: p256Owner.address, value: ethers.parseEther("1") });
  await registry.connect(p256Owner).reportStolen(p256Id);
  // Beacons go to LocationBeacons, with its own domain and the device's beacon nonce (its first: 0),
  // the location sealed (HPKE) to the owner's beacon key. Ciphertexts are random (fresh ephemeral
  // keys) but of fixed length, so gas moves by a few units at most between runs.
  const { beacons } = await deployBeacons(ctx);
  const ownerKey = await generateBeaconKey();
  await beacons.connect(p256Owner).setBeaconKey(ownerKey.publicKey);
  const position = { latitudeE7: 525200660, longitudeE7: 134049540, at: 1_700_000_000n };
  await gas.record(
    "beacons.postLocationBeacon.p256",
    beacons.postLocationBeacon(...(await beaconArgs(beacons, p256, p256Id, { position }))),
  );
  // The figure of issue 17: a first beacon sealed to the owner and two responders (police, insurer).
  for (let i = 0; i < 2; i++) await beacons.connect(p256Owner).addResponder((await generateBeaconKey()).publicKey);
  a = await claimArgs(ctx, spare, batch, batchId, p256Owner.address);
  await registry.connect(relayer).claim(a.claim, a.proof, a.signature);
  const spareId = deviceIdOf(spare.signer);
  await registry.connect(p256Owner).reportStolen(spareId);
  await gas.record(
    "guardian.encryptedBeacon",
    beacons.postLocationBeacon(...(await beaconArgs(beacons, spare, spareId, { position }))),
  );
  await gas.record("registry.decommission", registry.connect(p256Owner).decommission(p256Id));
  await gas.record(
    "registry.quarantineBatch",
    registry.connect(manufacturer).quarantineBatch(batchId, ethers.id("recall")),
  );
  await gas.record("registry.revokeBatch", registry.connect(manufacturer).revokeBatch(batchId, ethers.id("recall")));
}

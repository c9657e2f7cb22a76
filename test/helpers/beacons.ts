/** LocationBeacons on a registry of `deployRegistry`, and its beacons sealed and signed as a device does. */
import { ethers } from "./hardhat.js";
import type { Deployment } from "../../src/eip712/index.js";
import type { DeviceKey } from "../../src/crypto/deviceKey.js";
import type { LocationBeacons } from "../../typechain-types/index.js";
import { generateBeaconKey, openLocation, sealLocation, type BeaconKeyPair } from "../../src/beacons/index.js";
import { deadlineIn, signAs, type RegistryContext } from "./registry.js";

/**
 * Deploys LocationBeacons reading `ctx`'s registry, with a beacon key registered for the owner and
 * for `other` (the buyer in resale tests); returns them with its EIP-712 deployment.
 */
export async function deployBeacons(ctx: RegistryContext) {
  const beacons = (await ethers.deployContract("LocationBeacons", [
    await ctx.registry.getAddress(),
  ])) as unknown as LocationBeacons;
  const { chainId } = await ethers.provider.getNetwork();
  const deployment: Deployment = { chainId, verifyingContract: await beacons.getAddress() };
  const ownerKey = await generateBeaconKey();
  const otherKey = await generateBeaconKey();
  await beacons.connect(ctx.owner).setBeaconKey(ownerKey.publicKey);
  await beacons.connect(ctx.other).setBeaconKey(otherKey.publicKey);
  return { beacons, deployment, ownerKey, otherKey };
}

/** A location report (coordinates in 1e-7 degrees). */
export interface Position {
  latitudeE7: number;
  longitudeE7: number;
  at: bigint;
}

export const ZURICH: Position = { latitudeE7: 473_700_000, longitudeE7: 85_400_000, at: 1_767_225_600n };

/**
 * The arguments of `postLocationBeacon` for device `id` with `key`: the position sealed to the
 * recipients its owner has registered now (or `recipients`; or `ciphertext` as given), a deadline an hour ahead unless given,
 * and the key's signature with `nonce` (the device's next beacon nonce unless given) for
 * `deployment` (the beacons' own unless given).
 */
export async function beaconArgs(
  beacons: LocationBeacons,
  key: DeviceKey,
  id: bigint,
  opts: {
    position?: Position;
    nonce?: bigint;
    deadline?: bigint;
    deployment?: Deployment;
    recipients?: string;
    ciphertext?: string;
  } = {},
): Promise<[string, LocationBeacons.LocationBeaconStruct, string]> {
  const position = opts.position ?? ZURICH;
  const deadline = opts.deadline ?? (await deadlineIn());
  const nonce = opts.nonce ?? (await beacons.beaconNonce(id));
  const { chainId } = await ethers.provider.getNetwork();
  const deployment = opts.deployment ?? { chainId, verifyingContract: await beacons.getAddress() };
  const recipients = opts.recipients ?? (await recipientsOf(beacons, id));
  const ciphertext =
    opts.ciphertext ??
    (await sealLocation(position, recipients, {
      chainId,
      contract: await beacons.getAddress(),
      device: id,
      at: position.at,
    }));
  const beacon = { recipients, ciphertext, at: position.at, deadline };
  return [key.signer, beacon, signAs(key, "LocationBeacon", deployment, { device: id, nonce, ...beacon })];
}

/** The recipients a beacon of device `id` must be sealed to now (its current owner's). */
export async function recipientsOf(beacons: LocationBeacons, id: bigint): Promise<string> {
  const registry = await ethers.getContractAt("DeviceRegistry", await beacons.registry());
  return (await beacons.beaconRecipients(await registry.ownerOf(id))).toLowerCase();
}

/** A `LocationBeaconPosted` event's fields that opening needs: by name, or an ethers `Result` (by position). */
export type PostedBeacon =
  { deviceId: bigint; at: bigint; recipients: string; ciphertext: string } | readonly unknown[];

/** Opens the location of a `LocationBeaconPosted` event with `holder`'s beacon key. */
export async function openPosted(beacons: LocationBeacons, posted: PostedBeacon, holder: BeaconKeyPair) {
  // By position for a Result: `at` is also the name of a method of ethers' Result.
  const [deviceId, , , at, recipients, ciphertext] = Array.isArray(posted)
    ? (posted as unknown[])
    : [
        (posted as { deviceId: bigint }).deviceId,
        0,
        0,
        ...["at", "recipients", "ciphertext"].map((k) => (posted as Record<string, unknown>)[k]),
      ];
  const { chainId } = await ethers.provider.getNetwork();
  const context = { chainId, contract: await beacons.getAddress(), device: deviceId as bigint, at: at as bigint };
  return openLocation(ciphertext as string, recipients as string, context, holder.privateKey);
}

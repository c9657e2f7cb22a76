/** LocationBeacons on a registry of `deployRegistry`, and its beacons signed as a device signs them. */
import { ethers } from "./hardhat.js";
import type { Deployment } from "../../src/eip712/index.js";
import type { DeviceKey } from "../../src/crypto/deviceKey.js";
import type { LocationBeacons } from "../../typechain-types/index.js";
import { deadlineIn, signAs, type RegistryContext } from "./registry.js";

/** Deploys LocationBeacons reading `ctx`'s registry; returns it with its EIP-712 deployment. */
export async function deployBeacons(ctx: RegistryContext) {
  const beacons = (await ethers.deployContract("LocationBeacons", [
    await ctx.registry.getAddress(),
  ])) as unknown as LocationBeacons;
  const { chainId } = await ethers.provider.getNetwork();
  const deployment: Deployment = { chainId, verifyingContract: await beacons.getAddress() };
  return { beacons, deployment };
}

/** A location report (coordinates in 1e-7 degrees). */
export interface Position {
  latitudeE7: number;
  longitudeE7: number;
  at: bigint;
}

export const ZURICH: Position = { latitudeE7: 473_700_000, longitudeE7: 85_400_000, at: 1_767_225_600n };

/**
 * The arguments of `postLocationBeacon` for device `id` with `key`: the beacon (deadline an hour
 * ahead unless given) and the key's signature with `nonce` (the device's next beacon nonce unless
 * given) for `deployment` (the beacons' own unless given).
 */
export async function beaconArgs(
  beacons: LocationBeacons,
  key: DeviceKey,
  id: bigint,
  opts: { position?: Position; nonce?: bigint; deadline?: bigint; deployment?: Deployment } = {},
): Promise<[string, LocationBeacons.LocationBeaconStruct, string]> {
  const position = opts.position ?? ZURICH;
  const deadline = opts.deadline ?? (await deadlineIn());
  const nonce = opts.nonce ?? (await beacons.beaconNonce(id));
  const { chainId } = await ethers.provider.getNetwork();
  const deployment = opts.deployment ?? { chainId, verifyingContract: await beacons.getAddress() };
  const beacon = { ...position, deadline };
  return [key.signer, beacon, signAs(key, "LocationBeacon", deployment, { device: id, nonce, ...beacon })];
}

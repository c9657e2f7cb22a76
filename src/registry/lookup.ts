/**
 * Who a device key or id is: the registry's `resolveKey` and `deviceStatus` with the ERC-721 owner.
 * The registry has no single view for this any more (its code-size budget went to the trust
 * model); off-chain callers ask twice, at one block.
 */
import type { BlockTag } from "ethers";
import { ZeroAddress } from "ethers";
import type { DeviceRegistry } from "../../typechain-types/index.js";

/** A device's id, owner and status (`IDeviceRegistry.DeviceStatus`); id 0 when there is none. */
export interface DeviceRef {
  id: bigint;
  owner: string;
  status: bigint;
}

const NONE: DeviceRef = { id: 0n, owner: ZeroAddress, status: 0n };

/** The device `key` currently belongs to (id 0 for a key never registered, or rotated away). */
export async function deviceByKey(registry: DeviceRegistry, key: string, blockTag?: BlockTag): Promise<DeviceRef> {
  const [id, status] = await registry.resolveKey(key, { blockTag });
  if (id === 0n) return NONE;
  return { id, owner: await registry.ownerOf(id, { blockTag }), status };
}

/** Device `id`'s owner and status (id 0 when it does not exist). */
export async function deviceById(registry: DeviceRegistry, id: bigint, blockTag?: BlockTag): Promise<DeviceRef> {
  const status = await registry.deviceStatus(id, { blockTag });
  if (status === 0n) return NONE;
  return { id, owner: await registry.ownerOf(id, { blockTag }), status };
}

/**
 * The node the user chose (settings), read with viem, and the suite's ABIs (from Hardhat's
 * artifacts — the only copy). The console re-verifies against this node, never against the watch.
 */
import { createPublicClient, http, type PublicClient } from "viem";
import { abi as registryAbi } from "../../artifacts/contracts/registry/DeviceRegistry.sol/DeviceRegistry.json";
import { abi as lockAbi } from "../../artifacts/contracts/access/LockAccess.sol/LockAccess.json";
import { abi as ledgerAbi } from "../../artifacts/contracts/custody/CustodyLedger.sol/CustodyLedger.json";
import { abi as channelsAbi } from "../../artifacts/contracts/payments/PaymentChannels.sol/PaymentChannels.json";
import { abi as beaconsAbi } from "../../artifacts/contracts/beacons/LocationBeacons.sol/LocationBeacons.json";
import type { Abi } from "viem";

export const ABIS = {
  registry: registryAbi as Abi,
  lockAccess: lockAbi as Abi,
  custodyLedger: ledgerAbi as Abi,
  paymentChannels: channelsAbi as Abi,
  locationBeacons: beaconsAbi as Abi,
};

const clients = new Map<string, PublicClient>();

export function chainClient(rpc: string): PublicClient {
  let c = clients.get(rpc);
  if (!c) {
    c = createPublicClient({ transport: http(rpc, { batch: true, retryCount: 0 }) }) as PublicClient;
    clients.set(rpc, c);
  }
  return c;
}

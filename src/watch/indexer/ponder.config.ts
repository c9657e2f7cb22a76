/**
 * The Ponder app's configuration: one chain ("custos") and the suite's six contracts, with their
 * ABIs taken from the typechain factories Hardhat generates from the artifacts (no copy of an ABI
 * lives here). Settings come from the environment (see env.ts and the README).
 */
import { createConfig } from "ponder";
import {
  CustodyLedger__factory,
  DeviceRegistry__factory,
  GuardianQuorum__factory,
  LocationBeacons__factory,
  LockAccess__factory,
  PaymentChannels__factory,
} from "../../../typechain-types/index.js";
import { readIndexerEnv } from "./env.js";

const env = readIndexerEnv();

const on = <A>(abi: A, address: `0x${string}`) => ({
  chain: "custos" as const,
  abi,
  address,
  startBlock: env.startBlock,
});

export default createConfig({
  database: env.databaseUrl
    ? { kind: "postgres", connectionString: env.databaseUrl }
    : { kind: "pglite", directory: env.dataDir },
  chains: {
    custos: {
      id: env.chainId,
      rpc: env.rpcUrl,
      pollingInterval: env.pollingInterval,
      // A development chain is restarted and redeployed at will: a cached RPC answer would lie.
      disableCache: env.chainId === 31337,
    },
  },
  contracts: {
    DeviceRegistry: on(DeviceRegistry__factory.abi, env.addresses.registry),
    GuardianQuorum: on(GuardianQuorum__factory.abi, env.addresses.guardianQuorum),
    LocationBeacons: on(LocationBeacons__factory.abi, env.addresses.locationBeacons),
    LockAccess: on(LockAccess__factory.abi, env.addresses.lockAccess),
    CustodyLedger: on(CustodyLedger__factory.abi, env.addresses.custodyLedger),
    PaymentChannels: on(PaymentChannels__factory.abi, env.addresses.paymentChannels),
  },
});

/**
 * Deploys the Custos suite with plain ethers (tests, benches and the agent's and relayer's
 * integration runs use it against any JSON-RPC node; Ignition modules are the operator's way).
 */
import type { Signer } from "ethers";
import {
  DeviceRegistry__factory,
  ERC2771Forwarder__factory,
  ERC7913P256SHA256Verifier__factory,
  CustodyLedger__factory,
  LocationBeacons__factory,
  LockAccess__factory,
  PaymentChannels__factory,
} from "../../typechain-types/index.js";

export interface SuiteOptions {
  admin?: string;
  guardianQuorum?: number;
  manufacturers?: string[];
  guardians?: string[];
  /** How long a payee has to answer a unilateral channel close (s). Default 86,400. */
  challengePeriod?: number;
}

export interface SuiteAddresses {
  registry: string;
  /** The guardians' quorum contract, deployed by the registry. */
  guardianQuorum: string;
  locationBeacons: string;
  forwarder: string;
  p256Verifier: string;
  lockAccess: string;
  paymentChannels: string;
  custodyLedger: string;
}

export async function deploySuite(deployer: Signer, opts: SuiteOptions = {}): Promise<SuiteAddresses> {
  const admin = opts.admin ?? (await deployer.getAddress());
  const forwarder = await new ERC2771Forwarder__factory(deployer).deploy("Custos Forwarder");
  const verifier = await new ERC7913P256SHA256Verifier__factory(deployer).deploy();
  const registry = await new DeviceRegistry__factory(deployer).deploy(
    admin,
    await forwarder.getAddress(),
    opts.guardianQuorum ?? 1,
    await verifier.getAddress(),
    opts.manufacturers ?? [],
    opts.guardians ?? [],
  );
  await registry.waitForDeployment();
  const lockAccess = await new LockAccess__factory(deployer).deploy(registry, forwarder);
  const channels = await new PaymentChannels__factory(deployer).deploy(
    registry,
    forwarder,
    opts.challengePeriod ?? 86_400,
  );
  const custody = await new CustodyLedger__factory(deployer).deploy(registry, forwarder);
  const beacons = await new LocationBeacons__factory(deployer).deploy(registry);
  await beacons.waitForDeployment();
  await custody.waitForDeployment();
  return {
    registry: await registry.getAddress(),
    guardianQuorum: await registry.guardianQuorum(),
    locationBeacons: await beacons.getAddress(),
    forwarder: await forwarder.getAddress(),
    p256Verifier: await verifier.getAddress(),
    lockAccess: await lockAccess.getAddress(),
    paymentChannels: await channels.getAddress(),
    custodyLedger: await custody.getAddress(),
  };
}

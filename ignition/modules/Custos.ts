/**
 * Deploys the Custos suite: OpenZeppelin's TimelockController as the admin of everything that has
 * one, OpenZeppelin's ERC2771Forwarder (unchanged), the P-256 ERC-7913 verifier, the DeviceRegistry
 * (which deploys the guardians' GuardianQuorum) with its manufacturers and guardians, then
 * LockAccess, PaymentChannels (with its challenge period, seconds), CustodyLedger and
 * LocationBeacons on that registry.
 *
 * The admin is a timelock, not a key: every role change, quorum change and verifier allowance is
 * proposed by `adminProposer` (a multisig in production), visible on chain for `adminDelay` seconds,
 * then executed by anyone. What the admin can and cannot do is in docs/threat-model.md.
 *
 *   npx hardhat ignition deploy ignition/modules/Custos.ts --network localhost \
 *     --parameters ignition/parameters.example.json
 *   npx hardhat registry:batch --csv ignition/devices.example.csv --out batch/ --commit --signer 1 --network localhost
 *
 * In the example parameters account #0 proposes to the timelock and account #1 is the manufacturer:
 * it commits batches (`--signer 1`). The tasks find the contracts in this deployment's
 * deployed_addresses.json (chain-31337 for `npx hardhat node`).
 */
import { buildModule } from "@nomicfoundation/hardhat-ignition/modules";

const ANYONE = "0x0000000000000000000000000000000000000000";

export default buildModule("Custos", (m) => {
  const adminProposer = m.getParameter("adminProposer", m.getAccount(0));
  const adminDelay = m.getParameter("adminDelay", 172_800);
  const guardianQuorum = m.getParameter("guardianQuorum", 1);
  const manufacturers = m.getParameter<string[]>("manufacturers", []);
  const guardians = m.getParameter<string[]>("guardians", []);
  const challengePeriod = m.getParameter("challengePeriod", 86_400);

  // Proposer and canceller: `adminProposer`; executor: anyone, once the delay is over; no extra admin.
  const timelock = m.contract("TimelockController", [adminDelay, [adminProposer], [ANYONE], ANYONE]);
  const forwarder = m.contract("ERC2771Forwarder", ["Custos Forwarder"]);
  const p256Verifier = m.contract("ERC7913P256SHA256Verifier");
  const registry = m.contract("DeviceRegistry", [
    timelock,
    forwarder,
    guardianQuorum,
    p256Verifier,
    manufacturers,
    guardians,
  ]);
  const guardianQuorumAddress = m.staticCall(registry, "guardianQuorum");
  const quorum = m.contractAt("GuardianQuorum", guardianQuorumAddress);
  const lockAccess = m.contract("LockAccess", [registry, forwarder]);
  const paymentChannels = m.contract("PaymentChannels", [registry, forwarder, challengePeriod]);
  const custodyLedger = m.contract("CustodyLedger", [registry, forwarder]);
  const locationBeacons = m.contract("LocationBeacons", [registry]);
  return {
    timelock,
    forwarder,
    p256Verifier,
    registry,
    guardianQuorum: quorum,
    lockAccess,
    paymentChannels,
    custodyLedger,
    locationBeacons,
  };
});

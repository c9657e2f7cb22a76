/**
 * Deploys the Custos suite: OpenZeppelin's ERC2771Forwarder (unchanged), the P-256 ERC-7913
 * verifier, the DeviceRegistry with its admin, guardians and quorum, and manufacturers, then
 * LockAccess, PaymentChannels (with its challenge period, seconds), CustodyLedger and LocationBeacons
 * on that registry.
 *
 *   npx hardhat ignition deploy ignition/modules/Custos.ts --network localhost \
 *     --parameters ignition/parameters.example.json
 */
import { buildModule } from "@nomicfoundation/hardhat-ignition/modules";

export default buildModule("Custos", (m) => {
  const admin = m.getParameter("admin", m.getAccount(0));
  const guardianQuorum = m.getParameter("guardianQuorum", 1);
  const manufacturers = m.getParameter<string[]>("manufacturers", []);
  const guardians = m.getParameter<string[]>("guardians", []);
  const challengePeriod = m.getParameter("challengePeriod", 86_400);

  const forwarder = m.contract("ERC2771Forwarder", ["Custos Forwarder"]);
  const p256Verifier = m.contract("ERC7913P256SHA256Verifier");
  const registry = m.contract("DeviceRegistry", [
    admin,
    forwarder,
    guardianQuorum,
    p256Verifier,
    manufacturers,
    guardians,
  ]);
  const lockAccess = m.contract("LockAccess", [registry, forwarder]);
  const paymentChannels = m.contract("PaymentChannels", [registry, forwarder, challengePeriod]);
  const custodyLedger = m.contract("CustodyLedger", [registry, forwarder]);
  const locationBeacons = m.contract("LocationBeacons", [registry]);
  return { forwarder, p256Verifier, registry, lockAccess, paymentChannels, custodyLedger, locationBeacons };
});

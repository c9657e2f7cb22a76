/**
 * Deploys the Custos suite: OpenZeppelin's ERC2771Forwarder (unchanged), the P-256 ERC-7913
 * verifier, and the DeviceRegistry with its admin, guardians and quorum, and manufacturers.
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
  return { forwarder, p256Verifier, registry };
});

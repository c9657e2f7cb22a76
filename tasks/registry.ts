/**
 * Operator tasks for the DeviceRegistry. Each prints JSON (or a progress bar on stderr) and fails
 * with a message naming the flag that is wrong. The actions are in ./actions/registry.ts.
 *
 *   npx hardhat registry:batch --csv devices.csv --out batch/ --commit --network localhost
 *   npx hardhat registry:claim --message claim.json --network localhost
 *   npx hardhat registry:status --device 123... --network localhost
 */
import { task } from "hardhat/config";
import { int, lazy, needed, optional, text } from "./support.js";

const actions = () => import("./actions/registry.js");
const registry = optional("registry", "DeviceRegistry address");

export const registryTasks = [
  task(
    "registry:batch",
    "Builds a manufacturer batch from a CSV of devices: tree, every proof, and (with --commit) the on-chain commit",
  )
    .addOption(needed("csv", "CSV file with the header deviceKey,model,firmwareHash"))
    .addOption(needed("out", "directory for tree.json (OpenZeppelin standard-v1), proofs.jsonl and batch.json"))
    .addFlag({ name: "commit", description: "commit the root to the registry as the first signer (a manufacturer)" })
    .addOption(registry)
    .addOption(
      optional(
        "manufacturer",
        "the manufacturer that will commit the batch (its id depends on it); default: the first signer",
      ),
    )
    .setAction(lazy(actions, "batch"))
    .build(),

  task("registry:claim", "Submits a device's signed claim (the JSON that `custos-agent sign claim` prints)")
    .addOption(needed("message", "file with the signed DeviceClaim message"))
    .addOption(registry)
    .setAction(lazy(actions, "claim"))
    .build(),

  task(
    "registry:status",
    "Prints a device's owner, status, batch, nonce, key generation and provenance, trust period and firmware",
  )
    .addOption(optional("device", "device id"))
    .addOption(optional("key", "device key (ERC-7913 signer bytes)"))
    .addOption(registry)
    .setAction(lazy(actions, "status"))
    .build(),

  ...(
    [
      ["registry:report-stolen", "reportStolen", "The owner reports the device stolen: quarantined until released"],
      ["registry:release", "release", "The owner lifts its theft report"],
      ["registry:decommission", "decommission", "The owner revokes the device for good"],
    ] as const
  ).map(([name, action, description]) =>
    task(name, description)
      .addOption(needed("device", "device id"))
      .addOption(registry)
      .setAction(lazy(actions, action))
      .build(),
  ),

  task("registry:recall", "A manufacturer (or the admin) revokes one device, or with --batch a whole batch")
    .addOption(optional("device", "device id"))
    .addOption(optional("batch", "batch id"))
    .addOption(text("reason", "why (text, at most 31 bytes)", "recall"))
    .addOption(registry)
    .setAction(lazy(actions, "recall"))
    .build(),

  task("registry:rotate", "The owner rotates a device's key with the signatures in a rotation file")
    .addOption(needed("device", "device id"))
    .addOption(needed("rotation", "JSON file {newKey, deadline, newKeySignature, oldKey, oldKeySignature}"))
    .addOption(registry)
    .setAction(lazy(actions, "rotate"))
    .build(),

  task(
    "registry:transfer",
    "The owner sells or gives a device: the refunds of the channels it pays from go to the new owner at close",
  )
    .addOption(needed("device", "device id"))
    .addOption(needed("to", "the new owner's address"))
    .addOption(int("signer", "index of the owner's account", 0))
    .addOption(registry)
    .addOption(optional("channels", "PaymentChannels address (to list the channels whose refunds move)"))
    .setAction(lazy(actions, "transfer"))
    .build(),
];

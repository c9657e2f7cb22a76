/**
 * Operator tasks for the DeviceRegistry. Each prints JSON (or a progress bar on stderr) and fails
 * with one line naming the flag that is wrong. A task that sends a transaction needs `--network`
 * (Hardhat's in-process network is refused: it ends with the command) and signs as the network's
 * account #0 unless told otherwise (`--signer N|ADDRESS`, `--keystore FILE`, `--signer-var NAME`);
 * it checks first that the signer may make the call. The actions are in ./actions/registry.ts.
 *
 *   npx hardhat registry:batch --csv devices.csv --out batch/ --commit --signer 1 --network localhost
 *   npx hardhat registry:claim --message claim.json --network localhost
 *   npx hardhat registry:status --device 123... --network localhost
 *   npx hardhat registry:status --device 123... --watch http://127.0.0.1:8790 --network localhost
 */
import { task } from "hardhat/config";
import { lazy, needed, optional, signing, text } from "./support.js";

const actions = () => import("./actions/registry.js");
const registry = optional(
  "registry",
  "DeviceRegistry address (default: CUSTOS_REGISTRY, or this chain's Ignition deployment)",
);

export const registryTasks = [
  signing(
    task(
      "registry:batch",
      "Builds a manufacturer batch from a CSV of devices: tree, every proof, and (with --commit) the on-chain commit by the signer, a manufacturer; the files appear only once the commit is accepted",
    )
      .addOption(needed("csv", "CSV file with the header deviceKey,model,firmwareHash"))
      .addOption(needed("out", "directory for tree.json (OpenZeppelin standard-v1), proofs.jsonl and batch.json"))
      .addFlag({
        name: "commit",
        description: "commit the root to the registry as the signer (it needs MANUFACTURER_ROLE)",
      })
      .addOption(registry)
      .addOption(
        optional(
          "manufacturer",
          "without --commit: the manufacturer that will commit the batch (its id depends on it; or name it with --signer)",
        ),
      ),
  )
    .setAction(lazy(actions, "batch"))
    .build(),

  signing(
    task(
      "registry:claim",
      "Submits a device's signed claim (the JSON that `custos-agent sign claim` prints); anyone may send it",
    )
      .addOption(needed("message", "file with the signed DeviceClaim message"))
      .addOption(registry),
  )
    .setAction(lazy(actions, "claim"))
    .build(),

  task(
    "registry:status",
    "Prints a device's owner, status, batch, nonce, key generation and provenance, trust period and firmware",
  )
    .addOption(optional("device", "device id"))
    .addOption(optional("key", "device key (ERC-7913 signer bytes)"))
    .addOption(registry)
    .addOption(
      optional(
        "watch",
        "a Custos watch's URL (npm run watch): add the device's status changes and keys from its index, each confirmed on chain",
      ),
    )
    .setAction(lazy(actions, "status"))
    .build(),

  ...(
    [
      ["registry:report-stolen", "reportStolen", "The owner reports the device stolen: quarantined until released"],
      ["registry:release", "release", "The owner lifts its theft report"],
      ["registry:decommission", "decommission", "The owner revokes the device for good"],
    ] as const
  ).map(([name, action, description]) =>
    signing(task(name, description).addOption(needed("device", "device id")).addOption(registry))
      .setAction(lazy(actions, action))
      .build(),
  ),

  signing(
    task("registry:recall", "A manufacturer (or the admin) revokes one device, or with --batch a whole batch")
      .addOption(optional("device", "device id"))
      .addOption(optional("batch", "batch id"))
      .addOption(text("reason", "why (text, at most 31 bytes)", "recall"))
      .addOption(registry),
  )
    .setAction(lazy(actions, "recall"))
    .build(),

  signing(
    task("registry:rotate", "The owner rotates a device's key with the rotation file `custos-agent key rotate` wrote")
      .addOption(needed("rotation", "the rotation file (device, new key, nonce, deadline and the keys' signatures)"))
      .addOption(optional("device", "the device id, checked against the file's"))
      .addOption(registry),
  )
    .setAction(lazy(actions, "rotate"))
    .build(),

  signing(
    task(
      "registry:transfer",
      "The owner sells or gives a device: the refunds of the channels it pays from go to the new owner at close",
    )
      .addOption(needed("device", "device id"))
      .addOption(needed("to", "the new owner's address"))
      .addOption(registry)
      .addOption(optional("channels", "PaymentChannels address (to list the channels whose refunds move)")),
  )
    .setAction(lazy(actions, "transfer"))
    .build(),
];

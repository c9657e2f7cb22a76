/**
 * Subscribing to a Custos watch's signed webhooks from the command line, as the owner of what is
 * watched, with the tasks' signer flags (`--signer`, `--keystore`, `--signer-var`). The actions are
 * in ./actions/watch.ts.
 *
 *   npx hardhat watch:subscribe --watch http://127.0.0.1:8790 --scope device --target 4242 \
 *     --url https://example.com/hook --events device.quarantined,device.location_beacon --network localhost
 *   npx hardhat watch:subscriptions --watch http://127.0.0.1:8790 --network localhost
 *   npx hardhat watch:unsubscribe --watch http://127.0.0.1:8790 --id 0x… --network localhost
 *
 * The signature is EIP-712 in the watch's domain (the chain and its DeviceRegistry, from
 * `--registry` or the Ignition deployment); nothing is sent on chain.
 */
import { task } from "hardhat/config";
import { lazy, needed, optional, signing, text } from "./support.js";

const actions = () => import("./actions/watch.js");
const watch = needed("watch", "the watch's URL (where npm run watch listens, e.g. http://127.0.0.1:8790)");
const registry = optional(
  "registry",
  "DeviceRegistry address, the watch's signing domain (default: CUSTOS_REGISTRY, or this chain's Ignition deployment)",
);

export const watchTasks = [
  signing(
    task("watch:subscribe", "Subscribes the signer, as owner, to a watch's signed webhooks; prints the secret once")
      .addOption(watch)
      .addOption(needed("scope", "what to watch: owner, device, lock, shipment or channel"))
      .addOption(
        optional("target", "its id: a device or lock id, a 0x shipment or channel id (default for owner: the signer)"),
      )
      .addOption(needed("url", "where the watch POSTs each alert (your receiver's URL)"))
      .addOption(
        text("events", "all, or alert kinds separated by commas (e.g. device.quarantined,shipment.breached)", "all"),
      )
      .addOption(registry),
  )
    .setAction(lazy(actions, "subscribeTask"))
    .build(),

  signing(
    task("watch:unsubscribe", "Ends one of the signer's subscriptions at a watch")
      .addOption(watch)
      .addOption(needed("id", "the subscription's id (0x…, as watch:subscribe printed it)"))
      .addOption(registry),
  )
    .setAction(lazy(actions, "unsubscribeTask"))
    .build(),

  signing(
    task("watch:subscriptions", "Lists the signer's (or --owner's) subscriptions at a watch, without secrets")
      .addOption(watch)
      .addOption(optional("owner", "whose subscriptions (default: the signer's)")),
  )
    .setAction(lazy(actions, "listTask"))
    .build(),
];

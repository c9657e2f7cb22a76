/**
 * Owner tasks for location beacons: make a beacon key pair (a file; no transaction), register it as
 * the signer's own beacon key, add or remove a responder's key (the police, an insurer), and open
 * the beacons of a device with a private key. Recipients are the signer's own: every device it
 * owns seals its beacons to them. The actions are in ./actions/beacons.ts.
 *
 *   npx hardhat beacons:keygen --out owner-beacon.json
 *   npx hardhat beacons:set-key --key-file owner-beacon.json --network localhost
 *   npx hardhat beacons:add-responder --key 0x… --network localhost
 *   npx hardhat beacons:open --device 123… --key-file owner-beacon.json --network localhost
 */
import { task } from "hardhat/config";
import { lazy, needed, optional, signing } from "./support.js";

const actions = () => import("./actions/beacons.js");
const beacons = optional(
  "beacons",
  "LocationBeacons address (default: CUSTOS_LOCATION_BEACONS, or this chain's Ignition deployment)",
);

export const beaconTasks = [
  task("beacons:keygen", "Makes a beacon key pair (X25519) and writes it to a file (keep it: it reads the beacons)")
    .addOption(needed("out", "the key file to write (JSON: publicKey, privateKey)"))
    .setAction(lazy(actions, "keygen"))
    .build(),

  signing(
    task("beacons:set-key", "Registers the signer's own beacon key: its devices' beacons are sealed to it from now on")
      .addOption(optional("key", "the public key (32-byte hex)"))
      .addOption(optional("keyFile", "a key file of beacons:keygen (its public key)"))
      .addOption(beacons),
  )
    .setAction(lazy(actions, "setKey"))
    .build(),

  signing(
    task("beacons:add-responder", "Adds a responder's key (the police, an insurer) to the signer's beacon recipients")
      .addOption(needed("key", "the responder's public key (32-byte hex)"))
      .addOption(beacons),
  )
    .setAction(lazy(actions, "addResponder"))
    .build(),

  signing(
    task("beacons:remove-responder", "Removes a responder's key from the signer's beacon recipients")
      .addOption(needed("key", "the responder's public key (32-byte hex)"))
      .addOption(beacons),
  )
    .setAction(lazy(actions, "removeResponder"))
    .build(),

  task("beacons:open", "Opens the location beacons a device posted, with a recipient's private key")
    .addOption(needed("device", "the device id"))
    .addOption(needed("keyFile", "a key file of beacons:keygen"))
    .addOption(beacons)
    .addOption(
      optional(
        "watch",
        "a Custos watch's URL (npm run watch): read which transactions carry the beacons from its index, then the receipts from the chain",
      ),
    )
    .setAction(lazy(actions, "open"))
    .build(),
];

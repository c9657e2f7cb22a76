/**
 * Operator tasks for the CustodyLedger. Each prints JSON or a timeline and fails with a message
 * naming the flag that is wrong. The actions are in ./actions/custody.ts.
 *
 *   npx hardhat custody:history --shipment 0x… --network localhost
 *   npx hardhat custody:history --epc urn:epc:id:sscc:… --creator 0x…
 *   npx hardhat custody:prove-reading --shipment 0x… --seq 2 --index 17 --readings tracker.jsonl
 *   npx hardhat custody:epcis --shipment 0x… --out shipment.jsonld
 *   npx hardhat custody:history --shipment 0x… --watch http://127.0.0.1:8790
 *
 * A shipment is named by its id, or by its EPC and its creator: ids belong to their creators
 * (keccak256(abi.encode(creator, keccak256(epc)))), so the same EPC created by someone else is
 * another shipment. `--creator` defaults to the network's first account, the one `custody:create`
 * creates with unless told otherwise. A task that sends (or signs a handoff) needs `--network` and
 * signs as account #0 unless told `--signer N|ADDRESS`, `--keystore FILE` or `--signer-var NAME`;
 * a handoff is signed only by one of its two custodians.
 *
 * With `--watch URL` the history and EPCIS tasks ask a Custos watch's index which transactions carry
 * the shipment's events, read those receipts from the chain and re-verify every signature; an index
 * that leaves something out makes them fail, never print a shorter history.
 *
 * `custody:history` dates a handoff or checkpoint by the time it was signed (as the EPCIS export
 * does), with the block that recorded it alongside.
 */
import { task } from "hardhat/config";
import { int, lazy, needed, optional, signing, text } from "./support.js";

const actions = () => import("./actions/custody.js");
const ledger = optional("ledger", "CustodyLedger address");
const watch = optional(
  "watch",
  "a Custos watch's URL (npm run watch): read which transactions to check from its index instead of replaying logs",
);

/** `--shipment`, or `--epc` with `--creator`, for a task that reads one shipment. */
function namesShipment(id: string, description: string) {
  return task(id, description)
    .addOption(optional("shipment", "the shipment id (or give --epc, with --creator)"))
    .addOption(optional("epc", "the shipment's GS1 EPC URI, instead of --shipment"))
    .addOption(optional("creator", "with --epc: the shipment's creator (default: the first account)"));
}

export const custodyTasks = [
  namesShipment(
    "custody:history",
    "Rebuilds a shipment's custody chain and checkpoints from events, re-verifying every signature",
  )
    .addOption(optional("ledger", "CustodyLedger address (default: CUSTOS_CUSTODY_LEDGER or the Ignition deployment)"))
    .addOption(watch)
    .addFlag({ name: "json", description: "print the history as JSON instead of a timeline" })
    .setAction(lazy(actions, "history"))
    .build(),

  signing(
    namesShipment(
      "custody:prove-reading",
      "Proves one raw reading of a tracker against its checkpoint's root (and, with --submit, posts an excursion)",
    )
      .addOption(needed("seq", "the checkpoint's sequence number"))
      .addOption(needed("index", "the reading's index within that checkpoint"))
      .addOption(needed("readings", "the tracker's data directory (or its tracker.jsonl)"))
      .addOption(ledger)
      .addFlag({
        name: "submit",
        description: "post the proof on chain as an excursion (the reading must be out of range)",
      }),
  )
    .setAction(lazy(actions, "proveReading"))
    .build(),

  namesShipment("custody:epcis", "Writes a shipment's history as a GS1 EPCIS 2.0 JSON-LD document")
    .addOption(optional("out", "where to write it (default: print)"))
    .addOption(optional("locations", "JSON file mapping location ids (keccak256 of a URI) to their URIs"))
    .addOption(ledger)
    .addOption(watch)
    .setAction(lazy(actions, "epcis"))
    .build(),

  signing(
    task("custody:create", "Creates a shipment; the signer is its first custodian")
      .addOption(needed("epc", "the shipment's GS1 EPC URI (e.g. urn:epc:id:sscc:0614141.1234567890)"))
      .addOption(needed("tracker", "the tracker device id"))
      .addOption(needed("receiver", "the receiver's address"))
      .addOption(int("deadlineIn", "seconds from now it must be delivered by", 172_800))
      .addOption(int("maxSilence", "longest allowed silence between checkpoints (s)", 3_600))
      // Text, not INT: Hardhat 3's INT has no sign, and a word starting with "-" reads as an option.
      .addOption(
        text(
          "minTemp",
          'lowest allowed temperature (hundredths of °C; a negative one with a leading space: " -2000")',
          "200",
        ),
      )
      .addOption(text("maxTemp", "highest allowed temperature (hundredths of °C)", "800"))
      .addOption(text("metadata", "text whose keccak256 is the metadata hash", ""))
      .addOption(
        optional(
          "childrenRoot",
          "for a pallet: the Merkle root of its children (StandardMerkleTree over [bytes32 keccak256(epc)])",
        ),
      )
      .addFlag({
        name: "acceptOwnerKeys",
        description: "accept a tracker key its owner installed alone (provenance not reaching the manufacturer)",
      })
      .addOption(ledger),
  )
    .setAction(lazy(actions, "create"))
    .build(),

  signing(
    namesShipment(
      "custody:sign-handoff",
      "Signs a handoff as the signer (the next seq is read from the chain) and writes it to a file",
    )
      .addOption(needed("from", "the current custodian"))
      .addOption(needed("to", "the next custodian"))
      .addOption(text("bizStep", "GS1 CBV business step", "shipping"))
      .addOption(text("disposition", "GS1 CBV disposition", "in_transit"))
      .addOption(text("readPoint", "the read point's URI", "urn:epc:id:sgln:0614141.00001.0"))
      .addOption(int("validFor", "seconds the signature stays valid", 3_600))
      .addOption(optional("message", "a handoff file to countersign (instead of building one)"))
      .addOption(needed("out", "the handoff file to write (message and signatures)"))
      .addOption(ledger),
  )
    .setAction(lazy(actions, "signHandoff"))
    .build(),

  signing(
    task(
      "custody:handoff",
      "Submits a handoff signed by both custodians (a file from custody:sign-handoff); anyone may",
    )
      .addOption(needed("message", "the handoff file with both signatures"))
      .addOption(ledger),
  )
    .setAction(lazy(actions, "handoff"))
    .build(),
];

/** LocationBeacons: a quarantined device's signed positions, each an alert to the owner it names. */
import { ponder } from "ponder:registry";
import { beaconRecipientChange, locationBeacon } from "ponder:schema";
import { admin } from "./lib/admin.js";
import { raiseAlert } from "./lib/alert.js";
import { eventId, lower, placeOf } from "./lib/rows.js";

ponder.on("LocationBeacons:LocationBeaconPosted", async ({ event, context }) => {
  const { deviceId, owner, nonce, at, recipients, ciphertext } = event.args;
  await context.db.insert(locationBeacon).values({
    id: eventId(event),
    deviceId,
    owner: lower(owner),
    nonce,
    at,
    recipients: lower(recipients),
    ciphertext: lower(ciphertext),
    ...placeOf(event),
  });
  // The sealed location travels as it is: the owner (or a responder) opens it with its beacon key.
  await raiseAlert(
    context,
    event,
    "device.location_beacon",
    { owners: [owner], device: deviceId.toString() },
    { nonce: nonce.toString(), at: at.toString(), recipients: lower(recipients), ciphertext: lower(ciphertext) },
  );
});

// An owner's beacon recipients: its own key, responders added and removed.
for (const [name, change] of [
  ["BeaconKeySet", "beacon_key"],
  ["ResponderAdded", "responder_added"],
  ["ResponderRemoved", "responder_removed"],
] as const)
  ponder.on(`LocationBeacons:${name}`, async ({ event, context }) => {
    await context.db.insert(beaconRecipientChange).values({
      id: eventId(event),
      owner: lower(event.args.owner),
      change,
      key: lower(event.args.key),
      ...placeOf(event),
    });
  });

ponder.on("LocationBeacons:EIP712DomainChanged", admin("LocationBeacons", "EIP712DomainChanged"));

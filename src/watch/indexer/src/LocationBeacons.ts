/** LocationBeacons: a quarantined device's signed positions, each an alert to the owner it names. */
import { ponder } from "ponder:registry";
import { locationBeacon } from "ponder:schema";
import { admin } from "./lib/admin.js";
import { raiseAlert } from "./lib/alert.js";
import { eventId, lower, placeOf } from "./lib/rows.js";

ponder.on("LocationBeacons:LocationBeaconPosted", async ({ event, context }) => {
  const { deviceId, owner, latitudeE7, longitudeE7, at } = event.args;
  await context.db.insert(locationBeacon).values({
    id: eventId(event),
    deviceId,
    owner: lower(owner),
    latitudeE7,
    longitudeE7,
    at,
    ...placeOf(event),
  });
  await raiseAlert(
    context,
    event,
    "device.location_beacon",
    { owners: [owner], device: deviceId.toString() },
    { latitudeE7, longitudeE7, at: at.toString() },
  );
});

ponder.on("LocationBeacons:EIP712DomainChanged", admin("LocationBeacons", "EIP712DomainChanged"));

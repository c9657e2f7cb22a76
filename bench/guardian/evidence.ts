/**
 * A realistic vote reason for the gas bench: the default policy's evidence that a Zürich lock
 * reported from outside its fleet's geofence three times in a row, and its keccak256.
 */
import { evaluate } from "../../src/guardian/policy/index.js";
import { DAY, T0, fleetPolicy, honestDevice } from "./honest.js";

export function benchEvidence(device: bigint) {
  const obs = { ...honestDevice(7, { days: 2, fleet: 0 }), device };
  const away = { latitudeE7: 475_500_000, longitudeE7: 76_000_000 }; // Basel, ~75 km away
  for (let i = 1; i <= 3; i++)
    obs.locations.push({
      at: T0 + 2 * DAY + i * 600,
      ...away,
      source: "report",
      txHash: "0x" + "ab".repeat(32),
      blockNumber: 1,
    });
  const e = evaluate(fleetPolicy(), obs, T0 + 2 * DAY + 1_800);
  if (e.decision !== "fire") throw new Error("bench: the evidence should fire the geofence rule");
  return e;
}

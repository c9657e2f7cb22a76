/**
 * Misbehaving devices for the detection check: an honest device (honest.ts) that, from day 3 on,
 * does what one rule describes.
 */
import type { DeviceObservations, RuleName } from "../../src/guardian/policy/index.js";
import { DAY, FIRMWARE, T0, honestDevice } from "./honest.js";

const FROM = T0 + 3 * DAY;
const far = <L extends { latitudeE7: number }>(l: L, km: number): L => ({
  ...l,
  latitudeE7: l.latitudeE7 + Math.round(km * 89_932),
});
const tx = (i: number) => ({ txHash: "0x" + i.toString(16).padStart(64, "e"), blockNumber: i });

export function misbehaving(rule: RuleName, seed: number): DeviceObservations {
  const d = honestDevice(seed, { days: 7, fleet: rule === "revokedFirmware" ? 0 : seed % 3 });
  switch (rule) {
    case "contradicted":
      d.excursions.push({ at: FROM, shipment: "0x" + "5".repeat(64), ...tx(seed) });
      break;
    case "revokedFirmware":
      d.firmware = d.firmware.filter((f) => f.firmwareHash !== FIRMWARE.v2); // never updates
      break;
    case "geofence":
      d.locations = d.locations.map((l) => (l.at >= FROM ? far(l, 60) : l));
      break;
    case "silent":
      d.locations = d.locations.filter((l) => l.at < FROM);
      d.lastSeenAt = d.locations[d.locations.length - 1].at;
      break;
    case "rotationAway":
      d.rotations = [{ at: FROM, provenance: false, ...tx(seed) }];
      d.locations = d.locations.map((l) => (l.at > FROM ? far(l, 120) : l));
      break;
    case "refusalBurst":
      // Just before an hourly evaluation: the simulation samples hourly, a guardian service
      // evaluates a device when its refusals arrive.
      for (let i = 0; i < 40; i++)
        d.refusals.push({ at: FROM - 200 + i * 5, id: `h${seed}-${i}`, code: "bad_signature" });
      d.refusals.sort((a, b) => a.at - b.at);
      break;
    case "overRate": {
      const rate = 100n;
      d.meteredRatePerSecond = rate;
      d.vouchers = [];
      let total = 0n;
      for (let t = T0 + 600; t < T0 + 7 * DAY; t += 600) {
        total += rate * 600n * (t >= FROM ? 2n : 1n); // signs at twice its rate from day 3
        d.vouchers.push({ at: t, channel: "0x" + seed.toString(16).padStart(64, "0"), cumulativeAmount: total });
      }
      break;
    }
  }
  return d;
}

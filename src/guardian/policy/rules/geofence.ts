/** A device whose latest location reports lie outside its fleet's geofence (circle or polygon). */
import type { Rule } from "../finding.js";
import type { Geofence, GeofenceParams } from "../policy.js";
import { distanceMeters, distanceToRing, insidePolygon, type Point } from "../geo.js";

/** How far outside the fence `p` is (m); 0 when inside. */
export function outsideBy(p: Point, fence: Geofence): number {
  if ("circle" in fence) return Math.max(0, distanceMeters(p, fence.circle.center) - fence.circle.radiusMeters);
  return insidePolygon(p, fence.polygon) ? 0 : distanceToRing(p, fence.polygon);
}

export const geofence: Rule<GeofenceParams> = (obs, params, { now, geofence: fence }) => {
  if (!fence) return undefined;
  const reports = obs.locations.filter((l) => l.at <= now).sort((a, b) => a.at - b.at);
  if (reports.length === 0) return undefined;
  const latest = reports.slice(-params.consecutiveOutside);
  const outside = latest.map((l) => outsideBy(l, fence));
  const fire = latest.length === params.consecutiveOutside && outside.every((d) => d > params.toleranceMeters);
  return {
    rule: "geofence",
    decision: fire ? "fire" : "clear",
    params,
    observations: latest.map((l, i) => ({ kind: "location", ...l, outsideMeters: Math.round(outside[i]) })),
    summary: fire
      ? `the last ${latest.length} reports are outside the geofence (by ≥ ${Math.round(Math.min(...outside))} m)`
      : `within the geofence (last report ${Math.round(outside[outside.length - 1])} m outside, tolerance ${params.toleranceMeters} m)`,
  };
};

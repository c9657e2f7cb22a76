/**
 * A key rotated without provenance (the old key did not co-sign it) followed by activity far from
 * the device's usual place: what a thief who re-keyed a stolen device looks like.
 */
import type { Rule } from "../finding.js";
import type { RotationAwayParams } from "../policy.js";
import { distanceMeters, medianPoint } from "../geo.js";

export const rotationAway: Rule<RotationAwayParams> = (obs, params, { now }) => {
  const bare = obs.rotations.filter((r) => !r.provenance && r.at <= now && now - r.at <= params.withinSeconds);
  if (bare.length === 0) return undefined;
  const rotation = bare.reduce((a, b) => (b.at >= a.at ? b : a));
  const before = obs.locations.filter((l) => l.at < rotation.at);
  if (before.length < params.minHistory) return undefined; // no usual place known: nothing to compare
  const usual = medianPoint(before);
  const after = obs.locations.filter((l) => l.at >= rotation.at && l.at <= now);
  const far = after.filter((l) => distanceMeters(l, usual) > params.distanceMeters);
  const latest = after.length > 0 ? after.reduce((a, b) => (b.at >= a.at ? b : a)) : undefined;
  // Fires while the device's latest report since the rotation is far away; clears once it is back.
  const fire = latest !== undefined && distanceMeters(latest, usual) > params.distanceMeters;
  return {
    rule: "rotationAway",
    decision: fire ? "fire" : "clear",
    params,
    observations: [
      { kind: "keyRotation", ...rotation },
      { kind: "usualPlace", ...usual },
      ...far.map((l) => ({ kind: "location", ...l })),
    ],
    summary: fire
      ? `key rotated without provenance at ${rotation.at}, then ${Math.round(distanceMeters(latest!, usual))} m from its usual place`
      : `key rotated without provenance at ${rotation.at}; still near its usual place`,
  };
};

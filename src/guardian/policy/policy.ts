/** The policy file's types: rule parameters, per-fleet/manufacturer scopes, geofences. */
import type { Point } from "./geo.js";

export interface ContradictedParams {
  enabled: boolean;
  /** Look back this far for excursion proofs that exposed the device (s). */
  windowSeconds: number;
  /** Fire at this many proofs in the window. */
  minProofs: number;
}
export interface RevokedFirmwareParams {
  enabled: boolean;
  /** Time a device has to move off a revoked image before it fires (s). */
  graceSeconds: number;
}
export interface GeofenceParams {
  enabled: boolean;
  /** Fire when this many latest location reports in a row are outside. */
  consecutiveOutside: number;
  /** A report this close to the fence (m) counts as inside: GNSS error. */
  toleranceMeters: number;
}
export interface SilentParams {
  enabled: boolean;
  /** Heartbeat assumed when the device declared none (s). */
  heartbeatSeconds: number;
  /** Fire after this many heartbeats of silence. */
  graceFactor: number;
}
export interface RotationAwayParams {
  enabled: boolean;
  /** Activity this soon after a rotation without provenance counts (s). */
  withinSeconds: number;
  /** "Far" from the device's usual place (m). */
  distanceMeters: number;
  /** Location reports before the rotation needed to know the usual place. */
  minHistory: number;
}
export interface RefusalBurstParams {
  enabled: boolean;
  windowSeconds: number;
  /** Fire at this many refused messages signed by the device within the window. */
  maxRefusals: number;
}
export interface OverRateParams {
  enabled: boolean;
  windowSeconds: number;
  /** Allowed excess over the metered rate (0.1 = 10 %). */
  tolerance: number;
  /** Seconds of rate a payer may sign ahead (prepayment). */
  burstSeconds: number;
}

export interface RuleParams {
  contradicted: ContradictedParams;
  revokedFirmware: RevokedFirmwareParams;
  geofence: GeofenceParams;
  silent: SilentParams;
  rotationAway: RotationAwayParams;
  refusalBurst: RefusalBurstParams;
  overRate: OverRateParams;
}

export type RuleName = keyof RuleParams;
export const RULE_NAMES: readonly RuleName[] = [
  "contradicted",
  "revokedFirmware",
  "geofence",
  "silent",
  "rotationAway",
  "refusalBurst",
  "overRate",
];

export type Geofence = { circle: { center: Point; radiusMeters: number } } | { polygon: Point[] };

export interface Scope {
  name: string;
  match: { fleet?: string; manufacturer?: string };
  geofence?: Geofence;
  rules?: { [R in RuleName]?: Partial<RuleParams[R]> };
}

export interface Policy {
  version: 1;
  name: string;
  rules: RuleParams;
  scopes?: Scope[];
}

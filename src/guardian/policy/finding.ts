/** What a rule returns: its decision and the evidence it rests on. */
import type { RuleName } from "./policy.js";
import type { Geofence } from "./policy.js";

export interface Finding {
  rule: RuleName;
  decision: "fire" | "clear";
  /** The rule's effective parameters (after the scope's overrides). */
  params: object;
  /** The observations the decision rests on, each naming its transaction (or relayer id). */
  observations: object[];
  /** One line for people. */
  summary: string;
}

export interface RuleContext {
  now: number;
  /** The scope's geofence, when it has one. */
  geofence?: Geofence;
}

/** A rule: a pure function of a device's observations; `undefined` when it does not apply to it. */
export type Rule<P> = (
  obs: import("./observations.js").DeviceObservations,
  params: P,
  ctx: RuleContext,
) => Finding | undefined;

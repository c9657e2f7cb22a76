/** A burst of relayer-refused messages signed by one device: an identity being hammered (or replayed). */
import type { Rule } from "../finding.js";
import type { RefusalBurstParams } from "../policy.js";

export const refusalBurst: Rule<RefusalBurstParams> = (obs, params, { now }) => {
  const recent = obs.refusals.filter((r) => r.at > now - params.windowSeconds && r.at <= now);
  const fire = recent.length >= params.maxRefusals;
  return {
    rule: "refusalBurst",
    decision: fire ? "fire" : "clear",
    params,
    observations: fire ? recent.map((r) => ({ kind: "relayerRefusal", ...r })) : [],
    summary: `${recent.length} refused message(s) in the last ${params.windowSeconds} s (fires at ${params.maxRefusals})`,
  };
};

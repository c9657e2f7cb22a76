/** A tracker contradicted by its own readings: an excursion proof against its checkpoints exposed it. */
import type { Rule } from "../finding.js";
import type { ContradictedParams } from "../policy.js";

export const contradicted: Rule<ContradictedParams> = (obs, params, { now }) => {
  const recent = obs.excursions.filter((e) => e.at > now - params.windowSeconds && e.at <= now);
  const fire = recent.length >= params.minProofs;
  return {
    rule: "contradicted",
    decision: fire ? "fire" : "clear",
    params,
    observations: recent.map((e) => ({ kind: "excursionProof", ...e })),
    summary: `${recent.length} excursion proof(s) in the last ${params.windowSeconds} s (fires at ${params.minProofs})`,
  };
};

/**
 * A burst of relayer-refused messages signed by one device: an identity being hammered (or
 * replayed). Counted as distinct signed messages (by id): the same message refused again, by the
 * same relayer or another, is one.
 */
import type { Rule } from "../finding.js";
import type { RefusalBurstParams } from "../policy.js";
import type { RelayerRefusal } from "../observations.js";

export const refusalBurst: Rule<RefusalBurstParams> = (obs, params, { now }) => {
  const recent = new Map<string, RelayerRefusal>();
  for (const r of obs.refusals)
    if (r.at > now - params.windowSeconds && r.at <= now && !recent.has(r.id)) recent.set(r.id, r);
  const fire = recent.size >= params.maxRefusals;
  return {
    rule: "refusalBurst",
    decision: fire ? "fire" : "clear",
    params,
    observations: fire ? [...recent.values()].map((r) => ({ kind: "relayerRefusal", ...r })) : [],
    summary: `${recent.size} refused message(s) in the last ${params.windowSeconds} s (fires at ${params.maxRefusals})`,
  };
};

/** A device silent for longer than its declared heartbeat allows. */
import type { Rule } from "../finding.js";
import type { SilentParams } from "../policy.js";

export const silent: Rule<SilentParams> = (obs, params, { now }) => {
  const heartbeat = obs.heartbeatSeconds ?? params.heartbeatSeconds;
  const since = obs.lastSeenAt ?? obs.firstSeenAt;
  const silence = now - since;
  const limit = heartbeat * params.graceFactor;
  const fire = silence > limit;
  return {
    rule: "silent",
    decision: fire ? "fire" : "clear",
    params: { ...params, heartbeatSeconds: heartbeat },
    observations: [{ kind: "lastSeen", at: since }],
    summary: `silent for ${silence} s (limit ${limit} s: ${params.graceFactor} × heartbeat ${heartbeat} s)`,
  };
};

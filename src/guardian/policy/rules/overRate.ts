/**
 * A payer signing faster than its metered rate allows: within the window, the vouchers it signed
 * promise more than the rate times the window (plus tolerance and a prepaid burst). Per channel.
 */
import type { Rule } from "../finding.js";
import type { OverRateParams } from "../policy.js";

export const overRate: Rule<OverRateParams> = (obs, params, { now }) => {
  const rate = obs.meteredRatePerSecond;
  if (rate === undefined || obs.vouchers.length === 0) return undefined;
  const from = now - params.windowSeconds;
  // Allowance in base units, in integers: rate × (window × (1 + tolerance) + burst).
  const allowance = rate * BigInt(Math.ceil(params.windowSeconds * (1 + params.tolerance)) + params.burstSeconds);
  let worst: { channel: string; signed: bigint; first: object; last: object } | undefined;
  for (const channel of new Set(obs.vouchers.map((v) => v.channel))) {
    const vs = obs.vouchers.filter((v) => v.channel === channel && v.at <= now).sort((a, b) => a.at - b.at);
    const before = vs.filter((v) => v.at <= from);
    const inWindow = vs.filter((v) => v.at > from);
    if (inWindow.length === 0) continue;
    const base = before.length > 0 ? before[before.length - 1] : undefined;
    const last = inWindow[inWindow.length - 1];
    const signed = last.cumulativeAmount - (base?.cumulativeAmount ?? 0n);
    if (!worst || signed > worst.signed) worst = { channel, signed, first: base ?? inWindow[0], last };
  }
  if (!worst) return undefined;
  const fire = worst.signed > allowance;
  return {
    rule: "overRate",
    decision: fire ? "fire" : "clear",
    params,
    observations: [
      { kind: "voucher", ...worst.first },
      { kind: "voucher", ...worst.last },
      { kind: "meteredRate", perSecond: rate },
    ],
    summary: `signed ${worst.signed} on ${worst.channel} in ${params.windowSeconds} s (allowed ${allowance})`,
  };
};

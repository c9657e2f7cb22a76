/**
 * A payer signing faster than its metered rate allows: between two vouchers of one channel, the
 * later at most `windowSeconds` old, the payer promised more than the rate over the time between
 * them (plus `tolerance`, plus `burstSeconds` of rate paid ahead). Every such pair is checked, so a
 * burst is caught whenever it happened within the window; the pair may start before the window
 * (the last voucher before it), so a slow stream is measured over its whole span, not from zero.
 * The rate is the channel's own (its terms), else the device's declared `meteredRatePerSecond`.
 */
import type { Rule } from "../finding.js";
import type { OverRateParams } from "../policy.js";
import type { VoucherSeen } from "../observations.js";

/** `PaymentChannels.UNCAPPED`: a channel without a rate cap has no rate to exceed. */
const UNCAPPED = (1n << 96n) - 1n;

export const overRate: Rule<OverRateParams> = (obs, params, { now }) => {
  const from = now - params.windowSeconds;
  const allowed = (rate: bigint, seconds: number) =>
    rate * BigInt(Math.ceil(seconds * (1 + params.tolerance)) + params.burstSeconds);
  let worst:
    { channel: string; rate: bigint; excess: bigint; signed: bigint; a: VoucherSeen; b: VoucherSeen } | undefined;
  let measured = false;
  for (const channel of new Set(obs.vouchers.map((v) => v.channel))) {
    const vs = obs.vouchers.filter((v) => v.channel === channel && v.at <= now).sort((a, b) => a.at - b.at);
    const first = vs.findIndex((v) => v.at > from);
    if (first < 0) continue;
    const start = Math.max(0, first - 1);
    for (let j = Math.max(first, 1); j < vs.length; j++) {
      const b = vs[j];
      const rate = b.ratePerSecond ?? obs.meteredRatePerSecond;
      if (rate === undefined || rate === UNCAPPED) continue;
      for (let i = start; i < j; i++) {
        const a = vs[i];
        measured = true;
        const signed = b.cumulativeAmount - a.cumulativeAmount;
        const excess = signed - allowed(rate, b.at - a.at);
        if (!worst || excess > worst.excess) worst = { channel, rate, excess, signed, a, b };
      }
    }
  }
  if (!measured || !worst) return undefined;
  const fire = worst.excess > 0n;
  const span = worst.b.at - worst.a.at;
  return {
    rule: "overRate",
    decision: fire ? "fire" : "clear",
    params,
    observations: [
      { kind: "voucher", ...worst.a },
      { kind: "voucher", ...worst.b },
      { kind: "meteredRate", perSecond: worst.rate },
    ],
    summary: `signed ${worst.signed} on ${worst.channel} in ${span} s (allowed ${allowed(worst.rate, span)} at ${worst.rate}/s)`,
  };
};

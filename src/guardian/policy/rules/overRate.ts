/**
 * A payer signing faster than its metered rate allows: a voucher promising more in total than the
 * channel's rate allows by the time it was seen — `allowance + rate × ((at − openedAt) × (1 +
 * tolerance) + burstSeconds)`, `burstSeconds` of rate being what a payer may sign ahead. Fires
 * while such a voucher was seen within `windowSeconds`.
 *
 * Why the whole life of the channel and not the rate between two vouchers: a voucher carries no
 * time, so a guardian dates it when it is reported, and a reporter (a payee, or anyone holding two
 * of the payer's vouchers) can hold one back and report both together — a burst between two
 * vouchers can be staged, "more than the rate allows by now" cannot: `at` is a bound on when it was
 * signed, and a late report only raises the bound. The chain pays no voucher beyond the same cap.
 * The rate is the channel's own (its terms), else the device's declared `meteredRatePerSecond`
 * counted from when it was first seen.
 */
import type { Rule } from "../finding.js";
import type { OverRateParams } from "../policy.js";
import type { VoucherSeen } from "../observations.js";

/** `PaymentChannels.UNCAPPED`: a channel without a rate cap has no rate to exceed. */
const UNCAPPED = (1n << 96n) - 1n;

export const overRate: Rule<OverRateParams> = (obs, params, { now }) => {
  let worst: { v: VoucherSeen; rate: bigint; allowed: bigint; excess: bigint } | undefined;
  for (const v of obs.vouchers) {
    if (v.at > now || v.at <= now - params.windowSeconds) continue;
    const rate = v.ratePerSecond ?? obs.meteredRatePerSecond;
    if (rate === undefined || rate === UNCAPPED) continue;
    const elapsed = Math.max(0, v.at - (v.openedAt ?? obs.firstSeenAt));
    const allowed =
      (v.allowance ?? 0n) + rate * BigInt(Math.ceil(elapsed * (1 + params.tolerance)) + params.burstSeconds);
    const excess = v.cumulativeAmount - allowed;
    if (!worst || excess > worst.excess) worst = { v, rate, allowed, excess };
  }
  if (!worst) return undefined;
  const fire = worst.excess > 0n;
  return {
    rule: "overRate",
    decision: fire ? "fire" : "clear",
    params,
    observations: [
      { kind: "voucher", ...worst.v },
      { kind: "meteredRate", perSecond: worst.rate, allowedByThen: worst.allowed },
    ],
    summary: `signed ${worst.v.cumulativeAmount} in total on ${worst.v.channel} by ${worst.v.at}; the rate allowed ${worst.allowed}`,
  };
};

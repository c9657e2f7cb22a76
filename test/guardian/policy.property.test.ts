/**
 * Property: an honest simulated device (bench/guardian/honest.ts: any seed, any fleet, a week)
 * never fires the default policy at any hourly evaluation — the guardians never vote to isolate it.
 */
import { expect } from "chai";
import fc from "fast-check";
import { evaluate } from "../../src/guardian/policy/index.js";
import { DAY, FLEETS, T0, asOf, fleetPolicy, honestDevice } from "../../bench/guardian/honest.js";
import { assertProperty } from "../helpers/property.js";

describe("guardian policy (property)", function () {
  it("an honest device never fires the default policy over a simulated week", function () {
    const policy = fleetPolicy();
    const runs = assertProperty(
      fc.property(
        fc.integer({ min: 1, max: 2 ** 31 - 1 }),
        fc.integer({ min: 0, max: FLEETS.length - 1 }),
        (seed, fleet) => {
          const obs = honestDevice(seed, { days: 7, fleet });
          for (let now = T0 + 3_600; now <= T0 + 7 * DAY; now += 3_600) {
            const e = evaluate(policy, asOf(obs, now), now);
            if (e.decision !== "clear")
              throw new Error(
                `fired at ${now}: ${e.findings.filter((f) => f.decision === "fire").map((f) => f.summary)}`,
              );
          }
        },
      ),
      200,
    );
    expect(runs).to.be.greaterThan(0);
  });
});

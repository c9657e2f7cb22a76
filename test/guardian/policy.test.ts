/**
 * The guardians' policy: the schema refuses bad policy files naming the field; each rule fires on
 * the misbehaviour it names and must not fire one step short of it (edge values); evidence is
 * content-addressed (canonical JSON, keccak256).
 */
import { expect } from "chai";
import { keccak256, toUtf8Bytes } from "ethers";
import {
  DEFAULT_POLICY,
  PolicyError,
  canonicalJson,
  evaluate,
  evidenceJson,
  parsePolicy,
  scopeOf,
  observationsOf,
  type DeviceObservations,
  type Policy,
  type RuleName,
} from "../../src/guardian/policy/index.js";

const T = 1_800_000_000;
const HOME = { latitudeE7: 473_700_000, longitudeE7: 85_400_000 };
const MANUFACTURER = "0x" + "a1".repeat(20);
let n = 0;
const tx = () => ({ txHash: "0x" + (++n).toString(16).padStart(64, "0"), blockNumber: n });
/** About `km` km north of `p`. */
const north = (p: typeof HOME, km: number) => ({ ...p, latitudeE7: p.latitudeE7 + Math.round(km * 89_932) });

/** A quiet, honest device seen a minute ago, with nothing else. */
function device(extra: Partial<DeviceObservations> = {}): DeviceObservations {
  return observationsOf(42n, {
    fleet: "zurich-locks",
    manufacturer: MANUFACTURER,
    heartbeatSeconds: 3_600,
    firstSeenAt: T - 30 * 86_400,
    lastSeenAt: T - 60,
    ...extra,
  });
}

const policy: Policy = {
  ...DEFAULT_POLICY,
  scopes: [
    { name: "zurich", match: { fleet: "zurich-locks" }, geofence: { circle: { center: HOME, radiusMeters: 5_000 } } },
  ],
};

/** The decision of rule `rule` alone (undefined when it does not apply). */
function ruleOf(obs: DeviceObservations, rule: RuleName, now = T, p: Policy = policy) {
  return evaluate(p, obs, now).findings.find((f) => f.rule === rule)?.decision;
}

describe("guardian policy", function () {
  describe("schema", function () {
    it("the default policy follows the published schema", function () {
      expect(parsePolicy(structuredClone(DEFAULT_POLICY))).to.deep.equal(DEFAULT_POLICY);
    });

    it("attack: a policy with a misspelt, missing or out-of-range parameter is refused, naming the field", function () {
      const bad = (edit: (p: Record<string, any>) => void) => {
        const p = structuredClone(DEFAULT_POLICY) as Record<string, any>;
        edit(p);
        try {
          parsePolicy(p, "fleet.json");
        } catch (err) {
          expect(err).to.be.instanceOf(PolicyError);
          return (err as PolicyError).problems.join("; ");
        }
        throw new Error("accepted");
      };
      expect(bad((p) => (p.rules.silent.graceFactr = 3))).to.include("rules.silent: unknown field graceFactr");
      expect(bad((p) => delete p.rules.geofence)).to.include("rules: missing geofence");
      expect(bad((p) => (p.rules.refusalBurst.maxRefusals = 0))).to.include(
        "rules.refusalBurst.maxRefusals: must be >= 1",
      );
      expect(bad((p) => (p.scopes = [{ name: "x", match: { manufacturer: "acme" } }]))).to.include(
        "scopes.0.match.manufacturer",
      );
      expect(
        bad((p) => (p.scopes = [{ name: "x", match: { fleet: "f" }, geofence: { polygon: [HOME, HOME] } }])),
      ).to.include("scopes.0.geofence");
    });

    it("a scope matches by fleet and/or manufacturer and overrides parameters", function () {
      const p: Policy = {
        ...policy,
        scopes: [
          {
            name: "acme",
            match: { manufacturer: MANUFACTURER.toUpperCase().replace("0X", "0x") },
            rules: { silent: { graceFactor: 2 } },
          },
        ],
      };
      expect(scopeOf(p, device())?.name).to.equal("acme");
      expect(scopeOf(p, device({ manufacturer: "0x" + "b2".repeat(20) }))).to.equal(undefined);
      // 2.5 heartbeats of silence: quiet under the default (6), fires under the scope's 2.
      const quiet = device({ lastSeenAt: T - 9_000 });
      expect(ruleOf(quiet, "silent", T, policy)).to.equal("clear");
      expect(ruleOf(quiet, "silent", T, p)).to.equal("fire");
    });
  });

  describe("rules: each fires on its misbehaviour and not one step short of it", function () {
    it("contradicted: an excursion proof in the window fires; one just outside it does not", function () {
      const w = DEFAULT_POLICY.rules.contradicted.windowSeconds;
      expect(ruleOf(device({ excursions: [{ at: T - w + 1, shipment: "0x01", ...tx() }] }), "contradicted")).to.equal(
        "fire",
      );
      expect(ruleOf(device({ excursions: [{ at: T - w, shipment: "0x01", ...tx() }] }), "contradicted")).to.equal(
        "clear",
      );
    });

    it("revokedFirmware: still on a revoked image once the grace period is over fires; a second before, or updated, does not", function () {
      const g = DEFAULT_POLICY.rules.revokedFirmware.graceSeconds;
      const fw = "0x" + "01".repeat(32);
      const revokedAt = T - g;
      const obs = (extra: Partial<DeviceObservations> = {}) =>
        device({
          firmware: [{ at: T - 40 * 86_400, firmwareHash: fw, ...tx() }],
          revokedFirmware: [{ at: revokedAt, firmwareHash: fw.toUpperCase().replace("0X", "0x"), ...tx() }],
          ...extra,
        });
      expect(ruleOf(obs(), "revokedFirmware")).to.equal("fire");
      expect(ruleOf(obs(), "revokedFirmware", T - 1)).to.equal("clear");
      const updated = obs();
      updated.firmware.push({ at: T - 100, firmwareHash: "0x" + "02".repeat(32), ...tx() });
      expect(ruleOf(updated, "revokedFirmware")).to.equal("clear");
    });

    it("geofence (circle): three reports in a row beyond the tolerance fire; two, or one back inside, do not", function () {
      const tol = DEFAULT_POLICY.rules.geofence.toleranceMeters;
      const out = north(HOME, 5 + tol / 1000 + 0.05); // 50 m beyond the tolerance
      const edge = north(HOME, 5 + tol / 1000 - 0.05); // 50 m inside the tolerance
      const at = (i: number, p: typeof HOME) => ({ at: T - 3_000 + i * 600, ...p, source: "report" as const, ...tx() });
      expect(ruleOf(device({ locations: [at(0, HOME), at(1, out), at(2, out), at(3, out)] }), "geofence")).to.equal(
        "fire",
      );
      expect(ruleOf(device({ locations: [at(0, HOME), at(1, HOME), at(2, out), at(3, out)] }), "geofence")).to.equal(
        "clear",
      );
      expect(ruleOf(device({ locations: [at(0, out), at(1, out), at(2, edge), at(3, out)] }), "geofence")).to.equal(
        "clear",
      );
      // A device of no fleet with a geofence: the rule does not apply.
      expect(
        ruleOf(device({ fleet: undefined, locations: [at(1, out), at(2, out), at(3, out)] }), "geofence"),
      ).to.equal(undefined);
    });

    it("geofence (polygon): reports outside the polygon fire; inside do not", function () {
      const square = [
        north(HOME, -1),
        { ...north(HOME, -1), longitudeE7: HOME.longitudeE7 + 200_000 },
        { ...north(HOME, 1), longitudeE7: HOME.longitudeE7 + 200_000 },
        north(HOME, 1),
      ];
      const p: Policy = {
        ...policy,
        scopes: [{ name: "sq", match: { fleet: "zurich-locks" }, geofence: { polygon: square } }],
      };
      const at = (i: number, pt: typeof HOME) => ({
        at: T - 3_000 + i * 600,
        ...pt,
        source: "checkpoint" as const,
        ...tx(),
      });
      const inside = { latitudeE7: HOME.latitudeE7, longitudeE7: HOME.longitudeE7 + 100_000 };
      const outside = north(HOME, 3);
      expect(
        ruleOf(device({ locations: [at(1, outside), at(2, outside), at(3, outside)] }), "geofence", T, p),
      ).to.equal("fire");
      expect(ruleOf(device({ locations: [at(1, inside), at(2, inside), at(3, inside)] }), "geofence", T, p)).to.equal(
        "clear",
      );
    });

    it("silent: more than graceFactor heartbeats of silence fires; exactly that many does not; the declared heartbeat counts", function () {
      const { graceFactor } = DEFAULT_POLICY.rules.silent;
      expect(ruleOf(device({ lastSeenAt: T - 3_600 * graceFactor - 1 }), "silent")).to.equal("fire");
      expect(ruleOf(device({ lastSeenAt: T - 3_600 * graceFactor }), "silent")).to.equal("clear");
      expect(ruleOf(device({ heartbeatSeconds: 86_400, lastSeenAt: T - 3_600 * graceFactor - 1 }), "silent")).to.equal(
        "clear",
      );
    });

    it("rotationAway: a rotation without provenance then reports far from the usual place fires; with provenance, or near, does not", function () {
      const d = DEFAULT_POLICY.rules.rotationAway.distanceMeters / 1000;
      const history = [0, 1, 2].map((i) => ({ at: T - 86_400 + i * 600, ...HOME, source: "report" as const, ...tx() }));
      const rotated = (provenance: boolean, km: number) =>
        device({
          rotations: [{ at: T - 3_600, provenance, ...tx() }],
          locations: [...history, { at: T - 600, ...north(HOME, km), source: "report", ...tx() }],
        });
      expect(ruleOf(rotated(false, d + 1), "rotationAway")).to.equal("fire");
      expect(ruleOf(rotated(false, d - 1), "rotationAway")).to.equal("clear");
      expect(ruleOf(rotated(true, d + 1), "rotationAway")).to.equal(undefined);
      // Too long after the rotation: no longer this rule's business.
      expect(
        ruleOf(rotated(false, d + 1), "rotationAway", T - 3_600 + DEFAULT_POLICY.rules.rotationAway.withinSeconds + 1),
      ).to.equal(undefined);
    });

    it("refusalBurst: maxRefusals refused messages within the window fire; one fewer does not", function () {
      const { maxRefusals, windowSeconds } = DEFAULT_POLICY.rules.refusalBurst;
      const burst = (k: number) =>
        Array.from({ length: k }, (_, i) => ({ at: T - windowSeconds + 1 + i, id: `r${i}`, code: "bad_signature" }));
      expect(ruleOf(device({ refusals: burst(maxRefusals) }), "refusalBurst")).to.equal("fire");
      expect(ruleOf(device({ refusals: burst(maxRefusals - 1) }), "refusalBurst")).to.equal("clear");
      // Attack: one message refused again and again (or by several relayers) is one refusal, not a burst.
      const again = Array.from({ length: maxRefusals * 2 }, (_, i) => ({ at: T - i, id: "r0", code: "nonce_used" }));
      expect(ruleOf(device({ refusals: again }), "refusalBurst")).to.equal("clear");
    });

    it("overRate: a voucher above allowance + rate × (time since open × (1 + tolerance) + burst) fires; exactly that does not", function () {
      const { tolerance, burstSeconds } = DEFAULT_POLICY.rules.overRate;
      const rate = 1_000n;
      const openedAt = T - 10_000;
      const at = T - 60;
      const allowed = 5_000n + rate * BigInt(Math.ceil((at - openedAt) * (1 + tolerance)) + burstSeconds);
      const paying = (amount: bigint, ratePerSecond: bigint | undefined = rate) =>
        device({
          vouchers: [
            {
              at: openedAt + 100,
              channel: "0xc",
              cumulativeAmount: 1_000n,
              ratePerSecond,
              allowance: 5_000n,
              openedAt,
            },
            { at, channel: "0xc", cumulativeAmount: amount, ratePerSecond, allowance: 5_000n, openedAt },
          ],
        });
      expect(ruleOf(paying(allowed + 1n), "overRate")).to.equal("fire");
      expect(ruleOf(paying(allowed), "overRate")).to.equal("clear");
      // The channel's own rate (its terms) decides, over the device's declared one.
      expect(ruleOf({ ...paying(allowed), meteredRatePerSecond: rate * 10n }, "overRate")).to.equal("clear");
      expect(ruleOf(paying(allowed, rate - 1n), "overRate")).to.equal("fire");
      expect(ruleOf(paying(allowed * 100n, (1n << 96n) - 1n), "overRate")).to.equal(undefined); // uncapped
      expect(ruleOf(device(), "overRate")).to.equal(undefined); // not a payer
      // Seen longer than the window ago: no longer this rule's business.
      const { windowSeconds } = DEFAULT_POLICY.rules.overRate;
      expect(ruleOf(paying(allowed + 1n), "overRate", at + windowSeconds)).to.equal(undefined);
    });

    it("attack: a reporter holding back a voucher and reporting two together cannot stage a burst (only the total by then counts)", function () {
      const rate = 10n;
      const openedAt = T - 100_000;
      // An honest payer at its rate; the second voucher was held back for a day and both arrive now.
      const v = (amount: bigint) => ({
        at: T - 1,
        channel: "0xc",
        cumulativeAmount: amount,
        ratePerSecond: rate,
        openedAt,
      });
      const honest = device({ vouchers: [v(rate * 10_000n), v(rate * 96_000n)] });
      expect(ruleOf(honest, "overRate")).to.equal("clear");
    });
  });

  describe("evidence", function () {
    it("is canonical JSON whose keccak256 is the vote's reason; it names the rule, its parameters and the transactions", function () {
      const loc = (i: number) => ({ at: T - 1_000 + i * 100, ...north(HOME, 20), source: "report" as const, ...tx() });
      const locations = [loc(0), loc(1), loc(2)];
      const e = evaluate(policy, device({ locations }), T);
      expect(e.decision).to.equal("fire");
      const json = evidenceJson(e.evidence);
      expect(e.reason).to.equal(keccak256(toUtf8Bytes(json)));
      const parsed = JSON.parse(json);
      expect(parsed.findings.map((f: { rule: string }) => f.rule)).to.deep.equal(["geofence"]);
      expect(parsed.findings[0].params).to.deep.equal(DEFAULT_POLICY.rules.geofence);
      expect(parsed.findings[0].observations.map((o: { txHash: string }) => o.txHash)).to.deep.equal(
        locations.map((l) => l.txHash),
      );
      expect(parsed.device).to.equal("42");
    });

    it("attack: reordered keys or a different serialiser give the same reason (content-addressed); any change gives another", function () {
      const a = { b: 1, a: [{ y: 2n, x: "é" }], c: null };
      const b = { c: null, a: [{ x: "é", y: 2n }], b: 1 };
      expect(canonicalJson(a)).to.equal(canonicalJson(b)).and.to.equal('{"a":[{"x":"é","y":"2"}],"b":1,"c":null}');
      const e1 = evaluate(policy, device({ lastSeenAt: T - 30_000 }), T);
      const e2 = evaluate(policy, device({ lastSeenAt: T - 30_001 }), T);
      expect(e1.decision).to.equal("fire");
      expect(e1.reason).to.not.equal(e2.reason);
      expect(evaluate(policy, device({ lastSeenAt: T - 30_000 }), T).reason).to.equal(e1.reason);
    });

    it("a clear decision carries every applicable rule's finding", function () {
      const e = evaluate(policy, device(), T);
      expect(e.decision).to.equal("clear");
      expect(e.evidence.findings.map((f) => f.rule)).to.deep.equal(["contradicted", "silent", "refusalBurst"]);
    });
  });
});

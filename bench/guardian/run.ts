/**
 * `npm run bench:guardian`: false quarantines in a 10,000-device simulated fleet over a simulated
 * week of honest behaviour (honest.ts) with the default policy (and the fleets' geofences), each
 * device evaluated every hour as a guardian would. Writes bench/results/guardian.json:
 * `guardian.false_quarantines` (devices the policy would have voted to flag) and, per rule, how
 * many evaluations fired it and on how many devices; and, as a check that the figure is not zero
 * by blindness, how many of 100 misbehaving devices per rule it catches (misbehaving.ts). Pure and
 * deterministic (seeded).
 */
import { mkdirSync, readFileSync, existsSync, writeFileSync } from "node:fs";
import path from "node:path";
import { RULE_NAMES, evaluate, type RuleName } from "../../src/guardian/policy/index.js";
import { DAY, T0, asOf, fleetPolicy, honestDevice } from "./honest.js";
import { misbehaving } from "./misbehaving.js";

const DEVICES = Number(process.env.GUARDIAN_SIM_DEVICES ?? 10_000);
const DAYS = 7;
const TICK = 3_600;

const policy = fleetPolicy();
const firings = Object.fromEntries(RULE_NAMES.map((r) => [r, 0])) as Record<RuleName, number>;
const devicesFired = Object.fromEntries(RULE_NAMES.map((r) => [r, new Set<number>()])) as Record<RuleName, Set<number>>;
const quarantined = new Set<number>();
let evaluations = 0;
const started = performance.now();
for (let d = 0; d < DEVICES; d++) {
  const device = honestDevice(d + 1, { days: DAYS });
  for (let now = T0 + TICK; now <= T0 + DAYS * DAY; now += TICK) {
    const e = evaluate(policy, asOf(device, now), now);
    evaluations++;
    if (e.decision !== "fire") continue;
    quarantined.add(d);
    for (const f of e.findings)
      if (f.decision === "fire") {
        firings[f.rule]++;
        devicesFired[f.rule].add(d);
      }
  }
}
const seconds = (performance.now() - started) / 1000;

// The other side of the figure: the same policy catches each misbehaviour (a cohort of 100
// devices per rule, honest until day 3, then misbehaving as the rule describes).
const COHORT = 100;
const detected = Object.fromEntries(RULE_NAMES.map((r) => [r, 0])) as Record<RuleName, number>;
for (const rule of RULE_NAMES) {
  for (let i = 0; i < COHORT; i++) {
    const device = misbehaving(rule, 1_000_000 + i);
    for (let now = T0 + TICK; now <= T0 + DAYS * DAY; now += TICK) {
      const e = evaluate(policy, asOf(device, now), now);
      if (e.findings.some((f) => f.rule === rule && f.decision === "fire")) {
        detected[rule]++;
        break;
      }
    }
  }
}

const results: Record<string, number> = {
  "guardian.false_quarantines": quarantined.size,
  "guardian.sim.devices": DEVICES,
  "guardian.sim.days": DAYS,
  "guardian.sim.evaluations": evaluations,
};
for (const r of RULE_NAMES) {
  results[`guardian.firings.${r}`] = firings[r];
  results[`guardian.devices_fired.${r}`] = devicesFired[r].size;
}
for (const r of RULE_NAMES) results[`guardian.detected_of_${COHORT}.${r}`] = detected[r];
const dir = path.join(import.meta.dirname, "..", "results");
mkdirSync(dir, { recursive: true });
const file = path.join(dir, "guardian.json");
// Other guardian figures (quarantine latency, by the guardian service's bench) stay as they are.
const previous = existsSync(file) ? (JSON.parse(readFileSync(file, "utf8")) as Record<string, number>) : {};
writeFileSync(file, JSON.stringify({ ...previous, ...results }, null, 2) + "\n");
console.table(results);
console.log(`${evaluations} evaluations in ${seconds.toFixed(1)} s; wrote bench/results/guardian.json`);
if (quarantined.size > 0 || RULE_NAMES.some((r) => detected[r] < COHORT)) process.exitCode = 1;

/**
 * Evaluating a policy over one device: the scope that applies, each enabled rule's finding, the
 * device's decision (fire when any rule fires, clear when none does) and its evidence, whose
 * canonical JSON's keccak256 is the reason hash of the guardian's vote.
 */
import { canonicalJson, reasonHash } from "./canonical.js";
import type { Finding, Rule } from "./finding.js";
import type { DeviceObservations } from "./observations.js";
import { RULE_NAMES, type Policy, type RuleName, type RuleParams, type Scope } from "./policy.js";
import { contradicted } from "./rules/contradicted.js";
import { revokedFirmware } from "./rules/revokedFirmware.js";
import { geofence } from "./rules/geofence.js";
import { silent } from "./rules/silent.js";
import { rotationAway } from "./rules/rotationAway.js";
import { refusalBurst } from "./rules/refusalBurst.js";
import { overRate } from "./rules/overRate.js";

export const RULES: { [R in RuleName]: Rule<RuleParams[R]> } = {
  contradicted,
  revokedFirmware,
  geofence,
  silent,
  rotationAway,
  refusalBurst,
  overRate,
};

export interface Evidence {
  kind: "custos.guardian.evidence/1";
  policy: { name: string; version: 1; hash: string };
  scope: string | null;
  device: string;
  at: number;
  decision: "fire" | "clear";
  /** Fire: the rules that fired. Clear: every rule that applied (each clear). */
  findings: Finding[];
}

export interface Evaluation {
  decision: "fire" | "clear";
  /** Every applicable rule's finding (fired or clear). */
  findings: Finding[];
  evidence: Evidence;
  /** keccak256 of the evidence's canonical JSON: the vote's reason (computed on first read). */
  readonly reason: string;
}

/** The first scope that matches the device (every field it names must match). */
export function scopeOf(policy: Policy, obs: Pick<DeviceObservations, "fleet" | "manufacturer">): Scope | undefined {
  return policy.scopes?.find(
    (s) =>
      (s.match.fleet === undefined || s.match.fleet === obs.fleet) &&
      (s.match.manufacturer === undefined || s.match.manufacturer.toLowerCase() === obs.manufacturer.toLowerCase()),
  );
}

const policyHashes = new WeakMap<Policy, string>();
function policyHash(policy: Policy): string {
  let h = policyHashes.get(policy);
  if (!h) policyHashes.set(policy, (h = reasonHash(policy)));
  return h;
}

/** Evaluates `policy` over `obs` at time `now` (unix seconds). Pure. */
export function evaluate(policy: Policy, obs: DeviceObservations, now: number): Evaluation {
  const scope = scopeOf(policy, obs);
  const findings: Finding[] = [];
  for (const name of RULE_NAMES) {
    const params = { ...policy.rules[name], ...(scope?.rules?.[name] ?? {}) } as RuleParams[typeof name];
    if (!params.enabled) continue;
    const finding = (RULES[name] as Rule<typeof params>)(obs, params, { now, geofence: scope?.geofence });
    if (finding) findings.push(finding);
  }
  const fired = findings.filter((f) => f.decision === "fire");
  const decision = fired.length > 0 ? "fire" : "clear";
  const evidence: Evidence = {
    kind: "custos.guardian.evidence/1",
    policy: { name: policy.name, version: policy.version, hash: policyHash(policy) },
    scope: scope?.name ?? null,
    device: obs.device.toString(),
    at: now,
    decision,
    findings: decision === "fire" ? fired : findings,
  };
  let reason: string | undefined;
  return {
    decision,
    findings,
    evidence,
    // Hashed when asked: a guardian hashes only what it votes on (a fleet's clear evaluations are most).
    get reason() {
      return (reason ??= reasonHash(evidence));
    },
  };
}

/** The evidence's canonical JSON (what a guardian stores and serves under its reason hash). */
export function evidenceJson(evidence: Evidence): string {
  return canonicalJson(evidence);
}

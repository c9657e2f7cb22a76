/** The guardians' policy: schema, default policy, rules as pure functions, evidence and its reason hash. */
export * from "./policy.js";
export * from "./observations.js";
export type { Finding, RuleContext, Rule } from "./finding.js";
export { DEFAULT_POLICY, POLICY_SCHEMA, PolicyError, loadPolicy, parsePolicy } from "./load.js";
export { RULES, evaluate, evidenceJson, scopeOf, type Evaluation, type Evidence } from "./evaluate.js";
export { canonicalJson, reasonHash } from "./canonical.js";
export { distanceMeters, insidePolygon, medianPoint, type Point } from "./geo.js";
export { outsideBy } from "./rules/geofence.js";

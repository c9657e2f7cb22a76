/**
 * Loading a policy file: JSON, validated against the published schema (schema.json); errors name
 * the field and what it must be. (YAML is not read: no YAML parser is a dependency of the project.)
 */
import { readFileSync } from "node:fs";
import { Ajv, type ErrorObject } from "ajv";
import schema from "./schema.json" with { type: "json" };
import defaultPolicyJson from "./default.json" with { type: "json" };
import type { Policy } from "./policy.js";

export { schema as POLICY_SCHEMA };

// strictRequired off: the rules block requires fields that its shared definitions (also used, partial, by scopes) declare.
const ajv = new Ajv({ allErrors: true, strict: true, strictRequired: false });
const validate = ajv.compile(schema);

export class PolicyError extends Error {
  constructor(
    readonly problems: string[],
    where: string,
  ) {
    super(`${where}: the policy does not follow schema.json:\n  ${problems.join("\n  ")}`);
    this.name = "PolicyError";
  }
}

function describe(e: ErrorObject): string {
  const field = e.instancePath === "" ? "(the policy)" : e.instancePath.slice(1).replaceAll("/", ".");
  if (e.keyword === "additionalProperties") return `${field}: unknown field ${e.params.additionalProperty} (remove it)`;
  if (e.keyword === "required") return `${field}: missing ${e.params.missingProperty}`;
  return `${field}: ${e.message}`;
}

/** `value` as a Policy, or a PolicyError listing every problem. */
export function parsePolicy(value: unknown, where = "policy"): Policy {
  if (!validate(value)) throw new PolicyError((validate.errors ?? []).map(describe), where);
  return value as unknown as Policy;
}

/** Reads and validates a JSON policy file. */
export function loadPolicy(file: string): Policy {
  let value: unknown;
  try {
    value = JSON.parse(readFileSync(file, "utf8"));
  } catch (err) {
    throw new PolicyError([`not readable as JSON: ${(err as Error).message}`], file);
  }
  return parsePolicy(value, file);
}

/** The default policy (default.json): rule parameters tuned so that honest devices never fire. */
export const DEFAULT_POLICY: Policy = parsePolicy(defaultPolicyJson, "default.json");

/**
 * The seeds every fast-check property runs with, one runner for all property tests.
 *
 * - In CI (`CI=true`): twice, first with the fixed seed `FC_SEED` (default 42), so that every CI
 *   run checks the same cases, then with a fresh seed, so that CI keeps finding new ones.
 * - Elsewhere: once, with `FC_SEED` when it is set (and `FC_PATH`, to replay a shrunk
 *   counterexample), else with a fresh seed.
 *
 * Each seed is printed before its pass, so that a pass that hangs or times out can be replayed
 * too; a failure's message carries the seed and path (fast-check's own report) and the line to
 * replay it.
 */
import fc from "fast-check";
import { randomInt } from "node:crypto";

export const DEFAULT_CI_SEED = 42;

export interface PropertyPass {
  seed: number;
  numRuns: number;
  /** A counterexample's path to replay (`FC_PATH`), only with the seed it came from. */
  path?: string;
  why: "fixed for CI" | "fresh" | "from FC_SEED";
}

/** The passes a property of `numRuns` runs makes here (see the file's comment). */
export function propertyRuns(numRuns: number, env: NodeJS.ProcessEnv = process.env): PropertyPass[] {
  const given = env.FC_SEED === undefined || env.FC_SEED === "" ? undefined : Number(env.FC_SEED);
  if (given !== undefined && !Number.isSafeInteger(given))
    throw new Error(`FC_SEED must be an integer, not ${env.FC_SEED}`);
  const path = env.FC_PATH === undefined || env.FC_PATH === "" ? {} : { path: env.FC_PATH };
  // fast-check takes any 32-bit integer as a seed.
  const fresh = (): PropertyPass => ({ seed: randomInt(2 ** 31), numRuns, why: "fresh" });
  if (env.CI === "true") return [{ seed: given ?? DEFAULT_CI_SEED, numRuns, ...path, why: "fixed for CI" }, fresh()];
  if (given !== undefined) return [{ seed: given, numRuns, ...path, why: "from FC_SEED" }];
  return [fresh()];
}

/** What fast-check is given for a pass. */
function parameters(p: PropertyPass): { seed: number; numRuns: number; path?: string } {
  return { seed: p.seed, numRuns: p.numRuns, ...(p.path === undefined ? {} : { path: p.path }) };
}

function announce(p: PropertyPass): void {
  console.log(`      fast-check seed ${p.seed} (${p.why})${p.path ? ` path ${p.path}` : ""}, ${p.numRuns} runs`);
}

/** Adds the line that replays the failing pass to fast-check's report (which gives seed and path). */
function withReplay(err: unknown, p: PropertyPass): unknown {
  if (err instanceof Error) {
    const path = /path: "([^"]*)"/.exec(err.message)?.[1] ?? p.path;
    err.message += `\nReplay: FC_SEED=${p.seed}${path ? ` FC_PATH=${path}` : ""} npx hardhat test <this file>`;
  }
  return err;
}

/**
 * `fc.assert(property)` once per pass of {@link propertyRuns}; returns how many runs were made in
 * all (a test that counts its runs compares with it).
 */
export function assertProperty<Ts>(property: fc.IAsyncProperty<Ts>, numRuns: number): Promise<number>;
export function assertProperty<Ts>(property: fc.IProperty<Ts>, numRuns: number): number;
export function assertProperty<Ts>(
  property: fc.IProperty<Ts> | fc.IAsyncProperty<Ts>,
  numRuns: number,
): number | Promise<number> {
  const passes = propertyRuns(numRuns);
  const total = passes.reduce((sum, p) => sum + p.numRuns, 0);
  if (property.isAsync()) {
    return (async () => {
      for (const p of passes) {
        announce(p);
        await fc.assert(property as fc.IAsyncProperty<Ts>, parameters(p)).catch((err: unknown) => {
          throw withReplay(err, p);
        });
      }
      return total;
    })();
  }
  for (const p of passes) {
    announce(p);
    try {
      fc.assert(property as fc.IProperty<Ts>, parameters(p));
    } catch (err) {
      throw withReplay(err, p);
    }
  }
  return total;
}

/**
 * A mocha timeout for a property of `numRuns` runs that take up to `perRunMs` each on a slow,
 * loaded machine (and ten times that under coverage), over every pass of {@link propertyRuns}: a
 * long property fails by what it finds, never by the machine's speed.
 */
export function propertyTimeout(numRuns: number, perRunMs: number, underCoverage = false): number {
  const passes = propertyRuns(numRuns).length;
  return Math.max(180_000, passes * numRuns * perRunMs * (underCoverage ? 10 : 1));
}

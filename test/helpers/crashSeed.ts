/**
 * The seed of a crash test's schedule (which kills, aimed where): `CUSTOS_CRASH_SEED` to replay
 * one, else a fresh one; printed before the test runs, so that any failure can be replayed.
 */
import { randomInt } from "node:crypto";

/** A small seeded PRNG (mulberry32): numbers in [0, 1). */
function prng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function crashSeed(env: NodeJS.ProcessEnv = process.env): { seed: number; random: () => number } {
  const given = env.CUSTOS_CRASH_SEED;
  const seed = given === undefined || given === "" ? randomInt(1_000_000) : Number(given);
  if (!Number.isSafeInteger(seed)) throw new Error(`CUSTOS_CRASH_SEED must be an integer, not ${given}`);
  console.log(`      crash seed ${seed} (replay: CUSTOS_CRASH_SEED=${seed})`);
  return { seed, random: prng(seed) };
}

/**
 * When to try a failed delivery again: capped exponential backoff with jitter, as payment
 * providers do — 1 s, 2 s, 4 s … up to 60 s between attempts, each shortened by a random part of
 * up to half (so that many subscriptions failing together do not retry in step) — and give up only
 * after a long horizon (3 days from when the delivery was queued). The clock is injectable, so a
 * test can run the production policy through a ten-minute outage in a second of wall time.
 */

export interface BackoffPolicy {
  /** The delay after the first failed attempt, ms. */
  baseMs: number;
  /** The longest delay between two attempts, ms. */
  capMs: number;
  /** How long after it was queued a delivery is given up and marked failed, ms. */
  horizonMs: number;
  /** The share of a delay that is random (0: none, 0.5: the delay is between half and all of it). */
  jitter: number;
}

export const PRODUCTION_BACKOFF: BackoffPolicy = {
  baseMs: 1_000,
  capMs: 60_000,
  horizonMs: 3 * 24 * 3600_000,
  jitter: 0.5,
};

/** The wait after the `failures`-th failed attempt (1 = the first), ms: never over the cap. */
export function backoffDelay(policy: BackoffPolicy, failures: number, random: () => number = Math.random): number {
  const exp = Math.min(policy.capMs, policy.baseMs * 2 ** Math.min(failures - 1, 52));
  return Math.round(exp * (1 - policy.jitter * random()));
}

/** Time as the dispatcher schedules by it. The signatures' timestamps are always wall time. */
export interface Clock {
  now(): number;
  /** Resolves after `ms` of this clock's time, or at once when `signal` aborts. */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

function wallSleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    }
    signal?.addEventListener("abort", done, { once: true });
  });
}

export const WALL_CLOCK: Clock = { now: () => Date.now(), sleep: wallSleep };

/**
 * A clock that runs `factor` times faster than the wall clock, from now on: a test's way to live
 * through hours of backoff in seconds with the production policy unchanged.
 */
export function fastClock(factor: number): Clock {
  const [start, realStart] = [Date.now(), performance.now()];
  return {
    now: () => start + (performance.now() - realStart) * factor,
    sleep: (ms, signal) => wallSleep(ms / factor, signal),
  };
}

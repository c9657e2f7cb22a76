/**
 * Honest devices, simulated: what a device that behaves as its owner and manufacturer intend looks
 * like to a guardian over a week — reports on its declared heartbeat (with jitter and short
 * outages), stays inside its fleet's geofence (GNSS noise included), updates firmware within a day
 * of a revocation, rotates keys (mostly with provenance; without it only at home), has a few
 * relayer refusals (nonce races, a short burst after an outage), and, when it pays, signs vouchers
 * at its metered rate (with jitter). Deterministic from a seed. Used by the false-quarantine
 * figure (run.ts) and by the policy's property test.
 */
import type { DeviceObservations, Geofence, LocationReport, Policy, Scope } from "../../src/guardian/policy/index.js";
import { DEFAULT_POLICY } from "../../src/guardian/policy/index.js";

export const DAY = 86_400;
export const WEEK = 7 * DAY;
/** The simulation's start (unix seconds). */
export const T0 = 1_767_225_600;

/** A small, fast, seedable PRNG (mulberry32): the simulation must repeat exactly. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

export interface Fleet {
  name: string;
  manufacturer: string;
  geofence: Geofence;
  /** Where honest devices of this fleet live: centre and how far from it they roam (m). */
  centre: { latitudeE7: number; longitudeE7: number };
  roamMeters: number;
}

const ZURICH = { latitudeE7: 473_700_000, longitudeE7: 85_400_000 };
const HAMBURG = { latitudeE7: 535_500_000, longitudeE7: 99_900_000 };
const LYON = { latitudeE7: 457_600_000, longitudeE7: 48_400_000 };
// ~0.009° of latitude is 1 km.
const box = (c: { latitudeE7: number; longitudeE7: number }, km: number) => {
  const d = Math.round(km * 90_000);
  const e = Math.round(d / Math.cos((c.latitudeE7 / 1e7) * (Math.PI / 180)));
  return [
    { latitudeE7: c.latitudeE7 - d, longitudeE7: c.longitudeE7 - e },
    { latitudeE7: c.latitudeE7 - d, longitudeE7: c.longitudeE7 + e },
    { latitudeE7: c.latitudeE7 + d, longitudeE7: c.longitudeE7 + e },
    { latitudeE7: c.latitudeE7 + d, longitudeE7: c.longitudeE7 - e },
  ];
};

/** Three fleets: locks in Zürich (a circle), trackers in a Hamburg depot (a polygon), meters in Lyon. */
export const FLEETS: Fleet[] = [
  {
    name: "zurich-locks",
    manufacturer: "0x" + "a1".repeat(20),
    geofence: { circle: { center: ZURICH, radiusMeters: 5_000 } },
    centre: ZURICH,
    roamMeters: 3_500,
  },
  {
    name: "hamburg-depot",
    manufacturer: "0x" + "b2".repeat(20),
    geofence: { polygon: box(HAMBURG, 20) },
    centre: HAMBURG,
    roamMeters: 15_000,
  },
  {
    name: "lyon-meters",
    manufacturer: "0x" + "c3".repeat(20),
    geofence: { circle: { center: LYON, radiusMeters: 2_000 } },
    centre: LYON,
    roamMeters: 1_200,
  },
];

/** The default policy with the fleets' geofences (a fleet's geofence is its scope's data). */
export function fleetPolicy(base: Policy = DEFAULT_POLICY): Policy {
  const scopes: Scope[] = FLEETS.map((f) => ({ name: f.name, match: { fleet: f.name }, geofence: f.geofence }));
  return { ...base, scopes: [...(base.scopes ?? []), ...scopes] };
}

/** A point about `meters` from `c` in a random direction. */
function offset(c: { latitudeE7: number; longitudeE7: number }, meters: number, angle: number) {
  const dLat = (meters * Math.cos(angle)) / 111_320;
  const dLon = (meters * Math.sin(angle)) / (111_320 * Math.cos((c.latitudeE7 / 1e7) * (Math.PI / 180)));
  return { latitudeE7: Math.round(c.latitudeE7 + dLat * 1e7), longitudeE7: Math.round(c.longitudeE7 + dLon * 1e7) };
}

let txCounter = 0;
const tx = () => ({ txHash: "0x" + (++txCounter).toString(16).padStart(64, "0"), blockNumber: txCounter });

/** Firmware images: v1 is revoked on day 2 for fleets that `revokes`; honest devices move to v2 within a day. */
export const FIRMWARE = { v1: "0x" + "01".repeat(32), v2: "0x" + "02".repeat(32) };

/** One honest device's observations over `[T0, T0 + days)`, every list in time order. */
export function honestDevice(seed: number, opts: { days?: number; fleet?: number } = {}): DeviceObservations {
  const r = rng(seed);
  const days = opts.days ?? 7;
  const end = T0 + days * DAY;
  const fleet = FLEETS[opts.fleet ?? Math.floor(r() * FLEETS.length)];
  const heartbeat = [600, 1_800, 3_600, 3_600][Math.floor(r() * 4)];
  const home = offset(fleet.centre, r() * fleet.roamMeters * 0.5, r() * 2 * Math.PI);
  const obs: DeviceObservations = {
    device: BigInt(seed) + 1n,
    fleet: fleet.name,
    manufacturer: fleet.manufacturer,
    heartbeatSeconds: heartbeat,
    firstSeenAt: T0,
    lastSeenAt: T0,
    locations: [],
    firmware: [{ at: T0, firmwareHash: FIRMWARE.v1, ...tx() }],
    revokedFirmware: [],
    excursions: [],
    rotations: [],
    refusals: [],
    vouchers: [],
  };
  // Reports on the heartbeat (±20 %), with an outage of up to three heartbeats now and then.
  const seen: number[] = [];
  for (let t = T0 + Math.floor(r() * heartbeat); t < end;) {
    seen.push(t);
    const roam = r() < 0.9 ? r() * 300 : r() * fleet.roamMeters; // mostly at home, sometimes about
    const base = r() < 0.9 ? home : fleet.centre;
    const at = offset(base === home ? home : fleet.centre, roam, r() * 2 * Math.PI);
    const noisy = offset(at, r() * 50, r() * 2 * Math.PI); // GNSS error
    const l: LocationReport = { at: t, ...noisy, source: "report", ...tx() };
    obs.locations.push(l);
    const outage = r() < 0.01 ? heartbeat * (1 + r() * 2) : 0;
    t += Math.round(heartbeat * (0.8 + 0.4 * r()) + outage);
    if (outage > 0) {
      // Back from an outage: a short burst of refusals (messages queued with stale nonces).
      for (let i = Math.floor(r() * 6); i > 0; i--)
        obs.refusals.push({ at: t + i, id: `r${seed}-${t}-${i}`, code: "nonce_used" });
    }
  }
  obs.lastSeenAt = seen[seen.length - 1] ?? T0;
  // The manufacturer of the first two fleets revokes v1 on day 2; devices update within a day.
  if (FLEETS.indexOf(fleet) < 2 && days > 2) {
    const revokedAt = T0 + 2 * DAY;
    obs.revokedFirmware.push({ at: revokedAt, firmwareHash: FIRMWARE.v1, ...tx() });
    obs.firmware.push({ at: revokedAt + Math.floor(r() * DAY), firmwareHash: FIRMWARE.v2, ...tx() });
  }
  // A few key rotations: with provenance (routine), or without (the owner replaced a lost key) at home.
  const x = r();
  if (x < 0.05) obs.rotations.push({ at: T0 + Math.floor(r() * days * DAY), provenance: x < 0.04, ...tx() });
  // Nonce races: about two refusals a day.
  for (let t = T0; t < end; t += Math.round(-Math.log(1 - r()) * DAY * 0.5))
    obs.refusals.push({ at: t, id: `n${seed}-${t}`, code: "nonce_queued" });
  obs.refusals.sort((a, b) => a.at - b.at);
  // One device in five pays for what it meters: a voucher every ten minutes at its rate (±5 %).
  if (r() < 0.2) {
    const rate = BigInt(1 + Math.floor(r() * 1_000));
    obs.meteredRatePerSecond = rate;
    let total = 0n;
    const channel = "0x" + seed.toString(16).padStart(64, "0");
    for (let t = T0 + 600; t < end; t += 600) {
      total += (rate * BigInt(Math.round(600 * (0.95 + 0.1 * r()) * 1_000))) / 1_000n;
      obs.vouchers.push({ at: t, channel, cumulativeAmount: total });
    }
  }
  return obs;
}

/** The part of `obs` a guardian would hold at `now` looking back `lookback` seconds (lists in time order). */
export function asOf(obs: DeviceObservations, now: number, lookback = 3 * DAY): DeviceObservations {
  const from = now - lookback;
  const cut = <T extends { at: number }>(xs: T[]) => {
    const first = (t: number, strict: boolean) => {
      let [lo, hi] = [0, xs.length];
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (strict ? xs[mid].at <= t : xs[mid].at < t) lo = mid + 1;
        else hi = mid;
      }
      return lo;
    };
    const lo = first(from, false);
    const hi = Math.max(lo, first(now, true));
    return lo === 0 && hi === xs.length ? xs : xs.slice(lo, hi);
  };
  const seen = cut(obs.locations);
  return {
    ...obs,
    lastSeenAt: seen.length > 0 ? seen[seen.length - 1].at : obs.firstSeenAt,
    locations: seen,
    firmware: obs.firmware.filter((f) => f.at <= now),
    revokedFirmware: obs.revokedFirmware.filter((f) => f.at <= now),
    excursions: cut(obs.excursions),
    rotations: cut(obs.rotations),
    refusals: cut(obs.refusals),
    vouchers: cut(obs.vouchers),
  };
}

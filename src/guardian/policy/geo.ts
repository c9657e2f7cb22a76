/** Plane geometry on the sphere for geofences: great-circle distance and point-in-polygon. */

export interface Point {
  latitudeE7: number;
  longitudeE7: number;
}

const EARTH_RADIUS_M = 6_371_008.8;
const rad = (e7: number) => (e7 / 1e7) * (Math.PI / 180);

/** Great-circle distance in metres (haversine). */
export function distanceMeters(a: Point, b: Point): number {
  const dLat = rad(b.latitudeE7 - a.latitudeE7);
  const dLon = rad(b.longitudeE7 - a.longitudeE7);
  const h =
    Math.sin(dLat / 2) ** 2 + Math.cos(rad(a.latitudeE7)) * Math.cos(rad(b.latitudeE7)) * Math.sin(dLon / 2) ** 2;
  return 2 * EARTH_RADIUS_M * Math.asin(Math.min(1, Math.sqrt(h)));
}

/** Whether `p` lies inside the polygon `ring` (even–odd rule on latitude/longitude; fine for fleet-sized areas). */
export function insidePolygon(p: Point, ring: Point[]): boolean {
  let inside = false;
  for (let i = 0, j = ring.length - 1; i < ring.length; j = i++) {
    const [a, b] = [ring[i], ring[j]];
    if (
      a.latitudeE7 > p.latitudeE7 !== b.latitudeE7 > p.latitudeE7 &&
      p.longitudeE7 <
        ((b.longitudeE7 - a.longitudeE7) * (p.latitudeE7 - a.latitudeE7)) / (b.latitudeE7 - a.latitudeE7) +
          a.longitudeE7
    )
      inside = !inside;
  }
  return inside;
}

/** Distance in metres from `p` to the nearest edge of `ring` (approximate: to the nearest vertex or edge midpoint sampled). */
export function distanceToRing(p: Point, ring: Point[]): number {
  let best = Infinity;
  for (let i = 0, j = ring.length - 1; i < ring.length; j = i++) {
    for (let k = 0; k <= 16; k++) {
      const t = k / 16;
      const q = {
        latitudeE7: ring[j].latitudeE7 + (ring[i].latitudeE7 - ring[j].latitudeE7) * t,
        longitudeE7: ring[j].longitudeE7 + (ring[i].longitudeE7 - ring[j].longitudeE7) * t,
      };
      best = Math.min(best, distanceMeters(p, q));
    }
  }
  return best;
}

/** The component-wise median of `points` (a device's usual place; robust to a few outliers). */
export function medianPoint(points: Point[]): Point {
  const mid = (xs: number[]) => {
    const s = [...xs].sort((a, b) => a - b);
    return s[Math.floor(s.length / 2)];
  };
  return { latitudeE7: mid(points.map((p) => p.latitudeE7)), longitudeE7: mid(points.map((p) => p.longitudeE7)) };
}

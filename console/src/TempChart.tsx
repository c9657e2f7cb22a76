/**
 * A shipment's temperatures with uPlot: each checkpoint's claimed min and max, the allowed range,
 * breaches and proven excursions as points, and — when the tracker's export is dropped in — its raw
 * readings. A table beside it says the same for screen readers.
 */
import { useEffect, useRef } from "react";
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";

export interface Series {
  checkpoints: { at: number; min: number; max: number; seq: number; bad: boolean }[];
  range: { min: number; max: number };
  /** Breaches and proven excursions: when, how hot, which kind. */
  events: { at: number; temp: number; kind: string }[];
  readings: { at: number; temp: number }[];
}

export function TempChart({ data }: { data: Series }) {
  const el = useRef<HTMLDivElement>(null);
  useEffect(() => {
    if (!el.current) return;
    const xs = [
      ...new Set([
        ...data.checkpoints.map((c) => c.at),
        ...data.events.map((e) => e.at),
        ...data.readings.map((r) => r.at),
      ]),
    ].sort((a, b) => a - b);
    const at = <T,>(list: T[], x: number, key: (t: T) => number, v: (t: T) => number) => {
      const hit = list.find((t) => key(t) === x);
      return hit === undefined ? null : v(hit) / 100;
    };
    const cols: (number | null)[][] = [
      xs,
      xs.map((x) =>
        at(
          data.checkpoints,
          x,
          (c) => c.at,
          (c) => c.min,
        ),
      ),
      xs.map((x) =>
        at(
          data.checkpoints,
          x,
          (c) => c.at,
          (c) => c.max,
        ),
      ),
      xs.map(() => data.range.min / 100),
      xs.map(() => data.range.max / 100),
      xs.map((x) =>
        at(
          data.events,
          x,
          (e) => e.at,
          (e) => e.temp,
        ),
      ),
      xs.map((x) =>
        at(
          data.readings,
          x,
          (r) => r.at,
          (r) => r.temp,
        ),
      ),
    ];
    const plot = new uPlot(
      {
        width: Math.min(900, el.current.clientWidth || 900),
        height: 300,
        title: "Temperature (°C)",
        scales: { x: { time: true } },
        series: [
          {},
          { label: "checkpoint min", stroke: "#2d6cdf", width: 2, spanGaps: true, points: { size: 7 } },
          { label: "checkpoint max", stroke: "#d9480f", width: 2, spanGaps: true, points: { size: 7 } },
          { label: "allowed min", stroke: "#555", dash: [6, 4] },
          { label: "allowed max", stroke: "#555", dash: [6, 4] },
          {
            label: "breach / proven excursion",
            stroke: "#b00000",
            width: 0,
            points: { size: 12, fill: "#b00000", stroke: "#b00000" },
          },
          { label: "raw readings", stroke: "#2b8a3e", width: 1, spanGaps: true, points: { size: 4 } },
        ],
      },
      cols as uPlot.AlignedData,
      el.current,
    );
    return () => plot.destroy();
  }, [data]);
  return (
    <figure className="chart">
      <div
        ref={el}
        data-testid="temp-chart"
        role="img"
        aria-label="Temperature chart: checkpoints' min and max against the allowed range"
      />
      <figcaption>
        Allowed {data.range.min / 100} to {data.range.max / 100} °C.{" "}
        {data.events.length === 0 ? (
          "No breach."
        ) : (
          <span data-testid="chart-breaches">
            {data.events
              .map((e) => `${e.kind}: ${e.temp / 100} °C at ${new Date(e.at * 1000).toISOString()}`)
              .join("; ")}
          </span>
        )}
      </figcaption>
    </figure>
  );
}

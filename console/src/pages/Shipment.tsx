/**
 * Shipment: its state and marks (overdue, silent, breached, excursion proven, delivered), the custody
 * timeline with both signatures of each handoff re-checked from the chain, the checkpoints (each
 * tracker signature re-checked) drawn against the allowed range, and the EPCIS 2.0 download.
 */
import { useMemo, useState } from "react";
import { useQuery } from "@tanstack/react-query";
import { hexToString } from "viem";
import { watchGet, type Row, type ShipmentView } from "../api.js";
import { useSettings, useVerifier } from "../context.js";
import { checkCheckpoint, checkExcursion, checkHandoff, short, type Check } from "../verify.js";
import { Badge, FreshnessNote, Link, Loaded, Table, time } from "../ui.js";
import { TempChart, type Series } from "../TempChart.js";
import { download } from "../actions.js";
import { toEpcisDocument } from "../../../src/custody/epcis.js";
import type { HistoryEntry } from "../../../src/custody/history.js";

const BYTES32 = /^0x[0-9a-fA-F]{64}$/;

export function ShipmentPage({ id }: { id: string }) {
  const s = useSettings();
  const valid = BYTES32.test(id ?? "");
  const q = useQuery({
    queryKey: ["shipment", s.watch, id],
    queryFn: () => watchGet<ShipmentView>(s.watch, `/watch/shipments/${id}`),
    enabled: valid,
  });
  return (
    <>
      <h1 tabIndex={-1}>Shipment {valid ? short(id) : ""}</h1>
      {!valid ? (
        <p className="state error" role="alert">
          A shipment id is 0x and 64 hex digits; “{id}” is not.
        </p>
      ) : (
        <Loaded q={q} what="the shipment">
          {(v) => <Shipment v={v} />}
        </Loaded>
      )}
    </>
  );
}

const cbv = (b: unknown) => hexToString(b as `0x${string}`).replace(/\0+$/, "");

function useChecks(v: ShipmentView) {
  const s = useSettings();
  const ctx = useVerifier("custodyLedger", v.chainId);
  const key = JSON.stringify([v.handoffs, v.checkpoints]);
  return useQuery({
    queryKey: ["shipment-checks", s.rpc, ctx.contract, key],
    queryFn: async () => ({
      handoffs: await Promise.all(v.handoffs.map((h) => checkHandoff(ctx, h))),
      checkpoints: await Promise.all(v.checkpoints.map((c) => checkCheckpoint(ctx, c))),
      excursions: await Promise.all(
        v.marks.map((m) => (m.kind === "shipment.excursion_proven" ? checkExcursion(ctx, m) : Promise.resolve(null))),
      ),
    }),
    refetchInterval: false,
  });
}

function Shipment({ v }: { v: ShipmentView }) {
  const sh = v.shipment;
  const checks = useChecks(v);
  const [readings, setReadings] = useState<{ at: number; temp: number }[]>([]);
  const [dropError, setDropError] = useState("");
  const marks = v.marks.map((m) => m.kind.replace("shipment.", ""));
  const series: Series = useMemo(() => {
    const atOf = (seq: unknown) => Number(v.checkpoints.find((c) => String(c.seq) === String(seq))?.at ?? 0);
    return {
      checkpoints: v.checkpoints.map((c) => ({
        at: Number(c.at),
        min: Number(c.minTemp),
        max: Number(c.maxTemp),
        seq: Number(c.seq),
        bad: Number(c.maxTemp) > Number(sh.maxTemp) || Number(c.minTemp) < Number(sh.minTemp),
      })),
      range: { min: Number(sh.minTemp), max: Number(sh.maxTemp) },
      events: v.marks
        .filter((m) => m.kind === "shipment.breached" || m.kind === "shipment.excursion_proven")
        .map((m) => ({
          at: Number(m.data.at ?? atOf(m.data.checkpointSeq)),
          temp: Number(m.data.temp),
          kind: m.kind.replace("shipment.", ""),
        })),
      readings,
    };
  }, [v, readings]);
  const dropped = async (file: File | undefined) => {
    if (!file) return;
    try {
      const parsed = JSON.parse(await file.text()) as unknown;
      const list = (Array.isArray(parsed) ? parsed : (parsed as { readings?: unknown }).readings) as {
        at: number;
        temp: number;
      }[];
      if (!Array.isArray(list) || list.some((r) => typeof r.at !== "number" || typeof r.temp !== "number"))
        throw new Error("expected a JSON array of { at, temp } readings (or { readings: [...] })");
      setReadings(list);
      setDropError("");
    } catch (e) {
      setDropError(`The tracker export was not read: ${(e as Error).message}`);
    }
  };
  const epcis = () =>
    download(`shipment-${short(String(sh.id))}.epcis.json`, toEpcisDocument(historyOf(v, checks.data)));
  return (
    <>
      <FreshnessNote f={v} />
      <div className="cards">
        <div>
          EPC <code>{String(sh.epc)}</code>
        </div>
        <div>
          Custodian <code>{String(sh.custodian)}</code>
        </div>
        <div>
          Tracker <Link to={`/device/${sh.tracker}`}>{String(sh.tracker).slice(0, 14)}…</Link>
        </div>
        <div>Deadline {time(sh.deadline)}</div>
        <div data-testid="marks">
          {marks.length
            ? marks.map((m) => (
                <span key={m} className="mark">
                  {m}
                </span>
              ))
            : "no marks"}
        </div>
      </div>
      {sh.pallet && (
        <p>
          Split from pallet <Link to={`/shipment/${sh.pallet}`}>{short(String(sh.pallet))}</Link>
        </p>
      )}
      {v.children.length > 0 && (
        <p>
          Children split off:{" "}
          {v.children.map((c) => (
            <Link key={c} to={`/shipment/${c}`}>
              {short(c)}{" "}
            </Link>
          ))}
        </p>
      )}
      <Table
        caption="Custody timeline"
        head={["Seq", "Time", "From", "To", "Step", "Both signatures"]}
        rows={v.handoffs.map((h, i) => [
          String(h.seq),
          time(h.at),
          <code>{String(h.from)}</code>,
          <code>{String(h.to)}</code>,
          `${cbv(h.bizStep)} / ${cbv(h.disposition)}`,
          <span data-testid={`handoff-${h.seq}`}>
            <Badge check={checks.data?.handoffs[i]} />
          </span>,
        ])}
      />
      <TempChart data={series} />
      <p>
        <label htmlFor="readings">Drop the tracker's readings export (JSON) to draw its raw readings</label>
        <input
          id="readings"
          type="file"
          accept="application/json,.json"
          onChange={(e) => dropped(e.target.files?.[0])}
        />
        {dropError && (
          <span role="alert" className="state error">
            {dropError}
          </span>
        )}
      </p>
      <Table
        caption="Checkpoints"
        head={["Seq", "Time", "Readings", "Min °C", "Max °C", "Tracker signature"]}
        rows={v.checkpoints.map((c, i) => [
          String(c.seq),
          time(c.at),
          String(c.count),
          Number(c.minTemp) / 100,
          Number(c.maxTemp) / 100,
          <span data-testid={`checkpoint-${c.seq}`}>
            <Badge check={checks.data?.checkpoints[i]} />
          </span>,
        ])}
      />
      <Table
        caption="Marks"
        head={["Block", "Time", "Mark", "Details", "Proof"]}
        rows={v.marks.map((m, i) => [
          String(m.blockNumber),
          time(m.timestamp),
          m.kind.replace("shipment.", ""),
          <code>{JSON.stringify(m.data)}</code>,
          m.kind === "shipment.excursion_proven" ? (
            <span data-testid="excursion-check">
              <Badge check={checks.data?.excursions[i] ?? undefined} />
            </span>
          ) : (
            "—"
          ),
        ])}
      />
      <button onClick={epcis}>Download EPCIS 2.0 document</button>
    </>
  );
}

/** The shipment as src/custody's ShipmentHistory (what its EPCIS export reads), with the browser's checks. */
function historyOf(v: ShipmentView, checks?: { handoffs: Check[]; checkpoints: Check[] }) {
  const sh = v.shipment;
  const place = (r: Row) => ({
    block: Number(r.blockNumber),
    logIndex: Number(r.logIndex),
    time: Number(r.timestamp),
    txHash: String(r.txHash),
    shipment: String(sh.id),
  });
  const ok = (c?: Check) => c?.state === "verified";
  const created: HistoryEntry = {
    kind: "created",
    block: Number(sh.createdBlock),
    logIndex: 0,
    time: Number(sh.createdAt),
    txHash: "",
    shipment: String(sh.id),
    epc: String(sh.epc),
    creator: String(sh.creator),
    tracker: String(sh.tracker),
    receiver: String(sh.receiver),
    deadline: Number(sh.deadline),
    maxSilence: Number(sh.maxSilence),
    minTemp: Number(sh.minTemp),
    maxTemp: Number(sh.maxTemp),
    metadataHash: String(sh.metadataHash),
    childrenRoot: String(sh.childrenRoot),
  };
  const entries: HistoryEntry[] = [
    created,
    ...v.handoffs.map((h, i): HistoryEntry => ({
      ...place(h),
      kind: "handoff",
      seq: Number(h.seq),
      from: String(h.from),
      to: String(h.to),
      bizStep: cbv(h.bizStep),
      disposition: cbv(h.disposition),
      readPoint: String(h.readPoint),
      at: Number(h.at),
      signatures: { from: ok(checks?.handoffs[i]), to: ok(checks?.handoffs[i]) },
    })),
    ...v.checkpoints.map((c, i): HistoryEntry => ({
      ...place(c),
      kind: "checkpoint",
      seq: Number(c.seq),
      readingsRoot: String(c.readingsRoot),
      count: Number(c.count),
      minTemp: Number(c.minTemp),
      maxTemp: Number(c.maxTemp),
      location: String(c.location),
      at: Number(c.at),
      signature: ok(checks?.checkpoints[i]),
    })),
    ...v.marks
      .filter((m) => m.kind === "shipment.delivered")
      .map((m): HistoryEntry => ({ ...place(m), kind: "delivered", receiver: String(m.data.receiver ?? sh.receiver) })),
  ].sort((a, b) => a.block - b.block || a.logIndex - b.logIndex);
  const all = [...(checks?.handoffs ?? []), ...(checks?.checkpoints ?? [])];
  return { shipment: String(sh.id), epc: String(sh.epc), entries, allVerified: all.length > 0 && all.every(ok) };
}

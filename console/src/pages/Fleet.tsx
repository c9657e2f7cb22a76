/**
 * Fleet: an owner's devices by status and batch (paged from the watch), the owner's alerts, and a
 * search by device id, device key, EPC, shipment or channel id.
 */
import { useMemo, useState } from "react";
import { useQuery } from "@tanstack/react-query";
import { encodeAbiParameters, keccak256, toBytes, type Hex } from "viem";
import { watchGet, type AlertRow, type FleetView } from "../api.js";
import { useSettings, useVerifier } from "../context.js";
import { ADDRESS } from "../settings.js";
import { FreshnessNote, Link, Loaded, Table, time } from "../ui.js";
import { Subscribe } from "../Subscribe.js";

const PAGE = 1000;

export function FleetPage() {
  const s = useSettings();
  const [offset, setOffset] = useState(0);
  const [status, setStatus] = useState("all");
  const fleet = useQuery({
    queryKey: ["fleet", s.watch, s.owner, offset],
    queryFn: () => watchGet<FleetView>(s.watch, `/watch/owners/${s.owner}/devices?limit=${PAGE}&offset=${offset}`),
    enabled: ADDRESS.test(s.owner),
  });
  const alerts = useQuery({
    queryKey: ["alerts", s.watch],
    queryFn: () => watchGet<{ indexedBlock: number; alerts: AlertRow[] }>(s.watch, `/watch/alerts?fromBlock=0`),
  });
  return (
    <>
      <h1 tabIndex={-1}>Fleet{s.owner ? ` of ${s.owner}` : ""}</h1>
      <Search />
      {!ADDRESS.test(s.owner) ? (
        <p className="state empty">
          No owner chosen: set one in <a href="#/settings">Settings</a> (or <code>?owner=0x…</code>) to see its fleet.
        </p>
      ) : fleet.isPending ? (
        <p className="state loading" role="status">
          Loading the fleet from the watch…
        </p>
      ) : (
        <Loaded q={fleet} what="the fleet">
          {(f) => <Devices f={f} status={status} setStatus={setStatus} offset={offset} setOffset={setOffset} />}
        </Loaded>
      )}
      <h2>Alerts</h2>
      <Loaded q={alerts} what="alerts">
        {(a) => {
          const mine = a.alerts.filter((x) => !s.owner || (x.subjects.owners ?? []).includes(s.owner)).reverse();
          return (
            <Table
              caption={s.owner ? "Alerts for this owner, newest first" : "Alerts, newest first"}
              head={["Block", "Time", "Kind", "Subject"]}
              rows={mine
                .slice(0, 200)
                .map((x) => [
                  x.blockNumber,
                  time(x.timestamp),
                  <span className="mark">{x.kind}</span>,
                  <Subject a={x} />,
                ])}
            />
          );
        }}
      </Loaded>
      <Subscribe chainId={fleet.data?.chainId ?? 31337} />
    </>
  );
}

function Subject({ a }: { a: AlertRow }) {
  const { device, shipment, channel } = a.subjects;
  if (shipment) return <Link to={`/shipment/${shipment}`}>shipment {shipment.slice(0, 10)}…</Link>;
  if (channel) return <Link to={`/channel/${channel}`}>channel {channel.slice(0, 10)}…</Link>;
  if (a.kind.startsWith("lock.") && device) return <Link to={`/lock/${device}`}>lock {device.slice(0, 12)}…</Link>;
  if (device) return <Link to={`/device/${device}`}>device {device.slice(0, 12)}…</Link>;
  if (a.data.batchId !== undefined) return <>batch {String(a.data.batchId)}</>;
  return <>—</>;
}

function Devices(props: {
  f: FleetView;
  status: string;
  setStatus: (s: string) => void;
  offset: number;
  setOffset: (n: number) => void;
}) {
  const { f, status, setStatus, offset, setOffset } = props;
  const byStatus = useMemo(() => count(f.devices.map((d) => d.effectiveStatus)), [f]);
  const byBatch = useMemo(() => count(f.devices.map((d) => String(d.batchId))), [f]);
  const shown = status === "all" ? f.devices : f.devices.filter((d) => d.effectiveStatus === status);
  return (
    <>
      <FreshnessNote f={f} />
      {f.total === 0 ? (
        <p className="state empty">This owner has no devices in the index.</p>
      ) : (
        <>
          <div className="cards" aria-label="Devices by status">
            <div>
              <strong data-testid="total">{f.total}</strong> devices
            </div>
            {Object.entries(byStatus).map(([k, n]) => (
              <div key={k} className={`status-${k}`}>
                <strong>{n}</strong> {k}
              </div>
            ))}
          </div>
          <p>
            Batches:{" "}
            {Object.entries(byBatch).map(([b, n]) => (
              <span key={b} className="mark" style={{ background: "#14324a" }}>
                batch {b}: {n}
              </span>
            ))}
          </p>
          <p>
            <label htmlFor="status-filter">Show</label>
            <select id="status-filter" value={status} onChange={(e) => setStatus(e.target.value)}>
              {["all", "active", "quarantined", "revoked"].map((s) => (
                <option key={s}>{s}</option>
              ))}
            </select>{" "}
            devices {offset + 1}–{offset + f.devices.length} of {f.total}{" "}
            <button disabled={offset === 0} onClick={() => setOffset(Math.max(0, offset - PAGE))}>
              Previous
            </button>
            <button disabled={offset + PAGE >= f.total} onClick={() => setOffset(offset + PAGE)}>
              Next
            </button>
          </p>
          <Table
            caption="Devices"
            head={["Device", "Status", "Batch", "Key generation", "Claimed"]}
            rows={shown
              .slice(0, 200)
              .map((d) => [
                <Link to={`/device/${d.id}`}>{d.id.slice(0, 18)}…</Link>,
                <span className={`status-${d.effectiveStatus}`}>{d.effectiveStatus}</span>,
                String(d.batchId),
                String(d.keyGeneration),
                time(d.claimedAt),
              ])}
          />
          {shown.length > 200 && (
            <p>Showing the first 200 of {shown.length} on this page; filter or search for the rest.</p>
          )}
        </>
      )}
    </>
  );
}

function count(xs: string[]) {
  const m: Record<string, number> = {};
  for (const x of xs) m[x] = (m[x] ?? 0) + 1;
  return m;
}

/** Search: a decimal device id, a device key (resolved on the user's node), an EPC (this owner's shipment), a bytes32 id. */
function Search() {
  const s = useSettings();
  const registry = useVerifier("registry", undefined);
  const [q, setQ] = useState("");
  const [msg, setMsg] = useState("");
  const go = async (e: React.FormEvent) => {
    e.preventDefault();
    const v = q.trim();
    setMsg("");
    if (/^[0-9]+$/.test(v)) return void (location.hash = `/device/${v}`);
    if (/^urn:epc:/.test(v)) {
      if (!ADDRESS.test(s.owner)) return setMsg("An EPC names a shipment of its creator: set the owner first.");
      const id = keccak256(
        encodeAbiParameters([{ type: "address" }, { type: "bytes32" }], [s.owner as Hex, keccak256(toBytes(v))]),
      );
      return void (location.hash = `/shipment/${id}`);
    }
    if (/^0x[0-9a-fA-F]{64}$/.test(v)) {
      const isShipment = await fetch(`${s.watch}/watch/shipments/${v}`).then(
        (r) => r.ok,
        () => false,
      );
      return void (location.hash = isShipment ? `/shipment/${v}` : `/channel/${v}`);
    }
    if (/^0x[0-9a-fA-F]+$/.test(v)) {
      if (!registry.contract) return setMsg("Resolving a key needs the registry's address (Settings).");
      try {
        const [id] = (await registry.client.readContract({
          address: registry.contract as Hex,
          abi: registry.abi,
          functionName: "resolveKey",
          args: [v as Hex],
        })) as [bigint, number];
        if (id === 0n) return setMsg(`No device has key ${v} on the chain.`);
        return void (location.hash = `/device/${id}`);
      } catch (err) {
        return setMsg(`The node could not resolve the key: ${(err as Error).message.split("\n")[0]}`);
      }
    }
    setMsg(
      "Search by a decimal device id, a device key (0x…), an EPC (urn:epc:…), or a shipment / channel id (0x + 64 hex).",
    );
  };
  return (
    <form role="search" onSubmit={go}>
      <label htmlFor="search">Device id, key, EPC, shipment or channel id</label>
      <input id="search" size={50} value={q} onChange={(e) => setQ(e.target.value)} />
      <button type="submit">Search</button>
      {msg && (
        <p role="alert" className="state error">
          {msg}
        </p>
      )}
    </form>
  );
}

/**
 * Device: who owns it and since when, its status timeline and keys (with their provenance), the
 * index checked against the registry, sealed location beacons opened in the browser with the
 * owner's beacon key, and the owner's actions.
 */
import { useState } from "react";
import { useQuery, useQueryClient } from "@tanstack/react-query";
import { watchGet, type DeviceView } from "../api.js";
import { useSettings, useVerifier } from "../context.js";
import { checkBeacon, checkDeviceKey, checkDeviceState, type Check } from "../verify.js";
import { Badge, FreshnessNote, Link, Loaded, Table, time } from "../ui.js";
import { openLocation } from "../../../src/beacons/index.js";
import { Send, Wallet } from "../actions.js";
import { parseRotationText, rotationStruct, type RotationFile } from "../../../src/registry/rotation.js";

interface TimelineEntry {
  block: number;
  t: unknown;
  what: string;
  by: unknown;
  tx: unknown;
  /** A key's claim or rotation check (null while checking); undefined for rows without a signature. */
  check?: Check | null;
}

/** The registry's events, in words. */
const CAUSE: Record<string, string> = {
  DeviceClaimed: "claimed",
  ReportedStolen: "reported stolen",
  Released: "released by its owner",
  GuardianFlagged: "flagged by the guardians' quorum",
  GuardianCleared: "cleared by the guardians' quorum",
  DeviceRevoked: "revoked",
};

export function DevicePage({ id }: { id: string }) {
  const s = useSettings();
  const valid = /^[0-9]+$/.test(id ?? "");
  const q = useQuery({
    queryKey: ["device", s.watch, id],
    queryFn: () => watchGet<DeviceView>(s.watch, `/watch/devices/${id}`),
    enabled: valid,
  });
  return (
    <>
      <h1 tabIndex={-1}>Device {valid ? `${id.slice(0, 20)}…` : ""}</h1>
      {!valid ? (
        <p className="state error" role="alert">
          A device id is a decimal number; “{id}” is not.
        </p>
      ) : (
        <Loaded q={q} what="the device">
          {(d) => <Device d={d} />}
        </Loaded>
      )}
    </>
  );
}

function Device({ d }: { d: DeviceView }) {
  const s = useSettings();
  const registry = useVerifier("registry", d.chainId);
  const dev = d.device;
  const state = useQuery({
    queryKey: ["device-check", s.rpc, dev.id, d.indexedBlock, dev.owner, dev.effectiveStatus, dev.keyGeneration],
    queryFn: () =>
      registry.contract
        ? checkDeviceState(registry, BigInt(dev.id), dev as never, BigInt(d.indexedBlock))
        : Promise.resolve({
            state: "unchecked" as const,
            what: "the registry's address is not set (Settings)",
            mismatches: [],
          }),
    refetchInterval: false,
  });
  const keyChecks = useQuery({
    queryKey: ["device-key-checks", s.rpc, registry.contract, JSON.stringify(d.keys)],
    queryFn: () => Promise.all(d.keys.map((k) => checkDeviceKey(registry, k))),
    refetchInterval: false,
  });
  const since = [...d.transfers].reverse().find((t) => String(t.to).toLowerCase() === dev.owner.toLowerCase());
  const timeline: TimelineEntry[] = [
    ...d.statusHistory.map((c) => ({
      block: Number(c.blockNumber),
      t: c.timestamp,
      what: `${CAUSE[String(c.cause)] ?? c.cause} → ${c.status}`,
      by: c.by,
      tx: c.txHash,
    })),
    ...d.keys.map((k, i) => ({
      block: Number(k.blockNumber),
      t: k.timestamp,
      what: `key generation ${k.generation} (${k.source}${k.attested ? ", attested" : ", not attested"}${k.attestedBy ? ` by ${k.attestedBy}` : ""}): ${k.key}`,
      by: null,
      tx: k.txHash,
      check: keyChecks.data?.[i] ?? null,
    })),
    ...d.transfers.map((t) => ({
      block: Number(t.blockNumber),
      t: t.timestamp,
      what: `owner ${t.from} → ${t.to}`,
      by: null,
      tx: t.txHash,
      check: undefined,
    })),
    ...d.guardianVotes.map((v) => ({
      block: Number(v.blockNumber),
      t: v.timestamp,
      what: `guardian ${v.flag ? "flag" : "clear"} vote`,
      by: v.guardian,
      check: undefined,
      tx: v.txHash,
    })),
  ].sort((a, b) => a.block - b.block);
  const refresh = useQueryClient();
  return (
    <>
      <FreshnessNote f={d} />
      <div className="cards">
        <div>
          Status:{" "}
          <strong className={`status-${dev.effectiveStatus}`} data-testid="device-status">
            {dev.effectiveStatus}
          </strong>
        </div>
        <div>
          Owner: <code>{dev.owner}</code> since {time(since?.timestamp ?? dev.claimedAt)}
        </div>
        <div>
          Batch {String(dev.batchId)} ({String(d.batch?.status ?? "—")}), key generation {String(dev.keyGeneration)}
          {dev.keyAttested ? " (attested)" : " (not attested)"}; firmware{" "}
          {dev.firmwareAttested ? "attested" : "not attested"}
        </div>
        <div>
          Index vs registry: <Badge check={state.data} />
        </div>
      </div>
      {d.device.effectiveStatus !== "active" || d.locationBeacons.length ? <Beacons d={d} /> : null}
      <Table
        caption="Timeline"
        head={["Block", "Time", "What", "By", "Transaction", "Signatures"]}
        rows={timeline.map((e) => [
          e.block,
          time(e.t),
          e.what,
          e.by ? <code>{String(e.by)}</code> : "—",
          <code>{String(e.tx).slice(0, 12)}…</code>,
          // A key's row carries the check of its claim or rotation signatures (null: still checking).
          e.check === undefined ? (
            "—"
          ) : (
            <span data-testid="key-check">
              <Badge check={e.check ?? undefined} />
            </span>
          ),
        ])}
      />
      <p>
        <Link to={`/lock/${dev.id}`}>This device as a lock</Link>
      </p>
      <section className="actions" aria-label="Owner actions">
        <h2>Owner actions</h2>
        <Wallet>
          {(account) =>
            account.toLowerCase() !== dev.owner.toLowerCase() ? (
              <p>This account does not own the device: the registry would refuse its actions.</p>
            ) : (
              <>
                <Send
                  label="Report stolen"
                  address={registry.contract}
                  abi={registry.abi}
                  functionName="reportStolen"
                  args={[BigInt(dev.id)]}
                  onDone={() => refresh.invalidateQueries()}
                />
                <Send
                  label="Release"
                  address={registry.contract}
                  abi={registry.abi}
                  functionName="release"
                  args={[BigInt(dev.id)]}
                  onDone={() => refresh.invalidateQueries()}
                />
                <Rotate id={dev.id} onDone={() => refresh.invalidateQueries()} />
              </>
            )
          }
        </Wallet>
      </section>
    </>
  );
}

/** The device's sealed location beacons; the owner pastes its beacon key and the browser opens them. */
function Beacons({ d }: { d: DeviceView }) {
  const s = useSettings();
  const ctx = useVerifier("locationBeacons", d.chainId);
  const checks = useQuery({
    queryKey: ["beacon-checks", s.rpc, ctx.contract, JSON.stringify(d.locationBeacons)],
    queryFn: () => Promise.all(d.locationBeacons.map((b) => checkBeacon(ctx, b))),
    refetchInterval: false,
  });
  const [key, setKey] = useState("");
  const [opened, setOpened] = useState<Record<string, string>>({});
  const open = async (e: React.FormEvent) => {
    e.preventDefault();
    const out: Record<string, string> = {};
    for (const b of d.locationBeacons) {
      if (!s.contracts.locationBeacons) {
        out[String(b.id)] = "the LocationBeacons address is not set (Settings)";
        continue;
      }
      try {
        const l = await openLocation(
          b.ciphertext,
          b.recipients,
          {
            chainId: BigInt(d.chainId ?? 31337),
            contract: s.contracts.locationBeacons,
            device: BigInt(b.deviceId),
            at: BigInt(b.at),
          },
          key.trim(),
        );
        out[String(b.id)] = `${(l.latitudeE7 / 1e7).toFixed(5)}, ${(l.longitudeE7 / 1e7).toFixed(5)}`;
      } catch (err) {
        out[String(b.id)] = `not opened: ${(err as Error).message}`;
      }
    }
    setOpened(out);
  };
  return (
    <section aria-label="Location beacons">
      <h2>Location beacons</h2>
      {d.locationBeacons.length === 0 ? (
        <p className="state empty">No beacon from this device yet.</p>
      ) : (
        <>
          <form onSubmit={open}>
            <label htmlFor="beacon-key">Your beacon private key (stays in this page)</label>
            <input
              id="beacon-key"
              type="password"
              size={70}
              value={key}
              onChange={(e) => setKey(e.target.value)}
              autoComplete="off"
            />
            <button type="submit">Open</button>
          </form>
          <Table
            caption="Sealed beacons"
            head={["Block", "Fix time", "Recipients", "Location", "Device signature"]}
            rows={d.locationBeacons.map((b, i) => [
              String(b.blockNumber),
              time(b.at),
              String((b.recipients.length - 2) / 64),
              <span data-testid="beacon-location">{opened[String(b.id)] ?? "sealed"}</span>,
              <span data-testid="beacon-check">
                <Badge check={checks.data?.[i]} />
              </span>,
            ])}
          />
        </>
      )}
    </section>
  );
}

/** Rotate the device's key: the owner loads the rotation file the device signed (`custos-agent key rotate`) and sends it. */
function Rotate({ id, onDone }: { id: string; onDone: () => void }) {
  const registry = useVerifier("registry", undefined);
  const [file, setFile] = useState<RotationFile | null>(null);
  const [error, setError] = useState("");
  const load = async (f: File | undefined) => {
    if (!f) return;
    try {
      const r = parseRotationText(await f.text(), f.name);
      if (r.device.toString() !== id) throw new Error(`the file rotates device ${r.device}, not this one`);
      if (registry.contract && r.registry.toLowerCase() !== registry.contract.toLowerCase())
        throw new Error(`the file was signed for registry ${r.registry}, not ${registry.contract}`);
      setFile(r);
      setError("");
    } catch (e) {
      setFile(null);
      setError(`The rotation file was not taken: ${(e as Error).message}`);
    }
  };
  return (
    <p>
      <label htmlFor="rotation">Rotate the key: the device's rotation file</label>
      <input id="rotation" type="file" accept="application/json,.json" onChange={(e) => load(e.target.files?.[0])} />
      {file && (
        <Send
          label="Rotate key"
          address={registry.contract}
          abi={registry.abi}
          functionName="rotateKey"
          args={[BigInt(id), rotationStruct(file)]}
          onDone={onDone}
        />
      )}
      {error && (
        <span role="alert" className="state error">
          {error}
        </span>
      )}
    </p>
  );
}

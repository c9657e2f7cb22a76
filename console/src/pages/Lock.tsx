/**
 * Lock: its key epoch, revoked keys, managers and their expiry, anchored unlock-log batches (each
 * lock signature re-checked from the chain), and the owner's actions: revoke one key or all,
 * appoint or remove a manager, grant a key certificate (signed typed data, downloaded as a file).
 */
import { useState } from "react";
import { useQuery, useQueryClient } from "@tanstack/react-query";
import { useSignTypedData } from "wagmi";
import type { Hex } from "viem";
import { watchGet, type LockView } from "../api.js";
import { useSettings, useVerifier } from "../context.js";
import { checkLogBatch, short, type Check } from "../verify.js";
import { parseRecordProof, rootOf } from "../unlockProof.js";
import { Badge, FreshnessNote, Link, Loaded, Table, time } from "../ui.js";
import { Send, Wallet, download } from "../actions.js";
import { DOMAINS, TYPES } from "../../../src/eip712/index.js";

export function LockPage({ id }: { id: string }) {
  const s = useSettings();
  const valid = /^[0-9]+$/.test(id ?? "");
  const q = useQuery({
    queryKey: ["lock", s.watch, id],
    queryFn: () => watchGet<LockView>(s.watch, `/watch/locks/${id}`),
    enabled: valid,
  });
  return (
    <>
      <h1 tabIndex={-1}>Lock {valid ? `${id.slice(0, 20)}…` : ""}</h1>
      {!valid ? (
        <p className="state error" role="alert">
          A lock id is a decimal device id; “{id}” is not.
        </p>
      ) : (
        <Loaded q={q} what="the lock">
          {(v) => <Lock v={v} id={id} />}
        </Loaded>
      )}
    </>
  );
}

function Lock({ v, id }: { v: LockView; id: string }) {
  const s = useSettings();
  const ctx = useVerifier("lockAccess", v.chainId);
  const refresh = useQueryClient();
  const checks = useQuery({
    queryKey: ["lock-checks", s.rpc, ctx.contract, JSON.stringify(v.logBatches)],
    queryFn: () => Promise.all(v.logBatches.map((b) => checkLogBatch(ctx, b))),
    refetchInterval: false,
  });
  const [keyId, setKeyId] = useState("");
  const [manager, setManager] = useState("");
  const [expiryHours, setExpiryHours] = useState("24");
  const now = Math.floor(Date.now() / 1000);
  return (
    <>
      <FreshnessNote f={v} />
      <div className="cards">
        <div>
          Owner {v.owner ? <code>{v.owner}</code> : "—"} (ownership period {String(v.ownerEpoch ?? "—")})
        </div>
        <div>Key epoch {String(v.lock.epoch)}</div>
        <div>{String(v.lock.revokedKeys)} keys revoked</div>
        <div>
          <Link to={`/device/${id}`}>The lock as a device</Link>
        </div>
      </div>
      <Table
        caption="Revoked keys"
        head={["Block", "Time", "Key id", "By"]}
        rows={v.revocations.map((r) => [
          String(r.blockNumber),
          time(r.timestamp),
          String(r.keyId),
          <code>{String(r.by)}</code>,
        ])}
      />
      <Table
        caption="Revoke-all epochs"
        head={["Block", "Time", "Epoch"]}
        rows={v.epochs.map((e) => [String(e.blockNumber), time(e.timestamp), String(e.epoch)])}
      />
      <Table
        caption="Managers"
        head={["Manager", "Expiry", "State"]}
        rows={v.managers.map((m) => [
          <code>{String(m.manager)}</code>,
          time(m.expiry),
          m.removed ? "removed" : Number(m.expiry) < now ? "expired" : "active",
        ])}
      />
      <Table
        caption="Anchored unlock-log batches"
        head={["Seq", "Records", "From", "To", "Root", "Lock signature"]}
        rows={v.logBatches.map((b, i) => [
          String(b.seq),
          String(b.count),
          time(b.fromTime),
          time(b.toTime),
          <code>{short(String(b.root))}</code>,
          <Badge check={checks.data?.[i]} />,
        ])}
      />
      <RecordCheck v={v} checks={checks.data} />
      <section className="actions" aria-label="Owner actions">
        <h2>Owner actions</h2>
        <Wallet>
          {(account) => (
            <>
              <p>
                <label htmlFor="key-id">Key id</label>
                <input id="key-id" value={keyId} onChange={(e) => setKeyId(e.target.value.trim())} size={10} />
                <Send
                  label="Revoke this key"
                  address={ctx.contract}
                  abi={ctx.abi}
                  functionName="revokeKey"
                  args={[BigInt(id), BigInt(/^[0-9]+$/.test(keyId) ? keyId : "0")]}
                  onDone={() => refresh.invalidateQueries()}
                />
                <Send
                  label="Revoke all keys"
                  address={ctx.contract}
                  abi={ctx.abi}
                  functionName="revokeAll"
                  args={[BigInt(id)]}
                  onDone={() => refresh.invalidateQueries()}
                />
              </p>
              <p>
                <label htmlFor="manager">Manager</label>
                <input id="manager" value={manager} onChange={(e) => setManager(e.target.value.trim())} size={44} />
                <label htmlFor="expiry">for hours</label>
                <input
                  id="expiry"
                  value={expiryHours}
                  onChange={(e) => setExpiryHours(e.target.value.trim())}
                  size={4}
                />
                <Send
                  label="Appoint manager"
                  address={ctx.contract}
                  abi={ctx.abi}
                  functionName="appointManager"
                  args={[BigInt(id), manager, BigInt(now + 3600 * Number(expiryHours || 0))]}
                  onDone={() => refresh.invalidateQueries()}
                />
                <Send
                  label="Remove manager"
                  address={ctx.contract}
                  abi={ctx.abi}
                  functionName="removeManager"
                  args={[BigInt(id), manager]}
                  onDone={() => refresh.invalidateQueries()}
                />
              </p>
              <Grant lock={id} account={account} owner={v.owner ?? account} chainId={v.chainId ?? 31337} />
            </>
          )}
        </Wallet>
      </section>
    </>
  );
}

/** A key certificate (the catalogue's AccessKey), signed by the wallet and handed over as a file. */
function Grant({ lock, account, owner, chainId }: { lock: string; account: Hex; owner: string; chainId: number }) {
  const s = useSettings();
  const ctx = useVerifier("lockAccess", undefined);
  const { signTypedDataAsync } = useSignTypedData();
  const [holder, setHolder] = useState("");
  const [hours, setHours] = useState("24");
  const [msg, setMsg] = useState<{ error: boolean; text: string } | null>(null);
  const grant = async (e: React.FormEvent) => {
    e.preventDefault();
    if (!/^0x([0-9a-fA-F]{2})+$/.test(holder))
      return setMsg({ error: true, text: "Holder must be the guest's key as 0x-hex bytes." });
    if (!s.contracts.lockAccess) return setMsg({ error: true, text: "The LockAccess address is not set (Settings)." });
    try {
      const epoch = (await ctx.client.readContract({
        address: ctx.contract as Hex,
        abi: ctx.abi,
        functionName: "keyEpoch",
        args: [BigInt(lock)],
      })) as number;
      const issuedAt = Math.floor(Date.now() / 1000) - 60;
      const key = {
        lock: BigInt(lock),
        holder: holder.toLowerCase() as Hex,
        owner: owner as Hex,
        issuer: account,
        issuedAt: BigInt(issuedAt),
        validFrom: BigInt(issuedAt),
        validUntil: BigInt(issuedAt + 3600 * Number(hours || 0)),
        schedule: 0n,
        epoch,
        keyId: BigInt(Math.floor(Math.random() * 2 ** 32)),
      };
      const { name, version } = DOMAINS.lock;
      const signature = await signTypedDataAsync({
        domain: { name, version, chainId, verifyingContract: s.contracts.lockAccess as Hex },
        types: { AccessKey: TYPES.AccessKey.fields.map((f) => ({ name: f.name, type: f.type })) },
        primaryType: "AccessKey",
        message: key,
      } as never);
      download(`access-key-${key.keyId}.json`, { key, signature });
      setMsg({ error: false, text: `Certificate ${key.keyId} signed and downloaded.` });
    } catch (err) {
      setMsg({
        error: true,
        text: `Not granted: ${(err as { shortMessage?: string }).shortMessage ?? (err as Error).message.split("\n")[0]}`,
      });
    }
  };
  return (
    <form onSubmit={grant}>
      <label htmlFor="holder">Grant a key certificate to holder key</label>
      <input id="holder" value={holder} onChange={(e) => setHolder(e.target.value.trim())} size={44} />
      <label htmlFor="hours">valid for hours</label>
      <input id="hours" value={hours} onChange={(e) => setHours(e.target.value.trim())} size={4} />
      <button type="submit">Sign and download certificate</button>
      {msg && (
        <span role={msg.error ? "alert" : "status"} className={msg.error ? "state error" : ""}>
          {msg.text}
        </span>
      )}
    </form>
  );
}

/** Paste or drop an unlock record with its proof: is it in an anchored batch, by the root the chain holds? */
function RecordCheck({ v, checks }: { v: LockView; checks?: Check[] }) {
  const [text, setText] = useState("");
  const [result, setResult] = useState<{ ok: boolean; text: string } | null>(null);
  const check = (doc: string) => {
    try {
      const p = parseRecordProof(doc);
      if (String(p.record.lock) !== String(v.lock.id))
        return setResult({ ok: false, text: `The record is of lock ${p.record.lock}, not this one.` });
      const i = v.logBatches.findIndex((b) => Number(b.seq) === p.batch.seq);
      if (i < 0)
        return setResult({ ok: false, text: `Batch ${p.batch.seq} is not anchored (as of block ${v.indexedBlock}).` });
      const c = checks?.[i];
      if (!c || c.state !== "verified" || !c.onChain)
        return setResult({
          ok: false,
          text: `Batch ${p.batch.seq}'s anchor could not be verified on the chain (${c?.what ?? "still checking"}).`,
        });
      const root = rootOf(p);
      if (root.toLowerCase() !== String(c.onChain.root).toLowerCase())
        return setResult({
          ok: false,
          text: `Not proven: the record and proof lead to ${short(root)}, batch ${p.batch.seq}'s anchored root is ${short(String(c.onChain.root))}.`,
        });
      setResult({
        ok: true,
        text: `Proven: the record (${p.record.outcome === 0 ? "opened" : `denied, code ${p.record.outcome}`} at ${time(p.record.at)}) is in batch ${p.batch.seq}, anchored by the lock's key at block ${c.block}.`,
      });
    } catch (e) {
      setResult({ ok: false, text: (e as Error).message });
    }
  };
  return (
    <section aria-label="Verify an unlock record">
      <h2>Verify an unlock record</h2>
      <form
        onSubmit={(e) => {
          e.preventDefault();
          check(text);
        }}
        onDragOver={(e) => e.preventDefault()}
        onDrop={async (e) => {
          e.preventDefault();
          const f = e.dataTransfer.files[0];
          if (f) {
            const t = await f.text();
            setText(t);
            check(t);
          }
        }}
      >
        <label htmlFor="record-proof">Paste or drop a record with its proof (JSON: record, batch, proof)</label>
        <br />
        <textarea id="record-proof" rows={4} cols={90} value={text} onChange={(e) => setText(e.target.value)} />
        <br />
        <button type="submit">Verify against the anchored root</button>
        {result && (
          <p
            role={result.ok ? "status" : "alert"}
            className={result.ok ? "" : "state error"}
            data-testid="record-result"
          >
            {result.text}
          </p>
        )}
      </form>
    </section>
  );
}

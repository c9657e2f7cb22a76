/** Where the console reads from: the watch, the node it verifies against, the owner, the contracts. */
import { useState } from "react";
import { CONTRACTS, ADDRESS, saveSettings, type Settings } from "../settings.js";

export function SettingsPage({ settings, onSave }: { settings: Settings; onSave: (s: Settings) => void }) {
  const [s, set] = useState(settings);
  const [error, setError] = useState("");
  const [saved, setSaved] = useState(false);
  const submit = (e: React.FormEvent) => {
    e.preventDefault();
    if (s.owner && !ADDRESS.test(s.owner)) return setError("Owner must be 0x and 40 hex digits, or empty.");
    for (const c of CONTRACTS)
      if (s.contracts[c] && !ADDRESS.test(s.contracts[c]!))
        return setError(`${c} must be 0x and 40 hex digits, or empty.`);
    try {
      new URL(s.rpc);
    } catch {
      return setError("The node URL must be an absolute URL, e.g. http://127.0.0.1:8545.");
    }
    setError("");
    saveSettings(s);
    onSave(s);
    setSaved(true);
  };
  return (
    <>
      <h1 tabIndex={-1}>Settings</h1>
      <form onSubmit={submit} aria-describedby="settings-help">
        <p id="settings-help">
          The console shows what the watch indexed and re-checks every signature on a node <em>you</em> choose. URL
          parameters (<code>?watch=</code>, <code>?rpc=</code>, <code>?owner=</code>, <code>?custodyLedger=</code>…)
          override these.
        </p>
        <p>
          <label htmlFor="watch">Watch API (empty: this origin)</label>
          <input id="watch" size={40} value={s.watch} onChange={(e) => set({ ...s, watch: e.target.value.trim() })} />
        </p>
        <p>
          <label htmlFor="rpc">JSON-RPC node to verify against</label>
          <input id="rpc" size={40} value={s.rpc} onChange={(e) => set({ ...s, rpc: e.target.value.trim() })} />
        </p>
        <p>
          <label htmlFor="owner">Owner address (the fleet shown)</label>
          <input
            id="owner"
            size={44}
            value={s.owner}
            onChange={(e) => set({ ...s, owner: e.target.value.trim().toLowerCase() })}
          />
        </p>
        {CONTRACTS.map((c) => (
          <p key={c}>
            <label htmlFor={c}>{c} address (pins the signatures' domain)</label>
            <input
              id={c}
              size={44}
              value={s.contracts[c] ?? ""}
              onChange={(e) => set({ ...s, contracts: { ...s.contracts, [c]: e.target.value.trim().toLowerCase() } })}
            />
          </p>
        ))}
        {error && (
          <p role="alert" className="state error">
            {error}
          </p>
        )}
        {saved && <p role="status">Saved.</p>}
        <button type="submit">Save</button>
      </form>
    </>
  );
}

/**
 * Where the console reads from: the watch's API (same origin by default), the JSON-RPC node it
 * re-verifies against (the user's choice, never the watch's), and the suite's contract addresses
 * the signatures' domains are pinned to. A `?watch=`, `?rpc=`, `?owner=` or `?<contract>=`
 * parameter wins over what the settings page stored.
 */
export const CONTRACTS = ["registry", "lockAccess", "custodyLedger", "paymentChannels", "locationBeacons"] as const;
export type ContractName = (typeof CONTRACTS)[number];

export interface Settings {
  watch: string;
  rpc: string;
  owner: string;
  contracts: Partial<Record<ContractName, string>>;
}

const KEY = "custos.console.settings";
export const DEFAULT_RPC = "http://127.0.0.1:8545";

function stored(): Partial<Settings> {
  try {
    return JSON.parse(localStorage.getItem(KEY) ?? "{}") as Partial<Settings>;
  } catch {
    return {};
  }
}

export function loadSettings(): Settings {
  const s = stored();
  const q = new URLSearchParams(location.search);
  const contracts: Partial<Record<ContractName, string>> = { ...(s.contracts ?? {}) };
  for (const c of CONTRACTS) {
    const v = q.get(c);
    if (v) contracts[c] = v.toLowerCase();
  }
  return {
    watch: (q.get("watch") ?? s.watch ?? "").replace(/\/$/, ""),
    rpc: q.get("rpc") ?? s.rpc ?? DEFAULT_RPC,
    owner: (q.get("owner") ?? s.owner ?? "").toLowerCase(),
    contracts,
  };
}

export function saveSettings(s: Settings) {
  localStorage.setItem(KEY, JSON.stringify(s));
}

export const ADDRESS = /^0x[0-9a-fA-F]{40}$/;

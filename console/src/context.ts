/** The settings every page reads, and the verification context built from them. */
import { createContext, useContext } from "react";
import type { Abi } from "viem";
import { ABIS, chainClient } from "./chain.js";
import type { Settings } from "./settings.js";

export const SettingsContext = createContext<Settings | null>(null);

export function useSettings(): Settings {
  const s = useContext(SettingsContext);
  if (!s) throw new Error("no settings");
  return s;
}

/** What verify.ts needs for one contract: the user's node, the watch's chain id, the pinned address. */
export function useVerifier(contract: keyof typeof ABIS, chainId: number | undefined) {
  const s = useSettings();
  return {
    client: chainClient(s.rpc),
    chainId: chainId ?? 31337,
    contract: s.contracts[contract],
    abi: ABIS[contract] as Abi,
  };
}

/**
 * The owner's wallet through wagmi: any injected EIP-1193 provider, or — for the demo and the
 * tests — a local development account (`?dev=0x…`) whose transactions and typed-data signatures the
 * user's own node makes (hardhat node and anvil hold their dev accounts unlocked).
 */
import { createConfig, http, injected, mock } from "wagmi";
import { hardhat } from "wagmi/chains";
import type { Hex } from "viem";

export function walletConfig(rpc: string) {
  const dev = new URLSearchParams(location.search).get("dev");
  const chain = { ...hardhat, rpcUrls: { default: { http: [rpc] } } };
  return createConfig({
    chains: [chain],
    connectors: [injected(), ...(dev ? [mock({ accounts: [dev as Hex], features: { reconnect: true } })] : [])],
    transports: { [chain.id]: http(rpc) },
  });
}

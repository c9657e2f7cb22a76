/**
 * Owner actions with the user's wallet (wagmi): connect, then send a contract call — report stolen,
 * release, revoke lock keys, appoint or remove managers — or sign typed data (a key certificate, a
 * watch subscription). The chain decides; the console shows what the receipt says.
 */
import { useState, type ReactNode } from "react";
import { useAccount, useConnect, useDisconnect, useWriteContract } from "wagmi";
import { waitForTransactionReceipt } from "wagmi/actions";
import { useConfig } from "wagmi";
import type { Abi, Hex } from "viem";

export function Wallet({ children }: { children: (account: Hex) => ReactNode }) {
  const { address, status } = useAccount();
  const { connectors, connect, error } = useConnect();
  const { disconnect } = useDisconnect();
  if (status !== "connected" || !address)
    return (
      <div>
        {connectors.map((c) => (
          <button key={c.uid} onClick={() => connect({ connector: c })}>
            Connect {c.id === "mock" ? "development account" : c.name}
          </button>
        ))}
        {error && (
          <p role="alert" className="state error">
            {error.message.split("\n")[0]}
          </p>
        )}
      </div>
    );
  return (
    <div>
      <p>
        Acting as <code>{address}</code> <button onClick={() => disconnect()}>Disconnect</button>
      </p>
      {children(address)}
    </div>
  );
}

/** A button that sends one contract call and reports what its receipt says. */
export function Send(props: {
  label: string;
  address?: string;
  abi: Abi;
  functionName: string;
  args: unknown[];
  onDone?: () => void;
}) {
  const config = useConfig();
  const { writeContractAsync } = useWriteContract();
  const [state, setState] = useState<{ kind: "idle" | "busy" | "ok" | "error"; text?: string }>({ kind: "idle" });
  const run = async () => {
    if (!props.address) return setState({ kind: "error", text: "The contract's address is not set (Settings)." });
    setState({ kind: "busy" });
    try {
      const hash = await writeContractAsync({
        address: props.address as Hex,
        abi: props.abi,
        functionName: props.functionName,
        args: props.args,
      });
      const receipt = await waitForTransactionReceipt(config, { hash });
      if (receipt.status !== "success")
        return setState({ kind: "error", text: `${props.label}: the transaction reverted (${hash})` });
      setState({ kind: "ok", text: `${props.label}: done in block ${receipt.blockNumber} (${hash.slice(0, 10)}…)` });
      props.onDone?.();
    } catch (e) {
      setState({
        kind: "error",
        text: `${props.label} failed: ${(e as { shortMessage?: string }).shortMessage ?? (e as Error).message.split("\n")[0]}`,
      });
    }
  };
  return (
    <>
      <button onClick={run} disabled={state.kind === "busy"}>
        {props.label}
      </button>
      {state.text && (
        <span
          role={state.kind === "error" ? "alert" : "status"}
          className={state.kind === "error" ? "state error" : ""}
        >
          {state.text}
        </span>
      )}
    </>
  );
}

/** Offers `data` as a JSON file download. */
export function download(name: string, data: unknown, type = "application/json") {
  const blob = new Blob([JSON.stringify(data, (_, v) => (typeof v === "bigint" ? v.toString() : v), 2)], { type });
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = name;
  a.click();
  URL.revokeObjectURL(a.href);
}

/**
 * Finding the revert data in whatever a failed call produced. The same revert reaches callers in
 * several shapes:
 *
 * - ethers v6 `CALL_EXCEPTION` (`err.data`, and the node's answer in `err.info.error.data`);
 * - ethers `UNKNOWN_ERROR` "could not coalesce error" (`err.error.data`), e.g. hardhat node's
 *   answer to an `eth_sendTransaction` that reverts;
 * - Hardhat's in-process network (EDR): a `SolidityError`/`ProviderError` with `data` and code 3;
 * - a node's JSON-RPC answer, parsed or as text: `{ error: { code: 3, message, data } }`. Both nodes
 *   put the data in `error.data`; their messages differ — hardhat node: `VM Exception while
 *   processing transaction: reverted with custom error 'Name(args)'` (or `reason string '…'`,
 *   `panic code 0x11`); anvil: `execution reverted: custom error 0xe2517d3f: 0000…` (or
 *   `execution reverted: <reason>`). When a shape carries no data, the message is read instead;
 * - the revert data itself (`0x…`).
 *
 * Keys that hold the *call's* data (`transaction`, `payload`, `invocation`) are never searched.
 */
import { AbiCoder, id } from "ethers";
import { errorTable } from "./abi.js";

const REVERT_DATA = /^0x([0-9a-fA-F]{8}([0-9a-fA-F]{2})*)?$/;
const SEARCHED = ["error", "info", "cause", "data", "body", "responseBody", "response"] as const;

const ERROR_STRING = id("Error(string)").slice(0, 10);
const PANIC = id("Panic(uint256)").slice(0, 10);

function encodeReason(reason: string): string {
  return ERROR_STRING + AbiCoder.defaultAbiCoder().encode(["string"], [reason]).slice(2);
}

/**
 * The revert data in `input` (`"0x"` for a revert without data), or undefined when `input` is not
 * a revert at all (the node could not be reached, a bad argument, a timeout…).
 */
export function revertDataOf(input: unknown): string | undefined {
  const seen = new Set<unknown>();
  let reverted = false;

  const visit = (v: unknown, depth: number): string | undefined => {
    if (depth > 8 || v === null || v === undefined) return undefined;
    if (typeof v === "string") {
      if (REVERT_DATA.test(v)) return v.toLowerCase();
      const t = v.trim();
      if (t.startsWith("{") && t.endsWith("}")) {
        try {
          return visit(JSON.parse(t), depth + 1);
        } catch {
          return undefined;
        }
      }
      return undefined;
    }
    if (typeof v !== "object" || seen.has(v)) return undefined;
    seen.add(v);
    const o = v as Record<string, unknown>;
    if (isRevertMarker(o)) reverted = true;
    for (const k of SEARCHED) {
      if (!(k in o)) continue;
      const found = visit(o[k], depth + 1);
      if (found !== undefined) return found;
    }
    // Last resort for this object: its message (anvil and hardhat word the revert in it).
    if (typeof o.message === "string") {
      const fromText = dataFromMessage(o.message);
      if (fromText !== undefined) {
        reverted = true;
        if (fromText !== "0x") return fromText;
      }
    }
    return undefined;
  };

  if (typeof input === "string" && !REVERT_DATA.test(input) && !input.trim().startsWith("{")) {
    return dataFromMessage(input);
  }
  const found = visit(input, 0);
  if (found !== undefined) return found;
  return reverted ? "0x" : undefined;
}

/** Whether this error object says "a revert" (ethers' CALL_EXCEPTION, JSON-RPC code 3, EDR's SolidityError). */
function isRevertMarker(o: Record<string, unknown>): boolean {
  if (o.code === "CALL_EXCEPTION" || o.code === 3) return true;
  if ((o as { name?: unknown }).name === "SolidityError") return true;
  return (
    typeof o.message === "string" && /execution reverted|reverted with|VM Exception while processing/.test(o.message)
  );
}

/**
 * Revert data rebuilt from a node's message, for shapes that lost the `data` field: `"0x"` for a
 * revert without a reason, undefined when the text does not describe a revert.
 */
export function dataFromMessage(message: string): string | undefined {
  // anvil: "execution reverted: custom error 0xe2517d3f: 0000…"
  let m = /custom error (0x[0-9a-fA-F]{8}):?\s*([0-9a-fA-F]*)/.exec(message);
  if (m && m[2].length % 2 === 0) return (m[1] + m[2]).toLowerCase();
  // hardhat: "reverted with custom error 'Name(args)'"
  m = /reverted with custom error '(\w+)\((.*)\)'/.exec(message);
  if (m) return encodeNamed(m[1], m[2]) ?? "0x";
  // hardhat: "reverted with reason string 'text'"
  m = /reverted with reason string '([\s\S]*)'/.exec(message);
  if (m) return encodeReason(m[1]);
  // hardhat: "reverted with panic code 0x11 (…)"
  m = /reverted with panic code (0x[0-9a-fA-F]+)/.exec(message);
  if (m)
    return (
      PANIC +
      AbiCoder.defaultAbiCoder()
        .encode(["uint256"], [BigInt(m[1])])
        .slice(2)
    );
  // "execution reverted", "reverted without a reason", "Transaction reverted without a reason string"
  if (/reverted without a reason|^(execution reverted|revert)$/i.test(message.trim())) return "0x";
  // anvil and geth: "execution reverted: <reason>" (custom errors handled above)
  m = /^execution reverted: ([\s\S]+)$/.exec(message.trim());
  if (m) return encodeReason(m[1]);
  if (/execution reverted|VM Exception while processing transaction: revert/.test(message)) return "0x";
  return undefined;
}

/** Hardhat's text `Name("0x…", 12)` back into revert data, when `Name` is known and its arguments parse. */
function encodeNamed(name: string, args: string): string | undefined {
  for (const e of errorTable().values()) {
    if (e.name !== name) continue;
    try {
      // Integers as strings, so that 256-bit values survive JSON.
      const values = JSON.parse(`[${args.replace(/(^|[,\s])(-?\d+)(?=\s*(,|$))/g, '$1"$2"')}]`) as unknown[];
      if (values.length !== e.fragment.inputs.length) continue;
      return e.selector + AbiCoder.defaultAbiCoder().encode(e.fragment.inputs, values).slice(2);
    } catch {
      // not this overload
    }
  }
  return undefined;
}

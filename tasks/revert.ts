/**
 * The shared contract-error decoder as the tasks use it. TEMPORARY stand-in until src/errors
 * (errors-ready) is merged: then this file only re-exports `explainContractError`.
 */
import { Interface } from "ethers";
import {
  CustodyLedger__factory,
  DeviceRegistry__factory,
  LockAccess__factory,
  PaymentChannels__factory,
} from "../typechain-types/index.js";

const ifaces = [DeviceRegistry__factory, LockAccess__factory, PaymentChannels__factory, CustodyLedger__factory].map(
  (f) => new Interface(f.abi),
);

function dataOf(v: unknown, depth = 0): string | undefined {
  if (depth > 6 || v === null || typeof v !== "object") return undefined;
  const o = v as Record<string, unknown>;
  if (typeof o.data === "string" && /^0x([0-9a-f]{8})/i.test(o.data)) return o.data;
  for (const k of ["error", "info", "cause"]) {
    const d = dataOf(o[k], depth + 1);
    if (d) return d;
  }
  return undefined;
}

export function explainContractError(err: unknown): { sentence: string } | undefined {
  const data = dataOf(err);
  if (!data) return undefined;
  for (const i of ifaces) {
    const e = i.parseError(data);
    if (e) return { sentence: `${e.name}(${e.args.map(String).join(", ")})` };
  }
  return { sentence: `revert ${data.slice(0, 10)}` };
}

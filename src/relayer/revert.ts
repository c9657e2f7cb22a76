/** Telling a revert from a failure to reach the node, and naming a revert's reason. */
import { Interface, isCallException } from "ethers";
import { DeviceRegistry__factory, ERC2771Forwarder__factory } from "../../typechain-types/index.js";

const interfaces: Interface[] = [
  DeviceRegistry__factory.createInterface(),
  ERC2771Forwarder__factory.createInterface(),
  new Interface(["error Error(string)", "error Panic(uint256)", "error FailedCall()"]),
];

/** The revert data of a call exception, or undefined when `err` is not a revert (node down, timeout…). */
export function revertData(err: unknown): string | undefined {
  if (!isCallException(err)) return undefined;
  const e = err as { data?: unknown; info?: { error?: { data?: unknown } } };
  if (typeof e.data === "string") return e.data;
  const inner = e.info?.error?.data;
  if (typeof inner === "string") return inner;
  if (inner && typeof inner === "object" && typeof (inner as { data?: unknown }).data === "string")
    return (inner as { data: string }).data;
  return "0x";
}

/** A readable reason for revert data: `DeviceRegistryWrongStatus(12, 2)`, `Error("…")`, or the raw hex. */
export function decodeRevert(data: string): string {
  if (!data || data === "0x") return "reverted without a reason";
  for (const iface of interfaces) {
    try {
      const parsed = iface.parseError(data);
      if (parsed) return `${parsed.name}(${parsed.args.map((a) => stringify(a)).join(", ")})`;
    } catch {
      // not this interface's error
    }
  }
  return `reverted with ${data}`;
}

function stringify(value: unknown): string {
  if (typeof value === "string") return /^0x/.test(value) ? value : JSON.stringify(value);
  return String(value);
}

/** Runs `fn`; a revert becomes `{ reverted: reason, data }`, any other error is thrown. */
export async function tryCall<T>(
  fn: () => Promise<T>,
): Promise<{ ok: true; value: T } | { ok: false; reason: string; data: string }> {
  try {
    return { ok: true, value: await fn() };
  } catch (err) {
    const data = revertData(err);
    if (data === undefined) throw err;
    return { ok: false, reason: decodeRevert(data), data };
  }
}

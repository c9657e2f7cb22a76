/** Telling a revert from a failure to reach the node, and naming a revert's reason (src/errors' sentences). */
import { explainContractError, explainRevertData } from "../errors/index.js";

/** The revert data of a call exception, or undefined when `err` is not a revert (node down, timeout…). */
export function revertData(err: unknown): string | undefined {
  return explainContractError(err)?.data;
}

/** The sentence for revert data, e.g. `device 6290…4457 is Quarantined: … (DeviceRegistryWrongStatus)`. */
export function decodeRevert(data: string): string {
  return explainRevertData(data).sentence;
}

/** Runs `fn`; a revert becomes `{ ok: false, reason, data }`, any other error is thrown. */
export async function tryCall<T>(
  fn: () => Promise<T>,
): Promise<{ ok: true; value: T } | { ok: false; reason: string; data: string }> {
  try {
    return { ok: true, value: await fn() };
  } catch (err) {
    const info = explainContractError(err);
    if (info === undefined) throw err;
    return { ok: false, reason: info.sentence, data: info.data };
  }
}

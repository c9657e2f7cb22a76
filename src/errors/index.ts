/**
 * The suite's one contract-error decoder, shared by the tasks, the agent and the relayer:
 * `decodeContractError(err | revertData)` is a sentence for any revert of the suite's contracts,
 * with its arguments readable (device ids, UTC dates, shortened keys and addresses, ETH amounts),
 * followed by the error's name in parentheses so that it can be looked up.
 *
 *   decodeContractError(err)
 *   // → "device 629014…4457 is Quarantined: this needs an Active device (DeviceRegistryWrongStatus)"
 *
 * It takes an ethers error (CALL_EXCEPTION or not), an error of Hardhat's in-process network, a
 * node's JSON-RPC answer (parsed or as text, from hardhat node or anvil), or the revert data. An
 * error that is not a revert (the node down, a timeout) comes back as its own first line; use
 * {@link explainContractError} (undefined then) or {@link revertDataOf} to tell them apart.
 */
import { AbiCoder, type Provider } from "ethers";
import { errorTable, haveArtifacts, ARTIFACTS_DIR } from "./abi.js";
import { revertDataOf } from "./extract.js";
import { anyValue, panic } from "./format.js";
import { SENTENCES, type SentenceContext } from "./sentences.js";

export { revertDataOf, dataFromMessage } from "./extract.js";
export { errorTable, registerErrors, readArtifactAbis, OPENZEPPELIN_ERRORS, type ErrorEntry } from "./abi.js";
export { SENTENCES } from "./sentences.js";
export * as format from "./format.js";

export interface ContractErrorInfo {
  /**
   * `custom`: a declared custom error; `reason`: `Error(string)`; `panic`: `Panic(uint256)`;
   * `empty`: a revert without data; `mined`: a mined transaction that reverted (nodes give no
   * data for those); `unknown`: a selector no known ABI declares.
   */
  kind: "custom" | "reason" | "panic" | "empty" | "mined" | "unknown";
  /** `DeviceRegistryKeyTaken`, `Error`, `Panic`; undefined for `empty`, `mined` and `unknown`. */
  name?: string;
  /** `DeviceRegistryKeyTaken(bytes32)` */
  signature?: string;
  /** The 4-byte selector (`0x…`), when there is data. */
  selector?: string;
  /** The contracts whose ABIs declare the error. */
  contracts: string[];
  /** Decoded arguments by parameter name (ethers values: bigint, checksummed address, hex). */
  args: Record<string, unknown>;
  /** Decoded arguments in order. */
  argList: unknown[];
  /** The revert data (`0x` when none). */
  data: string;
  /** The sentence, ending with `(ErrorName)` for a custom error. */
  sentence: string;
  /** False when no sentence is written for this error and a generic one was built from its ABI. */
  templated: boolean;
}

export interface DecodeOptions {
  /** Device keys the caller knows: a key hash in an error is shown as the key itself. */
  keys?: readonly string[];
}

/** A sentence for a revert (or, for anything else, its message's first line). Never throws. */
export function decodeContractError(input: unknown, opts: DecodeOptions = {}): string {
  return explainContractError(input, opts)?.sentence ?? firstLine(input);
}

/** The decoded revert in `input`, or undefined when `input` is not a revert. Never throws. */
export function explainContractError(input: unknown, opts: DecodeOptions = {}): ContractErrorInfo | undefined {
  let data: string | undefined;
  try {
    data = revertDataOf(input);
  } catch {
    data = undefined;
  }
  if (data === undefined) return undefined;
  if (data === "0x" && isMinedRevert(input)) {
    const r = (input as { receipt: { hash?: string; blockNumber?: number } }).receipt;
    return base(
      "mined",
      data,
      `the transaction${r.hash ? ` ${r.hash}` : ""} was mined and reverted${r.blockNumber !== undefined ? ` in block ${r.blockNumber}` : ""}; ` +
        "a node gives no reason for a mined transaction: replay it with eth_call (explainMinedRevert) to learn why",
    );
  }
  return explainRevertData(data, opts);
}

/** Decodes revert data (`0x…`). */
export function explainRevertData(data: string, opts: DecodeOptions = {}): ContractErrorInfo {
  const hex = data.toLowerCase();
  if (hex === "0x" || hex.length < 10)
    return base(
      "empty",
      "0x",
      "the call reverted without a reason (no revert data): the contract may not have this function (is the address the contract you meant?), or the call ran out of gas",
    );
  const selector = hex.slice(0, 10);
  const coder = AbiCoder.defaultAbiCoder();
  try {
    if (selector === "0x08c379a0") {
      const [reason] = coder.decode(["string"], "0x" + hex.slice(10));
      return {
        ...base("reason", hex, `the contract refused: "${String(reason)}"`),
        name: "Error",
        signature: "Error(string)",
        selector,
        args: { reason },
        argList: [reason],
      };
    }
    if (selector === "0x4e487b71") {
      const [code] = coder.decode(["uint256"], "0x" + hex.slice(10));
      return {
        ...base("panic", hex, `the contract panicked: ${panic(code)}`),
        name: "Panic",
        signature: "Panic(uint256)",
        selector,
        args: { code },
        argList: [code],
      };
    }
  } catch {
    // malformed Error/Panic data: treated as unknown below
  }
  const entry = errorTable().get(selector);
  if (entry) {
    try {
      const decoded = coder.decode(entry.fragment.inputs, "0x" + hex.slice(10));
      const argList = [...decoded].map(plain);
      const args: Record<string, unknown> = {};
      entry.fragment.inputs.forEach((p, i) => {
        args[p.name || `arg${i}`] = argList[i];
      });
      const template = SENTENCES[entry.name];
      const ctx: SentenceContext = { keys: opts.keys ?? [] };
      const text = template
        ? template(args, ctx)
        : `${entry.contracts[0]} refused the call with ${entry.name}(${argList.map(anyValue).join(", ")})`;
      return {
        kind: "custom",
        name: entry.name,
        signature: entry.signature,
        selector,
        contracts: [...entry.contracts],
        args,
        argList,
        data: hex,
        sentence: `${text} (${entry.name})`,
        templated: template !== undefined,
      };
    } catch {
      // data too short for the declared arguments: treated as unknown
    }
  }
  const where = haveArtifacts()
    ? "none of the suite's contracts declares it: is the address the contract you meant?"
    : `the contracts' artifacts were not found at ${ARTIFACTS_DIR}: run npx hardhat build`;
  return {
    ...base(
      "unknown",
      hex,
      `the call reverted with an unknown error (selector ${selector}, ${(hex.length - 10) / 2} bytes of arguments): ${where}`,
    ),
    selector,
  };
}

/**
 * Why a mined transaction reverted: replays it with `eth_call` at its block (nodes keep no revert
 * data for mined transactions). Undefined when the replay succeeds (state differed) or fails to run.
 */
export async function explainMinedRevert(
  provider: Provider,
  txHash: string,
  opts: DecodeOptions = {},
): Promise<ContractErrorInfo | undefined> {
  const tx = await provider.getTransaction(txHash);
  if (!tx || tx.blockNumber === null) return undefined;
  try {
    await provider.call({
      from: tx.from,
      to: tx.to,
      data: tx.data,
      value: tx.value,
      gasLimit: tx.gasLimit,
      blockTag: tx.blockNumber,
    });
    return undefined;
  } catch (err) {
    return explainContractError(err, opts);
  }
}

function base(kind: ContractErrorInfo["kind"], data: string, sentence: string): ContractErrorInfo {
  return { kind, contracts: [], args: {}, argList: [], data, sentence, templated: true };
}

/** ethers Result values as plain values (nested results as arrays). */
function plain(v: unknown): unknown {
  if (v && typeof v === "object" && typeof (v as { toArray?: unknown }).toArray === "function")
    return (v as { toArray: () => unknown[] }).toArray().map(plain);
  return v;
}

function isMinedRevert(input: unknown): boolean {
  const r = (input as { receipt?: { status?: unknown } } | null)?.receipt;
  return !!r && typeof r === "object" && r.status === 0;
}

/** The first line of an error that is not a revert (ethers' short message when there is one). */
function firstLine(input: unknown): string {
  if (input instanceof Error || (input && typeof input === "object" && "message" in input)) {
    const e = input as { shortMessage?: unknown; message?: unknown };
    const text = typeof e.shortMessage === "string" ? e.shortMessage : String(e.message);
    return text.split("\n")[0];
  }
  return String(input).split("\n")[0];
}

/**
 * Every custom error the suite can surface, by selector: read from the compiled artifacts' ABIs
 * (`artifacts/contracts/**` and `artifacts/@openzeppelin/**`, so a contract or an error added later
 * is decoded without a change here), plus OpenZeppelin errors that libraries raise inside the
 * suite's calls without appearing in an artifact. Loaded on first use, synchronously (a decoder
 * is called from `catch` blocks), once per process: about 0.7 MB of JSON.
 */
import { existsSync, readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { ErrorFragment, type JsonFragment } from "ethers";
import { addRoleName } from "./format.js";

export interface ErrorEntry {
  name: string;
  /** `Name(type,type)` */
  signature: string;
  /** `0x` and 4 bytes. */
  selector: string;
  fragment: ErrorFragment;
  /** The contracts whose ABI declares it (`OpenZeppelin` for the built-in list below). */
  contracts: string[];
}

/**
 * OpenZeppelin 5 errors raised by libraries and bases the suite uses (ECDSA, MerkleProof, Address,
 * SafeERC20, SafeCast, ReentrancyGuard, ERC-721/20, AccessControl, Nonces, ERC2771Forwarder): most
 * are in some artifact too, this list keeps them decoded when the artifacts are missing.
 */
export const OPENZEPPELIN_ERRORS = [
  "error AccessControlUnauthorizedAccount(address account, bytes32 neededRole)",
  "error AccessControlBadConfirmation()",
  "error ECDSAInvalidSignature()",
  "error ECDSAInvalidSignatureLength(uint256 length)",
  "error ECDSAInvalidSignatureS(bytes32 s)",
  "error MerkleProofInvalidMultiproof()",
  "error FailedCall()",
  "error FailedDeployment()",
  "error InsufficientBalance(uint256 balance, uint256 needed)",
  "error MissingPrecompile(address precompile)",
  "error AddressEmptyCode(address target)",
  "error ReentrancyGuardReentrantCall()",
  "error SafeERC20FailedOperation(address token)",
  "error SafeCastOverflowedUintDowncast(uint8 bits, uint256 value)",
  "error InvalidAccountNonce(address account, uint256 currentNonce)",
  "error InvalidShortString()",
  "error StringTooLong(string str)",
  "error ERC721InvalidOwner(address owner)",
  "error ERC721NonexistentToken(uint256 tokenId)",
  "error ERC721IncorrectOwner(address sender, uint256 tokenId, address owner)",
  "error ERC721InvalidSender(address sender)",
  "error ERC721InvalidReceiver(address receiver)",
  "error ERC721InsufficientApproval(address operator, uint256 tokenId)",
  "error ERC721InvalidApprover(address approver)",
  "error ERC721InvalidOperator(address operator)",
  "error ERC20InsufficientBalance(address sender, uint256 balance, uint256 needed)",
  "error ERC20InvalidSender(address sender)",
  "error ERC20InvalidReceiver(address receiver)",
  "error ERC20InsufficientAllowance(address spender, uint256 allowance, uint256 needed)",
  "error ERC20InvalidApprover(address approver)",
  "error ERC20InvalidSpender(address spender)",
  "error ERC2612ExpiredSignature(uint256 deadline)",
  "error ERC2612InvalidSigner(address signer, address owner)",
  "error ERC2771ForwarderInvalidSigner(address signer, address from)",
  "error ERC2771ForwarderMismatchedValue(uint256 requestedValue, uint256 msgValue)",
  "error ERC2771ForwarderExpiredRequest(uint48 deadline)",
  "error ERC2771UntrustfulTarget(address target, address forwarder)",
  "error ERC2771ForwarderNoRefundReceiver()",
] as const;

/** The repository's `artifacts/` (next to `src/`). */
export const ARTIFACTS_DIR = path.join(import.meta.dirname, "..", "..", "artifacts");

/** Every contract artifact under `dir` (build-info and declaration files skipped): its name and ABI. */
export function readArtifactAbis(dir = ARTIFACTS_DIR): { contract: string; file: string; abi: JsonFragment[] }[] {
  const out: { contract: string; file: string; abi: JsonFragment[] }[] = [];
  if (!existsSync(dir)) return out;
  const walk = (d: string) => {
    for (const entry of readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, entry.name);
      if (entry.isDirectory()) {
        if (entry.name !== "build-info" && entry.name !== "cache") walk(p);
      } else if (entry.name.endsWith(".json") && !entry.name.endsWith(".dbg.json")) {
        try {
          const json = JSON.parse(readFileSync(p, "utf8")) as { contractName?: string; abi?: unknown };
          if (Array.isArray(json.abi))
            out.push({ contract: json.contractName ?? path.basename(p, ".json"), file: p, abi: json.abi });
        } catch {
          // not an artifact
        }
      }
    }
  };
  walk(dir);
  return out;
}

let table: Map<string, ErrorEntry> | undefined;
let artifactsFound = false;

function add(map: Map<string, ErrorEntry>, fragment: ErrorFragment, contract: string): void {
  const selector = fragment.selector.toLowerCase();
  const known = map.get(selector);
  if (known) {
    if (!known.contracts.includes(contract)) known.contracts.push(contract);
    return;
  }
  map.set(selector, {
    name: fragment.name,
    signature: fragment.format("sighash"),
    selector,
    fragment,
    contracts: [contract],
  });
}

/** The error table (built on first use). */
export function errorTable(): Map<string, ErrorEntry> {
  if (table) return table;
  const map = new Map<string, ErrorEntry>();
  const artifacts = readArtifactAbis();
  artifactsFound = artifacts.length > 0;
  for (const { contract, abi } of artifacts) {
    for (const item of abi) {
      if (item.type === "error") add(map, ErrorFragment.from(item), contract);
      else if (item.type === "function" && item.name?.endsWith("_ROLE") && (item.inputs?.length ?? 0) === 0)
        addRoleName(item.name);
    }
  }
  for (const sig of OPENZEPPELIN_ERRORS) add(map, ErrorFragment.from(sig), "OpenZeppelin");
  table = map;
  return map;
}

/** Whether the artifacts were found (without them only OpenZeppelin's errors are decoded). */
export function haveArtifacts(): boolean {
  errorTable();
  return artifactsFound;
}

/** Adds the errors of an ABI not among the artifacts (a contract of another project the suite calls). */
export function registerErrors(abi: readonly (JsonFragment | string)[], contract: string): void {
  const map = errorTable();
  for (const item of abi) {
    if (typeof item === "string") {
      if (item.trim().startsWith("error ")) add(map, ErrorFragment.from(item), contract);
    } else if (item.type === "error") {
      add(map, ErrorFragment.from(item), contract);
    }
  }
}

/** Error entries by name (the first declared), for callers that build revert data in tests. */
export function errorByName(name: string): ErrorEntry | undefined {
  for (const e of errorTable().values()) if (e.name === name) return e;
  return undefined;
}

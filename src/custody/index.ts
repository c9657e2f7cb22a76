/**
 * Custody ledger values off chain: shipment ids from their creator and GS1 EPC URI, a pallet's
 * children tree, CBV vocabulary as the bytes32 the contract stores, and a tracker's batch of raw
 * readings as the Merkle tree whose root its checkpoint carries (OpenZeppelin StandardMerkleTree
 * over `(uint64 at, int16 temp)`).
 */
import { AbiCoder, getAddress, keccak256, toUtf8Bytes, encodeBytes32String, decodeBytes32String } from "ethers";
import { bytesToHex, hexToBytes } from "../eip712/fast.js";
import { StandardTree, standardLeaf } from "../merkle/index.js";

/** The leaf encoding of one reading (`CustodyLedger.Reading`). */
export const READING_ENCODING = ["uint64", "int16"] as const;

/** One raw reading of a tracker: when, and the temperature in hundredths of °C. */
export interface Reading {
  at: number;
  temp: number;
}

/** keccak256 of a GS1 EPC URI: what a shipment id is derived from, and a pallet's children tree holds. */
export function epcHashOf(epc: string): string {
  return keccak256(toUtf8Bytes(epc));
}

/**
 * The id of the shipment `creator` creates with GS1 EPC URI `epc`:
 * keccak256(abi.encode(creator, keccak256(epc))) (`CustodyLedger.shipmentIdOf`). Ids belong to
 * their creators: the same EPC created by someone else is another shipment.
 */
export function shipmentIdOf(creator: string, epc: string): string {
  return keccak256(AbiCoder.defaultAbiCoder().encode(["address", "bytes32"], [getAddress(creator), epcHashOf(epc)]));
}

/** The id of child `epc` split off pallet `pallet`: keccak256(abi.encode(pallet, keccak256(epc))) (`CustodyLedger.childIdOf`). */
export function childIdOf(pallet: string, epc: string): string {
  return keccak256(AbiCoder.defaultAbiCoder().encode(["bytes32", "bytes32"], [pallet, epcHashOf(epc)]));
}

/**
 * A pallet's children as the Merkle tree whose root is its `childrenRoot`: OpenZeppelin
 * StandardMerkleTree over `[bytes32 keccak256(epc)]` (leaf keccak256(keccak256(abi.encode(epcHash))),
 * the same as `StandardMerkleTree.of(epcs.map((e) => [epcHashOf(e)]), ["bytes32"])`).
 * `CustodyLedger.splitChild(pallet, epc, proof(epc))` splits one off.
 */
export class PalletChildren {
  private readonly tree: StandardTree;
  private readonly index = new Map<string, number>();

  constructor(readonly epcs: readonly string[]) {
    if (epcs.length === 0) throw new Error("PalletChildren: no children");
    epcs.forEach((epc, i) => this.index.set(epc, i));
    this.tree = new StandardTree(epcs.map((epc) => standardLeaf(hexToBytes(epcHashOf(epc)))));
  }

  get root(): string {
    return this.tree.root;
  }

  /** The proof of child `epc`. */
  proof(epc: string): string[] {
    const i = this.index.get(epc);
    if (i === undefined) throw new Error(`PalletChildren: ${epc} is not a child of this pallet`);
    return this.tree.proofAt(i);
  }
}

/** The EPC URI of an SSCC (GS1 company prefix and serial reference, digits). */
export function ssccUri(companyPrefix: string, serialReference: string): string {
  if (!/^\d{6,12}$/.test(companyPrefix)) throw new Error("companyPrefix must be 6 to 12 digits");
  if (!/^\d+$/.test(serialReference) || companyPrefix.length + serialReference.length !== 17)
    throw new Error("serialReference must be digits making 17 with the company prefix");
  return `urn:epc:id:sscc:${companyPrefix}.${serialReference}`;
}

/** A CBV short name (bizStep or disposition, e.g. "shipping") as the contract's bytes32. */
export function cbv(name: string): string {
  if (!/^[a-z_]{1,31}$/.test(name)) throw new Error(`CBV value ${name} must be a short name like "in_transit"`);
  return encodeBytes32String(name);
}

/** The CBV short name a bytes32 holds. */
export function cbvName(value: string): string {
  return decodeBytes32String(value);
}

/** A read point (or location) id: keccak256 of its URI (e.g. `urn:epc:id:sgln:…`). */
export function locationId(uri: string): string {
  return keccak256(toUtf8Bytes(uri));
}

function encodeReading(r: Reading): Uint8Array {
  if (!Number.isSafeInteger(r.at) || r.at < 0) throw new Error("reading.at must be unix seconds");
  if (!Number.isInteger(r.temp) || r.temp < -32768 || r.temp > 32767)
    throw new Error("reading.temp must be hundredths of °C within int16");
  const out = new Uint8Array(64);
  const view = new DataView(out.buffer);
  view.setBigUint64(24, BigInt(r.at));
  // int16 sign-extends to 256 bits
  if (r.temp < 0) out.fill(0xff, 32, 62);
  view.setInt16(62, r.temp);
  return out;
}

/** The leaf of a reading: keccak256(keccak256(abi.encode(at, temp))). */
export function readingLeaf(r: Reading): string {
  return bytesToHex(standardLeaf(encodeReading(r)));
}

/** A batch of raw readings: the root, min and max a checkpoint carries, and each reading's proof. */
export class ReadingsBatch {
  private readonly tree: StandardTree;
  readonly min: number;
  readonly max: number;

  constructor(readonly readings: readonly Reading[]) {
    if (readings.length === 0) throw new Error("ReadingsBatch: no readings");
    this.tree = new StandardTree(readings.map((r) => standardLeaf(encodeReading(r))));
    this.min = Math.min(...readings.map((r) => r.temp));
    this.max = Math.max(...readings.map((r) => r.temp));
  }

  get root(): string {
    return this.tree.root;
  }

  get count(): number {
    return this.readings.length;
  }

  /** The proof of the `i`-th reading. */
  proof(i: number): string[] {
    return this.tree.proofAt(i);
  }
}

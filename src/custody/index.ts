/**
 * Custody ledger values off chain: shipment ids from GS1 EPC URIs, CBV vocabulary as the bytes32
 * the contract stores, and a tracker's batch of raw readings as the Merkle tree whose root its
 * checkpoint carries (OpenZeppelin StandardMerkleTree over `(uint64 at, int16 temp)`).
 */
import { keccak256, toUtf8Bytes, encodeBytes32String, decodeBytes32String } from "ethers";
import { bytesToHex } from "../eip712/fast";
import { StandardTree, standardLeaf } from "../merkle";

/** The leaf encoding of one reading (`CustodyLedger.Reading`). */
export const READING_ENCODING = ["uint64", "int16"] as const;

/** One raw reading of a tracker: when, and the temperature in hundredths of °C. */
export interface Reading {
  at: number;
  temp: number;
}

/** The shipment id of a GS1 EPC URI: keccak256 of the URI (`CustodyLedger.shipmentIdOf`). */
export function shipmentIdOf(epc: string): string {
  return keccak256(toUtf8Bytes(epc));
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

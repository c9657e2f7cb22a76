/**
 * Submitting an excursion proof the cheapest way the ledger allows. Against the tracker's latest
 * checkpoint, whose summary hash the ledger keeps, `proveLatestExcursion` needs no signature (about
 * 49,500 gas for a 14-deep proof); against an earlier one, `proveExcursion` presents the checkpoint
 * again with the tracker's signature, which counts on a posted checkpoint's terms: the key the
 * shipment pinned, dated no later than the end of its pinned trust period (about 66,500). A
 * checkpoint the tracker signed before trust in it ended is always proven, whatever its owner did since.
 */
import {
  AbiCoder,
  hexlify,
  keccak256,
  toBigInt,
  type BigNumberish,
  type BytesLike,
  type ContractTransactionResponse,
  type Signer,
} from "ethers";
import type { Reading } from "./index.js";
import { CustodyLedger__factory } from "../../typechain-types/factories/contracts/custody/CustodyLedger__factory.js";

/** `CustodyLedger.CheckpointSummary`: a posted checkpoint with its shipment's allowed range. */
export interface CheckpointSummary {
  shipment: string;
  seq: bigint;
  readingsRoot: string;
  minTemp: number;
  maxTemp: number;
  allowedMinTemp: number;
  allowedMaxTemp: number;
}

/** What a tracker keeps of a checkpoint it signed, and the proof of one of its readings. */
export interface ExcursionEvidence {
  checkpoint: {
    shipment: BytesLike;
    seq: BigNumberish;
    readingsRoot: BytesLike;
    count: BigNumberish;
    minTemp: BigNumberish;
    maxTemp: BigNumberish;
    location: BytesLike;
    at: BigNumberish;
  };
  key: string;
  signature: string;
  reading: Reading;
  proof: string[];
}

const SUMMARY_TYPES = ["bytes32", "uint32", "bytes32", "int16", "int16", "int16", "int16"];

/** The summary of checkpoint `cp` of a shipment whose allowed range is `allowed`. */
export function checkpointSummary(
  cp: ExcursionEvidence["checkpoint"],
  allowed: { minTemp: BigNumberish; maxTemp: BigNumberish },
): CheckpointSummary {
  return {
    shipment: hexlify(cp.shipment),
    seq: toBigInt(cp.seq),
    readingsRoot: hexlify(cp.readingsRoot),
    minTemp: Number(toBigInt(cp.minTemp)),
    maxTemp: Number(toBigInt(cp.maxTemp)),
    allowedMinTemp: Number(toBigInt(allowed.minTemp)),
    allowedMaxTemp: Number(toBigInt(allowed.maxTemp)),
  };
}

/** keccak256(abi.encode(summary)): what `CustodyLedger.latestCheckpoint(tracker)` holds for it. */
export function summaryHash(s: CheckpointSummary): string {
  return keccak256(
    AbiCoder.defaultAbiCoder().encode(SUMMARY_TYPES, [
      s.shipment,
      s.seq,
      s.readingsRoot,
      s.minTemp,
      s.maxTemp,
      s.allowedMinTemp,
      s.allowedMaxTemp,
    ]),
  );
}

/**
 * Proves `e`'s reading out of range on `ledger`, sent by `signer`: against the tracker's latest
 * checkpoint when `e.checkpoint` is still it, else with the tracker's signature.
 */
export async function submitExcursion(
  ledgerAddress: string,
  signer: Signer,
  e: ExcursionEvidence,
): Promise<{ tx: ContractTransactionResponse; latest: boolean }> {
  const ledger = CustodyLedger__factory.connect(ledgerAddress, signer);
  const shipment = await ledger.shipmentOf(e.checkpoint.shipment);
  const summary = checkpointSummary(e.checkpoint, shipment);
  if ((await ledger.latestCheckpoint(shipment.tracker)) === summaryHash(summary)) {
    try {
      return { tx: await ledger.proveLatestExcursion(summary, e.reading, e.proof), latest: true };
    } catch (err) {
      // A checkpoint landed since the read (the gas estimate saw it): fall back to the signed path.
      const decoded = ledger.interface.parseError((err as { data?: string }).data ?? "0x");
      if (decoded?.name !== "CustodyLedgerNotLatestCheckpoint") throw err;
    }
  }
  return { tx: await ledger.proveExcursion(e.checkpoint, e.key, e.signature, e.reading, e.proof), latest: false };
}

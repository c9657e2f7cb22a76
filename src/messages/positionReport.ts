/**
 * `PositionReport`: where a device says it is, for its guardians (EIP-712 in the catalogue, domain
 * "Custos Guardians": chain id and the DeviceRegistry). The device signs it
 * (`src/agent/roles/positionReport.ts` sends it); a guardian checks its shape here and its
 * signature against the registry (`src/guardian/service/reports.ts`). A lock reports its unlock
 * attempts: `seq` is the unlock-log record's index and `record` its leaf.
 */
import { hexlify } from "ethers";
import type { DeviceSigner } from "../crypto/deviceKey.js";
import type { TypedDataHasher } from "../eip712/fast.js";

export interface Position {
  latitudeE7: number;
  longitudeE7: number;
}

/** The report as it travels (JSON): integers as decimal strings. */
export interface PositionReportBody {
  device: string;
  seq: string;
  at: string;
  latitudeE7: number;
  longitudeE7: number;
  record: string;
  key: string;
  signature: string;
}

/** Signs where device `device` was at `at` (unix seconds), report number `seq`, about unlock-log leaf `record`. */
export async function signPositionReport(
  signer: DeviceSigner,
  hasher: TypedDataHasher,
  guardians: { chainId: bigint | number; registry: string },
  report: { device: bigint; seq: bigint | number; at: bigint | number; record: string } & Position,
): Promise<PositionReportBody> {
  const message = {
    device: report.device,
    seq: BigInt(report.seq),
    at: BigInt(report.at),
    latitudeE7: report.latitudeE7,
    longitudeE7: report.longitudeE7,
    record: report.record,
  };
  const digest = hasher.digest(
    "PositionReport",
    { chainId: guardians.chainId, verifyingContract: guardians.registry },
    message,
  );
  return {
    device: report.device.toString(),
    seq: message.seq.toString(),
    at: message.at.toString(),
    latitudeE7: report.latitudeE7,
    longitudeE7: report.longitudeE7,
    record: report.record,
    key: signer.signer,
    signature: hexlify(await signer.sign(digest)),
  };
}

const UINT = /^[0-9]+$/;
const HEX32 = /^0x[0-9a-fA-F]{64}$/;
const HEX = /^0x([0-9a-fA-F]{2})+$/;

/** Why `r` is not a well-formed report (the field and its fix), or undefined when it is. */
export function checkPositionReportShape(r: PositionReportBody): { field: string; reason: string } | undefined {
  const bad = (field: string, fix: string) => ({ field, reason: `${field}: ${fix}` });
  if (typeof r !== "object" || r === null) return bad("report", "the body must be a JSON object");
  for (const f of ["device", "seq", "at"] as const)
    if (!UINT.test(String(r[f] ?? ""))) return bad(f, "must be a non-negative integer (decimal)");
  for (const f of ["latitudeE7", "longitudeE7"] as const)
    if (!Number.isInteger(r[f]) || Math.abs(r[f]) > (f === "latitudeE7" ? 900_000_000 : 1_800_000_000))
      return bad(f, "must be an integer in 1e-7 degrees within ±90° (latitude) or ±180° (longitude)");
  if (!HEX32.test(String(r.record ?? ""))) return bad("record", "must be 32 bytes of 0x-hex (zero when none)");
  if (!HEX.test(String(r.key ?? ""))) return bad("key", "must be the device's signer bytes (0x-hex)");
  if (!HEX.test(String(r.signature ?? ""))) return bad("signature", "must be 0x-hex signature bytes");
  return undefined;
}

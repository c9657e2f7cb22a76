/**
 * A device tells its guardians where it is: a `PositionReport` (EIP-712, the guardians' domain:
 * chain id and the DeviceRegistry) signed by the device key and POSTed to each guardian's
 * `/reports`. A lock reports its unlock attempts: `seq` is the unlock-log record's index and
 * `record` its leaf, so each report is tied to the log the lock anchors on chain. Guardians take a
 * report only from the key the registry resolves to the device (src/guardian/service/reports.ts).
 */
import { hexlify } from "ethers";
import type { DeviceSigner } from "../../crypto/deviceKey.js";
import { TypedDataHasher } from "../../eip712/fast.js";

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

/** POSTs `report` to each guardian's `/reports`; what each answered (a refusal carries its reason). */
export async function sendToGuardians(
  urls: string[],
  report: PositionReportBody,
): Promise<{ url: string; accepted: boolean; reason?: string }[]> {
  return Promise.all(
    urls.map(async (url) => {
      try {
        const res = await fetch(new URL("/reports", url), {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify(report),
        });
        const body = (await res.json().catch(() => ({}))) as { message?: string };
        return res.status === 202
          ? { url, accepted: true }
          : { url, accepted: false, reason: body.message ?? `HTTP ${res.status}` };
      } catch (err) {
        return { url, accepted: false, reason: String(err) };
      }
    }),
  );
}

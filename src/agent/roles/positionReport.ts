/**
 * A device tells its guardians where it is: it signs a `PositionReport` (`src/messages/positionReport.ts`)
 * and POSTs it to each guardian's `/reports`. Guardians take a report only from the key the registry
 * resolves to the device (src/guardian/service/reports.ts).
 */
import type { PositionReportBody } from "../../messages/positionReport.js";

export { signPositionReport, type Position, type PositionReportBody } from "../../messages/positionReport.js";

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

/** A device still running an image its manufacturer revoked, past the grace period to update. */
import type { Rule } from "../finding.js";
import type { RevokedFirmwareParams } from "../policy.js";

export const revokedFirmware: Rule<RevokedFirmwareParams> = (obs, params, { now }) => {
  const attested = obs.firmware.filter((f) => f.at <= now);
  if (attested.length === 0) return undefined;
  const current = attested.reduce((a, b) => (b.at >= a.at ? b : a));
  const revocation = obs.revokedFirmware.find(
    (r) => r.at <= now && r.firmwareHash.toLowerCase() === current.firmwareHash.toLowerCase(),
  );
  // Fires once the revocation is older than the grace period and the device has not attested a newer image.
  const fire = revocation !== undefined && now - Math.max(revocation.at, current.at) >= params.graceSeconds;
  return {
    rule: "revokedFirmware",
    decision: fire ? "fire" : "clear",
    params,
    observations: [
      { kind: "firmwareAttestation", ...current },
      ...(revocation ? [{ kind: "firmwareRevocation", ...revocation }] : []),
    ],
    summary: revocation
      ? `runs revoked firmware ${current.firmwareHash} (revoked at ${revocation.at}, grace ${params.graceSeconds} s)`
      : `runs firmware ${current.firmwareHash}, not revoked`,
  };
};

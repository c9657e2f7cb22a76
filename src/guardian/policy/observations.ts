/**
 * What a guardian observes about one device: typed inputs of the policy's rules. Times are unix
 * seconds; every on-chain observation names its transaction (the evidence points at it). The
 * guardian service fills these from the watch's index and from the messages devices send.
 */

/** Where an observation came from on chain. */
export interface OnChain {
  txHash: string;
  blockNumber: number;
}

/** A position the device reported (a custody checkpoint, a beacon a guardian can read, a report). */
export interface LocationReport extends OnChain {
  at: number;
  latitudeE7: number;
  longitudeE7: number;
  source: "checkpoint" | "beacon" | "report";
  /** A report the device signed off chain (then txHash is empty): what anyone re-checks. */
  signed?: { key: string; digest: string; signature: string };
}

/** A firmware attestation by the device (`FirmwareAttested`). */
export interface FirmwareAttestation extends OnChain {
  at: number;
  firmwareHash: string;
}

/** A firmware image its manufacturer revoked. */
export interface FirmwareRevocation extends OnChain {
  at: number;
  firmwareHash: string;
}

/** An excursion proof that exposed the device as a tracker contradicted by its own readings. */
export interface ExcursionProof extends OnChain {
  at: number;
  shipment: string;
}

/** A key rotation; `provenance` when the old key co-signed it (a chain of keys back to the manufacturer). */
export interface KeyRotation extends OnChain {
  at: number;
  provenance: boolean;
}

/**
 * A message signed by the device that a relayer refused (off chain). `message` is the device's
 * signed message as the relayer published it: the guardian checked its signature against the
 * device's registered key, and the evidence carries it so anyone can check it again.
 */
export interface RelayerRefusal {
  at: number;
  /** `messageId` of the signed message. */
  id: string;
  code: string;
  /** The relayer that refused it (its URL, as the guardian reads it). */
  relayer?: string;
  message?: object;
}

/**
 * A voucher the device signed as a payer: in total `cumulativeAmount` (base units) on `channel`,
 * seen at `at` (the guardian's chain-aligned clock when the payee reported it: the voucher was
 * signed by then, maybe earlier). `ratePerSecond` is the channel's spending rate (its terms, which
 * the channel id commits to).
 */
export interface VoucherSeen {
  at: number;
  channel: string;
  cumulativeAmount: bigint;
  ratePerSecond?: bigint;
  /** The channel's `allowance` and `openedAt` (its terms): with the rate, what it may have paid by `at`. */
  allowance?: bigint;
  openedAt?: number;
  /** Its claim's transaction, when it reached the chain. */
  txHash?: string;
  /** The payer-signed voucher as reported (key, signature, terms): what anyone re-checks. */
  message?: object;
}

/** Everything a guardian knows about one device at evaluation time `now`. */
export interface DeviceObservations {
  device: bigint;
  /** The fleet it belongs to (the owner's or operator's label), if known. */
  fleet?: string;
  /** Its manufacturer's address. */
  manufacturer: string;
  /** The heartbeat it declared (s): it sends something at least this often. */
  heartbeatSeconds?: number;
  /** The metered rate it pays at, when it is a payer: base units per second. */
  meteredRatePerSecond?: bigint;
  /** When it last did anything the chain or a relayer saw (the latest of its messages). */
  lastSeenAt?: number;
  /** When it was first seen (silence before that is not silence). */
  firstSeenAt: number;
  locations: LocationReport[];
  firmware: FirmwareAttestation[];
  revokedFirmware: FirmwareRevocation[];
  excursions: ExcursionProof[];
  rotations: KeyRotation[];
  refusals: RelayerRefusal[];
  vouchers: VoucherSeen[];
}

/** A device nothing has been observed of yet (every list empty), with `extra` set. */
export function observationsOf(
  device: bigint,
  extra: Partial<DeviceObservations> & Pick<DeviceObservations, "manufacturer" | "firstSeenAt">,
): DeviceObservations {
  return {
    device,
    locations: [],
    firmware: [],
    revokedFirmware: [],
    excursions: [],
    rotations: [],
    refusals: [],
    vouchers: [],
    ...extra,
  };
}

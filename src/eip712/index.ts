/**
 * The EIP-712 catalogue: every domain and every signed type in Custos, defined once. Contracts'
 * tests, the device agent and the relayer all import it; nothing else may spell a type out.
 * It imports nothing of ours.
 */
import { TypedDataEncoder, keccak256, toUtf8Bytes, type TypedDataDomain, type TypedDataField } from "ethers";

/** EIP-712 domain names and versions of the Custos contracts (chain id and address come per deployment). */
export const DOMAINS = {
  registry: { name: "Custos DeviceRegistry", version: "1" },
  lock: { name: "Custos LockAccess", version: "1" },
  channels: { name: "Custos PaymentChannels", version: "1" },
  custody: { name: "Custos CustodyLedger", version: "1" },
  beacons: { name: "Custos LocationBeacons", version: "1" },
  /** OpenZeppelin's ERC2771Forwarder, deployed unchanged under this name. */
  forwarder: { name: "Custos Forwarder", version: "1" },
  /** The watch (off chain): bound to the chain id and the DeviceRegistry's address it watches. */
  watch: { name: "Custos Watch", version: "1" },
  /** The guardians (off chain): bound to the chain id and the DeviceRegistry's address they guard. */
  guardians: { name: "Custos Guardians", version: "1" },
} as const;

export type DomainName = keyof typeof DOMAINS;

type Field = Readonly<TypedDataField>;

/** Every signed message type, the domain it belongs to, and its fields in EIP-712 order. */
export const TYPES = {
  /** A device proves its hardware key is present when it is claimed for `owner`. */
  DeviceClaim: {
    domain: "registry",
    fields: [
      { name: "owner", type: "address" },
      { name: "batch", type: "uint48" },
      { name: "deadline", type: "uint256" },
    ],
  },
  /** Signed by the new key, and by the old key while it is still available. */
  KeyRotation: {
    domain: "registry",
    fields: [
      { name: "device", type: "uint256" },
      { name: "newKey", type: "bytes" },
      { name: "nonce", type: "uint256" },
      { name: "deadline", type: "uint256" },
    ],
  },
  /** A device attests the firmware image it runs. */
  FirmwareAttestation: {
    domain: "registry",
    fields: [
      { name: "device", type: "uint256" },
      { name: "firmwareHash", type: "bytes32" },
      { name: "nonce", type: "uint256" },
      { name: "deadline", type: "uint256" },
    ],
  },
  /**
   * A quarantined device reports where it is, sealed to its owner's recipient keys. Posted to
   * LocationBeacons, whose per-device `beaconNonce` it carries (not the registry's device nonce).
   * `recipients` is the owner's packed 32-byte X25519 keys (`beaconRecipients(owner)`), `ciphertext`
   * the location HPKE-sealed to each of them (src/beacons); both are signed as their keccak256.
   */
  LocationBeacon: {
    domain: "beacons",
    fields: [
      { name: "device", type: "uint256" },
      { name: "nonce", type: "uint256" },
      { name: "recipients", type: "bytes" },
      { name: "ciphertext", type: "bytes" },
      { name: "at", type: "uint64" },
      { name: "deadline", type: "uint256" },
    ],
  },
  /** A device voids its next, unused nonce. */
  NonceCancellation: {
    domain: "registry",
    fields: [
      { name: "device", type: "uint256" },
      { name: "nonce", type: "uint256" },
      { name: "deadline", type: "uint256" },
    ],
  },
  /**
   * A smart-lock key certificate, signed by the lock's owner or an appointed manager (`issuer`). It
   * names the owner it was issued under, and `epoch` is the lock's key epoch (`LockAccess.keyEpoch`):
   * the registry's ownership epoch in its high 16 bits, the revoke-alls of that ownership in its low
   * 16. So a sale voids it, and a buy-back does not revive it. `schedule` is a weekly hour mask (bit
   * h = hour h of the week from Monday 00:00 UTC; 0 = any time).
   */
  AccessKey: {
    domain: "lock",
    fields: [
      { name: "lock", type: "uint256" },
      { name: "holder", type: "bytes" },
      { name: "owner", type: "address" },
      { name: "issuer", type: "address" },
      { name: "issuedAt", type: "uint64" },
      { name: "validFrom", type: "uint64" },
      { name: "validUntil", type: "uint64" },
      { name: "schedule", type: "uint256" },
      { name: "epoch", type: "uint32" },
      { name: "keyId", type: "uint64" },
    ],
  },
  /**
   * A guest's answer to a lock's challenge: signed by the certificate's holder key. `accessKey` is
   * the EIP-712 struct hash of the certificate it uses; the challenge is fresh and single-use.
   */
  UnlockRequest: {
    domain: "lock",
    fields: [
      { name: "lock", type: "uint256" },
      { name: "accessKey", type: "bytes32" },
      { name: "challenge", type: "bytes32" },
      { name: "deadline", type: "uint64" },
    ],
  },
  /** A batch of a lock's unlock log (Merkle root of its open/deny records), signed by the lock device. */
  UnlockLog: {
    domain: "lock",
    fields: [
      { name: "lock", type: "uint256" },
      { name: "seq", type: "uint32" },
      { name: "root", type: "bytes32" },
      { name: "count", type: "uint32" },
      { name: "fromTime", type: "uint64" },
      { name: "toTime", type: "uint64" },
      { name: "deadline", type: "uint256" },
    ],
  },
  /**
   * An owner's word to a lock that cannot reach the chain: as of `issuedAt`, the lock's key epoch is
   * `epoch` and the keys revoked in `owner`'s ownership period (`epoch >> 16`) are the `revokedCount`
   * key ids whose sorted list hashes to `revokedRoot` (keccak256 of the ids as packed uint64,
   * ascending). Carried to the lock by a guest's phone with the list itself; it lets the lock keep
   * deciding past its staleness limit.
   */
  RevocationCheckpoint: {
    domain: "lock",
    fields: [
      { name: "lock", type: "uint256" },
      { name: "owner", type: "address" },
      { name: "epoch", type: "uint32" },
      { name: "revokedRoot", type: "bytes32" },
      { name: "revokedCount", type: "uint32" },
      { name: "issuedAt", type: "uint64" },
    ],
  },
  /**
   * A payment promise from the payer device of `channel` (the keccak256 of the channel's terms):
   * in total, `cumulativeAmount` is the payee's. Each voucher supersedes the ones before it, so an
   * old one replayed pays nothing more; the channel id binds payer, payee, token and terms.
   */
  Voucher: {
    domain: "channels",
    fields: [
      { name: "channel", type: "bytes32" },
      { name: "cumulativeAmount", type: "uint256" },
    ],
  },
  /**
   * A custody handoff of `shipment` from custodian `from` to `to`, signed by both. `seq` is the
   * shipment's next handoff number; bizStep and disposition are GS1 CBV short names (bytes32,
   * left-aligned), readPoint keccak256 of the read point's URI.
   */
  Handoff: {
    domain: "custody",
    fields: [
      { name: "shipment", type: "bytes32" },
      { name: "from", type: "address" },
      { name: "to", type: "address" },
      { name: "seq", type: "uint32" },
      { name: "bizStep", type: "bytes32" },
      { name: "disposition", type: "bytes32" },
      { name: "readPoint", type: "bytes32" },
      { name: "at", type: "uint64" },
      { name: "deadline", type: "uint256" },
    ],
  },
  /**
   * A tracker device's checkpoint of `shipment`: the Merkle root of `count` raw readings with their
   * min and max temperature (hundredths of °C), where it was and when. `seq` is the next checkpoint.
   */
  Checkpoint: {
    domain: "custody",
    fields: [
      { name: "shipment", type: "bytes32" },
      { name: "seq", type: "uint32" },
      { name: "readingsRoot", type: "bytes32" },
      { name: "count", type: "uint32" },
      { name: "minTemp", type: "int16" },
      { name: "maxTemp", type: "int16" },
      { name: "location", type: "bytes32" },
      { name: "at", type: "uint64" },
    ],
  },
  /** An owner's gasless call through OpenZeppelin's ERC2771Forwarder (its own type, spelled here once). */
  ForwardRequest: {
    domain: "forwarder",
    fields: [
      { name: "from", type: "address" },
      { name: "to", type: "address" },
      { name: "value", type: "uint256" },
      { name: "gas", type: "uint256" },
      { name: "nonce", type: "uint256" },
      { name: "deadline", type: "uint48" },
      { name: "data", type: "bytes" },
    ],
  },
  /**
   * An owner asks the watch for webhooks: alerts about `target` (by `scope`: 0 owner — the owner's
   * own address, 1 device, 2 lock — their ids, 3 shipment, 4 channel — their bytes32 ids) of the
   * kinds set in the bit mask `events`, POSTed to `url`. The URL and the events are signed so that
   * nobody can redirect or widen an owner's alerts; `nonce` is any number the owner has not used
   * with this watch before.
   */
  WatchSubscription: {
    domain: "watch",
    fields: [
      { name: "owner", type: "address" },
      { name: "scope", type: "uint8" },
      { name: "target", type: "bytes32" },
      { name: "url", type: "string" },
      { name: "events", type: "bytes32" },
      { name: "nonce", type: "uint256" },
      { name: "deadline", type: "uint256" },
    ],
  },
  /**
   * A device tells the guardians where it was when something happened (a lock: an unlock attempt),
   * signed by its registered key. `seq` grows by one per report of the device (a replay or a
   * reorder is refused); `record` is the leaf of the unlock-log record it reports on (zero if
   * none), so the report can be held against the log root the lock anchors.
   */
  PositionReport: {
    domain: "guardians",
    fields: [
      { name: "device", type: "uint256" },
      { name: "seq", type: "uint64" },
      { name: "at", type: "uint64" },
      { name: "latitudeE7", type: "int32" },
      { name: "longitudeE7", type: "int32" },
      { name: "record", type: "bytes32" },
    ],
  },
  /** The owner of watch subscription `subscription` ends it. */
  WatchUnsubscription: {
    domain: "watch",
    fields: [
      { name: "owner", type: "address" },
      { name: "subscription", type: "bytes32" },
      { name: "nonce", type: "uint256" },
      { name: "deadline", type: "uint256" },
    ],
  },
} as const satisfies Record<string, { domain: DomainName; fields: readonly Field[] }>;

export type TypeName = keyof typeof TYPES;

/** Where a domain is deployed. */
export interface Deployment {
  chainId: bigint | number;
  verifyingContract: string;
}

/** The full EIP-712 domain of `domain` at `deployment`. */
export function domainOf(domain: DomainName, deployment: Deployment): TypedDataDomain {
  const { name, version } = DOMAINS[domain];
  return { name, version, chainId: deployment.chainId, verifyingContract: deployment.verifyingContract };
}

/** The `types` argument that ethers' `signTypedData` and `TypedDataEncoder` take for `type`. */
export function typesOf(type: TypeName): Record<string, TypedDataField[]> {
  return { [type]: TYPES[type].fields.map((f) => ({ name: f.name, type: f.type })) };
}

/** The canonical type string, e.g. `DeviceClaim(address owner,uint48 batch,uint256 deadline)`. */
export function typeString(type: TypeName): string {
  return `${type}(${TYPES[type].fields.map((f) => `${f.type} ${f.name}`).join(",")})`;
}

/** keccak256 of the type string: the contracts' `*_TYPEHASH` constants. */
export function typeHash(type: TypeName): string {
  return keccak256(toUtf8Bytes(typeString(type)));
}

/** A message of `type`, keyed by field name. */
export type Message = Record<string, unknown>;

/** The complete typed-data payload of a message: what a wallet signs (`eth_signTypedData_v4`). */
export function typedData(type: TypeName, deployment: Deployment, message: Message) {
  return { domain: domainOf(TYPES[type].domain, deployment), types: typesOf(type), primaryType: type, message };
}

/** The EIP-712 digest of a message: what a device key signs. */
export function digest(type: TypeName, deployment: Deployment, message: Message): string {
  return TypedDataEncoder.hash(domainOf(TYPES[type].domain, deployment), typesOf(type), message);
}

/**
 * One sentence per custom error of the suite (and the OpenZeppelin errors it surfaces), built
 * from the error's arguments by name. A sentence says what is wrong in the operator's words and,
 * where there is one, what to do. `test/errors/decode.test.ts` fails for an error of any artifact
 * that has no sentence here, so a new error cannot ship undecoded.
 */
import {
  address as addr,
  batchStatus,
  channelAmount,
  deviceId as dev,
  deviceKey,
  deviceStatus,
  eth,
  int,
  isRevokedStatus,
  keyHash,
  role,
  shortHex,
  temperature,
  token,
  utcDate as date,
} from "./format.js";

export type Args = Readonly<Record<string, unknown>>;

export interface SentenceContext {
  /** Device keys the caller knows: a key hash in an error is written as the key it hashes. */
  keys: readonly string[];
}

type Sentence = (a: Args, c: SentenceContext) => string;

const expired = (what: string) => (a: Args) =>
  `${what} deadline ${date(a.deadline)} has passed (the chain's clock is later): sign it again with a later deadline`;

/** `seq` against the `expected` next sequence number: a replay, or ahead of what landed. */
function sequence(what: string, a: Args): string {
  const seq = BigInt(a.seq as bigint);
  const expected = BigInt(a.expected as bigint);
  return (
    `${what} has sequence number ${seq} where ${expected} is expected: ` +
    (seq < expected ? "it (or another with that number) already landed" : "the ones before it must land first")
  );
}

const deviceOwnerTerm = "the device's owner";

export const SENTENCES: Record<string, Sentence> = {
  // ---------------------------------------------------------------- DeviceRegistry
  DeviceRegistryEmptyRoot: () => "the batch's Merkle root is zero: commit the root of a real batch of device keys",
  DeviceRegistryUnusableRoot: (a) =>
    `batch root ${shortHex(a.root)} gives batch id 0 under this manufacturer (one chance in 2^48): add a salt leaf to the batch and commit its new root`,
  DeviceRegistryBatchExists: (a) =>
    `batch ${int(a.batchId)} is already committed (this manufacturer committed this root before): nothing to commit`,
  DeviceRegistryUnknownBatch: (a) => `no batch ${int(a.batchId)} was ever committed to this registry`,
  DeviceRegistryBatchNotActive: (a) =>
    `batch ${int(a.batchId)} is ${batchStatus(a.status)}: a claim needs an Active batch, and a batch is never set to the status it already has`,
  DeviceRegistryBatchRevoked: (a) =>
    `batch ${int(a.batchId)} is revoked, which is final: its status can no longer change`,
  DeviceRegistryInvalidProof: () =>
    "the Merkle proof does not lead from the device's leaf (key, model, firmware hash) to its batch's root: another batch, or a leaf that differs from the one committed",
  DeviceRegistryInvalidOwner: (a) => `a device cannot be claimed for ${addr(a.owner)}: name a real owner account`,
  DeviceRegistryUnsupportedKey: (a) =>
    `${deviceKey(a.key)} is not a usable device key: a device key is a 20-byte secp256k1 address, or a P-256 key behind a verifier the registry allows`,
  DeviceRegistryKeyTaken: (a, c) =>
    `${keyHash(a.keyHash, c.keys)} is already registered: a device key is claimed once, and a key rotated away or revoked is never registered again`,
  DeviceRegistryExpired: expired("the signed message's"),
  DeviceRegistryInvalidSignature: () =>
    "the device signature does not verify against the device's key: another key, altered fields, or signed for another chain or registry",
  DeviceRegistryUnknownKey: (a, c) => `no device has ${keyHash(a.keyHash, c.keys)} (never claimed, or rotated away)`,
  DeviceRegistryUnknownDevice: (a) => `device ${dev(a.deviceId)} does not exist (it was never claimed)`,
  DeviceRegistryNotOwner: (a) =>
    `${addr(a.account)} is not the owner of device ${dev(a.deviceId)}: only ${deviceOwnerTerm} may do this`,
  DeviceRegistryUnauthorized: (a) =>
    `${addr(a.account)} may not change this batch: only its manufacturer (while it holds MANUFACTURER_ROLE) or the admin may`,
  DeviceRegistryWrongStatus: (a) =>
    isRevokedStatus(a.status)
      ? `device ${dev(a.deviceId)} is Revoked, which is final: nothing more can be done with it`
      : `device ${dev(a.deviceId)} is ${deviceStatus(a.status)}: this needs an Active device`,
  DeviceRegistryAlreadyReported: (a) => `device ${dev(a.deviceId)} is already reported stolen`,
  DeviceRegistryNotReported: (a) => `device ${dev(a.deviceId)} is not reported stolen: there is nothing to release`,
  DeviceRegistryNotFlagged: (a) =>
    `device ${dev(a.deviceId)} is not flagged by the guardians: there is no flag to clear`,
  DeviceRegistryAlreadyFlagged: (a) => `device ${dev(a.deviceId)} is already flagged by the guardians`,
  DeviceRegistryKeyAlreadyAttested: (a) =>
    `device ${dev(a.deviceId)}'s current key is already attested by its manufacturer: nothing to attest`,

  // ---------------------------------------------------------------- LocationBeacons
  LocationBeaconsUnknownKey: (a, c) =>
    `no device has ${keyHash(a.keyHash, c.keys)}: a location beacon is signed with a registered device's current key`,
  LocationBeaconsNotQuarantined: (a) =>
    `device ${dev(a.deviceId)} is ${deviceStatus(a.status)}: only a quarantined device posts location beacons`,
  LocationBeaconsExpired: expired("the location beacon's"),
  LocationBeaconsInvalidSignature: () =>
    "the location beacon's signature does not verify against the device's key (altered fields, another key, chain or contract)",
  LocationBeaconsNoRecipients: (a) =>
    `${addr(a.owner)} has registered no beacon key: its devices' beacons would reach nobody (it calls setBeaconKey first)`,
  LocationBeaconsWrongRecipients: (a) =>
    `the beacon is sealed to recipients other than ${addr(a.owner)}'s current ones (a previous owner's, or a list it has changed since): the device seals it again to beaconRecipients(owner)`,
  LocationBeaconsInvalidRecipientKey: () => "the all-zero key is not a beacon key: give a 32-byte X25519 public key",
  LocationBeaconsNoBeaconKey: (a) =>
    `${addr(a.owner)} has no beacon key yet: set it (setBeaconKey) before adding responders`,
  LocationBeaconsDuplicateRecipient: (a) => `${shortHex(a.key)} is already one of the caller's beacon recipients`,
  LocationBeaconsTooManyRecipients: (a) => `a beacon goes to at most ${a.max} keys: remove a responder first`,
  LocationBeaconsUnknownResponder: (a) => `${shortHex(a.key)} is not one of the caller's responders: nothing to remove`,

  // ---------------------------------------------------------------- LockAccess
  LockAccessNotOwner: (a) => `${addr(a.account)} is not the owner of lock ${dev(a.lock)}: only its owner may do this`,
  LockAccessNotOwnerOrManager: (a) =>
    `${addr(a.account)} is neither the owner nor a current manager of lock ${dev(a.lock)}`,
  LockAccessAlreadyRevoked: (a) => `key ${int(a.keyId)} of lock ${dev(a.lock)} is already revoked`,
  LockAccessInvalidExpiry: (a) =>
    `a manager's appointment must end in the future, not at ${date(a.expiry)}: choose a later expiry`,
  LockAccessUnknownLock: (a, c) =>
    `no lock (registered device) has ${keyHash(a.keyHash, c.keys)} (never claimed, or rotated away)`,
  LockAccessLockNotActive: (a) =>
    `lock ${dev(a.lock)} is ${deviceStatus(a.status)}: only an Active lock anchors its unlock log`,
  LockAccessWrongSequence: (a) => sequence("the unlock-log batch", a),
  LockAccessExpired: expired("the unlock-log batch's"),
  LockAccessInvalidSignature: () =>
    "the unlock-log batch's signature does not verify against the lock's key (altered fields, another key, chain or contract)",
  LockAccessKeyNotAttested: (a) =>
    `lock ${dev(a.lock)}'s current key (generation ${int(a.keyGeneration)}) was installed by its owner alone: its log counts once the manufacturer re-attests the key (DeviceRegistry.attestKey)`,
  LockAccessEpochExhausted: (a) =>
    `lock ${dev(a.lock)} has used all 65,535 revoke-alls of this ownership period: transfer the lock (even to its owner) to start a new period`,

  // ---------------------------------------------------------------- CustodyLedger
  CustodyLedgerShipmentExists: (a) =>
    `shipment ${shortHex(a.shipment)} already exists (the same creator and EPC): use another EPC`,
  CustodyLedgerUnknownShipment: (a) => `no shipment ${shortHex(a.shipment)} exists in this ledger`,
  CustodyLedgerInvalidParams: () =>
    "the shipment's parameters are invalid: a tracker device id, a receiver, a deadline in the future, a temperature range with min ≤ max and a maximum silence above zero are needed (and a handoff needs a recipient)",
  CustodyLedgerTrackerNotActive: (a) => `tracker device ${dev(a.tracker)} is not Active`,
  CustodyLedgerDelivered: (a) => `shipment ${shortHex(a.shipment)} is already delivered: its custody chain is closed`,
  CustodyLedgerWrongShipment: (a) =>
    `the message is for shipment ${shortHex(a.got)}, not for shipment ${shortHex(a.expected)}`,
  CustodyLedgerNotCustodian: (a) => `${addr(a.from)} does not hold the shipment: its custodian is ${addr(a.custodian)}`,
  CustodyLedgerWrongSequence: (a) => sequence("the handoff or checkpoint", a),
  CustodyLedgerExpired: expired("the handoff's"),
  CustodyLedgerInvalidSignature: (a) =>
    `the handoff signature of ${addr(a.signer)} does not verify (an EOA's signature, or an ERC-1271 wallet's approval)`,
  CustodyLedgerNotTrackerKey: (a) =>
    `the key is not the key of tracker device ${dev(a.tracker)} that the shipment pinned (rotated since the shipment was created?)`,
  CustodyLedgerInvalidTrackerSignature: () =>
    "the tracker's checkpoint signature does not verify against its key (altered fields, another key, chain or contract)",
  CustodyLedgerBadTime: (a) =>
    `checkpoint time ${date(a.at)} is before the shipment's last checkpoint or after the chain's current time`,
  CustodyLedgerInvalidProof: () =>
    "the Merkle proof does not lead to the committed root (a reading against its checkpoint's readings root, or a child against its pallet's)",
  CustodyLedgerNotAnExcursion: (a) =>
    `a reading of ${temperature(a.temp)} is inside the shipment's allowed range: it is not an excursion`,
  CustodyLedgerNotYet: (a) => `too early: this is possible only after ${date(a.at)}`,
  CustodyLedgerAlreadyFlagged: (a) =>
    `shipment ${shortHex(a.shipment)} is already marked so (overdue, or silent: whichever this call marks)`,
  CustodyLedgerNotReceiver: (a) =>
    `${addr(a.account)} is not the shipment's receiver: only the receiver confirms delivery`,
  CustodyLedgerNotHeldByReceiver: (a) =>
    `the receiver does not hold the shipment yet (its custodian is ${addr(a.custodian)}): hand it off to the receiver first`,
  CustodyLedgerNotAPallet: (a) => `shipment ${shortHex(a.pallet)} is not a pallet: it has no list of children`,
  CustodyLedgerNotLatestCheckpoint: (a) => `this is not tracker device ${dev(a.tracker)}'s latest checkpoint`,
  CustodyLedgerOwnerInstalledKey: (a) =>
    `tracker device ${dev(a.tracker)}'s current key (generation ${int(a.keyGeneration)}) was installed by its owner alone: have the manufacturer attest it, or create the shipment accepting owner-installed keys (acceptOwnerKeys)`,
  CustodyLedgerTrackerNotTrusted: (a) =>
    `the checkpoint is dated ${date(a.at)}, after trust in the shipment's tracker ended at ${date(a.until)} (reported, flagged or rotated since)`,

  // ---------------------------------------------------------------- PaymentChannels
  PaymentChannelsUnknownChannel: (a) => `no channel ${shortHex(a.channel)} is open (never opened, or already closed)`,
  PaymentChannelsChannelExists: (a) =>
    `channel ${shortHex(a.channel)} was opened before (ids are never reused): open it with another salt`,
  PaymentChannelsZeroDeposit: () => "a channel needs a deposit above zero",
  PaymentChannelsDepositOverflow: (a) => `a deposit of ${channelAmount(a.deposit)} is over the channel's 96-bit limit`,
  PaymentChannelsWrongValue: (a) =>
    `the call sent ${eth(a.received)} where ${eth(a.expected)} was expected (a token channel takes no ETH)`,
  PaymentChannelsTokenShortfall: (a) =>
    `the token delivered ${int(a.received)} base units where ${int(a.expected)} were sent (a fee-on-transfer token is not supported)`,
  PaymentChannelsPayerNotActive: (a) =>
    `payer device ${dev(a.payer)} is ${deviceStatus(a.status)}: only an Active payer's vouchers pay`,
  PaymentChannelsPayerNotTrusted: (a) =>
    `the payer of channel ${shortHex(a.channel)} left the trust period (${int(a.payerPeriod)}) the channel was opened in (reported, flagged or rotated since): it takes no more top-ups`,
  PaymentChannelsNotPayerKey: (a) => `the key is not payer device ${dev(a.payer)}'s key that the channel pinned`,
  PaymentChannelsInvalidSignature: () =>
    "the voucher's signature does not verify against the payer's key (altered amount, another key, chain or contract)",
  PaymentChannelsNothingToClaim: (a) =>
    `the voucher pays no more than the ${channelAmount(a.paid)} already paid on channel ${shortHex(a.channel)}`,
  PaymentChannelsClosing: (a) =>
    `channel ${shortHex(a.channel)} is closing (its challenge period ends ${date(a.closesAt)}): it takes no top-up or second close`,
  PaymentChannelsChallengeEnded: (a) =>
    `channel ${shortHex(a.channel)}'s challenge period ended ${date(a.closesAt)}: vouchers no longer pay; settle it`,
  PaymentChannelsChallengeNotEnded: (a) =>
    `channel ${shortHex(a.channel)}'s challenge period runs until ${date(a.closesAt)}: settle it after that`,
  PaymentChannelsNotClosing: (a) => `channel ${shortHex(a.channel)} is not closing: start a close first`,
  PaymentChannelsNotOwner: (a) =>
    `${addr(a.account)} is not the owner of device ${dev(a.device)}: only ${deviceOwnerTerm} may do this`,
  PaymentChannelsNothingOwed: (a) => `nothing in ${token(a.token)} is owed to ${addr(a.account)}`,
  PaymentChannelsNothingEarned: (a) => `device ${dev(a.device)} has earned nothing in ${token(a.token)} to withdraw`,
  PaymentChannelsUnknownDevice: (a) =>
    `device ${dev(a.device)} is not registered: a channel's payee must be a registered device`,

  // ---------------------------------------------------------------- GuardianQuorum
  GuardianQuorumAlreadyVoted: (a) =>
    `guardian ${addr(a.guardian)} has already voted on device ${dev(a.deviceId)} in this round`,
  GuardianQuorumInvalidQuorum: (a) => `a quorum of ${int(a.quorum)} is invalid: it must be at least 1`,

  // ---------------------------------------------------------------- OpenZeppelin: access, timelock
  AccessControlUnauthorizedAccount: (a) =>
    `${addr(a.account)} does not hold ${role(a.neededRole)}, which this call needs: send it from an account that does`,
  AccessControlBadConfirmation: () => "an account renounces a role only for itself, confirming its own address",
  TimelockInsufficientDelay: (a) =>
    `a delay of ${int(a.delay)} s is under the timelock's minimum of ${int(a.minDelay)} s`,
  TimelockInvalidOperationLength: (a) =>
    `the timelock operation's lists differ in length (${int(a.targets)} targets, ${int(a.payloads)} payloads, ${int(a.values)} values)`,
  TimelockUnauthorizedCaller: (a) => `${addr(a.caller)} may not call the timelock directly`,
  TimelockUnexecutedPredecessor: (a) =>
    `the timelock operation depends on ${shortHex(a.predecessorId)}, which is not executed yet`,
  TimelockUnexpectedOperationState: (a) =>
    `timelock operation ${shortHex(a.operationId)} is not in the state this needs (${timelockStates(a.expectedStates)})`,

  // ---------------------------------------------------------------- OpenZeppelin: forwarder, nonces
  ERC2771ForwarderExpiredRequest: expired("the forward request's"),
  ERC2771ForwarderInvalidSigner: (a) =>
    `the forward request is signed by ${addr(a.signer)}, not by its from ${addr(a.from)} (altered fields, or another nonce, chain or forwarder)`,
  ERC2771ForwarderMismatchedValue: (a) =>
    `the forward requests ask for ${eth(a.requestedValue)} but the call sent ${eth(a.msgValue)}`,
  ERC2771ForwarderNoRefundReceiver: () =>
    "a forward batch that skips failing requests needs a refund receiver for their value",
  ERC2771UntrustfulTarget: (a) =>
    `${addr(a.target)} does not trust the forwarder ${addr(a.forwarder)}: it cannot receive forward requests from it`,
  InvalidAccountNonce: (a) =>
    `a nonce of ${addr(a.account)} that is not its next one (${int(a.currentNonce)}): already used, or signed ahead`,

  // ---------------------------------------------------------------- OpenZeppelin: ERC-721 (devices are tokens)
  ERC721InvalidOwner: (a) => `${addr(a.owner)} cannot own a device token`,
  ERC721NonexistentToken: (a) => `device ${dev(a.tokenId)} does not exist (no token with this id)`,
  ERC721IncorrectOwner: (a) => `device ${dev(a.tokenId)} belongs to ${addr(a.owner)}, not to ${addr(a.sender)}`,
  ERC721InvalidSender: (a) => `${addr(a.sender)} cannot send a device token`,
  ERC721InvalidReceiver: (a) =>
    `${addr(a.receiver)} cannot receive a device token (the zero address, or a contract without onERC721Received)`,
  ERC721InsufficientApproval: (a) =>
    `${addr(a.operator)} is neither the owner of device ${dev(a.tokenId)} nor approved to move it`,
  ERC721InvalidApprover: (a) => `${addr(a.approver)} cannot approve: it does not own the device token`,
  ERC721InvalidOperator: (a) => `${addr(a.operator)} cannot be an operator`,

  // ---------------------------------------------------------------- OpenZeppelin: ERC-20, permit
  ERC20InsufficientBalance: (a) =>
    `${addr(a.sender)} holds ${int(a.balance)} base units of the token, ${int(a.needed)} are needed`,
  ERC20InvalidSender: (a) => `${addr(a.sender)} cannot send tokens`,
  ERC20InvalidReceiver: (a) => `${addr(a.receiver)} cannot receive tokens`,
  ERC20InsufficientAllowance: (a) =>
    `${addr(a.spender)} may spend ${int(a.allowance)} base units of the token, ${int(a.needed)} are needed: approve more first`,
  ERC20InvalidApprover: (a) => `${addr(a.approver)} cannot approve a spender`,
  ERC20InvalidSpender: (a) => `${addr(a.spender)} cannot be approved as a spender`,
  ERC2612ExpiredSignature: expired("the permit's"),
  ERC2612InvalidSigner: (a) => `the permit is signed by ${addr(a.signer)}, not by the token owner ${addr(a.owner)}`,

  // ---------------------------------------------------------------- OpenZeppelin: utilities
  ECDSAInvalidSignature: () => "the signature does not recover to any account (it is not a valid ECDSA signature)",
  ECDSAInvalidSignatureLength: (a) => `a signature of ${int(a.length)} bytes, where 65 (r, s, v) are needed`,
  ECDSAInvalidSignatureS: (a) =>
    `the signature has a high s (${shortHex(a.s)}): the malleated twin of a signature, which is refused`,
  MerkleProofInvalidMultiproof: () => "the Merkle multiproof is malformed",
  FailedCall: () => "a call the contract made failed without giving a reason",
  FailedDeployment: () => "the contract could not deploy another contract",
  InsufficientBalance: (a) => `the contract holds ${eth(a.balance)} and needs ${eth(a.needed)}`,
  MissingPrecompile: (a) => `the chain has no precompile at ${addr(a.precompile)}`,
  AddressEmptyCode: (a) => `there is no contract at ${addr(a.target)}, and the call needs one there`,
  ReentrancyGuardReentrantCall: () => "the contract was re-entered during a call, which it refuses",
  SafeERC20FailedOperation: (a) => `${token(a.token)} refused the transfer (or returned false)`,
  SafeCastOverflowedUintDowncast: (a) => `the value ${int(a.value)} does not fit in ${int(a.bits)} bits`,
  InvalidShortString: () => "a contract name or version is too long for its EIP-712 domain",
  StringTooLong: (a) => `the string ${JSON.stringify(String(a.str))} is too long for a short string`,
};

/** The bitmap of OpenZeppelin TimelockController operation states a call expected. */
function timelockStates(bitmap: unknown): string {
  const names = ["Unset", "Waiting", "Ready", "Done"];
  const n = BigInt(bitmap as bigint);
  const states = names.filter((_, i) => (n >> BigInt(i)) & 1n);
  return states.length ? `expected ${states.join(" or ")}` : `state bitmap ${shortHex(bitmap)}`;
}

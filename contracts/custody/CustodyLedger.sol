// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ERC2771Context} from "@openzeppelin/contracts/metatx/ERC2771Context.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";
import {SignatureChecker} from "@openzeppelin/contracts/utils/cryptography/SignatureChecker.sol";
import {IDeviceRegistry} from "../interfaces/IDeviceRegistry.sol";
import {DeviceSignature} from "../registry/DeviceSignature.sol";

/**
 * @title CustodyLedger
 * @notice Supply-chain shipments with a gap-free custody chain. A shipment (named by its GS1 EPC URI,
 * e.g. `urn:epc:id:sscc:…`) names its tracker device, its receiver, a deadline, the longest silence
 * allowed between checkpoints and the allowed temperature range; its creator is the first custodian.
 * Its id belongs to its creator: keccak256(abi.encode(creator, keccak256(epc))) ({shipmentIdOf}), so
 * nobody else can take or block it by creating the same EPC first. A handoff carries `Handoff(…)`
 * signed by both custodians (EOAs, or contract wallets through ERC-1271) and is relayed by anyone;
 * `seq` grows by exactly one. The tracker signs `Checkpoint(…)`s: the Merkle root of its raw
 * readings with their min and max; a min or max out of range marks the shipment breached, and so
 * does a proof of one out-of-range reading against a posted root, which, when the device's own
 * signed min and max hid it, is also evidence against the device. Anyone marks a shipment overdue
 * after its deadline, or silent when no checkpoint came in time. The receiver's acceptance delivers
 * it; a delivered shipment never changes.
 *
 * The tracker's word is evidence that may go against its owner (often the shipper), so a shipment
 * PINS, at creation, the tracker's current key generation and trust period (registry
 * `deviceTrust`): only that key counts for it, and only for checkpoints dated (`at`) no later than
 * the moment trust in that period ended (registry `keyTrustedUntil`). A rotation during the shipment
 * cannot swap the evidence key, and a theft report cannot void what the tracker signed before it.
 * The key must also be one whose provenance reaches the manufacturer, unless the creator accepts
 * owner-installed keys up front (`acceptOwnerKeys`).
 *
 * A pallet commits the Merkle root of its children's EPCs: handing off the pallet moves every child
 * with it, and a child split off later (with its proof) becomes a shipment of its own, its provenance
 * linked to the pallet; its id belongs to the pallet, keccak256(abi.encode(pallet, keccak256(epc)))
 * ({childIdOf}).
 *
 * @dev Bizstep, disposition and read point are GS1 CBV / EPCIS values, as bytes32: the CBV short
 * name (e.g. "shipping", "in_transit") left-aligned, and keccak256 of the read point's URI.
 * Temperatures are hundredths of a degree Celsius.
 */
contract CustodyLedger is EIP712, ERC2771Context {
    bytes32 public constant HANDOFF_TYPEHASH = keccak256(
        "Handoff(bytes32 shipment,address from,address to,uint32 seq,bytes32 bizStep,bytes32 disposition,"
        "bytes32 readPoint,uint64 at,uint256 deadline)"
    );
    bytes32 public constant CHECKPOINT_TYPEHASH = keccak256(
        "Checkpoint(bytes32 shipment,uint32 seq,bytes32 readingsRoot,uint32 count,int16 minTemp,int16 maxTemp,"
        "bytes32 location,uint64 at)"
    );

    uint8 private constant BREACHED = 1;
    uint8 private constant OVERDUE = 2;
    uint8 private constant SILENT = 4;
    uint8 private constant DELIVERED = 8;

    /// @dev Slot 0: who holds it and how its handoffs are numbered.
    struct Custody {
        address custodian;
        uint32 handoffSeq;
        uint40 deadline;
        uint24 maxSilence;
    }

    /// @dev Slot 1: what its tracker reported, and its flags.
    struct Tracking {
        uint192 tracker;
        uint40 lastCheckpointAt;
        uint16 checkpointSeq;
        uint8 flags;
    }

    /// @dev Slot 2: who accepts it, what it may endure, and the tracker key and trust period it pinned.
    struct Conditions {
        address receiver;
        int16 minTemp;
        int16 maxTemp;
        uint16 trackerKeyGeneration;
        uint32 trackerPeriod;
        bool trackerKeyAttested;
    }

    /// @notice What a creator sets.
    struct ShipmentParams {
        /// @dev The GS1 EPC URI of the shipment (an SSCC for a logistic unit); see {shipmentIdOf}.
        string epc;
        uint256 tracker;
        address receiver;
        uint40 deadline;
        uint24 maxSilence;
        int16 minTemp;
        int16 maxTemp;
        bytes32 metadataHash;
        /// @dev For a pallet: the StandardMerkleTree root over its children's keccak256(epc) (0 for none).
        bytes32 childrenRoot;
        /// @dev Whether the tracker's current key may be one its owner installed without the previous
        /// key's signature (provenance not reaching the manufacturer): the creator's choice, up front.
        bool acceptOwnerKeys;
    }

    /// @notice A handoff from one custodian to the next, signed by both.
    struct HandoffData {
        bytes32 shipment;
        address from;
        address to;
        uint32 seq;
        bytes32 bizStep;
        bytes32 disposition;
        bytes32 readPoint;
        uint64 at;
        uint256 deadline;
    }

    /// @notice A tracker's checkpoint: the Merkle root of its raw readings since the last one.
    struct CheckpointData {
        bytes32 shipment;
        uint32 seq;
        bytes32 readingsRoot;
        uint32 count;
        int16 minTemp;
        int16 maxTemp;
        bytes32 location;
        uint64 at;
    }

    /**
     * @notice What the ledger keeps, hashed, of a tracker's latest checkpoint: enough to prove an
     * excursion against it without the tracker's signature. The allowed range is the shipment's.
     */
    struct CheckpointSummary {
        bytes32 shipment;
        uint32 seq;
        bytes32 readingsRoot;
        int16 minTemp;
        int16 maxTemp;
        int16 allowedMinTemp;
        int16 allowedMaxTemp;
    }

    /// @notice One raw reading of a tracker: a leaf of a checkpoint's `readingsRoot`.
    struct Reading {
        uint64 at;
        int16 temp;
    }

    /// @notice Everything the ledger holds of a shipment.
    struct ShipmentView {
        address custodian;
        uint32 handoffSeq;
        uint40 deadline;
        uint24 maxSilence;
        uint256 tracker;
        uint40 lastCheckpointAt;
        uint16 checkpointSeq;
        bool breached;
        bool overdue;
        bool silent;
        bool delivered;
        address receiver;
        int16 minTemp;
        int16 maxTemp;
        bytes32 childrenRoot;
        /// @dev The tracker key generation the shipment pinned: only that key's checkpoints count.
        uint16 trackerKeyGeneration;
        /// @dev The tracker trust period the shipment pinned: checkpoints count up to its end.
        uint32 trackerPeriod;
        /// @dev Whether the pinned key's provenance reached the manufacturer at creation.
        bool trackerKeyAttested;
    }

    IDeviceRegistry private immutable _registry;

    mapping(bytes32 shipment => Custody) private _custody;
    mapping(bytes32 shipment => Tracking) private _tracking;
    mapping(bytes32 shipment => Conditions) private _conditions;
    mapping(bytes32 pallet => bytes32 root) private _children;
    /// @dev Per tracker device, keccak256 of the {CheckpointSummary} of its latest checkpoint. Keyed
    /// by tracker, not by shipment, so that the slot is fresh only at a tracker's first checkpoint ever.
    mapping(uint256 tracker => bytes32 summaryHash) private _latestCheckpoint;

    event ShipmentCreated(
        bytes32 indexed shipment,
        address indexed creator,
        uint256 indexed tracker,
        string epc,
        address receiver,
        uint40 deadline,
        uint24 maxSilence,
        int16 minTemp,
        int16 maxTemp,
        bytes32 metadataHash,
        bytes32 childrenRoot
    );
    /// @notice `child` was split off pallet `pallet`: its history before this continues the pallet's.
    event ChildSplit(bytes32 indexed pallet, bytes32 indexed child);
    event HandedOff(
        bytes32 indexed shipment,
        address indexed from,
        address indexed to,
        uint32 seq,
        bytes32 bizStep,
        bytes32 disposition,
        bytes32 readPoint,
        uint64 at
    );
    event CheckpointPosted(
        bytes32 indexed shipment,
        uint32 seq,
        bytes32 readingsRoot,
        uint32 count,
        int16 minTemp,
        int16 maxTemp,
        bytes32 location,
        uint64 at
    );
    event Breached(bytes32 indexed shipment, uint32 checkpointSeq, int16 temp, uint64 at);
    /// @notice A tracker signed a min and max that one of its own readings contradicts: guardians may act.
    event DeviceContradicted(uint256 indexed device, bytes32 indexed shipment, uint32 checkpointSeq, int16 temp);
    event MarkedOverdue(bytes32 indexed shipment, uint40 deadline);
    event MarkedSilent(bytes32 indexed shipment, uint40 lastCheckpointAt);
    event Delivered(bytes32 indexed shipment, address indexed receiver);

    error CustodyLedgerShipmentExists(bytes32 shipment);
    error CustodyLedgerUnknownShipment(bytes32 shipment);
    error CustodyLedgerInvalidParams();
    error CustodyLedgerTrackerNotActive(uint256 tracker);
    error CustodyLedgerDelivered(bytes32 shipment);
    error CustodyLedgerWrongShipment(bytes32 expected, bytes32 got);
    error CustodyLedgerNotCustodian(address custodian, address from);
    error CustodyLedgerWrongSequence(uint32 expected, uint32 seq);
    error CustodyLedgerExpired(uint256 deadline);
    error CustodyLedgerInvalidSignature(address signer);
    error CustodyLedgerNotTrackerKey(uint256 tracker);
    error CustodyLedgerInvalidTrackerSignature();
    error CustodyLedgerBadTime(uint64 at);
    error CustodyLedgerInvalidProof();
    error CustodyLedgerNotAnExcursion(int16 temp);
    error CustodyLedgerNotYet(uint256 at);
    error CustodyLedgerAlreadyFlagged(bytes32 shipment);
    error CustodyLedgerNotReceiver(address account);
    error CustodyLedgerNotHeldByReceiver(address custodian);
    error CustodyLedgerNotAPallet(bytes32 pallet);
    error CustodyLedgerNotLatestCheckpoint(uint256 tracker);
    /// @dev The tracker's current key was installed by its owner alone: set `acceptOwnerKeys` to accept it.
    error CustodyLedgerOwnerInstalledKey(uint256 tracker, uint16 keyGeneration);
    /// @dev A checkpoint dated after trust in the shipment's pinned tracker period ended (`until`).
    error CustodyLedgerTrackerNotTrusted(uint64 at, uint40 until);

    /**
     * @param registry_ the device registry whose devices track shipments.
     * @param trustedForwarder the ERC-2771 forwarder creators and receivers may act through.
     */
    constructor(
        IDeviceRegistry registry_,
        address trustedForwarder
    ) EIP712("Custos CustodyLedger", "1") ERC2771Context(trustedForwarder) {
        _registry = registry_;
    }

    // ---------------------------------------------------------------- shipments

    /**
     * @notice Creates a shipment, id {shipmentIdOf}(caller, `p.epc`); the caller is its first
     * custodian. The tracker must be an active device whose current key reaches the manufacturer
     * (unless `p.acceptOwnerKeys`): the shipment pins that key generation and the tracker's current
     * trust period. Only that key's checkpoints count for it, and only those dated up to the moment
     * trust in that period ended: after the tracker is reported stolen, flagged, revoked or its key
     * rotates, what it signed before still counts, and nothing dated later ever does. A release or a
     * rotation starts a new period, so the shipment's later checkpoints are refused: it goes silent
     * (anyone may {markSilent} it), even when the owner got the tracker back.
     */
    function createShipment(ShipmentParams calldata p) external returns (bytes32 shipment) {
        address creator = _msgSender();
        shipment = _idOf(bytes32(uint256(uint160(creator))), p.epc);
        _checkParams(shipment, p.tracker);
        IDeviceRegistry.DeviceTrust memory trust = _registry.deviceTrust(p.tracker);
        if (trust.status != IDeviceRegistry.DeviceStatus.Active) revert CustodyLedgerTrackerNotActive(p.tracker);
        if (!trust.keyAttested && !p.acceptOwnerKeys)
            revert CustodyLedgerOwnerInstalledKey(p.tracker, trust.keyGeneration);
        _create(
            shipment,
            creator,
            p,
            Conditions(p.receiver, p.minTemp, p.maxTemp, trust.keyGeneration, trust.period, trust.keyAttested),
            bytes32(0)
        );
    }

    /**
     * @notice Splits child `epc` off pallet `pallet` (the pallet's custodian only): the child becomes
     * shipment {childIdOf}(`pallet`, `epc`), with the pallet's custodian, tracker (its pinned key
     * generation and trust period too), receiver, deadline and conditions. Its id derives from the
     * pallet's, so nobody can create it ahead of the split.
     * @param proof the Merkle proof of keccak256(`epc`) against the pallet's `childrenRoot`
     *        (leaf: keccak256(keccak256(abi.encode(keccak256(bytes(epc))))), OpenZeppelin
     *        StandardMerkleTree over `bytes32`).
     */
    function splitChild(
        bytes32 pallet,
        string calldata epc,
        bytes32[] calldata proof
    ) external returns (bytes32 child) {
        bytes32 root = _children[pallet];
        if (root == 0) revert CustodyLedgerNotAPallet(pallet);
        Custody memory c = _custody[pallet];
        if (_msgSender() != c.custodian) revert CustodyLedgerNotCustodian(c.custodian, _msgSender());
        Tracking memory t = _tracking[pallet];
        if (t.flags & DELIVERED != 0) revert CustodyLedgerDelivered(pallet);
        bytes32 epcHash = keccak256(bytes(epc));
        if (!MerkleProof.verifyCalldata(proof, root, keccak256(bytes.concat(keccak256(abi.encode(epcHash))))))
            revert CustodyLedgerInvalidProof();
        child = keccak256(abi.encode(pallet, epcHash));
        _checkParams(child, t.tracker);
        Conditions memory k = _conditions[pallet];
        _create(
            child,
            c.custodian,
            ShipmentParams(epc, t.tracker, k.receiver, c.deadline, c.maxSilence, k.minTemp, k.maxTemp, 0, 0, false),
            k,
            pallet
        );
    }

    /**
     * @notice Moves custody from `h.from` to `h.to`: both signed `h` (EIP-712 `Handoff`; ERC-1271 for
     * contract wallets). Anyone may relay it. For a pallet, every child moves with it.
     */
    function handoff(HandoffData calldata h, bytes calldata fromSignature, bytes calldata toSignature) external {
        bytes32 shipment = h.shipment;
        Custody memory c = _custody[shipment];
        if (c.custodian == address(0)) revert CustodyLedgerUnknownShipment(shipment);
        if (_tracking[shipment].flags & DELIVERED != 0) revert CustodyLedgerDelivered(shipment);
        if (h.from != c.custodian) revert CustodyLedgerNotCustodian(c.custodian, h.from);
        if (h.seq != c.handoffSeq + 1) revert CustodyLedgerWrongSequence(c.handoffSeq + 1, h.seq);
        if (block.timestamp > h.deadline) revert CustodyLedgerExpired(h.deadline);
        if (h.to == address(0)) revert CustodyLedgerInvalidParams();
        bytes32 digest = _hashTypedDataV4(keccak256(abi.encode(HANDOFF_TYPEHASH, h)));
        if (!SignatureChecker.isValidSignatureNowCalldata(h.from, digest, fromSignature))
            revert CustodyLedgerInvalidSignature(h.from);
        if (!SignatureChecker.isValidSignatureNowCalldata(h.to, digest, toSignature))
            revert CustodyLedgerInvalidSignature(h.to);
        _custody[shipment] = Custody(h.to, h.seq, c.deadline, c.maxSilence);
        emit HandedOff(shipment, h.from, h.to, h.seq, h.bizStep, h.disposition, h.readPoint, h.at);
    }

    /**
     * @notice Posts a tracker checkpoint signed by the key the shipment pinned (the tracker's key
     * generation at creation, resolved by the registry even after it rotated away), dated no later
     * than the end of the pinned trust period. Anyone may relay it. A min or max out of the allowed
     * range marks the shipment breached.
     * @dev After a release or a rotation the pinned period has ended: the shipment's later checkpoints
     * are refused (`CustodyLedgerNotTrackerKey` from a new key, `CustodyLedgerTrackerNotTrusted` from
     * the pinned one) and it goes silent; checkpoints dated before the end still land.
     */
    function checkpoint(CheckpointData calldata cp, bytes calldata key, bytes calldata signature) external {
        Tracking memory t = _tracking[cp.shipment];
        // The conditions slot read once, only the fields a checkpoint needs.
        Conditions storage k = _conditions[cp.shipment];
        (int16 minTemp, int16 maxTemp) = (k.minTemp, k.maxTemp);
        _checkCheckpoint(cp, t, k.trackerKeyGeneration, k.trackerPeriod, key, signature);
        // keccak256(abi.encode(CheckpointSummary)), its fields being static.
        _latestCheckpoint[t.tracker] = keccak256(
            abi.encode(cp.shipment, cp.seq, cp.readingsRoot, cp.minTemp, cp.maxTemp, minTemp, maxTemp)
        );
        _emitCheckpointPosted(cp);
        _writeTracking(
            cp.shipment,
            t.tracker,
            uint40(cp.at),
            uint16(cp.seq),
            _breachFlags(cp, minTemp, maxTemp, t.flags)
        );
    }

    /**
     * @notice Proves one raw reading out of the allowed range against a posted checkpoint's root,
     * presented with the pinned tracker key's signature and dated within the pinned trust period (as
     * {checkpoint} requires): the shipment is marked breached. A breach the tracker signed before trust
     * in it ended can always be proven. If the checkpoint's own signed min and max hid the reading,
     * the tracker device is reported by `DeviceContradicted`. Anyone may prove.
     * @dev For the tracker's latest checkpoint {proveLatestExcursion} is cheaper: no signature.
     * @param cp the posted checkpoint, with the tracker `key` and `signature` that signed it.
     * @param proof the reading's Merkle proof (leaf: keccak256(keccak256(abi.encode(at, temp)))).
     */
    function proveExcursion(
        CheckpointData calldata cp,
        bytes calldata key,
        bytes calldata signature,
        Reading calldata reading,
        bytes32[] calldata proof
    ) external {
        Tracking memory t = _excursionTarget(cp.shipment);
        // Only a checkpoint that was posted (its sequence number reached) counts.
        if (cp.seq == 0 || cp.seq > t.checkpointSeq) revert CustodyLedgerWrongSequence(t.checkpointSeq, cp.seq);
        _excursion(_signedSummary(cp, t.tracker, key, signature), t, reading, proof);
    }

    /**
     * @notice {proveExcursion} against the latest checkpoint of the shipment's tracker, of which the
     * ledger keeps a hash: the checkpoint is summarised, without the tracker's signature, which was
     * checked when it was posted. Anyone may prove.
     * @param summary the tracker's latest checkpoint (`CheckpointPosted`) with the shipment's allowed range.
     */
    function proveLatestExcursion(
        CheckpointSummary calldata summary,
        Reading calldata reading,
        bytes32[] calldata proof
    ) external {
        Tracking memory t = _excursionTarget(summary.shipment);
        // The hash covers the shipment and the sequence number: this checkpoint was posted, for it.
        if (_latestCheckpoint[t.tracker] != keccak256(abi.encode(summary)))
            revert CustodyLedgerNotLatestCheckpoint(t.tracker);
        _excursion(summary, t, reading, proof);
    }

    /// @notice Marks a shipment not delivered by its deadline as overdue. Anyone may.
    function markOverdue(bytes32 shipment) external {
        Custody memory c = _custody[shipment];
        if (c.custodian == address(0)) revert CustodyLedgerUnknownShipment(shipment);
        if (block.timestamp <= c.deadline) revert CustodyLedgerNotYet(c.deadline);
        Tracking storage t = _tracking[shipment];
        uint8 flags = t.flags;
        if (flags & DELIVERED != 0) revert CustodyLedgerDelivered(shipment);
        if (flags & OVERDUE != 0) revert CustodyLedgerAlreadyFlagged(shipment);
        t.flags = flags | OVERDUE;
        emit MarkedOverdue(shipment, c.deadline);
    }

    /// @notice Marks a shipment whose tracker was silent longer than allowed. Anyone may.
    function markSilent(bytes32 shipment) external {
        Custody memory c = _custody[shipment];
        if (c.custodian == address(0)) revert CustodyLedgerUnknownShipment(shipment);
        Tracking storage t = _tracking[shipment];
        (uint40 last, uint8 flags) = (t.lastCheckpointAt, t.flags);
        if (block.timestamp <= uint256(last) + c.maxSilence) revert CustodyLedgerNotYet(uint256(last) + c.maxSilence);
        if (flags & DELIVERED != 0) revert CustodyLedgerDelivered(shipment);
        if (flags & SILENT != 0) revert CustodyLedgerAlreadyFlagged(shipment);
        t.flags = flags | SILENT;
        emit MarkedSilent(shipment, last);
    }

    /// @notice The receiver accepts a shipment handed to it: it is delivered and never changes again.
    function deliver(bytes32 shipment) external {
        Custody memory c = _custody[shipment];
        if (c.custodian == address(0)) revert CustodyLedgerUnknownShipment(shipment);
        address receiver = _conditions[shipment].receiver;
        if (_msgSender() != receiver) revert CustodyLedgerNotReceiver(_msgSender());
        if (c.custodian != receiver) revert CustodyLedgerNotHeldByReceiver(c.custodian);
        Tracking storage t = _tracking[shipment];
        if (t.flags & DELIVERED != 0) revert CustodyLedgerDelivered(shipment);
        t.flags |= DELIVERED;
        emit Delivered(shipment, receiver);
    }

    // ---------------------------------------------------------------- views

    /// @notice The device registry.
    function registry() external view returns (IDeviceRegistry) {
        return _registry;
    }

    /// @notice Everything the ledger holds of `shipment` (all zero if there is none).
    function shipmentOf(bytes32 shipment) external view returns (ShipmentView memory v) {
        Custody memory c = _custody[shipment];
        Tracking memory t = _tracking[shipment];
        Conditions memory k = _conditions[shipment];
        v = ShipmentView({
            custodian: c.custodian,
            handoffSeq: c.handoffSeq,
            deadline: c.deadline,
            maxSilence: c.maxSilence,
            tracker: t.tracker,
            lastCheckpointAt: t.lastCheckpointAt,
            checkpointSeq: t.checkpointSeq,
            breached: t.flags & BREACHED != 0,
            overdue: t.flags & OVERDUE != 0,
            silent: t.flags & SILENT != 0,
            delivered: t.flags & DELIVERED != 0,
            receiver: k.receiver,
            minTemp: k.minTemp,
            maxTemp: k.maxTemp,
            childrenRoot: _children[shipment],
            trackerKeyGeneration: k.trackerKeyGeneration,
            trackerPeriod: k.trackerPeriod,
            trackerKeyAttested: k.trackerKeyAttested
        });
    }

    /// @notice Whether `reading` is in the batch of readings whose Merkle root is `root`.
    function verifyReading(
        bytes32 root,
        Reading calldata reading,
        bytes32[] calldata proof
    ) external pure returns (bool) {
        return MerkleProof.verifyCalldata(proof, root, _readingLeaf(reading));
    }

    /// @notice The id of the shipment `creator` creates with GS1 EPC URI `epc`:
    /// keccak256(abi.encode(creator, keccak256(bytes(epc)))).
    function shipmentIdOf(address creator, string calldata epc) external pure returns (bytes32) {
        return _idOf(bytes32(uint256(uint160(creator))), epc);
    }

    /// @notice The id of child `epc` split off pallet `pallet`: keccak256(abi.encode(pallet, keccak256(bytes(epc)))).
    function childIdOf(bytes32 pallet, string calldata epc) external pure returns (bytes32) {
        return _idOf(pallet, epc);
    }

    /// @notice keccak256 of the {CheckpointSummary} of tracker `tracker`'s latest checkpoint (0 before its first).
    function latestCheckpoint(uint256 tracker) external view returns (bytes32) {
        return _latestCheckpoint[tracker];
    }

    /// @notice The EIP-712 domain separator of handoffs and checkpoints.
    // solhint-disable-next-line func-name-mixedcase
    function DOMAIN_SEPARATOR() external view returns (bytes32) {
        return _domainSeparatorV4();
    }

    // ---------------------------------------------------------------- internals

    /// @dev keccak256(abi.encode(owner, keccak256(bytes(epc)))): a shipment's id under its creator
    /// (left-padded address) or a child's under its pallet.
    function _idOf(bytes32 owner, string calldata epc) private pure returns (bytes32) {
        return keccak256(abi.encode(owner, keccak256(bytes(epc))));
    }

    /// @dev Reverts unless `shipment` is new and `tracker` fits the tracking slot.
    function _checkParams(bytes32 shipment, uint256 tracker) private view {
        if (_custody[shipment].custodian != address(0)) revert CustodyLedgerShipmentExists(shipment);
        if (tracker == 0 || tracker > type(uint192).max) revert CustodyLedgerInvalidParams();
    }

    function _create(
        bytes32 shipment,
        address creator,
        ShipmentParams memory p,
        Conditions memory k,
        bytes32 parent
    ) private {
        if (p.receiver == address(0) || p.minTemp > p.maxTemp || p.deadline <= block.timestamp || p.maxSilence == 0)
            revert CustodyLedgerInvalidParams();
        _store(shipment, creator, p.deadline, p.maxSilence, uint192(p.tracker), k);
        if (p.childrenRoot != 0) _children[shipment] = p.childrenRoot;
        emit ShipmentCreated(
            shipment,
            creator,
            p.tracker,
            p.epc,
            p.receiver,
            p.deadline,
            p.maxSilence,
            p.minTemp,
            p.maxTemp,
            p.metadataHash,
            p.childrenRoot
        );
        if (parent != 0) emit ChildSplit(parent, shipment);
    }

    /**
     * @dev Writes a new shipment's three slots, one SSTORE each: the legacy code generator writes a
     * struct member by member (eleven more storage reads and writes, about 3,000 gas a shipment).
     * The words follow the declared layouts of {Custody}, {Tracking} and {Conditions} (first member
     * in the lowest bits), which {shipmentOf} reads back.
     */
    function _store(
        bytes32 shipment,
        address creator,
        uint40 deadline,
        uint24 maxSilence,
        uint192 tracker,
        Conditions memory k
    ) private {
        uint256 custody = uint256(uint160(creator)) | (uint256(deadline) << 192) | (uint256(maxSilence) << 232);
        uint256 conditions =
            uint256(uint160(k.receiver)) |
                (uint256(uint16(k.minTemp)) << 160) |
                (uint256(uint16(k.maxTemp)) << 176) |
                (uint256(k.trackerKeyGeneration) << 192) |
                (uint256(k.trackerPeriod) << 208) |
                (k.trackerKeyAttested ? 1 << 240 : 0);
        Custody storage c = _custody[shipment];
        Conditions storage n = _conditions[shipment];
        // solhint-disable-next-line no-inline-assembly
        assembly ("memory-safe") {
            sstore(c.slot, custody)
            sstore(n.slot, conditions)
        }
        _writeTracking(shipment, tracker, uint40(block.timestamp), 0, 0);
    }

    /// @dev Writes a shipment's whole {Tracking} slot at once (no read of the old word to mask it).
    function _writeTracking(bytes32 shipment, uint192 tracker, uint40 lastAt, uint16 seq, uint8 flags) private {
        uint256 word = uint256(tracker) | (uint256(lastAt) << 192) | (uint256(seq) << 232) | (uint256(flags) << 248);
        Tracking storage t = _tracking[shipment];
        // solhint-disable-next-line no-inline-assembly
        assembly ("memory-safe") {
            sstore(t.slot, word)
        }
    }

    function _checkCheckpoint(
        CheckpointData calldata cp,
        Tracking memory t,
        uint16 generation,
        uint32 period,
        bytes calldata key,
        bytes calldata signature
    ) private view {
        if (t.tracker == 0) revert CustodyLedgerUnknownShipment(cp.shipment);
        if (t.flags & DELIVERED != 0) revert CustodyLedgerDelivered(cp.shipment);
        // The sequence is kept in 16 bits: 65,535 checkpoints a shipment (682 days at one per 15 min).
        if (cp.seq != uint32(t.checkpointSeq) + 1 || cp.seq > type(uint16).max)
            revert CustodyLedgerWrongSequence(uint32(t.checkpointSeq) + 1, cp.seq);
        if (cp.at < t.lastCheckpointAt || cp.at > block.timestamp) revert CustodyLedgerBadTime(cp.at);
        _checkTrackerKey(t.tracker, generation, period, key, cp.at);
        if (!DeviceSignature.isValidCalldata(key, _checkpointDigest(cp), signature))
            revert CustodyLedgerInvalidTrackerSignature();
    }

    /**
     * @dev Reverts unless `key` is the key generation of `tracker` the shipment pinned (current or
     * rotated away: the registry resolves both) and `at` is no later than the end of trust in the
     * pinned period. Signatures cannot be dated, so this bounds what the key adds, not who signed when.
     */
    function _checkTrackerKey(
        uint256 tracker,
        uint16 pinnedGeneration,
        uint32 period,
        bytes calldata key,
        uint64 at
    ) private view {
        (uint256 device, uint16 generation, uint40 until) = _registry.keyTrustedUntil(key, period);
        if (device != tracker || generation != pinnedGeneration) revert CustodyLedgerNotTrackerKey(tracker);
        if (at > until) revert CustodyLedgerTrackerNotTrusted(at, until);
    }

    function _emitCheckpointPosted(CheckpointData calldata cp) private {
        emit CheckpointPosted(
            cp.shipment,
            cp.seq,
            cp.readingsRoot,
            cp.count,
            cp.minTemp,
            cp.maxTemp,
            cp.location,
            cp.at
        );
    }

    /// @dev `flags` with BREACHED set if the checkpoint's min or max leaves the allowed range.
    function _breachFlags(
        CheckpointData calldata cp,
        int16 minTemp,
        int16 maxTemp,
        uint8 flags
    ) private returns (uint8) {
        bool low = cp.minTemp < minTemp;
        if (!low && cp.maxTemp <= maxTemp) return flags;
        if (flags & BREACHED == 0) emit Breached(cp.shipment, cp.seq, low ? cp.minTemp : cp.maxTemp, cp.at);
        return flags | BREACHED;
    }

    function _readingLeaf(Reading calldata reading) private pure returns (bytes32) {
        return keccak256(bytes.concat(keccak256(abi.encode(reading.at, reading.temp))));
    }

    /**
     * @dev The EIP-712 digest of `cp`: keccak256(abi.encode(CHECKPOINT_TYPEHASH, cp)) hashed straight
     * from calldata, where the checkpoint's eight static words are already ABI-encoded (copying them
     * field by field cost every checkpoint about 300 gas). Dirty high bits change the digest, so the
     * tracker's signature (over the clean encoding) fails.
     */
    function _checkpointDigest(CheckpointData calldata cp) private view returns (bytes32) {
        bytes32 typeHash = CHECKPOINT_TYPEHASH;
        bytes32 structHash;
        // solhint-disable-next-line no-inline-assembly
        assembly ("memory-safe") {
            let ptr := mload(0x40)
            mstore(ptr, typeHash)
            calldatacopy(add(ptr, 0x20), cp, 0x100)
            structHash := keccak256(ptr, 0x120)
        }
        return _hashTypedDataV4(structHash);
    }

    /**
     * @dev The summary of checkpoint `cp` presented with `signature`, which counts on the terms a
     * posted checkpoint's does: the pinned key, dated within the pinned trust period. A key rotated
     * away, or a stolen tracker, could sign any root for a posted seq; dated after trust ended, it
     * counts for nothing.
     */
    function _signedSummary(
        CheckpointData calldata cp,
        uint256 tracker,
        bytes calldata key,
        bytes calldata signature
    ) private view returns (CheckpointSummary memory) {
        (int16 minTemp, int16 maxTemp) = _checkPinnedKey(cp.shipment, tracker, key, cp.at);
        if (!DeviceSignature.isValidCalldata(key, _checkpointDigest(cp), signature))
            revert CustodyLedgerInvalidTrackerSignature();
        return CheckpointSummary(cp.shipment, cp.seq, cp.readingsRoot, cp.minTemp, cp.maxTemp, minTemp, maxTemp);
    }

    /// @dev {_checkTrackerKey} against `shipment`'s pin; returns its allowed range (one read of its slot).
    function _checkPinnedKey(
        bytes32 shipment,
        uint256 tracker,
        bytes calldata key,
        uint64 at
    ) private view returns (int16 minTemp, int16 maxTemp) {
        Conditions storage k = _conditions[shipment];
        uint16 generation;
        uint32 period;
        (generation, period, minTemp, maxTemp) = (k.trackerKeyGeneration, k.trackerPeriod, k.minTemp, k.maxTemp);
        _checkTrackerKey(tracker, generation, period, key, at);
    }

    /// @dev The tracking of a shipment an excursion may still be proven on: it exists and is not delivered.
    function _excursionTarget(bytes32 shipment) private view returns (Tracking memory t) {
        t = _tracking[shipment];
        if (t.tracker == 0) revert CustodyLedgerUnknownShipment(shipment);
        if (t.flags & DELIVERED != 0) revert CustodyLedgerDelivered(shipment);
    }

    /// @dev Checks the reading's proof against the checkpoint's root and that it is out of range; breaches.
    function _excursion(
        CheckpointSummary memory s,
        Tracking memory t,
        Reading calldata reading,
        bytes32[] calldata proof
    ) private {
        if (!MerkleProof.verifyCalldata(proof, s.readingsRoot, _readingLeaf(reading)))
            revert CustodyLedgerInvalidProof();
        int16 temp = reading.temp;
        if (temp >= s.allowedMinTemp && temp <= s.allowedMaxTemp) revert CustodyLedgerNotAnExcursion(temp);
        if (temp < s.minTemp || temp > s.maxTemp) emit DeviceContradicted(t.tracker, s.shipment, s.seq, temp);
        if (t.flags & BREACHED == 0) {
            _tracking[s.shipment].flags = t.flags | BREACHED;
            emit Breached(s.shipment, s.seq, temp, reading.at);
        }
    }
}

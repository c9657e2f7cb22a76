// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ERC721} from "@openzeppelin/contracts/token/ERC721/ERC721.sol";
import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {ERC2771Context} from "@openzeppelin/contracts/metatx/ERC2771Context.sol";
import {Context} from "@openzeppelin/contracts/utils/Context.sol";
import {Multicall} from "@openzeppelin/contracts/utils/Multicall.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";
import {IDeviceRegistry} from "../interfaces/IDeviceRegistry.sol";
import {IDeviceQuarantine} from "../interfaces/IDeviceQuarantine.sol";
import {GuardianQuorum} from "../guardians/GuardianQuorum.sol";
import {DeviceSignature} from "./DeviceSignature.sol";

/**
 * @title DeviceRegistry
 * @notice Device identity for Custos: one ERC-721 token per device, bound to the device's hardware
 * key (an ERC-7913 signer). Manufacturers commit batches as Merkle roots; an owner claims a device
 * with a signature by its hardware key; owners and the guardians (an M-of-N quorum contract holding
 * `GUARDIAN_ROLE`, see GuardianQuorum) quarantine devices; owners, manufacturers and the admin revoke
 * them; keys rotate without changing the identity.
 *
 * Trust is recorded so that no owner can use it against its devices' counterparties: every device
 * lives through trust periods, each named by an unpredictable tag. A period ends when the device
 * stops being `Active` (reported stolen, flagged, revoked) or its key rotates; {keyTrustedUntil} tells
 * other contracts when, so that what a key signed counts for no more than what was possible then.
 * A new period starts at a release, a guardian clear or a rotation, with a fresh tag that nobody
 * holding the device before could have known. And every key carries its provenance: attested (the
 * provisioned key, a key rotated in with the previous attested key's signature, or a key the
 * manufacturer re-attested) or installed by the owner alone.
 *
 * @dev Storage is laid out for the claim path. A device's id is derived from its first key
 * (`keccak256(key) >> 64`), so resolving that key needs no mapping and a claim writes one packed
 * record, the firmware hash and the two ERC-721 slots. Keys that arrive by rotation get an alias
 * carrying the key generation they were introduced in; a key resolves only while its generation is
 * the device's current one, so a rotated-away key stops resolving at once even when the owner no
 * longer knows it. Every key hash ever seen stays taken forever.
 */
contract DeviceRegistry is
    IDeviceRegistry,
    IDeviceQuarantine,
    ERC721,
    AccessControl,
    EIP712,
    ERC2771Context,
    Multicall
{
    /// @notice Role of manufacturers, who commit batches, recall devices and revoke firmware.
    bytes32 public constant MANUFACTURER_ROLE = keccak256("MANUFACTURER_ROLE");
    /// @notice Role of whoever may flag and clear devices: the guardians' quorum contract.
    bytes32 public constant GUARDIAN_ROLE = keccak256("GUARDIAN_ROLE");
    /// @notice The guardians' M-of-N quorum contract this registry deployed (it holds `GUARDIAN_ROLE`).
    address public immutable guardianQuorum;

    /// @notice EIP-712 type of the device's proof of presence when it is claimed.
    bytes32 public constant DEVICE_CLAIM_TYPEHASH = keccak256(
        "DeviceClaim(address owner,uint48 batch,uint256 deadline)"
    );
    /// @notice EIP-712 type signed by the new key (and the old one when available) on rotation.
    bytes32 public constant KEY_ROTATION_TYPEHASH = keccak256(
        "KeyRotation(uint256 device,bytes newKey,uint256 nonce,uint256 deadline)"
    );
    /// @notice EIP-712 type of a device's attestation of the firmware it runs.
    bytes32 public constant FIRMWARE_ATTESTATION_TYPEHASH = keccak256(
        "FirmwareAttestation(uint256 device,bytes32 firmwareHash,uint256 nonce,uint256 deadline)"
    );
    /// @notice EIP-712 type by which a device voids its next, unused nonce.
    bytes32 public constant NONCE_CANCELLATION_TYPEHASH = keccak256(
        "NonceCancellation(uint256 device,uint256 nonce,uint256 deadline)"
    );

    uint8 private constant REPORTED_STOLEN = 1;
    uint8 private constant GUARDIAN_FLAGGED = 2;
    uint8 private constant REVOKED = 4;
    /// @dev Not a status: the current key was installed by the owner alone (no attested key signed it).
    uint8 private constant OWNER_INSTALLED_KEY = 8;
    uint8 private constant UNTRUSTED = REPORTED_STOLEN | GUARDIAN_FLAGGED | REVOKED;

    /// @dev One slot per device, written whole at claim. `batchId == 0` means no device. The
    /// firmware is kept as the first 64 bits of its hash: it is self-attested, so the tag only has
    /// to tell a manufacturer's images apart, and a full hash would cost the claim a storage slot.
    struct Device {
        uint48 batchId;
        uint32 nonce;
        uint16 keyGeneration;
        uint8 flags;
        /// @dev Ownership period: moves at every transfer, so that authority given under an earlier
        /// owner (lock managers, revocations) stays dead after a buy-back.
        uint16 ownerEpoch;
        /// @dev Tag of the current trust period: 0 from the claim, then fresh and unpredictable.
        uint32 period;
        /// @dev When the device stopped being trusted in this period (0 while it is).
        uint40 untrustedSince;
        bytes8 firmware;
    }

    /// @dev A key introduced by rotation: which device, in which key generation, with what provenance.
    struct KeyAlias {
        uint192 deviceId;
        uint16 generation;
    }

    struct Batch {
        bytes32 root;
        address manufacturer;
        uint40 committedAt;
        BatchStatus status;
        /// @dev When the batch took its current status (a recall of a quarantined batch keeps the
        /// quarantine's start: trust in its devices ended then, and a recall must not move it later).
        uint40 statusSince;
    }

    /// @notice A claim: the Merkle leaf `(deviceKey, model, firmwareHash)` of batch `batchId`, the
    /// new owner, and the deadline of the device's signature.
    struct Claim {
        address owner;
        uint48 batchId;
        bytes deviceKey;
        bytes32 model;
        bytes32 firmwareHash;
        uint256 deadline;
    }

    /// @notice A key rotation: see {rotateKey}.
    struct Rotation {
        bytes newKey;
        uint256 deadline;
        bytes newKeySignature;
        bytes oldKey;
        bytes oldKeySignature;
    }

    mapping(uint256 deviceId => Device) private _devices;
    mapping(bytes32 keyHash => KeyAlias) private _aliases;
    mapping(uint48 batchId => Batch) private _batches;
    mapping(address manufacturer => mapping(bytes8 firmware => bool)) private _revokedFirmware;
    mapping(address verifier => bool) private _keyVerifiers;
    /// @dev An ended trust period: when trust in what was signed in it ended, and by which key generation.
    struct PeriodEnd {
        uint40 endedAt;
        uint16 generation;
    }

    mapping(uint256 deviceId => mapping(uint32 period => PeriodEnd)) private _periodEnds;

    event BatchCommitted(uint48 indexed batchId, address indexed manufacturer, bytes32 root);
    event BatchStatusChanged(uint48 indexed batchId, BatchStatus status, bytes32 reason);
    event DeviceClaimed(
        uint256 indexed deviceId,
        address indexed owner,
        uint48 indexed batchId,
        bytes deviceKey,
        bytes32 model,
        bytes32 firmwareHash
    );
    event ReportedStolen(uint256 indexed deviceId, address indexed owner);
    event Released(uint256 indexed deviceId, address indexed owner);
    event GuardianFlagged(uint256 indexed deviceId, bytes32 reason);
    event GuardianCleared(uint256 indexed deviceId);
    event DeviceRevoked(uint256 indexed deviceId, address indexed by, bytes32 reason);
    /// @notice `attested`: the key's provenance reaches the manufacturer (false: installed by the owner alone).
    event KeyRotated(uint256 indexed deviceId, bytes newKey, uint16 generation, bool attested);
    /// @notice The manufacturer vouched for the device's current key (a lost key replaced by its owner).
    event KeyAttested(uint256 indexed deviceId, uint16 generation, address indexed manufacturer);
    /// @notice Trust period `period` of the device ended at `endedAt`; `next` is the new period's tag.
    event TrustPeriodEnded(uint256 indexed deviceId, uint32 period, uint40 endedAt, uint32 next);
    event FirmwareAttested(uint256 indexed deviceId, bytes32 firmwareHash);
    event FirmwareRevoked(address indexed manufacturer, bytes32 indexed firmwareHash);
    event NonceCancelled(uint256 indexed deviceId, uint32 nonce);
    event KeyVerifierSet(address indexed verifier, bool allowed);

    error DeviceRegistryEmptyRoot();
    /// @dev The root gives batch id 0 under this manufacturer (one chance in 2^48): add a salt leaf.
    error DeviceRegistryUnusableRoot(bytes32 root);
    error DeviceRegistryBatchExists(uint48 batchId);
    error DeviceRegistryUnknownBatch(uint48 batchId);
    error DeviceRegistryBatchNotActive(uint48 batchId, BatchStatus status);
    error DeviceRegistryBatchRevoked(uint48 batchId);
    error DeviceRegistryInvalidProof();
    error DeviceRegistryInvalidOwner(address owner);
    error DeviceRegistryUnsupportedKey(bytes key);
    error DeviceRegistryKeyTaken(bytes32 keyHash);
    error DeviceRegistryExpired(uint256 deadline);
    error DeviceRegistryInvalidSignature();
    error DeviceRegistryUnknownKey(bytes32 keyHash);
    error DeviceRegistryUnknownDevice(uint256 deviceId);
    error DeviceRegistryNotOwner(uint256 deviceId, address account);
    error DeviceRegistryUnauthorized(address account);
    error DeviceRegistryWrongStatus(uint256 deviceId, DeviceStatus status);
    error DeviceRegistryAlreadyReported(uint256 deviceId);
    error DeviceRegistryNotReported(uint256 deviceId);
    error DeviceRegistryNotFlagged(uint256 deviceId);
    error DeviceRegistryAlreadyFlagged(uint256 deviceId);
    error DeviceRegistryKeyAlreadyAttested(uint256 deviceId);

    /**
     * @param admin holder of `DEFAULT_ADMIN_ROLE` (manages manufacturers, the guardians' quorum
     * contract, verifiers); a TimelockController in a real deployment.
     * @param trustedForwarder OpenZeppelin `ERC2771Forwarder` through which owners may act gaslessly.
     * @param quorum M of the guardians' M-of-N quorum.
     * @param p256Verifier ERC-7913 verifier accepted for P-256 device keys (zero for none).
     * @param manufacturers initial holders of `MANUFACTURER_ROLE`.
     * @param guardians the initial guardians, each one vote in the quorum.
     * @dev Deploys the guardians' quorum contract (GuardianQuorum, administered by `admin`) and gives
     * it `GUARDIAN_ROLE`: the registry flags a device only when M guardians voted for it there.
     */
    constructor(
        address admin,
        address trustedForwarder,
        uint8 quorum,
        address p256Verifier,
        address[] memory manufacturers,
        address[] memory guardians
    ) ERC721("Custos Device", "CDEV") EIP712("Custos DeviceRegistry", "1") ERC2771Context(trustedForwarder) {
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        for (uint256 i = 0; i < manufacturers.length; ++i) _grantRole(MANUFACTURER_ROLE, manufacturers[i]);
        if (p256Verifier != address(0)) _setKeyVerifier(p256Verifier, true);
        GuardianQuorum guardianQuorum_ = new GuardianQuorum(IDeviceQuarantine(address(this)), admin, quorum, guardians);
        guardianQuorum = address(guardianQuorum_);
        _grantRole(GUARDIAN_ROLE, guardianQuorum);
    }

    // ---------------------------------------------------------------- batches (manufacturers)

    /**
     * @notice Commits a batch of provisioned devices: the root of a Merkle tree (OpenZeppelin
     * `StandardMerkleTree`, leaf encoding `(bytes deviceKey, bytes32 model, bytes32 firmwareHash)`).
     * @dev Costs the same for any batch size. The batch id is 48 bits of keccak256(manufacturer,
     * root): known before the commit, needing no counter, and the manufacturer's own, so that no other
     * account can take it, squat it or block its commit (another manufacturer committing the same root
     * gets another id, whose claims the devices would have to sign). A collision with an existing id
     * (about one chance in 2^24 by the time 2^24 batches exist) or id 0 is refused; the manufacturer
     * then adds a salt leaf to its tree.
     * @return batchId the id that claims of this batch name: {batchIdOf}(manufacturer, root).
     */
    function commitBatch(bytes32 root) external onlyRole(MANUFACTURER_ROLE) returns (uint48 batchId) {
        if (root == bytes32(0)) revert DeviceRegistryEmptyRoot();
        address manufacturer = _msgSender();
        batchId = batchIdOf(manufacturer, root);
        if (batchId == 0) revert DeviceRegistryUnusableRoot(root);
        Batch storage b = _batches[batchId];
        if (b.status != BatchStatus.None) revert DeviceRegistryBatchExists(batchId);
        (b.root, b.manufacturer, b.committedAt, b.status, b.statusSince) = (
            root,
            manufacturer,
            uint40(block.timestamp),
            BatchStatus.Active,
            uint40(block.timestamp)
        );
        emit BatchCommitted(batchId, manufacturer, root);
    }

    /**
     * @notice Quarantines every device of a batch at once, claimed or not (a compromised
     * manufacturer key, a suspect production run). Only the batch's manufacturer or the admin.
     */
    function quarantineBatch(uint48 batchId, bytes32 reason) external {
        _setBatchStatus(batchId, BatchStatus.Quarantined, reason);
    }

    /// @notice Lifts a batch quarantine. Only the batch's manufacturer or the admin.
    function releaseBatch(uint48 batchId) external {
        _setBatchStatus(batchId, BatchStatus.Active, bytes32(0));
    }

    /// @notice Recalls a whole batch: every device of it is revoked, for good. Trust in its devices
    /// ends at the recall, or at the start of the quarantine it ends ({keyTrustedUntil}).
    function revokeBatch(uint48 batchId, bytes32 reason) external {
        _setBatchStatus(batchId, BatchStatus.Revoked, reason);
    }

    /// @notice Recalls one device: it is revoked, for good. Only its batch's manufacturer or the admin.
    function recall(uint256 deviceId, bytes32 reason) external {
        Device storage device = _existing(deviceId);
        _checkBatchAuthority(device.batchId);
        _revoke(deviceId, device, reason);
    }

    /**
     * @notice The manufacturer vouches for device `deviceId`'s current key, installed by its owner
     * alone (the old key was lost): the key's provenance reaches the manufacturer again. How the
     * manufacturer convinces itself (the device in its hands, a secure element's attestation) is
     * its own procedure. Only the device's batch manufacturer or the admin.
     */
    function attestKey(uint256 deviceId) external {
        Device storage device = _existing(deviceId);
        _checkBatchAuthority(device.batchId);
        uint8 flags = device.flags;
        if (flags & OWNER_INSTALLED_KEY == 0) revert DeviceRegistryKeyAlreadyAttested(deviceId);
        device.flags = flags & ~OWNER_INSTALLED_KEY;
        emit KeyAttested(deviceId, device.keyGeneration, _msgSender());
    }

    /**
     * @notice Marks a firmware image as revoked for the caller's devices; the status view of every
     * device of the caller's batches that runs it then says so.
     */
    function revokeFirmware(bytes32 firmwareHash) external onlyRole(MANUFACTURER_ROLE) {
        address manufacturer = _msgSender();
        _revokedFirmware[manufacturer][bytes8(firmwareHash)] = true;
        emit FirmwareRevoked(manufacturer, firmwareHash);
    }

    // ---------------------------------------------------------------- claim

    /**
     * @notice Claims a provisioned device for `c.owner`: mints its token. Anyone may submit it.
     * @param c the batch leaf, the owner and the signature's deadline.
     * @param proof Merkle proof of the leaf in batch `c.batchId`.
     * @param signature the device key's signature over `DeviceClaim(owner, batch, deadline)`,
     * proof that the hardware key is present.
     * @dev A key is claimed at most once, ever: that, with the deadline, makes the claim signature
     * single-use without a nonce (a fresh key has no device record to keep one in).
     */
    function claim(
        Claim calldata c,
        bytes32[] calldata proof,
        bytes calldata signature
    ) external returns (uint256 deviceId) {
        deviceId = _checkClaim(c, proof, signature);
        _devices[deviceId] = Device({
            batchId: c.batchId,
            nonce: 0,
            keyGeneration: 0,
            flags: 0,
            ownerEpoch: 0,
            period: 0,
            untrustedSince: 0,
            firmware: bytes8(c.firmwareHash)
        });
        emit DeviceClaimed(deviceId, c.owner, c.batchId, c.deviceKey, c.model, c.firmwareHash);
        _mint(c.owner, deviceId);
    }

    // ---------------------------------------------------------------- owner actions

    /// @notice The owner reports the device stolen: it is quarantined until the owner releases it.
    function reportStolen(uint256 deviceId) external {
        (Device storage device, address owner) = _ownedLive(deviceId);
        uint8 flags = device.flags;
        if (flags & REPORTED_STOLEN != 0) revert DeviceRegistryAlreadyReported(deviceId);
        _distrust(device, flags | REPORTED_STOLEN);
        emit ReportedStolen(deviceId, owner);
    }

    /**
     * @notice The owner lifts its own theft report. A new trust period starts, with a fresh tag that
     * nobody holding the device before could have known: what the device signed in the old period
     * counts for no more than what was possible when it was reported ({keyTrustedUntil}), and every
     * signature it gave before is void (its nonce moves on).
     * @dev A guardian flag or a batch quarantine still holds the device after this; the new period
     * then starts when the last of them is lifted.
     */
    function release(uint256 deviceId) external {
        (Device storage device, address owner) = _ownedLive(deviceId);
        uint8 flags = device.flags;
        if (flags & REPORTED_STOLEN == 0) revert DeviceRegistryNotReported(deviceId);
        _restore(deviceId, device, flags & ~REPORTED_STOLEN);
        emit Released(deviceId, owner);
    }

    /// @notice The owner decommissions the device: it is revoked, for good.
    function decommission(uint256 deviceId) external {
        (Device storage device, address owner) = _ownedLive(deviceId);
        _revokeUnchecked(deviceId, device, owner, "decommissioned");
    }

    /**
     * @notice Rotates the device's key. The identity (token id) stays; the old key stops resolving
     * at once and can never be registered again, and the trust period ends: what the old key signs
     * counts for no more than what was possible at the rotation.
     * @param r the new key (never seen before by this registry), the deadline of both signatures,
     * the new key's signature over `KeyRotation(device, newKey, nonce, deadline)`, and the current
     * key with its signature over the same message when it is still available (both empty if not).
     * @dev With the current key's signature the new key keeps the old one's provenance; without it,
     * the new key is installed by the owner alone and counts as evidence only where a counterparty
     * accepted that ({keyTrust}), until the manufacturer attests it ({attestKey}).
     */
    function rotateKey(uint256 deviceId, Rotation calldata r) external {
        (Device storage device, ) = _ownedLive(deviceId);
        uint256 deadline = r.deadline;
        if (block.timestamp > deadline) revert DeviceRegistryExpired(deadline);
        bytes32 newKeyHash = _checkNewKey(r.newKey);
        (uint32 nonce, uint16 generation, uint8 flags) = (device.nonce, device.keyGeneration, device.flags);
        bytes32 digest = _hashTypedDataV4(
            keccak256(abi.encode(KEY_ROTATION_TYPEHASH, deviceId, newKeyHash, nonce, deadline))
        );
        if (!_checkRotationSignatures(deviceId, generation, digest, r)) flags |= OWNER_INSTALLED_KEY;
        // The ending period is recorded with the outgoing key's generation.
        _newPeriod(deviceId, device, flags);
        ++generation;
        (device.nonce, device.keyGeneration) = (nonce + 1, generation);
        _aliases[newKeyHash] = KeyAlias(uint192(deviceId), generation);
        emit KeyRotated(deviceId, r.newKey, generation, flags & OWNER_INSTALLED_KEY == 0);
    }

    // ---------------------------------------------------------------- guardians

    /**
     * @notice Flags a misbehaving device: it is quarantined until the guardians clear it. Only
     * `GUARDIAN_ROLE`, held by the guardians' M-of-N quorum contract (GuardianQuorum), whose vote
     * that reaches the quorum calls this.
     */
    function flag(uint256 deviceId, bytes32 reason) external onlyRole(GUARDIAN_ROLE) {
        Device storage device = _existing(deviceId);
        uint8 flags = device.flags;
        if (flags & REVOKED != 0) revert DeviceRegistryWrongStatus(deviceId, DeviceStatus.Revoked);
        if (flags & GUARDIAN_FLAGGED != 0) revert DeviceRegistryAlreadyFlagged(deviceId);
        _distrust(device, flags | GUARDIAN_FLAGGED);
        emit GuardianFlagged(deviceId, reason);
    }

    /**
     * @notice Lifts the guardians' flag. As at a release, a new trust period starts and every
     * signature the device gave before is void. Only `GUARDIAN_ROLE` (the quorum contract).
     */
    function clearFlag(uint256 deviceId) external onlyRole(GUARDIAN_ROLE) {
        Device storage device = _existing(deviceId);
        uint8 flags = device.flags;
        if (flags & REVOKED != 0) revert DeviceRegistryWrongStatus(deviceId, DeviceStatus.Revoked);
        if (flags & GUARDIAN_FLAGGED == 0) revert DeviceRegistryNotFlagged(deviceId);
        _restore(deviceId, device, flags & ~GUARDIAN_FLAGGED);
        emit GuardianCleared(deviceId);
    }

    // ---------------------------------------------------------------- device-signed messages

    /**
     * @notice Records the firmware an active device attests it runs. Relayed by anyone.
     * @param key the device's current key; `signature` is its signature over
     * `FirmwareAttestation(device, firmwareHash, nonce, deadline)`.
     */
    function attestFirmware(
        bytes calldata key,
        bytes32 firmwareHash,
        uint256 deadline,
        bytes calldata signature
    ) external {
        (uint256 deviceId, Device storage device) = _activeSigner(key);
        uint32 nonce = device.nonce;
        _checkDeviceSignature(
            key,
            keccak256(abi.encode(FIRMWARE_ATTESTATION_TYPEHASH, deviceId, firmwareHash, nonce, deadline)),
            deadline,
            signature
        );
        (device.nonce, device.firmware) = (nonce + 1, bytes8(firmwareHash));
        emit FirmwareAttested(deviceId, firmwareHash);
    }

    /**
     * @notice An active device voids its next nonce, and with it any unsent message it signed with
     * that nonce. Relayed by anyone.
     */
    function cancelNonce(bytes calldata key, uint256 deadline, bytes calldata signature) external {
        (uint256 deviceId, Device storage device) = _activeSigner(key);
        uint32 nonce = device.nonce;
        _checkDeviceSignature(
            key,
            keccak256(abi.encode(NONCE_CANCELLATION_TYPEHASH, deviceId, nonce, deadline)),
            deadline,
            signature
        );
        device.nonce = nonce + 1;
        emit NonceCancelled(deviceId, nonce);
    }

    // ---------------------------------------------------------------- admin

    /// @notice Allows or disallows an ERC-7913 verifier contract for device keys longer than 20 bytes.
    function setKeyVerifier(address verifier, bool allowed) external onlyRole(DEFAULT_ADMIN_ROLE) {
        _setKeyVerifier(verifier, allowed);
    }

    // ---------------------------------------------------------------- views

    /// @inheritdoc IDeviceRegistry
    function resolveKey(bytes calldata key) external view returns (uint256 deviceId, DeviceStatus status) {
        return _resolve(keccak256(key));
    }

    /// @inheritdoc IDeviceRegistry
    function deviceStatus(uint256 deviceId) external view returns (DeviceStatus) {
        Device storage device = _devices[deviceId];
        // Both fields read together: the optimizer loads their slot once.
        (uint48 batchId, uint8 flags) = (device.batchId, device.flags);
        return batchId == 0 ? DeviceStatus.Unknown : _status(batchId, flags);
    }

    /// @inheritdoc IDeviceRegistry
    function deviceNonce(uint256 deviceId) external view returns (uint32) {
        return _devices[deviceId].nonce;
    }

    /// @inheritdoc IDeviceRegistry
    function deviceTrust(uint256 deviceId) external view returns (DeviceTrust memory trust) {
        Device memory device = _devices[deviceId];
        if (device.batchId == 0) return trust;
        trust = DeviceTrust({
            status: _status(device.batchId, device.flags),
            keyGeneration: device.keyGeneration,
            keyAttested: device.flags & OWNER_INSTALLED_KEY == 0,
            period: device.period
        });
    }

    /// @inheritdoc IDeviceRegistry
    function keyTrustedUntil(
        bytes calldata key,
        uint32 period
    ) external view returns (uint256 deviceId, uint16 generation, uint40 until) {
        uint48 batchId;
        uint16 keyGeneration;
        uint32 current;
        uint40 untrustedSince;
        (deviceId, generation, batchId, keyGeneration, , current, untrustedSince) = _lookup(keccak256(key));
        if (deviceId == 0) return (0, 0, 0);
        // A key counts only in the periods of its own generation: nothing another key's period allowed.
        if (period == current ? generation != keyGeneration : _periodEnds[deviceId][period].generation != generation)
            return (deviceId, generation, 0);
        until = _trustedUntil(deviceId, batchId, current, untrustedSince, period);
    }

    /// @inheritdoc IDeviceRegistry
    function ownership(uint256 deviceId) external view returns (address owner, uint16 epoch) {
        return (_ownerOf(deviceId), _devices[deviceId].ownerEpoch);
    }

    /// @notice Everything about device `deviceId`, including whether it runs revoked firmware.
    function deviceInfo(uint256 deviceId) external view returns (DeviceInfo memory info) {
        Device memory device = _devices[deviceId];
        if (device.batchId == 0) return info;
        info = DeviceInfo({
            id: deviceId,
            owner: _ownerOf(deviceId),
            status: _status(device.batchId, device.flags),
            batchId: device.batchId,
            nonce: device.nonce,
            keyGeneration: device.keyGeneration,
            keyAttested: device.flags & OWNER_INSTALLED_KEY == 0,
            reportedStolen: device.flags & REPORTED_STOLEN != 0,
            guardianFlagged: device.flags & GUARDIAN_FLAGGED != 0,
            ownerEpoch: device.ownerEpoch,
            period: device.period,
            untrustedSince: device.untrustedSince,
            firmware: device.firmware,
            firmwareRevoked: _revokedFirmware[_batches[device.batchId].manufacturer][device.firmware]
        });
    }

    /// @notice A batch's root, manufacturer, commit time and status.
    function batch(uint48 batchId) external view returns (Batch memory) {
        return _batches[batchId];
    }

    /// @notice The id of `manufacturer`'s batch with Merkle root `root`: 48 bits of keccak256(manufacturer, root).
    function batchIdOf(address manufacturer, bytes32 root) public pure returns (uint48) {
        return uint48(uint256(keccak256(abi.encode(manufacturer, root))));
    }

    /// @notice Whether a key can still be registered (it was never claimed, rotated to, or away).
    function isKeyAvailable(bytes calldata key) external view returns (bool) {
        bytes32 keyHash = keccak256(key);
        return _aliases[keyHash].deviceId == 0 && _devices[_idOf(keyHash)].batchId == 0;
    }

    /// @notice Whether `verifier` is an allowed ERC-7913 verifier for device keys.
    function isKeyVerifier(address verifier) external view returns (bool) {
        return _keyVerifiers[verifier];
    }

    /// @notice The EIP-712 domain separator of this registry.
    // solhint-disable-next-line func-name-mixedcase
    function DOMAIN_SEPARATOR() external view returns (bytes32) {
        return _domainSeparatorV4();
    }

    /**
     * @notice Devices have no metadata URI (OpenZeppelin's default, with no base URI, is empty too);
     * the registry's views and events are their record. Reverts for a device that does not exist.
     * @dev Overridden so that the registry fits the code-size limit without the decimal formatting.
     */
    function tokenURI(uint256 tokenId) public view virtual override returns (string memory) {
        _requireOwned(tokenId);
        return "";
    }

    /// @inheritdoc ERC721
    function supportsInterface(bytes4 interfaceId) public view virtual override(ERC721, AccessControl) returns (bool) {
        return interfaceId == type(IDeviceRegistry).interfaceId || super.supportsInterface(interfaceId);
    }

    // ---------------------------------------------------------------- internals

    /// @dev The device id a key was first registered under: the top 192 bits of its hash.
    function _idOf(bytes32 keyHash) private pure returns (uint256) {
        return uint256(keyHash) >> 64;
    }

    /// @dev Checks a claim's batch, proof, key and signature; returns the new device's id.
    function _checkClaim(
        Claim calldata c,
        bytes32[] calldata proof,
        bytes calldata signature
    ) private view returns (uint256 deviceId) {
        if (block.timestamp > c.deadline) revert DeviceRegistryExpired(c.deadline);
        if (c.owner == address(0)) revert DeviceRegistryInvalidOwner(address(0));
        Batch storage b = _batches[c.batchId];
        BatchStatus batchStatus = b.status;
        if (batchStatus != BatchStatus.Active) revert DeviceRegistryBatchNotActive(c.batchId, batchStatus);

        bytes32 leaf = keccak256(bytes.concat(keccak256(abi.encode(c.deviceKey, c.model, c.firmwareHash))));
        if (!MerkleProof.verifyCalldata(proof, b.root, leaf)) revert DeviceRegistryInvalidProof();

        deviceId = _idOf(_checkNewKey(c.deviceKey));
        bytes32 digest = _hashTypedDataV4(keccak256(abi.encode(DEVICE_CLAIM_TYPEHASH, c.owner, c.batchId, c.deadline)));
        if (!DeviceSignature.isValidCalldata(c.deviceKey, digest, signature)) {
            revert DeviceRegistryInvalidSignature();
        }
    }

    /// @dev The device a key belongs or belonged to, the key's generation and the device's packed
    /// fields, or id 0. Most keys are the one their device's id derives from, found with one read; a
    /// key that arrived by rotation costs one more, its alias. A key cannot be both: every key hash is
    /// taken once.
    function _lookup(
        bytes32 keyHash
    )
        private
        view
        returns (
            uint256 deviceId,
            uint16 generation,
            uint48 batchId,
            uint16 keyGeneration,
            uint8 flags,
            uint32 period,
            uint40 untrustedSince
        )
    {
        deviceId = _idOf(keyHash);
        // The fields are read together, so that the optimizer loads their slot once.
        Device storage device = _devices[deviceId];
        batchId = device.batchId;
        if (batchId == 0) {
            KeyAlias storage alias_ = _aliases[keyHash];
            (deviceId, generation) = (alias_.deviceId, alias_.generation);
            if (deviceId == 0) return (0, 0, 0, 0, 0, 0, 0);
            device = _devices[deviceId];
        }
        (batchId, keyGeneration, flags, period, untrustedSince) = (
            device.batchId,
            device.keyGeneration,
            device.flags,
            device.period,
            device.untrustedSince
        );
    }

    /// @dev The device a key currently belongs to and its status, or `(0, Unknown)`.
    function _resolve(bytes32 keyHash) private view returns (uint256 deviceId, DeviceStatus status) {
        uint16 generation;
        uint48 batchId;
        uint16 keyGeneration;
        uint8 flags;
        (deviceId, generation, batchId, keyGeneration, flags, , ) = _lookup(keyHash);
        if (deviceId == 0 || keyGeneration != generation) return (0, DeviceStatus.Unknown);
        return (deviceId, _status(batchId, flags));
    }

    /// @dev Checks a rotation's signatures over `digest`; true when the current key signed it too.
    function _checkRotationSignatures(
        uint256 deviceId,
        uint16 generation,
        bytes32 digest,
        Rotation calldata r
    ) private view returns (bool withOldKey) {
        if (!DeviceSignature.isValidCalldata(r.newKey, digest, r.newKeySignature)) {
            revert DeviceRegistryInvalidSignature();
        }
        bytes calldata oldKey = r.oldKey;
        if (oldKey.length == 0) return false;
        bytes32 oldKeyHash = keccak256(oldKey);
        if (!_isCurrentKey(deviceId, generation, oldKeyHash)) revert DeviceRegistryUnknownKey(oldKeyHash);
        if (!DeviceSignature.isValidCalldata(oldKey, digest, r.oldKeySignature)) {
            revert DeviceRegistryInvalidSignature();
        }
        return true;
    }

    /// @dev Whether `keyHash` is the current key of `deviceId`, whose key generation is `generation`.
    function _isCurrentKey(uint256 deviceId, uint16 generation, bytes32 keyHash) private view returns (bool) {
        // Generation 0 is the key the id derives from, which needs no alias read.
        if (generation == 0) return _idOf(keyHash) == deviceId;
        KeyAlias memory alias_ = _aliases[keyHash];
        return alias_.deviceId == deviceId && alias_.generation == generation;
    }

    function _status(uint48 batchId, uint8 flags) private view returns (DeviceStatus) {
        BatchStatus batchStatus = _batches[batchId].status;
        if (flags & REVOKED != 0 || batchStatus == BatchStatus.Revoked) return DeviceStatus.Revoked;
        if (flags & UNTRUSTED != 0 || batchStatus == BatchStatus.Quarantined) return DeviceStatus.Quarantined;
        return DeviceStatus.Active;
    }

    /**
     * @dev Until when what the device signed in trust period `period` counts: never-ending
     * (type(uint40).max) while that period is current and the device and its batch are trusted;
     * otherwise the moment that trust ended. A batch quarantine bounds the current period only while
     * it lasts: it is about the manufacturer, not about the device leaving its owner's hands. A batch
     * recall bounds every period for good, so that owner calls on a recalled device (a rotation, a
     * release), which end periods later, cannot move their ends past the recall. A period the device
     * never had gives 0: nothing counts.
     */
    function _trustedUntil(
        uint256 deviceId,
        uint48 batchId,
        uint32 current,
        uint40 untrustedSince,
        uint32 period
    ) private view returns (uint40 until) {
        bool isCurrent = period == current;
        if (!isCurrent) until = _periodEnds[deviceId][period].endedAt;
        else until = untrustedSince == 0 ? type(uint40).max : untrustedSince;
        Batch storage b = _batches[batchId];
        (BatchStatus batchStatus, uint40 statusSince) = (b.status, b.statusSince);
        if (
            statusSince < until &&
            (batchStatus == BatchStatus.Revoked || (isCurrent && batchStatus == BatchStatus.Quarantined))
        ) until = statusSince;
    }

    /// @dev Writes `flags`, which hold the device out of trust; trust ended now unless it had already.
    function _distrust(Device storage device, uint8 flags) private {
        uint40 since = device.untrustedSince;
        (device.flags, device.untrustedSince) = (flags, since == 0 ? uint40(block.timestamp) : since);
    }

    /// @dev Writes `flags`, one hold fewer; when none is left, a new trust period starts.
    function _restore(uint256 deviceId, Device storage device, uint8 flags) private {
        if (flags & UNTRUSTED != 0) {
            device.flags = flags;
            return;
        }
        ++device.nonce;
        _newPeriod(deviceId, device, flags);
    }

    /**
     * @dev Ends the current trust period (when trust ended in it, or now) and starts the next, with
     * `flags`. Its tag comes from the previous block's hash: nobody could know it before, so nothing
     * signed in an earlier period (by a thief, or a rotated-away key) can name it. A tag is never reused.
     */
    function _newPeriod(uint256 deviceId, Device storage device, uint8 flags) private {
        (uint32 period, uint40 endedAt, uint16 generation) = (
            device.period,
            device.untrustedSince,
            device.keyGeneration
        );
        if (endedAt == 0) endedAt = uint40(block.timestamp);
        mapping(uint32 => PeriodEnd) storage ends = _periodEnds[deviceId];
        ends[period] = PeriodEnd(endedAt, generation);
        uint32 next = uint32(uint256(keccak256(abi.encode(blockhash(block.number - 1), deviceId, period))));
        while (next == period || ends[next].endedAt != 0) ++next;
        (device.flags, device.period, device.untrustedSince) = (
            flags,
            next,
            flags & UNTRUSTED == 0 ? 0 : uint40(block.timestamp)
        );
        emit TrustPeriodEnded(deviceId, period, endedAt, next);
    }

    /// @dev Checks that `key` is of a supported shape and was never registered; returns its hash.
    function _checkNewKey(bytes calldata key) private view returns (bytes32 keyHash) {
        uint256 length = key.length;
        if (length < 20 || (length > 20 && !_keyVerifiers[address(bytes20(key[:20]))])) {
            revert DeviceRegistryUnsupportedKey(key);
        }
        keyHash = keccak256(key);
        if (_aliases[keyHash].deviceId != 0 || _devices[_idOf(keyHash)].batchId != 0) {
            revert DeviceRegistryKeyTaken(keyHash);
        }
    }

    /// @dev Resolves a signing key to its active device.
    function _activeSigner(bytes calldata key) private view returns (uint256 deviceId, Device storage device) {
        bytes32 keyHash = keccak256(key);
        DeviceStatus status;
        (deviceId, status) = _resolve(keyHash);
        if (deviceId == 0) revert DeviceRegistryUnknownKey(keyHash);
        if (status != DeviceStatus.Active) revert DeviceRegistryWrongStatus(deviceId, status);
        device = _devices[deviceId];
    }

    function _checkDeviceSignature(
        bytes calldata key,
        bytes32 structHash,
        uint256 deadline,
        bytes calldata signature
    ) private view {
        if (block.timestamp > deadline) revert DeviceRegistryExpired(deadline);
        if (!DeviceSignature.isValidCalldata(key, _hashTypedDataV4(structHash), signature)) {
            revert DeviceRegistryInvalidSignature();
        }
    }

    function _existing(uint256 deviceId) private view returns (Device storage device) {
        device = _devices[deviceId];
        if (device.batchId == 0) revert DeviceRegistryUnknownDevice(deviceId);
    }

    /// @dev The device, which the caller must own, and which was not revoked on its own. A device
    /// recalled with its whole batch is not looked up here: the batch keeps it `Revoked` whatever
    /// its flags or key, so owner calls on it cannot revive it, and skipping the batch read keeps
    /// every owner action one cold storage read cheaper.
    function _ownedLive(uint256 deviceId) private view returns (Device storage device, address owner) {
        device = _devices[deviceId];
        owner = _ownerOf(deviceId);
        address caller = _msgSender();
        if (owner != caller) revert DeviceRegistryNotOwner(deviceId, caller);
        if (device.flags & REVOKED != 0) revert DeviceRegistryWrongStatus(deviceId, DeviceStatus.Revoked);
    }

    function _revoke(uint256 deviceId, Device storage device, bytes32 reason) private {
        if (device.flags & REVOKED != 0) revert DeviceRegistryWrongStatus(deviceId, DeviceStatus.Revoked);
        _revokeUnchecked(deviceId, device, _msgSender(), reason);
    }

    function _revokeUnchecked(uint256 deviceId, Device storage device, address by, bytes32 reason) private {
        _distrust(device, device.flags | REVOKED);
        emit DeviceRevoked(deviceId, by, reason);
    }

    function _setBatchStatus(uint48 batchId, BatchStatus status, bytes32 reason) private {
        Batch storage b = _checkBatchAuthority(batchId);
        BatchStatus current = b.status;
        if (current == BatchStatus.Revoked) revert DeviceRegistryBatchRevoked(batchId);
        if (current == status) revert DeviceRegistryBatchNotActive(batchId, current);
        // A recall of a quarantined batch keeps the quarantine's start (see `Batch.statusSince`).
        uint40 since =
            current == BatchStatus.Quarantined && status == BatchStatus.Revoked
                ? b.statusSince
                : uint40(block.timestamp);
        (b.status, b.statusSince) = (status, since);
        emit BatchStatusChanged(batchId, status, reason);
    }

    /// @dev The batch, which the caller must have made (and still be a manufacturer) or administer.
    function _checkBatchAuthority(uint48 batchId) private view returns (Batch storage b) {
        b = _batches[batchId];
        if (b.status == BatchStatus.None) revert DeviceRegistryUnknownBatch(batchId);
        address caller = _msgSender();
        if (!(caller == b.manufacturer && hasRole(MANUFACTURER_ROLE, caller)) && !hasRole(DEFAULT_ADMIN_ROLE, caller))
            revert DeviceRegistryUnauthorized(caller);
    }

    function _setKeyVerifier(address verifier, bool allowed) private {
        _keyVerifiers[verifier] = allowed;
        emit KeyVerifierSet(verifier, allowed);
    }

    /// @dev Only an active device changes hands: a quarantined one is frozen, a revoked one is final.
    /// Each change of hands opens an ownership period of its own ({ownership}).
    function _update(address to, uint256 tokenId, address auth) internal virtual override returns (address) {
        address from = _ownerOf(tokenId);
        if (from != address(0)) {
            Device storage device = _devices[tokenId];
            (uint48 batchId, uint8 flags, uint16 epoch) = (device.batchId, device.flags, device.ownerEpoch);
            DeviceStatus status = _status(batchId, flags);
            if (status != DeviceStatus.Active) revert DeviceRegistryWrongStatus(tokenId, status);
            unchecked {
                // Wraps after 65,536 sales; authority of an owner 65,536 sales ago is not a threat.
                device.ownerEpoch = epoch + 1;
            }
        }
        return super._update(to, tokenId, auth);
    }

    function _msgSender() internal view virtual override(Context, ERC2771Context) returns (address) {
        return ERC2771Context._msgSender();
    }

    function _msgData() internal view virtual override(Context, ERC2771Context) returns (bytes calldata) {
        return ERC2771Context._msgData();
    }

    function _contextSuffixLength() internal view virtual override(Context, ERC2771Context) returns (uint256) {
        return ERC2771Context._contextSuffixLength();
    }
}

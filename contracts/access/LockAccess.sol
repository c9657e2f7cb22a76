// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ERC2771Context} from "@openzeppelin/contracts/metatx/ERC2771Context.sol";
import {Context} from "@openzeppelin/contracts/utils/Context.sol";
import {Multicall} from "@openzeppelin/contracts/utils/Multicall.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";
import {IDeviceRegistry} from "../interfaces/IDeviceRegistry.sol";
import {DeviceSignature} from "../registry/DeviceSignature.sol";

/**
 * @title LockAccess
 * @notice The shared state of smart-lock access keys. A lock is a device of the DeviceRegistry and
 * its owner is the registry owner of that device. Keys are EIP-712 `AccessKey` certificates signed
 * off chain by the owner or a manager the owner appointed: granting costs no gas, and a lock checks
 * a certificate without the chain. On chain lives only what every lock must share: revoked keys
 * (a bitmap per lock and ownership period), the lock's key epoch (revoke every key at once),
 * managers with their expiry, and the lock's unlock log, anchored batch by batch.
 *
 * Everything an owner grants belongs to its ownership period: the registry's ownership epoch
 * ({IDeviceRegistry-ownership}), which moves at every transfer. Managers and revocations are kept
 * per ownership epoch, and the key epoch a certificate must carry ({keyEpoch}) is the ownership
 * epoch in its high 16 bits and the number of revoke-alls in that period in its low 16 bits. So a
 * sale ends every appointment and every key, and a buy-back (A to B to A) revives none of them:
 * A's old certificates carry an earlier ownership epoch, A's old managers are not managers of the
 * new period.
 *
 * The unlock log is evidence that may go against the owner, so only a lock key whose provenance
 * reaches the manufacturer may anchor it: a key the owner installed alone is refused until the
 * manufacturer re-attests it ({IDeviceRegistry-deviceTrust}).
 *
 * @dev The log is a hash chain of batch roots packed with the key epoch and the log sequence in
 * one slot, so an anchor and a revoke-all each rewrite one warm slot; each batch root is in its
 * `LogAnchored` event, and the chain head proves that no batch was dropped or altered.
 */
contract LockAccess is EIP712, ERC2771Context, Multicall {
    /// @notice EIP-712 type of an access key certificate (verified by locks, off chain).
    bytes32 public constant ACCESS_KEY_TYPEHASH = keccak256(
        "AccessKey(uint256 lock,bytes holder,address owner,address issuer,uint64 issuedAt,uint64 validFrom,"
        "uint64 validUntil,uint256 schedule,uint32 epoch,uint64 keyId)"
    );
    /// @notice EIP-712 type of a batch of a lock's unlock log, signed by the lock device.
    bytes32 public constant UNLOCK_LOG_TYPEHASH = keccak256(
        "UnlockLog(uint256 lock,uint32 seq,bytes32 root,uint32 count,uint64 fromTime,uint64 toTime,uint256 deadline)"
    );

    /// @dev One slot per lock: the key epoch, the last anchored log batch, the log's chain head.
    /// Stored, `epoch` is the key epoch as of the last revoke-all; it is current only while its high
    /// 16 bits are the lock's ownership epoch ({keyEpoch}). The {lockState} view returns it current.
    struct LockState {
        uint32 epoch;
        uint32 logSeq;
        bytes24 logHead;
    }

    /// @notice One anchored batch of a lock's unlock log.
    struct LogBatch {
        uint32 seq;
        bytes32 root;
        uint32 count;
        uint64 fromTime;
        uint64 toTime;
        uint256 deadline;
    }

    IDeviceRegistry private immutable _registry;

    mapping(uint256 lock => LockState) private _locks;
    mapping(uint256 lock => mapping(uint16 ownerEpoch => mapping(uint256 word => uint256 bits))) private _revoked;
    mapping(uint256 lock => mapping(uint16 ownerEpoch => mapping(address manager => uint64 expiry))) private _managers;

    /// @notice Key `keyId` of `lock`, issued in ownership period `ownerEpoch` (of `owner`), was revoked by `by`.
    event KeyRevoked(uint256 indexed lock, address indexed owner, uint64 indexed keyId, uint16 ownerEpoch, address by);
    /// @notice Every key of `lock` was revoked: certificates must now carry key epoch `epoch`.
    event AllKeysRevoked(uint256 indexed lock, address indexed owner, uint32 epoch);
    /// @notice `manager` may sign and revoke keys of `lock` until `expiry`, in ownership period `ownerEpoch`.
    event ManagerAppointed(
        uint256 indexed lock,
        address indexed owner,
        address indexed manager,
        uint16 ownerEpoch,
        uint64 expiry
    );
    /// @notice `manager`'s appointment for `lock` in ownership period `ownerEpoch` ended.
    event ManagerRemoved(uint256 indexed lock, address indexed owner, address indexed manager, uint16 ownerEpoch);
    event LogAnchored(
        uint256 indexed lock,
        uint32 indexed seq,
        bytes32 root,
        uint32 count,
        uint64 fromTime,
        uint64 toTime,
        bytes24 head
    );

    error LockAccessNotOwner(uint256 lock, address account);
    error LockAccessNotOwnerOrManager(uint256 lock, address account);
    error LockAccessAlreadyRevoked(uint256 lock, uint64 keyId);
    error LockAccessInvalidExpiry(uint64 expiry);
    error LockAccessUnknownLock(bytes32 keyHash);
    error LockAccessLockNotActive(uint256 lock, IDeviceRegistry.DeviceStatus status);
    error LockAccessWrongSequence(uint32 expected, uint32 seq);
    error LockAccessExpired(uint256 deadline);
    error LockAccessInvalidSignature();
    /// @dev The lock's current key (generation `keyGeneration`) was installed by its owner alone:
    /// its log counts only once the manufacturer re-attests the key (`DeviceRegistry.attestKey`).
    error LockAccessKeyNotAttested(uint256 lock, uint16 keyGeneration);
    /// @dev 65,535 revoke-alls in one ownership period: transferring the lock (even to oneself)
    /// opens a new period, which revokes every key.
    error LockAccessEpochExhausted(uint256 lock);

    /**
     * @param registry_ the DeviceRegistry (an ERC-721 whose tokens are the devices).
     * @param trustedForwarder OpenZeppelin `ERC2771Forwarder` through which owners may act gaslessly.
     */
    constructor(
        IDeviceRegistry registry_,
        address trustedForwarder
    ) EIP712("Custos LockAccess", "1") ERC2771Context(trustedForwarder) {
        _registry = registry_;
    }

    // ---------------------------------------------------------------- owners and managers

    /**
     * @notice Revokes one key of `lock` issued in its current ownership period. The owner or one of
     * its managers (while appointed in this period) may revoke.
     */
    function revokeKey(uint256 lock, uint64 keyId) external {
        (address owner, uint16 ownerEpoch) = _registry.ownership(lock);
        address caller = _msgSender();
        if (caller != owner && _managers[lock][ownerEpoch][caller] < block.timestamp) {
            revert LockAccessNotOwnerOrManager(lock, caller);
        }
        mapping(uint256 => uint256) storage words = _revoked[lock][ownerEpoch];
        uint256 bit = 1 << (keyId & 0xff);
        uint256 bits = words[keyId >> 8];
        if (bits & bit != 0) revert LockAccessAlreadyRevoked(lock, keyId);
        words[keyId >> 8] = bits | bit;
        emit KeyRevoked(lock, owner, keyId, ownerEpoch, caller);
    }

    /**
     * @notice Revokes every key of `lock` at once: the key epoch moves on and certificates of older
     * epochs stop working. Owner only.
     */
    function revokeAll(uint256 lock) external {
        (address owner, uint16 ownerEpoch) = _onlyOwner(lock);
        LockState storage state = _locks[lock];
        uint32 epoch = _keyEpoch(state.epoch, ownerEpoch);
        // The low 16 bits count this period's revoke-alls; a carry would reach the next period's epochs.
        if (uint16(epoch) == type(uint16).max) revert LockAccessEpochExhausted(lock);
        unchecked {
            ++epoch;
        }
        state.epoch = epoch;
        emit AllKeysRevoked(lock, owner, epoch);
    }

    /**
     * @notice Appoints `manager` to sign and revoke keys of `lock` until `expiry`, in the current
     * ownership period (a sale ends every appointment, a buy-back revives none). Appointing again
     * changes the expiry. Owner only.
     */
    function appointManager(uint256 lock, address manager, uint64 expiry) external {
        (address owner, uint16 ownerEpoch) = _onlyOwner(lock);
        if (expiry <= block.timestamp) revert LockAccessInvalidExpiry(expiry);
        _managers[lock][ownerEpoch][manager] = expiry;
        emit ManagerAppointed(lock, owner, manager, ownerEpoch, expiry);
    }

    /// @notice Ends `manager`'s appointment for `lock` at once. Owner only.
    function removeManager(uint256 lock, address manager) external {
        (address owner, uint16 ownerEpoch) = _onlyOwner(lock);
        delete _managers[lock][ownerEpoch][manager];
        emit ManagerRemoved(lock, owner, manager, ownerEpoch);
    }

    // ---------------------------------------------------------------- the lock device

    /**
     * @notice Anchors the next batch of the lock's unlock log: the Merkle root of its signed
     * open/deny records. Signed by the lock device (an active device of the registry) with a key
     * whose provenance reaches its manufacturer: a key its owner installed alone could sign any log
     * the owner likes, so it is refused until the manufacturer re-attests it. Relayed by anyone.
     * @param lockKey the lock device's current key.
     * @param batch sequence number (the last one + 1), root, record count and time span.
     * @param signature the lock key's signature over `UnlockLog(lock, seq, root, count, fromTime, toTime, deadline)`.
     */
    function anchorLog(bytes calldata lockKey, LogBatch calldata batch, bytes calldata signature) external {
        (uint256 lock, IDeviceRegistry.DeviceStatus status) = _registry.resolveKey(lockKey);
        if (lock == 0) revert LockAccessUnknownLock(keccak256(lockKey));
        if (status != IDeviceRegistry.DeviceStatus.Active) revert LockAccessLockNotActive(lock, status);
        // `lockKey` resolved, so it is the current key: the trust record's provenance is its own.
        IDeviceRegistry.DeviceTrust memory trust = _registry.deviceTrust(lock);
        if (!trust.keyAttested) revert LockAccessKeyNotAttested(lock, trust.keyGeneration);
        if (block.timestamp > batch.deadline) revert LockAccessExpired(batch.deadline);
        LockState storage state = _locks[lock];
        (uint32 seq, bytes24 head) = (state.logSeq, state.logHead);
        if (batch.seq != seq + 1) revert LockAccessWrongSequence(seq + 1, batch.seq);
        // The batch's static fields encode in place, in the order of the EIP-712 type.
        bytes32 digest = _hashTypedDataV4(keccak256(abi.encode(UNLOCK_LOG_TYPEHASH, lock, batch)));
        if (!DeviceSignature.isValidCalldata(lockKey, digest, signature)) revert LockAccessInvalidSignature();
        head = bytes24(keccak256(abi.encode(head, batch.seq, batch.root, batch.count, batch.fromTime, batch.toTime)));
        (state.logSeq, state.logHead) = (batch.seq, head);
        emit LogAnchored(lock, batch.seq, batch.root, batch.count, batch.fromTime, batch.toTime, head);
    }

    // ---------------------------------------------------------------- views

    /// @notice The device registry whose devices are the locks.
    function registry() external view returns (IDeviceRegistry) {
        return _registry;
    }

    /// @notice Whether key `keyId` of `lock`, issued in ownership period `ownerEpoch`, was revoked.
    function isRevoked(uint256 lock, uint16 ownerEpoch, uint64 keyId) external view returns (bool) {
        return _revoked[lock][ownerEpoch][keyId >> 8] & (1 << (keyId & 0xff)) != 0;
    }

    /// @notice 256 revocation bits of `lock` in ownership period `ownerEpoch`: keys `word * 256` to `word * 256 + 255`.
    function revokedWord(uint256 lock, uint16 ownerEpoch, uint256 word) external view returns (uint256) {
        return _revoked[lock][ownerEpoch][word];
    }

    /// @notice When `manager`'s appointment for `lock` in ownership period `ownerEpoch` ends (0: not appointed).
    function managerExpiry(uint256 lock, uint16 ownerEpoch, address manager) external view returns (uint64) {
        return _managers[lock][ownerEpoch][manager];
    }

    /**
     * @notice The key epoch every certificate of `lock` must carry now: the registry's ownership
     * epoch in the high 16 bits, the number of revoke-alls in this ownership period in the low 16.
     */
    function keyEpoch(uint256 lock) external view returns (uint32) {
        (, uint16 ownerEpoch) = _registry.ownership(lock);
        return _keyEpoch(_locks[lock].epoch, ownerEpoch);
    }

    /// @notice The lock's current key epoch ({keyEpoch}), last anchored log batch and log chain head.
    function lockState(uint256 lock) external view returns (LockState memory state) {
        state = _locks[lock];
        (, uint16 ownerEpoch) = _registry.ownership(lock);
        state.epoch = _keyEpoch(state.epoch, ownerEpoch);
    }

    /// @notice The log chain head after a batch: what `anchorLog` stores, for checking a history off chain.
    function nextLogHead(bytes24 head, LogBatch calldata batch) external pure returns (bytes24) {
        return bytes24(keccak256(abi.encode(head, batch.seq, batch.root, batch.count, batch.fromTime, batch.toTime)));
    }

    /// @notice Whether `leaf` is in the log batch with Merkle root `root` (OpenZeppelin sorted-pair proof).
    function verifyLogRecord(bytes32 root, bytes32 leaf, bytes32[] calldata proof) external pure returns (bool) {
        return MerkleProof.verifyCalldata(proof, root, leaf);
    }

    /// @notice The EIP-712 domain separator of this contract.
    // solhint-disable-next-line func-name-mixedcase
    function DOMAIN_SEPARATOR() external view returns (bytes32) {
        return _domainSeparatorV4();
    }

    // ---------------------------------------------------------------- internals

    /// @dev The owner and ownership epoch of `lock`, which the caller must own.
    function _onlyOwner(uint256 lock) private view returns (address owner, uint16 ownerEpoch) {
        (owner, ownerEpoch) = _registry.ownership(lock);
        address caller = _msgSender();
        if (caller != owner) revert LockAccessNotOwner(lock, caller);
    }

    /// @dev The current key epoch from the stored one: a revoke-all of an earlier ownership period
    /// counts for nothing, the new period starts at `ownerEpoch << 16`.
    function _keyEpoch(uint32 stored, uint16 ownerEpoch) private pure returns (uint32) {
        return uint16(stored >> 16) == ownerEpoch ? stored : uint32(ownerEpoch) << 16;
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

// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IERC721} from "@openzeppelin/contracts/token/ERC721/IERC721.sol";
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
 * (a bitmap per lock and owner), the lock's key epoch (revoke every key at once), managers with
 * their expiry, and the lock's unlock log, anchored batch by batch.
 *
 * @dev A certificate names the owner it was issued under, so every key of a previous owner (and
 * of their managers) stops working when the lock changes hands. The log is a hash chain of batch
 * roots packed with the epoch and the log sequence in one slot, so an anchor and a revoke-all each
 * rewrite one warm slot; each batch root is in its `LogAnchored` event, and the chain head proves
 * that no batch was dropped or altered.
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
    mapping(uint256 lock => mapping(address owner => mapping(uint256 word => uint256 bits))) private _revoked;
    mapping(uint256 lock => mapping(address owner => mapping(address manager => uint64 expiry))) private _managers;

    event KeyRevoked(uint256 indexed lock, address indexed owner, uint64 indexed keyId, address by);
    event AllKeysRevoked(uint256 indexed lock, address indexed owner, uint32 epoch);
    event ManagerAppointed(uint256 indexed lock, address indexed owner, address indexed manager, uint64 expiry);
    event ManagerRemoved(uint256 indexed lock, address indexed owner, address indexed manager);
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
     * @notice Revokes one key of `lock` issued under its current owner. The owner or one of its
     * managers (while appointed) may revoke.
     */
    function revokeKey(uint256 lock, uint64 keyId) external {
        address owner = _ownerOf(lock);
        address caller = _msgSender();
        if (caller != owner && _managers[lock][owner][caller] < block.timestamp) {
            revert LockAccessNotOwnerOrManager(lock, caller);
        }
        mapping(uint256 => uint256) storage words = _revoked[lock][owner];
        uint256 bit = 1 << (keyId & 0xff);
        uint256 bits = words[keyId >> 8];
        if (bits & bit != 0) revert LockAccessAlreadyRevoked(lock, keyId);
        words[keyId >> 8] = bits | bit;
        emit KeyRevoked(lock, owner, keyId, caller);
    }

    /// @notice Revokes every key of `lock` at once: certificates of older epochs stop working. Owner only.
    function revokeAll(uint256 lock) external {
        address owner = _onlyOwner(lock);
        LockState storage state = _locks[lock];
        uint32 epoch = state.epoch + 1;
        state.epoch = epoch;
        emit AllKeysRevoked(lock, owner, epoch);
    }

    /**
     * @notice Appoints `manager` to sign and revoke keys of `lock` until `expiry`, under the current
     * owner (a sale ends every appointment). Appointing again changes the expiry. Owner only.
     */
    function appointManager(uint256 lock, address manager, uint64 expiry) external {
        address owner = _onlyOwner(lock);
        if (expiry <= block.timestamp) revert LockAccessInvalidExpiry(expiry);
        _managers[lock][owner][manager] = expiry;
        emit ManagerAppointed(lock, owner, manager, expiry);
    }

    /// @notice Ends `manager`'s appointment at once. Owner only.
    function removeManager(uint256 lock, address manager) external {
        address owner = _onlyOwner(lock);
        delete _managers[lock][owner][manager];
        emit ManagerRemoved(lock, owner, manager);
    }

    // ---------------------------------------------------------------- the lock device

    /**
     * @notice Anchors the next batch of the lock's unlock log: the Merkle root of its signed
     * open/deny records. Signed by the lock device (an active device of the registry); relayed by anyone.
     * @param lockKey the lock device's current key.
     * @param batch sequence number (the last one + 1), root, record count and time span.
     * @param signature the lock key's signature over `UnlockLog(lock, seq, root, count, fromTime, toTime, deadline)`.
     */
    function anchorLog(bytes calldata lockKey, LogBatch calldata batch, bytes calldata signature) external {
        (uint256 lock, IDeviceRegistry.DeviceStatus status) = _registry.resolveKey(lockKey);
        if (lock == 0) revert LockAccessUnknownLock(keccak256(lockKey));
        if (status != IDeviceRegistry.DeviceStatus.Active) revert LockAccessLockNotActive(lock, status);
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

    /// @notice Whether key `keyId` of `lock`, issued under `owner`, was revoked.
    function isRevoked(uint256 lock, address owner, uint64 keyId) external view returns (bool) {
        return _revoked[lock][owner][keyId >> 8] & (1 << (keyId & 0xff)) != 0;
    }

    /// @notice 256 revocation bits of `lock` under `owner`: keys `word * 256` to `word * 256 + 255`.
    function revokedWord(uint256 lock, address owner, uint256 word) external view returns (uint256) {
        return _revoked[lock][owner][word];
    }

    /// @notice When `manager`'s appointment for `lock` under `owner` ends (0: not appointed).
    function managerExpiry(uint256 lock, address owner, address manager) external view returns (uint64) {
        return _managers[lock][owner][manager];
    }

    /// @notice The lock's key epoch, last anchored log batch and log chain head.
    function lockState(uint256 lock) external view returns (LockState memory) {
        return _locks[lock];
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

    function _ownerOf(uint256 lock) private view returns (address) {
        return IERC721(address(_registry)).ownerOf(lock);
    }

    function _onlyOwner(uint256 lock) private view returns (address owner) {
        owner = _ownerOf(lock);
        address caller = _msgSender();
        if (caller != owner) revert LockAccessNotOwner(lock, caller);
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

// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {CustosTest} from "../lib/CustosTest.sol";
import {Merkle} from "../lib/Merkle.sol";
import {DeviceRegistry} from "../../../contracts/registry/DeviceRegistry.sol";
import {LockAccess} from "../../../contracts/access/LockAccess.sol";
import {ERC7913P256SHA256Verifier} from "../../../contracts/crypto/ERC7913P256SHA256Verifier.sol";

/**
 * @title LockAccessFuzz
 * @notice Properties of LockAccess's packed state and checks for every input: the key epoch (the
 * ownership epoch over the revoke-all count in 32 bits), the revocation bitmap over uint64 key ids,
 * the unlock log's 24-byte hash chain, its signatures (secp256k1 and P-256) and record proofs.
 */
contract LockAccessFuzz is CustosTest {
    address internal constant OWNER = address(0xC1);
    address internal constant BUYER = address(0xC2);

    DeviceRegistry internal registry;
    LockAccess internal access;
    ERC7913P256SHA256Verifier internal verifier;
    DeviceKey[] internal lockKeys;
    uint256[] internal locks;

    function setUp() public {
        vm.warp(T0);
        (registry, verifier) = deployRegistry(threeGuardians());
        access = new LockAccess(registry, FORWARDER);
        DeviceKey[] memory k = new DeviceKey[](2);
        k[0] = newKey(0x10c0, false, address(verifier));
        k[1] = newKey(0x10c1, true, address(verifier));
        (, uint256[] memory ids) = provision(registry, k, OWNER);
        for (uint256 i = 0; i < 2; ++i) {
            lockKeys.push(k[i]);
            locks.push(ids[i]);
        }
    }

    function _sell(address from, address to) internal {
        vm.prank(from);
        registry.transferFrom(from, to, locks[0]);
    }

    function _revokeAll(address owner, uint256 times) internal {
        for (uint256 i = 0; i < times; ++i) {
            vm.prank(owner);
            access.revokeAll(locks[0]);
        }
    }

    /**
     * @notice The key epoch is (ownership epoch << 16) | revoke-alls in that period, for any history of
     * revoke-alls and sales: a sale starts the count again at 0, and a buy-back does not bring back
     * the old period's count (its keys stay dead).
     */
    function testFuzz_keyEpochPacksOwnershipAndRevokeAlls(uint8 before, uint8 after_, bool buyBack) public {
        _revokeAll(OWNER, bound(before, 0, 20));
        uint32 first = access.keyEpoch(locks[0]);
        vm.assertEq(first, bound(before, 0, 20), "period 0: the count of revoke-alls");
        _sell(OWNER, BUYER);
        vm.assertEq(access.keyEpoch(locks[0]), uint32(1) << 16, "a sale: next ownership epoch, count 0");
        address owner = BUYER;
        if (buyBack) {
            _sell(BUYER, OWNER);
            owner = OWNER;
        }
        uint16 epoch = buyBack ? 2 : 1;
        uint256 n = bound(after_, 0, 20);
        _revokeAll(owner, n);
        uint32 now_ = access.keyEpoch(locks[0]);
        vm.assertEq(now_, (uint32(epoch) << 16) | uint32(n), "ownership epoch << 16 | revoke-alls");
        vm.assertNotEq(now_, first, "an earlier period's key epoch never comes back");
        vm.assertEq(access.lockState(locks[0]).epoch, now_, "lockState agrees");
    }

    /// @notice Revoking key id `keyId` sets exactly its bit (word keyId >> 8, bit keyId & 0xff) in the
    /// current period, for any uint64 id; another id is untouched; a second revocation is refused.
    function testFuzz_revocationBitmap(uint64 keyId, uint64 other) public {
        vm.prank(OWNER);
        access.revokeKey(locks[0], keyId);
        vm.assertTrue(access.isRevoked(locks[0], 0, keyId), "revoked");
        vm.assertEq(access.revokedWord(locks[0], 0, keyId >> 8), uint256(1) << (keyId & 0xff), "exactly its bit");
        vm.assertEq(access.isRevoked(locks[0], 0, other), other == keyId, "another id is untouched");
        vm.assertFalse(access.isRevoked(locks[0], 1, keyId), "another ownership period is untouched");
        vm.prank(OWNER);
        vm.expectRevert(abi.encodeWithSelector(LockAccess.LockAccessAlreadyRevoked.selector, locks[0], keyId));
        access.revokeKey(locks[0], keyId);
    }

    /// @notice A manager appointed until `expiry` may revoke exactly while `expiry` has not passed, and
    /// never after the lock changed hands (even when it came back).
    function testFuzz_managerAuthorityEndsAndNeverRevives(uint32 expiresIn, uint32 at, uint64 keyId, bool sold) public {
        address manager = address(0xD1);
        vm.assume(expiresIn > 0);
        vm.prank(OWNER);
        access.appointManager(locks[0], manager, uint64(block.timestamp + expiresIn));
        uint256 deadline = block.timestamp + expiresIn;
        if (sold) {
            _sell(OWNER, BUYER);
            _sell(BUYER, OWNER);
        }
        vm.warp(block.timestamp + at);
        bool allowed = !sold && block.timestamp <= deadline;
        vm.prank(manager);
        if (!allowed)
            vm.expectRevert(abi.encodeWithSelector(LockAccess.LockAccessNotOwnerOrManager.selector, locks[0], manager));
        access.revokeKey(locks[0], keyId);
    }

    /**
     * @notice The unlock log: a batch signed by the lock's key (either kind) over exactly its fields is
     * anchored at the next seq, and the head is the 24-byte hash chain `nextLogHead` computes; any
     * field signed differently, another seq, the other lock's key, or an expired deadline is refused.
     */
    function testFuzz_unlockLogChain(bool p256, bytes32 root, uint32 count, uint256 how, uint8 batches) public {
        uint256 l = p256 ? 1 : 0;
        bytes24 head;
        batches = uint8(bound(batches, 1, 4));
        for (uint32 seq = 1; seq <= batches; ++seq) {
            LockAccess.LogBatch memory b = LockAccess.LogBatch(
                seq,
                keccak256(abi.encode(root, seq)),
                count,
                uint64(block.timestamp - 60),
                uint64(block.timestamp),
                block.timestamp + HOUR
            );
            bytes memory sig = signDigest(lockKeys[l], _logDigest(locks[l], b));
            access.anchorLog(lockKeys[l].signer, b, sig);
            head = access.nextLogHead(head, b);
            vm.assertEq(bytes32(access.lockState(locks[l]).logHead), bytes32(head), "head: the hash chain of batches");
        }
        LockAccess.LogBatch memory next = LockAccess.LogBatch(batches + 1, root, count, 1, 2, block.timestamp + HOUR);
        bytes memory good = signDigest(lockKeys[l], _logDigest(locks[l], next));
        how = how % 4;
        if (how == 0) {
            next.root = keccak256(abi.encode(root));
            vm.expectRevert(LockAccess.LockAccessInvalidSignature.selector);
            access.anchorLog(lockKeys[l].signer, next, good);
        } else if (how == 1) {
            next.seq = batches + 2;
            vm.expectRevert(
                abi.encodeWithSelector(LockAccess.LockAccessWrongSequence.selector, batches + 1, batches + 2)
            );
            access.anchorLog(lockKeys[l].signer, next, good);
        } else if (how == 2) {
            bytes memory other = signDigest(lockKeys[1 - l], _logDigest(locks[l], next));
            vm.expectRevert(LockAccess.LockAccessInvalidSignature.selector);
            access.anchorLog(lockKeys[l].signer, next, other);
        } else {
            vm.warp(next.deadline + 1);
            vm.expectRevert(abi.encodeWithSelector(LockAccess.LockAccessExpired.selector, next.deadline));
            access.anchorLog(lockKeys[l].signer, next, good);
        }
        vm.assertEq(access.lockState(locks[l]).logSeq, batches, "nothing more anchored");
    }

    /// @notice Any record of any log batch of 1–32 records is proven against its root; a record that
    /// is not in it is not.
    function testFuzz_logRecordProofs(uint256 n, uint256 index, bytes32 salt) public view {
        n = bound(n, 1, 32);
        index = bound(index, 0, n - 1);
        bytes32[] memory leaves = new bytes32[](n);
        for (uint256 i = 0; i < n; ++i) leaves[i] = keccak256(abi.encode(salt, i));
        bytes32 root = Merkle.root(leaves);
        bytes32[] memory proof = Merkle.proof(leaves, index);
        vm.assertTrue(access.verifyLogRecord(root, leaves[index], proof), "a record of the batch");
        vm.assertFalse(
            access.verifyLogRecord(root, keccak256(abi.encode(salt, n)), proof),
            "a record not in the batch"
        );
    }

    function _logDigest(uint256 lockId, LockAccess.LogBatch memory b) internal view returns (bytes32) {
        return typedDigest(access.DOMAIN_SEPARATOR(), keccak256(abi.encode(access.UNLOCK_LOG_TYPEHASH(), lockId, b)));
    }
}

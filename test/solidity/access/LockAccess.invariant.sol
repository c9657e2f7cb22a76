// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {HandlerBase} from "../lib/HandlerBase.sol";
import {CustosTest} from "../lib/CustosTest.sol";
import {DeviceRegistry} from "../../../contracts/registry/DeviceRegistry.sol";
import {IDeviceRegistry} from "../../../contracts/interfaces/IDeviceRegistry.sol";
import {LockAccess} from "../../../contracts/access/LockAccess.sol";
import {ERC7913P256SHA256Verifier} from "../../../contracts/crypto/ERC7913P256SHA256Verifier.sol";

/**
 * @title LockHandler
 * @notice Bounded actions on LockAccess and its locks: access keys issued (off chain, as the ghost
 * records them) by owners and managers, single revocations and revoke-alls by owners, managers,
 * managers of an earlier ownership period and strangers, appointments and removals, sales of locks
 * among three owners (buy-backs included), unlock-log anchors by the lock (in and out of sequence,
 * expired, by a rotated-away or owner-installed key, while quarantined), and the lock owners' own
 * moves (theft reports, releases, rotations with and without the old key, re-attestation).
 */
contract LockHandler is HandlerBase {
    uint256 internal constant LOCKS = 2;
    uint256 internal constant MAX_KEYS = 24;
    address internal constant STRANGER = address(0xE1);

    DeviceRegistry public immutable registry;
    LockAccess public immutable access;
    address public immutable verifier;

    struct Lock {
        uint256 id;
        DeviceKey[] keys;
        address owner;
        uint16 ownerEpoch;
        bool stolen;
        bool ownerInstalled;
        uint32 logSeq;
        bytes24 logHead;
    }

    /// @notice An access key certificate (off chain) as issued, and whether the model holds it dead for good.
    struct Cert {
        uint256 lock;
        address owner;
        address issuer;
        uint32 epoch;
        uint64 keyId;
        uint64 validFrom;
        uint64 validUntil;
        bool dead;
    }

    Lock[LOCKS] internal _locks;
    Cert[] internal _certs;
    /// @dev The model of LockAccess: revoke-alls per (lock, ownership epoch), revoked key ids, managers.
    mapping(uint256 lock => mapping(uint16 ownerEpoch => uint16)) internal _revokeAlls;
    mapping(uint256 lock => mapping(uint16 ownerEpoch => mapping(uint64 keyId => bool))) internal _revoked;
    mapping(uint256 lock => mapping(uint16 ownerEpoch => mapping(address manager => uint64))) internal _managers;
    /// @dev Every (lock, epoch, manager) ever appointed, to check stale appointments.
    address[3] public managers = [address(0xD1), address(0xD2), address(0xD3)];

    constructor(DeviceRegistry registry_, LockAccess access_, address verifier_) {
        (registry, access, verifier) = (registry_, access_, verifier_);
        DeviceKey[] memory keys = new DeviceKey[](LOCKS);
        keys[0] = newKey(uint256(keccak256("lock 0")), false, verifier_);
        keys[1] = newKey(uint256(keccak256("lock 1")), true, verifier_);
        (, uint256[] memory ids) = provision(registry_, keys, address(0xC1));
        for (uint256 i = 0; i < LOCKS; ++i) {
            Lock storage l = _locks[i];
            (l.id, l.owner) = (ids[i], address(0xC1));
            l.keys.push(keys[i]);
        }
    }

    // ================================================================ keys, revocations, managers

    /// @notice The owner or an appointed manager issues an access key (off chain: the ghost records it).
    function issue(uint256 lockSeed, uint256 issuerSeed, uint256 keyIdSeed, uint256 windowSeed) external {
        uint256 li = lockSeed % LOCKS;
        Lock storage l = _locks[li];
        address issuer = issuerSeed % 3 == 0 ? managers[(issuerSeed >> 2) % 3] : l.owner;
        uint64 from = uint64(block.timestamp - (windowSeed % 2) * 60);
        // Once the model holds MAX_KEYS certificates, a new one replaces one of them.
        if (_certs.length >= MAX_KEYS) _certs[keyIdSeed % MAX_KEYS] = _certs[_certs.length - 1];
        if (_certs.length >= MAX_KEYS) _certs.pop();
        _certs.push(
            Cert(
                li,
                l.owner,
                issuer,
                _keyEpoch(li),
                uint64(keyIdSeed % 600),
                from,
                from + uint64(bound(windowSeed >> 8, 1 hours, 20 days)),
                false
            )
        );
        _did("issue");
    }

    /// @notice The owner, a manager (current or of an earlier ownership period) or a stranger revokes one key.
    function revokeKey(uint256 certSeed, uint256 callerSeed) external {
        if (_certs.length == 0) return;
        Cert storage c = _certs[certSeed % _certs.length];
        Lock storage l = _locks[c.lock];
        address caller = _caller(l, callerSeed);
        bool authority = caller == l.owner || _managers[c.lock][l.ownerEpoch][caller] >= block.timestamp;
        bool expected = authority && !_revoked[c.lock][l.ownerEpoch][c.keyId];
        vm.prank(caller);
        bool ok;
        try access.revokeKey(l.id, c.keyId) {
            ok = true;
        } catch {}
        _expect(authority ? 6 : 10, expected, ok, "revokeKey");
        if (!ok) return;
        _revoked[c.lock][l.ownerEpoch][c.keyId] = true;
        for (uint256 i = 0; i < _certs.length; ++i) {
            Cert storage d = _certs[i];
            if (d.lock == c.lock && d.keyId == c.keyId && d.epoch >> 16 == l.ownerEpoch) d.dead = true;
        }
    }

    /// @notice The owner (or someone else) revokes every key of a lock: its key epoch moves on.
    function revokeAll(uint256 lockSeed, uint256 callerSeed) external {
        uint256 li = lockSeed % LOCKS;
        Lock storage l = _locks[li];
        address caller = _caller(l, callerSeed);
        vm.prank(caller);
        bool ok;
        try access.revokeAll(l.id) {
            ok = true;
        } catch {}
        _expect(caller == l.owner ? 6 : 10, caller == l.owner, ok, "revokeAll");
        if (!ok) return;
        ++_revokeAlls[li][l.ownerEpoch];
        for (uint256 i = 0; i < _certs.length; ++i) if (_certs[i].lock == li) _certs[i].dead = true;
    }

    /// @notice The owner (or someone else) appoints a manager until some time, or removes one.
    function manage(uint256 lockSeed, uint256 managerSeed, uint256 expirySeed, uint256 callerSeed) external {
        uint256 li = lockSeed % LOCKS;
        Lock storage l = _locks[li];
        address manager = managers[managerSeed % 3];
        address caller = _caller(l, callerSeed);
        bool remove = expirySeed % 4 == 0;
        uint64 expiry = uint64(block.timestamp + bound(expirySeed >> 2, 0, 5 days));
        vm.prank(caller);
        bool ok;
        if (remove) {
            try access.removeManager(l.id, manager) {
                ok = true;
            } catch {}
        } else {
            try access.appointManager(l.id, manager, expiry) {
                ok = true;
            } catch {}
        }
        bool expected = caller == l.owner && (remove || expiry > block.timestamp);
        _expect(caller == l.owner ? 6 : 10, expected, ok, remove ? "removeManager" : "appointManager");
        if (ok) _managers[li][l.ownerEpoch][manager] = remove ? 0 : expiry;
    }

    /// @notice The owner sells a lock to one of the owners (itself and buy-backs included): every key
    /// and appointment of the old ownership period dies.
    function sell(uint256 lockSeed, uint256 toSeed) external {
        uint256 li = lockSeed % LOCKS;
        Lock storage l = _locks[li];
        address to = address(uint160(0xC1 + (toSeed % 3)));
        vm.prank(l.owner);
        bool ok;
        try registry.transferFrom(l.owner, to, l.id) {
            ok = true;
        } catch {}
        _expect(1, !l.stolen, ok, "sell");
        if (!ok) return;
        (l.owner, l.ownerEpoch) = (to, l.ownerEpoch + 1);
        for (uint256 i = 0; i < _certs.length; ++i) if (_certs[i].lock == li) _certs[i].dead = true;
    }

    // ================================================================ the lock device and its owner

    /**
     * @notice The lock anchors its next unlock-log batch, relayed by anyone: in sequence (mostly),
     * out of sequence, expired, or signed by a rotated-away key.
     */
    function anchorLog(uint256 lockSeed, uint256 variant, bytes32 root) external {
        uint256 li = lockSeed % LOCKS;
        Lock storage l = _locks[li];
        uint256 v = variant % 10;
        uint256 ki = v == 9 && l.keys.length > 1 ? l.keys.length - 2 : l.keys.length - 1;
        LockAccess.LogBatch memory b = LockAccess.LogBatch(
            v == 7 ? l.logSeq + 2 : l.logSeq + 1,
            root,
            uint32(variant >> 8) % 50,
            uint64(block.timestamp - 1 hours),
            uint64(block.timestamp),
            v == 8 ? block.timestamp - 1 : block.timestamp + HOUR
        );
        bytes memory sig = signDigest(l.keys[ki], _logDigest(l.id, b));
        bool ok;
        try access.anchorLog(l.keys[ki].signer, b, sig) {
            ok = true;
        } catch {}
        bool currentKey = ki == l.keys.length - 1;
        // Variants 7–8 are wrong (seq, deadline); 9 is a rotated-away key when there is one.
        bool expected = (v < 7 || v == 9) && currentKey && !l.stolen && !l.ownerInstalled;
        _expect(!currentKey ? 10 : (l.stolen ? 1 : (l.ownerInstalled ? 8 : 2)), expected, ok, "anchorLog");
        if (!ok) return;
        l.logHead = bytes24(keccak256(abi.encode(l.logHead, b.seq, b.root, b.count, b.fromTime, b.toTime)));
        l.logSeq = b.seq;
    }

    /// @notice A lock's owner reports it stolen, releases it, rotates its key (with or without the old
    /// key), or the manufacturer re-attests its key.
    function lockOwner(uint256 lockSeed, uint256 action) external {
        uint256 li = lockSeed % LOCKS;
        Lock storage l = _locks[li];
        uint256 a = action % 8;
        if (a < 2) {
            vm.prank(l.owner);
            try registry.reportStolen(l.id) {
                l.stolen = true;
            } catch {}
        } else if (a < 5) {
            vm.prank(l.owner);
            try registry.release(l.id) {
                l.stolen = false;
            } catch {}
        } else if (a < 7) {
            if (l.keys.length >= 4) return;
            DeviceKey memory next = newKey(
                uint256(keccak256(abi.encode("lock rotation", li, l.keys.length))),
                a == 6,
                verifier
            );
            bool withOld = (action >> 8) % 3 != 0;
            DeviceRegistry.Rotation memory r = rotationOf(registry, l.id, next, l.keys[l.keys.length - 1], withOld);
            vm.prank(l.owner);
            try registry.rotateKey(l.id, r) {
                if (!withOld) l.ownerInstalled = true;
                l.keys.push(next);
            } catch {}
        } else {
            vm.prank(MANUFACTURER);
            try registry.attestKey(l.id) {
                l.ownerInstalled = false;
            } catch {}
        }
    }

    // ================================================================ the model, for the invariants

    function certCount() external view returns (uint256) {
        return _certs.length;
    }

    function cert(uint256 i) external view returns (Cert memory) {
        return _certs[i];
    }

    function lock(
        uint256 i
    ) external view returns (uint256 id, address owner, uint16 ownerEpoch, uint32 logSeq, bytes24 logHead) {
        Lock storage l = _locks[i];
        return (l.id, l.owner, l.ownerEpoch, l.logSeq, l.logHead);
    }

    /// @notice The key epoch certificates of lock `li` must carry now, by the model.
    function keyEpoch(uint256 li) external view returns (uint32) {
        return _keyEpoch(li);
    }

    /// @notice Whether the model says a lock would open for certificate `i` now (the chain part of the lock's decision).
    function opens(uint256 i) external view returns (bool) {
        Cert storage c = _certs[i];
        Lock storage l = _locks[c.lock];
        bool issuer = c.issuer == l.owner || _managers[c.lock][l.ownerEpoch][c.issuer] >= block.timestamp;
        return
            !l.stolen &&
            c.owner == l.owner &&
            c.epoch == _keyEpoch(c.lock) &&
            issuer &&
            !_revoked[c.lock][l.ownerEpoch][c.keyId] &&
            c.validFrom <= block.timestamp &&
            block.timestamp <= c.validUntil;
    }

    /// @notice The manager expiry the model has for (lock, ownership epoch, manager).
    function managerExpiry(uint256 li, uint16 epoch, address manager) external view returns (uint64) {
        return _managers[li][epoch][manager];
    }

    // ================================================================ internals

    function _keyEpoch(uint256 li) internal view returns (uint32) {
        uint16 e = _locks[li].ownerEpoch;
        return (uint32(e) << 16) | _revokeAlls[li][e];
    }

    /// @dev The owner (mostly), a manager (of this period or not), a previous owner, or a stranger.
    function _caller(Lock storage l, uint256 seed) internal view returns (address) {
        uint256 s = seed % 8;
        if (s < 4) return l.owner;
        if (s < 6) return managers[(seed >> 3) % 3];
        if (s == 6) return address(uint160(0xC1 + ((seed >> 3) % 3)));
        return STRANGER;
    }

    function _logDigest(uint256 lockId, LockAccess.LogBatch memory b) internal view returns (bytes32) {
        return typedDigest(access.DOMAIN_SEPARATOR(), keccak256(abi.encode(access.UNLOCK_LOG_TYPEHASH(), lockId, b)));
    }
}

/**
 * @title LockAccessInvariants
 * @notice DESIGN.md invariants 1, 6, 8 and 10 of LockAccess against random sequences of
 * {LockHandler} actions. The lock's decision is off chain (the agent); its chain part is what these
 * check: the key epoch, revocations, managers and ownership periods a lock reads, evaluated as the
 * lock evaluates them ({lockWouldOpen}), against the model's.
 */
contract LockAccessInvariants is CustosTest {
    DeviceRegistry internal registry;
    LockAccess internal access;
    LockHandler internal handler;

    function setUp() public {
        vm.warp(T0);
        vm.roll(1_000);
        (DeviceRegistry registry_, ERC7913P256SHA256Verifier verifier) = deployRegistry(threeGuardians());
        registry = registry_;
        access = new LockAccess(registry_, FORWARDER);
        handler = new LockHandler(registry_, access, address(verifier));
        // Every run starts with a manager and three keys per lock.
        for (uint256 i = 0; i < 2; ++i) {
            handler.manage(i, 0, 1 + (3 days << 2), 0);
            for (uint256 k = 0; k < 3; ++k) handler.issue(i, k, k, 1);
        }

        weigh(LockHandler.issue.selector, 5);
        weigh(LockHandler.revokeKey.selector, 4);
        weigh(LockHandler.revokeAll.selector, 1);
        weigh(LockHandler.manage.selector, 3);
        weigh(LockHandler.sell.selector, 1);
        weigh(LockHandler.anchorLog.selector, 4);
        weigh(LockHandler.lockOwner.selector, 2);
        weigh(handler.advance.selector, 3);
        targetHandler(address(handler));
    }

    /**
     * @notice The chain part of a lock's decision on certificate `c` (see src/agent/roles/lock.ts):
     * the lock is active, the certificate names the current owner and the current ownership period,
     * its issuer is the owner or a manager appointed in this period until now or later, it carries
     * the current key epoch, its key id is not revoked in this period, and now is in its window.
     */
    function lockWouldOpen(LockHandler.Cert memory c) public view returns (bool) {
        (uint256 id, , , , ) = handler.lock(c.lock);
        (address owner, uint16 ownerEpoch) = registry.ownership(id);
        if (registry.deviceStatus(id) != IDeviceRegistry.DeviceStatus.Active) return false;
        if (c.owner != owner || uint16(c.epoch >> 16) != ownerEpoch) return false;
        if (c.issuer != owner && access.managerExpiry(id, ownerEpoch, c.issuer) < block.timestamp) return false;
        if (c.epoch != access.keyEpoch(id)) return false;
        if (access.isRevoked(id, ownerEpoch, c.keyId)) return false;
        return c.validFrom <= block.timestamp && block.timestamp <= c.validUntil;
    }

    /// @notice Invariant 1: a quarantined lock opens nothing and anchors nothing.
    function invariant_1_quarantinedLockOpensNothing() public view {
        _noBreak(1);
        for (uint256 i = 0; i < handler.certCount(); ++i) {
            LockHandler.Cert memory c = handler.cert(i);
            (uint256 id, , , , ) = handler.lock(c.lock);
            if (registry.deviceStatus(id) != IDeviceRegistry.DeviceStatus.Active) {
                vm.assertFalse(lockWouldOpen(c), "a quarantined lock would open");
            }
        }
    }

    /**
     * @notice Invariant 6: an expired, revoked, epoch-bumped or foreign-period key never opens: every
     * certificate the model holds dead for good stays closed, and every other opens exactly when the
     * model says; the key epoch is the ownership epoch over the number of revoke-alls in it.
     */
    function invariant_6_deadKeysNeverOpen() public view {
        _noBreak(6);
        for (uint256 i = 0; i < handler.certCount(); ++i) {
            LockHandler.Cert memory c = handler.cert(i);
            bool open = lockWouldOpen(c);
            if (c.dead) vm.assertFalse(open, "a revoked, epoch-bumped or previous-period key opens");
            vm.assertEq(open, handler.opens(i), "the lock's decision is not the model's");
        }
        for (uint256 l = 0; l < 2; ++l) {
            (uint256 id, , , , ) = handler.lock(l);
            vm.assertEq(access.keyEpoch(id), handler.keyEpoch(l), "key epoch is not the model's");
            vm.assertEq(access.lockState(id).epoch, handler.keyEpoch(l), "lockState epoch is not keyEpoch");
        }
    }

    /// @notice Invariant 8: the unlock log is anchored only by the lock's current key with
    /// provenance reaching the manufacturer: its sequence and hash chain are the model's.
    function invariant_8_logOnlyFromAttestedKeys() public view {
        _noBreak(8);
        for (uint256 l = 0; l < 2; ++l) {
            (uint256 id, , , uint32 seq, bytes24 head) = handler.lock(l);
            LockAccess.LockState memory s = access.lockState(id);
            vm.assertEq(s.logSeq, seq, "log seq is not the number of anchored batches");
            vm.assertEq(bytes32(s.logHead), bytes32(head), "log head is not the model's hash chain");
        }
    }

    /**
     * @notice Invariant 10: stale authority never revives: the ownership epoch is the model's (it moves
     * at every sale), no manager of an earlier period, previous owner or stranger revoked or appointed
     * anything, and managers of the current period are exactly the model's.
     */
    function invariant_10_staleAuthorityNeverRevives() public view {
        _noBreak(10);
        for (uint256 l = 0; l < 2; ++l) {
            (uint256 id, address owner, uint16 epoch, , ) = handler.lock(l);
            (address chainOwner, uint16 chainEpoch) = registry.ownership(id);
            vm.assertEq(chainOwner, owner, "owner is not the model's");
            vm.assertEq(chainEpoch, epoch, "ownership epoch is not the model's");
            for (uint256 m = 0; m < 3; ++m) {
                address manager = handler.managers(m);
                vm.assertEq(
                    access.managerExpiry(id, epoch, manager),
                    handler.managerExpiry(l, epoch, manager),
                    "manager expiry"
                );
            }
        }
    }

    function _noBreak(uint256 invariant) internal view {
        vm.assertEq(handler.broken(invariant), 0, handler.firstBroken(invariant));
    }
}

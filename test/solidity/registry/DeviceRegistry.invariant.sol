// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {HandlerBase} from "../lib/HandlerBase.sol";
import {Merkle} from "../lib/Merkle.sol";
import {DeviceRegistry} from "../../../contracts/registry/DeviceRegistry.sol";
import {IDeviceRegistry} from "../../../contracts/interfaces/IDeviceRegistry.sol";
import {CustosTest} from "../lib/CustosTest.sol";
import {ERC7913P256SHA256Verifier} from "../../../contracts/crypto/ERC7913P256SHA256Verifier.sol";

/**
 * @title RegistryHandler
 * @notice Bounded actions on the DeviceRegistry by several actors (two manufacturers, the admin,
 * three owners, a stranger, a guardian), each checked against a ghost model of batches, devices,
 * keys and trust periods. The invariants are {DeviceRegistryInvariants}, below.
 * @dev The guardian here holds the registry's GUARDIAN_ROLE directly (granted by the admin), so
 * that this suite models the registry alone; the quorum's votes are GuardianQuorum.invariant.sol's.
 */
contract RegistryHandler is HandlerBase {
    uint8 internal constant STOLEN = 1;
    uint8 internal constant FLAGGED = 2;
    uint8 internal constant REVOKED = 4;
    uint8 internal constant OWNER_KEY = 8;
    uint8 internal constant UNTRUSTED = STOLEN | FLAGGED | REVOKED;

    uint8 internal constant B_ACTIVE = 1;
    uint8 internal constant B_QUARANTINED = 2;
    uint8 internal constant B_REVOKED = 3;

    uint256 internal constant MAX_KEYS = 40;
    uint256 internal constant MAX_DEVICES = 12;
    uint256 internal constant MAX_BATCHES = 6;
    uint256 internal constant MAX_KEYS_PER_DEVICE = 4;

    address public constant GUARDIAN = address(0xB0);
    address public constant STRANGER = address(0xE1);

    DeviceRegistry public immutable registry;
    address public immutable verifier;

    struct Key {
        uint256 pk;
        bool p256;
        bytes signer;
        /// @dev 1 + index into `devices` of the device it belongs to (0: none yet).
        uint256 device;
        uint16 generation;
    }

    struct Batch {
        uint48 id;
        address manufacturer;
        uint8 status;
        uint40 since;
        bytes32 root;
        uint256[] keys;
    }

    struct Device {
        uint256 id;
        uint256 batch;
        address owner;
        uint16 ownerEpoch;
        uint8 flags;
        uint40 untrustedSince;
        uint16 generation;
        uint32 nonce;
        uint32 period;
        uint256[] keys;
        uint32[] periods;
    }

    struct PeriodEnd {
        uint40 endedAt;
        uint16 generation;
    }

    /// @dev A device message that was accepted, kept to replay it.
    struct Message {
        bytes key;
        bool cancel;
        bytes32 firmware;
        uint256 deadline;
        bytes signature;
    }

    Key[] internal _keys;
    Batch[] internal _batches;
    Device[] internal _devices;
    mapping(uint256 device => mapping(uint32 period => PeriodEnd)) internal _ends;
    Message internal _last;
    bool internal _haveLast;

    constructor(DeviceRegistry registry_, address verifier_) {
        (registry, verifier) = (registry_, verifier_);
        bytes32 guardianRole = registry_.GUARDIAN_ROLE();
        vm.prank(ADMIN);
        registry_.grantRole(guardianRole, GUARDIAN);
    }

    // ================================================================ actions

    /// @notice A manufacturer commits a batch of 1–6 fresh keys (some P-256).
    function commitBatch(uint256 manufacturerSeed, uint256 sizeSeed, uint256 p256Mask) external {
        uint256 size = bound(sizeSeed, 1, 6);
        if (_batches.length >= MAX_BATCHES || _keys.length + size > MAX_KEYS) return;
        address manufacturer = manufacturerSeed % 2 == 0 ? MANUFACTURER : MANUFACTURER2;
        uint256[] memory members = new uint256[](size);
        for (uint256 i = 0; i < size; ++i) members[i] = _newKey((p256Mask >> i) % 4 == 0);
        _commit(manufacturer, members);
    }

    /// @notice Another manufacturer commits the root of an existing batch: it gets an id of its own
    /// (invariant 9); committing a root twice under one manufacturer is refused.
    function squatBatch(uint256 batchSeed) external {
        if (_batches.length == 0 || _batches.length >= MAX_BATCHES) return;
        Batch storage b = _batches[_pick(batchSeed, _batches.length)];
        _commit(b.manufacturer == MANUFACTURER ? MANUFACTURER2 : MANUFACTURER, b.keys);
    }

    /// @notice Anyone submits a claim of a leaf of a batch for one of the owners (re-claims included).
    function claim(uint256 batchSeed, uint256 leafSeed, uint256 ownerSeed) external {
        if (_batches.length == 0) return;
        uint256 bi = _pick(batchSeed, _batches.length);
        Batch storage b = _batches[bi];
        uint256 leaf = _pick(leafSeed, b.keys.length);
        Key storage k = _keys[b.keys[leaf]];
        if (k.device == 0 && _devices.length >= MAX_DEVICES) return;
        address owner = _owner(ownerSeed);
        (DeviceRegistry.Claim memory c, bytes32[] memory proof, bytes memory sig) = _claimArgs(b, leaf, owner);
        bool expected = k.device == 0 && b.status == B_ACTIVE;
        uint256 invariant = k.device != 0 ? 3 : (b.status != B_ACTIVE ? 1 : 3);
        try registry.claim(c, proof, sig) returns (uint256 id) {
            _expect(invariant, expected, true, "claim");
            _check(3, id == deviceIdOf(k.signer), "claim: device id is not the key's");
            _addDevice(id, bi, b.keys[leaf], owner);
        } catch {
            _expect(invariant, expected, false, "claim");
        }
    }

    /// @notice The owner (or someone else) reports a device stolen.
    function reportStolen(uint256 deviceSeed, uint256 callerSeed) external {
        if (_devices.length == 0) return;
        uint256 di = _pick(deviceSeed, _devices.length);
        Device storage d = _devices[di];
        address caller = _ownerOrOther(d.owner, callerSeed);
        bool expected = caller == d.owner && d.flags & (REVOKED | STOLEN) == 0;
        vm.prank(caller);
        try registry.reportStolen(d.id) {
            _expect(caller == d.owner ? 1 : 10, expected, true, "reportStolen");
            _distrust(d, d.flags | STOLEN);
        } catch {
            _expect(caller == d.owner ? 1 : 10, expected, false, "reportStolen");
        }
    }

    /// @notice The owner (or someone else) lifts a theft report.
    function release(uint256 deviceSeed, uint256 callerSeed) external {
        if (_devices.length == 0) return;
        uint256 di = _pick(deviceSeed, _devices.length);
        Device storage d = _devices[di];
        address caller = _ownerOrOther(d.owner, callerSeed);
        bool expected = caller == d.owner && d.flags & REVOKED == 0 && d.flags & STOLEN != 0;
        vm.prank(caller);
        try registry.release(d.id) {
            _expect(caller == d.owner ? 8 : 10, expected, true, "release");
            _restore(di, d.flags & ~STOLEN);
        } catch {
            _expect(caller == d.owner ? 8 : 10, expected, false, "release");
        }
    }

    /**
     * @notice A device is retired for good: its owner (or someone else) decommissions it, or a
     * manufacturer, the admin or the owner recalls it (`how` odd).
     */
    function retire(uint256 deviceSeed, uint256 callerSeed, uint256 how) external {
        if (_devices.length == 0) return;
        Device storage d = _devices[_pick(deviceSeed, _devices.length)];
        if (how % 2 == 1) return _recall(d, callerSeed);
        address caller = _ownerOrOther(d.owner, callerSeed);
        bool expected = caller == d.owner && d.flags & REVOKED == 0;
        vm.prank(caller);
        try registry.decommission(d.id) {
            _expect(caller == d.owner ? 1 : 10, expected, true, "decommission");
            _distrust(d, d.flags | REVOKED);
        } catch {
            _expect(caller == d.owner ? 1 : 10, expected, false, "decommission");
        }
    }

    function _recall(Device storage d, uint256 callerSeed) internal {
        address caller = _batchActor(_batches[d.batch].manufacturer, d.owner, callerSeed);
        bool authority = caller == _batches[d.batch].manufacturer || caller == ADMIN;
        bool expected = authority && d.flags & REVOKED == 0;
        vm.prank(caller);
        try registry.recall(d.id, "recall") {
            _expect(authority ? 1 : 9, expected, true, "recall");
            _distrust(d, d.flags | REVOKED);
        } catch {
            _expect(authority ? 1 : 9, expected, false, "recall");
        }
    }

    /**
     * @notice The owner (or someone else) rotates a device's key. `mode` picks the new key (fresh;
     * an unclaimed leaf's key; a key registered already) and the old key's signature (by the
     * current key; none; by a key rotated away).
     */
    function rotateKey(uint256 deviceSeed, uint256 callerSeed, uint256 mode) external {
        if (_devices.length == 0) return;
        uint256 di = _pick(deviceSeed, _devices.length);
        Device storage d = _devices[di];
        if (d.keys.length >= MAX_KEYS_PER_DEVICE || _keys.length >= MAX_KEYS) return;
        (uint256 newKey_, bool fresh) = _rotationKey(mode);
        uint256 oldMode = (mode >> 8) % 4; // 0: no old signature, 1–2: the current key's, 3: a rotated-away key's
        bool staleOld = oldMode == 3 && d.generation > 0;
        uint256 oldKey = staleOld ? d.keys[(mode >> 16) % d.generation] : d.keys[d.generation];
        address caller = _ownerOrOther(d.owner, callerSeed);
        DeviceRegistry.Rotation memory r = _rotation(d, newKey_, oldKey, oldMode != 0);
        bool expected = caller == d.owner && d.flags & REVOKED == 0 && fresh && !staleOld;
        uint256 invariant = caller != d.owner || staleOld ? 10 : (fresh ? 8 : 3);
        vm.prank(caller);
        try registry.rotateKey(d.id, r) {
            _expect(invariant, expected, true, "rotateKey");
            uint8 flags = oldMode == 0 ? d.flags | OWNER_KEY : d.flags;
            _newPeriod(di, flags);
            ++d.generation;
            ++d.nonce;
            d.keys.push(newKey_);
            (_keys[newKey_].device, _keys[newKey_].generation) = (di + 1, d.generation);
        } catch {
            _expect(invariant, expected, false, "rotateKey");
        }
    }

    /// @notice The batch's manufacturer, the other one, the admin or the owner re-attests an owner-installed key.
    function attestKey(uint256 deviceSeed, uint256 callerSeed) external {
        if (_devices.length == 0) return;
        Device storage d = _devices[_pick(deviceSeed, _devices.length)];
        address caller = _batchActor(_batches[d.batch].manufacturer, d.owner, callerSeed);
        bool authority = caller == _batches[d.batch].manufacturer || caller == ADMIN;
        bool expected = authority && d.flags & OWNER_KEY != 0;
        vm.prank(caller);
        try registry.attestKey(d.id) {
            _expect(authority ? 8 : 9, expected, true, "attestKey");
            d.flags &= ~OWNER_KEY;
        } catch {
            _expect(authority ? 8 : 9, expected, false, "attestKey");
        }
    }

    /// @notice The guardian (or a stranger) flags a device or clears its flag.
    function guardian(uint256 deviceSeed, uint256 flagSeed, uint256 callerSeed) external {
        if (_devices.length == 0) return;
        uint256 di = _pick(deviceSeed, _devices.length);
        Device storage d = _devices[di];
        address caller = callerSeed % 5 == 0 ? STRANGER : GUARDIAN;
        bool flag = flagSeed % 2 == 0;
        bool valid = d.flags & REVOKED == 0 && (flag ? d.flags & FLAGGED == 0 : d.flags & FLAGGED != 0);
        bool expected = caller == GUARDIAN && valid;
        vm.prank(caller);
        if (flag) {
            try registry.flag(d.id, "misbehaving") {
                _expect(caller == GUARDIAN ? 1 : 10, expected, true, "flag");
                _distrust(d, d.flags | FLAGGED);
            } catch {
                _expect(caller == GUARDIAN ? 1 : 10, expected, false, "flag");
            }
        } else {
            try registry.clearFlag(d.id) {
                _expect(caller == GUARDIAN ? 8 : 10, expected, true, "clearFlag");
                _restore(di, d.flags & ~FLAGGED);
            } catch {
                _expect(caller == GUARDIAN ? 8 : 10, expected, false, "clearFlag");
            }
        }
    }

    /// @notice A manufacturer, the admin or a stranger quarantines, releases or (one time in twelve) revokes a batch.
    function batchStatus(uint256 batchSeed, uint256 action, uint256 callerSeed) external {
        if (_batches.length == 0) return;
        Batch storage b = _batches[_pick(batchSeed, _batches.length)];
        uint8 target = action % 12 == 0 ? B_REVOKED : (action % 2 == 0 ? B_ACTIVE : B_QUARANTINED);
        address caller = _batchActor(b.manufacturer, STRANGER, callerSeed);
        bool authority = caller == b.manufacturer || caller == ADMIN;
        bool expected = authority && b.status != B_REVOKED && b.status != target;
        vm.prank(caller);
        bool ok;
        if (target == B_QUARANTINED) {
            try registry.quarantineBatch(b.id, "suspect") {
                ok = true;
            } catch {}
        } else if (target == B_ACTIVE) {
            try registry.releaseBatch(b.id) {
                ok = true;
            } catch {}
        } else {
            try registry.revokeBatch(b.id, "recall") {
                ok = true;
            } catch {}
        }
        _expect(authority ? 1 : 9, expected, ok, "batchStatus");
        if (ok) {
            if (!(b.status == B_QUARANTINED && target == B_REVOKED)) b.since = uint40(block.timestamp);
            b.status = target;
        }
    }

    /// @notice The owner (or someone else) transfers a device to one of the owners (itself included).
    function transfer(uint256 deviceSeed, uint256 toSeed, uint256 callerSeed) external {
        if (_devices.length == 0) return;
        Device storage d = _devices[_pick(deviceSeed, _devices.length)];
        address to = _owner(toSeed);
        address caller = _ownerOrOther(d.owner, callerSeed);
        bool expected = caller == d.owner && _status(d) == IDeviceRegistry.DeviceStatus.Active;
        vm.prank(caller);
        try registry.transferFrom(d.owner, to, d.id) {
            _expect(caller == d.owner ? 1 : 10, expected, true, "transfer");
            (d.owner, d.ownerEpoch) = (to, d.ownerEpoch + 1);
        } catch {
            _expect(caller == d.owner ? 1 : 10, expected, false, "transfer");
        }
    }

    /**
     * @notice A device message (firmware attestation or nonce cancellation) relayed by anyone,
     * signed by one of the device's keys (mostly the current one), with its next nonce or a wrong
     * one, and a live or expired deadline.
     */
    function deviceMessage(uint256 deviceSeed, uint256 keySeed, uint256 variant) external {
        if (_devices.length == 0) return;
        Device storage d = _devices[_pick(deviceSeed, _devices.length)];
        uint256 ki = keySeed % 4 == 0 ? d.keys[(keySeed >> 2) % d.keys.length] : d.keys[d.generation];
        Key storage k = _keys[ki];
        uint256 v = variant % 16;
        uint256 nonce = v == 14 ? uint256(d.nonce) + 1 : (v == 15 && d.nonce > 0 ? d.nonce - 1 : d.nonce);
        Message memory m = Message(
            k.signer,
            variant & 16 != 0,
            keccak256(abi.encode("firmware", variant)),
            v == 13 ? block.timestamp - 1 : block.timestamp + HOUR,
            ""
        );
        m.signature = signDigest(_keyMemory(ki), _messageDigest(registry.DOMAIN_SEPARATOR(), d.id, m, nonce));
        bool current = k.generation == d.generation;
        bool active = _status(d) == IDeviceRegistry.DeviceStatus.Active;
        bool fresh = nonce == d.nonce && m.deadline >= block.timestamp;
        uint256 invariant = !current ? 10 : (!active ? 1 : 2);
        bool ok = _send(m);
        _expect(invariant, current && active && fresh, ok, m.cancel ? "cancelNonce" : "attestFirmware");
        if (ok) {
            ++d.nonce;
            (_last, _haveLast) = (m, true);
        }
    }

    /// @notice Anyone relays the last accepted device message again: it must be refused (invariant 2).
    function replay() external {
        if (!_haveLast) return;
        _expect(2, false, _send(_last), "replayed device message");
    }

    /**
     * @notice A device's current key signs a message for another domain (another chain, another
     * contract, another device) or malleates a valid signature (high s): it must be refused
     * (invariant 2).
     */
    function forgedMessage(uint256 deviceSeed, uint256 variant) external {
        if (_devices.length == 0) return;
        Device storage d = _devices[_pick(deviceSeed, _devices.length)];
        uint256 ki = d.keys[d.generation];
        Message memory m = Message(_keys[ki].signer, false, keccak256("forged"), block.timestamp + HOUR, "");
        uint256 v = variant % 4;
        bytes32 domain =
            v == 0
                ? _domain(block.chainid + 1, address(registry))
                : (v == 1 ? _domain(block.chainid, address(this)) : registry.DOMAIN_SEPARATOR());
        uint256 deviceId = v == 2 ? d.id ^ 1 : d.id;
        m.signature = signDigest(_keyMemory(ki), _messageDigest(domain, deviceId, m, d.nonce));
        if (v == 3) m.signature = _highS(_keys[ki].p256, m.signature);
        _expect(2, false, _send(m), "forged device message");
    }

    // ================================================================ the model, for the invariants

    function deviceCount() external view returns (uint256) {
        return _devices.length;
    }

    function keyCount() external view returns (uint256) {
        return _keys.length;
    }

    function batchCount() external view returns (uint256) {
        return _batches.length;
    }

    /// @notice Device `i` as the model has it.
    function device(uint256 i) external view returns (Device memory) {
        return _devices[i];
    }

    /// @notice The signer bytes of key `i`, its device (1 + index, 0 for none) and key generation.
    function key(uint256 i) external view returns (bytes memory signer, uint256 deviceIndex, uint16 generation) {
        Key storage k = _keys[i];
        return (k.signer, k.device, k.generation);
    }

    /// @notice Batch `i`: id, manufacturer, status, since.
    function batch(uint256 i) external view returns (uint48 id, address manufacturer, uint8 status, uint40 since) {
        Batch storage b = _batches[i];
        return (b.id, b.manufacturer, b.status, b.since);
    }

    /// @notice The status the model gives device `i`.
    function expectedStatus(uint256 i) external view returns (IDeviceRegistry.DeviceStatus) {
        return _status(_devices[i]);
    }

    /// @notice What `keyTrustedUntil(key, period)` must answer for key `ki` of device `i` (see the registry's NatSpec).
    function trustedUntil(uint256 i, uint256 ki, uint32 period) external view returns (uint40 until) {
        Device storage d = _devices[i];
        uint16 generation = _keys[ki].generation;
        bool current = period == d.period;
        if (current) {
            if (generation != d.generation) return 0;
            until = d.untrustedSince == 0 ? TRUSTED_FOREVER : d.untrustedSince;
        } else {
            PeriodEnd storage e = _ends[i][period];
            if (e.generation != generation) return 0;
            until = e.endedAt;
        }
        Batch storage b = _batches[d.batch];
        if (b.since < until && (b.status == B_REVOKED || (current && b.status == B_QUARANTINED))) until = b.since;
    }

    // ================================================================ internals

    function _newKey(bool p256) internal returns (uint256 index) {
        index = _keys.length;
        DeviceKey memory k = newKey(uint256(keccak256(abi.encode("registry key", index))), p256, verifier);
        _keys.push(Key(k.pk, k.p256, k.signer, 0, 0));
    }

    function _keyMemory(uint256 i) internal view returns (DeviceKey memory) {
        Key storage k = _keys[i];
        return DeviceKey(k.pk, k.p256, k.signer);
    }

    function _commit(address manufacturer, uint256[] memory members) internal {
        bytes32 root = Merkle.root(_leaves(members));
        bool expected = true;
        for (uint256 i = 0; i < _batches.length; ++i) {
            if (_batches[i].manufacturer == manufacturer && _batches[i].root == root) expected = false;
        }
        vm.prank(manufacturer);
        try registry.commitBatch(root) returns (uint48 id) {
            _expect(9, expected, true, "commitBatch");
            _check(
                9,
                id == registry.batchIdOf(manufacturer, root),
                "commitBatch: id is not batchIdOf(manufacturer, root)"
            );
            Batch storage b = _batches.push();
            (b.id, b.manufacturer, b.status, b.since) = (id, manufacturer, B_ACTIVE, uint40(block.timestamp));
            (b.root, b.keys) = (root, members);
        } catch {
            _expect(9, expected, false, "commitBatch");
        }
    }

    function _leaves(uint256[] memory members) internal view returns (bytes32[] memory leaves) {
        leaves = new bytes32[](members.length);
        for (uint256 i = 0; i < members.length; ++i) {
            leaves[i] = Merkle.deviceLeaf(_keys[members[i]].signer, MODEL, FIRMWARE);
        }
    }

    function _claimArgs(
        Batch storage b,
        uint256 leaf,
        address owner
    ) internal view returns (DeviceRegistry.Claim memory c, bytes32[] memory proof, bytes memory sig) {
        uint256 ki = b.keys[leaf];
        c = DeviceRegistry.Claim(owner, b.id, _keys[ki].signer, MODEL, FIRMWARE, block.timestamp + HOUR);
        proof = Merkle.proof(_leaves(b.keys), leaf);
        sig = signDigest(
            _keyMemory(ki),
            typedDigest(
                registry.DOMAIN_SEPARATOR(),
                keccak256(abi.encode(registry.DEVICE_CLAIM_TYPEHASH(), owner, b.id, c.deadline))
            )
        );
    }

    function _addDevice(uint256 id, uint256 bi, uint256 ki, address owner) internal {
        Device storage d = _devices.push();
        (d.id, d.batch, d.owner) = (id, bi, owner);
        d.keys.push(ki);
        d.periods.push(0);
        _keys[ki].device = _devices.length;
    }

    /// @dev A new key for a rotation: fresh (mostly), an unclaimed leaf's, or one registered already.
    function _rotationKey(uint256 mode) internal returns (uint256 index, bool fresh) {
        uint256 m = mode % 8;
        if (m == 0 && _devices.length != 0) {
            Device storage other = _devices[(mode >> 3) % _devices.length];
            return (other.keys[(mode >> 5) % other.keys.length], false);
        }
        if (m == 1) {
            for (uint256 i = 0; i < _keys.length; ++i) {
                uint256 j = (i + (mode >> 3)) % _keys.length;
                if (_keys[j].device == 0) return (j, true);
            }
        }
        return (_newKey(m % 3 == 0), true);
    }

    function _rotation(
        Device storage d,
        uint256 newKey_,
        uint256 oldKey,
        bool withOld
    ) internal view returns (DeviceRegistry.Rotation memory r) {
        r.newKey = _keys[newKey_].signer;
        r.deadline = block.timestamp + HOUR;
        bytes32 digest = typedDigest(
            registry.DOMAIN_SEPARATOR(),
            keccak256(abi.encode(registry.KEY_ROTATION_TYPEHASH(), d.id, keccak256(r.newKey), d.nonce, r.deadline))
        );
        r.newKeySignature = signDigest(_keyMemory(newKey_), digest);
        if (withOld) {
            r.oldKey = _keys[oldKey].signer;
            r.oldKeySignature = signDigest(_keyMemory(oldKey), digest);
        }
    }

    function _messageDigest(
        bytes32 domain,
        uint256 deviceId,
        Message memory m,
        uint256 nonce
    ) internal view returns (bytes32) {
        bytes32 structHash =
            m.cancel
                ? keccak256(abi.encode(registry.NONCE_CANCELLATION_TYPEHASH(), deviceId, nonce, m.deadline))
                : keccak256(
                    abi.encode(registry.FIRMWARE_ATTESTATION_TYPEHASH(), deviceId, m.firmware, nonce, m.deadline)
                );
        return typedDigest(domain, structHash);
    }

    function _send(Message memory m) internal returns (bool) {
        if (m.cancel) {
            try registry.cancelNonce(m.key, m.deadline, m.signature) {
                return true;
            } catch {
                return false;
            }
        }
        try registry.attestFirmware(m.key, m.firmware, m.deadline, m.signature) {
            return true;
        } catch {
            return false;
        }
    }

    function _domain(uint256 chainId, address verifyingContract) internal pure returns (bytes32) {
        return
            keccak256(
                abi.encode(
                    keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"),
                    keccak256("Custos DeviceRegistry"),
                    keccak256("1"),
                    chainId,
                    verifyingContract
                )
            );
    }

    /// @dev The malleated twin of a low-s signature: s' = n − s (and v flipped for secp256k1).
    function _highS(bool p256, bytes memory sig) internal pure returns (bytes memory) {
        (bytes32 r, bytes32 s) = abi.decode(sig, (bytes32, bytes32));
        if (p256) return abi.encodePacked(r, bytes32(P256_N - uint256(s)));
        uint8 v = uint8(sig[64]) == 27 ? 28 : 27;
        return abi.encodePacked(r, bytes32(SECP256K1_N - uint256(s)), v);
    }

    function _status(Device storage d) internal view returns (IDeviceRegistry.DeviceStatus) {
        uint8 b = _batches[d.batch].status;
        if (d.flags & REVOKED != 0 || b == B_REVOKED) return IDeviceRegistry.DeviceStatus.Revoked;
        if (d.flags & UNTRUSTED != 0 || b == B_QUARANTINED) return IDeviceRegistry.DeviceStatus.Quarantined;
        return IDeviceRegistry.DeviceStatus.Active;
    }

    function _distrust(Device storage d, uint8 flags) internal {
        d.flags = flags;
        if (d.untrustedSince == 0) d.untrustedSince = uint40(block.timestamp);
    }

    function _restore(uint256 di, uint8 flags) internal {
        Device storage d = _devices[di];
        if (flags & UNTRUSTED != 0) {
            d.flags = flags;
            return;
        }
        ++d.nonce;
        _newPeriod(di, flags);
    }

    /// @dev The current period ends (when trust ended in it, or now); the next one's tag is the chain's.
    function _newPeriod(uint256 di, uint8 flags) internal {
        Device storage d = _devices[di];
        uint40 endedAt = d.untrustedSince == 0 ? uint40(block.timestamp) : d.untrustedSince;
        _ends[di][d.period] = PeriodEnd(endedAt, d.generation);
        d.period = registry.deviceTrust(d.id).period;
        _check(10, _ends[di][d.period].endedAt == 0 && d.period != 0, "a trust period tag was reused");
        d.periods.push(d.period);
        d.flags = flags;
        d.untrustedSince = flags & UNTRUSTED == 0 ? 0 : uint40(block.timestamp);
    }

    function _owner(uint256 seed) internal pure returns (address) {
        return address(uint160(0xC1 + (seed % 3)));
    }

    /// @dev The owner (three times in four), else another owner or the stranger.
    function _ownerOrOther(address owner, uint256 seed) internal pure returns (address) {
        if (seed % 4 != 0) return owner;
        address other = (seed >> 2) % 4 == 3 ? STRANGER : _owner(seed >> 4);
        return other;
    }

    /// @dev The batch's manufacturer (mostly), the admin, the other manufacturer, or `other`.
    function _batchActor(address manufacturer, address other, uint256 seed) internal pure returns (address) {
        uint256 s = seed % 8;
        if (s < 4) return manufacturer;
        if (s < 6) return ADMIN;
        if (s == 6) return manufacturer == MANUFACTURER ? MANUFACTURER2 : MANUFACTURER;
        return other;
    }
}

/**
 * @title DeviceRegistryInvariants
 * @notice DESIGN.md invariants 1, 2, 3, 8, 9 and 10 of the DeviceRegistry, against random sequences
 * of {RegistryHandler} actions: batches committed (and squatted), leaves claimed (and re-claimed),
 * theft reports and releases, guardian flags, decommissions, recalls, batch quarantines and
 * recalls, key rotations (with and without the old key, to fresh, taken and leaf keys), key
 * re-attestation, transfers, device messages with every kind of wrong key, nonce, deadline,
 * domain or signature, replays, and time passing. Each invariant compares the chain with the
 * handler's ghost model and asserts that no action broke it ({HandlerBase-broken}).
 */
contract DeviceRegistryInvariants is CustosTest {
    DeviceRegistry internal registry;
    RegistryHandler internal handler;

    function setUp() public {
        vm.warp(T0);
        vm.roll(1_000);
        ERC7913P256SHA256Verifier verifier;
        (registry, verifier) = deployRegistry(threeGuardians());
        handler = new RegistryHandler(registry, address(verifier));
        // Every run starts with two batches and four devices, so that each action has targets.
        handler.commitBatch(0, 6, 0x4);
        handler.commitBatch(1, 3, 0x1);
        for (uint256 i = 0; i < 4; ++i) handler.claim(i % 2, i, i);
        require(handler.deviceCount() == 4, "setUp: four devices");

        // Weights: what the others act on (claims, device messages, rotations) comes often; what
        // ends a device or a batch for good (retire; batch recalls are a twelfth of batchStatus)
        // rarely, so that runs stay long in interesting states.
        weigh(RegistryHandler.commitBatch.selector, 2);
        weigh(RegistryHandler.squatBatch.selector, 1);
        weigh(RegistryHandler.claim.selector, 6);
        weigh(RegistryHandler.reportStolen.selector, 3);
        weigh(RegistryHandler.release.selector, 3);
        weigh(RegistryHandler.retire.selector, 1);
        weigh(RegistryHandler.rotateKey.selector, 4);
        weigh(RegistryHandler.attestKey.selector, 2);
        weigh(RegistryHandler.guardian.selector, 4);
        weigh(RegistryHandler.batchStatus.selector, 2);
        weigh(RegistryHandler.transfer.selector, 4);
        weigh(RegistryHandler.deviceMessage.selector, 6);
        weigh(RegistryHandler.replay.selector, 2);
        weigh(RegistryHandler.forgedMessage.selector, 2);
        weigh(handler.advance.selector, 3);
        targetHandler(address(handler));
    }

    /// @notice Invariant 1: a quarantined or revoked device's signature is refused. Every device's
    /// status is the model's, its current key resolves to it with that status, and no device
    /// message, claim or transfer was accepted from a device that was not active.
    function invariant_1_onlyActiveDevicesSign() public view {
        _noBreak(1);
        for (uint256 i = 0; i < handler.deviceCount(); ++i) {
            RegistryHandler.Device memory d = handler.device(i);
            IDeviceRegistry.DeviceStatus status = handler.expectedStatus(i);
            vm.assertEq(uint8(registry.deviceStatus(d.id)), uint8(status), "device status is not the model's");
            (bytes memory signer, , ) = handler.key(d.keys[d.generation]);
            (uint256 id, IDeviceRegistry.DeviceStatus resolved) = registry.resolveKey(signer);
            vm.assertEq(id, d.id, "the current key does not resolve to its device");
            vm.assertEq(uint8(resolved), uint8(status), "the current key resolves with another status");
        }
    }

    /// @notice Invariant 2: every device signature is bound to the chain, the registry, the device,
    /// a nonce and a deadline, and is low-s: no replay, no foreign-domain or malleated signature was
    /// accepted, and each device's nonce is the number of messages it had accepted.
    function invariant_2_signaturesAreSingleUseAndBound() public view {
        _noBreak(2);
        for (uint256 i = 0; i < handler.deviceCount(); ++i) {
            RegistryHandler.Device memory d = handler.device(i);
            vm.assertEq(registry.deviceNonce(d.id), d.nonce, "device nonce is not the model's");
        }
    }

    /// @notice Invariant 3: one hardware key maps to at most one device, forever, and a Merkle leaf is
    /// claimed at most once. Every key the model registered (claimed or rotated in) is taken and
    /// belongs to its one device; every other key is free and resolves to nothing; every device is
    /// one token.
    function invariant_3_oneKeyOneDevice() public view {
        _noBreak(3);
        for (uint256 i = 0; i < handler.keyCount(); ++i) {
            (bytes memory signer, uint256 deviceIndex, uint16 generation) = handler.key(i);
            (uint256 id, uint16 gen, ) = registry.keyTrustedUntil(signer, 0);
            if (deviceIndex == 0) {
                vm.assertTrue(registry.isKeyAvailable(signer), "an unregistered key is taken");
                vm.assertEq(id, 0, "an unregistered key names a device");
            } else {
                vm.assertFalse(registry.isKeyAvailable(signer), "a registered key is available again");
                vm.assertEq(id, handler.device(deviceIndex - 1).id, "a key names another device");
                vm.assertEq(gen, generation, "a key's generation is not the model's");
            }
        }
        uint256 tokens;
        for (uint256 o = 0; o < 3; ++o) tokens += registry.balanceOf(address(uint160(0xC1 + o)));
        vm.assertEq(tokens, handler.deviceCount(), "tokens are not one per claimed device");
    }

    /// @notice Invariant 8: trust ends, and never moves. For every device, every key it ever had and
    /// every trust period it ever had, `keyTrustedUntil` is the model's: never-ending only for the
    /// current key in a current, trusted period; else the moment trust ended (the theft report,
    /// flag, revocation, rotation or batch hold), and nothing for another generation's key.
    /// The current key's provenance (attested or owner-installed) is the model's.
    function invariant_8_trustEndsWhereItEnded() public view {
        _noBreak(8);
        for (uint256 i = 0; i < handler.deviceCount(); ++i) {
            RegistryHandler.Device memory d = handler.device(i);
            IDeviceRegistry.DeviceTrust memory t = registry.deviceTrust(d.id);
            vm.assertEq(t.period, d.period, "current period is not the model's");
            vm.assertEq(t.keyGeneration, d.generation, "key generation is not the model's");
            vm.assertEq(t.keyAttested, d.flags & 8 == 0, "key provenance is not the model's");
            for (uint256 k = 0; k < d.keys.length; ++k) {
                (bytes memory signer, , ) = handler.key(d.keys[k]);
                for (uint256 p = 0; p < d.periods.length; ++p) {
                    (, , uint40 until) = registry.keyTrustedUntil(signer, d.periods[p]);
                    vm.assertEq(until, handler.trustedUntil(i, d.keys[k], d.periods[p]), "keyTrustedUntil");
                }
            }
        }
    }

    /// @notice Invariant 9: a batch belongs to its manufacturer. Its id is batchIdOf(manufacturer,
    /// root) (another manufacturer committing the same root got another id), and only its
    /// manufacturer or the admin changed its status: status and status time are the model's.
    function invariant_9_batchesBelongToTheirManufacturer() public view {
        _noBreak(9);
        for (uint256 i = 0; i < handler.batchCount(); ++i) {
            (uint48 id, address manufacturer, uint8 status, uint40 since) = handler.batch(i);
            DeviceRegistry.Batch memory b = registry.batch(id);
            vm.assertEq(b.manufacturer, manufacturer, "batch manufacturer");
            vm.assertEq(uint8(b.status), status, "batch status is not the model's");
            vm.assertEq(b.statusSince, since, "batch status time is not the model's");
        }
    }

    /// @notice Invariant 10: stale authority never revives. Each device's owner and ownership epoch
    /// are the model's (the epoch moves at every transfer); no non-owner, previous owner, stranger
    /// or rotated-away key acted on a device, and no trust period tag was reused.
    function invariant_10_staleAuthorityNeverRevives() public view {
        _noBreak(10);
        for (uint256 i = 0; i < handler.deviceCount(); ++i) {
            RegistryHandler.Device memory d = handler.device(i);
            (address owner, uint16 epoch) = registry.ownership(d.id);
            vm.assertEq(owner, d.owner, "owner is not the model's");
            vm.assertEq(epoch, d.ownerEpoch, "ownership epoch is not the model's");
            for (uint256 k = 0; k < d.generation; ++k) {
                (bytes memory signer, , ) = handler.key(d.keys[k]);
                (uint256 id, ) = registry.resolveKey(signer);
                vm.assertEq(id, 0, "a rotated-away key resolves again");
            }
        }
    }

    function _noBreak(uint256 invariant) internal view {
        vm.assertEq(handler.broken(invariant), 0, handler.firstBroken(invariant));
    }
}

// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {HandlerBase} from "../lib/HandlerBase.sol";
import {CustosTest} from "../lib/CustosTest.sol";
import {DeviceRegistry} from "../../../contracts/registry/DeviceRegistry.sol";
import {LocationBeacons} from "../../../contracts/beacons/LocationBeacons.sol";
import {ERC7913P256SHA256Verifier} from "../../../contracts/crypto/ERC7913P256SHA256Verifier.sol";

/**
 * @title BeaconsHandler
 * @notice Bounded actions on LocationBeacons: beacons signed by two devices (secp256k1, P-256) with
 * their next beacon nonce (or a wrong one, an expired deadline, a rotated-away key, another domain,
 * the recipients of the other owner or of before the last change), relayed by anyone and replayed;
 * the devices' owners' moves (theft reports, releases, key rotations, sales between two owners, a
 * rare decommission); and the owners' recipient changes (beacon key, responders added and removed).
 */
contract BeaconsHandler is HandlerBase {
    DeviceRegistry public immutable registry;
    LocationBeacons public immutable beacons;
    address public immutable verifier;
    address internal constant OWNER = address(0xC1);
    address internal constant BUYER = address(0xC2);

    struct Device {
        uint256 id;
        DeviceKey[] keys;
        address owner;
        bool stolen;
        bool revoked;
        uint32 beaconNonce;
        uint32 registryNonce;
    }

    Device[2] internal _devices;
    LocationBeacons.LocationBeacon internal _lastBeacon;
    bytes internal _lastKey;
    bytes internal _lastSig;
    /// @dev Per owner: the recipients before its last change (a stale list a device might still hold).
    mapping(address => bytes) internal _staleRecipients;
    uint256 internal _keyCounter;

    constructor(DeviceRegistry registry_, LocationBeacons beacons_, address verifier_) {
        (registry, beacons, verifier) = (registry_, beacons_, verifier_);
        DeviceKey[] memory keys = new DeviceKey[](2);
        keys[0] = newKey(uint256(keccak256("beacon 0")), false, verifier_);
        keys[1] = newKey(uint256(keccak256("beacon 1")), true, verifier_);
        (, uint256[] memory ids) = provision(registry_, keys, OWNER);
        for (uint256 i = 0; i < 2; ++i) {
            _devices[i].id = ids[i];
            _devices[i].keys.push(keys[i]);
            _devices[i].owner = OWNER;
        }
    }

    function _owner(uint256 seed) internal pure returns (address) {
        return seed % 2 == 0 ? OWNER : BUYER;
    }

    /// @notice A device's beacon relayed by anyone: valid (mostly), or with a wrong nonce, an expired
    /// deadline, a rotated-away key, another domain's signature, or recipients that are not its
    /// owner's current ones (the other owner's, or its owner's before the last change).
    function post(uint256 deviceSeed, uint256 variant, bytes calldata ciphertext) external {
        Device storage d = _devices[deviceSeed % 2];
        uint256 v = variant % 12;
        uint256 ki = v == 9 && d.keys.length > 1 ? d.keys.length - 2 : d.keys.length - 1;
        bytes memory current = beacons.beaconRecipients(d.owner);
        bytes memory to =
            v == 10
                ? beacons.beaconRecipients(d.owner == OWNER ? BUYER : OWNER)
                : (v == 11 ? _staleRecipients[d.owner] : current);
        LocationBeacons.LocationBeacon memory b = LocationBeacons.LocationBeacon(
            to,
            ciphertext,
            uint64(block.timestamp),
            v == 7 ? block.timestamp - 1 : block.timestamp + HOUR
        );
        uint256 nonce = v == 6 ? uint256(d.beaconNonce) + 1 : d.beaconNonce;
        bytes32 domain = v == 8 ? keccak256(abi.encode(beacons.DOMAIN_SEPARATOR())) : beacons.DOMAIN_SEPARATOR();
        bytes memory sig = signDigest(
            d.keys[ki],
            typedDigest(
                domain,
                keccak256(
                    abi.encode(
                        beacons.LOCATION_BEACON_TYPEHASH(),
                        d.id,
                        nonce,
                        keccak256(b.recipients),
                        keccak256(b.ciphertext),
                        b.at,
                        b.deadline
                    )
                )
            )
        );
        bool ok;
        try beacons.postLocationBeacon(d.keys[ki].signer, b, sig) {
            ok = true;
        } catch {}
        bool quarantined = d.stolen && !d.revoked;
        bool currentKey = ki == d.keys.length - 1;
        // Variants 6–8 are wrong (nonce, deadline, domain); 9 is a rotated-away key when there is one;
        // 10 and 11 name recipients other than the owner's current ones (never its own current list).
        bool toOwner = current.length > 0 && keccak256(to) == keccak256(current);
        bool wellFormed = (v < 6 || v == 9) || (v >= 10 && toOwner);
        uint256 invariant = !currentKey || !toOwner ? 10 : (quarantined ? 2 : 1);
        _expect(invariant, quarantined && currentKey && wellFormed && toOwner, ok, "beacon");
        if (!ok) return;
        ++d.beaconNonce;
        _lastBeacon = b;
        _lastKey = d.keys[ki].signer;
        _lastSig = sig;
    }

    /// @notice Anyone relays the last accepted beacon again: refused (invariant 2).
    function replay() external {
        if (_lastSig.length == 0) return;
        bool ok;
        try beacons.postLocationBeacon(_lastKey, _lastBeacon, _lastSig) {
            ok = true;
        } catch {}
        _expect(2, false, ok, "replayed beacon");
    }

    /// @notice An owner sets a new beacon key, adds a responder, or removes one.
    function recipients(uint256 ownerSeed, uint256 action, uint256 pick) external {
        address o = _owner(ownerSeed);
        bytes memory before = beacons.beaconRecipients(o);
        uint256 a = action % 3;
        bytes32 key = keccak256(abi.encode("recipient", o, ++_keyCounter));
        if (a == 0) {
            vm.prank(o);
            beacons.setBeaconKey(key);
        } else if (a == 1) {
            vm.prank(o);
            try beacons.addResponder(key) {} catch {
                return;
            }
        } else {
            if (before.length <= 32) return;
            bytes32 victim;
            uint256 i = 1 + _pick(pick, before.length / 32 - 1);
            assembly ("memory-safe") {
                victim := mload(add(add(before, 32), mul(i, 32)))
            }
            vm.prank(o);
            beacons.removeResponder(victim);
        }
        _staleRecipients[o] = before;
    }

    /// @notice The owner reports a device stolen, releases it, rotates its key, sells it to the other
    /// owner, or (rarely) decommissions it.
    function owner(uint256 deviceSeed, uint256 action) external {
        uint256 di = deviceSeed % 2;
        Device storage d = _devices[di];
        uint256 a = action % 11;
        if (a == 10) {
            address buyer = d.owner == OWNER ? BUYER : OWNER;
            vm.prank(d.owner);
            try registry.transferFrom(d.owner, buyer, d.id) {
                d.owner = buyer;
            } catch {}
            return;
        }
        if (a < 4) {
            vm.prank(d.owner);
            try registry.reportStolen(d.id) {
                d.stolen = true;
            } catch {}
        } else if (a < 7) {
            vm.prank(d.owner);
            try registry.release(d.id) {
                d.stolen = false;
                ++d.registryNonce;
            } catch {}
        } else if (a < 9) {
            if (d.keys.length >= 4) return;
            DeviceKey memory next = newKey(
                uint256(keccak256(abi.encode("beacon rotation", di, d.keys.length))),
                a == 8,
                verifier
            );
            DeviceRegistry.Rotation memory r = rotationOf(registry, d.id, next, d.keys[d.keys.length - 1], true);
            vm.prank(d.owner);
            try registry.rotateKey(d.id, r) {
                d.keys.push(next);
                ++d.registryNonce;
            } catch {}
        } else if ((action >> 8) % 4 == 0) {
            vm.prank(d.owner);
            try registry.decommission(d.id) {
                d.revoked = true;
            } catch {}
        }
    }

    function device(uint256 i) external view returns (uint256 id, uint32 beaconNonce, uint32 registryNonce) {
        Device storage d = _devices[i];
        return (d.id, d.beaconNonce, d.registryNonce);
    }
}

/**
 * @title LocationBeaconsInvariants
 * @notice DESIGN.md invariants 1, 2 and 10 of LocationBeacons against random sequences of
 * {BeaconsHandler} actions.
 */
contract LocationBeaconsInvariants is CustosTest {
    DeviceRegistry internal registry;
    LocationBeacons internal beacons;
    BeaconsHandler internal handler;

    function setUp() public {
        vm.warp(T0);
        vm.roll(1_000);
        (DeviceRegistry registry_, ERC7913P256SHA256Verifier verifier) = deployRegistry(threeGuardians());
        registry = registry_;
        beacons = new LocationBeacons(registry_);
        handler = new BeaconsHandler(registry_, beacons, address(verifier));
        handler.owner(0, 0);
        handler.recipients(0, 0, 0);
        handler.recipients(1, 0, 0);
        weigh(BeaconsHandler.post.selector, 8);
        weigh(BeaconsHandler.replay.selector, 2);
        weigh(BeaconsHandler.owner.selector, 3);
        weigh(BeaconsHandler.recipients.selector, 2);
        weigh(handler.advance.selector, 1);
        targetHandler(address(handler));
    }

    /// @notice Invariant 1, the other way round: a beacon is the one message only a quarantined device
    /// posts; an active or revoked device's beacon was never accepted.
    function invariant_1_onlyQuarantinedDevicesPostBeacons() public view {
        vm.assertEq(handler.broken(1), 0, handler.firstBroken(1));
    }

    /**
     * @notice Invariant 2: every beacon is bound to the beacons' domain, the device, its next beacon
     * nonce and a deadline: no replay or foreign signature was accepted, each device's beacon nonce is
     * the number of its accepted beacons, and beacons never consume a registry nonce.
     */
    function invariant_2_beaconsSingleUseAndBound() public view {
        vm.assertEq(handler.broken(2), 0, handler.firstBroken(2));
        for (uint256 i = 0; i < 2; ++i) {
            (uint256 id, uint32 beaconNonce, uint32 registryNonce) = handler.device(i);
            vm.assertEq(beacons.beaconNonce(id), beaconNonce, "beacon nonce is not the number of beacons");
            vm.assertEq(registry.deviceNonce(id), registryNonce, "a beacon moved the registry nonce");
        }
    }

    /// @notice Invariant 10: a rotated-away key's beacon is never accepted, nor one sealed to a previous
    /// owner's recipients or to a list the owner has since changed (a removed responder).
    function invariant_10_rotatedAwayKeysPostNothing() public view {
        vm.assertEq(handler.broken(10), 0, handler.firstBroken(10));
    }
}

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
 * their next beacon nonce (or a wrong one, an expired deadline, a rotated-away key, another domain),
 * relayed by anyone and replayed; and the devices' owner's moves (theft reports, releases, key
 * rotations, a rare decommission).
 */
contract BeaconsHandler is HandlerBase {
    DeviceRegistry public immutable registry;
    LocationBeacons public immutable beacons;
    address public immutable verifier;
    address internal constant OWNER = address(0xC1);

    struct Device {
        uint256 id;
        DeviceKey[] keys;
        bool stolen;
        bool revoked;
        uint32 beaconNonce;
        uint32 registryNonce;
    }

    Device[2] internal _devices;
    LocationBeacons.LocationBeacon internal _lastBeacon;
    bytes internal _lastKey;
    bytes internal _lastSig;

    constructor(DeviceRegistry registry_, LocationBeacons beacons_, address verifier_) {
        (registry, beacons, verifier) = (registry_, beacons_, verifier_);
        DeviceKey[] memory keys = new DeviceKey[](2);
        keys[0] = newKey(uint256(keccak256("beacon 0")), false, verifier_);
        keys[1] = newKey(uint256(keccak256("beacon 1")), true, verifier_);
        (, uint256[] memory ids) = provision(registry_, keys, OWNER);
        for (uint256 i = 0; i < 2; ++i) {
            _devices[i].id = ids[i];
            _devices[i].keys.push(keys[i]);
        }
    }

    /// @notice A device's beacon relayed by anyone: valid (mostly), or with a wrong nonce, an expired
    /// deadline, a rotated-away key or another domain's signature.
    function post(uint256 deviceSeed, uint256 variant, int32 latitude, int32 longitude) external {
        Device storage d = _devices[deviceSeed % 2];
        uint256 v = variant % 10;
        uint256 ki = v == 9 && d.keys.length > 1 ? d.keys.length - 2 : d.keys.length - 1;
        LocationBeacons.LocationBeacon memory b = LocationBeacons.LocationBeacon(
            latitude,
            longitude,
            uint64(block.timestamp),
            v == 7 ? block.timestamp - 1 : block.timestamp + HOUR
        );
        uint256 nonce = v == 6 ? uint256(d.beaconNonce) + 1 : d.beaconNonce;
        bytes32 domain = v == 8 ? keccak256(abi.encode(beacons.DOMAIN_SEPARATOR())) : beacons.DOMAIN_SEPARATOR();
        bytes memory sig = signDigest(
            d.keys[ki],
            typedDigest(domain, keccak256(abi.encode(beacons.LOCATION_BEACON_TYPEHASH(), d.id, nonce, b)))
        );
        bool ok;
        try beacons.postLocationBeacon(d.keys[ki].signer, b, sig) {
            ok = true;
        } catch {}
        bool quarantined = d.stolen && !d.revoked;
        bool currentKey = ki == d.keys.length - 1;
        // Variants 6–8 are wrong (nonce, deadline, domain); 9 is a rotated-away key when there is one.
        bool wellFormed = v < 6 || v == 9;
        _expect(!currentKey ? 10 : (quarantined ? 2 : 1), quarantined && currentKey && wellFormed, ok, "beacon");
        if (!ok) return;
        ++d.beaconNonce;
        (_lastBeacon, _lastKey, _lastSig) = (b, d.keys[ki].signer, sig);
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

    /// @notice The owner reports a device stolen, releases it, rotates its key, or (rarely) decommissions it.
    function owner(uint256 deviceSeed, uint256 action) external {
        uint256 di = deviceSeed % 2;
        Device storage d = _devices[di];
        uint256 a = action % 10;
        if (a < 4) {
            vm.prank(OWNER);
            try registry.reportStolen(d.id) {
                d.stolen = true;
            } catch {}
        } else if (a < 7) {
            vm.prank(OWNER);
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
            vm.prank(OWNER);
            try registry.rotateKey(d.id, r) {
                d.keys.push(next);
                ++d.registryNonce;
            } catch {}
        } else if ((action >> 8) % 4 == 0) {
            vm.prank(OWNER);
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
        weigh(BeaconsHandler.post.selector, 8);
        weigh(BeaconsHandler.replay.selector, 2);
        weigh(BeaconsHandler.owner.selector, 3);
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

    /// @notice Invariant 10: a rotated-away key's beacon is never accepted.
    function invariant_10_rotatedAwayKeysPostNothing() public view {
        vm.assertEq(handler.broken(10), 0, handler.firstBroken(10));
    }
}

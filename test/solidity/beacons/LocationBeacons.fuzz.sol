// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {CustosTest} from "../lib/CustosTest.sol";
import {DeviceRegistry} from "../../../contracts/registry/DeviceRegistry.sol";
import {IDeviceRegistry} from "../../../contracts/interfaces/IDeviceRegistry.sol";
import {LocationBeacons} from "../../../contracts/beacons/LocationBeacons.sol";
import {ERC7913P256SHA256Verifier} from "../../../contracts/crypto/ERC7913P256SHA256Verifier.sol";

/**
 * @title LocationBeaconsFuzz
 * @notice For every location, time, deadline and key kind: a quarantined device's beacon with its
 * next beacon nonce is posted once; any field signed differently is refused; only a quarantined
 * device posts (invariants 1 and 2).
 */
contract LocationBeaconsFuzz is CustosTest {
    address internal constant OWNER = address(0xC1);
    DeviceRegistry internal registry;
    LocationBeacons internal beacons;
    DeviceKey[] internal keys;
    uint256[] internal ids;

    function setUp() public {
        vm.warp(T0);
        ERC7913P256SHA256Verifier verifier;
        (registry, verifier) = deployRegistry(threeGuardians());
        beacons = new LocationBeacons(registry);
        DeviceKey[] memory k = new DeviceKey[](2);
        k[0] = newKey(0xbea0, false, address(verifier));
        k[1] = newKey(0xbea1, true, address(verifier));
        (, uint256[] memory claimed) = provision(registry, k, OWNER);
        for (uint256 i = 0; i < 2; ++i) {
            keys.push(k[i]);
            ids.push(claimed[i]);
        }
    }

    function _sign(
        uint256 d,
        uint256 nonce,
        LocationBeacons.LocationBeacon memory b
    ) internal view returns (bytes memory) {
        return
            signDigest(
                keys[d],
                typedDigest(
                    beacons.DOMAIN_SEPARATOR(),
                    keccak256(abi.encode(beacons.LOCATION_BEACON_TYPEHASH(), ids[d], nonce, b))
                )
            );
    }

    /**
     * @notice A reported device's beacon for any latitude, longitude, time and future deadline is
     * posted under its owner with nonce 0, once; the same beacon with any one field changed after
     * signing (or a replay) is refused.
     */
    function testFuzz_beaconIsBoundToEveryField(
        bool p256,
        int32 lat,
        int32 lon,
        uint64 at,
        uint256 deadline,
        uint256 field
    ) public {
        uint256 d = p256 ? 1 : 0;
        deadline = bound(deadline, block.timestamp, type(uint256).max);
        vm.prank(OWNER);
        registry.reportStolen(ids[d]);
        LocationBeacons.LocationBeacon memory b = LocationBeacons.LocationBeacon(lat, lon, at, deadline);
        bytes memory sig = _sign(d, 0, b);
        LocationBeacons.LocationBeacon memory altered = LocationBeacons.LocationBeacon(lat, lon, at, deadline);
        field = field % 4;
        if (field == 0) altered.latitudeE7 = lat ^ 1;
        else if (field == 1) altered.longitudeE7 = lon ^ 1;
        else if (field == 2) altered.at = at ^ 1;
        else altered.deadline = deadline == type(uint256).max ? deadline - 1 : deadline + 1;
        vm.expectRevert(LocationBeacons.LocationBeaconsInvalidSignature.selector);
        beacons.postLocationBeacon(keys[d].signer, altered, sig);
        beacons.postLocationBeacon(keys[d].signer, b, sig);
        vm.assertEq(beacons.beaconNonce(ids[d]), 1, "one beacon, one nonce");
        vm.expectRevert(LocationBeacons.LocationBeaconsInvalidSignature.selector);
        beacons.postLocationBeacon(keys[d].signer, b, sig);
    }

    /// @notice Only a quarantined device posts: an active one, a revoked one (even reported first), or
    /// a beacon past its deadline is refused.
    function testFuzz_onlyQuarantinedDevicesPost(uint8 state, uint32 late) public {
        uint256 s = state % 4;
        if (s >= 1) {
            vm.prank(OWNER);
            registry.reportStolen(ids[0]);
        }
        if (s == 2) {
            vm.prank(OWNER);
            registry.decommission(ids[0]);
        }
        LocationBeacons.LocationBeacon memory b = LocationBeacons.LocationBeacon(1, 2, 3, block.timestamp + HOUR);
        bytes memory sig = _sign(0, 0, b);
        if (s == 3) {
            vm.warp(block.timestamp + HOUR + 1 + late);
            vm.expectRevert(abi.encodeWithSelector(LocationBeacons.LocationBeaconsExpired.selector, b.deadline));
        } else if (s != 1) {
            IDeviceRegistry.DeviceStatus status =
                s == 0 ? IDeviceRegistry.DeviceStatus.Active : IDeviceRegistry.DeviceStatus.Revoked;
            vm.expectRevert(
                abi.encodeWithSelector(LocationBeacons.LocationBeaconsNotQuarantined.selector, ids[0], status)
            );
        }
        beacons.postLocationBeacon(keys[0].signer, b, sig);
        vm.assertEq(beacons.beaconNonce(ids[0]), s == 1 ? 1 : 0, "posted exactly when quarantined and in time");
    }
}

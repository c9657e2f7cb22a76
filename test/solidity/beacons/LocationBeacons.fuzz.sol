// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {CustosTest} from "../lib/CustosTest.sol";
import {DeviceRegistry} from "../../../contracts/registry/DeviceRegistry.sol";
import {IDeviceRegistry} from "../../../contracts/interfaces/IDeviceRegistry.sol";
import {LocationBeacons} from "../../../contracts/beacons/LocationBeacons.sol";
import {ERC7913P256SHA256Verifier} from "../../../contracts/crypto/ERC7913P256SHA256Verifier.sol";

/**
 * @title LocationBeaconsFuzz
 * @notice For every ciphertext, time, deadline and key kind: a quarantined device's beacon with its
 * next beacon nonce, sealed to its owner's current recipients, is posted once; any field signed
 * differently is refused; only a quarantined device posts (invariants 1 and 2); the recipients are
 * always the current owner's current ones — never a previous owner's, never a removed responder
 * (invariant 10).
 */
contract LocationBeaconsFuzz is CustosTest {
    address internal constant OWNER = address(0xC1);
    address internal constant BUYER = address(0xC2);
    bytes32 internal constant OWNER_KEY = keccak256("owner beacon key");
    bytes32 internal constant BUYER_KEY = keccak256("buyer beacon key");
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
        vm.prank(OWNER);
        beacons.setBeaconKey(OWNER_KEY);
        vm.prank(BUYER);
        beacons.setBeaconKey(BUYER_KEY);
    }

    function _sign(
        uint256 d,
        uint256 nonce,
        LocationBeacons.LocationBeacon memory b
    ) internal view returns (bytes memory) {
        bytes32 structHash = keccak256(
            abi.encode(
                beacons.LOCATION_BEACON_TYPEHASH(),
                ids[d],
                nonce,
                keccak256(b.recipients),
                keccak256(b.ciphertext),
                b.at,
                b.deadline
            )
        );
        return signDigest(keys[d], typedDigest(beacons.DOMAIN_SEPARATOR(), structHash));
    }

    function _beacon(
        address owner,
        bytes memory ciphertext,
        uint64 at,
        uint256 deadline
    ) internal view returns (LocationBeacons.LocationBeacon memory) {
        return LocationBeacons.LocationBeacon(beacons.beaconRecipients(owner), ciphertext, at, deadline);
    }

    /**
     * @notice Attack: swap the ciphertext (one byte flipped, or one appended), the time or the
     * deadline after signing, or replay: refused. The beacon as signed is posted once, under its owner.
     */
    function testFuzz_beaconIsBoundToEveryField(
        bool p256,
        bytes calldata ciphertext,
        uint64 at,
        uint256 deadline,
        uint256 field,
        uint256 at_
    ) public {
        uint256 d = p256 ? 1 : 0;
        deadline = bound(deadline, block.timestamp, type(uint256).max);
        vm.prank(OWNER);
        registry.reportStolen(ids[d]);
        LocationBeacons.LocationBeacon memory b = _beacon(OWNER, ciphertext, at, deadline);
        bytes memory sig = _sign(d, 0, b);
        LocationBeacons.LocationBeacon memory altered = _beacon(OWNER, ciphertext, at, deadline);
        field = field % 3;
        if (field == 0) {
            if (ciphertext.length == 0) altered.ciphertext = hex"00";
            else altered.ciphertext[at_ % ciphertext.length] ^= 0x01;
        } else if (field == 1) altered.at = at ^ 1;
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
        LocationBeacons.LocationBeacon memory b = _beacon(OWNER, hex"c1", 3, block.timestamp + HOUR);
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

    /**
     * @notice Attack (invariant 10): after a sale, a beacon sealed to the previous owner's recipients
     * (its key and any responders it had) is refused, however signed; the buyer's are accepted.
     */
    function testFuzz_previousOwnersRecipientsAreRefused(uint8 responders, bytes calldata ciphertext) public {
        for (uint256 i = 0; i < responders % 7; ++i) {
            vm.prank(OWNER);
            beacons.addResponder(keccak256(abi.encode("police", i)));
        }
        vm.prank(OWNER);
        registry.transferFrom(OWNER, BUYER, ids[0]);
        vm.prank(BUYER);
        registry.reportStolen(ids[0]);
        LocationBeacons.LocationBeacon memory stale = _beacon(OWNER, ciphertext, 1, block.timestamp + HOUR);
        bytes memory sig = _sign(0, 0, stale);
        bytes32 expected = keccak256(abi.encodePacked(BUYER_KEY));
        vm.expectRevert(
            abi.encodeWithSelector(
                LocationBeacons.LocationBeaconsWrongRecipients.selector,
                BUYER,
                expected,
                keccak256(stale.recipients)
            )
        );
        beacons.postLocationBeacon(keys[0].signer, stale, sig);
        LocationBeacons.LocationBeacon memory fresh = _beacon(BUYER, ciphertext, 1, block.timestamp + HOUR);
        beacons.postLocationBeacon(keys[0].signer, fresh, _sign(0, 0, fresh));
        vm.assertEq(beacons.beaconNonce(ids[0]), 1, "the buyer's beacon posted");
    }

    /// @notice Attack: a beacon still sealed to a responder the owner removed is refused.
    function testFuzz_removedResponderIsDropped(uint8 count, uint8 removed) public {
        uint256 n = 1 + (count % 7);
        for (uint256 i = 0; i < n; ++i) {
            vm.prank(OWNER);
            beacons.addResponder(keccak256(abi.encode("responder", i)));
        }
        vm.prank(OWNER);
        registry.reportStolen(ids[1]);
        LocationBeacons.LocationBeacon memory before = _beacon(OWNER, hex"00", 1, block.timestamp + HOUR);
        bytes32 gone = keccak256(abi.encode("responder", removed % n));
        vm.prank(OWNER);
        beacons.removeResponder(gone);
        bytes memory now_ = beacons.beaconRecipients(OWNER);
        vm.assertEq(now_.length, 32 * n, "one key fewer");
        for (uint256 i = 0; i < n; ++i) vm.assertNotEq(bytes32(_word(now_, i)), gone, "removed key still listed");
        bytes memory sig = _sign(1, 0, before);
        vm.expectPartialRevert(LocationBeacons.LocationBeaconsWrongRecipients.selector);
        beacons.postLocationBeacon(keys[1].signer, before, sig);
    }

    /// @notice Recipient keys are the owner's only to set: the zero key, a duplicate, a ninth key, or a
    /// responder before a beacon key are refused.
    function test_recipientListIsChecked() public {
        address fresh = address(0xF1);
        vm.startPrank(fresh);
        vm.expectRevert(abi.encodeWithSelector(LocationBeacons.LocationBeaconsNoBeaconKey.selector, fresh));
        beacons.addResponder(bytes32(uint256(1)));
        vm.expectRevert(abi.encodeWithSelector(LocationBeacons.LocationBeaconsInvalidRecipientKey.selector, 0));
        beacons.setBeaconKey(bytes32(0));
        beacons.setBeaconKey(bytes32(uint256(1)));
        vm.expectRevert(abi.encodeWithSelector(LocationBeacons.LocationBeaconsDuplicateRecipient.selector, 1));
        beacons.addResponder(bytes32(uint256(1)));
        for (uint256 i = 2; i <= 8; ++i) beacons.addResponder(bytes32(i));
        vm.expectRevert(abi.encodeWithSelector(LocationBeacons.LocationBeaconsTooManyRecipients.selector, 8));
        beacons.addResponder(bytes32(uint256(9)));
        vm.expectRevert(abi.encodeWithSelector(LocationBeacons.LocationBeaconsUnknownResponder.selector, 9));
        beacons.removeResponder(bytes32(uint256(9)));
        vm.stopPrank();
        vm.assertEq(
            keccak256(beacons.beaconRecipients(OWNER)),
            keccak256(abi.encodePacked(OWNER_KEY)),
            "another owner list is untouched"
        );
    }

    function _word(bytes memory b, uint256 i) private pure returns (uint256 w) {
        assembly ("memory-safe") {
            w := mload(add(add(b, 32), mul(i, 32)))
        }
    }
}

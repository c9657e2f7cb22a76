// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IERC721} from "@openzeppelin/contracts/token/ERC721/IERC721.sol";
import {Multicall} from "@openzeppelin/contracts/utils/Multicall.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {IDeviceRegistry} from "../interfaces/IDeviceRegistry.sol";
import {DeviceSignature} from "../registry/DeviceSignature.sol";

/**
 * @title LocationBeacons
 * @notice Where a quarantined device says it is, for its owner: the one message a device that is out
 * of its owner's hands (reported stolen, flagged by the guardians) can still post, so that a stolen
 * device helps find itself. Relayed by anyone.
 *
 * @dev Apart from the DeviceRegistry (it only reads it): beacons are the recovery side of a device,
 * not its identity, and the registry stays under the code-size limit. Beacons carry a nonce of their
 * own per device, so a beacon never consumes a nonce that the device's registry messages use.
 */
contract LocationBeacons is EIP712, Multicall {
    /// @notice EIP-712 type of the location beacon a quarantined device may post.
    bytes32 public constant LOCATION_BEACON_TYPEHASH = keccak256(
        "LocationBeacon(uint256 device,uint256 nonce,int32 latitudeE7,int32 longitudeE7,uint64 at,uint256 deadline)"
    );

    /// @notice A location report, signed by the device.
    struct LocationBeacon {
        int32 latitudeE7;
        int32 longitudeE7;
        uint64 at;
        uint256 deadline;
    }

    IDeviceRegistry private immutable _registry;

    mapping(uint256 deviceId => uint32) private _nonces;

    event LocationBeaconPosted(
        uint256 indexed deviceId,
        address indexed owner,
        int32 latitudeE7,
        int32 longitudeE7,
        uint64 at
    );

    error LocationBeaconsUnknownKey(bytes32 keyHash);
    error LocationBeaconsNotQuarantined(uint256 deviceId, IDeviceRegistry.DeviceStatus status);
    error LocationBeaconsExpired(uint256 deadline);
    error LocationBeaconsInvalidSignature();

    /// @param registry_ the device registry whose quarantined devices post here.
    constructor(IDeviceRegistry registry_) EIP712("Custos LocationBeacons", "1") {
        _registry = registry_;
    }

    /**
     * @notice Posts a quarantined device's signed location; the event names the owner it is for.
     * @param key the device's current key; `signature` is its signature over
     * `LocationBeacon(device, nonce, latitudeE7, longitudeE7, at, deadline)` with its next beacon nonce.
     */
    function postLocationBeacon(bytes calldata key, LocationBeacon calldata beacon, bytes calldata signature) external {
        (uint256 deviceId, IDeviceRegistry.DeviceStatus status) = _registry.resolveKey(key);
        if (deviceId == 0) revert LocationBeaconsUnknownKey(keccak256(key));
        if (status != IDeviceRegistry.DeviceStatus.Quarantined) revert LocationBeaconsNotQuarantined(deviceId, status);
        if (block.timestamp > beacon.deadline) revert LocationBeaconsExpired(beacon.deadline);
        uint32 nonce = _nonces[deviceId];
        // The beacon's static fields encode in place, in the order of the EIP-712 type.
        bytes32 digest = _hashTypedDataV4(keccak256(abi.encode(LOCATION_BEACON_TYPEHASH, deviceId, nonce, beacon)));
        if (!DeviceSignature.isValidCalldata(key, digest, signature)) revert LocationBeaconsInvalidSignature();
        _nonces[deviceId] = nonce + 1;
        address owner = IERC721(address(_registry)).ownerOf(deviceId);
        emit LocationBeaconPosted(deviceId, owner, beacon.latitudeE7, beacon.longitudeE7, beacon.at);
    }

    /// @notice The nonce device `deviceId`'s next beacon must carry.
    function beaconNonce(uint256 deviceId) external view returns (uint32) {
        return _nonces[deviceId];
    }

    /// @notice The device registry.
    function registry() external view returns (IDeviceRegistry) {
        return _registry;
    }

    /// @notice The EIP-712 domain separator of beacons.
    // solhint-disable-next-line func-name-mixedcase
    function DOMAIN_SEPARATOR() external view returns (bytes32) {
        return _domainSeparatorV4();
    }
}

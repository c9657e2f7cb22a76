// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IERC721} from "@openzeppelin/contracts/token/ERC721/IERC721.sol";
import {Multicall} from "@openzeppelin/contracts/utils/Multicall.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {IDeviceRegistry} from "../interfaces/IDeviceRegistry.sol";
import {DeviceSignature} from "../registry/DeviceSignature.sol";

/**
 * @title LocationBeacons
 * @notice Where a quarantined device says it is, readable only by its owner and the responders the
 * owner registered (the police, an insurer): the one message a device that is out of its owner's
 * hands (reported stolen, flagged by the guardians) can still post, so that a stolen device helps
 * find itself. Relayed by anyone.
 *
 * The location travels HPKE-sealed (RFC 9180, DHKEM X25519) to each of the owner's recipient keys
 * (see src/beacons); on chain only the fact is public: that the device reported, when, and to whom.
 *
 * @dev Recipients are kept per owner, not per device, and a beacon is checked against the recipients
 * of the device's owner at the moment it is posted: a device that changes hands reports to its new
 * owner's keys at once, and never again to a previous owner's (DESIGN.md invariant 10). The device's
 * signature commits to the recipients and to the ciphertext (EIP-712 `bytes`: their keccak256), so
 * nobody can swap either. Apart from the DeviceRegistry (it only reads it), so the registry stays
 * under the code-size limit; beacons carry a nonce of their own per device.
 */
contract LocationBeacons is EIP712, Multicall {
    /// @notice EIP-712 type of the location beacon a quarantined device may post.
    bytes32 public constant LOCATION_BEACON_TYPEHASH = keccak256(
        "LocationBeacon(uint256 device,uint256 nonce,bytes recipients,bytes ciphertext,uint64 at,uint256 deadline)"
    );

    /// @notice Most recipient keys an owner may have: its own beacon key and up to seven responders.
    uint256 public constant MAX_RECIPIENTS = 8;

    /**
     * @notice A sealed location report, signed by the device.
     * @param recipients the owner's recipient keys, packed (32-byte X25519 public keys, the owner's
     * beacon key first): exactly `beaconRecipients(owner)` when posted.
     * @param ciphertext the location sealed to each recipient, in the recipients' order (src/beacons).
     * @param at when the device took the fix (unix seconds).
     */
    struct LocationBeacon {
        bytes recipients;
        bytes ciphertext;
        uint64 at;
        uint256 deadline;
    }

    IDeviceRegistry private immutable _registry;

    mapping(uint256 deviceId => uint32) private _nonces;
    /// @dev Per owner: its beacon key first, then its responders' keys.
    mapping(address owner => bytes32[]) private _recipients;
    /// @dev keccak256 of the packed `_recipients[owner]`, so a beacon is checked with one read.
    mapping(address owner => bytes32) private _recipientsHash;

    event LocationBeaconPosted(
        uint256 indexed deviceId,
        address indexed owner,
        uint256 nonce,
        uint64 at,
        bytes recipients,
        bytes ciphertext
    );
    /// @notice `owner`'s own beacon key is now `key` (it replaces the one before).
    event BeaconKeySet(address indexed owner, bytes32 key);
    /// @notice `owner`'s beacons are sealed to responder `key` too from now on.
    event ResponderAdded(address indexed owner, bytes32 indexed key);
    /// @notice `owner`'s beacons are no longer sealed to responder `key`.
    event ResponderRemoved(address indexed owner, bytes32 indexed key);

    error LocationBeaconsUnknownKey(bytes32 keyHash);
    error LocationBeaconsNotQuarantined(uint256 deviceId, IDeviceRegistry.DeviceStatus status);
    error LocationBeaconsExpired(uint256 deadline);
    error LocationBeaconsInvalidSignature();
    error LocationBeaconsNoRecipients(address owner);
    error LocationBeaconsWrongRecipients(address owner, bytes32 expected, bytes32 given);
    error LocationBeaconsInvalidRecipientKey(bytes32 key);
    error LocationBeaconsNoBeaconKey(address owner);
    error LocationBeaconsDuplicateRecipient(bytes32 key);
    error LocationBeaconsTooManyRecipients(uint256 max);
    error LocationBeaconsUnknownResponder(bytes32 key);

    /// @param registry_ the device registry whose quarantined devices post here.
    constructor(IDeviceRegistry registry_) EIP712("Custos LocationBeacons", "1") {
        _registry = registry_;
    }

    /**
     * @notice Posts a quarantined device's sealed location; the event names the owner and the keys it is for.
     * @param key the device's current key; `signature` is its signature over
     * `LocationBeacon(device, nonce, recipients, ciphertext, at, deadline)` with its next beacon nonce.
     */
    function postLocationBeacon(bytes calldata key, LocationBeacon calldata beacon, bytes calldata signature) external {
        (uint256 deviceId, address owner, uint32 nonce) = _verify(key, beacon, signature);
        _nonces[deviceId] = nonce + 1;
        emit LocationBeaconPosted(deviceId, owner, nonce, beacon.at, beacon.recipients, beacon.ciphertext);
    }

    /**
     * @notice Sets the caller's own beacon key (an X25519 public key): its devices' beacons are
     * sealed to it, and to its responders, from now on. Replaces the caller's previous beacon key.
     */
    function setBeaconKey(bytes32 key) external {
        _checkKey(key);
        bytes32[] storage list = _recipients[msg.sender];
        for (uint256 i = 1; i < list.length; ++i) if (list[i] == key) revert LocationBeaconsDuplicateRecipient(key);
        if (list.length == 0) list.push(key);
        else list[0] = key;
        _rehash(list);
        emit BeaconKeySet(msg.sender, key);
    }

    /// @notice Adds responder `key` (an X25519 public key) to the caller's beacon recipients.
    function addResponder(bytes32 key) external {
        _checkKey(key);
        bytes32[] storage list = _recipients[msg.sender];
        if (list.length == 0) revert LocationBeaconsNoBeaconKey(msg.sender);
        if (list.length == MAX_RECIPIENTS) revert LocationBeaconsTooManyRecipients(MAX_RECIPIENTS);
        for (uint256 i = 0; i < list.length; ++i) if (list[i] == key) revert LocationBeaconsDuplicateRecipient(key);
        list.push(key);
        _rehash(list);
        emit ResponderAdded(msg.sender, key);
    }

    /// @notice Removes responder `key` from the caller's beacon recipients (the last one takes its place).
    function removeResponder(bytes32 key) external {
        bytes32[] storage list = _recipients[msg.sender];
        for (uint256 i = 1; i < list.length; ++i) {
            if (list[i] == key) {
                list[i] = list[list.length - 1];
                list.pop();
                _rehash(list);
                emit ResponderRemoved(msg.sender, key);
                return;
            }
        }
        revert LocationBeaconsUnknownResponder(key);
    }

    /// @notice `owner`'s recipient keys, packed as a beacon must name them (empty: no beacon key yet).
    function beaconRecipients(address owner) external view returns (bytes memory) {
        return abi.encodePacked(_recipients[owner]);
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

    /// @dev Checks a beacon (device, status, deadline, recipients, signature); returns its device, owner and nonce.
    function _verify(
        bytes calldata key,
        LocationBeacon calldata beacon,
        bytes calldata signature
    ) private view returns (uint256 deviceId, address owner, uint32 nonce) {
        IDeviceRegistry.DeviceStatus status;
        (deviceId, status) = _registry.resolveKey(key);
        if (deviceId == 0) revert LocationBeaconsUnknownKey(keccak256(key));
        if (status != IDeviceRegistry.DeviceStatus.Quarantined) revert LocationBeaconsNotQuarantined(deviceId, status);
        if (block.timestamp > beacon.deadline) revert LocationBeaconsExpired(beacon.deadline);
        owner = IERC721(address(_registry)).ownerOf(deviceId);
        bytes32 expected = _recipientsHash[owner];
        if (expected == bytes32(0)) revert LocationBeaconsNoRecipients(owner);
        bytes32 recipientsHash = keccak256(beacon.recipients);
        if (recipientsHash != expected) revert LocationBeaconsWrongRecipients(owner, expected, recipientsHash);
        nonce = _nonces[deviceId];
        bytes32 digest = _digest(deviceId, nonce, recipientsHash, beacon);
        if (!DeviceSignature.isValidCalldata(key, digest, signature)) revert LocationBeaconsInvalidSignature();
    }

    /// @dev The EIP-712 digest of `beacon`: recipients and ciphertext enter as their keccak256.
    function _digest(
        uint256 deviceId,
        uint32 nonce,
        bytes32 recipientsHash,
        LocationBeacon calldata beacon
    ) private view returns (bytes32) {
        bytes32 ciphertextHash = keccak256(beacon.ciphertext);
        return
            _hashTypedDataV4(
                keccak256(
                    abi.encode(
                        LOCATION_BEACON_TYPEHASH,
                        deviceId,
                        nonce,
                        recipientsHash,
                        ciphertextHash,
                        beacon.at,
                        beacon.deadline
                    )
                )
            );
    }

    function _rehash(bytes32[] storage list) private {
        _recipientsHash[msg.sender] = keccak256(abi.encodePacked(list));
    }

    /// @dev The all-zero X25519 key is the low-order point: sealing to it would publish the location.
    function _checkKey(bytes32 key) private pure {
        if (key == bytes32(0)) revert LocationBeaconsInvalidRecipientKey(key);
    }
}

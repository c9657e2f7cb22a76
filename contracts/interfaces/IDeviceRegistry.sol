// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/**
 * @title IDeviceRegistry
 * @notice What every other Custos contract reads from the device registry: is this key an active
 * device, which one, and whose is it.
 *
 * A device key is an ERC-7913 signer (`bytes`): a 20-byte secp256k1 address, or
 * `verifier || publicKey` for keys that need a verifier contract (P-256). Unlike ERC-7913, a 20-byte
 * device key is never an ERC-1271 contract: it is checked by ecrecover alone. Contracts that accept a
 * device signature take the key from the caller, resolve it here ({resolveKey}), and check the
 * signature against that same key with {DeviceSignature}.
 */
interface IDeviceRegistry {
    /// @dev `Unknown`: no device, or a key that was rotated away. `Revoked` is final.
    enum DeviceStatus {
        Unknown,
        Active,
        Quarantined,
        Revoked
    }

    /// @dev A manufacturer's batch: `Quarantined` can be released, `Revoked` is final.
    enum BatchStatus {
        None,
        Active,
        Quarantined,
        Revoked
    }

    /// @dev What a contract that pins a device's trust reads when it starts relying on the device.
    struct DeviceTrust {
        DeviceStatus status;
        /// @dev Generation of the current key (0: the provisioned key).
        uint16 keyGeneration;
        /// @dev Whether the current key's provenance reaches the manufacturer (false: owner-installed).
        bool keyAttested;
        /// @dev Tag of the current trust period (see {keyTrustedUntil}).
        uint32 period;
    }

    /// @dev Everything the registry knows about one device, for agents and people.
    struct DeviceInfo {
        uint256 id;
        address owner;
        DeviceStatus status;
        uint48 batchId;
        uint32 nonce;
        uint16 keyGeneration;
        bool keyAttested;
        bool reportedStolen;
        bool guardianFlagged;
        uint16 ownerEpoch;
        uint32 period;
        /// @dev When the device stopped being trusted in the current period (0 while it is).
        uint40 untrustedSince;
        /// @dev The first 64 bits of the hash of the firmware the device last attested (or shipped with).
        bytes8 firmware;
        bool firmwareRevoked;
    }

    /**
     * @notice The device a key currently belongs to and its status (`(0, Unknown)` for a key never
     * registered or rotated away). Its owner is the ERC-721 `ownerOf` (or {ownership}).
     * @dev The cheapest check for a contract that takes a device's signature (no ERC-721 owner read).
     */
    function resolveKey(bytes calldata key) external view returns (uint256 deviceId, DeviceStatus status);

    /// @notice The status of device `deviceId` (`Unknown` when there is none).
    function deviceStatus(uint256 deviceId) external view returns (DeviceStatus);

    /// @notice The next nonce a signature by device `deviceId` must carry.
    function deviceNonce(uint256 deviceId) external view returns (uint32);

    /**
     * @notice The device's status, current key generation and provenance, and trust period: what a
     * contract pins when it starts relying on the device (a channel's payer, a shipment's tracker).
     */
    function deviceTrust(uint256 deviceId) external view returns (DeviceTrust memory);

    /**
     * @notice Any key the registry ever registered (current or rotated away): its device and key
     * generation, and until when what it signed in trust period `period` counts: type(uint40).max
     * while the period is current and the device `Active`; otherwise the moment trust in that period
     * ended (the device reported stolen, flagged, revoked, its batch held, or its key rotated); 0 for
     * a period the device never had or that belonged to another of its keys. `(0, 0, 0)` for an
     * unknown key. Signatures cannot be dated, so a contract bounds by `until` what a signature of
     * that period may still do (a channel's spending-rate cap at that moment, a checkpoint's signed time).
     */
    function keyTrustedUntil(
        bytes calldata key,
        uint32 period
    ) external view returns (uint256 deviceId, uint16 generation, uint40 until);

    /**
     * @notice The device's owner and ownership epoch, which moves at every transfer: authority given
     * under an earlier epoch (a lock manager, say) stays dead after the device comes back.
     */
    function ownership(uint256 deviceId) external view returns (address owner, uint16 epoch);
}

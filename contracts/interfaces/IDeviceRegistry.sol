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

    /// @dev The cheap view other contracts use.
    struct DeviceRef {
        uint256 id;
        address owner;
        DeviceStatus status;
    }

    /// @dev Everything the registry knows about one device, for agents and people.
    struct DeviceInfo {
        uint256 id;
        address owner;
        DeviceStatus status;
        uint48 batchId;
        uint32 nonce;
        uint16 keyGeneration;
        bool reportedStolen;
        bool guardianFlagged;
        /// @dev The first 128 bits of the hash of the firmware the device last attested (or shipped with).
        bytes16 firmware;
        bool firmwareRevoked;
    }

    /**
     * @notice Resolves a device key: the device it currently belongs to, its owner and status.
     * @dev A key that was never registered, or was rotated away, resolves to id 0 and `Unknown`.
     */
    function deviceByKey(bytes calldata key) external view returns (DeviceRef memory);

    /// @notice The owner and status of device `deviceId` (`Unknown` when there is none).
    function deviceById(uint256 deviceId) external view returns (DeviceRef memory);

    /**
     * @notice {deviceByKey} without the owner: the device a key currently belongs to and its status.
     * @dev The cheapest check for a contract that takes a device's signature (no ERC-721 owner read).
     */
    function resolveKey(bytes calldata key) external view returns (uint256 deviceId, DeviceStatus status);

    /// @notice {deviceById} without the owner: the status of device `deviceId` (`Unknown` when there is none).
    function deviceStatus(uint256 deviceId) external view returns (DeviceStatus);

    /// @notice The next nonce a signature by device `deviceId` must carry.
    function deviceNonce(uint256 deviceId) external view returns (uint32);
}

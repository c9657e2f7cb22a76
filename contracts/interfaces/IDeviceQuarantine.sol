// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/**
 * @title IDeviceQuarantine
 * @notice What the guardians' quorum contract calls on the device registry once a vote reaches the
 * quorum (it holds the registry's `GUARDIAN_ROLE`).
 */
interface IDeviceQuarantine {
    /// @notice Quarantines device `deviceId` for misbehaviour, with the guardians' `reason`.
    function flag(uint256 deviceId, bytes32 reason) external;

    /// @notice Lifts the guardians' quarantine of device `deviceId`.
    function clearFlag(uint256 deviceId) external;
}

// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/**
 * @title Vm
 * @notice The Hardhat 3 (EDR) cheatcodes these suites use, and nothing more. forge-std is not on
 * the npm registry in a current version, so instead of its `Vm.sol` this declares the documented
 * cheatcode interface (https://hardhat.org/docs/reference/cheatcodes/cheatcodes-overview) at the
 * cheatcode address. Every signature here is Foundry's, which EDR implements; to use another
 * cheatcode, copy its declaration from those docs.
 */
interface Vm {
    // ------------------------------------------------------------ environment
    /// @notice Sets `block.timestamp`.
    function warp(uint256 newTimestamp) external;
    /// @notice Sets `block.number`.
    function roll(uint256 newHeight) external;
    /// @notice Sets an address' balance.
    function deal(address account, uint256 newBalance) external;
    /// @notice `msg.sender` of the next call only.
    function prank(address msgSender) external;
    /// @notice `msg.sender` of every call until {stopPrank}.
    function startPrank(address msgSender) external;
    function stopPrank() external;
    /// @notice Names an address in traces and counterexamples.
    function label(address account, string calldata newLabel) external;
    /// @notice Takes a snapshot of the whole state (handlers use it for "what if" probes).
    function snapshotState() external returns (uint256 snapshotId);
    /// @notice Goes back to a snapshot; the handler's own storage goes back with it.
    function revertToState(uint256 snapshotId) external returns (bool success);

    // ------------------------------------------------------------ keys and signatures
    /// @notice The address of a secp256k1 private key.
    function addr(uint256 privateKey) external pure returns (address keyAddr);
    /// @notice secp256k1 signature of `digest` (low s).
    function sign(uint256 privateKey, bytes32 digest) external pure returns (uint8 v, bytes32 r, bytes32 s);
    /// @notice P-256 (secp256r1) signature of `digest`, s normalised to the lower half of the order.
    function signP256(uint256 privateKey, bytes32 digest) external pure returns (bytes32 r, bytes32 s);
    /// @notice The P-256 public key of `privateKey`.
    function publicKeyP256(uint256 privateKey) external pure returns (uint256 publicKeyX, uint256 publicKeyY);

    // ------------------------------------------------------------ expectations and the fuzzer
    /// @notice The next call must revert with exactly `revertData`.
    function expectRevert(bytes calldata revertData) external;
    /// @notice The next call must revert with exactly this argument-less custom error.
    function expectRevert(bytes4 revertData) external;
    /// @notice The next call must revert with a custom error of this selector (arguments not compared).
    function expectPartialRevert(bytes4 revertData) external;
    /// @notice Discards the fuzz input (it counts toward `fuzz.maxTestRejects`).
    function assume(bool condition) external pure;

    // ------------------------------------------------------------ assertions (revert with a message naming both sides)
    function assertTrue(bool condition, string calldata error) external pure;
    function assertFalse(bool condition, string calldata error) external pure;
    function assertEq(uint256 left, uint256 right, string calldata error) external pure;
    function assertEq(int256 left, int256 right, string calldata error) external pure;
    function assertEq(address left, address right, string calldata error) external pure;
    function assertEq(bytes32 left, bytes32 right, string calldata error) external pure;
    function assertEq(bool left, bool right, string calldata error) external pure;
    function assertNotEq(uint256 left, uint256 right, string calldata error) external pure;
    function assertNotEq(bytes32 left, bytes32 right, string calldata error) external pure;
    function assertLe(uint256 left, uint256 right, string calldata error) external pure;
    function assertGe(uint256 left, uint256 right, string calldata error) external pure;
    function assertLt(uint256 left, uint256 right, string calldata error) external pure;
    function assertGt(uint256 left, uint256 right, string calldata error) external pure;

    /// @notice Decimal text of a number (for messages).
    function toString(uint256 value) external pure returns (string memory);
}

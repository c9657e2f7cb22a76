// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Vm} from "./Vm.sol";

/**
 * @title TestBase
 * @notice The smallest base the suites need in place of forge-std's `Test`: the cheatcodes (`vm`),
 * `bound` for fuzz inputs, and the invariant runner's targeting hooks.
 * @dev Assertions are the cheatcodes' own (`vm.assertEq(a, b, "why")`): they revert with a message
 * that names both sides, and a revert is what fails a test, a fuzz case or an invariant.
 *
 * The invariant runner (EDR, like Foundry) asks the test contract, by these function names, what to
 * call: {targetContracts} and {targetSelectors}. A suite calls {targetHandler} in `setUp`, so that
 * only its handler's actions are called, never the contracts under test directly (the handler
 * keeps the ghost state that the invariants compare the chain with). The runner picks uniformly
 * among the selectors listed, so an action listed `weight` times ({weigh}) is picked `weight`
 * times as often: suites weigh their actions so that terminal ones (a recall, a decommission) do
 * not end every run's interesting states early.
 */
abstract contract TestBase {
    /// @dev The cheatcode address: address(uint160(uint256(keccak256("hevm cheat code")))).
    Vm internal constant vm = Vm(0x7109709ECfa91a80626fF3989D68f67F5b1DD12D);

    /// @dev What the runner reads from {targetSelectors}: the functions of `addr` it may call.
    struct FuzzSelector {
        address addr;
        bytes4[] selectors;
    }

    address[] private _targetContracts;
    FuzzSelector[] private _targetSelectors;
    bytes4[] private _weighed;

    /// @notice Contracts the invariant runner calls (read by the runner).
    function targetContracts() public view returns (address[] memory) {
        return _targetContracts;
    }

    /// @notice The functions of each target the invariant runner calls (read by the runner).
    function targetSelectors() public view returns (FuzzSelector[] memory) {
        return _targetSelectors;
    }

    /// @dev Lists action `selector` `weight` times for the next {targetHandler}.
    function weigh(bytes4 selector, uint256 weight) internal {
        for (uint256 i = 0; i < weight; ++i) _weighed.push(selector);
    }

    /// @dev Makes `handler` the only target, with only the actions {weigh}ed since the last call.
    function targetHandler(address handler) internal {
        _targetContracts.push(handler);
        _targetSelectors.push(FuzzSelector(handler, _weighed));
        delete _weighed;
    }

    /// @dev `x` itself when in [min, max], else mapped into it (no rejected inputs, and small
    /// fuzzed values, which the runner favours, stay as they are).
    function bound(uint256 x, uint256 min, uint256 max) internal pure returns (uint256) {
        require(min <= max, "bound: min > max");
        if (x >= min && x <= max) return x;
        return min + (x % (max - min + 1));
    }
}

// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {CustosTest} from "./CustosTest.sol";

/**
 * @title HandlerBase
 * @notice What every invariant handler shares: a clock, and a record of broken expectations.
 * @dev A handler's actions never revert: each one calls the contract under test inside
 * `try`/`catch`, compares the outcome (success, or refusal) with what the handler's ghost model
 * says the design allows, and records a mismatch under the number of the DESIGN.md invariant it
 * breaks ({_expect}). The suite's `invariant_N_…` functions then assert that invariant N was never
 * broken, besides comparing the chain's state with the ghost state. So every call the runner makes
 * is a real call of the contract (the runner's revert count stays 0), and a refusal the design
 * does not call for (a liveness failure: "a payee still collects …") fails a suite as surely as an
 * acceptance it forbids.
 */
abstract contract HandlerBase is CustosTest {
    /// @notice Broken expectations per DESIGN.md invariant (1–10).
    mapping(uint256 invariant => uint256) public broken;
    /// @notice The first broken expectation per invariant, for the failure message.
    mapping(uint256 invariant => string) public firstBroken;
    /// @notice Successful actions, per action name (how much of the state space a run reached).
    mapping(string action => uint256) public done;
    string[] internal _actionNames;

    /// @notice The ghost clock: `block.timestamp` of the next action.
    uint256 public clock;

    constructor() {
        clock = block.timestamp;
    }

    /// @notice Time passes: 1 second to 3 days.
    function advance(uint256 seconds_) external {
        clock += bound(seconds_, 1, 3 days);
        vm.warp(clock);
        vm.roll(block.number + 1);
    }

    /// @dev Records that invariant `invariant` was broken (`what` says how) unless `ok`.
    function _check(uint256 invariant, bool ok, string memory what) internal {
        if (ok) return;
        if (broken[invariant] == 0) firstBroken[invariant] = what;
        ++broken[invariant];
    }

    /// @dev {_check} that the call succeeded exactly when the model says it must.
    function _expect(uint256 invariant, bool expected, bool succeeded, string memory what) internal {
        _check(
            invariant,
            expected == succeeded,
            string.concat(
                what,
                expected ? ": refused, but the design allows it" : ": accepted, but the design refuses it"
            )
        );
        if (succeeded) _did(what);
    }

    /// @dev Counts a successful action `what`.
    function _did(string memory what) internal {
        if (done[what]++ == 0) _actionNames.push(what);
    }

    /// @notice "action: successes" for every action that succeeded at least once (for debugging a suite).
    function summary() external view returns (string memory text) {
        for (uint256 i = 0; i < _actionNames.length; ++i) {
            text = string.concat(text, _actionNames[i], ": ", vm.toString(done[_actionNames[i]]), "; ");
        }
    }

    /// @dev An index into a list of `length` items from a fuzzed seed (length must not be 0).
    function _pick(uint256 seed, uint256 length) internal pure returns (uint256) {
        return seed % length;
    }
}

// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/**
 * @dev An ERC-20 that, once armed, makes one call of its choosing from inside a transfer (a
 * malicious token re-entering the contract that pulls it). Records whether the call was refused.
 */
contract ReentrantToken is ERC20 {
    address private _target;
    bytes private _call;
    bool public reentered;
    bool public refused;
    bytes public reason;

    constructor() ERC20("Reentrant Token", "RNT") {}

    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }

    /// @dev The next transfer calls `target` with `data` before moving the tokens.
    function arm(address target, bytes calldata data) external {
        (_target, _call, reentered) = (target, data, false);
    }

    function _update(address from, address to, uint256 value) internal override {
        if (_target != address(0) && !reentered) {
            reentered = true;
            // solhint-disable-next-line avoid-low-level-calls
            (bool ok, bytes memory why) = _target.call(_call);
            (refused, reason) = (!ok, why);
        }
        super._update(from, to, value);
    }
}

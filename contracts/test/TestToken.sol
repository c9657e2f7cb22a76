// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {ERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/ERC20Permit.sol";

/// @dev An ERC-20 with EIP-2612 permit that anyone can mint: the tests' and the demo's token.
contract TestToken is ERC20Permit {
    constructor() ERC20("Custos Test Token", "CTT") ERC20Permit("Custos Test Token") {}

    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }
}

// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

// OpenZeppelin's ERC2771Forwarder is deployed unchanged beside the Custos contracts; this import
// makes Hardhat compile it and emit its artifact and typings.
// solhint-disable-next-line no-unused-import
import {ERC2771Forwarder} from "@openzeppelin/contracts/metatx/ERC2771Forwarder.sol";

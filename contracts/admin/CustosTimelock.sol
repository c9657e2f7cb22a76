// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

// The suite's admin is OpenZeppelin's TimelockController, deployed unchanged: every role change and
// verifier allowance is proposed, visible for the delay, then executed. This import makes Hardhat
// compile it and emit its artifact and typings.
// solhint-disable-next-line no-unused-import
import {TimelockController} from "@openzeppelin/contracts/governance/TimelockController.sol";

// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Hashes} from "@openzeppelin/contracts/utils/cryptography/Hashes.sol";

/**
 * @title Merkle
 * @notice Builds the Merkle trees the contracts check with OpenZeppelin `MerkleProof` (sorted-pair
 * keccak256): roots and proofs of small trees, in memory. A level's odd last node moves up as it
 * is, so any number of leaves works; OpenZeppelin's `StandardMerkleTree` shapes its trees
 * differently, but a proof verifies against its root in either shape, which is all the contracts see.
 */
library Merkle {
    /// @notice The root of `leaves` (the leaf itself for one leaf).
    function root(bytes32[] memory leaves) internal pure returns (bytes32) {
        require(leaves.length != 0, "Merkle: no leaves");
        bytes32[] memory level = leaves;
        while (level.length > 1) level = _up(level);
        return level[0];
    }

    /// @notice The proof of `leaves[index]` against {root}.
    function proof(bytes32[] memory leaves, uint256 index) internal pure returns (bytes32[] memory path) {
        require(index < leaves.length, "Merkle: index out of range");
        bytes32[] memory buffer = new bytes32[](64);
        uint256 length;
        bytes32[] memory level = leaves;
        while (level.length > 1) {
            uint256 sibling = index ^ 1;
            if (sibling < level.length) buffer[length++] = level[sibling];
            level = _up(level);
            index >>= 1;
        }
        path = new bytes32[](length);
        for (uint256 i = 0; i < length; ++i) path[i] = buffer[i];
    }

    /// @notice A DeviceRegistry batch leaf: keccak256(keccak256(abi.encode(deviceKey, model, firmwareHash))).
    function deviceLeaf(bytes memory deviceKey, bytes32 model, bytes32 firmwareHash) internal pure returns (bytes32) {
        return keccak256(bytes.concat(keccak256(abi.encode(deviceKey, model, firmwareHash))));
    }

    function _up(bytes32[] memory level) private pure returns (bytes32[] memory next) {
        next = new bytes32[]((level.length + 1) / 2);
        for (uint256 i = 0; i < next.length; ++i) {
            uint256 left = 2 * i;
            next[i] = left + 1 < level.length ? Hashes.commutativeKeccak256(level[left], level[left + 1]) : level[left];
        }
    }
}

// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ERC7913P256Verifier} from "@openzeppelin/contracts/utils/cryptography/verifiers/ERC7913P256Verifier.sol";

/**
 * @title ERC7913P256SHA256Verifier
 * @notice ERC-7913 verifier for P-256 keys that sign the SHA-256 of the digest they are given.
 * @dev Secure elements (ATECC608, TPM 2.0), WebAuthn authenticators and `node:crypto` cannot sign a
 * raw 32-byte digest: they hash their input with SHA-256 first. So a P-256 device signs
 * `sha256(digest)` and this verifier applies the same hash before OpenZeppelin's `P256.verify`
 * (which refuses high-s signatures). Key: `qx || qy` (64 bytes); signature: exactly `r || s` (64
 * bytes). OpenZeppelin's verifier also takes longer signatures and ignores what follows `s`; this
 * one refuses them, so that no two byte strings are the same valid signature.
 *
 * @custom:stateless
 */
contract ERC7913P256SHA256Verifier is ERC7913P256Verifier {
    /// @inheritdoc ERC7913P256Verifier
    function verify(
        bytes calldata key,
        bytes32 hash,
        bytes calldata signature
    ) public view virtual override returns (bytes4) {
        if (signature.length != 0x40) return 0xFFFFFFFF;
        return super.verify(key, sha256(abi.encodePacked(hash)), signature);
    }
}

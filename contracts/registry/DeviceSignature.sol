// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {SignatureChecker} from "@openzeppelin/contracts/utils/cryptography/SignatureChecker.sol";

/**
 * @title DeviceSignature
 * @notice How every Custos contract checks a signature by a device key (an ERC-7913 signer).
 * @dev A 20-byte key is the address of a secp256k1 key held in the device's hardware: it is checked
 * by OpenZeppelin ECDSA alone (65 bytes, low s, v of 27 or 28), never as an ERC-1271 contract. A
 * device has no contract wallet, and skipping SignatureChecker's code-size probe of the key saves a
 * cold account access (2,600 gas) on every device message. The agent's off-chain verifier applies
 * the same rule. A longer key (`verifier || publicKey`, e.g. P-256) goes to its ERC-7913 verifier
 * through OpenZeppelin SignatureChecker; which verifiers are allowed is the registry's business.
 */
library DeviceSignature {
    /// @dev Whether `signature` is device key `key`'s signature over `digest`.
    function isValidCalldata(
        bytes calldata key,
        bytes32 digest,
        bytes calldata signature
    ) internal view returns (bool) {
        if (key.length == 20) {
            (address recovered, ECDSA.RecoverError err, ) = ECDSA.tryRecoverCalldata(digest, signature);
            return err == ECDSA.RecoverError.NoError && recovered == address(bytes20(key));
        }
        return SignatureChecker.isValidSignatureNow(key, digest, signature);
    }
}

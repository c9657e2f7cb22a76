// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {CustosTest} from "../lib/CustosTest.sol";
import {ERC7913P256SHA256Verifier} from "../../../contracts/crypto/ERC7913P256SHA256Verifier.sol";
import {IERC7913SignatureVerifier} from "@openzeppelin/contracts/interfaces/IERC7913.sol";

/**
 * @title P256Signatures
 * @notice What a P-256 device key's signature is to the verifier: `r || s` by EDR's `signP256`
 * cheatcode over sha256(digest), and every way to alter it.
 */
abstract contract P256Signatures is CustosTest {
    bytes4 internal constant VALID = IERC7913SignatureVerifier.verify.selector;
    bytes4 internal constant INVALID = 0xFFFFFFFF;

    /// @dev Public key `qx || qy` and signature `r || s` (low s) of private key `pk` over sha256(digest).
    function keyAndSignature(uint256 pk, bytes32 digest) internal pure returns (bytes memory key, bytes memory sig) {
        (uint256 x, uint256 y) = vm.publicKeyP256(pk);
        (bytes32 r, bytes32 s) = vm.signP256(pk, sha256(abi.encodePacked(digest)));
        return (abi.encodePacked(x, y), abi.encodePacked(r, s));
    }

    /// @dev A private key in [1, n − 1] from any seed.
    function p256Key(uint256 seed) internal pure returns (uint256) {
        return (seed % (P256_N - 1)) + 1;
    }
}

/**
 * @title ERC7913P256SHA256VerifierFuzz
 * @notice For every key and digest: the verifier accepts exactly the low-s P-256 signature of
 * sha256(digest), 64 bytes long, by the key given; nothing else (invariant 2).
 */
contract ERC7913P256SHA256VerifierFuzz is P256Signatures {
    ERC7913P256SHA256Verifier internal verifier;

    function setUp() public {
        verifier = new ERC7913P256SHA256Verifier();
    }

    /// @notice The signature of sha256(digest) by the key verifies, for any key and digest.
    function testFuzz_acceptsTheKeysSignatureOfSha256(uint256 seed, bytes32 digest) public view {
        (bytes memory key, bytes memory sig) = keyAndSignature(p256Key(seed), digest);
        vm.assertEq(verifier.verify(key, digest, sig), VALID, "the key's signature of sha256(digest)");
    }

    /// @notice The high-s twin (r, n − s) of a valid signature is refused: no two byte strings are one signature.
    function testFuzz_refusesTheHighSTwin(uint256 seed, bytes32 digest) public view {
        (bytes memory key, bytes memory sig) = keyAndSignature(p256Key(seed), digest);
        (bytes32 r, bytes32 s) = abi.decode(sig, (bytes32, bytes32));
        vm.assertNotEq(
            verifier.verify(key, digest, abi.encodePacked(r, bytes32(P256_N - uint256(s)))),
            VALID,
            "high s"
        );
    }

    /// @notice A signature with bytes added or cut is refused (OpenZeppelin's verifier alone would
    /// ignore what follows s; this one takes exactly 64 bytes).
    function testFuzz_refusesAnyOtherLength(uint256 seed, bytes32 digest, bytes memory extra, uint8 cut) public view {
        (bytes memory key, bytes memory sig) = keyAndSignature(p256Key(seed), digest);
        bytes memory altered;
        if (extra.length != 0) altered = bytes.concat(sig, extra);
        else {
            altered = new bytes(bound(cut, 0, 63));
            for (uint256 i = 0; i < altered.length; ++i) altered[i] = sig[i];
        }
        vm.assertEq(verifier.verify(key, digest, altered), INVALID, "only exactly 64 bytes");
    }

    /// @notice Another key's signature, a signature of another digest, a signature of the raw digest
    /// (no sha256), or any flipped bit, is refused.
    function testFuzz_refusesAnythingElse(
        uint256 seed,
        uint256 otherSeed,
        bytes32 digest,
        bytes32 other,
        uint256 how
    ) public view {
        uint256 pk = p256Key(seed);
        (bytes memory key, bytes memory sig) = keyAndSignature(pk, digest);
        how = how % 4;
        if (how == 0) {
            vm.assume(p256Key(otherSeed) != pk);
            (, sig) = keyAndSignature(p256Key(otherSeed), digest);
        } else if (how == 1) {
            vm.assume(other != digest);
            (, sig) = keyAndSignature(pk, other);
        } else if (how == 2) {
            (bytes32 r, bytes32 s) = vm.signP256(pk, digest);
            sig = abi.encodePacked(r, s);
        } else {
            uint256 bit = otherSeed % 512;
            sig[bit / 8] ^= bytes1(uint8(1 << (bit % 8)));
        }
        vm.assertNotEq(verifier.verify(key, digest, sig), VALID, "not the key's signature of sha256(digest)");
    }

    /// @notice A key that is not exactly `qx || qy` (64 bytes) verifies nothing.
    function testFuzz_refusesMalformedKeys(uint256 seed, bytes32 digest, bytes memory extra, uint8 cut) public view {
        (bytes memory key, bytes memory sig) = keyAndSignature(p256Key(seed), digest);
        bytes memory altered;
        if (extra.length != 0) altered = bytes.concat(key, extra);
        else {
            altered = new bytes(bound(cut, 0, 63));
            for (uint256 i = 0; i < altered.length; ++i) altered[i] = key[i];
        }
        vm.assertNotEq(verifier.verify(altered, digest, sig), VALID, "a malformed key");
    }
}

// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {CustosTest} from "../lib/CustosTest.sol";
import {HandlerBase} from "../lib/HandlerBase.sol";
import {P256Signatures} from "./ERC7913P256SHA256Verifier.fuzz.sol";
import {ERC7913P256SHA256Verifier} from "../../../contracts/crypto/ERC7913P256SHA256Verifier.sol";

/**
 * @title VerifierHandler
 * @notice Verifications of random keys, digests and signatures, each valid or altered one way;
 * every answer is compared with what invariant 2 allows.
 */
contract VerifierHandler is HandlerBase, P256Signatures {
    ERC7913P256SHA256Verifier public immutable verifier;

    constructor(ERC7913P256SHA256Verifier verifier_) {
        verifier = verifier_;
    }

    /// @notice Verifies key `seed`'s signature of `digest`, valid (`how` 0–3) or altered (high s,
    /// another digest, bytes added, a bit flipped, the raw digest signed).
    function verify(uint256 seed, bytes32 digest, uint256 how) external {
        uint256 pk = p256Key(seed);
        (bytes memory key, bytes memory sig) = keyAndSignature(pk, digest);
        uint256 h = how % 9;
        if (h == 4) {
            (bytes32 r, bytes32 s) = abi.decode(sig, (bytes32, bytes32));
            sig = abi.encodePacked(r, bytes32(P256_N - uint256(s)));
        } else if (h == 5) {
            digest = keccak256(abi.encode(digest));
        } else if (h == 6) {
            sig = bytes.concat(sig, bytes1(uint8(how >> 8)));
        } else if (h == 7) {
            uint256 bit = (how >> 8) % 512;
            sig[bit / 8] ^= bytes1(uint8(1 << (bit % 8)));
        } else if (h == 8) {
            (bytes32 r, bytes32 s) = vm.signP256(pk, digest);
            sig = abi.encodePacked(r, s);
        }
        bool valid = verifier.verify(key, digest, sig) == VALID;
        _expect(2, h < 4, valid, h < 4 ? "a valid signature" : "an altered signature");
    }
}

/**
 * @title ERC7913P256SHA256VerifierInvariants
 * @notice Invariant 2 of the (stateless) P-256 verifier over random sequences of verifications.
 */
contract ERC7913P256SHA256VerifierInvariants is CustosTest {
    VerifierHandler internal handler;

    function setUp() public {
        handler = new VerifierHandler(new ERC7913P256SHA256Verifier());
        weigh(VerifierHandler.verify.selector, 1);
        targetHandler(address(handler));
    }

    /// @notice Invariant 2: malleable (high-s), malformed and foreign signatures are refused, and the
    /// key's own low-s signature of sha256(digest) is accepted, whatever came before.
    function invariant_2_exactlyTheCanonicalSignatureVerifies() public view {
        vm.assertEq(handler.broken(2), 0, handler.firstBroken(2));
    }
}

// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {CustosTest} from "../lib/CustosTest.sol";
import {Merkle} from "../lib/Merkle.sol";
import {DeviceRegistry} from "../../../contracts/registry/DeviceRegistry.sol";
import {IDeviceRegistry} from "../../../contracts/interfaces/IDeviceRegistry.sol";
import {ERC7913P256SHA256Verifier} from "../../../contracts/crypto/ERC7913P256SHA256Verifier.sol";

/**
 * @title DeviceRegistryFuzz
 * @notice Properties of the DeviceRegistry's parsers and checks that must hold for every input:
 * Merkle proofs of batch leaves, device signatures (secp256k1 and P-256) over `DeviceClaim` and
 * device messages, key shapes, and the packed fields (48-bit batch ids, 192-bit device ids, the
 * 64-bit firmware tag, uint40 times).
 */
contract DeviceRegistryFuzz is CustosTest {
    DeviceRegistry internal registry;
    ERC7913P256SHA256Verifier internal verifier;
    address internal constant OWNER = address(0xC1);

    function setUp() public {
        vm.warp(T0);
        (registry, verifier) = deployRegistry(threeGuardians());
    }

    /// @dev `n` keys from `seed`, P-256 where `p256Mask` has the bit.
    function _keys(uint256 seed, uint256 n, uint256 p256Mask) internal view returns (DeviceKey[] memory keys) {
        keys = new DeviceKey[](n);
        for (uint256 i = 0; i < n; ++i) {
            keys[i] = newKey(uint256(keccak256(abi.encode(seed, i))), (p256Mask >> i) & 1 == 1, address(verifier));
        }
    }

    function _claimDigest(address owner, uint48 batchId, uint256 deadline) internal view returns (bytes32) {
        return
            typedDigest(
                registry.DOMAIN_SEPARATOR(),
                keccak256(abi.encode(registry.DEVICE_CLAIM_TYPEHASH(), owner, batchId, deadline))
            );
    }

    // ------------------------------------------------------------ Merkle proofs (invariant 3)

    /// @notice Any leaf of any batch of 1–40 keys (either kind) is claimed with its proof, once:
    /// the device id is the top 192 bits of its key's hash, and a second claim is refused.
    function testFuzz_claimsAnyLeafOfAnyBatchOnce(uint256 seed, uint256 n, uint256 index, uint256 p256Mask) public {
        n = bound(n, 1, 40);
        index = bound(index, 0, n - 1);
        DeviceKey[] memory keys = _keys(seed, n, p256Mask);
        uint48 batchId = commit(registry, MANUFACTURER, keys);
        (DeviceRegistry.Claim memory c, bytes32[] memory proof, bytes memory sig) = claimArgs(
            registry,
            keys,
            index,
            batchId,
            OWNER
        );
        uint256 id = registry.claim(c, proof, sig);
        vm.assertEq(id, uint256(keccak256(keys[index].signer)) >> 64, "device id: top 192 bits of the key hash");
        vm.assertEq(registry.ownerOf(id), OWNER, "owner");
        vm.assertFalse(registry.isKeyAvailable(keys[index].signer), "the key is taken");
        vm.expectRevert(
            abi.encodeWithSelector(DeviceRegistry.DeviceRegistryKeyTaken.selector, keccak256(keys[index].signer))
        );
        registry.claim(c, proof, sig);
    }

    /// @notice A proof with any one node changed, a proof cut short or lengthened, or a leaf with
    /// another model or firmware hash, is refused: only the committed leaves can be claimed.
    function testFuzz_refusesAnyAlteredProofOrLeaf(
        uint256 seed,
        uint256 n,
        uint256 index,
        uint256 how,
        bytes32 noise
    ) public {
        n = bound(n, 2, 24);
        index = bound(index, 0, n - 1);
        DeviceKey[] memory keys = _keys(seed, n, 0);
        uint48 batchId = commit(registry, MANUFACTURER, keys);
        (DeviceRegistry.Claim memory c, bytes32[] memory proof, bytes memory sig) = claimArgs(
            registry,
            keys,
            index,
            batchId,
            OWNER
        );
        vm.assume(noise != bytes32(0));
        how = how % 5;
        if (how == 0) {
            proof[uint256(noise) % proof.length] ^= noise;
        } else if (how == 1) {
            bytes32[] memory shorter = new bytes32[](proof.length - 1);
            for (uint256 i = 0; i < shorter.length; ++i) shorter[i] = proof[i];
            proof = shorter;
        } else if (how == 2) {
            bytes32[] memory longer = new bytes32[](proof.length + 1);
            for (uint256 i = 0; i < proof.length; ++i) longer[i] = proof[i];
            longer[proof.length] = noise;
            proof = longer;
        } else if (how == 3) {
            c.model ^= noise;
        } else {
            c.firmwareHash ^= noise;
        }
        vm.expectRevert(DeviceRegistry.DeviceRegistryInvalidProof.selector);
        registry.claim(c, proof, sig);
    }

    /// @notice A valid proof of another batch is refused: a leaf counts only in the batch that committed it.
    function testFuzz_refusesAProofOfAnotherBatch(uint256 seed, uint256 n) public {
        n = bound(n, 1, 16);
        DeviceKey[] memory keys = _keys(seed, n, 0);
        DeviceKey[] memory others = _keys(~seed, n, 0);
        commit(registry, MANUFACTURER, keys);
        uint48 otherBatch = commit(registry, MANUFACTURER, others);
        (DeviceRegistry.Claim memory c, bytes32[] memory proof, bytes memory sig) = claimArgs(
            registry,
            keys,
            0,
            otherBatch,
            OWNER
        );
        vm.expectRevert(DeviceRegistry.DeviceRegistryInvalidProof.selector);
        registry.claim(c, proof, sig);
    }

    // ------------------------------------------------------------ signatures (invariant 2)

    /**
     * @notice A claim signature is refused unless it is the leaf key's, over exactly this owner,
     * batch and deadline, in this registry's domain, low-s and of the exact length: any one of
     * those changed (another owner, deadline or batch signed; another chain or contract; another
     * key; the high-s twin; a byte added or cut) is `DeviceRegistryInvalidSignature`.
     */
    function testFuzz_claimSignatureIsBoundToEverything(
        uint256 seed,
        bool p256,
        uint256 how,
        address otherOwner,
        uint256 otherDeadline
    ) public {
        DeviceKey[] memory keys = _keys(seed, 1, p256 ? 1 : 0);
        uint48 batchId = commit(registry, MANUFACTURER, keys);
        (DeviceRegistry.Claim memory c, bytes32[] memory proof, ) = claimArgs(registry, keys, 0, batchId, OWNER);
        bytes32 digest;
        how = how % 8;
        if (how == 0) {
            vm.assume(otherOwner != OWNER);
            digest = _claimDigest(otherOwner, batchId, c.deadline);
        } else if (how == 1) {
            vm.assume(otherDeadline != c.deadline);
            digest = _claimDigest(OWNER, batchId, otherDeadline);
        } else if (how == 2) {
            digest = _claimDigest(OWNER, batchId ^ 1, c.deadline);
        } else if (how == 3 || how == 4) {
            bytes32 domain = keccak256(
                abi.encode(
                    keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"),
                    keccak256("Custos DeviceRegistry"),
                    keccak256("1"),
                    how == 3 ? block.chainid + 1 + (otherDeadline % 1000) : block.chainid,
                    how == 3 ? address(registry) : otherOwner
                )
            );
            vm.assume(domain != registry.DOMAIN_SEPARATOR());
            digest = typedDigest(
                domain,
                keccak256(abi.encode(registry.DEVICE_CLAIM_TYPEHASH(), OWNER, batchId, c.deadline))
            );
        } else {
            digest = _claimDigest(OWNER, batchId, c.deadline);
        }
        bytes memory sig = signDigest(keys[0], digest);
        if (how == 5) {
            DeviceKey memory other = newKey(uint256(keccak256(abi.encode(seed, "other"))), p256, address(verifier));
            sig = signDigest(other, digest);
        } else if (how == 6) {
            sig = highS(p256, sig);
        } else if (how == 7) {
            sig = otherDeadline % 2 == 0 ? bytes.concat(sig, bytes1(uint8(otherDeadline >> 8))) : _cut(sig);
        }
        vm.expectRevert(DeviceRegistry.DeviceRegistryInvalidSignature.selector);
        registry.claim(c, proof, sig);
    }

    /// @notice A claim is refused after its deadline, whatever the deadline (uint256) and the time.
    function testFuzz_claimDeadline(uint256 deadline, uint40 when) public {
        vm.assume(when > 0);
        vm.warp(when);
        DeviceKey[] memory keys = _keys(deadline, 1, 0);
        uint48 batchId = commit(registry, MANUFACTURER, keys);
        (DeviceRegistry.Claim memory c, bytes32[] memory proof, ) = claimArgs(registry, keys, 0, batchId, OWNER);
        c.deadline = deadline;
        bytes memory sig = signDigest(keys[0], _claimDigest(OWNER, batchId, deadline));
        if (deadline < when) {
            vm.expectRevert(abi.encodeWithSelector(DeviceRegistry.DeviceRegistryExpired.selector, deadline));
            registry.claim(c, proof, sig);
        } else {
            vm.assertEq(registry.claim(c, proof, sig), deviceIdOf(keys[0].signer), "claimed up to its deadline");
        }
    }

    /**
     * @notice A device message (firmware attestation) counts only with the device's next nonce, once:
     * the nonce moves by one per message, the firmware's first 64 bits are what the registry keeps
     * (`bytes8`), and the same message relayed again is refused.
     */
    function testFuzz_deviceMessageNonceAndFirmwareTag(
        uint256 seed,
        bool p256,
        bytes32 firmwareHash,
        uint8 count
    ) public {
        DeviceKey[] memory keys = _keys(seed, 1, p256 ? 1 : 0);
        (, uint256[] memory ids) = provision(registry, keys, OWNER);
        count = uint8(bound(count, 1, 5));
        bytes memory sig;
        bytes32 fw;
        uint256 deadline = block.timestamp + HOUR;
        for (uint256 i = 0; i < count; ++i) {
            fw = keccak256(abi.encode(firmwareHash, i));
            if (i + 1 == count) fw = firmwareHash;
            sig = signDigest(keys[0], _firmwareDigest(ids[0], fw, i, deadline));
            registry.attestFirmware(keys[0].signer, fw, deadline, sig);
        }
        vm.assertEq(registry.deviceNonce(ids[0]), count, "one nonce per message");
        vm.assertEq(
            registry.deviceInfo(ids[0]).firmware,
            bytes8(firmwareHash),
            "firmware tag: the hash's first 64 bits"
        );
        vm.expectRevert(DeviceRegistry.DeviceRegistryInvalidSignature.selector);
        registry.attestFirmware(keys[0].signer, fw, deadline, sig);
    }

    /// @notice A revoked firmware shows for exactly the devices whose tag (first 64 bits) it shares,
    /// and only for the revoking manufacturer's batches.
    function testFuzz_firmwareRevocationMatchesTheTag(bytes32 revoked, bool sameTag, bool otherManufacturer) public {
        DeviceKey[] memory keys = _keys(uint256(revoked), 1, 0);
        (, uint256[] memory ids) = provision(registry, keys, OWNER);
        bytes32 attested = sameTag ? (revoked ^ bytes32(uint256(1))) : (revoked ^ bytes32(bytes1(0x01)));
        bytes memory sig = signDigest(keys[0], _firmwareDigest(ids[0], attested, 0, block.timestamp + HOUR));
        registry.attestFirmware(keys[0].signer, attested, block.timestamp + HOUR, sig);
        vm.prank(otherManufacturer ? MANUFACTURER2 : MANUFACTURER);
        registry.revokeFirmware(revoked);
        vm.assertEq(
            registry.deviceInfo(ids[0]).firmwareRevoked,
            sameTag && !otherManufacturer,
            "revoked exactly when the tag matches and the manufacturer is the batch's"
        );
    }

    function _firmwareDigest(uint256 id, bytes32 fw, uint256 nonce, uint256 deadline) internal view returns (bytes32) {
        return
            typedDigest(
                registry.DOMAIN_SEPARATOR(),
                keccak256(abi.encode(registry.FIRMWARE_ATTESTATION_TYPEHASH(), id, fw, nonce, deadline))
            );
    }

    // ------------------------------------------------------------ key shapes and packed ids

    /**
     * @notice Key shapes: a key shorter than 20 bytes, or longer with a prefix that is not an allowed
     * verifier, is `DeviceRegistryUnsupportedKey` even with a valid proof; a 20-byte key that no
     * private key signed for fails its signature.
     */
    function testFuzz_keyShapes(bytes memory key, bool verifierPrefix) public {
        if (verifierPrefix && key.length > 20) {
            for (uint256 i = 0; i < 20; ++i) key[i] = bytes20(address(verifier))[i];
        }
        bytes32[] memory leaves = new bytes32[](1);
        leaves[0] = Merkle.deviceLeaf(key, MODEL, FIRMWARE);
        vm.prank(MANUFACTURER);
        uint48 batchId = registry.commitBatch(Merkle.root(leaves));
        DeviceRegistry.Claim memory c = DeviceRegistry.Claim(OWNER, batchId, key, MODEL, FIRMWARE, block.timestamp + 1);
        bool supported = key.length == 20 || (key.length > 20 && verifierPrefix);
        if (supported) vm.expectPartialRevert(DeviceRegistry.DeviceRegistryInvalidSignature.selector);
        else vm.expectRevert(abi.encodeWithSelector(DeviceRegistry.DeviceRegistryUnsupportedKey.selector, key));
        registry.claim(c, new bytes32[](0), new bytes(65));
    }

    /// @notice A batch id is 48 bits of keccak256(manufacturer, root): two manufacturers committing the
    /// same root get two ids, each its own; a manufacturer cannot commit a root twice.
    function testFuzz_batchIdsBelongToTheirManufacturer(bytes32 root) public {
        vm.assume(root != bytes32(0));
        uint48 a = registry.batchIdOf(MANUFACTURER, root);
        uint48 b = registry.batchIdOf(MANUFACTURER2, root);
        vm.assume(a != 0 && b != 0 && a != b);
        vm.prank(MANUFACTURER);
        vm.assertEq(registry.commitBatch(root), a, "batchIdOf(manufacturer, root)");
        vm.assertEq(a, uint48(uint256(keccak256(abi.encode(MANUFACTURER, root)))), "the low 48 bits of the hash");
        vm.prank(MANUFACTURER2);
        vm.assertEq(registry.commitBatch(root), b, "the other manufacturer's own id");
        vm.assertEq(registry.batch(a).manufacturer, MANUFACTURER, "first batch keeps its manufacturer");
        vm.assertEq(registry.batch(b).manufacturer, MANUFACTURER2, "second batch is the other's");
        vm.prank(MANUFACTURER);
        vm.expectRevert(abi.encodeWithSelector(DeviceRegistry.DeviceRegistryBatchExists.selector, a));
        registry.commitBatch(root);
    }

    /**
     * @notice Times are packed in uint40: at any time a device is reported stolen, `keyTrustedUntil`
     * of its period is that time exactly, and a release starts a new period with a fresh tag while
     * the old one keeps its end.
     */
    function testFuzz_trustEndIsTheReportTime(uint256 seed, uint40 reportedAt, uint32 gap) public {
        vm.assume(reportedAt > T0 && reportedAt < type(uint40).max - uint40(gap) - 1);
        DeviceKey[] memory keys = _keys(seed, 1, 0);
        (, uint256[] memory ids) = provision(registry, keys, OWNER);
        vm.warp(reportedAt);
        vm.prank(OWNER);
        registry.reportStolen(ids[0]);
        (, , uint40 until) = registry.keyTrustedUntil(keys[0].signer, 0);
        vm.assertEq(until, reportedAt, "trust ended at the report");
        vm.warp(uint256(reportedAt) + gap + 1);
        vm.roll(block.number + 1);
        vm.prank(OWNER);
        registry.release(ids[0]);
        uint32 next = registry.deviceTrust(ids[0]).period;
        vm.assertNotEq(next, 0, "a fresh period tag");
        (, , until) = registry.keyTrustedUntil(keys[0].signer, 0);
        vm.assertEq(until, reportedAt, "the old period keeps its end");
        (, , until) = registry.keyTrustedUntil(keys[0].signer, next);
        vm.assertEq(until, TRUSTED_FOREVER, "the new period is trusted");
    }

    /// @notice A period the device never had gives 0, for any tag.
    function testFuzz_unknownPeriodCountsNothing(uint256 seed, uint32 period) public {
        vm.assume(period != 0);
        DeviceKey[] memory keys = _keys(seed, 1, 0);
        provision(registry, keys, OWNER);
        (uint256 id, , uint40 until) = registry.keyTrustedUntil(keys[0].signer, period);
        vm.assertEq(id, deviceIdOf(keys[0].signer), "the key's device");
        vm.assertEq(until, 0, "nothing counts in a period the device never had");
    }

    // ------------------------------------------------------------ helpers

    function highS(bool p256, bytes memory sig) internal pure returns (bytes memory) {
        (bytes32 r, bytes32 s) = abi.decode(sig, (bytes32, bytes32));
        if (p256) return abi.encodePacked(r, bytes32(P256_N - uint256(s)));
        return abi.encodePacked(r, bytes32(SECP256K1_N - uint256(s)), uint8(sig[64]) == 27 ? uint8(28) : uint8(27));
    }

    function _cut(bytes memory sig) internal pure returns (bytes memory out) {
        out = new bytes(sig.length - 1);
        for (uint256 i = 0; i < out.length; ++i) out[i] = sig[i];
    }
}

// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {TestBase} from "./TestBase.sol";
import {Merkle} from "./Merkle.sol";
import {DeviceRegistry} from "../../../contracts/registry/DeviceRegistry.sol";
import {GuardianQuorum} from "../../../contracts/guardians/GuardianQuorum.sol";
import {ERC7913P256SHA256Verifier} from "../../../contracts/crypto/ERC7913P256SHA256Verifier.sol";

/**
 * @title CustosTest
 * @notice What every Custos suite and handler shares: device keys of both kinds and their
 * signatures, EIP-712 digests, the registry deployment, and provisioning (commit a batch, claim).
 * The Solidity counterpart of test/helpers/registry.ts.
 */
abstract contract CustosTest is TestBase {
    /// @notice A device key: its private key, its curve, and its ERC-7913 signer bytes (what the
    /// contracts take as `key`: a 20-byte address, or `verifier || qx || qy` for P-256).
    struct DeviceKey {
        uint256 pk;
        bool p256;
        bytes signer;
    }

    bytes32 internal constant MODEL = "custos-lock-v1";
    bytes32 internal constant FIRMWARE = keccak256("firmware 1.0.0");
    uint8 internal constant QUORUM = 2;
    uint256 internal constant HOUR = 3600;
    /// @dev `type(uint40).max`: `keyTrustedUntil` of a current period that is still trusted.
    uint40 internal constant TRUSTED_FOREVER = type(uint40).max;
    uint256 internal constant SECP256K1_N = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141;
    uint256 internal constant P256_N = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551;

    address internal constant ADMIN = address(0xAD);
    address internal constant MANUFACTURER = address(0xA1);
    address internal constant MANUFACTURER2 = address(0xA2);
    /// @dev No account ever calls as the forwarder: ERC-2771 plays no part in these suites.
    address internal constant FORWARDER = address(0xF0);
    /// @dev A start time far from 0 (deadlines and `now - x` never underflow).
    uint256 internal constant T0 = 1_750_000_000;

    // ------------------------------------------------------------ keys and signatures

    /// @notice The key of private key `seed` (reduced into both curves' range) of either kind.
    function newKey(uint256 seed, bool p256, address verifier) internal pure returns (DeviceKey memory k) {
        k.pk = (seed % (P256_N - 1)) + 1;
        k.p256 = p256;
        if (p256) {
            (uint256 x, uint256 y) = vm.publicKeyP256(k.pk);
            k.signer = abi.encodePacked(verifier, x, y);
        } else {
            k.signer = abi.encodePacked(vm.addr(k.pk));
        }
    }

    /// @notice `k`'s signature over `digest`: `r || s || v` (secp256k1) or `r || s` over sha256(digest) (P-256).
    function signDigest(DeviceKey memory k, bytes32 digest) internal pure returns (bytes memory) {
        if (k.p256) {
            (bytes32 r, bytes32 s) = vm.signP256(k.pk, sha256(abi.encodePacked(digest)));
            return abi.encodePacked(r, s);
        }
        return signEoa(k.pk, digest);
    }

    /// @notice An EOA's signature `r || s || v` over `digest`.
    function signEoa(uint256 pk, bytes32 digest) internal pure returns (bytes memory) {
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(pk, digest);
        return abi.encodePacked(r, s, v);
    }

    /// @notice The EIP-712 digest of `structHash` under `domainSeparator`.
    function typedDigest(bytes32 domainSeparator, bytes32 structHash) internal pure returns (bytes32) {
        return keccak256(abi.encodePacked("\x19\x01", domainSeparator, structHash));
    }

    /// @notice The device id a key is first registered under: the top 192 bits of its hash.
    function deviceIdOf(bytes memory signer) internal pure returns (uint256) {
        return uint256(keccak256(signer)) >> 64;
    }

    // ------------------------------------------------------------ the registry

    /// @notice Deploys the P-256 verifier and the registry (two manufacturers, `guardians`, quorum {QUORUM}).
    function deployRegistry(
        address[] memory guardians
    ) internal returns (DeviceRegistry registry, ERC7913P256SHA256Verifier verifier) {
        verifier = new ERC7913P256SHA256Verifier();
        address[] memory manufacturers = new address[](2);
        (manufacturers[0], manufacturers[1]) = (MANUFACTURER, MANUFACTURER2);
        registry = new DeviceRegistry(ADMIN, FORWARDER, QUORUM, address(verifier), manufacturers, guardians);
        vm.label(address(registry), "DeviceRegistry");
        vm.label(registry.guardianQuorum(), "GuardianQuorum");
    }

    /// @notice Three guardian addresses.
    function threeGuardians() internal pure returns (address[] memory g) {
        g = new address[](3);
        (g[0], g[1], g[2]) = (address(0xB1), address(0xB2), address(0xB3));
    }

    /// @notice The batch leaves of `keys` (model {MODEL}, firmware {FIRMWARE}).
    function leavesOf(DeviceKey[] memory keys) internal pure returns (bytes32[] memory leaves) {
        leaves = new bytes32[](keys.length);
        for (uint256 i = 0; i < keys.length; ++i) leaves[i] = Merkle.deviceLeaf(keys[i].signer, MODEL, FIRMWARE);
    }

    /// @notice Commits the batch of `keys` as `manufacturer`; returns its id.
    function commit(DeviceRegistry registry, address manufacturer, DeviceKey[] memory keys) internal returns (uint48) {
        vm.prank(manufacturer);
        return registry.commitBatch(Merkle.root(leavesOf(keys)));
    }

    /// @notice The claim of `keys[index]` of batch `batchId` for `owner`, with its proof and the device's signature.
    function claimArgs(
        DeviceRegistry registry,
        DeviceKey[] memory keys,
        uint256 index,
        uint48 batchId,
        address owner
    ) internal view returns (DeviceRegistry.Claim memory c, bytes32[] memory proof, bytes memory signature) {
        c = DeviceRegistry.Claim(owner, batchId, keys[index].signer, MODEL, FIRMWARE, block.timestamp + HOUR);
        proof = Merkle.proof(leavesOf(keys), index);
        signature = signDigest(
            keys[index],
            typedDigest(
                registry.DOMAIN_SEPARATOR(),
                keccak256(abi.encode(registry.DEVICE_CLAIM_TYPEHASH(), owner, batchId, c.deadline))
            )
        );
    }

    /// @notice Commits a batch of `keys` (as {MANUFACTURER}) and claims each for `owner`; returns the ids.
    function provision(
        DeviceRegistry registry,
        DeviceKey[] memory keys,
        address owner
    ) internal returns (uint48 batchId, uint256[] memory ids) {
        batchId = commit(registry, MANUFACTURER, keys);
        ids = new uint256[](keys.length);
        for (uint256 i = 0; i < keys.length; ++i) {
            (DeviceRegistry.Claim memory c, bytes32[] memory proof, bytes memory sig) = claimArgs(
                registry,
                keys,
                i,
                batchId,
                owner
            );
            ids[i] = registry.claim(c, proof, sig);
        }
    }

    /// @notice A rotation of `deviceId` to `newKey`, signed by it and (when given) by `oldKey`.
    function rotationOf(
        DeviceRegistry registry,
        uint256 deviceId,
        DeviceKey memory newKey_,
        DeviceKey memory oldKey,
        bool withOldKey
    ) internal view returns (DeviceRegistry.Rotation memory r) {
        uint256 deadline = block.timestamp + HOUR;
        bytes32 digest = typedDigest(
            registry.DOMAIN_SEPARATOR(),
            keccak256(
                abi.encode(
                    registry.KEY_ROTATION_TYPEHASH(),
                    deviceId,
                    keccak256(newKey_.signer),
                    registry.deviceNonce(deviceId),
                    deadline
                )
            )
        );
        r.newKey = newKey_.signer;
        r.deadline = deadline;
        r.newKeySignature = signDigest(newKey_, digest);
        if (withOldKey) {
            r.oldKey = oldKey.signer;
            r.oldKeySignature = signDigest(oldKey, digest);
        }
    }

    /// @notice The guardians (the first {QUORUM} of `guardians`) quarantine `deviceId`, or lift their flag.
    function guardiansDecide(
        DeviceRegistry registry,
        address[] memory guardians,
        uint256 deviceId,
        bool flag
    ) internal {
        GuardianQuorum q = GuardianQuorum(registry.guardianQuorum());
        for (uint256 i = 0; i < q.quorum(); ++i) {
            vm.prank(guardians[i]);
            if (flag) q.flag(deviceId, "misbehaving");
            else q.clearFlag(deviceId);
        }
    }
}

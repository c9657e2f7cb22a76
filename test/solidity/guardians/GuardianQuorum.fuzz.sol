// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {CustosTest} from "../lib/CustosTest.sol";
import {DeviceRegistry} from "../../../contracts/registry/DeviceRegistry.sol";
import {GuardianQuorum} from "../../../contracts/guardians/GuardianQuorum.sol";
import {ERC7913P256SHA256Verifier} from "../../../contracts/crypto/ERC7913P256SHA256Verifier.sol";

/**
 * @title GuardianQuorumFuzz
 * @notice The M-of-N rule for any quorum, vote order and removal: a decision needs M distinct
 * current guardians in one round, a vote counts once, and a removal voids every open vote.
 */
contract GuardianQuorumFuzz is CustosTest {
    DeviceRegistry internal registry;
    GuardianQuorum internal quorum;
    uint256 internal device;
    address[] internal guardians;

    function setUp() public {
        vm.warp(T0);
        address[] memory g = new address[](5);
        for (uint256 i = 0; i < 5; ++i) g[i] = address(uint160(0xB1 + i));
        guardians = g;
        ERC7913P256SHA256Verifier verifier;
        verifier = new ERC7913P256SHA256Verifier();
        address[] memory manufacturers = new address[](1);
        manufacturers[0] = MANUFACTURER;
        registry = new DeviceRegistry(ADMIN, FORWARDER, 1, address(verifier), manufacturers, g);
        quorum = GuardianQuorum(registry.guardianQuorum());
        DeviceKey[] memory keys = new DeviceKey[](1);
        keys[0] = newKey(0x9000, false, address(verifier));
        (, uint256[] memory ids) = provision(registry, keys, address(0xC1));
        device = ids[0];
    }

    function _flagged() internal view returns (bool) {
        return registry.deviceInfo(device).guardianFlagged;
    }

    /**
     * @notice For any quorum M of 1–5 and any order of the five guardians, the device is flagged by
     * exactly the M-th distinct vote; a guardian voting twice in the round is refused; the same
     * then holds for clearing.
     */
    function testFuzz_decidesAtTheMthDistinctVote(uint8 m, uint256 order, uint256 again) public {
        m = uint8(bound(m, 1, 5));
        vm.prank(ADMIN);
        quorum.setQuorum(m);
        uint256[5] memory perm = _permutation(order);
        for (uint256 phase = 0; phase < 2; ++phase) {
            bool flag = phase == 0;
            for (uint256 i = 0; i < m; ++i) {
                vm.assertEq(_flagged(), !flag, "no decision before the M-th vote");
                if (i > 0 && again % 2 == 1) {
                    address earlier = guardians[perm[again % i]];
                    vm.prank(earlier);
                    vm.expectRevert(
                        abi.encodeWithSelector(GuardianQuorum.GuardianQuorumAlreadyVoted.selector, device, earlier)
                    );
                    if (flag) quorum.flag(device, "x");
                    else quorum.clearFlag(device);
                }
                vm.prank(guardians[perm[i]]);
                if (flag) quorum.flag(device, "x");
                else quorum.clearFlag(device);
            }
            vm.assertEq(_flagged(), flag, "decided at the M-th vote");
        }
    }

    /**
     * @notice A removal of any guardian voids every open vote: after k < M votes and a removal, the
     * count is 0, the removed guardian cannot vote, and M votes of the remaining guardians are needed.
     */
    function testFuzz_removalVoidsOpenVotes(uint8 m, uint8 k, uint256 removedSeed, bool renounce) public {
        m = uint8(bound(m, 2, 4));
        k = uint8(bound(k, 1, m - 1));
        vm.prank(ADMIN);
        quorum.setQuorum(m);
        for (uint256 i = 0; i < k; ++i) {
            vm.prank(guardians[i]);
            quorum.flag(device, "x");
        }
        address removed = guardians[removedSeed % 5];
        bytes32 role = quorum.GUARDIAN_ROLE();
        if (renounce) {
            vm.prank(removed);
            quorum.renounceRole(role, removed);
        } else {
            vm.prank(ADMIN);
            quorum.revokeRole(role, removed);
        }
        (, uint8 count, ) = quorum.votes(device, true, guardians[0]);
        vm.assertEq(count, 0, "open votes void after a removal");
        vm.prank(removed);
        vm.expectPartialRevert(bytes4(keccak256("AccessControlUnauthorizedAccount(address,bytes32)")));
        quorum.flag(device, "x");
        uint256 voted;
        for (uint256 i = 0; i < 5 && voted < m; ++i) {
            if (guardians[i] == removed) continue;
            vm.assertFalse(_flagged(), "no decision before M fresh votes");
            vm.prank(guardians[i]);
            quorum.flag(device, "x");
            ++voted;
        }
        vm.assertTrue(_flagged(), "M fresh votes decide");
    }

    /// @dev A permutation of 0–4 from a seed (Fisher–Yates).
    function _permutation(uint256 seed) internal pure returns (uint256[5] memory p) {
        for (uint256 i = 0; i < 5; ++i) p[i] = i;
        for (uint256 i = 4; i > 0; --i) {
            uint256 j = uint256(keccak256(abi.encode(seed, i))) % (i + 1);
            (p[i], p[j]) = (p[j], p[i]);
        }
    }
}

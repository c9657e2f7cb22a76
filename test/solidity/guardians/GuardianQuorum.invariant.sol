// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {HandlerBase} from "../lib/HandlerBase.sol";
import {CustosTest} from "../lib/CustosTest.sol";
import {DeviceRegistry} from "../../../contracts/registry/DeviceRegistry.sol";
import {GuardianQuorum} from "../../../contracts/guardians/GuardianQuorum.sol";
import {ERC7913P256SHA256Verifier} from "../../../contracts/crypto/ERC7913P256SHA256Verifier.sol";

/**
 * @title QuorumHandler
 * @notice Bounded actions on the GuardianQuorum: flag and clear votes by four candidate guardians
 * (members or not) on three devices (one of them revoked), guardians added, removed and renouncing,
 * and the quorum changed (1–3). A ghost model keeps the membership epoch, each device's round and
 * who voted which way in it, and whether the registry has the device flagged.
 */
contract QuorumHandler is HandlerBase {
    uint256 internal constant DEVICES = 3;
    uint256 internal constant CANDIDATES = 4;

    DeviceRegistry public immutable registry;
    GuardianQuorum public immutable quorum;

    struct Tally {
        uint32 membership;
        uint32 round;
        uint8 flagVoters;
        uint8 clearVoters;
    }

    uint256[DEVICES] public devices;
    address[CANDIDATES] public candidates;
    bool[CANDIDATES] public member;
    uint32 public membership;
    uint8 public quorumModel;
    mapping(uint256 device => Tally) internal _tallies;
    mapping(uint256 device => bool) public flagged;
    mapping(uint256 device => bool) public revoked;

    constructor(DeviceRegistry registry_, uint256[DEVICES] memory devices_, address[CANDIDATES] memory candidates_) {
        (registry, quorum, devices, candidates) = (
            registry_,
            GuardianQuorum(registry_.guardianQuorum()),
            devices_,
            candidates_
        );
        for (uint256 i = 0; i < 3; ++i) member[i] = true;
        quorumModel = QUORUM;
        revoked[2] = true;
    }

    /// @notice A candidate (member or not) votes to flag a device, or to clear it.
    function vote(uint256 deviceSeed, uint256 guardianSeed, uint256 flagSeed) external {
        uint256 d = deviceSeed % DEVICES;
        uint256 g = guardianSeed % CANDIDATES;
        bool isFlag = flagSeed % 2 == 0;
        Tally memory t = current(d);
        uint8 voters = isFlag ? t.flagVoters : t.clearVoters;
        uint8 bit = uint8(1 << g);
        uint256 count = _popcount(voters) + 1;
        bool decides = count >= quorumModel;
        bool registryAccepts = !revoked[d] && (isFlag ? !flagged[d] : flagged[d]);
        bool expected = member[g] && voters & bit == 0 && (!decides || registryAccepts);
        vm.prank(candidates[g]);
        bool ok;
        if (isFlag) {
            try quorum.flag(devices[d], "misbehaving") {
                ok = true;
            } catch {}
        } else {
            try quorum.clearFlag(devices[d]) {
                ok = true;
            } catch {}
        }
        _expect(member[g] ? 1 : 10, expected, ok, isFlag ? "flag vote" : "clear vote");
        if (!ok) return;
        if (decides) {
            flagged[d] = isFlag;
            _tallies[d] = Tally(t.membership, t.round + 1, 0, 0);
            _did(isFlag ? "flagged" : "cleared");
        } else {
            if (isFlag) t.flagVoters |= bit;
            else t.clearVoters |= bit;
            _tallies[d] = t;
        }
    }

    /// @notice The admin adds a candidate as guardian or removes one; or a guardian renounces.
    function membershipChange(uint256 guardianSeed, uint256 how) external {
        uint256 g = guardianSeed % CANDIDATES;
        bytes32 role = quorum.GUARDIAN_ROLE();
        uint256 h = how % 3;
        bool ok;
        if (h == 0) {
            vm.prank(ADMIN);
            try quorum.grantRole(role, candidates[g]) {
                ok = true;
            } catch {}
            _expect(10, true, ok, "grant guardian");
            member[g] = true;
            return;
        }
        vm.prank(h == 1 ? ADMIN : candidates[g]);
        if (h == 1) {
            try quorum.revokeRole(role, candidates[g]) {
                ok = true;
            } catch {}
        } else {
            try quorum.renounceRole(role, candidates[g]) {
                ok = true;
            } catch {}
        }
        _expect(10, true, ok, h == 1 ? "remove guardian" : "renounce");
        // Only a removal of a member starts a new membership epoch: every open vote is void.
        if (member[g]) ++membership;
        member[g] = false;
    }

    /// @notice The admin (or a guardian) sets the quorum to 0–3.
    function setQuorum(uint256 quorumSeed, uint256 callerSeed) external {
        uint8 q = uint8(quorumSeed % 4);
        address caller = callerSeed % 4 == 0 ? candidates[0] : ADMIN;
        vm.prank(caller);
        bool ok;
        try quorum.setQuorum(q) {
            ok = true;
        } catch {}
        _expect(10, caller == ADMIN && q != 0, ok, "setQuorum");
        if (ok) quorumModel = q;
    }

    /// @notice The tally of device `d` as it counts now: votes of an earlier membership epoch count for nothing.
    function current(uint256 d) public view returns (Tally memory t) {
        t = _tallies[d];
        if (t.membership != membership) t = Tally(membership, t.round + 1, 0, 0);
    }

    function _popcount(uint8 x) internal pure returns (uint256 n) {
        for (; x != 0; x &= x - 1) ++n;
    }
}

/**
 * @title GuardianQuorumInvariants
 * @notice DESIGN.md invariants 1 and 10 of the GuardianQuorum against random sequences of
 * {QuorumHandler} actions.
 */
contract GuardianQuorumInvariants is CustosTest {
    DeviceRegistry internal registry;
    GuardianQuorum internal quorum;
    QuorumHandler internal handler;

    function setUp() public {
        vm.warp(T0);
        ERC7913P256SHA256Verifier verifier;
        (registry, verifier) = deployRegistry(threeGuardians());
        quorum = GuardianQuorum(registry.guardianQuorum());
        DeviceKey[] memory keys = new DeviceKey[](3);
        for (uint256 i = 0; i < 3; ++i) keys[i] = newKey(0x6000 + i, i == 1, address(verifier));
        (, uint256[] memory ids) = provision(registry, keys, address(0xC1));
        vm.prank(address(0xC1));
        registry.decommission(ids[2]);
        address[3] memory g = [address(0xB1), address(0xB2), address(0xB3)];
        handler = new QuorumHandler(registry, [ids[0], ids[1], ids[2]], [g[0], g[1], g[2], address(0xB4)]);
        weigh(QuorumHandler.vote.selector, 12);
        weigh(QuorumHandler.membershipChange.selector, 2);
        weigh(QuorumHandler.setQuorum.selector, 1);
        weigh(handler.advance.selector, 1);
        targetHandler(address(handler));
    }

    /**
     * @notice Invariant 1 (with the M-of-N quorum): a device is quarantined by the guardians exactly
     * when M current guardians voted for it in one round, and cleared likewise: the registry's flag
     * and status are the model's.
     */
    function invariant_1_flaggedExactlyAtQuorum() public view {
        vm.assertEq(handler.broken(1), 0, handler.firstBroken(1));
        for (uint256 d = 0; d < 3; ++d) {
            uint256 id = handler.devices(d);
            vm.assertEq(
                registry.deviceInfo(id).guardianFlagged,
                handler.flagged(d),
                "guardian flag is not the model's"
            );
        }
    }

    /**
     * @notice Invariant 10: a removed guardian's vote is dead for good: the membership epoch is the
     * model's, every open vote (round, count, who voted) is the model's, no non-member's vote or
     * admin action by a guardian was accepted, and the quorum is the model's.
     */
    function invariant_10_removedGuardiansVotesAreDead() public view {
        vm.assertEq(handler.broken(10), 0, handler.firstBroken(10));
        vm.assertEq(quorum.membership(), handler.membership(), "membership epoch is not the model's");
        vm.assertEq(quorum.quorum(), handler.quorumModel(), "quorum is not the model's");
        for (uint256 d = 0; d < 3; ++d) {
            QuorumHandler.Tally memory t = handler.current(d);
            for (uint256 g = 0; g < 4; ++g) {
                address guardian = handler.candidates(g);
                (uint32 round, uint8 count, bool voted) = quorum.votes(handler.devices(d), true, guardian);
                vm.assertEq(round, t.round, "round is not the model's");
                vm.assertEq(count, _popcount(t.flagVoters), "flag votes are not the model's");
                vm.assertEq(voted, t.flagVoters & (1 << g) != 0, "flag voter is not the model's");
                (, count, voted) = quorum.votes(handler.devices(d), false, guardian);
                vm.assertEq(count, _popcount(t.clearVoters), "clear votes are not the model's");
                vm.assertEq(voted, t.clearVoters & (1 << g) != 0, "clear voter is not the model's");
            }
        }
    }

    function _popcount(uint8 x) internal pure returns (uint256 n) {
        for (; x != 0; x &= x - 1) ++n;
    }
}

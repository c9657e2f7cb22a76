// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {IDeviceQuarantine} from "../interfaces/IDeviceQuarantine.sol";

/**
 * @title GuardianQuorum
 * @notice The guardians' M-of-N quorum over device quarantine. Each guardian (`GUARDIAN_ROLE`) votes
 * to flag a misbehaving device or to clear it; the vote that reaches the quorum flags or clears it
 * in the DeviceRegistry, where this contract holds the registry's `GUARDIAN_ROLE`.
 *
 * @dev Only current guardians' votes count. Every removal of a guardian (revoked or renounced)
 * starts a new membership epoch, and votes are kept per epoch, so a vote cast by a guardian who has
 * since left counts for nothing, and neither do the open votes of those who stayed (they vote again:
 * a guardian service re-evaluates its policy anyway). Flag and clear votes are tallied apart, in one
 * round per device: the vote that reaches the quorum decides and closes the round for both, so that
 * a vote counts only toward the decision that follows it. A clear vote cast before the device was
 * flagged, or a flag vote cast while it still was, is about a state that no longer holds.
 */
contract GuardianQuorum is AccessControl {
    /// @notice Role of guardians: one vote each.
    bytes32 public constant GUARDIAN_ROLE = keccak256("GUARDIAN_ROLE");

    /// @dev One slot per device: the membership epoch and round of the open votes, and their counts.
    struct Tally {
        uint32 membership;
        uint32 round;
        uint8 flagVotes;
        uint8 clearVotes;
    }

    IDeviceQuarantine private immutable _registry;
    uint8 private _quorum;
    uint32 private _membership;

    mapping(uint256 deviceId => Tally) private _tallies;
    mapping(bytes32 ballot => mapping(address guardian => bool)) private _voted;

    event GuardianVoted(uint256 indexed deviceId, address indexed guardian, bool flag, uint32 round, bytes32 reason);
    event QuorumChanged(uint8 quorum);
    /// @notice A guardian left: every open vote is void from now on.
    event MembershipChanged(uint32 membership);

    error GuardianQuorumAlreadyVoted(uint256 deviceId, address guardian);
    error GuardianQuorumInvalidQuorum(uint8 quorum);

    /**
     * @param registry_ the device registry whose `GUARDIAN_ROLE` this contract will hold.
     * @param admin holder of `DEFAULT_ADMIN_ROLE` (adds and removes guardians, sets the quorum); a
     * TimelockController in a real deployment.
     * @param quorum_ M of the M-of-N quorum (at least 1).
     * @param guardians initial holders of `GUARDIAN_ROLE`.
     */
    constructor(IDeviceQuarantine registry_, address admin, uint8 quorum_, address[] memory guardians) {
        _registry = registry_;
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        for (uint256 i = 0; i < guardians.length; ++i) _grantRole(GUARDIAN_ROLE, guardians[i]);
        _setQuorum(quorum_);
    }

    /**
     * @notice The caller's vote to quarantine device `deviceId` for misbehaviour; at the quorum the
     * registry flags it (and reverts if it is flagged already or revoked).
     * @param reason what the guardian saw: a hash committing to its evidence.
     */
    function flag(uint256 deviceId, bytes32 reason) external onlyRole(GUARDIAN_ROLE) {
        if (_vote(deviceId, true, reason)) _registry.flag(deviceId, reason);
    }

    /// @notice The caller's vote to lift the guardians' quarantine of device `deviceId`; at the quorum it is lifted.
    function clearFlag(uint256 deviceId) external onlyRole(GUARDIAN_ROLE) {
        if (_vote(deviceId, false, bytes32(0))) _registry.clearFlag(deviceId);
    }

    /// @notice Sets M of the M-of-N quorum (at least 1). Admin only.
    function setQuorum(uint8 newQuorum) external onlyRole(DEFAULT_ADMIN_ROLE) {
        _setQuorum(newQuorum);
    }

    /// @notice M of the M-of-N quorum.
    function quorum() external view returns (uint8) {
        return _quorum;
    }

    /// @notice The membership epoch: it moves whenever a guardian leaves.
    function membership() external view returns (uint32) {
        return _membership;
    }

    /// @notice The device registry this quorum flags devices in.
    function registry() external view returns (IDeviceQuarantine) {
        return _registry;
    }

    /**
     * @notice The open votes on flagging (`isFlag`) or clearing device `deviceId`: their round, how
     * many count now, and whether `guardian` cast one of them.
     */
    function votes(
        uint256 deviceId,
        bool isFlag,
        address guardian
    ) external view returns (uint32 round, uint8 count, bool voted) {
        Tally memory t = _current(_tallies[deviceId]);
        return (t.round, isFlag ? t.flagVotes : t.clearVotes, _voted[_ballot(deviceId, isFlag, t)][guardian]);
    }

    /// @dev A guardian's removal voids every open vote (see the contract's notes).
    function _revokeRole(bytes32 role, address account) internal virtual override returns (bool revoked) {
        revoked = super._revokeRole(role, account);
        if (revoked && role == GUARDIAN_ROLE) emit MembershipChanged(++_membership);
    }

    /// @dev Records the caller's vote; true when it reaches the quorum, which closes the round.
    function _vote(uint256 deviceId, bool isFlag, bytes32 reason) private returns (bool) {
        address guardian = _msgSender();
        Tally memory t = _current(_tallies[deviceId]);
        mapping(address => bool) storage voted = _voted[_ballot(deviceId, isFlag, t)];
        if (voted[guardian]) revert GuardianQuorumAlreadyVoted(deviceId, guardian);
        emit GuardianVoted(deviceId, guardian, isFlag, t.round, reason);
        uint8 count = (isFlag ? t.flagVotes : t.clearVotes) + 1;
        if (count < _quorum) {
            voted[guardian] = true;
            if (isFlag) t.flagVotes = count;
            else t.clearVotes = count;
            _tallies[deviceId] = t;
            return false;
        }
        // The vote that reaches the quorum decides and closes the round for both sides: the open
        // votes of either were cast before this decision. Its own marker would never be read again.
        _tallies[deviceId] = Tally(t.membership, t.round + 1, 0, 0);
        return true;
    }

    /// @dev The tally as it counts now: votes of an earlier membership epoch count for nothing.
    function _current(Tally storage stored) private view returns (Tally memory t) {
        t = stored;
        uint32 epoch = _membership;
        if (t.membership != epoch) t = Tally(epoch, t.round + 1, 0, 0);
    }

    function _ballot(uint256 deviceId, bool isFlag, Tally memory t) private pure returns (bytes32) {
        return keccak256(abi.encode(deviceId, isFlag, t.membership, t.round));
    }

    function _setQuorum(uint8 quorum_) private {
        if (quorum_ == 0) revert GuardianQuorumInvalidQuorum(quorum_);
        _quorum = quorum_;
        emit QuorumChanged(quorum_);
    }
}

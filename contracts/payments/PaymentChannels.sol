// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/IERC20Permit.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ERC2771Context} from "@openzeppelin/contracts/metatx/ERC2771Context.sol";
import {Address} from "@openzeppelin/contracts/utils/Address.sol";
import {IERC721} from "@openzeppelin/contracts/token/ERC721/IERC721.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {IDeviceRegistry} from "../interfaces/IDeviceRegistry.sol";
import {DeviceSignature} from "../registry/DeviceSignature.sol";

/**
 * @title PaymentChannels
 * @notice Unidirectional payment channels from a payer device to a payee device of the
 * DeviceRegistry, in ETH or any ERC-20. Anyone funds a channel; the payer device streams
 * `Voucher(channel, cumulativeAmount)` signatures off chain; anyone may present the latest voucher,
 * which credits the payee device. The payee's owner closes at once; the payer's owner may start a
 * unilateral close, after which the payee has `challengePeriod` seconds to present its voucher;
 * then anyone settles and the rest is credited to whoever owns the payer device at that moment:
 * refunds follow the device, so a payer device sold with open channels takes their refunds to its
 * buyer (a seller closes its channels first).
 *
 * @dev A channel's terms never change, so they are not stored: the channel id is the hash of its
 * `Terms`, which every call passes back, and one slot holds what moves (deposit, paid, close time).
 * Payouts are credits pulled later: a payee device's earnings (`deviceBalance`, withdrawn by its
 * owner with `withdrawForDevice`), so a claim reads no owner; and refunds, credited to the payer
 * device's owner when the channel closes (`accountBalance`, `withdraw`), so a fleet's refunds add
 * up in one slot. A push to a reverting owner can never block a channel.
 *
 * Trust in the payer is pinned at open: the channel names the payer key it was opened with and the
 * payer's trust period in the registry then (`payerPeriod`). Only that key's vouchers pay, and what
 * they pay is bounded by the moment trust in that period ended (a theft report, a guardian flag, a
 * decommission or recall, or a rotation of the key): at most the spending-rate cap
 * `allowance + rate × (t − openedAt)` at t = min(now, end of trust). A signature cannot be dated,
 * so this is a bound, not a detection: whatever the key signs after trust ended (a thief, a key
 * rotated away) counts for no more than what was payable when it ended. It also means a payee can
 * always collect what the payer could legitimately have paid until then, whatever the payer's owner
 * does next (report, decommission, rotate, sell, start a unilateral close): claims and closes never
 * require the payer to be trusted still. An UNCAPPED channel bounds nothing but the deposit: that is
 * the opener's stated choice. A payer that rotates its key opens new channels with the new key.
 *
 * A channel id is never reused: a closed channel leaves a tombstone in its slot that `open` refuses,
 * so a final voucher of a closed channel can never pay a channel opened later with the same terms.
 */
contract PaymentChannels is EIP712, ERC2771Context, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;

    /// @notice EIP-712 type of a payment voucher, signed by the payer device.
    bytes32 public constant VOUCHER_TYPEHASH = keccak256("Voucher(bytes32 channel,uint256 cumulativeAmount)");

    /// @notice A `rate` that caps nothing.
    uint96 public constant UNCAPPED = type(uint96).max;

    /// @notice `closesAt` of a closed channel (its deposit is 0): the id is spent for good.
    uint40 public constant CLOSED = type(uint40).max;

    /// @notice What a channel was opened with; its keccak256 is the channel id.
    struct Terms {
        uint256 payer;
        uint256 payee;
        /// @dev address(0) for ETH.
        address token;
        /// @dev Claimable per second since `openedAt` (UNCAPPED: no cap), on top of `allowance`.
        uint96 rate;
        uint96 allowance;
        uint64 openedAt;
        uint32 salt;
        /// @dev keccak256 of the payer device key (ERC-7913 signer bytes) when the channel opened.
        bytes32 payerKeyHash;
        /// @dev The payer's trust period in the registry when the channel opened (`deviceTrust`).
        uint32 payerPeriod;
    }

    /// @notice What an opener chooses; the contract adds the time, the payer key's hash and trust period.
    struct Opening {
        uint256 payer;
        uint256 payee;
        address token;
        uint96 rate;
        uint96 allowance;
        uint32 salt;
    }

    /// @notice An ERC-2612 permit signature.
    struct Permit {
        uint256 deadline;
        uint8 v;
        bytes32 r;
        bytes32 s;
    }

    /// @dev One slot per channel. `deposit` is never 0 while the channel is open; a closed channel's
    /// slot is the tombstone (deposit 0, closesAt CLOSED), which keeps its id from being opened again.
    struct Channel {
        uint96 deposit;
        uint96 paid;
        uint40 closesAt;
    }

    /// @notice A voucher to present: the channel's terms, the amount, the key and its signature.
    struct VoucherClaim {
        Terms terms;
        uint256 amount;
        bytes key;
        bytes signature;
    }

    IDeviceRegistry private immutable _registry;
    uint40 private immutable _challengePeriod;

    mapping(bytes32 channel => Channel) private _channels;
    mapping(uint256 device => mapping(address token => uint256)) private _deviceBalances;
    mapping(address account => mapping(address token => uint256)) private _accountBalances;

    event ChannelOpened(
        bytes32 indexed channel,
        uint256 indexed payer,
        uint256 indexed payee,
        address token,
        uint96 rate,
        uint96 allowance,
        uint64 openedAt,
        uint32 salt,
        bytes32 payerKeyHash,
        uint32 payerPeriod,
        uint256 deposit
    );
    /// @notice `funder` added `amount` to the deposit (the new total is `ChannelOpened`'s plus every top-up's).
    event ChannelToppedUp(bytes32 indexed channel, address indexed funder, uint256 amount);
    event ChannelClaimed(bytes32 indexed channel, uint256 paid);
    event ChannelCloseStarted(bytes32 indexed channel, uint256 closesAt);
    event ChannelClosed(bytes32 indexed channel, uint256 paid, uint256 refund, address indexed payerOwner);
    event Withdrawn(address indexed account, address indexed token, address to, uint256 amount);
    event DeviceWithdrawn(uint256 indexed device, address indexed token, address to, uint256 amount);

    error PaymentChannelsUnknownChannel(bytes32 channel);
    error PaymentChannelsChannelExists(bytes32 channel);
    error PaymentChannelsZeroDeposit();
    error PaymentChannelsDepositOverflow(uint256 deposit);
    error PaymentChannelsWrongValue(uint256 expected, uint256 received);
    error PaymentChannelsTokenShortfall(uint256 expected, uint256 received);
    error PaymentChannelsPayerNotActive(uint256 payer, IDeviceRegistry.DeviceStatus status);
    error PaymentChannelsPayerNotTrusted(bytes32 channel, uint32 payerPeriod);
    error PaymentChannelsNotPayerKey(uint256 payer);
    error PaymentChannelsInvalidSignature();
    error PaymentChannelsNothingToClaim(bytes32 channel, uint256 paid);
    error PaymentChannelsClosing(bytes32 channel, uint256 closesAt);
    error PaymentChannelsChallengeEnded(bytes32 channel, uint256 closesAt);
    error PaymentChannelsChallengeNotEnded(bytes32 channel, uint256 closesAt);
    error PaymentChannelsNotClosing(bytes32 channel);
    error PaymentChannelsNotOwner(uint256 device, address account);
    error PaymentChannelsNothingOwed(address account, address token);
    error PaymentChannelsNothingEarned(uint256 device, address token);
    error PaymentChannelsUnknownDevice(uint256 device);

    /**
     * @param registry_ the device registry whose devices pay and are paid.
     * @param trustedForwarder the ERC-2771 forwarder owners may act through.
     * @param challengePeriod_ how long a payee has to answer a unilateral close (seconds).
     */
    constructor(
        IDeviceRegistry registry_,
        address trustedForwarder,
        uint40 challengePeriod_
    ) EIP712("Custos PaymentChannels", "1") ERC2771Context(trustedForwarder) {
        _registry = registry_;
        _challengePeriod = challengePeriod_;
    }

    // ---------------------------------------------------------------- funding

    /**
     * @notice Opens a channel from device `o.payer` (whose current key is `payerKey`; the device must
     * be `Active`) to device `o.payee` with a deposit of `amount` (ETH sent along, or `o.token` pulled
     * from the caller). The channel pins `payerKey` and the payer's current trust period. Anyone may
     * fund a device's channel; refunds go to whoever owns the payer device when the channel closes.
     * @return channel the channel id, keccak256 of its terms (in `ChannelOpened`); an id that was
     * ever opened cannot be opened again (`PaymentChannelsChannelExists`), even after it closed.
     */
    function open(
        Opening calldata o,
        bytes calldata payerKey,
        uint256 amount
    ) external payable nonReentrant returns (bytes32 channel) {
        channel = _open(o, payerKey, _receive(o.token, amount));
    }

    /**
     * @notice `open` for an ERC-2612 token in one transaction: the caller's `permit` for this
     * contract, then the deposit. A permit already used (front-run) is fine if the allowance is there.
     */
    function openWithPermit(
        Opening calldata o,
        bytes calldata payerKey,
        uint256 amount,
        Permit calldata permit
    ) external nonReentrant returns (bytes32 channel) {
        try
            IERC20Permit(o.token).permit(
                _msgSender(),
                address(this),
                amount,
                permit.deadline,
                permit.v,
                permit.r,
                permit.s
            )
        {
            channel = _openAfterPermit(o, payerKey, amount);
        } catch {
            // A permit used already (front-run, say) fails; the allowance it left still opens the channel.
            channel = _openAfterPermit(o, payerKey, amount);
        }
    }

    function _openAfterPermit(
        Opening calldata o,
        bytes calldata payerKey,
        uint256 amount
    ) private returns (bytes32 channel) {
        channel = _open(o, payerKey, _receive(o.token, amount));
    }

    /**
     * @notice Adds `amount` to an open channel's deposit (ETH sent along, or the token pulled). Anyone
     * may, while the payer is still trusted in the period the channel pinned (`PaymentChannelsPayerNotTrusted`
     * once that period ended, or while the payer's batch is quarantined): after trust ended the key
     * could pay no more than the bound anyway.
     */
    function topUp(Terms calldata terms, uint256 amount) external payable {
        // An ETH top-up calls nothing but the registry's views: only a token's transfer could re-enter.
        if (terms.token == address(0)) _topUp(terms, amount);
        else _topUpGuarded(terms, amount);
    }

    function _topUpGuarded(Terms calldata terms, uint256 amount) private nonReentrant {
        _topUp(terms, amount);
    }

    function _topUp(Terms calldata terms, uint256 amount) private {
        bytes32 channel = _channelId(terms);
        Channel storage c = _channels[channel];
        (uint96 current, uint40 closesAt) = (c.deposit, c.closesAt);
        if (current == 0) revert PaymentChannelsUnknownChannel(channel);
        if (closesAt != 0) revert PaymentChannelsClosing(channel, closesAt);
        // Trusted in the pinned period now: what keyTrustedUntil calls never-ending (type(uint40).max).
        IDeviceRegistry.DeviceTrust memory trust = _registry.deviceTrust(terms.payer);
        if (trust.status != IDeviceRegistry.DeviceStatus.Active || trust.period != terms.payerPeriod) {
            revert PaymentChannelsPayerNotTrusted(channel, terms.payerPeriod);
        }
        uint256 deposit = current + _receive(terms.token, amount);
        if (deposit > type(uint96).max) revert PaymentChannelsDepositOverflow(deposit);
        c.deposit = uint96(deposit);
        emit ChannelToppedUp(channel, _msgSender(), amount);
    }

    // ---------------------------------------------------------------- paying out

    /**
     * @notice Presents a voucher signed by the key the channel was opened with: the payee device is
     * credited what it adds to the channel's paid total, within the deposit and {claimLimit} (the
     * spending-rate cap at now or, if earlier, when trust in the payer's pinned period ended).
     * Anyone may present it, whatever the payer's status now.
     */
    function claim(Terms calldata terms, uint256 amount, bytes calldata key, bytes calldata signature) external {
        bytes32 channel = _channelId(terms);
        Channel memory m = _channels[channel];
        _checkClaimable(channel, m);
        uint256 paid = _voucher(channel, terms, m, amount, key, signature);
        _channels[channel] = Channel(m.deposit, uint96(paid), m.closesAt);
        _deviceBalances[terms.payee][terms.token] += paid - m.paid;
        emit ChannelClaimed(channel, paid);
    }

    /**
     * @notice Presents many vouchers in one transaction (a payee with many channels). Credits to the
     * same device and token in a row are added up and written once.
     */
    function claimMany(VoucherClaim[] calldata claims) external {
        uint256 device;
        address token;
        uint256 pending;
        for (uint256 i = 0; i < claims.length; ++i) {
            VoucherClaim calldata v = claims[i];
            bytes32 channel = _channelId(v.terms);
            Channel memory m = _channels[channel];
            _checkClaimable(channel, m);
            uint256 paid = _voucher(channel, v.terms, m, v.amount, v.key, v.signature);
            _channels[channel] = Channel(m.deposit, uint96(paid), m.closesAt);
            if (v.terms.payee != device || v.terms.token != token) {
                if (pending != 0) _deviceBalances[device][token] += pending;
                (device, token, pending) = (v.terms.payee, v.terms.token, 0);
            }
            pending += paid - m.paid;
            emit ChannelClaimed(channel, paid);
        }
        if (pending != 0) _deviceBalances[device][token] += pending;
    }

    // ---------------------------------------------------------------- closing

    /**
     * @notice The payee's owner closes the channel at once: the voucher (if any: an empty signature
     * presents none) is paid as by {claim}, the rest is credited to the payer device's owner now.
     */
    function cooperativeClose(
        Terms calldata terms,
        uint256 amount,
        bytes calldata key,
        bytes calldata signature
    ) external {
        _checkOwner(terms.payee);
        _close(terms, amount, key, signature);
    }

    /// @notice `cooperativeClose` of many channels of the caller's payee devices in one transaction.
    function closeMany(VoucherClaim[] calldata closes) external {
        uint256 checked;
        for (uint256 i = 0; i < closes.length; ++i) {
            VoucherClaim calldata v = closes[i];
            // A payee with many channels: its ownership is checked once.
            if (v.terms.payee != checked) {
                _checkOwner(v.terms.payee);
                checked = v.terms.payee;
            }
            _close(v.terms, v.amount, v.key, v.signature);
        }
    }

    /**
     * @notice The payer device's owner starts a unilateral close: the payee has `challengePeriod` to
     * claim (bounded as ever, however the payer's status changes meanwhile).
     */
    function startClose(Terms calldata terms) external {
        bytes32 channel = _channelId(terms);
        Channel storage c = _channels[channel];
        Channel memory m = c;
        if (m.deposit == 0) revert PaymentChannelsUnknownChannel(channel);
        if (m.closesAt != 0) revert PaymentChannelsClosing(channel, m.closesAt);
        _checkOwner(terms.payer);
        uint40 closesAt = uint40(block.timestamp) + _challengePeriod;
        c.closesAt = closesAt;
        emit ChannelCloseStarted(channel, closesAt);
    }

    /**
     * @notice Ends a channel whose challenge period is over: what was not paid is credited to whoever
     * owns the payer device now. Anyone may.
     */
    function settle(Terms calldata terms) external {
        _settle(terms);
    }

    /// @notice `settle` of many channels in one transaction.
    function settleMany(Terms[] calldata terms) external {
        for (uint256 i = 0; i < terms.length; ++i) _settle(terms[i]);
    }

    /// @notice Sends the caller its refunds in `token` (address(0): ETH) to `to`.
    function withdraw(address token, address payable to) external nonReentrant {
        address account = _msgSender();
        uint256 amount = _accountBalances[account][token];
        if (amount == 0) revert PaymentChannelsNothingOwed(account, token);
        _accountBalances[account][token] = 0;
        emit Withdrawn(account, token, to, amount);
        _pay(token, to, amount);
    }

    /// @notice Sends what device `device` earned in `token` to `to`; the device's owner only.
    function withdrawForDevice(uint256 device, address token, address payable to) external nonReentrant {
        _checkOwner(device);
        uint256 amount = _deviceBalances[device][token];
        if (amount == 0) revert PaymentChannelsNothingEarned(device, token);
        _deviceBalances[device][token] = 0;
        emit DeviceWithdrawn(device, token, to, amount);
        _pay(token, to, amount);
    }

    // ---------------------------------------------------------------- views

    /// @notice The device registry.
    function registry() external view returns (IDeviceRegistry) {
        return _registry;
    }

    /// @notice How long a payee has to answer a unilateral close (seconds).
    function challengePeriod() external view returns (uint256) {
        return _challengePeriod;
    }

    /// @notice The id of a channel with `terms`.
    function channelId(Terms calldata terms) external pure returns (bytes32) {
        return _channelId(terms);
    }

    /**
     * @notice What moves in channel `channel`: all zero if it never existed; deposit 0 and
     * `closesAt == CLOSED` once it closed.
     */
    function channelState(bytes32 channel) external view returns (Channel memory) {
        return _channels[channel];
    }

    /**
     * @notice The most a voucher of the channel can have it pay in total now: the spending-rate cap at
     * now or, if earlier, when trust in the payer's pinned period ended (0 for a key not the channel's).
     * @param payerKey the key the channel was opened with (its keccak256 is `terms.payerKeyHash`).
     */
    function claimLimit(Terms calldata terms, bytes calldata payerKey) external view returns (uint256) {
        return keccak256(payerKey) == terms.payerKeyHash ? _claimLimit(terms, payerKey) : 0;
    }

    /// @notice The most the channel may have paid in total at `timestamp`, by its spending-rate cap.
    function spendingLimit(Terms calldata terms, uint256 timestamp) public pure returns (uint256) {
        if (terms.rate == UNCAPPED) return type(uint256).max;
        uint256 elapsed = timestamp > terms.openedAt ? timestamp - terms.openedAt : 0;
        return uint256(terms.allowance) + uint256(terms.rate) * elapsed;
    }

    /// @notice What payee device `device` has earned in `token` and not yet withdrawn.
    function deviceBalance(uint256 device, address token) external view returns (uint256) {
        return _deviceBalances[device][token];
    }

    /// @notice The refunds `account` can withdraw in `token`.
    function accountBalance(address account, address token) external view returns (uint256) {
        return _accountBalances[account][token];
    }

    /// @notice The EIP-712 domain separator of vouchers.
    // solhint-disable-next-line func-name-mixedcase
    function DOMAIN_SEPARATOR() external view returns (bytes32) {
        return _domainSeparatorV4();
    }

    // ---------------------------------------------------------------- internals

    function _open(Opening calldata o, bytes calldata payerKey, uint256 deposit) private returns (bytes32 channel) {
        if (deposit == 0) revert PaymentChannelsZeroDeposit();
        if (deposit > type(uint96).max) revert PaymentChannelsDepositOverflow(deposit);
        uint32 payerPeriod = _checkPayerKey(o.payer, payerKey);
        // Credits to a device that does not exist could never be withdrawn.
        if (!_exists(o.payee)) revert PaymentChannelsUnknownDevice(o.payee);
        bytes32 payerKeyHash = keccak256(payerKey);
        uint64 openedAt = uint64(block.timestamp);
        channel = _channelIdAtOpen(o, openedAt, payerKeyHash, payerPeriod);
        // Open, or closed (the tombstone): an id is never reused, or a closed channel's vouchers would pay again.
        if (_used(channel)) revert PaymentChannelsChannelExists(channel);
        _channels[channel] = Channel(uint96(deposit), 0, 0);
        emit ChannelOpened(
            channel,
            o.payer,
            o.payee,
            o.token,
            o.rate,
            o.allowance,
            openedAt,
            o.salt,
            payerKeyHash,
            payerPeriod,
            deposit
        );
    }

    /// @dev Whether channel id `channel` was ever opened (it is open, or its slot holds the tombstone).
    function _used(bytes32 channel) private view returns (bool) {
        Channel storage c = _channels[channel];
        (uint96 deposit, uint40 closesAt) = (c.deposit, c.closesAt);
        return deposit != 0 || closesAt != 0;
    }

    /**
     * @dev keccak256(abi.encode(terms)), hashed straight from calldata: the terms are nine static
     * words, so their calldata is their ABI encoding, and copying them field by field through
     * memory cost every channel operation about 400 gas. Terms with dirty high bits hash to an id
     * no channel has (and Solidity refuses them where a field is read).
     */
    function _channelId(Terms calldata terms) private pure returns (bytes32 id) {
        // solhint-disable-next-line no-inline-assembly
        assembly ("memory-safe") {
            let ptr := mload(0x40)
            calldatacopy(ptr, terms, 0x120)
            id := keccak256(ptr, 0x120)
        }
    }

    /// @dev {_channelId} of the terms `o` opens, at `openedAt` with the key hashing to `payerKeyHash`
    /// in trust period `payerPeriod`.
    function _channelIdAtOpen(
        Opening calldata o,
        uint64 openedAt,
        bytes32 payerKeyHash,
        uint32 payerPeriod
    ) private pure returns (bytes32 id) {
        // Terms are Opening's first five words, then openedAt, salt, the key hash and the period.
        uint32 salt = o.salt;
        // solhint-disable-next-line no-inline-assembly
        assembly ("memory-safe") {
            let ptr := mload(0x40)
            calldatacopy(ptr, o, 0xa0)
            mstore(add(ptr, 0xa0), openedAt)
            mstore(add(ptr, 0xc0), salt)
            mstore(add(ptr, 0xe0), payerKeyHash)
            mstore(add(ptr, 0x100), payerPeriod)
            id := keccak256(ptr, 0x120)
        }
    }

    /// @dev Takes `amount` of `token` from the caller (or checks the ETH sent); returns what arrived.
    function _receive(address token, uint256 amount) private returns (uint256) {
        if (token == address(0)) {
            if (msg.value != amount) revert PaymentChannelsWrongValue(amount, msg.value);
            return amount;
        }
        if (msg.value != 0) revert PaymentChannelsWrongValue(0, msg.value);
        uint256 before = IERC20(token).balanceOf(address(this));
        IERC20(token).safeTransferFrom(_msgSender(), address(this), amount);
        uint256 received = IERC20(token).balanceOf(address(this)) - before;
        // A token that takes a fee (or lies about transfers) would leave channels unbacked.
        if (received != amount) revert PaymentChannelsTokenShortfall(amount, received);
        return amount;
    }

    /// @dev Whether `device` exists: ERC-721 `ownerOf` reverts for a token that does not.
    function _exists(uint256 device) private view returns (bool) {
        try IERC721(address(_registry)).ownerOf(device) returns (address owner) {
            return owner != address(0);
        } catch {
            return false;
        }
    }

    /// @dev Reverts unless the caller is the registered owner of `device`.
    function _checkOwner(uint256 device) private view {
        if (_msgSender() != IERC721(address(_registry)).ownerOf(device))
            revert PaymentChannelsNotOwner(device, _msgSender());
    }

    function _checkClaimable(bytes32 channel, Channel memory m) private view {
        if (m.deposit == 0) revert PaymentChannelsUnknownChannel(channel);
        if (m.closesAt != 0 && block.timestamp >= m.closesAt) revert PaymentChannelsChallengeEnded(channel, m.closesAt);
    }

    /// @dev Reverts unless `key` is the current key of `payer`, an active device; returns its trust period.
    function _checkPayerKey(uint256 payer, bytes calldata key) private view returns (uint32) {
        (uint256 device, IDeviceRegistry.DeviceStatus status) = _registry.resolveKey(key);
        if (device != payer) revert PaymentChannelsNotPayerKey(payer);
        if (status != IDeviceRegistry.DeviceStatus.Active) revert PaymentChannelsPayerNotActive(payer, status);
        return _registry.deviceTrust(payer).period;
    }

    /**
     * @dev The spending-rate cap at now or, if earlier, when trust in the channel's pinned payer period
     * ended. `key` is the channel's (checked by the caller), so it resolves to the payer for good: a
     * registered key is never registered again.
     */
    function _claimLimit(Terms calldata terms, bytes calldata key) private view returns (uint256) {
        (, , uint40 until) = _registry.keyTrustedUntil(key, terms.payerPeriod);
        // A period the device never had: nothing counts. A pinned period was had, and its end is
        // never 0, so a voucher's bound is at least the allowance.
        if (until == 0) return 0;
        return spendingLimit(terms, until < block.timestamp ? until : block.timestamp);
    }

    /**
     * @dev Checks a voucher and returns the channel's new paid total: the voucher's amount, capped by
     * the deposit and {_claimLimit}. Reverts if that adds nothing. No status check: the bound is what
     * protects the payer's owner from a key it no longer trusts, and the payee from the owner.
     */
    function _voucher(
        bytes32 channel,
        Terms calldata terms,
        Channel memory m,
        uint256 amount,
        bytes calldata key,
        bytes calldata signature
    ) private view returns (uint256 paid) {
        // Only the key the channel pinned: a key rotated in later starts a period of its own, with channels of its own.
        if (keccak256(key) != terms.payerKeyHash) revert PaymentChannelsNotPayerKey(terms.payer);
        bytes32 digest = _hashTypedDataV4(keccak256(abi.encode(VOUCHER_TYPEHASH, channel, amount)));
        if (!DeviceSignature.isValidCalldata(key, digest, signature)) revert PaymentChannelsInvalidSignature();
        paid = amount;
        if (paid > m.deposit) paid = m.deposit;
        // Whenever trust ended, the bound is at least the allowance (and everything when UNCAPPED): only a
        // total beyond that needs the registry's answer.
        if (paid > terms.allowance && terms.rate != UNCAPPED) {
            uint256 limit = _claimLimit(terms, key);
            if (paid > limit) paid = limit;
        }
        if (paid <= m.paid) revert PaymentChannelsNothingToClaim(channel, m.paid);
    }

    function _close(Terms calldata terms, uint256 amount, bytes calldata key, bytes calldata signature) private {
        bytes32 channel = _channelId(terms);
        Channel memory m = _channels[channel];
        _checkClaimable(channel, m);
        uint256 paid = signature.length == 0 ? m.paid : _voucher(channel, terms, m, amount, key, signature);
        // The final voucher's credit is in `ChannelClosed` (its `paid`), not in a `ChannelClaimed` of its own.
        if (paid != m.paid) _deviceBalances[terms.payee][terms.token] += paid - m.paid;
        _finish(channel, terms, m.deposit, paid);
    }

    function _settle(Terms calldata terms) private {
        bytes32 channel = _channelId(terms);
        Channel memory m = _channels[channel];
        if (m.deposit == 0) revert PaymentChannelsUnknownChannel(channel);
        if (m.closesAt == 0) revert PaymentChannelsNotClosing(channel);
        if (block.timestamp < m.closesAt) revert PaymentChannelsChallengeNotEnded(channel, m.closesAt);
        _finish(channel, terms, m.deposit, m.paid);
    }

    /**
     * @dev Leaves the tombstone in the channel's slot and credits what was not paid to the payer
     * device's owner now (refunds follow the device: a buyer gets the refunds of channels open at the sale).
     */
    function _finish(bytes32 channel, Terms calldata terms, uint256 deposit, uint256 paid) private {
        // Not a delete: the id stays spent (about 4,800 gas of refund forgone per close).
        _channels[channel] = Channel(0, 0, CLOSED);
        uint256 refund = deposit - paid;
        address payerOwner = IERC721(address(_registry)).ownerOf(terms.payer);
        if (refund != 0) _accountBalances[payerOwner][terms.token] += refund;
        emit ChannelClosed(channel, paid, refund, payerOwner);
    }

    function _pay(address token, address payable to, uint256 amount) private {
        if (token == address(0)) Address.sendValue(to, amount);
        else IERC20(token).safeTransfer(to, amount);
    }
}

// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {HandlerBase} from "../lib/HandlerBase.sol";
import {CustosTest} from "../lib/CustosTest.sol";
import {DeviceRegistry} from "../../../contracts/registry/DeviceRegistry.sol";
import {IDeviceRegistry} from "../../../contracts/interfaces/IDeviceRegistry.sol";
import {PaymentChannels} from "../../../contracts/payments/PaymentChannels.sol";
import {TestToken} from "../../../contracts/test/TestToken.sol";
import {ReentrantReceiver} from "../../../contracts/test/ReentrantReceiver.sol";
import {ERC7913P256SHA256Verifier} from "../../../contracts/crypto/ERC7913P256SHA256Verifier.sol";

/**
 * @title ChannelsHandler
 * @notice Bounded actions on PaymentChannels: opens (ETH and an ERC-20, capped and uncapped, by the
 * payer's current key or a wrong one), top-ups, vouchers presented one by one or two at once (by
 * the channel's key or another, for any cumulative amount), cooperative and unilateral closes,
 * settlements, withdrawals (one payee owner is a contract that re-enters), and the payer devices'
 * owners' own moves: theft reports, releases, rotations, decommissions, sales. A ghost model
 * predicts every outcome and every balance; two probes ask, in a snapshot that is then undone,
 * whether the payer's owner can recover the rest now and whether the payee can collect its bound now.
 */
contract ChannelsHandler is HandlerBase {
    uint96 internal constant UNCAPPED = type(uint96).max;
    uint40 internal constant CHALLENGE = 1 hours;
    /// @dev Channels the model keeps (closed ones stay: their ids must stay spent), and open at once.
    uint256 internal constant MAX_CHANNELS = 32;
    uint256 internal constant MAX_OPEN = 8;
    uint256 internal constant PAYERS = 3;
    address internal constant STRANGER = address(0xE1);

    DeviceRegistry public immutable registry;
    PaymentChannels public immutable channels;
    TestToken public immutable token;
    ReentrantReceiver public immutable receiver;
    address public immutable verifier;

    struct Payer {
        uint256 id;
        DeviceKey[] keys;
        uint32 period;
        uint40 untrustedSince;
        bool revoked;
        bool stolen;
    }

    struct Channel {
        bytes32 id;
        PaymentChannels.Terms terms;
        uint256 payer;
        uint256 key;
        uint96 deposit;
        uint96 paid;
        uint40 closesAt;
        bool closed;
    }

    Payer[] internal _payers;
    uint256[2] public payees;
    address[2] public payeeOwners;
    Channel[] internal _channels;
    /// @dev When trust in a payer's ended periods ended (the model's `keyTrustedUntil`).
    mapping(uint256 payer => mapping(uint32 period => uint40)) internal _ends;
    /// @dev The model's credits: payee devices' earnings and accounts' refunds, per token.
    mapping(uint256 device => mapping(address token => uint256)) public earned;
    mapping(address account => mapping(address token => uint256)) public refunds;
    uint32 internal _salt;

    constructor(DeviceRegistry registry_, PaymentChannels channels_, TestToken token_, address verifier_) {
        (registry, channels, token, verifier) = (registry_, channels_, token_, verifier_);
        receiver = new ReentrantReceiver(channels_);
        token_.approve(address(channels_), type(uint256).max);
        // Payers: two secp256k1 devices and one P-256, owned by 0xC1; payees: one owned by 0xC3, one
        // by the re-entering receiver contract.
        DeviceKey[] memory keys = new DeviceKey[](PAYERS + 2);
        for (uint256 i = 0; i < keys.length; ++i) {
            keys[i] = newKey(uint256(keccak256(abi.encode("channels key", i))), i == 2 || i == 3, verifier_);
        }
        uint48 batchId = commit(registry_, MANUFACTURER, keys);
        for (uint256 i = 0; i < keys.length; ++i) {
            address owner = i < PAYERS ? address(0xC1) : (i == PAYERS ? address(0xC3) : address(receiver));
            (DeviceRegistry.Claim memory c, bytes32[] memory proof, bytes memory sig) = claimArgs(
                registry_,
                keys,
                i,
                batchId,
                owner
            );
            uint256 id = registry_.claim(c, proof, sig);
            if (i < PAYERS) {
                Payer storage p = _payers.push();
                p.id = id;
                p.keys.push(keys[i]);
            } else {
                (payees[i - PAYERS], payeeOwners[i - PAYERS]) = (id, owner);
            }
        }
    }

    // ================================================================ channel actions

    /// @notice Anyone opens a channel (ETH or the token; capped or not) with the payer's current key or another.
    function open(uint256 payerSeed, uint256 payeeSeed, uint256 termsSeed, uint256 amountSeed) external {
        if (_channels.length >= MAX_CHANNELS || _openCount() >= MAX_OPEN) return;
        uint256 pi = _pick(payerSeed, PAYERS);
        Payer storage p = _payers[pi];
        PaymentChannels.Opening memory o = _opening(p.id, payees[payeeSeed % 2], termsSeed);
        uint256 amount = bound(amountSeed, 1, 10 ether);
        // Mostly the payer's current key; else a rotated-away key of it, or another payer's.
        uint256 ki = p.keys.length - 1;
        bool rightKey = true;
        bytes memory presented = p.keys[ki].signer;
        if ((payerSeed >> 8) % 6 == 5) {
            rightKey = false;
            presented = ki > 0 ? p.keys[ki - 1].signer : _payers[(pi + 1) % PAYERS].keys[0].signer;
        }
        bool expected = rightKey && _active(p);
        bool ok = _open(o, presented, amount);
        _expect(rightKey ? 1 : 2, expected, ok, "open");
        if (!ok) return;
        Channel storage c = _channels.push();
        c.terms = PaymentChannels.Terms(
            o.payer,
            o.payee,
            o.token,
            o.rate,
            o.allowance,
            uint64(block.timestamp),
            o.salt,
            keccak256(presented),
            p.period
        );
        (c.id, c.payer, c.key, c.deposit) = (keccak256(abi.encode(c.terms)), pi, ki, uint96(amount));
        _check(9, c.id == channels.channelId(c.terms), "open: channel id is not the hash of its terms");
    }

    /// @notice The same terms opened twice in one second: refused while open, and after the close too (invariant 9).
    function reopen(uint256 channelSeed) external {
        if (_channels.length == 0) return;
        Channel storage c = _channels[_pickChannel(channelSeed)];
        Payer storage p = _payers[c.payer];
        // Only a channel opened this very second, by the payer's current key in the same trust
        // period, has the same terms (another period or key makes other terms, another id).
        if (c.terms.openedAt != block.timestamp || p.period != c.terms.payerPeriod || c.key != p.keys.length - 1)
            return;
        if (!_active(p)) return;
        PaymentChannels.Opening memory o = PaymentChannels.Opening(
            c.terms.payer,
            c.terms.payee,
            c.terms.token,
            c.terms.rate,
            c.terms.allowance,
            c.terms.salt
        );
        _expect(9, false, _open(o, _payers[c.payer].keys[c.key].signer, 1), "reopen of a used channel id");
    }

    /// @notice Anyone tops up a channel.
    function topUp(uint256 channelSeed, uint256 amountSeed) external {
        if (_channels.length == 0) return;
        Channel storage c = _channels[_pickChannel(channelSeed)];
        uint256 amount = bound(amountSeed, 1, 5 ether);
        Payer storage p = _payers[c.payer];
        bool trusted = _active(p) && p.period == c.terms.payerPeriod;
        bool expected = !c.closed && c.closesAt == 0 && trusted;
        bool ok;
        if (c.terms.token == address(0)) {
            vm.deal(address(this), address(this).balance + amount);
            try channels.topUp{value: amount}(c.terms, amount) {
                ok = true;
            } catch {}
        } else {
            token.mint(address(this), amount);
            try channels.topUp(c.terms, amount) {
                ok = true;
            } catch {}
        }
        _expect(trusted ? 4 : 8, expected, ok, "topUp");
        if (ok) c.deposit += uint96(amount);
    }

    /**
     * @notice Anyone presents a voucher for any cumulative amount, signed by the channel's key (five
     * times in six) or the payer's other key; with `twice`, two channels' vouchers in one `claimMany`.
     */
    function claim(uint256 channelSeed, uint256 amountSeed, uint256 keySeed, uint256 otherSeed) external {
        if (_channels.length == 0) return;
        uint256 ci = _pickChannel(channelSeed);
        (PaymentChannels.VoucherClaim memory v, uint96 paid, bool valid) = _voucher(ci, amountSeed, keySeed);
        if (otherSeed % 3 != 0 || _channels.length < 2) {
            bool ok;
            try channels.claim(v.terms, v.amount, v.key, v.signature) {
                ok = true;
            } catch {}
            _expect(valid ? 8 : 2, valid, ok, "claim");
            if (ok) _credit(ci, paid);
            return;
        }
        uint256 cj = (ci + 1 + (otherSeed % (_channels.length - 1))) % _channels.length;
        (PaymentChannels.VoucherClaim memory w, uint96 paid2, bool valid2) = _voucher(
            cj,
            amountSeed >> 96,
            keySeed >> 8
        );
        PaymentChannels.VoucherClaim[] memory both = new PaymentChannels.VoucherClaim[](2);
        (both[0], both[1]) = (v, w);
        bool ok2;
        try channels.claimMany(both) {
            ok2 = true;
        } catch {}
        _expect(valid && valid2 ? 8 : 2, valid && valid2, ok2, "claimMany");
        if (ok2) {
            _credit(ci, paid);
            _credit(cj, paid2);
        }
    }

    /// @notice The payee's owner (or a stranger) closes at once, with a final voucher or none.
    function cooperativeClose(uint256 channelSeed, uint256 amountSeed, uint256 mode) external {
        if (_channels.length == 0) return;
        uint256 ci = _pickChannel(channelSeed);
        Channel storage c = _channels[ci];
        address payeeOwner = c.terms.payee == payees[0] ? payeeOwners[0] : payeeOwners[1];
        address caller = mode % 5 == 0 ? STRANGER : payeeOwner;
        (PaymentChannels.VoucherClaim memory v, uint96 paid, bool valid) = _voucher(ci, amountSeed, mode >> 4);
        bool withVoucher = mode % 2 == 0;
        if (!withVoucher) (v.signature, paid, valid) = ("", c.paid, _claimable(c));
        bool expected = caller == payeeOwner && valid;
        vm.prank(caller);
        bool ok;
        try channels.cooperativeClose(v.terms, v.amount, v.key, v.signature) {
            ok = true;
        } catch {}
        _expect(caller == payeeOwner ? 4 : 10, expected, ok, "cooperativeClose");
        if (ok) {
            _credit(ci, paid);
            _finish(ci);
        }
    }

    /// @notice The payer device's owner (or someone else) starts a unilateral close.
    function startClose(uint256 channelSeed, uint256 callerSeed) external {
        if (_channels.length == 0) return;
        Channel storage c = _channels[_pickChannel(channelSeed)];
        address owner = registry.ownerOf(c.terms.payer);
        address caller = callerSeed % 5 == 0 ? STRANGER : owner;
        bool expected = caller == owner && !c.closed && c.closesAt == 0;
        vm.prank(caller);
        bool ok;
        try channels.startClose(c.terms) {
            ok = true;
        } catch {}
        _expect(caller == owner ? 4 : 10, expected, ok, "startClose");
        if (ok) c.closesAt = uint40(block.timestamp) + CHALLENGE;
    }

    /// @notice Anyone settles a channel whose challenge period may be over.
    function settle(uint256 channelSeed) external {
        if (_channels.length == 0) return;
        uint256 ci = _pickChannel(channelSeed);
        Channel storage c = _channels[ci];
        bool expected = !c.closed && c.closesAt != 0 && block.timestamp >= c.closesAt;
        bool ok;
        try channels.settle(c.terms) {
            ok = true;
        } catch {}
        _expect(4, expected, ok, "settle");
        if (ok) _finish(ci);
    }

    /// @notice An account withdraws its refunds in ETH or the token (to itself).
    function withdraw(uint256 accountSeed, uint256 tokenSeed) external {
        address account = accountSeed % 3 == 0 ? address(0xC2) : address(0xC1);
        address t = tokenSeed % 2 == 0 ? address(0) : address(token);
        uint256 owed = refunds[account][t];
        uint256 before = _balanceOf(t, account);
        vm.prank(account);
        bool ok;
        try channels.withdraw(t, payable(account)) {
            ok = true;
        } catch {}
        _expect(4, owed != 0, ok, "withdraw");
        if (!ok) return;
        refunds[account][t] = 0;
        _check(4, _balanceOf(t, account) == before + owed, "withdraw: the account did not receive its refunds");
    }

    /// @notice A payee device's owner withdraws its earnings; the receiver contract tries to re-enter.
    function withdrawForDevice(uint256 payeeSeed, uint256 tokenSeed) external {
        uint256 pi = payeeSeed % 2;
        (uint256 device, address owner) = (payees[pi], payeeOwners[pi]);
        address t = tokenSeed % 2 == 0 ? address(0) : address(token);
        uint256 owed = earned[device][t];
        uint256 before = _balanceOf(t, owner);
        bool ok;
        if (owner == address(receiver) && t == address(0)) {
            try receiver.withdraw(device) {
                ok = true;
            } catch {}
            if (ok && receiver.reentered()) _check(4, receiver.refused(), "a withdrawal re-entered PaymentChannels");
        } else {
            vm.prank(owner);
            try channels.withdrawForDevice(device, t, payable(owner)) {
                ok = true;
            } catch {}
        }
        _expect(4, owed != 0, ok, "withdrawForDevice");
        if (!ok) return;
        earned[device][t] = 0;
        _check(4, _balanceOf(t, owner) == before + owed, "withdrawForDevice: the owner did not receive the earnings");
    }

    // ================================================================ the payer owners' moves

    /// @notice A payer's owner reports it stolen, releases it, rotates its key (with the old key), or (rarely) decommissions it.
    function payerOwner(uint256 payerSeed, uint256 action) external {
        uint256 pi = _pick(payerSeed, PAYERS);
        Payer storage p = _payers[pi];
        address owner = registry.ownerOf(p.id);
        uint256 a = action % 10;
        // Each prank right before its call: a prank left unused would move to the runner's next call.
        if (a < 3) {
            vm.prank(owner);
            try registry.reportStolen(p.id) {
                p.stolen = true;
                _distrust(p);
            } catch {}
        } else if (a < 6) {
            vm.prank(owner);
            try registry.release(p.id) {
                p.stolen = false;
                if (!p.revoked) _newPeriod(pi);
            } catch {}
        } else if (a < 9) {
            if (p.keys.length >= 4) return;
            DeviceKey memory next = newKey(
                uint256(keccak256(abi.encode("rotated", pi, p.keys.length))),
                a == 8,
                verifier
            );
            DeviceRegistry.Rotation memory r = rotationOf(registry, p.id, next, p.keys[p.keys.length - 1], true);
            vm.prank(owner);
            try registry.rotateKey(p.id, r) {
                _newPeriod(pi);
                if (p.stolen || p.revoked) p.untrustedSince = uint40(block.timestamp);
                p.keys.push(next);
            } catch {}
        } else {
            vm.prank(owner);
            try registry.decommission(p.id) {
                p.revoked = true;
                _distrust(p);
            } catch {}
        }
    }

    /// @notice A payer's owner sells it to 0xC2 (or back): refunds of its open channels follow the device.
    function sellPayer(uint256 payerSeed) external {
        Payer storage p = _payers[_pick(payerSeed, PAYERS)];
        address owner = registry.ownerOf(p.id);
        address to = owner == address(0xC1) ? address(0xC2) : address(0xC1);
        vm.prank(owner);
        try registry.transferFrom(owner, to, p.id) {} catch {}
    }

    // ================================================================ probes (undone afterwards)

    /**
     * @notice Invariant 4: the payer's owner can always recover what was not claimed. In a snapshot:
     * the owner starts a unilateral close (unless one is running), waits out the challenge period,
     * settles and withdraws; it must receive exactly deposit − paid on top of its earlier refunds.
     */
    function probeRecover(uint256 channelSeed) external {
        if (_channels.length == 0) return;
        Channel storage c = _channels[_pickChannel(channelSeed)];
        if (c.closed) return;
        (PaymentChannels.Terms memory terms, uint40 closesAt) = (c.terms, c.closesAt);
        address owner = registry.ownerOf(terms.payer);
        uint256 expected = uint256(c.deposit) - c.paid + refunds[owner][terms.token];
        uint256 before = _balanceOf(terms.token, owner);
        uint256 snapshot = vm.snapshotState();
        bool ok = true;
        if (closesAt == 0) {
            vm.prank(owner);
            try channels.startClose(terms) {} catch {
                ok = false;
            }
            closesAt = uint40(block.timestamp) + CHALLENGE;
        }
        vm.warp(closesAt);
        try channels.settle(terms) {} catch {
            ok = false;
        }
        // Nothing to recover (all paid, no earlier refunds): a withdrawal would be refused.
        if (expected != 0) {
            vm.prank(owner);
            try channels.withdraw(terms.token, payable(owner)) {} catch {
                ok = false;
            }
        }
        uint256 received = _balanceOf(terms.token, owner) - before;
        vm.revertToState(snapshot);
        vm.warp(clock);
        _check(
            4,
            ok && received == expected,
            string.concat(
                "probe: the payer's owner cannot recover exactly what was not claimed: ",
                ok ? "received " : "refused; received ",
                vm.toString(received),
                ", not ",
                vm.toString(expected)
            )
        );
        _did("probeRecover");
    }

    /**
     * @notice Invariant 8: a payee still collects what the payer could legitimately have paid until
     * trust in the pinned period ended, whatever the payer's owner did since. In a snapshot: a voucher
     * for the whole deposit, signed by the channel's key, pays exactly min(deposit, cap at
     * min(now, end of trust)) while that adds anything.
     */
    function probeCollect(uint256 channelSeed) external {
        if (_channels.length == 0) return;
        uint256 ci = _pickChannel(channelSeed);
        Channel storage c = _channels[ci];
        if (!_claimable(c)) return;
        uint256 bound_ = _payable(c, c.deposit);
        bytes memory sig = signDigest(_payers[c.payer].keys[c.key], _voucherDigest(c.id, c.deposit));
        uint256 snapshot = vm.snapshotState();
        bool ok;
        try channels.claim(c.terms, c.deposit, _payers[c.payer].keys[c.key].signer, sig) {
            ok = true;
        } catch {}
        uint256 paid = channels.channelState(c.id).paid;
        vm.revertToState(snapshot);
        _check(8, ok == (bound_ > c.paid), "probe: the payee cannot collect its bound, or collects nothing new");
        if (ok)
            _check(8, paid == bound_, "probe: the payee collected other than min(deposit, cap at the end of trust)");
        _did("probeCollect");
    }

    /// @notice Vouchers that must never pay: another channel's, another domain's, the high-s twin, a cut signature.
    function forgedVoucher(uint256 channelSeed, uint256 how) external {
        if (_channels.length == 0) return;
        Channel storage c = _channels[_pickChannel(channelSeed)];
        DeviceKey memory k = _payers[c.payer].keys[c.key];
        uint256 h = how % 4;
        bytes32 digest =
            h == 0
                ? _voucherDigest(keccak256(abi.encode(c.id)), c.deposit)
                : (
                    h == 1
                        ? typedDigest(
                            keccak256(abi.encode(c.id, "another domain")),
                            keccak256(abi.encode(channels.VOUCHER_TYPEHASH(), c.id, c.deposit))
                        )
                        : _voucherDigest(c.id, c.deposit)
                );
        bytes memory sig = signDigest(k, digest);
        if (h == 2) sig = _highS(k.p256, sig);
        if (h == 3) sig = k.p256 ? bytes.concat(sig, bytes1(0)) : _cut(sig);
        bool ok;
        try channels.claim(c.terms, c.deposit, k.signer, sig) {
            ok = true;
        } catch {}
        _expect(2, false, ok, "forged voucher");
    }

    function _openCount() internal view returns (uint256 n) {
        for (uint256 i = 0; i < _channels.length; ++i) if (!_channels[i].closed) ++n;
    }

    /// @dev A channel from a seed: seven times in eight an open one when there is one (closed ones
    /// refuse everything, and are tried the eighth time).
    function _pickChannel(uint256 seed) internal view returns (uint256) {
        uint256 n = _channels.length;
        uint256 start = seed % n;
        if ((seed >> 128) % 8 != 0) {
            for (uint256 i = 0; i < n; ++i) if (!_channels[(start + i) % n].closed) return (start + i) % n;
        }
        return start;
    }

    // ================================================================ the model, for the invariants

    function channelCount() external view returns (uint256) {
        return _channels.length;
    }

    function channel(uint256 i) external view returns (Channel memory) {
        return _channels[i];
    }

    /// @notice The payer key channel `i` was opened with.
    function channelKey(uint256 i) external view returns (bytes memory) {
        Channel storage c = _channels[i];
        return _payers[c.payer].keys[c.key].signer;
    }

    /// @notice When trust in channel `i`'s pinned period ended (type(uint40).max: it has not).
    function trustEnd(uint256 i) public view returns (uint40) {
        Channel storage c = _channels[i];
        Payer storage p = _payers[c.payer];
        if (c.terms.payerPeriod == p.period) return p.untrustedSince == 0 ? TRUSTED_FOREVER : p.untrustedSince;
        return _ends[c.payer][c.terms.payerPeriod];
    }

    // ================================================================ internals

    function _opening(uint256 payer, uint256 payee, uint256 seed) internal returns (PaymentChannels.Opening memory o) {
        bool capped = seed % 4 != 0;
        o = PaymentChannels.Opening(
            payer,
            payee,
            (seed >> 2) % 2 == 0 ? address(0) : address(token),
            capped ? uint96(bound(seed >> 8, 1 gwei, 1e15)) : UNCAPPED,
            uint96(bound(seed >> 64, 0, 2 ether)),
            ++_salt
        );
    }

    function _open(PaymentChannels.Opening memory o, bytes memory key, uint256 amount) internal returns (bool ok) {
        if (o.token == address(0)) {
            vm.deal(address(this), address(this).balance + amount);
            try channels.open{value: amount}(o, key, amount) {
                ok = true;
            } catch {}
        } else {
            token.mint(address(this), amount);
            try channels.open(o, key, amount) {
                ok = true;
            } catch {}
        }
    }

    /// @dev A voucher on channel `ci`, the paid total it must leave, and whether it must be accepted.
    function _voucher(
        uint256 ci,
        uint256 amountSeed,
        uint256 keySeed
    ) internal view returns (PaymentChannels.VoucherClaim memory v, uint96 paid, bool valid) {
        Channel storage c = _channels[ci];
        Payer storage p = _payers[c.payer];
        // Any cumulative amount up to a quarter beyond the deposit; three times in four, above what was paid.
        uint256 high = uint256(c.deposit) + c.deposit / 4 + 1;
        uint256 amount =
            amountSeed % 4 == 0 ? bound(amountSeed >> 2, 0, high) : bound(amountSeed >> 2, c.paid + 1, high);
        // The channel's key, or (one time in six) the payer's current key when it is another.
        uint256 ki = keySeed % 6 == 0 ? p.keys.length - 1 : c.key;
        v = PaymentChannels.VoucherClaim(c.terms, amount, p.keys[ki].signer, "");
        v.signature = signDigest(p.keys[ki], _voucherDigest(c.id, amount));
        paid = uint96(_payable(c, amount));
        valid = ki == c.key && _claimable(c) && paid > c.paid;
    }

    /// @dev What a voucher for `amount` leaves as the channel's paid total: min(amount, deposit, cap).
    function _payable(Channel storage c, uint256 amount) internal view returns (uint256 paid) {
        paid = amount < c.deposit ? amount : c.deposit;
        if (paid > c.terms.allowance && c.terms.rate != UNCAPPED) {
            uint256 until = trustEnd(_index(c));
            uint256 t = until < block.timestamp ? until : block.timestamp;
            uint256 cap = channels.spendingLimit(c.terms, t);
            if (paid > cap) paid = cap;
        }
    }

    function _index(Channel storage c) internal view returns (uint256) {
        for (uint256 i = 0; i < _channels.length; ++i) if (_channels[i].id == c.id) return i;
        revert("unknown channel");
    }

    function _claimable(Channel storage c) internal view returns (bool) {
        return !c.closed && (c.closesAt == 0 || block.timestamp < c.closesAt);
    }

    function _credit(uint256 ci, uint96 paid) internal {
        Channel storage c = _channels[ci];
        earned[c.terms.payee][c.terms.token] += paid - c.paid;
        c.paid = paid;
    }

    function _finish(uint256 ci) internal {
        Channel storage c = _channels[ci];
        refunds[registry.ownerOf(c.terms.payer)][c.terms.token] += c.deposit - c.paid;
        (c.deposit, c.paid, c.closesAt, c.closed) = (0, 0, type(uint40).max, true);
    }

    function _voucherDigest(bytes32 id, uint256 amount) internal view returns (bytes32) {
        return typedDigest(channels.DOMAIN_SEPARATOR(), keccak256(abi.encode(channels.VOUCHER_TYPEHASH(), id, amount)));
    }

    function _active(Payer storage p) internal view returns (bool) {
        return !p.revoked && !p.stolen;
    }

    function _distrust(Payer storage p) internal {
        if (p.untrustedSince == 0) p.untrustedSince = uint40(block.timestamp);
    }

    function _newPeriod(uint256 pi) internal {
        Payer storage p = _payers[pi];
        _ends[pi][p.period] = p.untrustedSince == 0 ? uint40(block.timestamp) : p.untrustedSince;
        p.period = registry.deviceTrust(p.id).period;
        p.untrustedSince = 0;
    }

    function _balanceOf(address t, address account) internal view returns (uint256) {
        return t == address(0) ? account.balance : token.balanceOf(account);
    }

    function _highS(bool p256, bytes memory sig) internal pure returns (bytes memory) {
        (bytes32 r, bytes32 s) = abi.decode(sig, (bytes32, bytes32));
        if (p256) return abi.encodePacked(r, bytes32(P256_N - uint256(s)));
        return abi.encodePacked(r, bytes32(SECP256K1_N - uint256(s)), uint8(sig[64]) == 27 ? uint8(28) : uint8(27));
    }

    function _cut(bytes memory sig) internal pure returns (bytes memory out) {
        out = new bytes(sig.length - 1);
        for (uint256 i = 0; i < out.length; ++i) out[i] = sig[i];
    }

    receive() external payable {}
}

/**
 * @title PaymentChannelsInvariants
 * @notice DESIGN.md invariants 1, 2, 4, 8 and 9 of PaymentChannels against random sequences of
 * {ChannelsHandler} actions. Each compares the chain with the handler's ghost model and asserts that
 * no action broke the invariant ({HandlerBase-broken}).
 */
contract PaymentChannelsInvariants is CustosTest {
    DeviceRegistry internal registry;
    PaymentChannels internal channels;
    TestToken internal token;
    ChannelsHandler internal handler;

    function setUp() public {
        vm.warp(T0);
        vm.roll(1_000);
        (DeviceRegistry registry_, ERC7913P256SHA256Verifier verifier) = deployRegistry(threeGuardians());
        registry = registry_;
        channels = new PaymentChannels(registry_, FORWARDER, 1 hours);
        token = new TestToken();
        handler = new ChannelsHandler(registry_, channels, token, address(verifier));
        // Every run starts with three channels open: ETH uncapped, token capped, ETH capped.
        handler.open(0, 0, 0, 1 ether);
        handler.open(1, 1, 7, 2 ether);
        handler.open(2, 0, 1, 3 ether);
        require(handler.channelCount() == 3, "setUp: three channels");

        weigh(ChannelsHandler.open.selector, 4);
        weigh(ChannelsHandler.reopen.selector, 1);
        weigh(ChannelsHandler.topUp.selector, 3);
        weigh(ChannelsHandler.claim.selector, 8);
        weigh(ChannelsHandler.cooperativeClose.selector, 2);
        weigh(ChannelsHandler.startClose.selector, 1);
        weigh(ChannelsHandler.settle.selector, 2);
        weigh(ChannelsHandler.withdraw.selector, 2);
        weigh(ChannelsHandler.withdrawForDevice.selector, 2);
        weigh(ChannelsHandler.payerOwner.selector, 4);
        weigh(ChannelsHandler.sellPayer.selector, 1);
        weigh(ChannelsHandler.probeRecover.selector, 2);
        weigh(ChannelsHandler.probeCollect.selector, 3);
        weigh(ChannelsHandler.forgedVoucher.selector, 2);
        weigh(handler.advance.selector, 6);
        targetHandler(address(handler));
    }

    /// @notice Invariant 1: only an active payer device opens a channel, and a top-up needs the
    /// payer still trusted in the period the channel pinned.
    function invariant_1_untrustedPayersOpenNothing() public view {
        _noBreak(1);
    }

    /// @notice Invariant 2: a voucher pays only on its own channel, in this contract's domain, by the
    /// key the channel pinned, low-s and of the exact length.
    function invariant_2_vouchersBoundToTheirChannel() public view {
        _noBreak(2);
    }

    /**
     * @notice Invariant 4: per token, the contract holds exactly the open channels' deposits minus
     * what they paid, plus every credit not yet withdrawn; no channel paid more than its deposit;
     * every channel's state, credit and refund is the model's; the payer's owner can always recover
     * the rest (probe); no re-entry.
     */
    function invariant_4_fundsExactlyAccounted() public view {
        _noBreak(4);
        uint256[2] memory owed;
        for (uint256 i = 0; i < handler.channelCount(); ++i) {
            ChannelsHandler.Channel memory c = handler.channel(i);
            PaymentChannels.Channel memory s = channels.channelState(c.id);
            vm.assertEq(s.deposit, c.deposit, "deposit is not the model's");
            vm.assertEq(s.paid, c.paid, "paid is not the model's");
            vm.assertEq(s.closesAt, c.closesAt, "closesAt is not the model's");
            vm.assertLe(s.paid, s.deposit, "a channel paid more than its deposit");
            owed[c.terms.token == address(0) ? 0 : 1] += s.deposit - s.paid;
        }
        for (uint256 t = 0; t < 2; ++t) {
            address tk = t == 0 ? address(0) : address(token);
            for (uint256 p = 0; p < 2; ++p) {
                uint256 device = handler.payees(p);
                vm.assertEq(
                    channels.deviceBalance(device, tk),
                    handler.earned(device, tk),
                    "earnings are not the model's"
                );
                owed[t] += channels.deviceBalance(device, tk);
            }
            for (uint256 a = 0xC1; a <= 0xC2; ++a) {
                uint256 refund = channels.accountBalance(address(uint160(a)), tk);
                vm.assertEq(refund, handler.refunds(address(uint160(a)), tk), "refunds are not the model's");
                owed[t] += refund;
            }
        }
        vm.assertEq(address(channels).balance, owed[0], "ETH held is not deposits - paid + credits");
        vm.assertEq(token.balanceOf(address(channels)), owed[1], "tokens held are not deposits - paid + credits");
    }

    /**
     * @notice Invariant 8: no owner can cheat its counterparties, and a key that stopped being trusted
     * adds nothing beyond the bound. Every open channel's paid total is within the spending-rate cap
     * at min(now, end of trust in its pinned period), `claimLimit` is exactly that cap, and the payee
     * can collect it (probe), whatever the payer's owner did.
     */
    function invariant_8_paymentsBoundedByTrust() public view {
        _noBreak(8);
        for (uint256 i = 0; i < handler.channelCount(); ++i) {
            ChannelsHandler.Channel memory c = handler.channel(i);
            if (c.closed) continue;
            uint256 until = handler.trustEnd(i);
            uint256 t = until < block.timestamp ? until : block.timestamp;
            uint256 cap = channels.spendingLimit(c.terms, t);
            vm.assertLe(c.paid, cap, "paid beyond the cap at the end of trust");
            vm.assertEq(
                channels.claimLimit(c.terms, handler.channelKey(i)),
                cap,
                "claimLimit is not the cap at the end of trust"
            );
            (, , uint40 registryUntil) = registry.keyTrustedUntil(handler.channelKey(i), c.terms.payerPeriod);
            vm.assertEq(registryUntil, until, "the registry's end of trust is not the model's");
        }
    }

    /// @notice Invariant 9: a channel id is the hash of its terms and is never reused: a closed
    /// channel's slot is the tombstone, and the same terms were never opened twice.
    function invariant_9_channelIdsNeverReused() public view {
        _noBreak(9);
        for (uint256 i = 0; i < handler.channelCount(); ++i) {
            ChannelsHandler.Channel memory c = handler.channel(i);
            vm.assertEq(channels.channelId(c.terms), c.id, "channel id is not the hash of its terms");
            if (c.closed) {
                PaymentChannels.Channel memory s = channels.channelState(c.id);
                vm.assertEq(s.closesAt, channels.CLOSED(), "a closed channel lost its tombstone");
            }
        }
    }

    function _noBreak(uint256 invariant) internal view {
        vm.assertEq(handler.broken(invariant), 0, handler.firstBroken(invariant));
    }
}

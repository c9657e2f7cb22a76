// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {CustosTest} from "../lib/CustosTest.sol";
import {DeviceRegistry} from "../../../contracts/registry/DeviceRegistry.sol";
import {PaymentChannels} from "../../../contracts/payments/PaymentChannels.sol";
import {TestToken} from "../../../contracts/test/TestToken.sol";
import {ERC7913P256SHA256Verifier} from "../../../contracts/crypto/ERC7913P256SHA256Verifier.sol";

/**
 * @title PaymentChannelsFuzz
 * @notice Properties of PaymentChannels' checks for every input: the channel id (the hash of the
 * terms, read straight from calldata), the spending-rate cap and what a voucher pays, voucher
 * signatures (secp256k1 and P-256), the uint96 deposit bound, the end of trust, and tombstones.
 */
contract PaymentChannelsFuzz is CustosTest {
    uint96 internal constant UNCAPPED = type(uint96).max;
    address internal constant OWNER = address(0xC1);
    address internal constant PAYEE_OWNER = address(0xC3);

    DeviceRegistry internal registry;
    ERC7913P256SHA256Verifier internal verifier;
    PaymentChannels internal channels;
    TestToken internal token;
    DeviceKey[] internal keys;
    uint256[] internal ids;

    function setUp() public {
        vm.warp(T0);
        (registry, verifier) = deployRegistry(threeGuardians());
        channels = new PaymentChannels(registry, FORWARDER, 1 hours);
        token = new TestToken();
        token.approve(address(channels), type(uint256).max);
        DeviceKey[] memory k = new DeviceKey[](3);
        k[0] = newKey(1001, false, address(verifier));
        k[1] = newKey(1002, true, address(verifier));
        k[2] = newKey(1003, false, address(verifier));
        (, uint256[] memory claimed) = provision(registry, k, OWNER);
        for (uint256 i = 0; i < 3; ++i) {
            keys.push(k[i]);
            ids.push(claimed[i]);
        }
        vm.prank(OWNER);
        registry.transferFrom(OWNER, PAYEE_OWNER, ids[2]);
        vm.deal(address(this), 1_000_000 ether);
    }

    /// @dev Opens a channel from payer device `p` (0: secp256k1, 1: P-256) to the payee, in ETH.
    function _open(
        uint256 p,
        uint96 rate,
        uint96 allowance,
        uint256 amount
    ) internal returns (PaymentChannels.Terms memory t) {
        PaymentChannels.Opening memory o = PaymentChannels.Opening(ids[p], ids[2], address(0), rate, allowance, 7);
        channels.open{value: amount}(o, keys[p].signer, amount);
        t = PaymentChannels.Terms(
            ids[p],
            ids[2],
            address(0),
            rate,
            allowance,
            uint64(block.timestamp),
            7,
            keccak256(keys[p].signer),
            registry.deviceTrust(ids[p]).period
        );
    }

    function _voucher(uint256 p, bytes32 channel, uint256 amount) internal view returns (bytes memory) {
        return signDigest(keys[p], _voucherDigest(channels.DOMAIN_SEPARATOR(), channel, amount));
    }

    function _voucherDigest(bytes32 domain, bytes32 channel, uint256 amount) internal view returns (bytes32) {
        return typedDigest(domain, keccak256(abi.encode(channels.VOUCHER_TYPEHASH(), channel, amount)));
    }

    // ------------------------------------------------------------ ids and packed terms (invariant 9)

    /// @notice A channel id is keccak256(abi.encode(terms)) for any terms, as `open` computes it from
    /// its Opening plus the time, key hash and period; `channelId` agrees.
    function testFuzz_channelIdIsTheHashOfItsTerms(
        uint96 rate,
        uint96 allowance,
        uint256 amount,
        uint40 at,
        bool p256
    ) public {
        amount = bound(amount, 1, type(uint96).max);
        vm.assume(at > 0);
        vm.warp(at);
        uint256 p = p256 ? 1 : 0;
        vm.deal(address(this), amount);
        PaymentChannels.Opening memory o = PaymentChannels.Opening(ids[p], ids[2], address(0), rate, allowance, 7);
        bytes32 id = channels.open{value: amount}(o, keys[p].signer, amount);
        PaymentChannels.Terms memory t = PaymentChannels.Terms(
            ids[p],
            ids[2],
            address(0),
            rate,
            allowance,
            uint64(at),
            7,
            keccak256(keys[p].signer),
            registry.deviceTrust(ids[p]).period
        );
        vm.assertEq(id, keccak256(abi.encode(t)), "id: keccak256 of the ABI-encoded terms");
        vm.assertEq(channels.channelId(t), id, "channelId(terms)");
        vm.assertEq(channels.channelState(id).deposit, amount, "deposit");
    }

    /**
     * @notice Terms whose calldata carries dirty high bits in any uint96/uint64/uint32/address word
     * name no channel: a claim with them pays nothing (the id hashes raw calldata, and Solidity refuses
     * dirty words wherever a field is read).
     */
    function testFuzz_dirtyTermsNameNoChannel(uint256 word, uint256 dirt) public {
        PaymentChannels.Terms memory t = _open(0, UNCAPPED, 0, 1 ether);
        bytes32 id = keccak256(abi.encode(t));
        bytes memory data = abi.encodeCall(channels.claim, (t, 1 ether, keys[0].signer, _voucher(0, id, 1 ether)));
        // Words 2–6 and 8 of the terms (token, rate, allowance, openedAt, salt, payerPeriod) have high bits to dirty.
        uint256[6] memory words = [uint256(2), 3, 4, 5, 6, 8];
        uint256[6] memory widths = [uint256(160), 96, 96, 64, 32, 32];
        uint256 w = word % 6;
        dirt = bound(dirt, 1, type(uint256).max >> widths[w]) << widths[w];
        uint256 offset = 4 + 32 * words[w];
        uint256 value;
        assembly {
            value := mload(add(add(data, 32), offset))
            mstore(add(add(data, 32), offset), or(value, dirt))
        }
        (bool ok, ) = address(channels).call(data);
        vm.assertFalse(ok, "a claim with dirty terms was accepted");
        vm.assertEq(channels.channelState(id).paid, 0, "the channel paid nothing");
    }

    /// @notice A closed channel's id is spent for good: its slot is the tombstone, and a voucher or a
    /// top-up for it, or the same terms opened again in the same second, are refused.
    function testFuzz_closedChannelIsATombstone(uint256 amount, uint256 voucher) public {
        amount = bound(amount, 1, 100 ether);
        voucher = bound(voucher, 0, amount);
        PaymentChannels.Terms memory t = _open(0, UNCAPPED, 0, amount);
        bytes32 id = keccak256(abi.encode(t));
        bytes memory sig = voucher == 0 ? bytes("") : _voucher(0, id, voucher);
        vm.prank(PAYEE_OWNER);
        channels.cooperativeClose(t, voucher, keys[0].signer, sig);
        PaymentChannels.Channel memory s = channels.channelState(id);
        vm.assertEq(s.deposit, 0, "tombstone deposit");
        vm.assertEq(s.closesAt, channels.CLOSED(), "tombstone closesAt");
        vm.assertEq(
            channels.deviceBalance(ids[2], address(0)) + channels.accountBalance(OWNER, address(0)),
            amount,
            "all of the deposit credited"
        );
        sig = _voucher(0, id, amount);
        vm.expectRevert(abi.encodeWithSelector(PaymentChannels.PaymentChannelsUnknownChannel.selector, id));
        channels.claim(t, amount, keys[0].signer, sig);
        vm.expectRevert(abi.encodeWithSelector(PaymentChannels.PaymentChannelsUnknownChannel.selector, id));
        channels.topUp{value: 1}(t, 1);
        PaymentChannels.Opening memory o = PaymentChannels.Opening(ids[0], ids[2], address(0), UNCAPPED, 0, 7);
        vm.expectRevert(abi.encodeWithSelector(PaymentChannels.PaymentChannelsChannelExists.selector, id));
        channels.open{value: 1}(o, keys[0].signer, 1);
    }

    /// @notice A deposit beyond uint96 is refused, at open and by top-up (it would not fit the slot).
    function testFuzz_depositFitsUint96(uint256 amount, uint256 topUp) public {
        amount = bound(amount, uint256(type(uint96).max) + 1, type(uint128).max);
        token.mint(address(this), amount);
        PaymentChannels.Opening memory o = PaymentChannels.Opening(ids[0], ids[2], address(token), UNCAPPED, 0, 7);
        vm.expectRevert(abi.encodeWithSelector(PaymentChannels.PaymentChannelsDepositOverflow.selector, amount));
        channels.open(o, keys[0].signer, amount);
        uint256 first = bound(amount, 1, type(uint96).max);
        bytes32 id = channels.open(o, keys[0].signer, first);
        PaymentChannels.Terms memory t = PaymentChannels.Terms(
            ids[0],
            ids[2],
            address(token),
            UNCAPPED,
            0,
            uint64(block.timestamp),
            7,
            keccak256(keys[0].signer),
            0
        );
        topUp = bound(topUp, uint256(type(uint96).max) - first + 1, type(uint128).max - first);
        token.mint(address(this), topUp);
        vm.expectRevert(abi.encodeWithSelector(PaymentChannels.PaymentChannelsDepositOverflow.selector, first + topUp));
        channels.topUp(t, topUp);
        vm.assertEq(channels.channelState(id).deposit, first, "deposit unchanged");
    }

    // ------------------------------------------------------------ the cap (invariant 8)

    /// @notice spendingLimit is allowance + rate × (t − openedAt), never below the allowance (t before
    /// the opening), and unbounded for UNCAPPED.
    function testFuzz_spendingLimit(uint96 rate, uint96 allowance, uint64 openedAt, uint64 t) public view {
        PaymentChannels.Terms memory terms = PaymentChannels.Terms(
            1,
            2,
            address(0),
            rate,
            allowance,
            openedAt,
            0,
            0,
            0
        );
        uint256 limit = channels.spendingLimit(terms, t);
        if (rate == UNCAPPED) vm.assertEq(limit, type(uint256).max, "uncapped");
        else
            vm.assertEq(
                limit,
                uint256(allowance) + uint256(rate) * (t > openedAt ? t - openedAt : 0),
                "allowance + rate x elapsed"
            );
    }

    /**
     * @notice A voucher for any cumulative amount pays min(amount, deposit, cap now): never more than
     * the deposit or the cap, and exactly that, for both key kinds.
     */
    function testFuzz_voucherPaysMinOfAmountDepositAndCap(
        bool p256,
        uint96 rate,
        uint96 allowance,
        uint256 deposit,
        uint256 amount,
        uint32 elapsed
    ) public {
        deposit = bound(deposit, 1, 1_000_000 ether);
        rate = uint96(bound(rate, 0, 1e18));
        allowance = uint96(bound(allowance, 0, 1_000_000 ether));
        uint256 p = p256 ? 1 : 0;
        PaymentChannels.Terms memory t = _open(p, rate, allowance, deposit);
        bytes32 id = keccak256(abi.encode(t));
        vm.warp(block.timestamp + elapsed);
        uint256 expected = amount < deposit ? amount : deposit;
        uint256 cap = uint256(allowance) + uint256(rate) * elapsed;
        if (expected > cap) expected = cap;
        vm.assertEq(channels.claimLimit(t, keys[p].signer), cap, "claimLimit: the cap now");
        bytes memory sig = _voucher(p, id, amount);
        if (expected == 0) {
            vm.expectRevert(abi.encodeWithSelector(PaymentChannels.PaymentChannelsNothingToClaim.selector, id, 0));
            channels.claim(t, amount, keys[p].signer, sig);
            return;
        }
        channels.claim(t, amount, keys[p].signer, sig);
        vm.assertEq(channels.channelState(id).paid, expected, "paid: min(amount, deposit, cap)");
        vm.assertEq(channels.deviceBalance(ids[2], address(0)), expected, "the payee device is credited");
    }

    /**
     * @notice Whatever the payer's owner does after trust ends (report it stolen, decommission it,
     * rotate its key), a voucher presented any time later pays exactly the cap at the moment trust
     * ended (capped by the deposit): no less (the payee collects) and no more (the key adds nothing).
     */
    function testFuzz_trustEndBoundsVouchersForGood(uint8 how, uint32 before, uint32 later, uint96 rate) public {
        rate = uint96(bound(rate, 1, 1e12));
        PaymentChannels.Terms memory t = _open(0, rate, 0, 1_000_000 ether);
        bytes32 id = keccak256(abi.encode(t));
        vm.warp(block.timestamp + before);
        uint256 endedAt = block.timestamp;
        how = how % 3;
        vm.prank(OWNER);
        if (how == 0) registry.reportStolen(ids[0]);
        else if (how == 1) registry.decommission(ids[0]);
        else {
            DeviceKey memory next = newKey(4242, false, address(verifier));
            DeviceRegistry.Rotation memory r = rotationOf(registry, ids[0], next, keys[0], true);
            vm.prank(OWNER);
            registry.rotateKey(ids[0], r);
        }
        vm.warp(block.timestamp + later);
        uint256 bound_ = uint256(rate) * (endedAt - t.openedAt);
        bytes memory sig = _voucher(0, id, 1_000_000 ether);
        if (bound_ == 0) {
            vm.expectPartialRevert(PaymentChannels.PaymentChannelsNothingToClaim.selector);
            channels.claim(t, 1_000_000 ether, keys[0].signer, sig);
            return;
        }
        channels.claim(t, 1_000_000 ether, keys[0].signer, sig);
        vm.assertEq(channels.channelState(id).paid, bound_, "paid: the cap when trust ended");
    }

    // ------------------------------------------------------------ voucher signatures (invariant 2)

    /**
     * @notice A voucher pays only when signed by the channel's own key over this channel, this amount,
     * in this contract's domain, low-s, exact length: any one of those changed is refused.
     */
    function testFuzz_voucherSignatureIsBoundToEverything(
        bool p256,
        uint256 how,
        uint256 amount,
        uint256 noise
    ) public {
        uint256 p = p256 ? 1 : 0;
        PaymentChannels.Terms memory t = _open(p, UNCAPPED, 0, 10 ether);
        bytes32 id = keccak256(abi.encode(t));
        amount = bound(amount, 1, 10 ether);
        bytes32 domain = channels.DOMAIN_SEPARATOR();
        bytes memory sig;
        how = how % 7;
        if (how == 0) sig = signDigest(keys[p], _voucherDigest(domain, keccak256(abi.encode(id, noise)), amount));
        else if (how == 1)
            sig = signDigest(keys[p], _voucherDigest(domain, id, amount ^ (1 + (noise % type(uint128).max))));
        else if (how == 2) sig = signDigest(keys[p], _voucherDigest(keccak256(abi.encode(domain, noise)), id, amount));
        else if (how == 3) {
            DeviceKey memory other = newKey(noise, p256, address(verifier));
            vm.assume(other.pk != keys[p].pk);
            sig = signDigest(other, _voucherDigest(domain, id, amount));
        } else {
            sig = _voucher(p, id, amount);
            if (how == 4) sig = _highS(p256, sig);
            else if (how == 5) sig = bytes.concat(sig, bytes1(uint8(noise)));
            else sig[noise % sig.length] ^= bytes1(uint8(1 + (noise % 255)));
        }
        vm.expectPartialRevert(PaymentChannels.PaymentChannelsInvalidSignature.selector);
        channels.claim(t, amount, keys[p].signer, sig);
    }

    /// @notice Only the key the channel pinned pays: another registered key (the payer's next key
    /// after a rotation, another device's), even with a valid signature of its own, is refused.
    function testFuzz_onlyThePinnedKeyPays(uint256 amount, bool other) public {
        PaymentChannels.Terms memory t = _open(0, UNCAPPED, 0, 10 ether);
        bytes32 id = keccak256(abi.encode(t));
        amount = bound(amount, 1, 10 ether);
        DeviceKey memory k = keys[2];
        if (!other) {
            k = newKey(777, false, address(verifier));
            DeviceRegistry.Rotation memory r = rotationOf(registry, ids[0], k, keys[0], true);
            vm.prank(OWNER);
            registry.rotateKey(ids[0], r);
        }
        bytes memory sig = signDigest(k, _voucherDigest(channels.DOMAIN_SEPARATOR(), id, amount));
        vm.expectRevert(abi.encodeWithSelector(PaymentChannels.PaymentChannelsNotPayerKey.selector, ids[0]));
        channels.claim(t, amount, k.signer, sig);
    }

    function _highS(bool p256, bytes memory sig) internal pure returns (bytes memory) {
        (bytes32 r, bytes32 s) = abi.decode(sig, (bytes32, bytes32));
        if (p256) return abi.encodePacked(r, bytes32(P256_N - uint256(s)));
        return abi.encodePacked(r, bytes32(SECP256K1_N - uint256(s)), uint8(sig[64]) == 27 ? uint8(28) : uint8(27));
    }
}

// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {CustosTest} from "../lib/CustosTest.sol";
import {Merkle} from "../lib/Merkle.sol";
import {DeviceRegistry} from "../../../contracts/registry/DeviceRegistry.sol";
import {CustodyLedger} from "../../../contracts/custody/CustodyLedger.sol";
import {ERC1271Wallet} from "../../../contracts/test/ERC1271Wallet.sol";
import {ERC7913P256SHA256Verifier} from "../../../contracts/crypto/ERC7913P256SHA256Verifier.sol";

/**
 * @title CustodyLedgerFuzz
 * @notice Properties of the CustodyLedger's parsers and checks for every input: the three packed
 * slots a shipment is written to (uint40 deadline, uint24 silence, int16 temperatures, the pinned
 * uint16 generation and uint32 period), the checkpoint digest hashed from calldata, handoff
 * signatures (EOA and ERC-1271), readings' Merkle proofs, creator-owned ids and pallet children.
 */
contract CustodyLedgerFuzz is CustosTest {
    address internal constant TRACKER_OWNER = address(0xC1);

    DeviceRegistry internal registry;
    CustodyLedger internal ledger;
    ERC7913P256SHA256Verifier internal verifier;
    DeviceKey[] internal trackerKeys;
    uint256[] internal trackers;
    uint256 internal constant SHIPPER_PK = 0x5111;
    uint256 internal constant CARRIER_PK = 0xCA11;
    address internal shipper;
    address internal carrier;

    function setUp() public {
        vm.warp(T0);
        (registry, verifier) = deployRegistry(threeGuardians());
        ledger = new CustodyLedger(registry, FORWARDER);
        DeviceKey[] memory k = new DeviceKey[](2);
        k[0] = newKey(0x7001, false, address(verifier));
        k[1] = newKey(0x7002, true, address(verifier));
        (, uint256[] memory ids) = provision(registry, k, TRACKER_OWNER);
        for (uint256 i = 0; i < 2; ++i) {
            trackerKeys.push(k[i]);
            trackers.push(ids[i]);
        }
        (shipper, carrier) = (vm.addr(SHIPPER_PK), vm.addr(CARRIER_PK));
    }

    function _params(string memory epc, uint256 tracker) internal view returns (CustodyLedger.ShipmentParams memory) {
        return
            CustodyLedger.ShipmentParams(
                epc,
                tracker,
                carrier,
                uint40(block.timestamp + 2 days),
                1 hours,
                200,
                800,
                0,
                0,
                false
            );
    }

    function _create(string memory epc, uint256 t) internal returns (bytes32 id) {
        vm.prank(shipper);
        id = ledger.createShipment(_params(epc, trackers[t]));
    }

    function _checkpoint(
        bytes32 shipment,
        uint32 seq,
        int16 lo,
        int16 hi,
        uint64 at
    ) internal pure returns (CustodyLedger.CheckpointData memory) {
        return CustodyLedger.CheckpointData(shipment, seq, keccak256(abi.encode(lo, hi, at)), 1, lo, hi, "here", at);
    }

    function _cpDigest(CustodyLedger.CheckpointData memory cp) internal view returns (bytes32) {
        return typedDigest(ledger.DOMAIN_SEPARATOR(), keccak256(abi.encode(ledger.CHECKPOINT_TYPEHASH(), cp)));
    }

    // ------------------------------------------------------------ ids (invariant 9)

    /// @notice A shipment's id is keccak256(abi.encode(creator, keccak256(epc))) for any EPC: two
    /// creators of one EPC get two shipments, each its own, and one creator cannot create it twice.
    function testFuzz_shipmentIdsBelongToCreators(string memory epc, address other) public {
        vm.assume(other != shipper && other != address(0) && other != FORWARDER);
        bytes32 mine = _create(epc, 0);
        vm.assertEq(mine, keccak256(abi.encode(shipper, keccak256(bytes(epc)))), "id: creator and EPC");
        vm.assertEq(ledger.shipmentIdOf(shipper, epc), mine, "shipmentIdOf");
        vm.prank(other);
        bytes32 theirs = ledger.createShipment(_params(epc, trackers[0]));
        vm.assertNotEq(theirs, mine, "another creator's shipment has another id");
        vm.assertEq(ledger.shipmentOf(mine).custodian, shipper, "the first shipment is untouched");
        CustodyLedger.ShipmentParams memory p = _params(epc, trackers[0]);
        vm.prank(shipper);
        vm.expectRevert(abi.encodeWithSelector(CustodyLedger.CustodyLedgerShipmentExists.selector, mine));
        ledger.createShipment(p);
    }

    /// @notice Any listed child of any pallet of 1–12 splits off once, under childIdOf(pallet, epc); an
    /// EPC not in the pallet's root is refused.
    function testFuzz_palletChildrenSplitOnce(uint256 n, uint256 index, uint256 salt) public {
        n = bound(n, 1, 12);
        index = bound(index, 0, n - 1);
        bytes32[] memory leaves = new bytes32[](n);
        for (uint256 i = 0; i < n; ++i)
            leaves[i] = keccak256(bytes.concat(keccak256(abi.encode(keccak256(bytes(_child(salt, i)))))));
        CustodyLedger.ShipmentParams memory p = _params("pallet", trackers[0]);
        p.childrenRoot = Merkle.root(leaves);
        vm.prank(shipper);
        bytes32 pallet = ledger.createShipment(p);
        bytes32[] memory proof = Merkle.proof(leaves, index);
        vm.prank(shipper);
        bytes32 child = ledger.splitChild(pallet, _child(salt, index), proof);
        vm.assertEq(
            child,
            keccak256(abi.encode(pallet, keccak256(bytes(_child(salt, index))))),
            "childIdOf(pallet, epc)"
        );
        vm.assertEq(ledger.shipmentOf(child).custodian, shipper, "the child's custodian is the pallet's");
        vm.prank(shipper);
        vm.expectRevert(abi.encodeWithSelector(CustodyLedger.CustodyLedgerShipmentExists.selector, child));
        ledger.splitChild(pallet, _child(salt, index), proof);
        vm.prank(shipper);
        vm.expectRevert(CustodyLedger.CustodyLedgerInvalidProof.selector);
        ledger.splitChild(pallet, _child(~salt, index), proof);
    }

    function _child(uint256 salt, uint256 i) internal pure returns (string memory) {
        return string.concat("urn:epc:id:sgtin:", vm.toString(salt), ".", vm.toString(i));
    }

    // ------------------------------------------------------------ packed slots

    /**
     * @notice The three slots a shipment is written to in assembly read back exactly as given, for
     * any receiver, deadline (uint40), silence (uint24), temperatures (int16, negative ones too),
     * tracker key generation and trust period.
     */
    function testFuzz_packedSlotsRoundTrip(
        address receiver,
        uint40 deadline,
        uint24 maxSilence,
        int16 a,
        int16 b,
        bool rotate
    ) public {
        vm.assume(receiver != address(0) && deadline > block.timestamp && maxSilence != 0);
        (int16 lo, int16 hi) = a <= b ? (a, b) : (b, a);
        if (rotate) {
            DeviceKey memory next = newKey(0x7003, false, address(verifier));
            DeviceRegistry.Rotation memory r = rotationOf(registry, trackers[0], next, trackerKeys[0], true);
            vm.prank(TRACKER_OWNER);
            registry.rotateKey(trackers[0], r);
        }
        CustodyLedger.ShipmentParams memory p = CustodyLedger.ShipmentParams(
            "epc",
            trackers[0],
            receiver,
            deadline,
            maxSilence,
            lo,
            hi,
            0,
            0,
            false
        );
        vm.prank(shipper);
        bytes32 id = ledger.createShipment(p);
        CustodyLedger.ShipmentView memory v = ledger.shipmentOf(id);
        vm.assertEq(v.custodian, shipper, "custodian");
        vm.assertEq(v.handoffSeq, 0, "handoffSeq");
        vm.assertEq(v.deadline, deadline, "deadline");
        vm.assertEq(v.maxSilence, maxSilence, "maxSilence");
        vm.assertEq(v.tracker, trackers[0], "tracker");
        vm.assertEq(v.lastCheckpointAt, block.timestamp, "lastCheckpointAt");
        vm.assertEq(v.receiver, receiver, "receiver");
        vm.assertEq(int256(v.minTemp), int256(lo), "minTemp");
        vm.assertEq(int256(v.maxTemp), int256(hi), "maxTemp");
        vm.assertEq(v.trackerKeyGeneration, rotate ? 1 : 0, "pinned key generation");
        vm.assertEq(v.trackerPeriod, registry.deviceTrust(trackers[0]).period, "pinned period");
        vm.assertTrue(v.trackerKeyAttested, "pinned provenance");
        vm.assertFalse(v.breached || v.overdue || v.silent || v.delivered, "no flags");
    }

    // ------------------------------------------------------------ checkpoints (invariants 2, 8)

    /**
     * @notice A checkpoint signed by the pinned tracker key (either kind) lands for any readings'
     * min and max, and breaches exactly when they leave the allowed range; signed over any other
     * field value (the digest is hashed from calldata) it is refused.
     */
    function testFuzz_checkpointBreachesExactlyOutOfRange(bool p256, int16 a, int16 b, uint256 tamper) public {
        (int16 lo, int16 hi) = a <= b ? (a, b) : (b, a);
        uint256 t = p256 ? 1 : 0;
        bytes32 id = _create("cp", t);
        vm.warp(block.timestamp + 60);
        CustodyLedger.CheckpointData memory cp = _checkpoint(id, 1, lo, hi, uint64(block.timestamp));
        bytes memory sig = signDigest(trackerKeys[t], _cpDigest(cp));
        if (tamper % 4 == 0) {
            CustodyLedger.CheckpointData memory forged = _checkpoint(
                id,
                1,
                lo,
                hi == type(int16).max ? hi - 1 : hi + 1,
                cp.at
            );
            vm.expectRevert(CustodyLedger.CustodyLedgerInvalidTrackerSignature.selector);
            ledger.checkpoint(forged, trackerKeys[t].signer, sig);
            return;
        }
        ledger.checkpoint(cp, trackerKeys[t].signer, sig);
        CustodyLedger.ShipmentView memory v = ledger.shipmentOf(id);
        vm.assertEq(v.checkpointSeq, 1, "seq");
        vm.assertEq(v.breached, lo < 200 || hi > 800, "breached exactly when out of range");
    }

    /// @notice A checkpoint whose calldata has dirty high bits in a packed field (seq, count, temps, at)
    /// never lands: its digest differs from the signed one, or the decoder refuses it.
    function testFuzz_dirtyCheckpointNeverLands(uint256 field, uint256 dirt) public {
        bytes32 id = _create("dirty", 0);
        CustodyLedger.CheckpointData memory cp = _checkpoint(id, 1, 300, 400, uint64(block.timestamp));
        bytes memory sig = signDigest(trackerKeys[0], _cpDigest(cp));
        bytes memory data = abi.encodeCall(ledger.checkpoint, (cp, trackerKeys[0].signer, sig));
        uint256[5] memory words = [uint256(1), 3, 4, 5, 7];
        uint256[5] memory widths = [uint256(32), 32, 16, 16, 64];
        uint256 w = field % 5;
        uint256 offset = 4 + 32 * words[w];
        dirt = bound(dirt, 1, type(uint256).max >> widths[w]) << widths[w];
        // int16 fields are sign-extended: a positive value's clean high bits are 0, so any set high bit is dirty.
        assembly {
            let p := add(add(data, 32), offset)
            mstore(p, xor(mload(p), dirt))
        }
        (bool ok, ) = address(ledger).call(data);
        vm.assertFalse(ok, "a dirty checkpoint landed");
        vm.assertEq(ledger.shipmentOf(id).checkpointSeq, 0, "nothing posted");
    }

    /**
     * @notice Once the tracker is reported stolen at `reportAt`, a checkpoint by its pinned key counts
     * only when dated no later than that (and within [last, now]), however long after it arrives.
     */
    function testFuzz_checkpointsCountUntilTrustEnded(uint32 reportAfter, uint32 arriveAfter, uint64 at) public {
        bytes32 id = _create("trust", 0);
        uint256 created = block.timestamp;
        vm.warp(created + reportAfter);
        vm.prank(TRACKER_OWNER);
        registry.reportStolen(trackers[0]);
        uint256 reportAt = block.timestamp;
        vm.warp(reportAt + arriveAfter);
        at = uint64(bound(at, created, block.timestamp));
        CustodyLedger.CheckpointData memory cp = _checkpoint(id, 1, 300, 400, at);
        bytes memory sig = signDigest(trackerKeys[0], _cpDigest(cp));
        if (at > reportAt) {
            vm.expectRevert(
                abi.encodeWithSelector(CustodyLedger.CustodyLedgerTrackerNotTrusted.selector, at, uint40(reportAt))
            );
            ledger.checkpoint(cp, trackerKeys[0].signer, sig);
        } else {
            ledger.checkpoint(cp, trackerKeys[0].signer, sig);
            vm.assertEq(ledger.shipmentOf(id).lastCheckpointAt, at, "counted: dated before trust ended");
        }
    }

    /**
     * @notice Any reading of any batch of 1–16 readings is proven against its posted root; the
     * shipment is breached by it exactly when it is out of range, and a reading that is not in the
     * batch is refused.
     */
    function testFuzz_readingProofs(uint256 n, uint256 index, int16 temp, uint256 salt) public {
        n = bound(n, 1, 16);
        index = bound(index, 0, n - 1);
        bytes32 id = _create("readings", 0);
        vm.warp(block.timestamp + 60);
        CustodyLedger.Reading[] memory readings = new CustodyLedger.Reading[](n);
        bytes32[] memory leaves = new bytes32[](n);
        for (uint256 i = 0; i < n; ++i) {
            readings[i] = CustodyLedger.Reading(
                uint64(block.timestamp - n + i),
                i == index ? temp : int16(int256(300 + (uint256(keccak256(abi.encode(salt, i))) % 400)))
            );
            leaves[i] = keccak256(bytes.concat(keccak256(abi.encode(readings[i].at, readings[i].temp))));
        }
        bytes32 root = Merkle.root(leaves);
        // The tracker signs an honest-looking range: it hides the reading if it is out of range.
        CustodyLedger.CheckpointData memory cp = CustodyLedger.CheckpointData(
            id,
            1,
            root,
            uint32(n),
            200,
            800,
            "here",
            uint64(block.timestamp)
        );
        ledger.checkpoint(cp, trackerKeys[0].signer, signDigest(trackerKeys[0], _cpDigest(cp)));
        bytes32[] memory proof = Merkle.proof(leaves, index);
        vm.assertTrue(ledger.verifyReading(root, readings[index], proof), "verifyReading");
        CustodyLedger.CheckpointSummary memory summary = CustodyLedger.CheckpointSummary(
            id,
            1,
            root,
            200,
            800,
            200,
            800
        );
        CustodyLedger.Reading memory other = CustodyLedger.Reading(
            readings[index].at,
            temp == type(int16).max ? temp - 1 : temp + 1
        );
        vm.expectRevert(CustodyLedger.CustodyLedgerInvalidProof.selector);
        ledger.proveLatestExcursion(summary, other, proof);
        bool out = temp < 200 || temp > 800;
        if (!out) vm.expectRevert(abi.encodeWithSelector(CustodyLedger.CustodyLedgerNotAnExcursion.selector, temp));
        ledger.proveLatestExcursion(summary, readings[index], proof);
        vm.assertEq(ledger.shipmentOf(id).breached, out, "breached exactly by an out-of-range reading");
    }

    // ------------------------------------------------------------ handoffs (invariants 2, 5)

    /**
     * @notice A handoff moves custody only with both parties' signatures over exactly it (EOA, or a
     * contract wallet through ERC-1271) and the next seq: any field signed differently, a signature
     * by someone else, another domain, the high-s twin or another seq is refused; the valid one
     * moves custody and seq by one, once.
     */
    function testFuzz_handoffNeedsBothSignatures(uint256 how, bool toWallet, uint256 noise) public {
        bytes32 id = _create("handoff", 0);
        ERC1271Wallet wallet = new ERC1271Wallet(carrier);
        address to = toWallet ? address(wallet) : carrier;
        CustodyLedger.HandoffData memory h = CustodyLedger.HandoffData(
            id,
            shipper,
            to,
            1,
            "shipping",
            "in_transit",
            "dock",
            uint64(block.timestamp),
            block.timestamp + HOUR
        );
        bytes32 domain = ledger.DOMAIN_SEPARATOR();
        bytes32 digest = typedDigest(domain, keccak256(abi.encode(ledger.HANDOFF_TYPEHASH(), h)));
        bytes memory fromSig = signEoa(SHIPPER_PK, digest);
        bytes memory toSig = signEoa(CARRIER_PK, digest);
        how = how % 7;
        if (how == 0) fromSig = signEoa(CARRIER_PK, digest);
        else if (how == 1) toSig = signEoa(SHIPPER_PK, digest);
        else if (how == 2)
            toSig = signEoa(
                CARRIER_PK,
                typedDigest(keccak256(abi.encode(domain, noise)), keccak256(abi.encode(ledger.HANDOFF_TYPEHASH(), h)))
            );
        else if (how == 3) {
            (bytes32 r, bytes32 s) = abi.decode(fromSig, (bytes32, bytes32));
            fromSig = abi.encodePacked(
                r,
                bytes32(SECP256K1_N - uint256(s)),
                uint8(fromSig[64]) == 27 ? uint8(28) : uint8(27)
            );
        } else if (how == 4) h.readPoint = keccak256(abi.encode(noise));
        else if (how == 5) {
            h.seq = uint32(bound(noise, 2, type(uint32).max));
            vm.expectRevert(abi.encodeWithSelector(CustodyLedger.CustodyLedgerWrongSequence.selector, 1, h.seq));
            ledger.handoff(h, fromSig, toSig);
            return;
        }
        if (how < 5) {
            vm.expectPartialRevert(CustodyLedger.CustodyLedgerInvalidSignature.selector);
            ledger.handoff(h, fromSig, toSig);
            vm.assertEq(ledger.shipmentOf(id).custodian, shipper, "custody did not move");
            return;
        }
        ledger.handoff(h, fromSig, toSig);
        vm.assertEq(ledger.shipmentOf(id).custodian, to, "custody moved");
        vm.assertEq(ledger.shipmentOf(id).handoffSeq, 1, "seq moved by one");
        vm.expectRevert(abi.encodeWithSelector(CustodyLedger.CustodyLedgerNotCustodian.selector, to, shipper));
        ledger.handoff(h, fromSig, toSig);
    }
}

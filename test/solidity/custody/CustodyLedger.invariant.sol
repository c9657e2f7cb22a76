// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {HandlerBase} from "../lib/HandlerBase.sol";
import {CustosTest} from "../lib/CustosTest.sol";
import {Merkle} from "../lib/Merkle.sol";
import {DeviceRegistry} from "../../../contracts/registry/DeviceRegistry.sol";
import {CustodyLedger} from "../../../contracts/custody/CustodyLedger.sol";
import {ERC1271Wallet} from "../../../contracts/test/ERC1271Wallet.sol";
import {ERC7913P256SHA256Verifier} from "../../../contracts/crypto/ERC7913P256SHA256Verifier.sol";

/**
 * @title CustodyHandler
 * @notice Bounded actions on the CustodyLedger: shipments and pallets created by four custodians
 * (three EOAs and an ERC-1271 wallet) on EPCs they may share, children split off pallets, handoffs
 * signed by both custodians (or forged, replayed, out of sequence, expired, for another domain),
 * tracker checkpoints (honest, breaching, lying about their min and max, by the wrong key, out of
 * sequence or time), excursions proven against posted checkpoints, overdue and silent marks,
 * deliveries, and the tracker owner's moves (theft reports, releases, rotations with and without
 * the old key, re-attestation). A ghost model predicts every outcome.
 */
contract CustodyHandler is HandlerBase {
    uint8 internal constant BREACHED = 1;
    uint8 internal constant OVERDUE = 2;
    uint8 internal constant SILENT = 4;
    uint8 internal constant DELIVERED = 8;
    uint256 internal constant MAX_SHIPMENTS = 14;
    uint256 internal constant CUSTODIANS = 4;
    address internal constant TRACKER_OWNER = address(0xC1);
    int16 internal constant MIN_TEMP = 200;
    int16 internal constant MAX_TEMP = 800;

    DeviceRegistry public immutable registry;
    CustodyLedger public immutable ledger;
    address public immutable verifier;
    ERC1271Wallet public immutable wallet;

    struct Tracker {
        uint256 id;
        DeviceKey[] keys;
        uint32 period;
        uint40 untrustedSince;
        bool stolen;
        bool ownerInstalled;
    }

    struct Shipment {
        bytes32 id;
        string epc;
        /// @dev Index of the creating custodian, or of the pallet's (children).
        uint256 creator;
        bytes32 parent;
        uint256 tracker;
        uint16 generation;
        uint32 period;
        address receiver;
        uint40 deadline;
        uint24 maxSilence;
        address custodian;
        uint32 handoffSeq;
        uint16 checkpointSeq;
        uint40 lastAt;
        uint8 flags;
        bytes32[] children;
        /// @dev keccak256 of `shipmentOf` when it was delivered.
        bytes32 delivered;
    }

    /// @dev A posted checkpoint with what proves its readings.
    struct Posted {
        CustodyLedger.CheckpointData cp;
        uint256 key;
        bytes signature;
        uint64[] ats;
        int16[] temps;
    }

    Tracker[2] internal _trackers;
    address[CUSTODIANS] public custodians;
    uint256[CUSTODIANS] internal _custodianKeys;
    Shipment[] internal _shipments;
    mapping(uint256 tracker => mapping(uint32 period => uint40)) internal _ends;
    mapping(uint256 shipment => Posted) internal _lastPosted;
    /// @dev The shipment and sequence number of each tracker's latest checkpoint (+1; 0: none).
    mapping(uint256 tracker => uint256) internal _latestShipment;
    /// @dev The last accepted handoff and its signatures, to replay.
    CustodyLedger.HandoffData internal _lastHandoff;
    bytes internal _lastFromSig;
    bytes internal _lastToSig;

    constructor(DeviceRegistry registry_, CustodyLedger ledger_, address verifier_) {
        (registry, ledger, verifier) = (registry_, ledger_, verifier_);
        for (uint256 i = 0; i < CUSTODIANS; ++i) {
            _custodianKeys[i] = uint256(keccak256(abi.encode("custodian", i)));
            custodians[i] = vm.addr(_custodianKeys[i]);
        }
        wallet = new ERC1271Wallet(custodians[3]);
        custodians[3] = address(wallet);
        DeviceKey[] memory keys = new DeviceKey[](2);
        keys[0] = newKey(uint256(keccak256("tracker 0")), false, verifier_);
        keys[1] = newKey(uint256(keccak256("tracker 1")), true, verifier_);
        (, uint256[] memory ids) = provision(registry_, keys, TRACKER_OWNER);
        for (uint256 i = 0; i < 2; ++i) {
            _trackers[i].id = ids[i];
            _trackers[i].keys.push(keys[i]);
        }
    }

    // ================================================================ shipments

    /// @notice A custodian creates a shipment (or, `seed` odd, a pallet of 2–4 children) on one of 6 EPCs.
    function create(uint256 creatorSeed, uint256 epcSeed, uint256 trackerSeed, uint256 seed) external {
        if (_shipments.length >= MAX_SHIPMENTS) return;
        uint256 ci = creatorSeed % CUSTODIANS;
        uint256 ti = trackerSeed % 2;
        uint256 children = seed % 2 == 1 ? 2 + ((seed >> 100) % 3) : 0;
        CustodyLedger.ShipmentParams memory p = _params(epcSeed % 6, ti, seed, children);
        bytes32 id = keccak256(abi.encode(custodians[ci], keccak256(bytes(p.epc))));
        bool fresh = _find(id) == type(uint256).max;
        Tracker storage t = _trackers[ti];
        bool trusted = !t.stolen && (!t.ownerInstalled || p.acceptOwnerKeys);
        vm.prank(custodians[ci]);
        bool ok;
        try ledger.createShipment(p) returns (bytes32 got) {
            ok = true;
            _check(9, got == id, "createShipment: id is not shipmentIdOf(creator, epc)");
        } catch {}
        _expect(fresh ? 1 : 9, fresh && trusted, ok, "createShipment");
        if (ok) _add(id, ci, ti, p, children);
    }

    function _params(
        uint256 epcIndex,
        uint256 ti,
        uint256 seed,
        uint256 children
    ) internal view returns (CustodyLedger.ShipmentParams memory p) {
        string memory epc = string.concat("urn:epc:id:sscc:0614141.", vm.toString(epcIndex));
        p = CustodyLedger.ShipmentParams(
            epc,
            _trackers[ti].id,
            custodians[(seed >> 8) % CUSTODIANS],
            uint40(block.timestamp + bound(seed >> 16, 1 hours, 6 days)),
            uint24(bound(seed >> 64, 10 minutes, 2 days)),
            MIN_TEMP,
            MAX_TEMP,
            keccak256(abi.encode(seed)),
            children != 0 ? _childrenRoot(epc, children) : bytes32(0),
            (seed >> 120) % 2 == 0
        );
    }

    /// @notice The pallet's custodian (or someone else) splits a child off (a listed EPC, or not).
    function splitChild(uint256 palletSeed, uint256 childSeed, uint256 callerSeed) external {
        uint256 pi = _pickPallet(palletSeed);
        if (pi == type(uint256).max || _shipments.length >= MAX_SHIPMENTS) return;
        Shipment storage pallet = _shipments[pi];
        bool listed = childSeed % 6 != 0;
        uint256 n = pallet.children.length;
        string memory epc = listed ? _childEpc(pallet.epc, childSeed % n) : string.concat(pallet.epc, "/stowaway");
        bytes32[] memory proof = Merkle.proof(pallet.children, childSeed % n);
        address caller = callerSeed % 5 == 0 ? custodians[(callerSeed >> 8) % CUSTODIANS] : pallet.custodian;
        bytes32 child = keccak256(abi.encode(pallet.id, keccak256(bytes(epc))));
        bool expected =
            caller == pallet.custodian &&
                pallet.flags & DELIVERED == 0 &&
                listed &&
                _find(child) == type(uint256).max &&
                pallet.deadline > block.timestamp;
        vm.prank(caller);
        bool ok;
        try ledger.splitChild(pallet.id, epc, proof) returns (bytes32 got) {
            ok = true;
            _check(9, got == child, "splitChild: id is not childIdOf(pallet, epc)");
        } catch {}
        _expect(caller == pallet.custodian ? 9 : 10, expected, ok, "splitChild");
        if (!ok) return;
        Shipment storage s = _shipments.push();
        (s.id, s.epc, s.creator, s.parent, s.tracker) = (child, epc, pallet.creator, pallet.id, pallet.tracker);
        (s.generation, s.period, s.receiver, s.deadline, s.maxSilence) = (
            pallet.generation,
            pallet.period,
            pallet.receiver,
            pallet.deadline,
            pallet.maxSilence
        );
        (s.custodian, s.lastAt) = (pallet.custodian, uint40(block.timestamp));
    }

    /**
     * @notice A handoff from the custodian to another custodian, relayed by anyone: signed by both
     * (mostly), or with a forged signature, a wrong sequence number, an expired deadline, another
     * domain, the high-s twin, or the last accepted handoff replayed.
     */
    function handoff(uint256 shipmentSeed, uint256 toSeed, uint256 variant) external {
        if (_shipments.length == 0) return;
        Shipment storage s = _shipments[_pickLive(shipmentSeed)];
        uint256 v = variant % 14;
        if (v == 13) return _replayHandoff();
        address to = custodians[toSeed % CUSTODIANS];
        CustodyLedger.HandoffData memory h = CustodyLedger.HandoffData(
            s.id,
            s.custodian,
            to,
            v == 9 ? s.handoffSeq + 2 : s.handoffSeq + 1,
            "shipping",
            "in_transit",
            keccak256(abi.encode("read point", toSeed)),
            uint64(block.timestamp),
            v == 10 ? block.timestamp - 1 : block.timestamp + HOUR
        );
        bytes32 domain =
            v == 11 ? keccak256(abi.encode(ledger.DOMAIN_SEPARATOR(), "another domain")) : ledger.DOMAIN_SEPARATOR();
        bytes32 digest = typedDigest(domain, keccak256(abi.encode(ledger.HANDOFF_TYPEHASH(), h)));
        bytes memory fromSig = _signAs(s.custodian, digest);
        bytes memory toSig = _signAs(to, digest);
        if (v == 8)
            fromSig = _signAs(to == s.custodian ? custodians[((toSeed % CUSTODIANS) + 1) % CUSTODIANS] : to, digest);
        if (v == 12) toSig = _highS(toSig);
        bool valid = v < 8 && s.flags & DELIVERED == 0;
        bool ok;
        try ledger.handoff(h, fromSig, toSig) {
            ok = true;
        } catch {}
        // A forged signature or a gap in seq breaks the custody chain (5); an expired, foreign-domain
        // or malleated signature breaks signature binding (2).
        _expect(v < 10 ? 5 : 2, valid, ok, "handoff");
        if (!ok) return;
        (s.custodian, s.handoffSeq) = (to, h.seq);
        (_lastHandoff, _lastFromSig, _lastToSig) = (h, fromSig, toSig);
    }

    /**
     * @notice The tracker's checkpoint, relayed by anyone: honest (mostly), breaching, lying about
     * its min and max, out of sequence, dated in the future or before the last one, or signed by the
     * wrong key (the tracker's current key after a rotation, or the other tracker's). Dated any time
     * since the last one: after the tracker's trust ended, it must be refused.
     */
    function checkpoint(uint256 shipmentSeed, uint256 variant, uint256 readingsSeed) external {
        if (_shipments.length == 0) return;
        uint256 si = _pickLive(shipmentSeed);
        uint256 v = variant % 13;
        (CustodyLedger.CheckpointData memory cp, uint64[] memory ats, int16[] memory temps) = _checkpointData(
            _shipments[si],
            v,
            readingsSeed
        );
        (DeviceKey memory key, uint256 ki) = _checkpointKey(si, v);
        bytes memory sig = signDigest(key, _checkpointDigest(cp));
        bool ok;
        try ledger.checkpoint(cp, key.signer, sig) {
            ok = true;
        } catch {}
        _judgeCheckpoint(si, v, cp.at, ok);
        if (ok) _recordCheckpoint(si, cp, ki, sig, ats, temps);
    }

    /// @dev The pinned key, or (variant 12) the tracker's current key when it is another, or the other tracker's.
    function _checkpointKey(uint256 si, uint256 v) internal view returns (DeviceKey memory key, uint256 ki) {
        Shipment storage s = _shipments[si];
        Tracker storage t = _trackers[s.tracker];
        ki = s.generation;
        key = t.keys[ki];
        if (v == 12) key = t.keys.length - 1 != ki ? t.keys[t.keys.length - 1] : _trackers[1 - s.tracker].keys[0];
    }

    function _judgeCheckpoint(uint256 si, uint256 v, uint64 at, bool ok) internal {
        Shipment storage s = _shipments[si];
        bool timely = at >= s.lastAt && at <= block.timestamp;
        bool trusted = at <= _until(s.tracker, s.period);
        bool expected = s.flags & DELIVERED == 0 && v < 10 && timely && trusted;
        _expect(v == 12 ? 2 : (trusted ? 5 : 8), expected, ok, "checkpoint");
    }

    function _recordCheckpoint(
        uint256 si,
        CustodyLedger.CheckpointData memory cp,
        uint256 ki,
        bytes memory sig,
        uint64[] memory ats,
        int16[] memory temps
    ) internal {
        Shipment storage s = _shipments[si];
        (s.checkpointSeq, s.lastAt) = (uint16(cp.seq), uint40(cp.at));
        if (cp.minTemp < MIN_TEMP || cp.maxTemp > MAX_TEMP) s.flags |= BREACHED;
        Posted storage posted = _lastPosted[si];
        (posted.cp, posted.key, posted.signature) = (cp, ki, sig);
        (posted.ats, posted.temps) = (ats, temps);
        _latestShipment[s.tracker] = si + 1;
    }

    /**
     * @notice Anyone proves one reading of a shipment's last posted checkpoint against its root:
     * with the tracker's signature (`proveExcursion`), or, while it is its tracker's latest, from
     * the summary the ledger keeps (`proveLatestExcursion`). Only a reading out of range breaches.
     */
    function proveExcursion(uint256 shipmentSeed, uint256 readingSeed, uint256 how) external {
        if (_shipments.length == 0) return;
        uint256 si = _pickLive(shipmentSeed);
        Shipment storage s = _shipments[si];
        Posted storage posted = _lastPosted[si];
        uint256 n = posted.ats.length;
        if (n == 0) return;
        // Mostly the first reading: the one a breaching or lying checkpoint put out of range.
        uint256 r = readingSeed % 3 == 0 ? (readingSeed >> 2) % n : 0;
        CustodyLedger.Reading memory reading = CustodyLedger.Reading(posted.ats[r], posted.temps[r]);
        bytes32[] memory proof = Merkle.proof(_readingLeaves(posted.ats, posted.temps), r);
        bool outOfRange = reading.temp < MIN_TEMP || reading.temp > MAX_TEMP;
        bool live = s.flags & DELIVERED == 0;
        bool ok;
        if (how % 2 == 0) {
            bool trusted = posted.cp.at <= _until(s.tracker, s.period);
            try
                ledger.proveExcursion(
                    posted.cp,
                    _trackers[s.tracker].keys[posted.key].signer,
                    posted.signature,
                    reading,
                    proof
                )
            {
                ok = true;
            } catch {}
            _expect(trusted ? 5 : 8, live && outOfRange && trusted, ok, "proveExcursion");
        } else {
            bool latest = _latestShipment[s.tracker] == si + 1;
            CustodyLedger.CheckpointSummary memory summary = CustodyLedger.CheckpointSummary(
                s.id,
                posted.cp.seq,
                posted.cp.readingsRoot,
                posted.cp.minTemp,
                posted.cp.maxTemp,
                MIN_TEMP,
                MAX_TEMP
            );
            try ledger.proveLatestExcursion(summary, reading, proof) {
                ok = true;
            } catch {}
            _expect(5, live && outOfRange && latest, ok, "proveLatestExcursion");
        }
        if (ok) s.flags |= BREACHED;
    }

    /// @notice Anyone marks a shipment overdue (after its deadline) or silent (no checkpoint in time).
    function mark(uint256 shipmentSeed, uint256 which) external {
        if (_shipments.length == 0) return;
        Shipment storage s = _shipments[_pick(shipmentSeed, _shipments.length)];
        bool live = s.flags & DELIVERED == 0;
        bool ok;
        if (which % 2 == 0) {
            try ledger.markOverdue(s.id) {
                ok = true;
            } catch {}
            _expect(5, live && block.timestamp > s.deadline && s.flags & OVERDUE == 0, ok, "markOverdue");
            if (ok) s.flags |= OVERDUE;
        } else {
            try ledger.markSilent(s.id) {
                ok = true;
            } catch {}
            bool due = block.timestamp > uint256(s.lastAt) + s.maxSilence;
            _expect(5, live && due && s.flags & SILENT == 0, ok, "markSilent");
            if (ok) s.flags |= SILENT;
        }
    }

    /// @notice The receiver (or someone else) accepts a shipment: delivered, it never changes again.
    function deliver(uint256 shipmentSeed, uint256 callerSeed) external {
        if (_shipments.length == 0) return;
        Shipment storage s = _shipments[_pick(shipmentSeed, _shipments.length)];
        address caller = callerSeed % 4 == 0 ? custodians[(callerSeed >> 8) % CUSTODIANS] : s.receiver;
        bool expected = caller == s.receiver && s.custodian == s.receiver && s.flags & DELIVERED == 0;
        vm.prank(caller);
        bool ok;
        try ledger.deliver(s.id) {
            ok = true;
        } catch {}
        _expect(caller == s.receiver ? 5 : 10, expected, ok, "deliver");
        if (!ok) return;
        s.flags |= DELIVERED;
        s.delivered = keccak256(abi.encode(ledger.shipmentOf(s.id)));
    }

    /// @notice The trackers' owner reports one stolen, releases it, rotates its key (with the old key
    /// or without: owner-installed), or the manufacturer re-attests its key.
    function trackerOwner(uint256 trackerSeed, uint256 action) external {
        uint256 ti = trackerSeed % 2;
        Tracker storage t = _trackers[ti];
        uint256 a = action % 8;
        if (a < 2) {
            vm.prank(TRACKER_OWNER);
            try registry.reportStolen(t.id) {
                t.stolen = true;
                if (t.untrustedSince == 0) t.untrustedSince = uint40(block.timestamp);
            } catch {}
        } else if (a < 5) {
            vm.prank(TRACKER_OWNER);
            try registry.release(t.id) {
                t.stolen = false;
                _newPeriod(ti);
            } catch {}
        } else if (a < 7) {
            if (t.keys.length >= 4) return;
            DeviceKey memory next = newKey(
                uint256(keccak256(abi.encode("tracker rotation", ti, t.keys.length))),
                a == 6,
                verifier
            );
            bool withOld = (action >> 8) % 3 != 0;
            DeviceRegistry.Rotation memory r = rotationOf(registry, t.id, next, t.keys[t.keys.length - 1], withOld);
            vm.prank(TRACKER_OWNER);
            try registry.rotateKey(t.id, r) {
                _newPeriod(ti);
                if (t.stolen) t.untrustedSince = uint40(block.timestamp);
                if (!withOld) t.ownerInstalled = true;
                t.keys.push(next);
            } catch {}
        } else {
            vm.prank(MANUFACTURER);
            try registry.attestKey(t.id) {
                t.ownerInstalled = false;
            } catch {}
        }
    }

    // ================================================================ the model, for the invariants

    function shipmentCount() external view returns (uint256) {
        return _shipments.length;
    }

    function shipment(uint256 i) external view returns (Shipment memory) {
        return _shipments[i];
    }

    function trackerId(uint256 i) external view returns (uint256) {
        return _trackers[i].id;
    }

    /// @notice When trust in tracker `ti`'s period `period` ended (type(uint40).max: it has not).
    function trustEnd(uint256 ti, uint32 period) external view returns (uint40) {
        return _until(ti, period);
    }

    /// @notice The key shipment `i` pinned.
    function pinnedKey(uint256 i) external view returns (bytes memory) {
        Shipment storage s = _shipments[i];
        return _trackers[s.tracker].keys[s.generation].signer;
    }

    // ================================================================ internals

    function _add(
        bytes32 id,
        uint256 ci,
        uint256 ti,
        CustodyLedger.ShipmentParams memory p,
        uint256 children
    ) internal {
        Shipment storage s = _shipments.push();
        Tracker storage t = _trackers[ti];
        (s.id, s.epc, s.creator, s.tracker) = (id, p.epc, ci, ti);
        (s.generation, s.period, s.receiver, s.deadline, s.maxSilence) = (
            uint16(t.keys.length - 1),
            t.period,
            p.receiver,
            p.deadline,
            p.maxSilence
        );
        (s.custodian, s.lastAt) = (custodians[ci], uint40(block.timestamp));
        for (uint256 i = 0; i < children; ++i) s.children.push(_childLeaf(_childEpc(p.epc, i)));
    }

    function _childEpc(string memory pallet, uint256 i) internal pure returns (string memory) {
        return string.concat(pallet, "/", vm.toString(i));
    }

    function _childLeaf(string memory epc) internal pure returns (bytes32) {
        return keccak256(bytes.concat(keccak256(abi.encode(keccak256(bytes(epc))))));
    }

    function _childrenRoot(string memory epc, uint256 n) internal pure returns (bytes32) {
        bytes32[] memory leaves = new bytes32[](n);
        for (uint256 i = 0; i < n; ++i) leaves[i] = _childLeaf(_childEpc(epc, i));
        return Merkle.root(leaves);
    }

    function _find(bytes32 id) internal view returns (uint256) {
        for (uint256 i = 0; i < _shipments.length; ++i) if (_shipments[i].id == id) return i;
        return type(uint256).max;
    }

    /// @dev A shipment, seven times in eight one not delivered yet when there is one.
    function _pickLive(uint256 seed) internal view returns (uint256) {
        uint256 n = _shipments.length;
        uint256 start = seed % n;
        if ((seed >> 128) % 8 != 0) {
            for (uint256 i = 0; i < n; ++i)
                if (_shipments[(start + i) % n].flags & DELIVERED == 0) return (start + i) % n;
        }
        return start;
    }

    function _pickPallet(uint256 seed) internal view returns (uint256) {
        uint256 n = _shipments.length;
        for (uint256 i = 0; i < n; ++i) {
            uint256 j = ((seed % n) + i) % n;
            if (_shipments[j].children.length != 0) return j;
        }
        return type(uint256).max;
    }

    /// @dev The checkpoint of variant `v` on `s` with 1–4 readings, and the readings.
    function _checkpointData(
        Shipment storage s,
        uint256 v,
        uint256 seed
    ) internal view returns (CustodyLedger.CheckpointData memory cp, uint64[] memory ats, int16[] memory temps) {
        uint256 n = 1 + (seed % 4);
        uint64 at = uint64(bound(seed >> 8, s.lastAt, block.timestamp));
        if (v == 11) at = (seed >> 16) % 2 == 0 || s.lastAt == 0 ? uint64(block.timestamp + 1) : uint64(s.lastAt - 1);
        (ats, temps) = (new uint64[](n), new int16[](n));
        int16 lo = type(int16).max;
        int16 hi = type(int16).min;
        for (uint256 i = 0; i < n; ++i) {
            ats[i] = at;
            temps[i] = int16(int256(bound(seed >> (32 + 16 * i), 300, 700)));
            if ((v == 7 || v == 8) && i == 0) temps[i] = (seed >> 200) % 2 == 0 ? int16(150) : int16(900);
            if (temps[i] < lo) lo = temps[i];
            if (temps[i] > hi) hi = temps[i];
        }
        // Variant 8: the tracker signs a min and max that hide its own out-of-range reading.
        if (v == 8) (lo, hi) = (MIN_TEMP, MAX_TEMP);
        cp = CustodyLedger.CheckpointData(
            s.id,
            v == 10 ? uint32(s.checkpointSeq) + 2 : uint32(s.checkpointSeq) + 1,
            Merkle.root(_readingLeaves(ats, temps)),
            uint32(n),
            lo,
            hi,
            keccak256("geo:52.37,4.89"),
            at
        );
    }

    function _readingLeaves(uint64[] memory ats, int16[] memory temps) internal pure returns (bytes32[] memory leaves) {
        leaves = new bytes32[](ats.length);
        for (uint256 i = 0; i < ats.length; ++i) {
            leaves[i] = keccak256(bytes.concat(keccak256(abi.encode(ats[i], temps[i]))));
        }
    }

    function _checkpointDigest(CustodyLedger.CheckpointData memory cp) internal view returns (bytes32) {
        return typedDigest(ledger.DOMAIN_SEPARATOR(), keccak256(abi.encode(ledger.CHECKPOINT_TYPEHASH(), cp)));
    }

    /// @dev A custodian's signature: its own key, or (the wallet) its owner's.
    function _signAs(address custodian, bytes32 digest) internal view returns (bytes memory) {
        for (uint256 i = 0; i < CUSTODIANS; ++i)
            if (custodians[i] == custodian) return signEoa(_custodianKeys[i], digest);
        revert("not a custodian");
    }

    function _replayHandoff() internal {
        if (_lastHandoff.seq == 0) return;
        bool ok;
        try ledger.handoff(_lastHandoff, _lastFromSig, _lastToSig) {
            ok = true;
        } catch {}
        _expect(2, false, ok, "replayed handoff");
    }

    function _until(uint256 ti, uint32 period) internal view returns (uint40) {
        Tracker storage t = _trackers[ti];
        if (period == t.period) return t.untrustedSince == 0 ? TRUSTED_FOREVER : t.untrustedSince;
        return _ends[ti][period];
    }

    function _newPeriod(uint256 ti) internal {
        Tracker storage t = _trackers[ti];
        _ends[ti][t.period] = t.untrustedSince == 0 ? uint40(block.timestamp) : t.untrustedSince;
        t.period = registry.deviceTrust(t.id).period;
        t.untrustedSince = 0;
    }

    function _highS(bytes memory sig) internal pure returns (bytes memory) {
        (bytes32 r, bytes32 s) = abi.decode(sig, (bytes32, bytes32));
        return abi.encodePacked(r, bytes32(SECP256K1_N - uint256(s)), uint8(sig[64]) == 27 ? uint8(28) : uint8(27));
    }
}

/**
 * @title CustodyLedgerInvariants
 * @notice DESIGN.md invariants 1, 2, 5, 8 and 9 of the CustodyLedger against random sequences of
 * {CustodyHandler} actions. Each compares the chain with the handler's ghost model and asserts that
 * no action broke the invariant ({HandlerBase-broken}).
 */
contract CustodyLedgerInvariants is CustosTest {
    CustodyLedger internal ledger;
    DeviceRegistry internal registry;
    CustodyHandler internal handler;

    function setUp() public {
        vm.warp(T0);
        vm.roll(1_000);
        (DeviceRegistry registry_, ERC7913P256SHA256Verifier verifier) = deployRegistry(threeGuardians());
        registry = registry_;
        ledger = new CustodyLedger(registry_, FORWARDER);
        handler = new CustodyHandler(registry_, ledger, address(verifier));
        // Every run starts with a shipment on each tracker and a pallet of three.
        handler.create(0, 0, 0, 0);
        handler.create(1, 1, 1, 256);
        handler.create(2, 2, 0, 1 | (1 << 100));
        require(handler.shipmentCount() == 3, "setUp: three shipments");

        weigh(CustodyHandler.create.selector, 3);
        weigh(CustodyHandler.splitChild.selector, 2);
        weigh(CustodyHandler.handoff.selector, 8);
        weigh(CustodyHandler.checkpoint.selector, 8);
        weigh(CustodyHandler.proveExcursion.selector, 3);
        weigh(CustodyHandler.mark.selector, 2);
        weigh(CustodyHandler.deliver.selector, 2);
        weigh(CustodyHandler.trackerOwner.selector, 3);
        weigh(handler.advance.selector, 4);
        targetHandler(address(handler));
    }

    /// @notice Invariant 1: a quarantined tracker's word counts for nothing after its quarantine: a
    /// shipment is created only on an active tracker with an accepted key.
    function invariant_1_untrustedTrackersTrackNothing() public view {
        _noBreak(1);
    }

    /// @notice Invariant 2: handoffs and checkpoints are bound to this ledger's domain, the shipment
    /// and the sequence number, and are low-s: no replay, forgery or wrong key was accepted.
    function invariant_2_signaturesSingleUseAndBound() public view {
        _noBreak(2);
    }

    /**
     * @notice Invariant 5: `seq` grows by exactly one per handoff; the custodian changes only with both
     * signatures; a delivered shipment never changes again. Every shipment's custodian, handoff and
     * checkpoint sequence, last checkpoint time and flags are the model's, and a delivered one is
     * byte for byte what it was when delivered.
     */
    function invariant_5_custodyChainGapFreeAndFinal() public view {
        _noBreak(5);
        for (uint256 i = 0; i < handler.shipmentCount(); ++i) {
            CustodyHandler.Shipment memory s = handler.shipment(i);
            CustodyLedger.ShipmentView memory v = ledger.shipmentOf(s.id);
            vm.assertEq(v.custodian, s.custodian, "custodian is not the model's");
            vm.assertEq(v.handoffSeq, s.handoffSeq, "handoff seq is not the number of handoffs");
            vm.assertEq(v.checkpointSeq, s.checkpointSeq, "checkpoint seq is not the number of checkpoints");
            vm.assertEq(v.lastCheckpointAt, s.lastAt, "last checkpoint time is not the model's");
            vm.assertEq(v.breached, s.flags & 1 != 0, "breached is not the model's");
            vm.assertEq(v.overdue, s.flags & 2 != 0, "overdue is not the model's");
            vm.assertEq(v.silent, s.flags & 4 != 0, "silent is not the model's");
            vm.assertEq(v.delivered, s.flags & 8 != 0, "delivered is not the model's");
            if (s.flags & 8 != 0) vm.assertEq(keccak256(abi.encode(v)), s.delivered, "a delivered shipment changed");
        }
    }

    /**
     * @notice Invariant 8: evidence counts only from the key the shipment pinned, dated no later than
     * the end of trust in its pinned period: every shipment pins the model's key generation and
     * period, the pinned key's trust end is the model's, and its last checkpoint is dated within it.
     */
    function invariant_8_evidenceOnlyWhileTrusted() public view {
        _noBreak(8);
        for (uint256 i = 0; i < handler.shipmentCount(); ++i) {
            CustodyHandler.Shipment memory s = handler.shipment(i);
            CustodyLedger.ShipmentView memory v = ledger.shipmentOf(s.id);
            vm.assertEq(v.trackerKeyGeneration, s.generation, "pinned key generation");
            vm.assertEq(v.trackerPeriod, s.period, "pinned trust period");
            uint40 until = handler.trustEnd(s.tracker, s.period);
            (uint256 device, , uint40 registryUntil) = registry.keyTrustedUntil(handler.pinnedKey(i), s.period);
            vm.assertEq(device, handler.trackerId(s.tracker), "the pinned key is the tracker's");
            vm.assertEq(registryUntil, until, "the registry's end of trust is not the model's");
            if (s.checkpointSeq != 0) vm.assertLe(v.lastCheckpointAt, until, "a checkpoint dated after trust ended");
        }
    }

    /// @notice Invariant 9: a shipment id is shipmentIdOf(creator, epc), a child's childIdOf(pallet,
    /// epc): nobody else can take, squat or block it, and an id is never created twice.
    function invariant_9_idsBelongToCreators() public view {
        _noBreak(9);
        for (uint256 i = 0; i < handler.shipmentCount(); ++i) {
            CustodyHandler.Shipment memory s = handler.shipment(i);
            bytes32 expected =
                s.parent == 0
                    ? ledger.shipmentIdOf(handler.custodians(s.creator), s.epc)
                    : ledger.childIdOf(s.parent, s.epc);
            vm.assertEq(s.id, expected, "shipment id is not its creator's");
            vm.assertEq(ledger.shipmentOf(s.id).receiver, s.receiver, "receiver is not the model's");
        }
    }

    function _noBreak(uint256 invariant) internal view {
        vm.assertEq(handler.broken(invariant), 0, handler.firstBroken(invariant));
    }
}

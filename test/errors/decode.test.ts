/**
 * The shared contract-error decoder (src/errors): every custom error of every artifact (and the
 * OpenZeppelin errors the suite surfaces) gets a sentence of its own with readable arguments; a few
 * sentences are pinned word for word; and the same revert is decoded from every shape it reaches a
 * caller in — raw data, the JSON-RPC answers of hardhat node and anvil (worded differently),
 * ethers' CALL_EXCEPTION and UNKNOWN_ERROR, Hardhat's in-process network, a mined revert.
 */
import { expect } from "chai";
import path from "node:path";
import { AbiCoder, ErrorFragment, JsonRpcProvider, Network, Wallet, id, keccak256, type ParamType } from "ethers";
import {
  OPENZEPPELIN_ERRORS,
  decodeContractError,
  explainContractError,
  explainMinedRevert,
  explainRevertData,
  readArtifactAbis,
  revertDataOf,
} from "../../src/errors/index.js";
import { deviceIdOf } from "../../src/registry/batch.js";
import { deploySuite } from "../../src/deploy/suite.js";
import { startAnvil, startHardhatNode, type HardhatNode } from "../helpers/node.js";
import { DeviceRegistry__factory } from "../../typechain-types/index.js";

const ROOT = path.join(import.meta.dirname, "..", "..");
const coder = AbiCoder.defaultAbiCoder();
const ACCOUNT = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC";
const KEY = "0x5a4d0f41c4a4c2c1e2a0b9a0e0a1d2c3b4a5f6e7";

/** A value of `type` for a sample revert (times land in 2026, so a date is readable). */
function sample(p: ParamType): unknown {
  const t = p.type;
  if (t === "address") return ACCOUNT;
  if (t === "bool") return true;
  if (t === "string") return "Custos";
  if (t === "bytes32") return id(p.name || "x");
  if (t === "bytes") return KEY;
  const m = /^(u?)int(\d+)$/.exec(t);
  if (m) {
    const bits = Number(m[2]);
    if (m[1] === "") return -250n;
    if (bits <= 8) return 2n;
    if (bits <= 16) return 3n;
    if (bits <= 32) return 5n;
    return 1_795_964_218n;
  }
  throw new Error(`no sample for ${t} (${p.name}): add one to this test`);
}

function revertOf(fragment: ErrorFragment): string {
  return fragment.selector + coder.encode(fragment.inputs, fragment.inputs.map(sample)).slice(2);
}

function encode(signature: string, values: unknown[]): string {
  const f = ErrorFragment.from(`error ${signature}`);
  return f.selector + coder.encode(f.inputs, values).slice(2);
}

describe("contract errors: one shared decoder", function () {
  describe("every custom error has a sentence of its own", function () {
    const artifacts = readArtifactAbis(path.join(ROOT, "artifacts")).filter((a) =>
      /artifacts[/\\](contracts|@openzeppelin)[/\\]/.test(a.file),
    );
    const errors = new Map<string, { fragment: ErrorFragment; from: string }>();
    for (const a of artifacts)
      for (const item of a.abi)
        if (item.type === "error") {
          const fragment = ErrorFragment.from(item);
          errors.set(fragment.selector, { fragment, from: a.contract });
        }
    for (const sig of OPENZEPPELIN_ERRORS) {
      const fragment = ErrorFragment.from(sig);
      if (!errors.has(fragment.selector)) errors.set(fragment.selector, { fragment, from: "OpenZeppelin" });
    }

    it("reads the artifacts of the suite (run npx hardhat build first)", function () {
      const names = new Set(artifacts.map((a) => a.contract));
      for (const c of ["DeviceRegistry", "LockAccess", "CustodyLedger", "PaymentChannels", "LocationBeacons"])
        expect(names, c).to.include(c);
      expect(errors.size).to.be.greaterThan(100);
    });

    it("decodes each into its own readable sentence, never the generic one", function () {
      const problems: string[] = [];
      for (const { fragment, from } of errors.values()) {
        const info = explainRevertData(revertOf(fragment));
        const where = `${from}.${fragment.format("sighash")}: ${info.sentence}`;
        if (info.kind !== "custom" || info.name !== fragment.name) problems.push(`not decoded: ${where}`);
        else if (!info.templated) problems.push(`no sentence written: ${where}`);
        else if (!info.sentence.endsWith(`(${fragment.name})`)) problems.push(`name not at the end: ${where}`);
        else if (/undefined|NaN|\[object|null/.test(info.sentence)) problems.push(`broken argument: ${where}`);
        else if (/0x[0-9a-fA-F]{40}/.test(info.sentence)) problems.push(`unshortened hex: ${where}`);
        else if (info.sentence.length < fragment.name.length + 25) problems.push(`too short to say anything: ${where}`);
      }
      expect(problems, problems.join("\n")).to.deep.equal([]);
    });
  });

  describe("sentences, word for word", function () {
    it("a device id: shortened, with the status by name", function () {
      const device = deviceIdOf(KEY);
      const data = encode("DeviceRegistryWrongStatus(uint256 deviceId, uint8 status)", [device, 2]);
      const s = device.toString();
      expect(decodeContractError(data)).to.equal(
        `device ${s.slice(0, 6)}…${s.slice(-4)} is Quarantined: this needs an Active device (DeviceRegistryWrongStatus)`,
      );
      expect(explainRevertData(data).args).to.deep.equal({ deviceId: device, status: 2n });
    });

    it("a time: as a UTC date (the issue's CustodyLedgerBadTime(1795964218))", function () {
      expect(decodeContractError(encode("CustodyLedgerBadTime(uint64 at)", [1795964218n]))).to.equal(
        "checkpoint time 2026-11-29 14:56:58 UTC is before the shipment's last checkpoint or after the chain's current time (CustodyLedgerBadTime)",
      );
    });

    it("a key: shortened, and named by the key itself when the caller knows it", function () {
      const data = encode("DeviceRegistryKeyTaken(bytes32 keyHash)", [keccak256(KEY)]);
      const hash = keccak256(KEY);
      expect(decodeContractError(data)).to.equal(
        `the key with hash ${hash.slice(0, 6)}…${hash.slice(-4)} is already registered: a device key is claimed once, and a key rotated away or revoked is never registered again (DeviceRegistryKeyTaken)`,
      );
      expect(decodeContractError(data, { keys: ["0x1111111111111111111111111111111111111111", KEY] })).to.equal(
        "key 0x5a4d…F6e7 is already registered: a device key is claimed once, and a key rotated away or revoked is never registered again (DeviceRegistryKeyTaken)",
      );
    });

    it("a role: by name, the account shortened (the README's failed registry:batch --commit)", function () {
      const data = encode("AccessControlUnauthorizedAccount(address account, bytes32 neededRole)", [
        ACCOUNT,
        id("MANUFACTURER_ROLE"),
      ]);
      expect(decodeContractError(data)).to.equal(
        "0x3C44…93BC does not hold MANUFACTURER_ROLE, which this call needs: send it from an account that does (AccessControlUnauthorizedAccount)",
      );
    });

    it("an amount in ETH, a temperature in °C, a deadline", function () {
      expect(
        decodeContractError(
          encode("PaymentChannelsWrongValue(uint256 expected, uint256 received)", [10n ** 18n, 25n * 10n ** 16n]),
        ),
      ).to.equal(
        "the call sent 0.25 ETH where 1 ETH was expected (a token channel takes no ETH) (PaymentChannelsWrongValue)",
      );
      expect(decodeContractError(encode("CustodyLedgerNotAnExcursion(int16 temp)", [-250n]))).to.equal(
        "a reading of -2.5 °C is inside the shipment's allowed range: it is not an excursion (CustodyLedgerNotAnExcursion)",
      );
      expect(decodeContractError(encode("DeviceRegistryExpired(uint256 deadline)", [1767225600n]))).to.equal(
        "the signed message's deadline 2026-01-01 00:00:00 UTC has passed (the chain's clock is later): sign it again with a later deadline (DeviceRegistryExpired)",
      );
    });

    it("Error(string), Panic(uint256), a revert without data", function () {
      expect(decodeContractError(encode("Error(string)", ["not allowed"]))).to.equal(
        'the contract refused: "not allowed"',
      );
      expect(decodeContractError(encode("Panic(uint256)", [0x11n]))).to.equal(
        "the contract panicked: arithmetic overflow or underflow (panic code 0x11)",
      );
      expect(explainContractError("0x")!.kind).to.equal("empty");
      expect(decodeContractError("0x")).to.match(/^the call reverted without a reason/);
    });

    it("unknown data: says so, with the selector", function () {
      const info = explainContractError("0xdeadbeef" + "00".repeat(32))!;
      expect(info.kind).to.equal("unknown");
      expect(info.sentence).to.equal(
        "the call reverted with an unknown error (selector 0xdeadbeef, 32 bytes of arguments): none of the suite's contracts declares it: is the address the contract you meant?",
      );
    });

    it("an error that is not a revert is not decoded as one", function () {
      const down = Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:8545\n    at stack"), {
        code: "ECONNREFUSED",
      });
      expect(explainContractError(down)).to.equal(undefined);
      expect(revertDataOf(down)).to.equal(undefined);
      expect(decodeContractError(down)).to.equal("connect ECONNREFUSED 127.0.0.1:8545");
      expect(revertDataOf("some text")).to.equal(undefined);
    });
  });

  describe("every shape a revert arrives in", function () {
    const AC = "0xe2517d3f";
    const data =
      AC + "0000000000000000000000003c44cdddb6a900fa2b585dd299e03d12fa4293bc" + id("MANUFACTURER_ROLE").slice(2);
    const sentence = decodeContractError(data);

    it("JSON-RPC answers of hardhat node and anvil, parsed or as text, with or without data", function () {
      const hardhat = {
        jsonrpc: "2.0",
        id: 1,
        error: {
          code: 3,
          message: `VM Exception while processing transaction: reverted with custom error 'AccessControlUnauthorizedAccount("${ACCOUNT}", "${id("MANUFACTURER_ROLE")}")'`,
          data,
        },
      };
      const anvil = {
        jsonrpc: "2.0",
        id: 1,
        error: { code: 3, message: `execution reverted: custom error ${AC}: ${data.slice(10)}`, data },
      };
      for (const answer of [hardhat, anvil]) {
        expect(decodeContractError(answer)).to.equal(sentence);
        expect(decodeContractError(JSON.stringify(answer))).to.equal(sentence);
        const { data: _dropped, ...withoutData } = answer.error;
        expect(decodeContractError({ ...answer, error: withoutData }), answer.error.message).to.equal(sentence);
        expect(decodeContractError(answer.error.message)).to.equal(sentence);
      }
      expect(decodeContractError({ error: { code: 3, message: "execution reverted: not allowed" } })).to.equal(
        'the contract refused: "not allowed"',
      );
      expect(
        decodeContractError({
          error: { code: 3, message: "VM Exception while processing transaction: reverted with panic code 0x12 (x)" },
        }),
      ).to.equal("the contract panicked: division or modulo by zero (panic code 0x12)");
    });

    for (const start of [startHardhatNode, (port?: number) => startAnvil(port, 0)]) {
      describe(`from a real node: ${start === startHardhatNode ? "hardhat node" : "anvil"}`, function () {
        let node: HardhatNode;
        let provider: JsonRpcProvider;
        let registry: string;

        before(async function () {
          this.timeout(120_000);
          node = await start();
          const network = Network.from(31337);
          provider = new JsonRpcProvider(node.url, network, { staticNetwork: network });
          registry = (await deploySuite(await provider.getSigner(0), { manufacturers: [] })).registry;
        });
        after(async () => {
          provider?.destroy();
          await node?.stop();
        });

        it("ethers CALL_EXCEPTION of eth_call and eth_estimateGas, and the raw answer", async function () {
          const r = DeviceRegistry__factory.connect(registry, await provider.getSigner(2));
          const errors: unknown[] = [];
          await r.commitBatch.estimateGas(id("root")).catch((e: unknown) => errors.push(e));
          await r.commitBatch.staticCall(id("root")).catch((e: unknown) => errors.push(e));
          const raw = await fetch(node.url, {
            method: "POST",
            headers: { "content-type": "application/json" },
            body: JSON.stringify({
              jsonrpc: "2.0",
              id: 1,
              method: "eth_call",
              params: [
                {
                  from: ACCOUNT,
                  to: registry,
                  data: r.interface.encodeFunctionData("commitBatch", [id("root")]),
                },
                "latest",
              ],
            }),
          });
          errors.push(await raw.text());
          expect(errors).to.have.length(3);
          for (const e of errors) {
            expect(decodeContractError(e)).to.equal(
              "0x3C44…93BC does not hold MANUFACTURER_ROLE, which this call needs: send it from an account that does (AccessControlUnauthorizedAccount)",
            );
          }
          const device = 12345n;
          const err = await r.ownerOf(device).catch((e: unknown) => e);
          expect(decodeContractError(err)).to.equal(
            "device 12345 does not exist (no token with this id) (ERC721NonexistentToken)",
          );
        });

        it("a transaction sent without estimation: refused at once, or mined and reverted", async function () {
          const signer = await provider.getSigner(2);
          const r = DeviceRegistry__factory.connect(registry, signer);
          const err = await r
            .commitBatch(id("root"), { gasLimit: 200_000 })
            .then((tx) => tx.wait())
            .then(
              () => undefined,
              (e: unknown) => e,
            );
          expect(err, "the transaction must fail").to.not.equal(undefined);
          const info = explainContractError(err)!;
          if (info.kind === "mined") {
            // anvil mines it; the receipt carries no reason, a replay at its block does.
            const hash = (err as { receipt: { hash: string } }).receipt.hash;
            expect(info.sentence).to.include(hash);
            expect((await explainMinedRevert(provider, hash))!.name).to.equal("AccessControlUnauthorizedAccount");
          } else {
            // hardhat node refuses it at eth_sendTransaction (ethers: UNKNOWN_ERROR "could not coalesce").
            expect(info.name).to.equal("AccessControlUnauthorizedAccount");
          }
        });
      });
    }

    it("Hardhat's in-process network (EDR's SolidityError)", async function () {
      const { ethers } = await import("../helpers/hardhat.js");
      const [admin, , other] = await ethers.getSigners();
      const suite = await deploySuite(admin, { manufacturers: [] });
      const r = DeviceRegistry__factory.connect(suite.registry, other);
      const err = await r.commitBatch(id("root")).catch((e: unknown) => e);
      expect((err as { name?: string }).name).to.equal("SolidityError");
      expect(decodeContractError(err)).to.equal(
        `${other.address.slice(0, 6)}…${other.address.slice(-4)} does not hold MANUFACTURER_ROLE, which this call needs: send it from an account that does (AccessControlUnauthorizedAccount)`,
      );
      const wallet = Wallet.createRandom();
      expect(explainContractError(await r.ownerOf(deviceIdOf(wallet.address)).catch((e: unknown) => e))!.name).to.equal(
        "ERC721NonexistentToken",
      );
    });
  });
});

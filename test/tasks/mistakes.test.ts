import { expect } from "chai";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { id, Wallet } from "ethers";
import { ethers, hre, setBalance, time } from "../helpers/hardhat.js";
import { runTask } from "./run.js";
import { provisionFor } from "./fixtures.js";
import { deploySuite, type SuiteAddresses } from "../../src/deploy/suite.js";
import { randomDeviceKey, type DeviceKey } from "../../src/crypto/deviceKey.js";
import { generateKey, saveKeystore } from "../../src/agent/keystore.js";
import { TypedDataHasher } from "../../src/eip712/fast.js";
import { showCertificate } from "../../src/agent/roles/guest.js";
import { rotationDigest, serializeRotation, type RotationInput } from "../../src/registry/rotation.js";
import { FIRMWARE } from "../helpers/registry.js";
import { timelineLines } from "../../tasks/actions/custody.js";

const A = "0x[0-9a-fA-F]{4}…[0-9a-fA-F]{4}"; // an address as the tasks shorten it

/** A regular expression matching `text` literally, with `A` standing for a shortened address. */
function exactly(...parts: (string | RegExp)[]): RegExp {
  const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  return new RegExp(`^${parts.map((p) => (typeof p === "string" ? escape(p) : p.source)).join("")}$`);
}

// Each mistake an operator makes with the tasks (issue 14) gets one line naming what to change,
// and leaves nothing behind; run through the tasks' own entry point (getTask().run).
describe("Hardhat tasks: each operator mistake gets its clear error", function () {
  const dir = mkdtempSync(path.join(tmpdir(), "custos-mistakes-"));
  let n = 0;
  const devicesCsv = (rows: number) => {
    const file = path.join(dir, `devices-${++n}.csv`);
    const lines = Array.from(
      { length: rows },
      (_, i) => `${new Wallet(id(`mistakes ${n} ${i}`)).address},m,${FIRMWARE}`,
    );
    writeFileSync(file, ["deviceKey,model,firmwareHash", ...lines].join("\n") + "\n");
    return file;
  };
  const saved = { ...process.env };
  afterEach(function () {
    for (const k of ["CUSTOS_PASSWORD", "CUSTOS_PASSWORD_FILE", "CUSTOS_REGISTRY", "CUSTOS_TEST_SIGNER_KEY"])
      if (saved[k] === undefined) delete process.env[k];
      else process.env[k] = saved[k];
  });

  it("registry:batch --commit by an account without MANUFACTURER_ROLE: refused naming --signer and the account that holds it, no file written; --signer by index or address commits", async function () {
    const [admin, maker] = await ethers.getSigners();
    const suite = await deploySuite(admin, { manufacturers: [maker.address] });
    const root = path.join(dir, "no-role");
    const out = path.join(root, "batch");
    const csv = devicesCsv(5);
    await expect(runTask("registry:batch", { csv, out, commit: true, registry: suite.registry })).to.be.rejectedWith(
      exactly(
        "registry:batch --commit needs MANUFACTURER_ROLE on the DeviceRegistry at ",
        new RegExp(A),
        ": account #0 (",
        new RegExp(A),
        ") does not hold it; account #1 (",
        new RegExp(A),
        ") does: add --signer 1",
      ),
    );
    expect(existsSync(root), "nothing is written for a refused commit").to.equal(false);

    const byIndex = await runTask("registry:batch", { csv, out, commit: true, registry: suite.registry, signer: "1" });
    expect(byIndex.manufacturer).to.equal(maker.address);
    const registry = await ethers.getContractAt("DeviceRegistry", suite.registry);
    expect((await registry.batch(BigInt(byIndex.batchId))).root).to.equal(byIndex.root);
    expect(JSON.parse(readFileSync(path.join(out, "batch.json"), "utf8"))).to.include({ commitTx: byIndex.commitTx });
    const byAddress = await runTask("registry:batch", {
      csv: devicesCsv(3),
      out: path.join(root, "second"),
      commit: true,
      registry: suite.registry,
      signer: maker.address.toLowerCase(),
    });
    expect(byAddress.manufacturer).to.equal(maker.address);
    // The same batch again: refused before anything is sent or written.
    await expect(
      runTask("registry:batch", {
        csv,
        out: path.join(root, "again"),
        commit: true,
        registry: suite.registry,
        signer: "1",
      }),
    ).to.be.rejectedWith(/^--csv: this batch is committed already \(batch \d+ of 0x.{4}….{4}\)$/);
    expect(existsSync(path.join(root, "again"))).to.equal(false);
    // --manufacturer that is not the signer: the batch id would be wrong.
    await expect(
      runTask("registry:batch", {
        csv,
        out: path.join(root, "m"),
        commit: true,
        registry: suite.registry,
        manufacturer: maker.address,
      }),
    ).to.be.rejectedWith(
      /^--manufacturer: 0x[0-9a-fA-F]{40} is not the signer, account #0 \(.*\): the committer is the manufacturer/,
    );
    await expect(runTask("registry:batch", { csv, out: path.join(root, "m") })).to.be.rejectedWith(
      /^--manufacturer is required without --commit/,
    );
  });

  it("a commit the chain does not accept (the signer cannot pay for gas) leaves no tree.json, proofs.jsonl or batch.json, nor the directory", async function () {
    const [admin] = await ethers.getSigners();
    const poor = Wallet.createRandom();
    const suite = await deploySuite(admin, { manufacturers: [poor.address] });
    await setBalance(poor.address, 1n); // not nothing (that is refused before sending), but too little
    const keystore = path.join(dir, "poor.json");
    await saveKeystore(keystore, { kind: "secp256k1", privateKey: poor.privateKey }, "correct horse", {
      scryptN: 1024,
    });
    const passwordFile = path.join(dir, "poor.pw");
    writeFileSync(passwordFile, "correct horse\n");
    const root = path.join(dir, "unpaid");
    await expect(
      runTask("registry:batch", {
        csv: devicesCsv(4),
        out: path.join(root, "batch"),
        commit: true,
        registry: suite.registry,
        keystore,
        passwordFile,
      }),
    ).to.be.rejectedWith(/^registry:batch: Sender doesn't have enough funds to send tx/);
    expect(existsSync(root), "nothing is left behind by a failed commit").to.equal(false);
    // With no ETH at all, the signer is refused before anything is hashed or sent.
    await setBalance(poor.address, 0n);
    await expect(
      runTask("registry:batch", {
        csv: devicesCsv(4),
        out: path.join(root, "batch"),
        commit: true,
        registry: suite.registry,
        keystore,
        passwordFile,
      }),
    ).to.be.rejectedWith(
      new RegExp(
        `^registry:batch --commit: --keystore .*poor\\.json \\(${A}\\) has no ETH to pay for gas on network \\w+: fund it, or sign with another account \\(--signer, --keystore or --signer-var\\)$`,
      ),
    );
    expect(existsSync(root)).to.equal(false);
  });

  describe("signer selection", function () {
    let suite: SuiteAddresses;
    let device: string;
    let owner: Wallet;
    before(async function () {
      const [admin] = await ethers.getSigners();
      suite = await deploySuite(admin, { manufacturers: [admin.address] });
      // The owner is a key outside the network's accounts: reached through --keystore or --signer-var.
      owner = new Wallet(Wallet.createRandom().privateKey);
      await setBalance(owner.address, 10n ** 18n);
      [device] = (await provisionFor(suite, [randomDeviceKey("secp256k1")], owner)).map(String);
    });
    const report = (extra: Record<string, unknown>) =>
      runTask("registry:report-stolen", { device, registry: suite.registry, ...extra });

    it("--signer naming no account of the network, or two ways to sign at once: refused by name", async function () {
      await expect(report({ signer: "99" })).to.be.rejectedWith(
        /^--signer: no account 99 on network \w+ \(it has 20: 0–19\)$/,
      );
      const stranger = Wallet.createRandom().address;
      await expect(report({ signer: stranger })).to.be.rejectedWith(
        exactly(
          `--signer: ${stranger} is not an account of network `,
          /\w+/,
          ": give an index or address among its accounts, or sign with --keystore or --signer-var",
        ),
      );
      await expect(report({ signer: "first" })).to.be.rejectedWith(
        /^--signer: first is neither an account index nor an address$/,
      );
      await expect(report({ signer: "1", signerVar: "CUSTOS_TEST_SIGNER_KEY" })).to.be.rejectedWith(
        /^give one of --signer, --keystore and --signer-var, not several$/,
      );
      await expect(report({ passwordFile: "pw" })).to.be.rejectedWith(/^--password-file goes with --keystore/);
    });

    it("an account that does not own the device: refused naming the owner (not an account of the network: its key is needed)", async function () {
      await expect(report({ signer: "3" })).to.be.rejectedWith(
        exactly(
          `registry:report-stolen needs device ${device}'s owner: account #3 (`,
          new RegExp(A),
          `) is not; ${owner.address}, the owner, does, which is not an account of network `,
          /\w+/,
          ": sign with its key (--keystore FILE or --signer-var NAME)",
        ),
      );
    });

    it("--keystore: a wrong password, none at all, a P-256 device key: named; the right one signs", async function () {
      const keystore = path.join(dir, "owner.json");
      await saveKeystore(keystore, { kind: "secp256k1", privateKey: owner.privateKey }, "right", { scryptN: 1024 });
      const wrong = path.join(dir, "wrong.pw");
      writeFileSync(wrong, "wrong\n");
      delete process.env.CUSTOS_PASSWORD;
      delete process.env.CUSTOS_PASSWORD_FILE;
      await expect(report({ keystore })).to.be.rejectedWith(
        /^--keystore needs its password: --password-file FILE, CUSTOS_PASSWORD_FILE or CUSTOS_PASSWORD$/,
      );
      await expect(report({ keystore, passwordFile: wrong })).to.be.rejectedWith(
        exactly(`--keystore: keystore ${keystore}: wrong passphrase`),
      );
      await expect(report({ keystore, passwordFile: path.join(dir, "none.pw") })).to.be.rejectedWith(
        /^--password-file: .*none\.pw does not exist$/,
      );
      const p256 = path.join(dir, "p256.json");
      await saveKeystore(p256, generateKey("p256", { verifier: suite.p256Verifier }), "right");
      process.env.CUSTOS_PASSWORD = "right";
      await expect(report({ keystore: p256 })).to.be.rejectedWith(
        /^--keystore: .*p256\.json holds a P-256 device key, which cannot send transactions/,
      );
      expect(await report({ keystore })).to.include({ status: "Quarantined" });
      await runTask("registry:release", { device, registry: suite.registry, keystore });
    });

    it("--signer-var: a variable that is not set, or holds no key, is named; set, the task signs with it", async function () {
      delete process.env.CUSTOS_TEST_SIGNER_KEY;
      // Unset, Hardhat's keystore is asked; under `hardhat test` it reads only its development keystore
      // (from the command line: "is not set: export it, or store it with `npx hardhat keystore set …`").
      await expect(report({ signerVar: "CUSTOS_TEST_SIGNER_KEY" })).to.be.rejectedWith(
        /^--signer-var: (CUSTOS_TEST_SIGNER_KEY is not set: export it, or store it with `npx hardhat keystore set CUSTOS_TEST_SIGNER_KEY`|Key "CUSTOS_TEST_SIGNER_KEY" not found in the development keystore\. Run "npx hardhat keystore set CUSTOS_TEST_SIGNER_KEY --dev" to set it\.)$/,
      );
      process.env.CUSTOS_TEST_SIGNER_KEY = "hunter2";
      await expect(report({ signerVar: "CUSTOS_TEST_SIGNER_KEY" })).to.be.rejectedWith(
        /^--signer-var: CUSTOS_TEST_SIGNER_KEY does not hold a private key \(32 bytes of hex\)$/,
      );
      await expect(report({ signerVar: "not a name" })).to.be.rejectedWith(
        /^--signer-var: not a name is not a configuration variable's name/,
      );
      process.env.CUSTOS_TEST_SIGNER_KEY = owner.privateKey;
      expect(await report({ signerVar: "CUSTOS_TEST_SIGNER_KEY" })).to.include({ status: "Quarantined" });
      await runTask("registry:release", { device, registry: suite.registry, signerVar: "CUSTOS_TEST_SIGNER_KEY" });
    });

    it("a contract refusal is the decoder's sentence, with its arguments readable, never raw hex", async function () {
      process.env.CUSTOS_TEST_SIGNER_KEY = owner.privateKey;
      const err = await runTask("registry:release", {
        device,
        registry: suite.registry,
        signerVar: "CUSTOS_TEST_SIGNER_KEY",
      }).catch((e: Error) => e);
      expect(err).to.be.instanceOf(Error);
      expect((err as Error).message).to.match(
        /^registry:release: the chain refused it: device .* is not reported stolen: there is nothing to release \(DeviceRegistryNotReported\)$/,
      );
      expect((err as Error).message).to.not.match(/0x[0-9a-f]{20}/i);
    });
  });

  it("a contract address that is not the contract named (another of the suite, no code, no EIP-712 domain), also from CUSTOS_REGISTRY: refused naming the flag", async function () {
    const [admin] = await ethers.getSigners();
    const suite = await deploySuite(admin, { manufacturers: [admin.address] });
    const status = (registry?: string) =>
      runTask("registry:status", { device: "1", ...(registry ? { registry } : {}) });
    await expect(status(suite.lockAccess)).to.be.rejectedWith(
      exactly(
        `--registry: ${suite.lockAccess} is the suite's LockAccess, not a Custos DeviceRegistry: --registry names the wrong contract`,
      ),
    );
    const empty = Wallet.createRandom().address;
    await expect(status(empty)).to.be.rejectedWith(
      exactly(`--registry: no contract at ${empty} on network `, /\w+/, " (is --network the right one?)"),
    );
    await expect(status(suite.p256Verifier)).to.be.rejectedWith(
      exactly(
        `--registry: ${suite.p256Verifier} is a contract without an EIP-712 domain, not a Custos DeviceRegistry: --registry names the wrong contract`,
      ),
    );
    await expect(status(suite.forwarder)).to.be.rejectedWith(/is "Custos Forwarder", not a Custos DeviceRegistry/);
    process.env.CUSTOS_REGISTRY = suite.custodyLedger;
    await expect(status()).to.be.rejectedWith(
      exactly(
        `CUSTOS_REGISTRY: ${suite.custodyLedger} is the suite's CustodyLedger, not a Custos DeviceRegistry: --registry names the wrong contract`,
      ),
    );
    await expect(runTask("lock:revoke-all", { lock: "1", locks: suite.registry })).to.be.rejectedWith(
      /^--locks: .* is the suite's DeviceRegistry, not a Custos LockAccess: --locks names the wrong contract$/,
    );
  });

  it("an address from a node's Ignition deployment file while the task runs on the in-process network: refused naming --network", async function () {
    const [admin] = await ethers.getSigners();
    const suite = await deploySuite(admin, { manufacturers: [admin.address] });
    const ignition = path.join(dir, "ignition");
    const deployment = path.join(ignition, "deployments", "chain-31337");
    mkdirSync(deployment, { recursive: true });
    // The in-process chain has the same chain id and here even code at the address: still another network's file.
    writeFileSync(
      path.join(deployment, "deployed_addresses.json"),
      JSON.stringify({ "Custos#DeviceRegistry": suite.registry }),
    );
    const paths = hre.config.paths as { ignition: string };
    const before = paths.ignition;
    paths.ignition = ignition;
    try {
      await expect(runTask("registry:status", { device: "1" })).to.be.rejectedWith(
        /^registry:status: --registry would come from .*chain-31337\/deployed_addresses\.json, a deployment on a node, but no --network was given and this runs on Hardhat's in-process network: add --network localhost \(or the network of that deployment\)$/,
      );
    } finally {
      paths.ignition = before;
    }
  });

  it("registry:status of a key or a device the registry does not know says so (no id 0)", async function () {
    const [admin] = await ethers.getSigners();
    const suite = await deploySuite(admin, { manufacturers: [admin.address] });
    const key = Wallet.createRandom().address;
    await expect(runTask("registry:status", { key, registry: suite.registry })).to.be.rejectedWith(
      exactly(
        `--key: ${key.slice(0, 6)}…${key.slice(-4)} is not registered in the DeviceRegistry at `,
        new RegExp(A),
        " (never claimed, or rotated away)",
      ),
    );
    await expect(runTask("registry:status", { device: "12345", registry: suite.registry })).to.be.rejectedWith(
      exactly("--device: no device 12345 in the DeviceRegistry at ", new RegExp(A)),
    );
    await expect(runTask("registry:status", { key: "0x12", registry: suite.registry })).to.be.rejectedWith(
      /^--key: 0x12 is not a device key/,
    );
  });

  it("CSV mistakes are named by their line (blank lines count): a repeated device key names both lines", async function () {
    const file = path.join(dir, "dup.csv");
    const [a, b] = [Wallet.createRandom().address, Wallet.createRandom().address];
    writeFileSync(
      file,
      ["deviceKey,model,firmwareHash", "", `${a},m,${FIRMWARE}`, `${b},m,${FIRMWARE}`, `${a},m2,${FIRMWARE}`].join(
        "\n",
      ),
    );
    const run = () => runTask("registry:batch", { csv: file, out: path.join(dir, "dup"), manufacturer: a });
    await expect(run()).to.be.rejectedWith(
      exactly(
        `--csv line 5: deviceKey ${a.toLowerCase().slice(0, 6)}…${a.toLowerCase().slice(-4)} repeats line 3 (a key is registered once)`,
      ),
    );
    writeFileSync(file, ["deviceKey,model,firmwareHash", "", "", `${a},m`].join("\n"));
    await expect(run()).to.be.rejectedWith(/^--csv line 4: expected 3 columns \(deviceKey,model,firmwareHash\)$/);
    expect(existsSync(path.join(dir, "dup"))).to.equal(false);
  });

  describe("lock:grant checks the lock and the issuer before it writes a certificate", function () {
    let suite: SuiteAddresses;
    let lock: bigint;
    const out = () => path.join(dir, `key-${++n}.json`);
    const grant = (extra: Record<string, unknown>) =>
      runTask("lock:grant", {
        lock: lock.toString(),
        holder: Wallet.createRandom().address,
        keyId: "1",
        validFor: 3600,
        schedule: "0",
        locks: suite.lockAccess,
        ...extra,
      });
    before(async function () {
      const [admin, owner] = await ethers.getSigners();
      suite = await deploySuite(admin, { manufacturers: [admin.address] });
      [lock] = await provisionFor(suite, [randomDeviceKey("secp256k1")], owner);
    });

    it("a lock that does not exist", async function () {
      const file = out();
      await expect(grant({ lock: "424242", out: file, signer: "1" })).to.be.rejectedWith(
        exactly("--lock: no device 424242 in the registry the locks use (", new RegExp(A), ")"),
      );
      expect(existsSync(file)).to.equal(false);
    });

    it("a signer that is neither the owner nor an appointed manager, and a manager whose appointment ended", async function () {
      const file = out();
      await expect(grant({ out: file, signer: "2" })).to.be.rejectedWith(
        exactly(
          `lock:grant needs lock ${lock}'s owner or a manager it appointed: account #2 (`,
          new RegExp(A),
          ") is neither; account #1 (",
          new RegExp(A),
          "), the owner, does: add --signer 1",
        ),
      );
      expect(existsSync(file)).to.equal(false);
      const [, owner, manager] = await ethers.getSigners();
      await runTask("lock:appoint-manager", {
        lock: lock.toString(),
        manager: manager.address,
        validFor: "600",
        locks: suite.lockAccess,
        signer: "1",
      });
      const cert = await grant({ out: file, signer: "2" });
      // Issued under the lock's owner, by its manager: what `guest show` reports and the lock accepts.
      expect(cert.key).to.include({ owner: owner.address, issuer: manager.address });
      expect(showCertificate(cert, await TypedDataHasher.create(), await time.latest())).to.include({
        issuedBy: "manager",
        signatureValid: true,
      });
      expect(JSON.parse(readFileSync(file, "utf8")).signature).to.equal(cert.signature);
      await time.increase(601);
      await expect(grant({ out: out(), signer: "2" })).to.be.rejectedWith(
        new RegExp(
          `^lock:grant: account #2 \\(${A}\\)'s appointment as manager of lock ${lock} ended \\d{4}-.*Z; account #1 \\(${A}\\), the owner, does: add --signer 1$`,
        ),
      );
      await expect(grant({ out: out(), signer: "1", owner: manager.address })).to.be.rejectedWith(
        exactly(`--owner: ${manager.address} is not lock ${lock}'s owner (${owner.address})`),
      );
    });

    it("a lock that is not active (reported stolen)", async function () {
      await runTask("registry:report-stolen", { device: lock.toString(), registry: suite.registry, signer: "1" });
      const file = out();
      await expect(grant({ out: file, signer: "1" })).to.be.rejectedWith(
        exactly(`--lock: lock ${lock} is Quarantined: a key for it would open nothing`),
      );
      expect(existsSync(file)).to.equal(false);
      await runTask("registry:release", { device: lock.toString(), registry: suite.registry, signer: "1" });
    });
  });

  describe("registry:rotate takes the file `custos-agent key rotate` writes, and checks it against the chain", function () {
    let suite: SuiteAddresses;
    let device: bigint;
    let key: DeviceKey;
    let chainId: bigint;
    const write = (r: RotationInput, raw?: Record<string, unknown>) => {
      const file = path.join(dir, `rotation-${++n}.json`);
      writeFileSync(file, raw ? JSON.stringify({ ...JSON.parse(serializeRotation(r)), ...raw }) : serializeRotation(r));
      return file;
    };
    const signed = async (over: Partial<RotationInput> = {}): Promise<RotationInput> => {
      const registry = await ethers.getContractAt("DeviceRegistry", suite.registry);
      const next = randomDeviceKey("secp256k1");
      const base = {
        chainId,
        registry: suite.registry,
        device,
        nonce: BigInt(await registry.deviceNonce(device)),
        deadline: BigInt((await time.latest()) + 3600),
        newKey: next.signer,
        ...over,
      };
      const d = rotationDigest(base);
      return { ...base, newKeySignature: next.signDigest(d), oldKey: key.signer, oldKeySignature: key.signDigest(d) };
    };
    const rotate = (rotation: string, extra: Record<string, unknown> = {}) =>
      runTask("registry:rotate", { rotation, registry: suite.registry, signer: "1", ...extra });
    before(async function () {
      const [admin, owner] = await ethers.getSigners();
      suite = await deploySuite(admin, { manufacturers: [admin.address] });
      key = randomDeviceKey("secp256k1");
      [device] = await provisionFor(suite, [key], owner);
      chainId = (await ethers.provider.getNetwork()).chainId;
    });

    it("a bad field, another chain, another registry, another device, a stale nonce, an expired deadline, a signer not the owner", async function () {
      const good = await signed();
      await expect(rotate(write(good, { newKey: "0x12" }))).to.be.rejectedWith(
        /^--rotation: .*: newKey: must be 0x-hex bytes \(at least 20\), not "0x12"$/,
      );
      await expect(rotate(write({ ...good, chainId: 1n }))).to.be.rejectedWith(
        /^--rotation: .* was signed for chain 1; network \w+ is chain 31337$/,
      );
      const elsewhere = Wallet.createRandom().address;
      await expect(rotate(write({ ...good, registry: elsewhere }))).to.be.rejectedWith(
        exactly(`--rotation: `, /.*/, ` was signed for the registry at ${elsewhere}, not this one (${suite.registry})`),
      );
      await expect(rotate(write(good), { device: "77" })).to.be.rejectedWith(
        /^--device: 77 is not the device .* rotates \(\d+\)$/,
      );
      await expect(rotate(write(good), { signer: "2" })).to.be.rejectedWith(
        exactly(
          `registry:rotate needs device ${device}'s owner: account #2 (`,
          new RegExp(A),
          ") is not; account #1 (",
          new RegExp(A),
          "), the owner, does: add --signer 1",
        ),
      );
      await expect(rotate(write(await signed({ nonce: 5n })))).to.be.rejectedWith(
        /^--rotation: .* was signed at device nonce 5; the device is at 0 now: sign the rotation again \(custos-agent key rotate\)$/,
      );
      const soon = await signed({ deadline: BigInt((await time.latest()) + 10) });
      await time.increase(60);
      await expect(rotate(write(soon))).to.be.rejectedWith(
        /^--rotation: .* expired at \d{4}-.*Z: sign the rotation again \(custos-agent key rotate\)$/,
      );
      const result = await rotate(write(good.deadline > BigInt(await time.latest()) ? good : await signed()));
      expect(result).to.include({ device: device.toString(), keyAttested: true, keyGeneration: 1 });
    });
  });

  it("custody:history dates a handoff by the time it was signed (as EPCIS does), the block time alongside; a handoff signed by neither custodian is refused", async function () {
    const [admin, shipper, carrier, receiver, stranger] = await ethers.getSigners();
    const suite = await deploySuite(admin, { manufacturers: [admin.address] });
    const [tracker] = await provisionFor(suite, [randomDeviceKey("secp256k1")], shipper);
    const { shipment } = await runTask("custody:create", {
      epc: "urn:epc:id:sscc:0614141.1234567891",
      tracker: tracker.toString(),
      receiver: receiver.address,
      deadlineIn: 86_400,
      maxSilence: 3600,
      minTemp: "200",
      maxTemp: "800",
      metadata: "",
      acceptOwnerKeys: false,
      ledger: suite.custodyLedger,
      signer: "1",
    });
    const file = path.join(dir, "handoff.json");
    const common = {
      shipment,
      from: shipper.address,
      to: carrier.address,
      bizStep: "shipping",
      disposition: "in_transit",
      readPoint: "urn:epc:id:sgln:0614141.00001.0",
      validFor: 7200,
      out: file,
      ledger: suite.custodyLedger,
    };
    await expect(runTask("custody:sign-handoff", { ...common, signer: "4" })).to.be.rejectedWith(
      new RegExp(
        `^custody:sign-handoff needs one of the two custodians \\(--from ${A} or --to ${A}\\): account #4 \\(${A}\\) is neither; account #1 \\(${A}\\), the sender, does: add --signer 1, or account #2 \\(${A}\\), the receiver, does: add --signer 2$`,
      ),
    );
    expect(stranger.address).to.not.equal(shipper.address);
    expect(existsSync(file)).to.equal(false);
    await runTask("custody:sign-handoff", { ...common, signer: "1" });
    await runTask("custody:sign-handoff", { ...common, message: file, signer: "2" });
    await time.increase(1800); // recorded half an hour after it was signed
    await runTask("custody:handoff", { message: file, ledger: suite.custodyLedger });
    const h = await runTask("custody:history", { shipment, ledger: suite.custodyLedger, json: true });
    const i = h.entries.findIndex((e: { kind: string }) => e.kind === "handoff");
    const e = h.entries[i];
    expect(e.time - e.at).to.be.at.least(1800);
    const line = timelineLines(h)[i];
    const iso = (s: number) => new Date(s * 1000).toISOString();
    expect(line.startsWith(iso(e.at)), line).to.equal(true);
    expect(line).to.include(`(signed; recorded in block ${e.block} at ${iso(e.time)})`);
  });

  it("channel:close by an account that does not own the payee device: refused naming its owner", async function () {
    const [admin, carOwner, chargerOwner] = await ethers.getSigners();
    const suite = await deploySuite(admin, { manufacturers: [admin.address] });
    const car = randomDeviceKey("secp256k1");
    const [carId] = await provisionFor(suite, [car], carOwner);
    const [chargerId] = await provisionFor(suite, [randomDeviceKey("secp256k1")], chargerOwner);
    const { channel } = await runTask("channel:open", {
      payer: carId.toString(),
      payee: chargerId.toString(),
      payerKey: car.signer,
      amount: "1000",
      allowance: "0",
      salt: 0,
      signer: "1",
      channels: suite.paymentChannels,
    });
    await expect(runTask("channel:close", { channel, channels: suite.paymentChannels })).to.be.rejectedWith(
      exactly(
        `channel:close needs the payee device ${chargerId}'s owner: account #0 (`,
        new RegExp(A),
        ") is not; account #2 (",
        new RegExp(A),
        "), its owner, does: add --signer 2",
      ),
    );
    await expect(
      runTask("channel:open", {
        payer: carId.toString(),
        payee: chargerId.toString(),
        payerKey: Wallet.createRandom().address,
        amount: "1000",
        allowance: "0",
        salt: 1,
        signer: "1",
        channels: suite.paymentChannels,
      }),
    ).to.be.rejectedWith(new RegExp(`^--payer-key: ${A} is not device ${carId}'s current key$`));
  });
});

import { expect } from "chai";
import { generateKeyPairSync } from "node:crypto";
import { readFileSync, readdirSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";
import { Wallet, decryptKeystoreJson, encryptKeystoreJson, getBytes, id as textHash } from "ethers";
import { DeviceSignatureVerifier } from "../../src/crypto/verify.js";
import { loadKeccak } from "../../src/eip712/fast.js";
import { p256PublicKeyBytes } from "../../src/crypto/p256.js";
import { deviceIdOf } from "../../src/registry/batch.js";
import {
  KeystoreError,
  generateKey,
  importKey,
  keyInfo,
  loadKeyMaterial,
  loadKeystore,
  saveKeystore,
} from "../../src/agent/keystore.js";
import { tempDir } from "./helpers.js";

const VERIFIER = "0x5FbDB2315678afecb367f032d93F642f64180aa3";
const FAST = { scryptN: 1024 }; // 2^10 instead of 2^17: the file records N, loading needs no option
const PASS = "correct horse battery staple";

async function rejects(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (err) {
    return err as Error;
  }
  throw new Error("expected a rejection");
}

describe("agent key store", function () {
  before(loadKeccak); // the verifier hashes with the WebAssembly keccak
  const verifier = new DeviceSignatureVerifier([VERIFIER]);
  const digest = getBytes(textHash("a digest"));

  it("round-trips a secp256k1 key as standard Web3 Secret Storage JSON (scrypt)", async function () {
    const dir = tempDir();
    const file = path.join(dir, "device.json");
    const material = generateKey("secp256k1");
    const info = await saveKeystore(file, material, PASS, FAST);
    const json = JSON.parse(readFileSync(file, "utf8"));
    expect(json.version).to.equal(3);
    expect((json.Crypto ?? json.crypto).kdf).to.equal("scrypt");
    expect((json.Crypto ?? json.crypto).kdfparams.n).to.equal(1024);
    // Any Ethereum wallet reads it.
    const account = await decryptKeystoreJson(readFileSync(file, "utf8"), PASS);
    expect(account.address.toLowerCase()).to.equal(info.signer);

    const key = await loadKeystore(file, PASS);
    expect(key.kind).to.equal("secp256k1");
    expect(key.signer).to.equal(info.signer);
    expect(info.deviceId).to.equal(deviceIdOf(info.signer));
    expect(verifier.verify(key.signer, digest, await key.sign(digest))).to.equal(true);
    expect(readdirSync(dir)).to.deep.equal(["device.json"]); // no temporary file left behind
  });

  it("round-trips a P-256 key as passphrase-encrypted PKCS#8 in a JSON wrapper", async function () {
    const file = path.join(tempDir(), "p256.json");
    const material = generateKey("p256", { verifier: VERIFIER });
    const info = await saveKeystore(file, material, PASS);
    const json = JSON.parse(readFileSync(file, "utf8"));
    expect(json).to.include({ format: "custos-device-key", version: 1, kind: "p256", verifier: VERIFIER });
    expect(json.signer).to.equal(info.signer);
    expect(json.pkcs8).to.match(/^-----BEGIN ENCRYPTED PRIVATE KEY-----/);

    const key = await loadKeystore(file, PASS);
    expect(key.kind).to.equal("p256");
    expect(key.signer).to.equal(info.signer);
    expect(info.signer.startsWith(VERIFIER.toLowerCase())).to.equal(true);
    expect(verifier.verify(key.signer, digest, await key.sign(digest))).to.equal(true);
  });

  for (const kind of ["secp256k1", "p256"] as const) {
    it(`attack: a wrong passphrase on a ${kind} key file is refused, naming the file`, async function () {
      const file = path.join(tempDir(), `${kind}.json`);
      await saveKeystore(file, generateKey(kind, { verifier: VERIFIER }), PASS, FAST);
      const err = await rejects(loadKeystore(file, "wrong"));
      expect(err).to.be.instanceOf(KeystoreError);
      expect(err.message)
        .to.include(file)
        .and.to.match(/wrong passphrase/);
    });
  }

  it("attack: tampered, truncated and foreign key files are refused, naming the file", async function () {
    const dir = tempDir();
    const secp = path.join(dir, "secp.json");
    const p256 = path.join(dir, "p256.json");
    await saveKeystore(secp, generateKey("secp256k1"), PASS, FAST);
    await saveKeystore(p256, generateKey("p256", { verifier: VERIFIER }), PASS);

    const cases: [string, string, RegExp][] = [];
    const secpJson = JSON.parse(readFileSync(secp, "utf8"));
    cases.push([
      "secp-address.json",
      JSON.stringify({ ...secpJson, address: Wallet.createRandom().address.slice(2) }),
      /damaged/,
    ]);
    const p256Json = JSON.parse(readFileSync(p256, "utf8"));
    const otherSigner = generateKey("p256", { verifier: VERIFIER });
    cases.push([
      "p256-signer.json",
      JSON.stringify({ ...p256Json, signer: keyInfo(otherSigner).signer }),
      /signer does not match/,
    ]);
    cases.push([
      "p256-verifier.json",
      JSON.stringify({ ...p256Json, verifier: Wallet.createRandom().address }),
      /signer does not match/,
    ]);
    cases.push(["truncated.json", readFileSync(p256, "utf8").slice(0, 100), /not JSON/]);
    cases.push(["foreign.json", JSON.stringify({ hello: "world" }), /not a key file/]);
    cases.push([
      "p256-pem.json",
      JSON.stringify({
        ...p256Json,
        pkcs8: "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
      }),
      /damaged|passphrase/,
    ]);
    for (const [name, text, pattern] of cases) {
      const file = path.join(dir, name);
      writeFileSync(file, text);
      const err = await rejects(loadKeyMaterial(file, PASS));
      expect(err, name).to.be.instanceOf(KeystoreError);
      expect(err.message, name).to.include(file).and.to.match(pattern);
    }
    const missing = await rejects(loadKeyMaterial(path.join(dir, "missing.json"), PASS));
    expect(missing.message).to.include("missing.json").and.to.include("ENOENT");
  });

  it("attack: an existing key file is never overwritten unless asked", async function () {
    const file = path.join(tempDir(), "device.json");
    const first = await saveKeystore(file, generateKey("secp256k1"), PASS, FAST);
    const err = await rejects(saveKeystore(file, generateKey("secp256k1"), PASS, FAST));
    expect(err.message).to.include(file).and.to.include("refusing to overwrite");
    expect((await loadKeystore(file, PASS)).signer).to.equal(first.signer);
    const second = await saveKeystore(file, generateKey("secp256k1"), PASS, { ...FAST, overwrite: true });
    expect((await loadKeystore(file, PASS)).signer).to.equal(second.signer);
  });

  it("imports hex scalars, PEM keys of both curves and Web3 JSON, and checks the kind", async function () {
    const wallet = Wallet.createRandom();
    const fromHex = await importKey(wallet.privateKey);
    expect(keyInfo(fromHex).signer).to.equal(wallet.address.toLowerCase());
    expect(keyInfo(await importKey(wallet.privateKey.slice(2) + "\n")).signer).to.equal(wallet.address.toLowerCase());

    const p256Scalar = await importKey("0x" + "11".repeat(32), { kind: "p256", verifier: VERIFIER });
    expect(p256Scalar.kind).to.equal("p256");

    const p256 = generateKeyPairSync("ec", { namedCurve: "prime256v1" });
    const pem = p256.privateKey.export({ type: "pkcs8", format: "pem" }) as string;
    const imported = await importKey(pem, { verifier: VERIFIER });
    expect(keyInfo(imported).signer).to.equal((VERIFIER + p256PublicKeyBytes(p256.privateKey).slice(2)).toLowerCase());
    const sec1 = p256.privateKey.export({ type: "sec1", format: "pem" }) as string;
    expect(keyInfo(await importKey(sec1, { verifier: VERIFIER })).signer).to.equal(keyInfo(imported).signer);
    const encrypted = p256.privateKey.export({
      type: "pkcs8",
      format: "pem",
      cipher: "aes-256-cbc",
      passphrase: "in",
    }) as string;
    expect(keyInfo(await importKey(encrypted, { verifier: VERIFIER, passphrase: "in" })).signer).to.equal(
      keyInfo(imported).signer,
    );

    const k1 = generateKeyPairSync("ec", { namedCurve: "secp256k1" });
    const k1Material = await importKey(k1.privateKey.export({ type: "pkcs8", format: "pem" }) as string);
    expect(k1Material.kind).to.equal("secp256k1");

    const web3 = await encryptKeystoreJson({ address: wallet.address, privateKey: wallet.privateKey }, "in", {
      scrypt: { N: 1024 },
    });
    expect(keyInfo(await importKey(web3, { passphrase: "in" })).signer).to.equal(wallet.address.toLowerCase());

    for (const [text, opts, pattern] of [
      [pem, { kind: "secp256k1" }, /is p256, not secp256k1/],
      [pem, {}, /verifier/],
      ["0x" + "00".repeat(32), {}, /invalid private key/],
      ["not a key", {}, /expected a 32-byte hex private key/],
    ] as const) {
      const err = await rejects(importKey(text, opts as never, "--in key.pem"));
      expect(err.message).to.include("--in key.pem").and.to.match(pattern);
    }
  });

  it("writes key files with mode 0600", async function () {
    const file = path.join(tempDir(), "device.json");
    await saveKeystore(file, generateKey("secp256k1"), PASS, FAST);
    expect(statSync(file).mode & 0o777).to.equal(0o600);
  });
});

/**
 * The agent's key store: device keys on disk, encrypted with a passphrase, loaded behind the
 * `DeviceSigner` interface (a secure element or an HSM implements the same interface and needs no
 * file at all).
 *
 * - secp256k1 keys are standard Web3 Secret Storage (v3) JSON: scrypt + AES-128-CTR, readable by
 *   every Ethereum wallet (ethers' `encryptKeystoreJson` / `decryptKeystoreJson`).
 * - P-256 keys are PKCS#8 PEM encrypted by `node:crypto` (PBES2, AES-256-CBC) inside a small JSON
 *   wrapper that records the kind, the ERC-7913 verifier the key is used behind, and the signer
 *   bytes (checked against the decrypted key on load).
 *
 * Files are written atomically (temporary file, fsync, rename, fsync of the directory) with mode
 * 0600, and never overwritten unless asked: losing a device key loses the device.
 */
import { closeSync, existsSync, fsyncSync, openSync, readFileSync, renameSync, writeSync } from "node:fs";
import {
  createCipheriv,
  createPrivateKey as nodeCreatePrivateKey,
  randomBytes,
  scryptSync,
  type KeyObject,
} from "node:crypto";
import path from "node:path";
import {
  Wallet,
  decryptKeystoreJson,
  encryptKeystoreJson,
  getAddress,
  hexlify,
  computeAddress,
  isKeystoreJson,
  keccak256,
} from "ethers";
import { p256Key, secp256k1Key, type DeviceKey, type DeviceKeyKind } from "../crypto/deviceKey.js";
import { generateP256Key, p256KeyFromScalar, p256Signer } from "../crypto/p256.js";
import { deviceIdOf } from "../registry/batch.js";

/** A device key's secret material, as the key store holds it in memory. */
export type KeyMaterial =
  { kind: "secp256k1"; privateKey: string } | { kind: "p256"; privateKey: KeyObject; verifier: string };

/** What a key file says about its key; everything here is derived from the decrypted key. */
export interface KeyInfo {
  kind: DeviceKeyKind;
  /** ERC-7913 signer bytes: the registry's `deviceKey`. */
  signer: string;
  /** The secp256k1 address (the signer itself); absent for P-256. */
  address?: string;
  /** The ERC-7913 verifier of a P-256 key. */
  verifier?: string;
  /** The device id the registry derives from this key (valid before it is claimed). */
  deviceId: bigint;
}

/** The wrapper around an encrypted P-256 PKCS#8 key. */
interface P256KeyFile {
  format: "custos-device-key";
  version: 1;
  kind: "p256";
  verifier: string;
  signer: string;
  pkcs8: string;
}

export interface EncryptOptions {
  /**
   * scrypt cost N for secp256k1 keys (a power of two; default 2^17 as in geth and ethers). Tests
   * pass 2^10 to stay fast; the cost is recorded in the file, so loading needs no option.
   */
  scryptN?: number;
}

export class KeystoreError extends Error {
  constructor(
    readonly file: string,
    message: string,
  ) {
    super(`keystore ${file}: ${message}`);
    this.name = "KeystoreError";
  }
}

/** A new random device key. A P-256 key needs the address of the ERC-7913 verifier it is used behind. */
export function generateKey(kind: DeviceKeyKind, opts: { verifier?: string } = {}): KeyMaterial {
  if (kind === "secp256k1") return { kind, privateKey: randomSecp256k1Key() };
  if (kind === "p256")
    return { kind, privateKey: generateP256Key().privateKey, verifier: checkVerifier(opts.verifier) };
  throw new Error(`kind must be secp256k1 or p256, not ${String(kind)}`);
}

const SECP256K1_N = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n;

/** 32 random bytes that are a valid secp256k1 scalar (not a mnemonic wallet: that costs a PBKDF2). */
function randomSecp256k1Key(): string {
  for (;;) {
    const hex = randomBytes(32).toString("hex");
    const n = BigInt("0x" + hex);
    if (n > 0n && n < SECP256K1_N) return "0x" + hex;
  }
}

/** The signing key behind `material`. */
export function deviceKeyOf(material: KeyMaterial): DeviceKey {
  return material.kind === "secp256k1"
    ? secp256k1Key(material.privateKey)
    : p256Key(material.verifier, material.privateKey);
}

export function keyInfo(material: KeyMaterial): KeyInfo {
  const key = deviceKeyOf(material);
  return {
    kind: key.kind,
    signer: key.signer,
    ...(material.kind === "secp256k1" ? { address: getAddress(key.signer) } : { verifier: material.verifier }),
    deviceId: deviceIdOf(key.signer),
  };
}

/** The key file's text for `material`, encrypted with `passphrase`. */
export async function encryptKey(
  material: KeyMaterial,
  passphrase: string,
  opts: EncryptOptions = {},
): Promise<string> {
  checkPassphrase(passphrase);
  if (material.kind === "secp256k1") {
    const wallet = new Wallet(material.privateKey);
    const scrypt = opts.scryptN === undefined ? undefined : { N: checkScryptN(opts.scryptN) };
    return encryptKeystoreJson({ address: wallet.address, privateKey: wallet.privateKey }, passphrase, { scrypt });
  }
  const file: P256KeyFile = {
    format: "custos-device-key",
    version: 1,
    kind: "p256",
    verifier: getAddress(material.verifier),
    signer: p256Signer(material.verifier, material.privateKey).toLowerCase(),
    pkcs8: material.privateKey.export({ type: "pkcs8", format: "pem", cipher: "aes-256-cbc", passphrase }) as string,
  };
  return JSON.stringify(file, null, 2) + "\n";
}

/**
 * Decrypts a key file's text. `source` names the file in errors. A wrong passphrase and a damaged
 * file are told apart where the format allows (Web3 JSON has a MAC; PKCS#8 padding errors are
 * reported as "wrong passphrase or damaged key").
 */
export async function decryptKey(text: string, passphrase: string, source = "(input)"): Promise<KeyMaterial> {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new KeystoreError(source, "not a key file (not JSON)");
  }
  if (isKeystoreJson(text)) {
    let account;
    try {
      account = await decryptKeystoreJson(text, passphrase);
    } catch (err) {
      const msg = (err as Error).message ?? "";
      if (/incorrect password/i.test(msg)) throw new KeystoreError(source, "wrong passphrase");
      throw new KeystoreError(source, `damaged Web3 Secret Storage file (${msg.split(" (")[0]})`);
    }
    return { kind: "secp256k1", privateKey: account.privateKey };
  }
  const f = json as Partial<P256KeyFile> | null;
  if (!f || typeof f !== "object" || f.format !== "custos-device-key") {
    throw new KeystoreError(source, "not a key file (neither Web3 Secret Storage nor a custos-device-key file)");
  }
  if (f.version !== 1) throw new KeystoreError(source, `unsupported version ${String(f.version)}`);
  if (f.kind !== "p256") throw new KeystoreError(source, `unsupported kind ${String(f.kind)}`);
  if (typeof f.pkcs8 !== "string" || typeof f.verifier !== "string" || typeof f.signer !== "string") {
    throw new KeystoreError(source, "damaged key file (pkcs8, verifier or signer missing)");
  }
  let privateKey: KeyObject;
  try {
    privateKey = nodeCreatePrivateKey({ key: f.pkcs8, format: "pem", passphrase });
  } catch (err) {
    const msg = (err as Error).message ?? "";
    if (/bad decrypt|passphrase|decrypt/i.test(msg)) {
      throw new KeystoreError(source, "wrong passphrase (or damaged key)");
    }
    throw new KeystoreError(source, `damaged key (${msg})`);
  }
  if (privateKey.asymmetricKeyDetails?.namedCurve !== "prime256v1") {
    throw new KeystoreError(source, "the key is not a P-256 key");
  }
  let verifier: string;
  try {
    verifier = getAddress(f.verifier);
  } catch {
    throw new KeystoreError(source, "verifier is not an address");
  }
  if (p256Signer(verifier, privateKey).toLowerCase() !== f.signer.toLowerCase()) {
    throw new KeystoreError(source, "damaged key file: the recorded signer does not match the key");
  }
  return { kind: "p256", privateKey, verifier };
}

/** Writes `material` to `file`, encrypted. Refuses to replace an existing file unless `overwrite`. */
export async function saveKeystore(
  file: string,
  material: KeyMaterial,
  passphrase: string,
  opts: EncryptOptions & { overwrite?: boolean } = {},
): Promise<KeyInfo> {
  if (!opts.overwrite && existsSync(file)) {
    throw new KeystoreError(file, "already exists; refusing to overwrite a key (move it away first)");
  }
  const text = await encryptKey(material, passphrase, opts);
  writeFileAtomic(file, text);
  return keyInfo(material);
}

/** Reads and decrypts the key in `file`. */
export async function loadKeyMaterial(file: string, passphrase: string): Promise<KeyMaterial> {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    throw new KeystoreError(file, `cannot read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  return decryptKey(text, passphrase, file);
}

/** Loads the key in `file` as a signer. */
export async function loadKeystore(file: string, passphrase: string): Promise<DeviceKey> {
  return deviceKeyOf(await loadKeyMaterial(file, passphrase));
}

export interface ImportOptions {
  /** The kind the caller expects; required for a bare hex scalar that is meant as a P-256 key. */
  kind?: DeviceKeyKind;
  /** The verifier a P-256 key is used behind. */
  verifier?: string;
  /** The passphrase of an encrypted input (Web3 JSON or encrypted PEM). */
  passphrase?: string;
}

/**
 * Imports a key from outside: a 32-byte hex scalar (secp256k1 by default, P-256 with
 * `kind: "p256"`), a PEM private key (PKCS#8 or SEC1, encrypted or not; the curve picks the kind),
 * or Web3 Secret Storage JSON. `source` names the input in errors.
 */
export async function importKey(text: string, opts: ImportOptions = {}, source = "(input)"): Promise<KeyMaterial> {
  const input = text.trim();
  let material: KeyMaterial;
  if (/^(0x)?[0-9a-fA-F]{64}$/.test(input)) {
    const hex = input.startsWith("0x") ? input : `0x${input}`;
    const kind = opts.kind ?? "secp256k1";
    try {
      if (kind === "secp256k1") {
        secp256k1Key(hex); // validates the scalar
        material = { kind, privateKey: hex.toLowerCase() };
      } else {
        material = { kind, privateKey: p256KeyFromScalar(hex), verifier: checkVerifier(opts.verifier) };
      }
    } catch (err) {
      throw new KeystoreError(source, (err as Error).message);
    }
  } else if (input.startsWith("-----BEGIN")) {
    let key: KeyObject;
    try {
      key = nodeCreatePrivateKey({ key: input, format: "pem", passphrase: opts.passphrase });
    } catch (err) {
      throw new KeystoreError(source, `not a usable PEM private key (${(err as Error).message})`);
    }
    const curve = key.asymmetricKeyDetails?.namedCurve;
    const kind = curve === "prime256v1" ? "p256" : curve === "secp256k1" ? "secp256k1" : undefined;
    if (kind && opts.kind && kind !== opts.kind)
      throw new KeystoreError(source, `the key is ${kind}, not ${opts.kind}`);
    if (curve === "prime256v1") {
      try {
        material = { kind: "p256", privateKey: key, verifier: checkVerifier(opts.verifier) };
      } catch (err) {
        throw new KeystoreError(source, (err as Error).message);
      }
    } else if (curve === "secp256k1") {
      const d = key.export({ format: "jwk" }).d;
      if (!d) throw new KeystoreError(source, "the PEM key has no private scalar");
      material = { kind: "secp256k1", privateKey: hexlify(Buffer.from(d, "base64url")) };
    } else {
      throw new KeystoreError(source, `unsupported key (curve ${curve ?? "none"}); need secp256k1 or P-256`);
    }
  } else if (input.startsWith("{")) {
    if (opts.passphrase === undefined) throw new KeystoreError(source, "an encrypted key file needs its passphrase");
    material = await decryptKey(input, opts.passphrase, source);
  } else {
    throw new KeystoreError(source, "expected a 32-byte hex private key, a PEM private key or a key file");
  }
  if (opts.kind && material.kind !== opts.kind) {
    throw new KeystoreError(source, `the key is ${material.kind}, not ${opts.kind}`);
  }
  return material;
}

/** Writes `text` to `file` so that a crash leaves either the old file or the whole new one. */
export function writeFileAtomic(file: string, text: string, mode = 0o600): void {
  const tmp = `${file}.${process.pid}.tmp`;
  const fd = openSync(tmp, "w", mode);
  try {
    const bytes = Buffer.from(text, "utf8");
    let offset = 0;
    while (offset < bytes.length) offset += writeSync(fd, bytes, offset);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, file);
  const dir = openSync(path.dirname(path.resolve(file)), "r");
  try {
    fsyncSync(dir);
  } finally {
    closeSync(dir);
  }
}

function checkVerifier(verifier: string | undefined): string {
  if (!verifier) throw new Error("a P-256 key needs the address of its ERC-7913 verifier (verifier)");
  try {
    return getAddress(verifier);
  } catch {
    throw new Error(`verifier must be an address, not ${verifier}`);
  }
}

function checkPassphrase(passphrase: string): void {
  if (typeof passphrase !== "string" || passphrase.length === 0) throw new Error("the passphrase must not be empty");
}

function checkScryptN(n: number): number {
  if (!Number.isSafeInteger(n) || n < 2 || (n & (n - 1)) !== 0) throw new Error("scryptN must be a power of two");
  return n;
}

/**
 * Web3 Secret Storage (v3) files for many secp256k1 keys under one passphrase, with one scrypt
 * derivation for all of them: they share the salt (and so the derived key) and each has its own
 * random IV, so AES-CTR never reuses a key stream. Sharing the salt costs nothing here: the files
 * share the passphrase, so whoever breaks one has them all anyway, and no precomputation spans
 * salts. This is what makes `key create --count 1000` take seconds rather than minutes of
 * scrypt; every wallet reads the files as usual (the cost N is recorded in each).
 */
export class SharedScryptEncryptor {
  private readonly salt: Buffer;
  private readonly dk: Buffer;

  constructor(
    passphrase: string,
    readonly scryptN = 1 << 17,
  ) {
    checkPassphrase(passphrase);
    checkScryptN(scryptN);
    this.salt = randomBytes(32);
    // ethers reads passwords as NFKD UTF-8; r = 8, p = 1 as geth and ethers write them.
    this.dk = scryptSync(Buffer.from(passphrase.normalize("NFKD"), "utf8"), this.salt, 32, {
      N: scryptN,
      r: 8,
      p: 1,
      maxmem: 256 * scryptN * 8 + 1024 * 1024,
    });
  }

  /** The key file's text for a secp256k1 `privateKey`. */
  encrypt(privateKey: string): string {
    const key = Buffer.from(privateKey.replace(/^0x/, ""), "hex");
    const iv = randomBytes(16);
    const cipher = createCipheriv("aes-128-ctr", this.dk.subarray(0, 16), iv);
    const ciphertext = Buffer.concat([cipher.update(key), cipher.final()]);
    const mac = keccak256(Buffer.concat([this.dk.subarray(16, 32), ciphertext])).slice(2);
    const address = computeAddress(privateKey);
    const uuid = randomBytes(16);
    uuid[6] = (uuid[6] & 0x0f) | 0x40;
    uuid[8] = (uuid[8] & 0x3f) | 0x80;
    const h = uuid.toString("hex");
    return JSON.stringify({
      address: address.slice(2).toLowerCase(),
      id: `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`,
      version: 3,
      Crypto: {
        cipher: "aes-128-ctr",
        cipherparams: { iv: iv.toString("hex") },
        ciphertext: ciphertext.toString("hex"),
        kdf: "scrypt",
        kdfparams: { salt: this.salt.toString("hex"), n: this.scryptN, dklen: 32, p: 1, r: 8 },
        mac,
      },
    });
  }
}

/**
 * What a key file says about its key without decrypting it (no passphrase): a Web3 file records
 * its address, a P-256 file its signer bytes and verifier. Not checked against the key itself
 * (`loadKeyMaterial` does that).
 */
export function publicInfo(file: string): KeyInfo {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    throw new KeystoreError(file, `cannot read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(text) as Record<string, unknown>;
  } catch {
    throw new KeystoreError(file, "not a key file (not JSON)");
  }
  if (isKeystoreJson(text)) {
    if (typeof json.address !== "string" || !/^(0x)?[0-9a-fA-F]{40}$/.test(json.address)) {
      throw new KeystoreError(file, "records no address; its public key needs the passphrase (add --verify)");
    }
    const address = getAddress(json.address.startsWith("0x") ? json.address : `0x${json.address}`);
    return { kind: "secp256k1", signer: address.toLowerCase(), address, deviceId: deviceIdOf(address) };
  }
  const f = json as Partial<P256KeyFile>;
  if (f.format !== "custos-device-key" || f.kind !== "p256" || typeof f.signer !== "string" || !f.verifier) {
    throw new KeystoreError(file, "not a key file (neither Web3 Secret Storage nor a custos-device-key file)");
  }
  return {
    kind: "p256",
    signer: f.signer.toLowerCase(),
    verifier: getAddress(f.verifier),
    deviceId: deviceIdOf(f.signer),
  };
}

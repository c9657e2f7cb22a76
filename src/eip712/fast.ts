/**
 * The hot path of the catalogue: EIP-712 digests without ethers' generic encoder. Type hashes and
 * domain separators are computed once, each type gets a compiled field encoder, and keccak runs in
 * WebAssembly (hash-wasm). Cross-checked against ethers' `TypedDataEncoder` for every type in the
 * tests. It imports nothing of ours beyond the catalogue itself.
 */
import { createKeccak, type IHasher } from "hash-wasm";
import { keccak_256 } from "@noble/hashes/sha3.js";
import { DOMAINS, TYPES, typeString, type Deployment, type DomainName, type Message, type TypeName } from "./index.js";

let hasher: IHasher | undefined;

/** keccak256 of `data`: in WebAssembly once {@link loadKeccak} has resolved, in plain JS until then. */
export function keccak(data: Uint8Array): Uint8Array {
  if (!hasher) return keccak_256(data);
  hasher.init();
  hasher.update(data);
  return hasher.digest("binary");
}

/** Loads the WebAssembly keccak (several times faster than the JS fallback) once. */
export async function loadKeccak(): Promise<void> {
  hasher ??= await createKeccak(256);
}

const utf8 = new TextEncoder();

export function hexToBytes(hex: string, field = "value"): Uint8Array {
  if (typeof hex !== "string" || !/^0x([0-9a-fA-F]{2})*$/.test(hex)) {
    throw new Error(`${field} must be 0x-prefixed hex bytes`);
  }
  return Uint8Array.from(Buffer.from(hex.slice(2), "hex"));
}

export function bytesToHex(bytes: Uint8Array): string {
  return "0x" + Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("hex");
}

type Encoder = (value: unknown, out: Uint8Array, offset: number, field: string) => void;

function toBigInt(value: unknown, field: string): bigint {
  if (typeof value === "bigint") return value;
  if (typeof value === "number" && Number.isSafeInteger(value)) return BigInt(value);
  if (typeof value === "string" && /^(0x[0-9a-fA-F]+|-?[0-9]+)$/.test(value)) return BigInt(value);
  throw new Error(`${field} must be an integer`);
}

function writeWord(word: bigint, out: Uint8Array, offset: number): void {
  if (word === 0n) return; // `out` starts zeroed
  out.set(Buffer.from(word.toString(16).padStart(64, "0"), "hex"), offset);
}

function encoderFor(type: string): Encoder {
  const uint = /^uint(\d+)$/.exec(type);
  if (uint) {
    const max = (1n << BigInt(uint[1])) - 1n;
    return (v, out, o, field) => {
      const n = toBigInt(v, field);
      if (n < 0n || n > max) throw new Error(`${field} is out of range for ${type}`);
      writeWord(n, out, o);
    };
  }
  const int = /^int(\d+)$/.exec(type);
  if (int) {
    const bits = BigInt(int[1]);
    const [min, max] = [-(1n << (bits - 1n)), (1n << (bits - 1n)) - 1n];
    return (v, out, o, field) => {
      const n = toBigInt(v, field);
      if (n < min || n > max) throw new Error(`${field} is out of range for ${type}`);
      writeWord(BigInt.asUintN(256, n), out, o);
    };
  }
  const fixed = /^bytes(\d+)$/.exec(type);
  if (fixed) {
    const size = Number(fixed[1]);
    return (v, out, o, field) => {
      const b = hexToBytes(v as string, field);
      if (b.length !== size) throw new Error(`${field} must be ${size} bytes`);
      out.set(b, o);
    };
  }
  switch (type) {
    case "address":
      return (v, out, o, field) => {
        const b = hexToBytes(v as string, field);
        if (b.length !== 20) throw new Error(`${field} must be a 20-byte address`);
        out.set(b, o + 12);
      };
    case "bool":
      return (v, out, o, field) => {
        if (typeof v !== "boolean") throw new Error(`${field} must be a boolean`);
        out[o + 31] = v ? 1 : 0;
      };
    case "bytes":
      return (v, out, o, field) => out.set(keccak(hexToBytes(v as string, field)), o);
    case "string":
      return (v, out, o, field) => {
        if (typeof v !== "string") throw new Error(`${field} must be a string`);
        out.set(keccak(utf8.encode(v)), o);
      };
    default:
      throw new Error(`fast EIP-712: unsupported field type ${type}`);
  }
}

interface CompiledType {
  typeHash: Uint8Array;
  fields: { name: string; encode: Encoder }[];
}

/** Digests of catalogue messages; create once per process with {@link TypedDataHasher.create}. */
export class TypedDataHasher {
  private readonly compiled = new Map<TypeName, CompiledType>();
  private readonly separators = new Map<string, Uint8Array>();

  private constructor() {
    for (const type of Object.keys(TYPES) as TypeName[]) {
      this.compiled.set(type, {
        typeHash: keccak(utf8.encode(typeString(type))),
        fields: TYPES[type].fields.map((f) => ({ name: f.name, encode: encoderFor(f.type) })),
      });
    }
  }

  static async create(): Promise<TypedDataHasher> {
    await loadKeccak();
    return new TypedDataHasher();
  }

  /** The EIP-712 domain separator of `domain` at `deployment` (cached). */
  domainSeparator(domain: DomainName, deployment: Deployment): Uint8Array {
    const key = `${domain}:${deployment.chainId}:${deployment.verifyingContract.toLowerCase()}`;
    let separator = this.separators.get(key);
    if (!separator) {
      const out = new Uint8Array(32 * 5);
      out.set(
        keccak(utf8.encode("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)")),
        0,
      );
      out.set(keccak(utf8.encode(DOMAINS[domain].name)), 32);
      out.set(keccak(utf8.encode(DOMAINS[domain].version)), 64);
      writeWord(toBigInt(deployment.chainId, "chainId"), out, 96);
      encoderFor("address")(deployment.verifyingContract, out, 128, "verifyingContract");
      separator = keccak(out);
      this.separators.set(key, separator);
    }
    return separator;
  }

  /** `hashStruct(message)` of a catalogue type; errors name the field that is wrong. */
  structHash(type: TypeName, message: Message): Uint8Array {
    const compiled = this.compiled.get(type);
    if (!compiled) throw new Error(`unknown message type ${type}`);
    const out = new Uint8Array(32 * (1 + compiled.fields.length));
    out.set(compiled.typeHash, 0);
    compiled.fields.forEach((f, i) => {
      if (!(f.name in message)) throw new Error(`${type}.${f.name} is missing`);
      f.encode(message[f.name], out, 32 * (i + 1), `${type}.${f.name}`);
    });
    return keccak(out);
  }

  /** The digest a device signs: keccak256(0x1901 ‖ domainSeparator ‖ hashStruct(message)). */
  digest(type: TypeName, deployment: Deployment, message: Message): Uint8Array {
    return this.digestOfStruct(type, deployment, this.structHash(type, message));
  }

  /** The digest of a message whose `structHash` is already known. */
  digestOfStruct(type: TypeName, deployment: Deployment, structHash: Uint8Array): Uint8Array {
    const out = new Uint8Array(66);
    out[0] = 0x19;
    out[1] = 0x01;
    out.set(this.domainSeparator(TYPES[type].domain, deployment), 2);
    out.set(structHash, 34);
    return keccak(out);
  }
}

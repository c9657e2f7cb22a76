/**
 * Verified, not trusted: each signature the console shows is re-checked here, in the browser, from
 * the calldata of the transaction that carried it, fetched from the user's node. The digests are
 * the catalogue's types and domains (src/eip712) hashed by viem; the indexer's copy of each field
 * is then compared with the calldata's, so an index that lies is shown as not matching the chain.
 */
import {
  decodeFunctionData,
  hashTypedData,
  isAddressEqual,
  recoverAddress,
  type Abi,
  type Hex,
  type PublicClient,
} from "viem";
import { encodeAbiParameters } from "viem";
import { DOMAINS, TYPES, type TypeName } from "../../src/eip712/index.js";
import { rootFrom, standardLeaf } from "./merkle.js";

/** What one check found, and against which block of which node. */
export interface Check {
  state: "verified" | "mismatch" | "invalid" | "unchecked";
  /** What was checked, in words: shown on the badge. */
  what: string;
  block?: bigint;
  /** Fields where the index and the chain disagree. */
  mismatches: string[];
  /** The signed message as the calldata carries it (for checks that build on it, e.g. a log record's proof). */
  onChain?: Record<string, unknown>;
}

/** The catalogue's digest of `message` of `type`, for the contract at `verifyingContract`. */
export function catalogueDigest(
  type: TypeName,
  chainId: number,
  verifyingContract: Hex,
  message: Record<string, unknown>,
) {
  const { name, version } = DOMAINS[TYPES[type].domain];
  return hashTypedData({
    domain: { name, version, chainId, verifyingContract },
    types: { [type]: TYPES[type].fields.map((f) => ({ name: f.name, type: f.type })) },
    primaryType: type,
    message,
  } as never);
}

/** A secp256k1 device key (20-byte ERC-7913 signer) or an account: does `signature` recover to it? */
async function signedBy(digest: Hex, signature: Hex, signer: string): Promise<boolean | "unsupported"> {
  if (signer.length !== 42) return "unsupported";
  try {
    return isAddressEqual(await recoverAddress({ hash: digest, signature }), signer as Hex);
  } catch {
    return false;
  }
}

const norm = (v: unknown) => (typeof v === "string" ? v.toLowerCase() : String(v));

/** The fields of `indexed` that differ from the calldata's `onChain`. */
function differences(indexed: Record<string, unknown>, onChain: Record<string, unknown>, fields: string[]) {
  return fields.filter((f) => norm(indexed[f]) !== norm(onChain[f]));
}

interface Context {
  client: PublicClient;
  chainId: number;
  /** The contract the call must have gone to (the settings' pin); without it, the transaction's own `to`. */
  contract?: string;
  abi: Abi;
}

/** Fetches and decodes the transaction `txHash`, refusing calls to another contract than the pinned one. */
async function callOf(ctx: Context, txHash: Hex) {
  const tx = await ctx.client.getTransaction({ hash: txHash });
  if (!tx.to) throw new Error("the transaction creates a contract");
  if (ctx.contract && !isAddressEqual(tx.to, ctx.contract as Hex))
    return { tx, call: null, why: `the transaction went to ${tx.to}, not the suite's ${ctx.contract}` };
  try {
    return { tx, call: decodeFunctionData({ abi: ctx.abi, data: tx.input }), why: "" };
  } catch {
    return { tx, call: null, why: "its calldata is not a direct call to the contract (relayed or batched)" };
  }
}

function failed(e: unknown): Check {
  return {
    state: "unchecked",
    what: `the node could not be asked: ${(e as Error).message.split("\n")[0]}`,
    mismatches: [],
  };
}

const HANDOFF_FIELDS = ["from", "to", "seq", "bizStep", "disposition", "readPoint", "at"];

/** A handoff: both custodians' signatures over the calldata's Handoff, and the index's copy of it. */
export async function checkHandoff(ctx: Context, indexed: Record<string, unknown>): Promise<Check> {
  try {
    const { tx, call, why } = await callOf(ctx, indexed.txHash as Hex);
    if (!call || call.functionName !== "handoff")
      return {
        state: "unchecked",
        what: why || `transaction calls ${call?.functionName}`,
        block: tx.blockNumber ?? undefined,
        mismatches: [],
      };
    const [h, fromSig, toSig] = call.args as [Record<string, unknown>, Hex, Hex];
    if (norm(h.shipment) !== norm(indexed.shipmentId) || norm(h.seq) !== norm(indexed.seq))
      return {
        state: "mismatch",
        what: "the transaction carries another handoff",
        block: tx.blockNumber!,
        mismatches: ["shipment/seq"],
      };
    const digest = catalogueDigest("Handoff", ctx.chainId, tx.to!, h);
    const [fromOk, toOk] = await Promise.all([
      signedBy(digest, fromSig, h.from as string),
      signedBy(digest, toSig, h.to as string),
    ]);
    const mismatches = differences(indexed, h, HANDOFF_FIELDS);
    const signatures = `from's signature ${fromOk === true ? "✓" : "✗"}, to's signature ${toOk === true ? "✓" : "✗"}`;
    const what = `${signatures} (EIP-712 Handoff) from calldata of ${short(tx.hash)}`;
    if (fromOk !== true || toOk !== true) return { state: "invalid", what, block: tx.blockNumber!, mismatches };
    return { state: mismatches.length ? "mismatch" : "verified", what, block: tx.blockNumber!, mismatches };
  } catch (e) {
    return failed(e);
  }
}

const CHECKPOINT_FIELDS = ["seq", "readingsRoot", "count", "minTemp", "maxTemp", "location", "at"];

/** A checkpoint: the tracker key's signature over the calldata's Checkpoint, and the index's copy. */
export async function checkCheckpoint(ctx: Context, indexed: Record<string, unknown>): Promise<Check> {
  try {
    const { tx, call, why } = await callOf(ctx, indexed.txHash as Hex);
    if (!call || call.functionName !== "checkpoint")
      return {
        state: "unchecked",
        what: why || `transaction calls ${call?.functionName}`,
        block: tx.blockNumber ?? undefined,
        mismatches: [],
      };
    const [cp, key, signature] = call.args as [Record<string, unknown>, Hex, Hex];
    const digest = catalogueDigest("Checkpoint", ctx.chainId, tx.to!, cp);
    const ok = await signedBy(digest, signature, key);
    const mismatches = differences(indexed, cp, CHECKPOINT_FIELDS);
    if (ok === "unsupported")
      return {
        state: mismatches.length ? "mismatch" : "unchecked",
        what: "a P-256 tracker key: its signature is not re-checked here",
        block: tx.blockNumber!,
        mismatches,
      };
    const what = `tracker key ${short(key)}'s signature ${ok ? "✓" : "✗"} (EIP-712 Checkpoint) from calldata of ${short(tx.hash)}`;
    if (!ok) return { state: "invalid", what, block: tx.blockNumber!, mismatches };
    return { state: mismatches.length ? "mismatch" : "verified", what, block: tx.blockNumber!, mismatches };
  } catch (e) {
    return failed(e);
  }
}

/**
 * A proven excursion: the checkpoint's tracker signature, the raw reading's Merkle proof against the
 * checkpoint's readings root (the leaf `(uint64 at, int16 temp)`, src/custody), and the reading
 * outside the min and max the checkpoint claimed — all from the proveExcursion calldata.
 */
export async function checkExcursion(ctx: Context, indexed: Record<string, unknown>): Promise<Check> {
  try {
    const { tx, call, why } = await callOf(ctx, indexed.txHash as Hex);
    const block = tx.blockNumber!;
    if (call?.functionName !== "proveExcursion")
      return { state: "unchecked", what: why || `transaction calls ${call?.functionName}`, block, mismatches: [] };
    const [cp, key, signature, reading, proof] = call.args as [
      Record<string, unknown>,
      Hex,
      Hex,
      { at: bigint; temp: number },
      Hex[],
    ];
    const signed = await signedBy(catalogueDigest("Checkpoint", ctx.chainId, tx.to!, cp), signature, key);
    const leaf = standardLeaf(encodeAbiParameters([{ type: "uint64" }, { type: "int16" }], [reading.at, reading.temp]));
    const inTree = rootFrom(leaf, proof).toLowerCase() === String(cp.readingsRoot).toLowerCase();
    const outside = reading.temp > Number(cp.maxTemp) || reading.temp < Number(cp.minTemp);
    const data = (indexed.data ?? {}) as Record<string, unknown>;
    const mismatches = differences(data, { temp: reading.temp, checkpointSeq: cp.seq }, ["temp", "checkpointSeq"]);
    const what = `reading ${reading.temp / 100} °C: in checkpoint ${cp.seq}'s readings root ${inTree ? "✓" : "✗"}, outside its claimed ${Number(cp.minTemp) / 100}–${Number(cp.maxTemp) / 100} °C ${outside ? "✓" : "✗"}, tracker signature ${signed === true ? "✓" : "✗"}; from calldata of ${short(tx.hash)}`;
    if (!inTree || !outside || signed === false) return { state: "invalid", what, block, mismatches };
    if (signed === "unsupported") return { state: "unchecked", what, block, mismatches };
    return { state: mismatches.length ? "mismatch" : "verified", what, block, mismatches };
  } catch (e) {
    return failed(e);
  }
}

/** An anchored unlock-log batch: the lock device's signature over the calldata's UnlockLog. */
export async function checkLogBatch(ctx: Context, indexed: Record<string, unknown>): Promise<Check> {
  try {
    const { tx, call, why } = await callOf(ctx, indexed.txHash as Hex);
    if (!call || call.functionName !== "anchorLog")
      return {
        state: "unchecked",
        what: why || `transaction calls ${call?.functionName}`,
        block: tx.blockNumber ?? undefined,
        mismatches: [],
      };
    const [key, batch, signature] = call.args as [Hex, Record<string, unknown>, Hex];
    const message = { lock: indexed.lockId, ...batch };
    const ok = await signedBy(catalogueDigest("UnlockLog", ctx.chainId, tx.to!, message), signature, key);
    const mismatches = differences(indexed, batch, ["seq", "root", "count", "fromTime", "toTime"]);
    const what = `lock key ${short(key)}'s signature ${ok === true ? "✓" : "✗"} (EIP-712 UnlockLog) from calldata of ${short(tx.hash)}`;
    if (ok !== true)
      return { state: ok === "unsupported" ? "unchecked" : "invalid", what, block: tx.blockNumber!, mismatches };
    return {
      state: mismatches.length ? "mismatch" : "verified",
      what,
      block: tx.blockNumber!,
      mismatches,
      onChain: message,
    };
  } catch (e) {
    return failed(e);
  }
}

/** A voucher claimed or closed with: the payer device key's signature over the calldata's Voucher. */
export async function checkVoucher(ctx: Context, indexed: Record<string, unknown>, channel: string): Promise<Check> {
  try {
    const { tx, call, why } = await callOf(ctx, indexed.txHash as Hex);
    const vouchers: { amount: bigint; key: Hex; signature: Hex }[] = [];
    if (call?.functionName === "claim") {
      const [, amount, key, signature] = call.args as [unknown, bigint, Hex, Hex];
      vouchers.push({ amount, key, signature });
    } else if (call?.functionName === "closeMany") {
      for (const c of call.args![0] as { amount: bigint; key: Hex; signature: Hex }[]) vouchers.push(c);
    } else {
      return {
        state: "unchecked",
        what: why || `transaction calls ${call?.functionName}`,
        block: tx.blockNumber ?? undefined,
        mismatches: [],
      };
    }
    for (const v of vouchers) {
      const digest = catalogueDigest("Voucher", ctx.chainId, tx.to!, { channel, cumulativeAmount: v.amount });
      if ((await signedBy(digest, v.signature, v.key)) === true)
        return {
          state: "verified",
          what: `payer key ${short(v.key)}'s voucher for ${v.amount} wei ✓ (EIP-712 Voucher) from calldata of ${short(tx.hash)}`,
          block: tx.blockNumber!,
          mismatches: [],
        };
    }
    return {
      state: "invalid",
      what: `no voucher in ${short(tx.hash)} verifies for this channel`,
      block: tx.blockNumber!,
      mismatches: [],
    };
  } catch (e) {
    return failed(e);
  }
}

/**
 * A device key's provenance: for a claim, the device key's DeviceClaim signature; for a rotation,
 * the new key's and (when given) the old key's KeyRotation signatures — the nonce read from the
 * registry just before the rotation's block — and the index's key compared with the calldata's.
 */
export async function checkDeviceKey(ctx: Context, indexed: Record<string, unknown>): Promise<Check> {
  try {
    const { tx, call, why } = await callOf(ctx, indexed.txHash as Hex);
    const block = tx.blockNumber!;
    if (call?.functionName === "claim") {
      const [c, , signature] = call.args as [Record<string, unknown>, unknown, Hex];
      const digest = catalogueDigest("DeviceClaim", ctx.chainId, tx.to!, {
        owner: c.owner,
        batch: c.batchId,
        deadline: c.deadline,
      });
      const ok = await signedBy(digest, signature, c.deviceKey as string);
      const mismatches = norm(c.deviceKey) === norm(indexed.key) ? [] : ["key"];
      const what = `the device key's claim signature ${ok === true ? "✓" : "✗"} (EIP-712 DeviceClaim) from calldata of ${short(tx.hash)}`;
      if (ok !== true) return { state: ok === "unsupported" ? "unchecked" : "invalid", what, block, mismatches };
      return { state: mismatches.length ? "mismatch" : "verified", what, block, mismatches };
    }
    if (call?.functionName === "rotateKey") {
      const [device, r] = call.args as [
        bigint,
        { newKey: Hex; deadline: bigint; newKeySignature: Hex; oldKey: Hex; oldKeySignature: Hex },
      ];
      const nonce = await ctx.client.readContract({
        address: tx.to!,
        abi: ctx.abi,
        functionName: "deviceNonce",
        args: [device],
        blockNumber: block - 1n,
      });
      const digest = catalogueDigest("KeyRotation", ctx.chainId, tx.to!, {
        device,
        newKey: r.newKey,
        nonce,
        deadline: r.deadline,
      });
      const newOk = await signedBy(digest, r.newKeySignature, r.newKey);
      const oldOk = r.oldKey === "0x" ? "absent" : await signedBy(digest, r.oldKeySignature, r.oldKey);
      const mismatches = norm(r.newKey) === norm(indexed.key) ? [] : ["key"];
      const what = `new key's signature ${newOk === true ? "✓" : "✗"}, old key's ${oldOk === "absent" ? "absent" : oldOk === true ? "✓" : "✗"} (EIP-712 KeyRotation, nonce ${nonce}) from calldata of ${short(tx.hash)}`;
      if (newOk !== true || oldOk === false)
        return { state: newOk === "unsupported" ? "unchecked" : "invalid", what, block, mismatches };
      return { state: mismatches.length ? "mismatch" : "verified", what, block, mismatches };
    }
    return { state: "unchecked", what: why || `transaction calls ${call?.functionName}`, block, mismatches: [] };
  } catch (e) {
    return failed(e);
  }
}

/**
 * A location beacon: the device key's LocationBeacon signature over the calldata's beacon, at the
 * beacon nonce LocationBeacons held just before its block, and the index's sealed copy compared.
 */
export async function checkBeacon(ctx: Context, indexed: Record<string, unknown>): Promise<Check> {
  try {
    const { tx, call, why } = await callOf(ctx, indexed.txHash as Hex);
    const block = tx.blockNumber!;
    if (call?.functionName !== "postLocationBeacon")
      return { state: "unchecked", what: why || `transaction calls ${call?.functionName}`, block, mismatches: [] };
    const [key, beacon, signature] = call.args as [Hex, Record<string, unknown>, Hex];
    const device = BigInt(String(indexed.deviceId));
    const nonce = await ctx.client.readContract({
      address: tx.to!,
      abi: ctx.abi,
      functionName: "beaconNonce",
      args: [device],
      blockNumber: block - 1n,
    });
    const digest = catalogueDigest("LocationBeacon", ctx.chainId, tx.to!, { device, nonce, ...beacon });
    const ok = await signedBy(digest, signature, key);
    const mismatches = differences(indexed, { ...beacon, nonce }, ["recipients", "ciphertext", "at", "nonce"]);
    const what = `device key ${short(key)}'s signature ${ok === true ? "✓" : "✗"} (EIP-712 LocationBeacon, nonce ${nonce}) from calldata of ${short(tx.hash)}`;
    if (ok !== true) return { state: ok === "unsupported" ? "unchecked" : "invalid", what, block, mismatches };
    return { state: mismatches.length ? "mismatch" : "verified", what, block, mismatches };
  } catch (e) {
    return failed(e);
  }
}

/** The index's view of a device against the registry's `deviceInfo` at the node's latest block. */
export async function checkDeviceState(
  ctx: Context,
  id: bigint,
  indexed: { owner: string; effectiveStatus: string; keyGeneration: unknown },
  block: bigint,
): Promise<Check> {
  try {
    const info = (await ctx.client.readContract({
      address: ctx.contract as Hex,
      abi: ctx.abi,
      functionName: "deviceInfo",
      args: [id],
      blockNumber: block,
    })) as { owner: string; status: number; keyGeneration: number };
    const onChain = {
      owner: info.owner,
      effectiveStatus: ["unknown", "active", "quarantined", "revoked"][Number(info.status)],
      keyGeneration: info.keyGeneration,
    };
    const mismatches = differences(indexed, onChain, ["owner", "effectiveStatus", "keyGeneration"]);
    return {
      state: mismatches.length ? "mismatch" : "verified",
      what: `owner, status and key generation read from the registry's deviceInfo`,
      block,
      mismatches,
    };
  } catch (e) {
    return failed(e);
  }
}

export function short(hex: string) {
  return hex.length > 14 ? `${hex.slice(0, 8)}…${hex.slice(-4)}` : hex;
}

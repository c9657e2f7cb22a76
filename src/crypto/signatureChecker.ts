/**
 * OpenZeppelin `SignatureChecker.isValidSignatureNow(account, digest, signature)` off chain, for
 * accounts (custodians, owners) rather than device keys: an account without code must have signed
 * with ECDSA as OpenZeppelin `ECDSA.tryRecover` accepts it (65 bytes, low s, v 27 or 28: the shared
 * {@link DeviceSignatureVerifier} rules, not ethers' `recoverAddress`, which takes a high s); an
 * account with code is asked through ERC-1271, and only the exact 32-byte word
 * `0x1626ba7e00…00` from a call that did not revert counts, as on chain.
 */
import { AbiCoder, dataSlice, type BlockTag, type Provider } from "ethers";
import { hexToBytes } from "../eip712/fast.js";
import { DeviceSignatureVerifier } from "./verify.js";

const ERC1271_SELECTOR = "0x1626ba7e";
const MAGIC_WORD = ERC1271_SELECTOR + "00".repeat(28);
const ecdsa = new DeviceSignatureVerifier([]);

/** Whether `signature` by `account` over `digest` is valid as OpenZeppelin SignatureChecker judges it. */
export async function isValidAccountSignature(
  provider: Provider,
  account: string,
  digest: string,
  signature: string,
  blockTag: BlockTag = "latest",
): Promise<boolean> {
  if ((await provider.getCode(account, blockTag)) === "0x") {
    try {
      return ecdsa.verify(account, hexToBytes(digest), hexToBytes(signature));
    } catch {
      return false; // not hex
    }
  }
  const data = ERC1271_SELECTOR + AbiCoder.defaultAbiCoder().encode(["bytes32", "bytes"], [digest, signature]).slice(2);
  let ret: string;
  try {
    ret = await provider.call({ to: account, data, blockTag });
  } catch {
    return false; // reverted (or could not be asked): SignatureChecker's staticcall fails
  }
  return ret.length >= 66 && dataSlice(ret, 0, 32).toLowerCase() === MAGIC_WORD;
}

/**
 * `SignedMessageCheck`: whether a device message someone hands a guardian (a payee's voucher
 * report, an item of a relayer's refusal feed) was signed by a device, and which — checked here,
 * never taken on the sender's word: the catalogue's EIP-712 digest for the message's contract on
 * this chain, the signature over it by `key`, and the key's device as the chain has it (the
 * registry's `resolveKey`; for a voucher, the channel's terms — its id commits to them — pin the
 * payer's key, and the channel must exist on chain).
 */
import { getBytes, keccak256, type Provider } from "ethers";
import { digest } from "../../eip712/index.js";
import { DeviceSignatureVerifier } from "../../crypto/verify.js";
import {
  CONTRACT_OF,
  checkShape,
  messageId,
  type ContractAddresses,
  type SignedDeviceMessage,
} from "../../messages/index.js";
import { channelIdOf, termsFromJson } from "../../agent/roles/meter.js";
import { DeviceRegistry__factory } from "../../../typechain-types/factories/contracts/registry/DeviceRegistry__factory.js";
import { PaymentChannels__factory } from "../../../typechain-types/factories/contracts/payments/PaymentChannels__factory.js";

export type CheckedMessage =
  { ok: true; message: SignedDeviceMessage; id: string; device: bigint } | { ok: false; field: string; reason: string };

export class SignedMessageCheck {
  private readonly verifier: DeviceSignatureVerifier;
  private readonly registry;
  private readonly channels;

  constructor(
    private readonly o: { provider: Provider; chainId: bigint; addresses: ContractAddresses; p256Verifiers?: string[] },
  ) {
    this.verifier = new DeviceSignatureVerifier(o.p256Verifiers ?? []);
    this.registry = DeviceRegistry__factory.connect(o.addresses.registry, o.provider);
    this.channels = o.addresses.paymentChannels
      ? PaymentChannels__factory.connect(o.addresses.paymentChannels, o.provider)
      : undefined;
  }

  async check(input: unknown): Promise<CheckedMessage> {
    let m: SignedDeviceMessage;
    try {
      m = checkShape(input);
    } catch (err) {
      const reason = (err as Error).message;
      return { ok: false, field: /^(\S+) /.exec(reason)?.[1] ?? "message", reason };
    }
    const contract = CONTRACT_OF[m.type];
    const verifyingContract = this.o.addresses[contract];
    if (!verifyingContract)
      return {
        ok: false,
        field: "type",
        reason: `a ${m.type} is for ${contract}, whose address this guardian was not given`,
      };
    let d: string;
    try {
      d = digest(m.type, { chainId: this.o.chainId, verifyingContract }, m.message);
    } catch (err) {
      return { ok: false, field: "message", reason: `message does not fit ${m.type}: ${(err as Error).message}` };
    }
    let valid = false;
    try {
      valid = this.verifier.verify(m.key, getBytes(d), getBytes(m.signature));
    } catch {
      valid = false;
    }
    if (!valid)
      return { ok: false, field: "signature", reason: `the signature is not key ${m.key}'s over this ${m.type}` };
    const id = messageId(m);
    if (m.type === "Voucher") {
      const payer = await this.payerOf(m);
      return typeof payer === "bigint" ? { ok: true, message: m, id, device: payer } : payer;
    }
    const [device] = await this.registry.resolveKey(m.key);
    if (device === 0n)
      return { ok: false, field: "key", reason: `no device has key ${m.key} (never claimed, or rotated away)` };
    return { ok: true, message: m, id, device };
  }

  /** A voucher's payer: the device its channel's terms name, when the key is the one they pin. */
  private async payerOf(m: SignedDeviceMessage): Promise<bigint | { ok: false; field: string; reason: string }> {
    if (!m.terms) return { ok: false, field: "terms", reason: "terms: a voucher comes with its channel's terms" };
    let id: string;
    let terms;
    try {
      terms = termsFromJson(m.terms);
      id = channelIdOf(terms);
    } catch (err) {
      return { ok: false, field: "terms", reason: `terms are malformed: ${(err as Error).message}` };
    }
    if (id !== String(m.message.channel).toLowerCase())
      return { ok: false, field: "terms", reason: "terms do not hash to message.channel" };
    if (keccak256(m.key) !== terms.payerKeyHash.toLowerCase())
      return { ok: false, field: "key", reason: "key is not the one the channel was opened with (terms.payerKeyHash)" };
    if (!this.channels)
      return { ok: false, field: "type", reason: "this guardian was not given PaymentChannels' address" };
    const state = await this.channels.channelState(id);
    if (state.deposit === 0n && state.closesAt === 0n)
      return { ok: false, field: "message.channel", reason: `channel ${id} was never opened on this chain` };
    // A key rotated away since the channel opened no longer speaks for the payer: what it signs
    // now (a thief's, a leaked key's) is not the device's doing.
    const [holder] = await this.registry.resolveKey(m.key);
    if (holder !== terms.payer)
      return {
        ok: false,
        field: "key",
        reason: `key ${m.key} is no longer device ${terms.payer}'s key (rotated away)`,
      };
    return terms.payer;
  }
}

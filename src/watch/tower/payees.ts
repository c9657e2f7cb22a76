/**
 * The payees this tower serves: the data directories of `custos-agent meter serve` processes, whose
 * durable book (`MeterPayee`, `meter-payee.jsonl`) holds each channel's highest voucher. The tower
 * reads the books without taking them (their payees may be running) and, when a payer starts a
 * unilateral close of one of their channels, presents the highest voucher held, as the payee's own
 * `claimDue` would: the same signed message, so whichever of them lands it first, it lands once.
 */
import type { TypedDataHasher } from "../../eip712/fast.js";
import type { Deployment } from "../../eip712/index.js";
import { DeviceSignatureVerifier } from "../../crypto/verify.js";
import { MeterPayee } from "../../agent/roles/meter.js";
import type { SignedDeviceMessage } from "../../messages/index.js";

export class PayeeStores {
  private readonly verifier: DeviceSignatureVerifier;

  constructor(
    readonly dirs: string[],
    private readonly hasher: TypedDataHasher,
    /** PaymentChannels' EIP-712 deployment (vouchers are signed for it). */
    private readonly deployment: Deployment,
    p256Verifiers: string[] = [],
  ) {
    this.verifier = new DeviceSignatureVerifier(p256Verifiers);
  }

  /**
   * The highest voucher any served payee holds for `channel`, as the message that claims it;
   * undefined when no served payee sells over the channel or holds a voucher for it. Each book is
   * read afresh: a voucher its payee took a moment ago counts.
   */
  bestVoucher(channel: string): SignedDeviceMessage | undefined {
    let best: SignedDeviceMessage | undefined;
    for (const dataDir of this.dirs) {
      const book = MeterPayee.read({
        hasher: this.hasher,
        deployment: this.deployment,
        verifier: this.verifier,
        dataDir,
      });
      if (!book.has(channel)) continue;
      const m = book.voucherMessage(channel);
      if (
        m &&
        (!best || BigInt(m.message.cumulativeAmount as string) > BigInt(best.message.cumulativeAmount as string))
      )
        best = m;
    }
    return best;
  }
}

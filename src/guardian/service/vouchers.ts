/**
 * `VoucherReports`: payees report the vouchers their payers sign (`POST /vouchers`, a
 * `SignedDeviceMessage` of type Voucher with its channel's terms), so the `overRate` rule sees how
 * fast a payer signs. Each is checked (`SignedMessageCheck`: the payer's pinned key signed it, the
 * channel exists), dated on the guardian's chain-aligned clock as it arrives (a voucher carries no
 * time), and kept in the `OffChainBook` before it is acknowledged. The rate is the channel's own.
 */
import type { Clock } from "./clock.js";
import type { OffChainBook } from "./offChainBook.js";
import type { SignedMessageCheck } from "./signedMessages.js";

export type VoucherVerdict =
  { accepted: true; duplicate: boolean; device: string } | { accepted: false; field: string; reason: string };

export class VoucherReports {
  constructor(private readonly o: { check: SignedMessageCheck; book: OffChainBook; clock: Clock }) {}

  async submit(input: unknown): Promise<VoucherVerdict> {
    if ((input as { type?: unknown } | null)?.type !== "Voucher")
      return {
        accepted: false,
        field: "type",
        reason: 'type must be "Voucher": payees report their payers\' vouchers here',
      };
    const checked = await this.o.check.check(input);
    if (!checked.ok) return { accepted: false, field: checked.field, reason: checked.reason };
    const { message: m, id, device } = checked;
    const channel = String(m.message.channel).toLowerCase();
    const amount = BigInt(m.message.cumulativeAmount as string);
    // Only a voucher above the channel's highest seen is news: an old one (a replay, one rebuilt
    // from a claim on chain) neither dates the payer's signing nor shows the device alive.
    const highest = this.o.book.highestVoucher(device, channel);
    if (this.o.book.hasVoucher(device, id) || (highest !== undefined && amount <= highest))
      return { accepted: true, duplicate: true, device: device.toString() };
    await this.o.book.addVoucher(device, id, {
      at: await this.o.clock.now(),
      channel,
      cumulativeAmount: amount,
      ratePerSecond: BigInt(m.terms!.rate),
      allowance: BigInt(m.terms!.allowance),
      openedAt: Number(m.terms!.openedAt),
      message: m,
    });
    return { accepted: true, duplicate: false, device: device.toString() };
  }
}

/**
 * Payers' vouchers as payees report them to a guardian (`VoucherReports`): taken only when the
 * channel's pinned payer key signed them for a channel open on this chain, dated on the guardian's
 * chain-aligned clock, kept across restarts, and read by the `overRate` rule at the channel's own rate.
 */
import { mkdtempSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { expect } from "chai";
import { ethers, loadFixture } from "../helpers/hardhat.js";
import { deployChannels, openChannel, voucher } from "../helpers/channels.js";
import { termsToJson, type ChannelTerms } from "../../src/agent/roles/meter.js";
import type { DeviceKey } from "../../src/crypto/deviceKey.js";
import type { SignedDeviceMessage } from "../../src/messages/index.js";
import { ChainClock } from "../../src/guardian/service/clock.js";
import { OffChainBook } from "../../src/guardian/service/offChainBook.js";
import { SignedMessageCheck } from "../../src/guardian/service/signedMessages.js";
import { VoucherReports } from "../../src/guardian/service/vouchers.js";
import { DEFAULT_POLICY, evaluate, observationsOf, type DeviceObservations } from "../../src/guardian/policy/index.js";

const RATE = 100n; // wei a second

async function fixture() {
  const ctx = await deployChannels();
  const { id, terms } = await openChannel(ctx, { rate: RATE, allowance: 0n });
  const check = new SignedMessageCheck({
    provider: ethers.provider,
    chainId: BigInt(ctx.deployment.chainId),
    addresses: { registry: ctx.deployment.verifyingContract, paymentChannels: await ctx.channels.getAddress() },
  });
  return { ctx, id, terms, check };
}

type Ctx = Awaited<ReturnType<typeof fixture>>;

async function signed(
  c: Ctx,
  amount: bigint,
  o: { key?: DeviceKey; terms?: ChannelTerms; channel?: string } = {},
): Promise<SignedDeviceMessage> {
  const key = o.key ?? c.ctx.payerKeys[0];
  const channel = o.channel ?? c.id;
  return {
    type: "Voucher",
    key: c.ctx.payerKeys[0].signer,
    message: { channel, cumulativeAmount: amount.toString() },
    signature: await voucher(c.ctx, key, channel, amount),
    terms: termsToJson(o.terms ?? c.terms),
  };
}

async function reports(c: Ctx, dir = mkdtempSync(path.join(os.tmpdir(), "custos-vouchers-"))) {
  const clock = new ChainClock();
  const book = await OffChainBook.open(dir);
  return { clock, book, dir, inbox: new VoucherReports({ check: c.check, book, clock }) };
}

function payer(device: bigint, vouchers: DeviceObservations["vouchers"]): DeviceObservations {
  const lastSeenAt = Math.max(0, ...vouchers.map((v) => v.at));
  return observationsOf(device, { manufacturer: "0x" + "a1".repeat(20), firstSeenAt: 0, lastSeenAt, vouchers });
}

describe("guardian: payers' vouchers reported by payees", function () {
  it("a genuine voucher is taken for its payer device, at the channel's rate; the same one again is a duplicate", async function () {
    const c = await loadFixture(fixture);
    const { inbox, book } = await reports(c);
    const v = await signed(c, 1_000n);
    expect(await inbox.submit(v)).to.deep.equal({
      accepted: true,
      duplicate: false,
      device: c.ctx.payers[0].toString(),
    });
    expect(await inbox.submit(v)).to.deep.equal({
      accepted: true,
      duplicate: true,
      device: c.ctx.payers[0].toString(),
    });
    const [seen] = book.observations(c.ctx.payers[0]).vouchers;
    expect(seen).to.include({ channel: c.id.toLowerCase(), cumulativeAmount: 1_000n, ratePerSecond: RATE });
  });

  it("attack: a forged voucher, terms raised to hide the rate, another device's key, or a channel never opened are refused", async function () {
    const c = await loadFixture(fixture);
    const { inbox, book } = await reports(c);
    // Signed by a stranger's key, naming the payer's key.
    expect(await inbox.submit(await signed(c, 1n, { key: c.ctx.payeeKeys[1] }))).to.include({
      accepted: false,
      field: "signature",
    });
    // The genuine signature with terms whose rate was raised: they no longer hash to the channel.
    const raised = { ...(await signed(c, 1n)), terms: termsToJson({ ...c.terms, rate: RATE * 1_000n }) };
    expect(await inbox.submit(raised)).to.include({ accepted: false, field: "terms" });
    // Another device signs for its own key over this channel: not the key the channel pins.
    const other = c.ctx.payeeKeys[1];
    const foreign = { ...(await signed(c, 1n, { key: other })), key: other.signer };
    expect(await inbox.submit(foreign)).to.include({ accepted: false, field: "key" });
    // The payer's key over terms of a channel that was never opened (another salt).
    const unopened = { ...c.terms, salt: 99n };
    const { channelIdOf } = await import("../../src/agent/roles/meter.js");
    const ghost = await signed(c, 1n, { terms: unopened, channel: channelIdOf(unopened) });
    expect(await inbox.submit(ghost)).to.include({ accepted: false, field: "message.channel" });
    expect(await inbox.submit({ ...(await signed(c, 1n)), type: "Checkpoint" })).to.include({
      accepted: false,
      field: "type",
    });
    expect(book.observations(c.ctx.payers[0]).vouchers).to.deep.equal([]);
  });

  it("overRate: a payer signing at ten times the channel's rate fires; at the rate it does not", async function () {
    const c = await loadFixture(fixture);
    const t0 = Number(c.terms.openedAt);
    for (const [factor, decision] of [
      [1n, "clear"],
      [10n, "fire"],
    ] as const) {
      const { inbox, clock, book } = await reports(c);
      for (let i = 1; i <= 12; i++) {
        clock.observe(t0 + i * 60); // a block a minute; the payee reports a voucher a minute
        const total = BigInt(i) * 60n * RATE * factor;
        expect(await inbox.submit(await signed(c, total))).to.include({ accepted: true });
      }
      const [seen] = book.observations(c.ctx.payers[0]).vouchers;
      expect(seen).to.include({ allowance: 0n, openedAt: t0 });
      const e = evaluate(DEFAULT_POLICY, payer(c.ctx.payers[0], book.observations(c.ctx.payers[0]).vouchers), t0 + 720);
      expect(e.findings.find((f) => f.rule === "overRate")?.decision).to.equal(decision);
    }
  });

  it("a restart: the vouchers taken before it are still read", async function () {
    const c = await loadFixture(fixture);
    const first = await reports(c);
    await first.inbox.submit(await signed(c, 10n));
    await first.inbox.submit(await signed(c, 20n));
    const again = await reports(c, first.dir);
    expect(again.book.observations(c.ctx.payers[0]).vouchers.map((v) => v.cumulativeAmount)).to.deep.equal([10n, 20n]);
    expect(await again.inbox.submit(await signed(c, 20n))).to.include({ duplicate: true });
  });
});

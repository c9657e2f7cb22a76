/**
 * The guardian's `OffChainBook`: what it was told off chain, on disk before it counts, bounded per
 * device, and compacted while it runs — a device sending without end cannot fill the disk.
 */
import { mkdtempSync, readFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { expect } from "chai";
import { KEPT, OffChainBook } from "../../src/guardian/service/offChainBook.js";
import type { LocationReport } from "../../src/guardian/policy/index.js";

const at = (i: number): LocationReport => ({
  txHash: "",
  blockNumber: 0,
  at: 1_000 + i,
  latitudeE7: i,
  longitudeE7: i,
  source: "report",
  signed: { key: "0xaa", digest: "0x", signature: "0x" },
});
const lines = (dir: string) =>
  readFileSync(path.join(dir, "offchain.jsonl"), "utf8").split("\n").filter(Boolean).length;

describe("guardian: the off-chain book", function () {
  it("attack: a device reporting without end — memory keeps the newest, the log is compacted as it runs, and a reopened book has the same view (replays still refused)", async function () {
    const dir = mkdtempSync(path.join(os.tmpdir(), "custos-book-"));
    const book = await OffChainBook.open(dir, { compactAbove: 20 });
    const sent = KEPT.positions * 4;
    for (let i = 1; i <= sent; i++) await book.addPosition(7n, "0xAA", BigInt(i), at(i));
    await book.addVoucher(7n, "0x01", { at: 5, channel: "0xc", cumulativeAmount: 10n, ratePerSecond: 1n });
    const view = book.observations(7n);
    expect(view.locations).to.have.length(KEPT.positions);
    expect(view.locations[0].at).to.equal(1_000 + sent - KEPT.positions + 1);
    // Far fewer lines than were appended: compacted while running.
    expect(lines(dir)).to.be.below(2 * (KEPT.positions + 2) + 20 + 1);
    await book.close();

    const again = await OffChainBook.open(dir, { compactAbove: 20 });
    expect(again.observations(7n)).to.deep.equal(view);
    expect(again.lastSeq(7n, "0xaa")).to.equal(BigInt(sent));
    expect(again.highestVoucher(7n, "0xc")).to.equal(10n);
    await again.close();
  });
});

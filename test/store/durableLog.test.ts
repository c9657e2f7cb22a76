import { expect } from "chai";
import { appendFileSync, mkdtempSync, readdirSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { DurableLog } from "../../src/store/durableLog.js";

describe("DurableLog", function () {
  const fresh = () => path.join(mkdtempSync(path.join(tmpdir(), "custos-log-")), "log.jsonl");

  it("replays every acknowledged record, in order, after a reopen", async function () {
    const file = fresh();
    const log = DurableLog.open<{ i: number }>(file);
    await Promise.all(Array.from({ length: 1000 }, (_, i) => log.append({ i })));
    await log.close();
    expect(DurableLog.open<{ i: number }>(file).replayed.map((r) => r.i)).to.deep.equal([...Array(1000).keys()]);
  });

  it("attack: a write torn by a crash is cut off at reopen, and kept beside the log", async function () {
    const file = fresh();
    const log = DurableLog.open<{ i: number }>(file);
    await log.append({ i: 1 });
    await log.close();
    appendFileSync(file, '{"i": 2, "half');
    const again = DurableLog.open<{ i: number }>(file);
    expect(again.replayed).to.deep.equal([{ i: 1 }]);
    await again.append({ i: 3 });
    await again.close();
    expect(DurableLog.open<{ i: number }>(file).replayed).to.deep.equal([{ i: 1 }, { i: 3 }]);
    const cut = readdirSync(path.dirname(file)).filter((f) => f.includes(".cut-"));
    expect(cut).to.have.length(1);
    expect(readFileSync(path.join(path.dirname(file), cut[0]), "utf8")).to.equal('{"i": 2, "half');
  });

  it("attack: records appended while a compaction runs are not lost", async function () {
    const file = fresh();
    const log = DurableLog.open<{ i: number }>(file);
    await Promise.all(Array.from({ length: 100 }, (_, i) => log.append({ i })));
    const during = Array.from({ length: 50 }, (_, i) => log.append({ i: 1000 + i }));
    const rewrite = log.rewrite([{ i: -1 }]);
    const after = Array.from({ length: 50 }, (_, i) => log.append({ i: 2000 + i }));
    await Promise.all([rewrite, ...during, ...after]);
    await log.close();
    const replayed = DurableLog.open<{ i: number }>(file).replayed.map((r) => r.i);
    // What was appended before the rewrite began is the caller's to carry into `records`;
    // everything appended once it had begun must survive it.
    for (let i = 0; i < 50; i++) expect(replayed).to.include(2000 + i);
    expect(replayed).to.include(-1);
  });
});

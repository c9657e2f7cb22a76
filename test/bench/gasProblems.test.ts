import { expect } from "chai";
import { gasProblems } from "../../bench/lib.js";

describe("bench:check (gasProblems)", function () {
  const budgets = { "x.op": 100_000 };

  it("accepts figures within budget and within 1% of the snapshot", function () {
    expect(gasProblems({ "x.op": 90_900, "x.free": 10 }, budgets, { "x.op": 90_000, "x.free": 10 })).to.deep.equal([]);
  });

  it("attack: an operation over its budget fails, even when the snapshot is rewritten to match", function () {
    expect(gasProblems({ "x.op": 100_001 }, budgets, { "x.op": 100_001 })).to.have.length(1);
    expect(gasProblems({ "x.op": 100_001 }, budgets, null)[0]).to.match(/over its budget of 100000/);
  });

  it("attack: a cost change of more than 1% without a snapshot update fails", function () {
    expect(gasProblems({ "x.op": 91_000 }, budgets, { "x.op": 90_000 })[0]).to.match(/by 1\.11%/);
    expect(gasProblems({ "x.op": 89_000 }, budgets, { "x.op": 90_000 })[0]).to.match(/by -1\.11%/);
  });

  it("attack: a budgeted operation dropped from the bench, or an unsnapshotted one, fails", function () {
    expect(gasProblems({}, budgets, {})[0]).to.match(/did not measure it/);
    expect(gasProblems({ "x.op": 1, "x.new": 5 }, budgets, { "x.op": 1 })[0]).to.match(/x.new: 5 gas is not in/);
    expect(gasProblems({ "x.op": 1 }, budgets, { "x.op": 1, "x.gone": 5 })[0]).to.match(/no longer measures/);
  });

  it("a known overrun (listed with its reason) may stay over budget, held to the snapshot; once within budget it must be taken off", function () {
    const overruns = { "x.op": "why it cannot be reached" };
    expect(gasProblems({ "x.op": 120_000 }, budgets, { "x.op": 120_000 }, overruns)).to.deep.equal([]);
    expect(gasProblems({ "x.op": 125_000 }, budgets, { "x.op": 120_000 }, overruns)[0]).to.match(/by 4\.17%/);
    expect(gasProblems({ "x.op": 99_000 }, budgets, { "x.op": 99_000 }, overruns)[0]).to.match(/take it off/);
    expect(gasProblems({ "x.op": 1 }, budgets, { "x.op": 1 }, { "y.op": "?" })[0]).to.match(/has no budget/);
  });
});

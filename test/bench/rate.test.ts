import { expect } from "chai";
import { Prepared, rate } from "../../bench/agent.js";

describe("bench: timed loops over prepared work (rate, Prepared)", function () {
  it("an operation that consumes prepared work never runs out of it, however fast it is", function () {
    // The cheapest possible operation stands in for the fastest machine: the loops run it as
    // often as the time allows, and every item it takes was prepared outside the timed part.
    let made = 0;
    const work = new Prepared(() => made++, 500);
    let taken = 0;
    let last = -1;
    const perSecond = rate(
      () => {
        const item = work.take();
        expect(item).to.equal(last + 1); // in order, none skipped or handed out twice
        last = item;
        taken++;
      },
      20,
      (count) => work.ready(count),
    );
    expect(perSecond).to.be.greaterThan(0);
    expect(taken).to.equal(last + 1);
    expect(made).to.be.at.least(taken);
  });

  it("an operation run without its `ready` step fails loudly rather than measuring nothing", function () {
    const work = new Prepared(() => 1);
    expect(() => rate(() => work.take(), 5)).to.throw(/ran ahead of its prepared work/);
  });
});

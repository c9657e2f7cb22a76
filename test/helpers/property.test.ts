import { expect } from "chai";
import fc from "fast-check";
import { DEFAULT_CI_SEED, assertProperty, propertyRuns } from "./property.js";

describe("property seeds (propertyRuns, assertProperty)", function () {
  it("CI runs the fixed seed (FC_SEED, else 42) and then a fresh one", function () {
    const [fixed, fresh, ...rest] = propertyRuns(50, { CI: "true" });
    expect(rest).to.deep.equal([]);
    expect(fixed).to.deep.equal({ seed: DEFAULT_CI_SEED, numRuns: 50, why: "fixed for CI" });
    expect(fresh).to.include({ numRuns: 50, why: "fresh" });
    expect(Number.isSafeInteger(fresh.seed)).to.equal(true);
    expect(propertyRuns(50, { CI: "true", FC_SEED: "7" })[0]).to.include({ seed: 7, why: "fixed for CI" });
  });

  it("elsewhere one pass: FC_SEED (and FC_PATH) when set, else a fresh seed", function () {
    expect(propertyRuns(9, { FC_SEED: "-5", FC_PATH: "3:1" })).to.deep.equal([
      { seed: -5, numRuns: 9, path: "3:1", why: "from FC_SEED" },
    ]);
    const fresh = propertyRuns(9, {});
    expect(fresh).to.have.length(1);
    expect(fresh[0]).to.include({ numRuns: 9, why: "fresh" });
    expect(() => propertyRuns(9, { FC_SEED: "x" })).to.throw(/FC_SEED must be an integer/);
  });

  it("a failing property's error names the seed and path, and the line that replays it", async function () {
    // Properties that fail on their first run, whatever the seed.
    let message = "";
    try {
      assertProperty(
        fc.property(fc.nat(), () => false),
        200,
      );
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).to.match(/seed: -?\d+, path: "[\d:]+"/);
    expect(message).to.match(/Replay: FC_SEED=-?\d+ FC_PATH=[\d:]+ npx hardhat test/);
    const async = assertProperty(
      fc.asyncProperty(fc.nat(), async () => false),
      200,
    );
    await expect(async).to.be.rejectedWith(/Replay: FC_SEED=-?\d+ FC_PATH=[\d:]+/);
  });
});

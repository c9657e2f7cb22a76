import { expect } from "chai";
import { Wallet, ZeroHash, id as textHash } from "ethers";
import { callId, checkCallShape, encodePublicCall, type GuardianVoteCall } from "../../src/messages/calls.js";
import { GuardianQuorum__factory } from "../../typechain-types/index.js";

const guardian = Wallet.createRandom().address;
const flag: GuardianVoteCall = {
  type: "GuardianFlag",
  guardian,
  device: "12345",
  round: 3,
  reason: textHash("evidence"),
};

describe("guardian votes as public calls (src/messages/calls.ts)", function () {
  it("one id per guardian, device, side and round — whatever the reason (a re-evaluation never queues a second vote)", function () {
    const id = callId(flag);
    expect(callId({ ...flag, reason: textHash("later evidence") })).to.equal(id);
    expect(callId({ ...flag, guardian: guardian.toLowerCase() })).to.equal(id);
    expect(callId({ ...flag, round: 4 })).to.not.equal(id);
    expect(callId({ ...flag, device: "12346" })).to.not.equal(id);
    expect(callId({ ...flag, guardian: Wallet.createRandom().address })).to.not.equal(id);
    expect(callId({ ...flag, type: "GuardianClear", reason: ZeroHash })).to.not.equal(id);
  });

  it("encodes GuardianQuorum.flag(device, reason) and clearFlag(device)", function () {
    const q = GuardianQuorum__factory.createInterface();
    const f = q.parseTransaction({ data: encodePublicCall(flag).data })!;
    expect(f.name).to.equal("flag");
    expect(f.args[0]).to.equal(12345n);
    expect(f.args[1]).to.equal(flag.reason);
    const c = q.parseTransaction({
      data: encodePublicCall({ ...flag, type: "GuardianClear", reason: ZeroHash }).data,
    })!;
    expect(c.name).to.equal("clearFlag");
    expect(encodePublicCall(flag).contract).to.equal("guardianQuorum");
  });

  it("a malformed vote is refused naming its field", function () {
    const bad = (patch: object) => () => checkCallShape({ ...flag, ...patch });
    expect(bad({ guardian: "0x1234" })).to.throw(/call\.guardian/);
    expect(bad({ device: "0x10" })).to.throw(/call\.device/);
    expect(bad({ round: -1 })).to.throw(/call\.round/);
    expect(bad({ round: 1.5 })).to.throw(/call\.round/);
    expect(bad({ reason: "0x12" })).to.throw(/call\.reason/);
    expect(bad({ type: "GuardianClear" })).to.throw(/call\.reason of a GuardianClear must be zero/);
    expect((checkCallShape({ ...flag, guardian: guardian.toLowerCase() }) as GuardianVoteCall).guardian).to.equal(
      guardian,
    );
  });
});

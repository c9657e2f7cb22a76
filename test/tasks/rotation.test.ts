import { expect } from "chai";
import { Wallet } from "ethers";
import { randomDeviceKey } from "../../src/crypto/deviceKey.js";
import {
  parseRotation,
  parseRotationText,
  rotationDigest,
  serializeRotation,
  type RotationInput,
} from "../../src/registry/rotation.js";

// The rotation file `custos-agent key rotate` writes and `registry:rotate` reads: one format, a
// parser whose every refusal names the field.
describe("Key rotation file (src/registry/rotation.ts)", function () {
  const registry = Wallet.createRandom().address;
  const oldKey = randomDeviceKey("secp256k1");
  const newKey = randomDeviceKey("secp256k1");
  const base = { chainId: 31337n, registry, device: 123456789n, nonce: 2n, deadline: 1_900_000_000n };
  const signed = (): RotationInput => {
    const d = rotationDigest({ ...base, newKey: newKey.signer });
    return {
      ...base,
      newKey: newKey.signer,
      newKeySignature: newKey.signDigest(d),
      oldKey: oldKey.signer,
      oldKeySignature: oldKey.signDigest(d),
    };
  };

  it("round-trips: serializeRotation writes what parseRotationText reads back", function () {
    const r = parseRotationText(serializeRotation(signed()));
    expect(r).to.deep.include({ ...base, newKey: newKey.signer.toLowerCase(), oldKey: oldKey.signer.toLowerCase() });
    const ownerOnly = parseRotationText(
      serializeRotation({ ...signed(), oldKey: undefined, oldKeySignature: undefined }),
    );
    expect([ownerOnly.oldKey, ownerOnly.oldKeySignature]).to.deep.equal(["0x", "0x"]);
    expect(JSON.parse(serializeRotation({ ...signed(), oldKey: undefined }))).to.not.have.property("oldKey");
  });

  it("a bad field is refused by name: format, version, numbers, addresses, bytes, an old key without its signature, an unknown field", function () {
    const good = JSON.parse(serializeRotation(signed()));
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ format: "rotation" }, /^format: must be "custos-key-rotation"/],
      [{ version: 2 }, /^version: must be 1/],
      [{ chainId: "0x7a69" }, /^chainId: must be a non-negative integer/],
      [{ registry: "0x1234" }, /^registry: must be the registry's address/],
      [{ device: "-1" }, /^device: must be a non-negative integer/],
      [{ device: "0" }, /^device: must not be 0/],
      [{ nonce: String(2n ** 32n) }, /^nonce: .* is out of range/],
      [{ deadline: undefined }, /^deadline: must be .*, not missing/],
      [{ newKey: "0x12" }, /^newKey: must be 0x-hex bytes \(at least 20\)/],
      [{ newKeySignature: "zz" }, /^newKeySignature: must be 0x-hex bytes/],
      [{ oldKeySignature: undefined }, /^oldKeySignature: oldKey and oldKeySignature go together/],
      [{ oldKey: good.newKey }, /^newKey: is the old key/],
      [{ signature: "0x" }, /^signature: is not a rotation file field/],
    ];
    for (const [change, error] of cases)
      expect(() => parseRotation({ ...good, ...change }), JSON.stringify(change)).to.throw(error);
    expect(() => parseRotationText("{", "r.json")).to.throw(/r.json is not JSON/);
    expect(() => parseRotation([])).to.throw(/a rotation file is a JSON object/);
  });
});

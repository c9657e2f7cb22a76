import { expect } from "chai";
import { artifacts } from "../helpers/hardhat.js";

/** EIP-170: the most runtime code a contract may have on Ethereum and the chains that follow it. */
const LIMIT = 24_576;

describe("Contract code size", function () {
  it("every Custos contract's runtime code is within the EIP-170 limit, with no unlimited-size exemption", async function () {
    const names = [...(await artifacts.getAllFullyQualifiedNames())].filter((n) => n.startsWith("contracts/"));
    expect(names.length).to.be.greaterThan(5);
    const sizes: Record<string, number> = {};
    for (const name of names) {
      const { deployedBytecode } = await artifacts.readArtifact(name);
      sizes[name.split(":")[1]] = (deployedBytecode.length - 2) / 2;
    }
    const over = Object.entries(sizes).filter(([, size]) => size > LIMIT);
    expect(over, `over ${LIMIT} bytes: ${JSON.stringify(over)}`).to.deep.equal([]);
    console.log(`      registry: ${sizes.DeviceRegistry} bytes of ${LIMIT}`);
  });
});

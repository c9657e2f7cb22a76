/**
 * The owner's beacon tasks: make key files, register the owner's key and a responder, and read a
 * stolen device's sealed beacons with a key file — the owner's and the responder's open them, a
 * stranger's and a removed responder's do not.
 */
import { expect } from "chai";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { ethers } from "../helpers/hardhat.js";
import { runTask } from "./run.js";
import { provisionFor } from "./fixtures.js";
import { deploySuite } from "../../src/deploy/suite.js";
import { randomDeviceKey } from "../../src/crypto/deviceKey.js";
import { beaconArgs } from "../helpers/beacons.js";

describe("Hardhat tasks: location beacons", function () {
  const dir = mkdtempSync(path.join(tmpdir(), "custos-beacons-"));
  const file = (name: string) => path.join(dir, `${name}.json`);

  it("the owner registers its key and a responder; both read the stolen device's beacon, a stranger cannot; a removed responder reads no later beacon", async function () {
    const [admin, owner] = await ethers.getSigners();
    const suite = await deploySuite(admin, { manufacturers: [admin.address], challengePeriod: 600 });
    const key = randomDeviceKey("secp256k1");
    const [id] = await provisionFor(suite, [key], owner);
    const b = { beacons: suite.locationBeacons };
    const keys = {} as Record<string, { publicKey: string }>;
    for (const who of ["owner", "police", "stranger"]) keys[who] = await runTask("beacons:keygen", { out: file(who) });

    await expect(runTask("beacons:set-key", { key: "0x1234", signer: "1", ...b })).to.be.rejectedWith(
      /--key must be 32 bytes/,
    );
    await runTask("beacons:set-key", { keyFile: file("owner"), signer: "1", ...b });
    const { recipients } = await runTask("beacons:add-responder", { key: keys.police.publicKey, signer: "1", ...b });
    expect(recipients).to.deep.equal([keys.owner.publicKey, keys.police.publicKey]);

    const registry = await ethers.getContractAt("DeviceRegistry", suite.registry);
    await registry.connect(owner).reportStolen(id);
    const beacons = await ethers.getContractAt("LocationBeacons", suite.locationBeacons);
    await beacons.postLocationBeacon(...(await beaconArgs(beacons, key, id)));

    const read = async (who: string) =>
      (await runTask("beacons:open", { device: id.toString(), keyFile: file(who), ...b })).beacons;
    for (const who of ["owner", "police"]) expect((await read(who))[0]).to.include({ latitudeE7: 473_700_000 });
    expect((await read("stranger"))[0].unreadable).to.match(/not among the beacon's recipients/);

    await runTask("beacons:remove-responder", { key: keys.police.publicKey, signer: "1", ...b });
    await beacons.postLocationBeacon(...(await beaconArgs(beacons, key, id)));
    const police = await read("police");
    expect(police[0]).to.include({ latitudeE7: 473_700_000 });
    expect(police[1].unreadable).to.match(/not among/);
    expect((await read("owner"))[1]).to.include({ longitudeE7: 85_400_000 });
  });
});

import { expect } from "chai";
import { ethers } from "../helpers/hardhat.js";
import { runTask } from "./run.js";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { StandardMerkleTree } from "@openzeppelin/merkle-tree";
import { deploySuite } from "../../src/deploy/suite.js";
import { digest } from "../../src/eip712/index.js";
import { randomDeviceKey } from "../../src/crypto/deviceKey.js";
import { deviceIdOf } from "../../src/registry/batch.js";
import { serializeRotation } from "../../src/registry/rotation.js";
import { deadlineIn, FIRMWARE, rotation, type RegistryContext } from "../helpers/registry.js";

describe("Hardhat tasks: registry", function () {
  const dir = mkdtempSync(path.join(tmpdir(), "custos-tasks-"));
  const csv = (name: string, text: string) => {
    const file = path.join(dir, name);
    writeFileSync(file, text);
    return file;
  };

  it("makes a batch from a CSV, commits it, claims, reports, releases, rotates and decommissions", async function () {
    const [admin] = await ethers.getSigners();
    const suite = await deploySuite(admin, { manufacturers: [admin.address] });
    const registry = await ethers.getContractAt("DeviceRegistry", suite.registry);
    const { chainId } = await ethers.provider.getNetwork();
    const deployment = { chainId, verifyingContract: suite.registry };
    const keys = [randomDeviceKey("secp256k1"), randomDeviceKey("p256", suite.p256Verifier)];
    const rows = [
      ...keys.map((k) => `${k.signer},custos-lock-v1,${FIRMWARE}`),
      ...Array.from({ length: 48 }, () => `${ethers.hexlify(ethers.randomBytes(20))},${ethers.ZeroHash},${FIRMWARE}`),
    ];
    const out = path.join(dir, "batch");
    const summary = await runTask("registry:batch", {
      csv: csv("devices.csv", ["deviceKey,model,firmwareHash", ...rows].join("\n") + "\n"),
      out,
      commit: true,
      registry: suite.registry,
    });
    expect(summary.devices).to.equal(50);
    const tree = StandardMerkleTree.load(JSON.parse(readFileSync(path.join(out, "tree.json"), "utf8")));
    expect(tree.root).to.equal(summary.root);
    expect((await registry.batch(BigInt(summary.batchId))).root).to.equal(summary.root);
    const proofs = readFileSync(path.join(out, "proofs.jsonl"), "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    expect(proofs).to.have.length(50);

    for (const key of keys) {
      const entry = proofs.find((p) => p.deviceKey === key.signer)!;
      const message = { owner: admin.address, batch: summary.batchId, deadline: (await deadlineIn()).toString() };
      const signed = {
        type: "DeviceClaim",
        key: key.signer,
        message,
        signature: key.signDigest(digest("DeviceClaim", deployment, message)),
        claim: { model: entry.model, firmwareHash: entry.firmwareHash, proof: entry.proof },
      };
      const file = path.join(dir, `claim-${key.kind}.json`);
      writeFileSync(file, JSON.stringify(signed));
      await runTask("registry:claim", { message: file, registry: suite.registry });
      expect(entry.deviceId).to.equal(deviceIdOf(key.signer).toString());
    }
    const device = proofs.find((p) => p.deviceKey === keys[0].signer)!.deviceId as string;
    const status = (args: object) => runTask("registry:status", { registry: suite.registry, ...args });
    expect((await status({ device })).status).to.equal("Active");
    expect((await status({ key: keys[1].signer })).owner).to.equal(admin.address);

    await runTask("registry:report-stolen", { device, registry: suite.registry });
    expect((await status({ device })).status).to.equal("Quarantined");
    await runTask("registry:release", { device, registry: suite.registry });
    expect((await status({ device })).status).to.equal("Active");

    const ctx = { registry, deployment } as unknown as RegistryContext;
    const next = randomDeviceKey("secp256k1");
    const nonce = await registry.deviceNonce(BigInt(device));
    const r = await rotation(ctx, BigInt(device), next, keys[0]);
    const rotationFile = path.join(dir, "rotation.json");
    writeFileSync(
      rotationFile,
      serializeRotation({
        chainId,
        registry: suite.registry,
        device: BigInt(device),
        nonce: BigInt(nonce),
        deadline: BigInt(r.deadline),
        newKey: String(r.newKey),
        newKeySignature: String(r.newKeySignature),
        oldKey: String(r.oldKey),
        oldKeySignature: String(r.oldKeySignature),
      }),
    );
    await runTask("registry:rotate", { device, rotation: rotationFile, registry: suite.registry });
    expect((await status({ key: next.signer })).keyGeneration).to.equal(1);

    await runTask("registry:decommission", { device, registry: suite.registry });
    expect((await status({ device })).status).to.equal("Revoked");
  });

  it("names the line and the column of a bad CSV", async function () {
    const run = (text: string) => runTask("registry:batch", { csv: csv("bad.csv", text), out: path.join(dir, "bad") });
    await expect(run("key,model\n")).to.be.rejectedWith(/first line must be "deviceKey,model,firmwareHash"/);
    await expect(run(`deviceKey,model,firmwareHash\n0x1234,m,${FIRMWARE}\n`)).to.be.rejectedWith(/line 2: deviceKey/);
    const key = ethers.hexlify(ethers.randomBytes(20));
    await expect(run(`deviceKey,model,firmwareHash\n${key},m,0x12\n`)).to.be.rejectedWith(/line 2: firmwareHash/);
    await expect(run(`deviceKey,model,firmwareHash\n${key},${"x".repeat(40)},${FIRMWARE}\n`)).to.be.rejectedWith(
      /line 2: model/,
    );
    await expect(
      runTask("registry:status", { device: "not-a-number", registry: ethers.ZeroAddress }),
    ).to.be.rejectedWith(/--device: not-a-number is not a device id/);
    await expect(runTask("registry:status", { registry: ethers.ZeroAddress })).to.be.rejectedWith(
      /exactly one of --device and --key/,
    );
  });
});

/**
 * The device agent and the relayer gateway together, as they run in the field: a real node on
 * loopback (`hardhat node`, or anvil with CUSTOS_NODE=anvil), the real relayer over HTTP, agents in
 * relayer mode (the devices hold no ETH).
 */
import { expect } from "chai";
import { id as textHash } from "ethers";
import { openAgentStack } from "../../src/agent/agent.js";
import { makeFleet, relayerFor, tempDir } from "../relayer/fixtures.js";
import { NODE_KIND } from "../helpers/node.js";
import { LocationBeacons__factory } from "../../typechain-types/index.js";
import { openLocation } from "../../src/beacons/index.js";
import { signLocationBeacon } from "../../src/agent/roles/beacon.js";

describe(`e2e: device agents deliver through the relayer (${NODE_KIND} node)`, function () {
  it("firmware attestations from a secp256k1 and a P-256 device land once each, in nonce order, gas paid by the relayer", async function () {
    const fleet = await makeFleet({ devices: 2, kinds: ["secp256k1", "p256"] });
    const relayer = await relayerFor(fleet);
    const stack = await openAgentStack({
      deployment: { chainId: BigInt(fleet.deployment.chainId), registry: fleet.addresses.registry },
      dataDir: tempDir("custos-e2e-"),
      rpc: fleet.node.url,
      relayerUrl: relayer.url,
      pollMs: 20,
      backoff: { baseMs: 20, capMs: 200 },
    });
    try {
      const perDevice = 10;
      const expected = new Map<bigint, string[]>();
      const signed = [];
      for (const d of fleet.devices) {
        const agent = stack.agentFor(d.key);
        const hashes = Array.from({ length: perDevice }, (_, i) => textHash(`e2e ${d.key.kind} ${i}`));
        expected.set(d.id, hashes);
        for (const firmwareHash of hashes) signed.push(await agent.sign("FirmwareAttestation", { firmwareHash }));
      }
      const relayerBalance = await fleet.provider.getBalance(fleet.relayerWallet.address);
      await stack.dispatcher.drain();

      const events = await fleet.registry.queryFilter(fleet.registry.filters.FirmwareAttested());
      for (const d of fleet.devices) {
        const landed = events.filter((e) => e.args.deviceId === d.id).map((e) => e.args.firmwareHash);
        expect(landed).to.deep.equal(expected.get(d.id));
        expect(await fleet.registry.deviceNonce(d.id)).to.equal(BigInt(perDevice));
      }
      expect(await fleet.provider.getBalance(fleet.relayerWallet.address)).to.be.lessThan(relayerBalance);
      expect(stack.outbox.live()).to.have.length(0);
      expect(stack.outbox.all().every((e) => e.state === "done" && e.outcome === "confirmed")).to.equal(true);
      expect(signed).to.have.length(2 * perDevice);
    } finally {
      await stack.close();
      await relayer.close();
    }
  });

  it("a stolen device's location beacons reach LocationBeacons through the relayer, beside its held registry message", async function () {
    const fleet = await makeFleet({ devices: 1, kinds: ["p256"] });
    const [device] = fleet.devices;
    await (await fleet.registry.connect(fleet.owner).reportStolen(device.id)).wait();
    const relayer = await relayerFor(fleet);
    const stack = await openAgentStack({
      deployment: {
        chainId: BigInt(fleet.deployment.chainId),
        registry: fleet.addresses.registry,
        locationBeacons: fleet.addresses.locationBeacons,
      },
      dataDir: tempDir("custos-e2e-"),
      rpc: fleet.node.url,
      relayerUrl: relayer.url,
      pollMs: 20,
      holdMs: 50,
      backoff: { baseMs: 20, capMs: 200 },
    });
    try {
      const agent = stack.agentFor(device.key);
      // Refused by the relayer while the device is quarantined (held), ahead of the beacons in time.
      const held = await agent.sign("FirmwareAttestation", { firmwareHash: textHash("while stolen") });
      const beacons = [];
      for (let i = 0; i < 3; i++)
        beacons.push(
          await signLocationBeacon(
            agent,
            { latitudeE7: 100 + i, longitudeE7: -200 },
            { at: BigInt(1_700_000_000 + i) },
          ),
        );
      expect(beacons.map((b) => b.message.message.nonce)).to.deep.equal(["0", "1", "2"]);
      void stack.dispatcher.drain({ watch: true });
      const contract = LocationBeacons__factory.connect(fleet.addresses.locationBeacons, fleet.provider);
      const deadline = Date.now() + 30_000;
      while (!beacons.every((b) => stack.outbox.get(b.id)!.outcome === "confirmed")) {
        if (Date.now() > deadline) throw new Error("the beacons did not land");
        await new Promise((r) => setTimeout(r, 50));
      }
      const posted = await contract.queryFilter(contract.filters.LocationBeaconPosted(device.id));
      const context = (at: bigint) => ({
        chainId: BigInt(fleet.deployment.chainId),
        contract: fleet.addresses.locationBeacons,
        device: device.id,
        at,
      });
      const opened = await Promise.all(
        posted.map((e) => openLocation(e.args[5], e.args[4], context(e.args[3]), fleet.ownerBeaconKey.privateKey)),
      );
      expect(posted.map((e, i) => [e.args.owner, opened[i].latitudeE7])).to.deep.equal(
        [100, 101, 102].map((lat) => [fleet.ownerAddress, lat]),
      );
      expect(await contract.beaconNonce(device.id)).to.equal(3n);
      expect(stack.outbox.get(held.id)!.state).to.not.equal("done");
      expect(await fleet.registry.deviceNonce(device.id)).to.equal(0n);
    } finally {
      await stack.close();
      await relayer.close();
    }
  });
});

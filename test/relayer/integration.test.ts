/**
 * The relayer against a real node on loopback (`hardhat node`, or anvil with its block time and
 * mempool when CUSTOS_NODE=anvil): device messages and ERC-2771 forward
 * requests land; a message that turns bad does not sink its batch; a batch that reverts on chain
 * after all is simulated again and its survivors resent; and the relayer process killed with
 * SIGKILL mid-batch (at the worst moments, and at points of its progress drawn at random) loses
 * nothing it accepted and lands nothing twice.
 */
import { expect } from "chai";
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { ethers } from "ethers";
import type { SignedDeviceMessage } from "../../src/messages/index.js";
import {
  attestation,
  deadlineIn,
  fastHasher,
  forwardRequest,
  get,
  makeFleet,
  post,
  relayerFor,
  signClaim,
  signDeviceMessage,
  tempDir,
  transactionsFrom,
  until,
  type Fleet,
  type HttpReply,
} from "./fixtures.js";
import { keystoreFiles, spawnRelayer, type RelayerProcess } from "./process.js";
import { NODE_KIND, startNode } from "../helpers/node.js";
import { crashSeed } from "../helpers/crashSeed.js";
import { rpcProvider, simulateFleet } from "../../src/relayer/fleet.js";
import { deviceById } from "../../src/registry/lookup.js";
import { LocationBeacons__factory } from "../../typechain-types/index.js";
import { generateBeaconKey, openLocation, sealLocation } from "../../src/beacons/index.js";

type Status = { id: string; status: string; txHash?: string; error?: string };

async function statuses(url: string, ids: string[]): Promise<Status[]> {
  return Promise.all(ids.map(async (id) => (await get<Status>(url, `/v1/messages/${id}`)).body));
}

async function allFinal(url: string, ids: string[], ms = 30_000): Promise<Status[]> {
  let last: Status[] = [];
  await until(
    async () => {
      last = await statuses(url, ids);
      return last.every((s) => ["confirmed", "failed", "spent"].includes(s.status));
    },
    ms,
    "every message to be final",
  );
  return last;
}

async function accept(url: string, route: "/v1/messages" | "/v1/forward", body: unknown): Promise<string> {
  const r = await post(url, route, body);
  expect(r.status, JSON.stringify(r.body)).to.equal(202);
  return r.body.id as string;
}

async function noFailingTransaction(fleet: Fleet, relayer: string, from = 0) {
  const txs = await transactionsFrom(fleet.provider, relayer, from);
  expect(
    txs.filter((t) => t.status !== 1),
    "failing relayer transactions",
  ).to.deep.equal([]);
  return txs;
}

describe(`relayer integration (${NODE_KIND} node on loopback)`, function () {
  this.timeout(120_000);
  let h: Awaited<ReturnType<typeof fastHasher>>;

  before(async function () {
    h = await fastHasher();
  });

  it("device messages land: claims (with a message right behind), attestations, a nonce cancellation, a beacon, secp256k1 and P-256", async function () {
    const fleet = await makeFleet({ devices: 4, unclaimed: 2, kinds: ["secp256k1", "p256"] });
    const deadline = await deadlineIn(fleet.provider);
    const owner = fleet.registry.connect(fleet.owner);
    await (await owner.reportStolen(fleet.devices[3].id)).wait();
    const relayer = await relayerFor(fleet);
    const start = await fleet.provider.getBlockNumber();

    const ids: string[] = [];
    for (const key of fleet.unclaimed)
      ids.push(
        await accept(
          relayer.url,
          "/v1/messages",
          signClaim(h, key, fleet.batch, fleet.ownerAddress, deadline, fleet.deployment),
        ),
      );
    // A message of a device whose claim is still queued: it rides in the same batch, after the claim.
    const newDevice = { key: fleet.unclaimed[0], id: BigInt(ethers.keccak256(fleet.unclaimed[0].signer)) >> 64n };
    ids.push(await accept(relayer.url, "/v1/messages", attestation(h, newDevice, fleet.deployment, 0n, deadline)));
    for (const d of fleet.devices.slice(0, 3))
      for (let n = 0n; n < 3n; n++)
        ids.push(
          await accept(
            relayer.url,
            "/v1/messages",
            attestation(h, d, fleet.deployment, n, deadline, ethers.id(`fw ${n}`)),
          ),
        );
    ids.push(
      await accept(
        relayer.url,
        "/v1/messages",
        signDeviceMessage(h, fleet.devices[2].key, "NonceCancellation", fleet.deployment, {
          device: fleet.devices[2].id,
          nonce: 3n,
          deadline,
        }),
      ),
    );
    // The stolen device's beacons: LocationBeacons' domain and beacon nonces, a multicall of their own;
    // their locations sealed to the owner's beacon key.
    const beaconContext = (device: bigint, at: bigint) => ({
      chainId: BigInt(fleet.deployment.chainId),
      contract: fleet.addresses.locationBeacons,
      device,
      at,
    });
    for (const nonce of [1n, 0n])
      ids.push(
        await accept(
          relayer.url,
          "/v1/messages",
          signDeviceMessage(h, fleet.devices[3].key, "LocationBeacon", fleet.beaconsDeployment, {
            device: fleet.devices[3].id,
            nonce,
            recipients: fleet.ownerBeaconKey.publicKey,
            ciphertext: await sealLocation(
              { latitudeE7: 485_000_000 + Number(nonce), longitudeE7: 23_000_000 },
              fleet.ownerBeaconKey.publicKey,
              beaconContext(fleet.devices[3].id, 1_700_000_000n),
            ),
            at: 1_700_000_000n,
            deadline,
          }),
        ),
      );

    const final = await allFinal(relayer.url, ids);
    expect(final.map((s) => s.status)).to.deep.equal(ids.map(() => "confirmed"));
    for (const s of final) expect(s.txHash).to.match(/^0x[0-9a-f]{64}$/);
    expect(await fleet.registry.ownerOf(newDevice.id)).to.equal(fleet.ownerAddress);
    expect(await fleet.registry.deviceNonce(newDevice.id)).to.equal(1n);
    expect(await fleet.registry.deviceNonce(fleet.devices[0].id)).to.equal(3n);
    expect(await fleet.registry.deviceNonce(fleet.devices[1].id)).to.equal(3n);
    expect(await fleet.registry.deviceNonce(fleet.devices[2].id)).to.equal(4n);
    expect(await fleet.registry.deviceNonce(fleet.devices[3].id)).to.equal(0n);
    const beacons = LocationBeacons__factory.connect(fleet.addresses.locationBeacons, fleet.provider);
    expect(await beacons.beaconNonce(fleet.devices[3].id)).to.equal(2n);
    const posted = await beacons.queryFilter(beacons.filters.LocationBeaconPosted(), start);
    const opened = await Promise.all(
      posted.map((e) =>
        openLocation(e.args[5], e.args[4], beaconContext(e.args[0], e.args[3]), fleet.ownerBeaconKey.privateKey),
      ),
    );
    expect(posted.map((e, i) => [e.args.deviceId, e.args.owner, opened[i].latitudeE7])).to.deep.equal([
      [fleet.devices[3].id, fleet.ownerAddress, 485_000_000],
      [fleet.devices[3].id, fleet.ownerAddress, 485_000_001],
    ]);
    const txs = await noFailingTransaction(fleet, relayer.address, start + 1);
    expect(txs.length).to.be.lessThan(ids.length);
    expect(new Set(txs.map((t) => t.to!.toLowerCase()))).to.deep.equal(
      new Set([fleet.addresses.registry.toLowerCase(), fleet.addresses.locationBeacons.toLowerCase()]),
    );
    await relayer.close();
  });

  it("ERC-2771 forward requests from owners land through executeBatch, in nonce order", async function () {
    const fleet = await makeFleet({ devices: 2 });
    const relayer = await relayerFor(fleet);
    const start = await fleet.provider.getBlockNumber();
    const id = fleet.devices[0].id;
    const report = await forwardRequest(fleet, fleet.owner, {
      to: fleet.addresses.registry,
      data: fleet.registry.interface.encodeFunctionData("reportStolen", [id]),
      gas: 100_000n,
    });
    // Signed with the next forwarder nonce, before the first one landed: it waits its turn.
    const release = await forwardRequest(fleet, fleet.owner, {
      to: fleet.addresses.registry,
      data: fleet.registry.interface.encodeFunctionData("release", [id]),
      gas: 100_000n,
      nonce: 1n,
    });
    const ids = [await accept(relayer.url, "/v1/forward", report), await accept(relayer.url, "/v1/forward", release)];
    const final = await allFinal(relayer.url, ids);
    expect(final.map((s) => s.status)).to.deep.equal(["confirmed", "confirmed"]);
    const events = await fleet.registry.queryFilter(fleet.registry.filters.ReportedStolen(id), start);
    expect(events).to.have.length(1);
    expect((await fleet.registry.queryFilter(fleet.registry.filters.Released(id), start)).length).to.equal(1);
    expect((await deviceById(fleet.registry, id)).status).to.equal(1n); // Active again
    const txs = await noFailingTransaction(fleet, relayer.address, start + 1);
    expect(new Set(txs.map((t) => t.to!.toLowerCase()))).to.deep.equal(
      new Set([fleet.addresses.forwarder.toLowerCase()]),
    );
    await relayer.close();
  });

  it("a message that turns bad before its batch is sent is dropped with its reason; the rest of the batch lands", async function () {
    const fleet = await makeFleet({ devices: 6 });
    const deadline = await deadlineIn(fleet.provider);
    const relayer = await relayerFor(fleet, { batchIntervalMs: 2_000 });
    const start = await fleet.provider.getBlockNumber();
    const good = await Promise.all(
      [0, 1, 3, 4, 5].map((i) =>
        accept(relayer.url, "/v1/messages", attestation(h, fleet.devices[i], fleet.deployment, 0n, deadline)),
      ),
    );
    const doomed = await accept(
      relayer.url,
      "/v1/messages",
      attestation(h, fleet.devices[2], fleet.deployment, 0n, deadline),
    );
    const behind = await accept(
      relayer.url,
      "/v1/messages",
      attestation(h, fleet.devices[2], fleet.deployment, 1n, deadline),
    );
    // Before the batch goes out, device 2 is reported stolen: its messages would now revert.
    await (await fleet.registry.connect(fleet.owner).reportStolen(fleet.devices[2].id)).wait();

    const final = await allFinal(relayer.url, [...good, doomed]);
    expect(final.slice(0, 5).map((s) => s.status)).to.deep.equal(good.map(() => "confirmed"));
    expect(new Set(final.slice(0, 5).map((s) => s.txHash)).size).to.equal(1); // one batch
    expect(final[5].status).to.equal("failed");
    expect(final[5].error).to.match(/DeviceRegistryWrongStatus/);
    // The message behind the failed one waits for its nonce (which the device must sign again).
    expect((await get<Status>(relayer.url, `/v1/messages/${behind}`)).body.status).to.equal("accepted");
    const txs = await noFailingTransaction(fleet, relayer.address, start + 1);
    expect(txs).to.have.length(1);
    await relayer.close();
  });

  it("a forwarded call that turns bad is dropped with its reason; another owner's request in the batch lands", async function () {
    const fleet = await makeFleet({ devices: 2 });
    const other = await fleet.provider.getSigner(2);
    const owner = fleet.registry.connect(fleet.owner);
    await (await owner.transferFrom(fleet.ownerAddress, await other.getAddress(), fleet.devices[1].id)).wait();
    const relayer = await relayerFor(fleet, { batchIntervalMs: 2_000 });
    const start = await fleet.provider.getBlockNumber();
    const report = (signer: typeof other, i: number) =>
      forwardRequest(fleet, signer, {
        to: fleet.addresses.registry,
        data: fleet.registry.interface.encodeFunctionData("reportStolen", [fleet.devices[i].id]),
        gas: 100_000n,
      });
    const doomed = await accept(relayer.url, "/v1/forward", await report(fleet.owner, 0));
    const good = await accept(relayer.url, "/v1/forward", await report(other, 1));
    await (await owner.reportStolen(fleet.devices[0].id)).wait(); // the forwarded report would now revert
    const final = await allFinal(relayer.url, [doomed, good]);
    expect(final[0].status).to.equal("failed");
    expect(final[0].error).to.match(/DeviceRegistryAlreadyReported/);
    expect(final[1].status).to.equal("confirmed");
    await noFailingTransaction(fleet, relayer.address, start + 1);
    await relayer.close();
  });

  it("a batch that reverts on chain after all (front-run) is simulated again and its survivors resent", async function () {
    const fleet = await makeFleet({ devices: 5 });
    const deadline = await deadlineIn(fleet.provider);
    const relayer = await relayerFor(fleet, { batchIntervalMs: 100 });
    const start = await fleet.provider.getBlockNumber();
    const messages = fleet.devices.map((d) => attestation(h, d, fleet.deployment, 0n, deadline));
    await fleet.node.pauseMining();
    try {
      const ids = await Promise.all(messages.map((m) => accept(relayer.url, "/v1/messages", m)));
      await until(
        async () => (await statuses(relayer.url, ids)).every((s) => s.status === "submitted"),
        10_000,
        "the batch to be broadcast",
      );
      // Someone relays device 0's message directly, with a higher tip: it is mined first.
      const m = messages[0];
      await fleet.registry
        .connect(fleet.owner)
        .attestFirmware(m.key, m.message.firmwareHash as string, deadline, m.signature, {
          gasLimit: 200_000n, // estimating against the pending block would see the relayer's batch first
          maxPriorityFeePerGas: ethers.parseUnits("100", "gwei"),
          maxFeePerGas: ethers.parseUnits("200", "gwei"),
        });
      await fleet.node.mine();
      await fleet.node.resumeMining();
      const final = await allFinal(relayer.url, ids);
      expect(final.map((s) => s.status)).to.deep.equal(["spent", "confirmed", "confirmed", "confirmed", "confirmed"]);
      const txs = await transactionsFrom(fleet.provider, relayer.address, start + 1);
      expect(txs.map((t) => t.status)).to.deep.equal([0, 1]);
      expect(relayer.stats().revertedTxs).to.equal(1);
      for (const d of fleet.devices) expect(await fleet.registry.deviceNonce(d.id)).to.equal(1n);
    } finally {
      await fleet.node.resumeMining();
      await relayer.close();
    }
  });

  it("with its node down, the relayer refuses with 503 chain_unavailable and reports it in /health", async function () {
    const node = await startNode();
    try {
      const provider = rpcProvider(node.url);
      const fleet = await simulateFleet({
        provider,
        admin: await provider.getSigner(0),
        owner: await provider.getSigner(1),
        devices: 1,
      });
      const deadline = await deadlineIn(provider);
      const relayer = await relayerFor({
        ...fleet,
        node,
        admin: await provider.getSigner(0),
        owner: await provider.getSigner(1),
        ownerBeaconKey: await generateBeaconKey(), // no beacon is sent here
      });
      await node.stop();
      const r = await post(
        relayer.url,
        "/v1/messages",
        attestation(h, fleet.devices[0], fleet.deployment, 0n, deadline),
      );
      expect(r.status).to.equal(503);
      expect(r.body.code).to.equal("chain_unavailable");
      expect(Number(r.headers["retry-after"])).to.be.greaterThan(0);
      const health = await get(relayer.url, "/health");
      expect(health.status).to.equal(503);
      expect(health.body.ok).to.equal(false);
      await relayer.close();
    } finally {
      await node.stop();
    }
  });

  describe("crash: the relayer process killed with SIGKILL", function () {
    this.timeout(150_000);

    async function crashFleet(devices: number) {
      const fleet = await makeFleet({ devices });
      const { keystore, passwordFile } = keystoreFiles(fleet.relayerWallet);
      const args = [
        "--rpc",
        fleet.node.url,
        "--keystore",
        keystore,
        "--password-file",
        passwordFile,
        "--registry",
        fleet.addresses.registry,
        "--location-beacons",
        fleet.addresses.locationBeacons,
        "--data",
        tempDir(),
        "--batch-interval-ms",
        "300",
        "--batch-size",
        "25",
        "--poll-interval-ms",
        "50",
        "--log-level",
        "info",
      ];
      return { fleet, args, deadline: await deadlineIn(fleet.provider) };
    }

    /** `args` with `flag`'s value replaced. */
    function withFlag(args: string[], flag: string, value: string): string[] {
      const i = args.indexOf(flag);
      return [...args.slice(0, i + 1), value, ...args.slice(i + 2)];
    }

    /** Every stdout line of a relayer process is one JSON object. */
    function expectJsonLogs(p: RelayerProcess) {
      for (const line of p.lines) expect(() => JSON.parse(line), line).not.to.throw();
      expect(p.lines.length).to.be.greaterThan(0);
    }

    for (const [failpoint, torn] of [
      ["before-broadcast", false],
      ["after-broadcast", false],
      ["before-broadcast", true],
    ] as const) {
      const how = `right ${failpoint.replace("-", " ")} of its first batch${torn ? ", its log torn after the transaction record" : ""}`;
      it(`killed ${how}: after a restart every accepted message lands exactly once`, async function () {
        const { fleet, args: common, deadline } = await crashFleet(10);
        const start = await fleet.provider.getBlockNumber();
        const messages: SignedDeviceMessage[] = [];
        for (const d of fleet.devices)
          for (let n = 0n; n < 3n; n++) messages.push(attestation(h, d, fleet.deployment, n, deadline));
        // The first batch is the whole stream, formed by its last message (not by a timer), so the
        // kill at its broadcast comes after every message was accepted, however slow the machine.
        const args = withFlag(
          withFlag(common, "--batch-size", String(messages.length)),
          "--batch-interval-ms",
          "600000",
        );
        const first = await spawnRelayer(args, { CUSTOS_RELAYER_FAILPOINT: `${failpoint}:1` });
        const ids = await Promise.all(messages.map((m) => accept(first.url, "/v1/messages", m)));
        expect(await first.exited).to.equal("SIGKILL");
        expectJsonLogs(first);
        // What the node has from the relayer, mined or in its mempool (a node with a block time
        // may not have mined the batch yet).
        const sent = await fleet.provider.getTransactionCount(fleet.relayerWallet.address, "pending");
        expect(sent).to.equal(failpoint === "before-broadcast" ? 0 : 1);
        if (torn) {
          // As if the crash had cut the write after the signed transaction's line: no status line follows it.
          const file = path.join(args[args.indexOf("--data") + 1], "relayer.jsonl");
          const lines = readFileSync(file, "utf8").trimEnd().split("\n");
          const tx = lines.findIndex((l) => l.startsWith('{"t":"tx"'));
          expect(tx).to.be.greaterThan(-1);
          writeFileSync(
            file,
            [...lines.slice(0, tx + 1), ...lines.slice(tx + 1).filter((l) => !l.startsWith('{"t":"status"'))].join(
              "\n",
            ) + "\n",
          );
        }

        const second = await spawnRelayer(common);
        try {
          const final = await allFinal(second.url, ids);
          expect(final.map((s) => s.status)).to.deep.equal(ids.map(() => "confirmed"));
          for (const d of fleet.devices) expect(await fleet.registry.deviceNonce(d.id)).to.equal(3n);
          const events = await fleet.registry.queryFilter(fleet.registry.filters.FirmwareAttested(), start + 1);
          expect(events).to.have.length(messages.length);
          await noFailingTransaction(fleet, fleet.relayerWallet.address, start + 1);
          // Duplicates posted after the restart are still recognised.
          const again = await post(second.url, "/v1/messages", messages[0]);
          expect(again.status).to.equal(200);
          expect(again.body).to.deep.equal({ id: ids[0], status: "confirmed" });
          expect(
            second.lines.some((l) => l.includes(failpoint === "before-broadcast" ? '"rebroadcast"' : '"batch_mined"')),
          ).to.equal(true);
          expectJsonLogs(second);
        } finally {
          await second.kill();
        }
      });
    }

    it("killed twice at points of its progress while 120 messages stream in: nothing accepted is lost, nothing lands twice", async function () {
      const DEVICES = 12;
      const PER_DEVICE = 10;
      const BATCH_SIZE = 25; // crashFleet's --batch-size
      const { fleet, args, deadline } = await crashFleet(DEVICES);
      const start = await fleet.provider.getBlockNumber();
      const queue: SignedDeviceMessage[] = [];
      for (let n = 0n; n < BigInt(PER_DEVICE); n++)
        for (const d of fleet.devices)
          queue.push(attestation(h, d, fleet.deployment, n, deadline, ethers.id(`r ${d.id} ${n}`)));
      const ids = new Map<string, string>();
      const { random } = crashSeed();

      // Each of the first two processes dies at a point of its own progress, drawn within work it
      // cannot avoid (so the kill always comes, on any machine): right after the client got its
      // k-th acceptance (the others of the burst in flight), or at its N-th batch, just before or
      // just after broadcasting it (the relayer's failpoint). The first one is sent the first half
      // of the messages only, until it dies; the second the rest; k and N are drawn within what
      // the process is sent, which needs at least N batches of BATCH_SIZE.
      type Death = { at: "acceptance"; k: number } | { at: "before-broadcast" | "after-broadcast"; n: number };
      const deaths: Death[] = [];
      const limits = [queue.length / 2, queue.length];
      const plan = (): Death => {
        const toCome = limits[deaths.length] - ids.size;
        const kind = Math.floor(random() * 3);
        if (kind === 0) return { at: "acceptance", k: 1 + Math.floor(random() * toCome) };
        const n = 1 + Math.floor(random() * Math.ceil(toCome / BATCH_SIZE));
        return { at: kind === 1 ? "before-broadcast" : "after-broadcast", n };
      };
      const spawnNext = async (): Promise<RelayerProcess> => {
        if (deaths.length === 2) return spawnRelayer(args);
        const death = plan();
        deaths.push(death);
        return spawnRelayer(
          args,
          death.at === "acceptance" ? {} : { CUSTOS_RELAYER_FAILPOINT: `${death.at}:${death.n}` },
        );
      };
      let current = await spawnNext();
      let acceptances = 0; // by the current process
      const died: string[] = [];
      const replace = async () => {
        died.push(await current.exited);
        current = await spawnNext();
        acceptances = 0;
      };
      // The client (like the device agent) posts in order and retries what got no answer.
      const send = async (m: SignedDeviceMessage): Promise<HttpReply | null> => {
        const p = current;
        try {
          const reply = await post(p.url, "/v1/messages", m);
          if (p === current && (reply.status === 202 || reply.status === 200)) {
            acceptances++;
            const death = deaths[died.length];
            if (death?.at === "acceptance" && acceptances === death.k) void p.kill();
          }
          return reply;
        } catch {
          return null;
        }
      };
      let i = 0;
      while (i < queue.length) {
        // Past its share, a process set to die is sent nothing more until its death has come.
        const limit = died.length < 2 ? limits[died.length] : queue.length;
        if (i >= limit) {
          await replace();
          continue;
        }
        const burst = queue.slice(i, Math.min(i + 10, limit));
        const replies = await Promise.all(burst.map(send));
        replies.forEach((r, k) => {
          if (r && (r.status === 202 || r.status === 200)) ids.set(burst[k].signature, r.body.id as string);
        });
        if (replies.every((r) => r && (r.status === 202 || r.status === 200))) i += burst.length;
        if (current.child.exitCode !== null || current.child.signalCode !== null) await replace();
      }
      // The second may die after the last acceptance: at a batch it still has to send.
      while (died.length < 2) await replace();
      try {
        expect(died, `deaths planned: ${JSON.stringify(deaths)}`).to.deep.equal(["SIGKILL", "SIGKILL"]);
        console.log(
          `      the two deaths: ${deaths.map((d) => (d.at === "acceptance" ? `after acceptance ${d.k}` : `${d.at} of batch ${d.n}`)).join(", ")}`,
        );
        expect(ids.size).to.equal(queue.length);
        const final = await allFinal(current.url, [...ids.values()], 60_000);
        expect(final.filter((s) => s.status !== "confirmed")).to.deep.equal([]);
        for (const d of fleet.devices) expect(await fleet.registry.deviceNonce(d.id)).to.equal(BigInt(PER_DEVICE));
        const events = await fleet.registry.queryFilter(fleet.registry.filters.FirmwareAttested(), start + 1);
        expect(events).to.have.length(queue.length);
        expect(new Set(events.map((e) => e.args.firmwareHash)).size).to.equal(queue.length);
        await noFailingTransaction(fleet, fleet.relayerWallet.address, start + 1);
        expectJsonLogs(current);
      } finally {
        await current.kill();
      }
    });
  });
});

import { expect } from "chai";
import { Wallet, ZeroAddress, parseEther } from "ethers";
import { startRelayer } from "../../src/relayer/index.js";
import { ERC2771Forwarder__factory } from "../../typechain-types/index.js";
import { digest } from "../../src/eip712/index.js";
import { TypedDataHasher } from "../../src/eip712/fast.js";
import { DeviceSignatureVerifier } from "../../src/crypto/verify.js";
import { MeterPayee, UNCAPPED, termsFromOpened } from "../../src/agent/roles/meter.js";
import { openAgentStack } from "../../src/agent/agent.js";
import { startTower, type TowerHandle } from "../../src/watch/tower/index.js";
import { dueCalls, type ShipmentState } from "../../src/watch/tower/rules.js";
import type { ShipmentCall } from "../../src/messages/calls.js";
import {
  automine,
  createShipment,
  expectedBlock,
  firstBlockPast,
  oneSecondBlocks,
  removeTempDirs,
  tempDir,
  towerChain,
  waitForEvent,
  type TowerChain,
} from "./towerFixture.js";

async function waitFor(condition: () => boolean, timeoutMs = 30_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > until) throw new Error("timed out");
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe("watchtower", function () {
  this.timeout(180_000);
  let c: TowerChain;
  let tower: TowerHandle | undefined;

  before(async function () {
    c = await towerChain();
  });

  afterEach(async function () {
    await tower?.stop();
    tower = undefined;
    await automine(c.node);
  });

  after(async function () {
    await c?.node.stop();
    removeTempDirs();
  });

  const start = (payeeStores?: string[]) =>
    startTower({
      rpcUrl: c.node.url,
      chainId: 31337,
      addresses: c.fleet.addresses,
      sender: { key: c.towerKey.privateKey },
      dataDir: tempDir(),
      ...(payeeStores ? { payeeStores } : {}),
    });

  describe("rules (the contract's strict comparisons)", function () {
    const s: ShipmentState = {
      id: "0x" + "11".repeat(32),
      deadline: 1000n,
      lastCheckpointAt: 900n,
      maxSilence: 50n,
      overdue: false,
      silent: false,
      delivered: false,
    };

    it("a call is due only for a next block later than the limit, not equal to it", function () {
      expect(dueCalls(s, 950n)).to.deep.equal([]);
      expect(dueCalls(s, 951n).map((x) => x.type)).to.deep.equal(["MarkSilent"]);
      expect(dueCalls(s, 1000n).map((x) => x.type)).to.deep.equal(["MarkSilent"]);
      expect(dueCalls(s, 1001n).map((x) => x.type)).to.deep.equal(["MarkOverdue", "MarkSilent"]);
    });

    it("nothing is due for a delivered shipment, nor what is marked already", function () {
      expect(dueCalls({ ...s, delivered: true }, 5000n)).to.deep.equal([]);
      expect(dueCalls({ ...s, overdue: true, silent: true }, 5000n)).to.deep.equal([]);
      expect(dueCalls({ ...s, overdue: true }, 5000n).map((x) => x.type)).to.deep.equal(["MarkSilent"]);
    });
  });

  it("marks a shipment overdue in the first block after its deadline; nothing early, nothing delivered", async function () {
    const late = await createShipment(c, { deadlineIn: 8, maxSilence: 1_000_000 });
    const notYet = await createShipment(c, { deadlineIn: 3600, maxSilence: 1_000_000 });
    // Held by its receiver (the owner ships to itself) and delivered: never marked, though its deadline passes.
    const delivered = await createShipment(c, {
      deadlineIn: 6,
      maxSilence: 1_000_000,
      receiver: await c.owner.getAddress(),
    });
    await (await c.ledger.deliver(delivered.id)).wait();
    tower = await start();
    await oneSecondBlocks(c.node);

    const log = await waitForEvent(c, "MarkedOverdue", late.id);
    const first = await firstBlockPast(c, late.deadline, late.createdIn);
    // The tower sends when the head's timestamp reaches the deadline; its call lands in the next
    // block: the first block past the deadline, or the one after when no block had its timestamp.
    expect(log.blockNumber).to.equal(expectedBlock(first, late.deadline));
    const tx = await c.provider.getTransaction(log.transactionHash);
    expect(tx!.from).to.equal(c.towerKey.address);

    // A few more blocks past the delivered shipment's deadline: still nothing for it or the early one.
    const head = await c.provider.getBlockNumber();
    while ((await c.provider.getBlockNumber()) < head + 3) await new Promise((r) => setTimeout(r, 200));
    const marked = await c.provider.getLogs({
      address: c.fleet.addresses.custodyLedger,
      topics: [c.ledger.interface.getEvent("MarkedOverdue").topicHash],
      fromBlock: late.createdIn,
      toBlock: "latest",
    });
    expect(marked.map((l) => l.topics[1])).to.deep.equal([late.id]);
    expect((await c.ledger.shipmentOf(notYet.id)).overdue).to.equal(false);
    expect((await c.ledger.shipmentOf(delivered.id)).overdue).to.equal(false);
    const shipmentsQueued = tower.outbox.all().map((e) => (e.call as ShipmentCall | undefined)?.shipment);
    expect(shipmentsQueued).to.not.include(notYet.id);
    expect(shipmentsQueued).to.not.include(delivered.id);
  });

  it("marks a shipment silent in the first block after its allowed silence", async function () {
    const quiet = await createShipment(c, { deadlineIn: 3600, maxSilence: 7 });
    const state = await c.ledger.shipmentOf(quiet.id);
    const limit = BigInt(state.lastCheckpointAt) + BigInt(state.maxSilence);
    tower = await start();
    await oneSecondBlocks(c.node);

    const log = await waitForEvent(c, "MarkedSilent", quiet.id);
    const first = await firstBlockPast(c, limit, quiet.createdIn);
    expect(log.blockNumber).to.equal(expectedBlock(first, limit));
    expect((await c.ledger.shipmentOf(quiet.id)).overdue).to.equal(false);
  });

  it("a restart reads on from its cursor: a shipment created while the tower was down is marked", async function () {
    const dataDir = tempDir();
    const options = {
      rpcUrl: c.node.url,
      chainId: 31337,
      addresses: c.fleet.addresses,
      sender: { key: c.towerKey.privateKey },
      dataDir,
    };
    tower = await startTower(options);
    const seen = await c.provider.getBlockNumber();
    while (tower.stats().head < seen) await new Promise((r) => setTimeout(r, 100));
    await tower.stop();
    const down = await createShipment(c, { deadlineIn: 4, maxSilence: 1_000_000 });
    // fromBlock far ahead: were the cursor ignored, the shipment's block would never be read.
    tower = await startTower({ ...options, fromBlock: down.createdIn + 1_000_000 });
    await oneSecondBlocks(c.node);
    const log = await waitForEvent(c, "MarkedOverdue", down.id);
    expect((await c.provider.getTransaction(log.transactionHash))!.from).to.equal(c.towerKey.address);
  });

  it("answers a payer's unilateral close with the payee's best voucher before the challenge period ends, and with a higher one taken during the close", async function () {
    const [payer, payee] = c.fleet.devices;
    const opened = await (
      await c.channels.open(
        { payer: payer.id, payee: payee.id, token: ZeroAddress, rate: UNCAPPED, allowance: 0n, salt: 7 },
        payer.key.signer,
        parseEther("1"),
        { value: parseEther("1") },
      )
    ).wait();
    const event = opened!.logs.map((l) => c.channels.interface.parseLog(l)).find((p) => p?.name === "ChannelOpened")!;
    const terms = termsFromOpened(event.args);
    const channel = (event.args.channel as string).toLowerCase();
    const deployment = { chainId: 31337n, verifyingContract: c.fleet.addresses.paymentChannels };

    // The payee's book, as `meter serve` keeps it: three vouchers, the highest 0.3 ETH.
    const store = tempDir("custos-payee-");
    const book = MeterPayee.open({
      hasher: await TypedDataHasher.create(),
      deployment,
      verifier: new DeviceSignatureVerifier([c.fleet.addresses.p256Verifier]),
      dataDir: store,
    });
    await book.addChannel({ terms, deposit: parseEther("1"), pricePerUnit: 1n, payerKey: payer.key.signer });
    for (const amount of [parseEther("0.1"), parseEther("0.2"), parseEther("0.3")]) {
      const signature = payer.key.signDigest(digest("Voucher", deployment, { channel, cumulativeAmount: amount }));
      const r = book.accept({ channel, cumulativeAmount: amount, key: payer.key.signer, signature });
      expect(r.accepted).to.equal(true);
      if (r.accepted) await r.persisted;
    }
    await book.close();

    tower = await start([store]);
    await oneSecondBlocks(c.node);
    const close = await (await c.channels.startClose(terms)).wait();
    const closesAt = BigInt(
      close!.logs.map((l) => c.channels.interface.parseLog(l)).find((p) => p?.name === "ChannelCloseStarted")!.args
        .closesAt,
    );

    const claimedTopic = c.channels.interface.getEvent("ChannelClaimed").topicHash;
    const until = Date.now() + 30_000;
    let claims: Awaited<ReturnType<typeof c.provider.getLogs>> = [];
    while (claims.length === 0 && Date.now() < until) {
      await new Promise((r) => setTimeout(r, 200));
      claims = await c.provider.getLogs({
        address: c.fleet.addresses.paymentChannels,
        topics: [claimedTopic, channel],
        fromBlock: close!.blockNumber,
        toBlock: "latest",
      });
    }
    expect(claims, "the tower presented no voucher").to.have.length(1);
    const block = await c.provider.getBlock(claims[0].blockNumber);
    expect(BigInt(block!.timestamp)).to.be.lessThan(closesAt);
    expect((await c.provider.getTransaction(claims[0].transactionHash))!.from).to.equal(c.towerKey.address);
    // The payee is owed what its best voucher says, and credited exactly that.
    expect((await c.channels.channelState(channel)).paid).to.equal(parseEther("0.3"));
    expect(await c.channels.deviceBalance(payee.id, ZeroAddress)).to.equal(parseEther("0.3"));

    // The payee takes a higher voucher during the close (its book is written while the tower reads
    // it): the tower presents that one too, still before the period ends.
    const reopened = MeterPayee.open({
      hasher: await TypedDataHasher.create(),
      deployment,
      verifier: new DeviceSignatureVerifier([c.fleet.addresses.p256Verifier]),
      dataDir: store,
    });
    const higher = parseEther("0.45");
    const signature = payer.key.signDigest(digest("Voucher", deployment, { channel, cumulativeAmount: higher }));
    const r = reopened.accept({ channel, cumulativeAmount: higher, key: payer.key.signer, signature });
    if (!r.accepted) throw new Error(`the payee refused the voucher: ${r.reason}`);
    await r.persisted;
    const later = Date.now() + 30_000;
    while ((await c.channels.channelState(channel)).paid < higher && Date.now() < later)
      await new Promise((res) => setTimeout(res, 200));
    await reopened.close();
    expect((await c.channels.channelState(channel)).paid).to.equal(higher);
    expect(await c.channels.deviceBalance(payee.id, ZeroAddress)).to.equal(higher);
    expect(BigInt((await c.provider.getBlock("latest"))!.timestamp)).to.be.lessThan(closesAt);
  });

  it("the outbox retires a call whose effect someone else put on chain as spent, and one the chain refuses for good, without a transaction", async function () {
    const marked = await createShipment(c, { deadlineIn: 2, maxSilence: 1_000_000 });
    const delivered = await createShipment(c, {
      deadlineIn: 2,
      maxSilence: 1_000_000,
      receiver: await c.owner.getAddress(),
    });
    await (await c.ledger.deliver(delivered.id)).wait();
    // Automining: wait out the deadlines, then someone else marks the first one.
    while (BigInt((await c.provider.getBlock("latest"))!.timestamp) <= marked.deadline) {
      await new Promise((r) => setTimeout(r, 500));
      await c.node.send("evm_mine");
    }
    const other = await (await c.ledger.connect(c.admin).markOverdue(marked.id)).wait();
    const nonceBefore = await c.provider.getTransactionCount(c.towerKey.address);

    const stack = await openAgentStack({
      deployment: { chainId: 31337n, ...c.fleet.addresses },
      dataDir: tempDir(),
      rpc: c.node.url,
      payer: c.towerKey,
    });
    try {
      const a = await stack.outbox.addCall({ type: "MarkOverdue", shipment: marked.id });
      const b = await stack.outbox.addCall({ type: "MarkOverdue", shipment: delivered.id });
      await stack.dispatcher.drain();
      expect(stack.outbox.get(a.id)).to.deep.include({ outcome: "spent", txHash: other!.hash });
      expect(stack.outbox.get(b.id)!.outcome).to.equal("rejected");
      expect(stack.outbox.get(b.id)!.reason).to.match(/^refused: .*deliver/i);
    } finally {
      await stack.close();
    }
    expect(await c.provider.getTransactionCount(c.towerKey.address)).to.equal(nonceBefore);
  });

  it("sends through the relayer as forward requests signed by a key without ETH", async function () {
    const relayer = await startRelayer({
      rpc: c.node.url,
      privateKey: c.fleet.relayerWallet.privateKey,
      registry: c.fleet.addresses.registry,
      paymentChannels: c.fleet.addresses.paymentChannels,
      custodyLedger: c.fleet.addresses.custodyLedger,
      dataDir: tempDir("custos-relayer-"),
      batchIntervalMs: 50,
      pollIntervalMs: 50,
      logLevel: "silent",
    });
    try {
      const signer = Wallet.createRandom();
      const late = await createShipment(c, { deadlineIn: 6, maxSilence: 1_000_000 });
      tower = await startTower({
        rpcUrl: c.node.url,
        chainId: 31337,
        addresses: c.fleet.addresses,
        sender: { relayerUrl: relayer.url, key: signer.privateKey },
        dataDir: tempDir(),
      });
      await oneSecondBlocks(c.node);
      const log = await waitForEvent(c, "MarkedOverdue", late.id);
      const tx = await c.provider.getTransaction(log.transactionHash);
      expect(tx!.from).to.equal(c.fleet.relayerWallet.address);
      expect(tx!.to).to.equal(c.fleet.addresses.forwarder);
      expect(await c.provider.getBalance(signer.address)).to.equal(0n);
      const first = await firstBlockPast(c, late.deadline, late.createdIn);
      expect(log.blockNumber).to.be.at.least(first.number);
      const entry = tower.outbox.all().find((e) => (e.call as ShipmentCall | undefined)?.shipment === late.id)!;
      await waitFor(() => tower!.outbox.get(entry.id)!.state === "done");
      expect(tower.outbox.get(entry.id)).to.deep.include({ outcome: "confirmed", txHash: log.transactionHash });
    } finally {
      await tower?.stop();
      tower = undefined;
      await relayer.close();
    }
  });

  it("attack: a forward request recorded but never posted (relayer unreachable, or a crash) is posted as is later, never signed twice", async function () {
    const late = await createShipment(c, { deadlineIn: 2, maxSilence: 1_000_000 });
    while (BigInt((await c.provider.getBlock("latest"))!.timestamp) <= late.deadline) {
      await new Promise((r) => setTimeout(r, 500));
      await c.node.send("evm_mine");
    }
    const signer = Wallet.createRandom();
    const dataDir = tempDir();
    const stackWith = (relayerUrl: string) =>
      openAgentStack({
        deployment: { chainId: 31337n, ...c.fleet.addresses },
        dataDir,
        rpc: c.node.url,
        relayerUrl,
        forwardSigner: signer,
        holdMs: 100,
        pollMs: 100,
      });
    // The relayer cannot be reached: the request is signed and recorded, the post fails.
    const down = await stackWith("http://127.0.0.1:1");
    const entry = await down.outbox.addCall({ type: "MarkOverdue", shipment: late.id });
    const step = await down.courier.step(down.outbox.get(entry.id)!);
    expect(step.kind).to.equal("down");
    const recorded = down.outbox.get(entry.id)!.submission;
    expect(recorded?.via === "relayer" && recorded.forward?.signature).to.be.a("string");
    await down.close();

    const relayer = await startRelayer({
      rpc: c.node.url,
      privateKey: c.fleet.relayerWallet.privateKey,
      registry: c.fleet.addresses.registry,
      custodyLedger: c.fleet.addresses.custodyLedger,
      dataDir: tempDir("custos-relayer-"),
      batchIntervalMs: 50,
      pollIntervalMs: 50,
      logLevel: "silent",
    });
    const up = await stackWith(relayer.url);
    try {
      await up.dispatcher.drain();
      const done = up.outbox.get(entry.id)!;
      expect(done.outcome).to.equal("confirmed");
      // The very request recorded before: its signature is in the transaction that landed, and
      // the forwarder used one nonce of the signer's.
      expect(done.submission).to.deep.equal(recorded);
      const tx = await c.provider.getTransaction(done.txHash!);
      expect(tx!.data).to.include((recorded as { forward: { signature: string } }).forward.signature.slice(2));
      const forwarder = ERC2771Forwarder__factory.connect(c.fleet.addresses.forwarder, c.provider);
      expect(await forwarder.nonces(signer.address)).to.equal(1n);
    } finally {
      await up.close();
      await relayer.close();
    }
  });

  it("refuses the relayer without the forwarder's address, naming the field", async function () {
    let error: Error | undefined;
    try {
      const { forwarder: _forwarder, ...addresses } = c.fleet.addresses;
      await startTower({
        rpcUrl: c.node.url,
        chainId: 31337,
        addresses,
        sender: { relayerUrl: "http://127.0.0.1:1", key: c.towerKey.privateKey },
        dataDir: tempDir(),
      });
    } catch (err) {
      error = err as Error;
    }
    expect(error?.message).to.match(/^addresses\.forwarder: /);
  });
});

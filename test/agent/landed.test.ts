/**
 * Issue item 4: a message is retired as "already on chain" only if the chain has this very message
 * (its event, with its content, in a transaction carrying its signature); a nonce (or key) used by
 * another message is a refusal, named — whatever the relayer says.
 */
import { expect } from "chai";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { id as textHash } from "ethers";
import { ethers, loadFixture } from "../helpers/hardhat.js";
import { Agent } from "../../src/agent/agent.js";
import { encodeCall, type SignedDeviceMessage } from "../../src/messages/index.js";
import { agentFixture, tempDir } from "./helpers.js";

const FAST = { pollMs: 5, holdMs: 20, backoff: { baseMs: 20, capMs: 200 } };
type Fixture = Awaited<ReturnType<typeof agentFixture>>;
const fw = (label: string) => textHash(`firmware ${label}`);

function agentFor(f: Fixture, relayerUrl?: string) {
  return Agent.create({
    signer: f.keys[0],
    deployment: f.deployment,
    dataDir: tempDir(),
    rpc: ethers.provider,
    ...(relayerUrl ? { relayerUrl } : { payer: f.payer }),
    ...FAST,
  });
}

async function relayElsewhere(f: Fixture, m: SignedDeviceMessage) {
  const tx = await f.ctx.stranger.sendTransaction({ to: f.deployment.registry, data: encodeCall(m).data });
  return (await tx.wait())!.hash;
}

/** A relayer that answers every POST with `status` and `body` (e.g. 409 nonce_used). */
async function answeringRelayer(status: number, body: object): Promise<{ url: string; server: Server }> {
  const server = createServer((req, res) => {
    req.resume();
    req.on("end", () => {
      res.writeHead(req.url === "/health" ? 200 : status, { "content-type": "application/json" });
      res.end(JSON.stringify(req.url === "/health" ? { ok: true } : body));
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server };
}

describe("agent: only a message the chain really has is retired as already on chain", function () {
  it("mistake: two outboxes signed nonce 0 for different firmware; the second is refused (its nonce went to another message), never retired as on chain", async function () {
    const f = await loadFixture(agentFixture);
    const a = await agentFor(f);
    const b = await agentFor(f);
    const first = await a.sign("FirmwareAttestation", { firmwareHash: fw("a") });
    const second = await b.sign("FirmwareAttestation", { firmwareHash: fw("b") });
    expect(second.message.message.nonce).to.equal(first.message.message.nonce);
    await a.drain();
    await b.drain();
    expect(a.outbox.get(first.id)).to.deep.include({ outcome: "confirmed" });
    const e = b.outbox.get(second.id)!;
    expect(e.outcome).to.equal("rejected");
    expect(e.reason).to.match(/device nonce 0 was used by another message/);
    await a.stop();
    await b.stop();
  });

  it("a message that landed through someone else is retired as already on chain, with the transaction it landed in", async function () {
    const f = await loadFixture(agentFixture);
    const agent = await agentFor(f);
    const s = await agent.sign("FirmwareAttestation", { firmwareHash: fw("elsewhere") });
    const txHash = await relayElsewhere(f, s.message);
    await agent.drain();
    expect(agent.outbox.get(s.id)).to.deep.include({ outcome: "spent", reason: "already on chain", txHash });
    await agent.stop();
  });

  it("mistake: the relayer says nonce_used but the chain has not used the nonce: refused with the relayer's words, not retired as on chain", async function () {
    const f = await loadFixture(agentFixture);
    const { url, server } = await answeringRelayer(409, { code: "nonce_used", error: "nonce 0 is used" });
    try {
      const agent = await agentFor(f, url);
      const mine = await agent.sign("FirmwareAttestation", { firmwareHash: fw("mine") });
      await agent.drain();
      const e = agent.outbox.get(mine.id)!;
      expect(e.outcome).to.equal("rejected");
      expect(e.reason).to.include("409 nonce_used").and.include("nonce 0 is used");
      await agent.stop();
    } finally {
      server.close();
    }
  });

  it("mistake: through the relayer, the nonce went to another message (the owner's cancellation): refused, named", async function () {
    const f = await loadFixture(agentFixture);
    const other = await agentFor(f);
    const theirs = await other.sign("NonceCancellation");
    const { url, server } = await answeringRelayer(409, { code: "nonce_used", error: "nonce 0 is used" });
    try {
      const agent = await agentFor(f, url);
      const mine = await agent.sign("FirmwareAttestation", { firmwareHash: fw("mine") });
      await other.drain();
      expect(other.outbox.get(theirs.id)!.outcome).to.equal("confirmed");
      await agent.drain();
      const e = agent.outbox.get(mine.id)!;
      expect(e.outcome).to.equal("rejected");
      expect(e.reason).to.match(/device nonce 0 was used by another message/);
      await agent.stop();
    } finally {
      server.close();
      await other.stop();
    }
  });

  it("through the relayer, a message the chain has (relayed by someone else): already on chain, with its transaction", async function () {
    const f = await loadFixture(agentFixture);
    const { url, server } = await answeringRelayer(409, { code: "nonce_used", error: "nonce 0 is used" });
    try {
      const agent = await agentFor(f, url);
      const s = await agent.sign("FirmwareAttestation", { firmwareHash: fw("landed") });
      const txHash = await relayElsewhere(f, s.message);
      await agent.drain();
      expect(agent.outbox.get(s.id)).to.deep.include({ outcome: "spent", txHash });
      await agent.stop();
    } finally {
      server.close();
    }
  });
});

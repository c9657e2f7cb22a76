/**
 * `--watch URL` on the history tasks, as an operator runs them (`npx hardhat … --network localhost`)
 * against a real node and a real watch (`startWatch`) that indexed the story: the same history as
 * from the chain's logs, and an index that lies — a proxy in front of the watch that drops a
 * handoff's transaction or alters what it says — either refused by name or unable to change a line.
 * And `watch:subscribe` / `watch:subscriptions` / `watch:unsubscribe`: an owner subscribing with
 * the tasks' signer flags, its alert arriving signed at a receiver built with the receiver library.
 */
import { expect } from "chai";
import { mkdtempSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { tmpdir } from "node:os";
import path from "node:path";
import type { AddressInfo } from "node:net";
import { startWatch, type Watch } from "../../src/watch/watch.js";
import { createLogger } from "../../src/agent/log.js";
import { startNode } from "../helpers/node.js";
import { dataDir } from "../watch/backends.js";
import { deployOn, runStory, type Story, type Suite } from "../watch/story.js";
import { WebhookReceiver, type WebhookEvent } from "../../src/watch/webhooks/receiver.js";
import { hardhat } from "./hardhatCli.js";

type Rewrite = (body: Record<string, unknown>) => Record<string, unknown>;

/** A proxy in front of the watch that rewrites its `/watch/shipments/…`, `/watch/devices/…` and `/watch/channels/…` answers. */
async function lyingWatch(upstream: string, rewrite: Rewrite): Promise<{ url: string; server: Server }> {
  const server = createServer(async (req, res) => {
    const reply = await fetch(`${upstream}${req.url}`);
    let text = await reply.text();
    if (reply.ok && /^\/watch\/(shipments|devices|channels)\//.test(req.url ?? ""))
      text = JSON.stringify(rewrite(JSON.parse(text) as Record<string, unknown>));
    res.writeHead(reply.status, { "content-type": "application/json" }).end(text);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server };
}

/** A loopback receiver that answers 503 until it knows its secret (the secret comes back from the subscription). */
async function receiverAwaitingSecret() {
  const events: WebhookEvent[] = [];
  let handler:
    | ((
        req: Parameters<ReturnType<WebhookReceiver["nodeHandler"]>>[0],
        res: Parameters<ReturnType<WebhookReceiver["nodeHandler"]>>[1],
      ) => void)
    | undefined;
  const server = createServer((req, res) => (handler ? handler(req, res) : void res.writeHead(503).end()));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`,
    events,
    server,
    use: (secret: string) => (handler = new WebhookReceiver({ secret }).nodeHandler((e) => void events.push(e))),
  };
}

describe("Hardhat tasks: --watch reads history through a watch's index, re-verified against the chain; watch:subscribe", function () {
  this.timeout(600_000);
  let suite: Suite;
  let story: Story;
  let watch: Watch;
  const proxies: Server[] = [];
  const env = () => ({ CUSTOS_LOCALHOST_URL: suite.node.url });
  const history = (shipment: string, ...extra: string[]) =>
    hardhat(
      [
        "custody:history",
        "--shipment",
        shipment,
        "--ledger",
        suite.addresses.custodyLedger,
        "--json",
        ...extra,
        "--network",
        "localhost",
      ],
      env(),
    );
  const lie = async (rewrite: Rewrite) => {
    const p = await lyingWatch(watch.url, rewrite);
    proxies.push(p.server);
    return p.url;
  };

  before(async function () {
    suite = await deployOn(await startNode());
    story = await runStory(suite);
    watch = await startWatch({
      rpcUrl: suite.node.url,
      chainId: Number(suite.chainId),
      addresses: { ...suite.addresses },
      startBlock: suite.deployBlock,
      port: 0,
      dataDir: dataDir(),
      log: createLogger({ level: "silent" }),
    });
    await watch.indexer.waitForBlock(await suite.provider.getBlockNumber());
  });

  after(async function () {
    for (const p of proxies) p.close();
    await watch?.stop();
    await suite?.node.stop();
  });

  it("custody:history --watch prints the same history as from the chain's logs (a shipment, and a child with its pallet's part)", async function () {
    for (const shipment of [story.shipment, story.children[0]]) {
      const fromLogs = await history(shipment);
      expect(fromLogs.code, fromLogs.stderr).to.equal(0);
      const fromWatch = await history(shipment, "--watch", watch.url);
      expect(fromWatch.code, fromWatch.stderr).to.equal(0);
      expect(JSON.parse(fromWatch.stdout)).to.deep.equal(JSON.parse(fromLogs.stdout));
      expect(JSON.parse(fromWatch.stdout).entries.length).to.be.greaterThan(1);
    }
    const kinds = JSON.parse((await history(story.shipment, "--watch", watch.url)).stdout).entries.map(
      (e: { kind: string }) => e.kind,
    );
    expect(kinds).to.include.members(["created", "handoff", "checkpoint", "delivered"]);
  });

  it("custody:epcis --watch writes the same EPCIS document as from the chain's logs", async function () {
    const args = ["custody:epcis", "--shipment", story.shipment, "--ledger", suite.addresses.custodyLedger];
    const fromLogs = await hardhat([...args, "--network", "localhost"], env());
    const fromWatch = await hardhat([...args, "--watch", watch.url, "--network", "localhost"], env());
    expect(fromLogs.code, fromLogs.stderr).to.equal(0);
    expect(fromWatch.code, fromWatch.stderr).to.equal(0);
    // The document is dated when it is written; everything else must match.
    const undated = (text: string) => ({ ...JSON.parse(text), creationDate: undefined });
    expect(undated(fromWatch.stdout)).to.deep.equal(undated(fromLogs.stdout));
  });

  it("attack: a lying index drops a handoff's transaction — the task fails naming the watch, never prints a shorter history", async function () {
    const url = await lie((body) => ({ ...body, handoffs: (body.handoffs as unknown[]).slice(0, -1) }));
    const run = await history(story.shipment, "--watch", url);
    expect(run.code).to.equal(1);
    expect(run.stdout).to.equal("");
    expect(run.stderr)
      .to.include(`the watch at ${url}`)
      .and.to.match(/handoffs: \d+ of \d+/);
  });

  it("attack: a lying index points a handoff at another transaction — refused the same way", async function () {
    const url = await lie((body) => {
      const [first, ...rest] = body.handoffs as { txHash: string }[];
      const other = (body.checkpoints as { txHash: string }[])[0];
      return { ...body, handoffs: [{ ...first, txHash: other.txHash }, ...rest] };
    });
    const run = await history(story.shipment, "--watch", url);
    expect(run.code).to.equal(1);
    expect(run.stderr).to.include(`the watch at ${url}`).and.to.include("handoffs");
  });

  it("attack: a lying index alters a handoff's fields and the shipment's marks — nothing it says reaches the output", async function () {
    const fromLogs = JSON.parse((await history(story.shipment)).stdout);
    const url = await lie((body) => ({
      ...body,
      shipment: { ...(body.shipment as object), delivered: false, breached: false, epc: "urn:epc:id:sscc:0.0" },
      handoffs: (body.handoffs as Record<string, unknown>[]).map((h) => ({
        ...h,
        from: "0x000000000000000000000000000000000000dead",
        bizStep: "lies",
      })),
    }));
    const run = await history(story.shipment, "--watch", url);
    expect(run.code, run.stderr).to.equal(0);
    expect(JSON.parse(run.stdout)).to.deep.equal(fromLogs);
  });

  it("attack: a lying index says the shipment does not exist — the task fails naming the watch", async function () {
    const url = await lie(() => {
      throw new Error("unused");
    });
    const proxy = proxies.at(-1)!;
    proxy.removeAllListeners("request");
    proxy.on("request", (_req, res) => res.writeHead(404, { "content-type": "application/json" }).end("{}"));
    const run = await history(story.shipment, "--watch", url);
    expect(run.code).to.equal(1);
    expect(run.stderr).to.include(`the watch at ${url} does not know shipment`);
  });

  const status = (device: bigint, ...extra: string[]) =>
    hardhat(
      [
        "registry:status",
        "--device",
        device.toString(),
        "--registry",
        suite.addresses.registry,
        ...extra,
        "--network",
        "localhost",
      ],
      env(),
    );
  interface Entry {
    kind: string;
    event: string;
    confirmed: boolean;
    mismatch?: string;
  }

  it("registry:status --watch adds the device's status changes and keys, each confirmed against its receipt", async function () {
    const plain = await status(story.devices.stolen);
    const watched = await status(story.devices.stolen, "--watch", watch.url);
    expect(watched.code, watched.stderr).to.equal(0);
    const { history, ...rest } = JSON.parse(watched.stdout) as { history: { entries: Entry[]; allConfirmed: boolean } };
    expect(rest).to.deep.equal(JSON.parse(plain.stdout));
    expect(history.allConfirmed).to.equal(true);
    expect(history.entries.every((e) => e.confirmed)).to.equal(true);
    expect(history.entries.map((e) => e.event)).to.include.members(["DeviceClaimed", "ReportedStolen", "Released"]);
    expect(history.entries.some((e) => e.kind === "key")).to.equal(true);
  });

  it("attack: a lying index turns a release into a revocation — the entry is flagged as a mismatch and the task exits 1 naming the watch", async function () {
    const url = await lie((body) => ({
      ...body,
      statusHistory: (body.statusHistory as { cause: string; status: string }[]).map((s) =>
        s.cause === "Released" ? { ...s, cause: "DeviceRevoked", status: "revoked" } : s,
      ),
    }));
    const run = await status(story.devices.stolen, "--watch", url);
    expect(run.code).to.equal(1);
    expect(run.stderr).to.include(`the watch at ${url} disagrees with the chain`);
    const entries = (JSON.parse(run.stdout) as { history: { entries: Entry[] } }).history.entries;
    const forged = entries.find((e) => e.event === "DeviceRevoked")!;
    expect(forged.confirmed).to.equal(false);
    expect(forged.mismatch).to.include("Released, not DeviceRevoked");
  });

  it("attack: a lying index hides the device's keys — flagged against the registry's key generation", async function () {
    const url = await lie((body) => ({ ...body, keys: [] }));
    const run = await status(story.devices.stolen, "--watch", url);
    expect(run.code).to.equal(1);
    expect(run.stderr).to.include(`the watch at ${url} disagrees with the chain`).and.to.include("latest key");
  });

  it("beacons:open --watch opens the same beacons as from the chain's logs; attack: a lying index that hides one is refused naming the watch", async function () {
    const keyFile = path.join(mkdtempSync(path.join(tmpdir(), "custos-beacon-key-")), "owner-beacon.json");
    writeFileSync(keyFile, JSON.stringify(story.beaconKeys.owner));
    const open = (...extra: string[]) =>
      hardhat(
        [
          "beacons:open",
          "--device",
          story.devices.stolen.toString(),
          "--key-file",
          keyFile,
          "--beacons",
          suite.addresses.locationBeacons,
          ...extra,
          "--network",
          "localhost",
        ],
        env(),
      );
    const fromLogs = await open();
    expect(fromLogs.code, fromLogs.stderr).to.equal(0);
    expect((JSON.parse(fromLogs.stdout) as { beacons: unknown[] }).beacons).to.have.length.greaterThan(0);
    const fromWatch = await open("--watch", watch.url);
    expect(fromWatch.code, fromWatch.stderr).to.equal(0);
    expect(JSON.parse(fromWatch.stdout)).to.deep.equal(JSON.parse(fromLogs.stdout));
    const url = await lie((body) => ({ ...body, locationBeacons: [] }));
    const hidden = await open("--watch", url);
    expect(hidden.code).to.equal(1);
    expect(hidden.stderr).to.include(`--watch: the watch at ${url} left out beacons the chain has`);
  });

  it("channel:top-up --watch finds the channel's terms through the index; attack: a lying index that hides or swaps its opening is refused before anything is sent", async function () {
    const payerOwner = await suite.registry.ownerOf(story.devices.payer);
    const chan = ["--channels", suite.addresses.paymentChannels, "--signer", payerOwner];
    const opened = await hardhat(
      [
        "channel:open",
        "--payer",
        story.devices.payer.toString(),
        "--payee",
        story.devices.payee.toString(),
        "--payer-key",
        story.keys.payer.signer,
        "--amount",
        "1000",
        "--salt",
        "7",
        ...chan,
        "--network",
        "localhost",
      ],
      env(),
    );
    expect(opened.code, opened.stderr).to.equal(0);
    const channel = (JSON.parse(opened.stdout) as { channel: string }).channel;
    await watch.indexer.waitForBlock(await suite.provider.getBlockNumber());
    const topUp = (url: string) =>
      hardhat(
        ["channel:top-up", "--channel", channel, "--amount", "5", "--watch", url, ...chan, "--network", "localhost"],
        env(),
      );
    const honest = await topUp(watch.url);
    expect(honest.code, honest.stderr).to.equal(0);
    expect((await suite.channels.channelState(channel)).deposit).to.equal(1005n);

    const hiding = await lie((body) => ({ ...body, events: [] }));
    const hidden = await topUp(hiding);
    expect(hidden.code).to.equal(1);
    expect(hidden.stderr).to.include(
      `--watch: the watch at ${hiding} lists no transaction that opened channel ${channel}`,
    );
    const other = (await (await fetch(`${watch.url}/watch/channels/${story.channel}`)).json()) as { events: unknown[] };
    const swapping = await lie((body) => ({ ...body, events: other.events }));
    const swapped = await topUp(swapping);
    expect(swapped.code).to.equal(1);
    expect(swapped.stderr).to.include(`the watch at ${swapping} lists no transaction that opened channel ${channel}`);
    expect((await suite.channels.channelState(channel)).deposit).to.equal(1005n);
  });

  it("watch:subscribe as the device's owner (--signer): id and secret printed once, the alert arrives signed; watch:subscriptions lists it; watch:unsubscribe ends it", async function () {
    const owner = await suite.owner.getAddress();
    const receiver = await receiverAwaitingSecret();
    proxies.push(receiver.server);
    const watchArgs = ["--watch", watch.url, "--signer", owner, "--registry", suite.addresses.registry];
    const sub = await hardhat(
      [
        "watch:subscribe",
        ...watchArgs,
        "--scope",
        "device",
        "--target",
        story.devices.stolen.toString(),
        "--url",
        receiver.url,
        "--events",
        "device.quarantined,device.released",
        "--network",
        "localhost",
      ],
      env(),
    );
    expect(sub.code, sub.stderr).to.equal(0);
    const printed = JSON.parse(sub.stdout) as { id: string; secret: string; note: string; owner: string };
    expect(printed.id).to.match(/^0x[0-9a-f]{64}$/);
    expect(printed.secret).to.match(/^whsec_/);
    expect(printed.note).to.include("shown once");
    receiver.use(printed.secret);

    const stolen = await hardhat(
      [
        "registry:report-stolen",
        "--device",
        story.devices.stolen.toString(),
        "--signer",
        owner,
        "--registry",
        suite.addresses.registry,
        "--network",
        "localhost",
      ],
      env(),
    );
    expect(stolen.code, stolen.stderr).to.equal(0);
    const deadline = Date.now() + 60_000;
    while (!receiver.events.some((e) => e.type === "device.quarantined") && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 100));
    const alert = receiver.events.find((e) => e.type === "device.quarantined");
    expect(alert, "the quarantine alert reached the receiver (its signature checked by WebhookReceiver)").to.not.equal(
      undefined,
    );
    expect(alert!.data.subscription).to.equal(printed.id);
    expect(new Set(receiver.events.map((e) => e.id)).size).to.equal(receiver.events.length);

    const list = await hardhat(["watch:subscriptions", ...watchArgs.slice(0, 4), "--network", "localhost"], env());
    expect(list.code, list.stderr).to.equal(0);
    const listed = JSON.parse(list.stdout) as { subscriptions: { id: string }[] };
    expect(listed.subscriptions.map((s) => s.id)).to.include(printed.id);
    expect(list.stdout).to.not.include(printed.secret);

    const un = await hardhat(["watch:unsubscribe", ...watchArgs, "--id", printed.id, "--network", "localhost"], env());
    expect(un.code, un.stderr).to.equal(0);
    expect(JSON.parse(un.stdout)).to.deep.include({ id: printed.id, active: false });
  });

  it("attack: watch:subscribe signed by a stranger for someone else's device is refused by the watch, by name", async function () {
    const stranger = await (await suite.provider.getSigner(8)).getAddress();
    const run = await hardhat(
      [
        "watch:subscribe",
        "--watch",
        watch.url,
        "--signer",
        stranger,
        "--registry",
        suite.addresses.registry,
        "--scope",
        "device",
        "--target",
        story.devices.stolen.toString(),
        "--url",
        "http://127.0.0.1:9/hook",
        "--network",
        "localhost",
      ],
      env(),
    );
    expect(run.code).to.equal(1);
    expect(run.stderr).to.include(`the watch at ${watch.url} refused the subscription (403 not_owner)`);
  });

  it("watch:subscribe with a bad --scope, --events or --target fails naming the flag", async function () {
    const base = [
      "watch:subscribe",
      "--watch",
      watch.url,
      "--url",
      "http://127.0.0.1:9/hook",
      "--network",
      "localhost",
    ];
    const scope = await hardhat([...base, "--scope", "fleet", "--target", "1"], env());
    expect(scope.code).to.equal(1);
    expect(scope.stderr).to.include("--scope: fleet is not one of owner, device, lock, shipment, channel");
    const events = await hardhat([...base, "--scope", "device", "--target", "1", "--events", "device.exploded"], env());
    expect(events.code).to.equal(1);
    expect(events.stderr).to.include("--events: device.exploded");
    const target = await hardhat([...base, "--scope", "shipment", "--target", "42"], env());
    expect(target.code).to.equal(1);
    expect(target.stderr).to.include("--target: 42 is not a shipment id");
  });

  it("--watch that is not a URL, or not reachable, fails naming the flag", async function () {
    const bad = await history(story.shipment, "--watch", "not a url");
    expect(bad.code).to.equal(1);
    expect(bad.stderr).to.include("--watch: not a url is not a URL");
    const down = await history(story.shipment, "--watch", "http://127.0.0.1:9");
    expect(down.code).to.equal(1);
    expect(down.stderr).to.include("--watch: the watch at http://127.0.0.1:9 did not answer");
  });
});

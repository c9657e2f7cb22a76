/**
 * The demo's watch and guardians (issues 15 and 17): the watch (Ponder index, signed webhooks) runs
 * beside the story from the start, reading the chain over JSON-RPC — the in-process network through
 * `serveProvider`, or the node's own URL (anvil). At the end a lock stolen from its wall keeps
 * asking to open at night far from home; it reports each attempt, signed, to three guardians
 * (quorum two), whose geofence rule fires; they quarantine it; it posts a sealed location beacon;
 * the watch pushes both to the owner's webhook receiver; the owner and the police open the beacon,
 * a stranger cannot.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { writeFileSync } from "node:fs";
import path from "node:path";
import { keccak256, toUtf8Bytes, type Signer } from "ethers";
import { serveProvider, type Eip1193 } from "../rpcBridge.js";
import { startWatch, type Watch } from "../../src/watch/watch.js";
import { subscribe } from "../../src/watch/webhooks/subscriber.js";
import { WebhookReceiver, type WebhookEvent } from "../../src/watch/webhooks/receiver.js";
import { startGuardian, type GuardianHandle } from "../../src/guardian/service/index.js";
import { DEFAULT_POLICY, type Policy } from "../../src/guardian/policy/index.js";
import { generateBeaconKey, openLocation, type BeaconKeyPair } from "../../src/beacons/index.js";
import { signLocationBeacon } from "../../src/agent/roles/beacon.js";
import { signPositionReport, sendToGuardians, type Position } from "../../src/agent/roles/positionReport.js";
import { secp256k1Key } from "../../src/crypto/deviceKey.js";
import { silentLogger } from "../../src/agent/log.js";
import type { Agent } from "../../src/agent/agent.js";
import type { TypedDataHasher } from "../../src/eip712/fast.js";
import type { SuiteAddresses } from "../../src/deploy/suite.js";
import type { LockService } from "../../src/agent/roles/lockServer.js";
import {
  DeviceRegistry__factory,
  GuardianQuorum__factory,
  LocationBeacons__factory,
} from "../../typechain-types/index.js";

type Record = (step: string, outcome: string, expected: string, gas?: bigint | number | string) => void;
type Say = (line: string) => void;

/** The owner's home, where the lock was installed, and where the thief took it (~240 km away). */
const HOME: Position = { latitudeE7: 473_700_000, longitudeE7: 85_400_000 };
const AWAY: Position = { latitudeE7: 481_374_000, longitudeE7: 115_755_000 };
const deg = (p: Position) => `${(p.latitudeE7 / 1e7).toFixed(4)}, ${(p.longitudeE7 / 1e7).toFixed(4)}`;

export interface DemoWatch {
  rpcUrl: string;
  /** Resolves when the index has caught up (Ponder takes a few seconds to start). */
  ready: Promise<Watch>;
  stop(): Promise<void>;
}

/**
 * Starts the watch against the demo's chain: `nodeUrl` when the demo runs against a node of its
 * own, else the in-process network served on a loopback port.
 */
export async function startDemoWatch(o: {
  provider: Eip1193;
  nodeUrl?: string;
  chainId: bigint;
  suite: SuiteAddresses;
  dataDir: string;
}): Promise<DemoWatch> {
  const bridge = o.nodeUrl ? undefined : await serveProvider(o.provider);
  const rpcUrl = o.nodeUrl ?? bridge!.url;
  const ready = startWatch({
    rpcUrl,
    chainId: Number(o.chainId),
    addresses: o.suite,
    port: 0,
    dataDir: o.dataDir,
    pollingInterval: 200,
    log: silentLogger,
  });
  ready.catch(() => undefined); // awaited (and reported) where the story needs the watch
  return {
    rpcUrl,
    ready,
    async stop() {
      await (await ready.catch(() => undefined))?.stop();
      await bridge?.stop();
    },
  };
}

/** Polls `check` every `ms` until it returns a value (or `timeoutMs` passes: undefined); `nudge` runs between polls. */
async function until<T>(check: () => Promise<T | undefined>, timeoutMs: number, nudge?: () => Promise<void>) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined) return v;
    if (Date.now() > end) return undefined;
    await nudge?.();
    await new Promise((r) => setTimeout(r, 250));
  }
}

export interface StolenLockStory {
  watch: DemoWatch;
  suite: SuiteAddresses;
  chainId: bigint;
  dir: string;
  /** Funds the guardians and makes blocks. */
  admin: Signer;
  /** The lock's owner now (it bought the lock in step 2). */
  owner: Signer;
  guardianKeys: string[];
  lockId: bigint;
  lockAgent: Agent;
  lockService: LockService;
  hasher: TypedDataHasher;
  /** A thief's try to open the lock: the lock's decision ("refused (…)" or "opened"). */
  tryToOpen: () => Promise<string>;
  /** The chain's time now, and moving it on. */
  chainTime: () => Promise<number>;
  increaseTo: (t: number) => Promise<void>;
  record: Record;
  say: Say;
}

export async function stolenLockStory(s: StolenLockStory): Promise<void> {
  const { record, say } = s;
  const owner = await s.owner.getAddress();
  const provider = s.owner.provider!;
  const registry = DeviceRegistry__factory.connect(s.suite.registry, provider);
  const beacons = LocationBeacons__factory.connect(s.suite.locationBeacons, s.owner);
  const quorum = GuardianQuorum__factory.connect(s.suite.guardianQuorum, provider);
  const block = async () => {
    // A block for the index to reach (the demo's nodes mine one per transaction).
    await (await s.admin.sendTransaction({ to: await s.admin.getAddress(), value: 0n })).wait();
  };

  // ------------------------------------------------------------------ 7. the watch
  say("\n7. The watch indexes the chain and pushes signed alerts to the lock's owner.");
  const t0 = Date.now();
  const watch = await s.watch.ready;
  // Ready means the backfill is done; live sync then follows the head block by block.
  const head = await provider.getBlockNumber();
  const status = await until(async () => {
    const st = await watch.indexer.client.status();
    return st.indexedBlock >= BigInt(head) ? st : undefined;
  }, 60_000);
  record(
    "the watch (Ponder index, webhooks) reads the chain over JSON-RPC",
    status ? "indexed" : "behind the chain",
    "indexed",
  );
  say(
    `   ${watch.url}: block ${status?.indexedBlock ?? "?"} of ${head} indexed (${((Date.now() - t0) / 1000).toFixed(1)} s after the story needed it)`,
  );
  const ownerKey: BeaconKeyPair = await generateBeaconKey();
  const police: BeaconKeyPair = await generateBeaconKey();
  let gas = (await (await beacons.setBeaconKey(ownerKey.publicKey)).wait())!.gasUsed;
  gas += (await (await beacons.addResponder(police.publicKey)).wait())!.gasUsed;
  record("the owner registers its beacon key and the police's as a responder", "registered", "registered", gas);

  const events: WebhookEvent[] = [];
  let receiver: WebhookReceiver | undefined;
  const server: Server = createServer((req, res) => {
    if (!receiver) return void res.writeHead(503).end();
    receiver.nodeHandler((e) => {
      events.push(e);
    })(req, res);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const hookUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/custos`;
  const guardians: GuardianHandle[] = [];
  try {
    const subscribed = await subscribe(
      watch.url,
      s.owner,
      { chainId: s.chainId, verifyingContract: s.suite.registry },
      {
        owner,
        scope: "device", // the lock is a device: its quarantine and its beacons are device alerts
        target: s.lockId.toString(),
        url: hookUrl,
        events: ["device.quarantined", "device.location_beacon"],
        nonce: "1",
        deadline: String((await s.chainTime()) + 3600),
      },
    );
    receiver = new WebhookReceiver({ secret: subscribed.secret });
    record("the owner subscribes with its wallet (EIP-712) to its lock's alerts", "subscribed", "subscribed", 0);
    say(
      `   subscription ${subscribed.id.slice(0, 12)}… → ${hookUrl} (a local receiver, the project's receiver library)`,
    );

    // ---------------------------------------------------------------- 8. the stolen lock
    say("\n8. The lock is stolen from its wall; at night, far from home, the thief keeps trying to open it.");
    const policy: Policy = structuredClone(DEFAULT_POLICY);
    for (const rule of Object.values(policy.rules)) rule.enabled = false;
    policy.name = "demo-home";
    policy.rules.geofence = { enabled: true, consecutiveOutside: 3, toleranceMeters: 250 };
    policy.scopes = [
      {
        name: "home",
        match: { fleet: owner.toLowerCase() },
        geofence: { circle: { center: HOME, radiusMeters: 500 } },
      },
    ];
    const policyFile = path.join(s.dir, "policy.json");
    writeFileSync(policyFile, JSON.stringify(policy, null, 2));
    for (const [i, key] of s.guardianKeys.entries())
      guardians.push(
        await startGuardian({
          rpcUrl: s.watch.rpcUrl,
          chainId: s.chainId,
          watchUrl: watch.url,
          addresses: { registry: s.suite.registry, guardianQuorum: s.suite.guardianQuorum },
          key,
          policyFile,
          dataDir: path.join(s.dir, `guardian-${i + 1}`),
          port: 0,
          owners: [owner],
          p256Verifiers: [s.suite.p256Verifier],
        }),
      );
    say(`   three guardians (quorum two), policy "${policy.name}": the owner's locks stay within 500 m of home`);
    // 02:00 UTC on the chain's next night.
    const now = await s.chainTime();
    await s.increaseTo(now - (now % 86_400) + 86_400 + 2 * 3600);
    const decisions: string[] = [];
    const reasons = new Set<string>();
    const accepted: number[] = [];
    const guardianUrls = guardians.map((g) => g.url!);
    for (let i = 0; i < 3; i++) {
      const decision = await s.tryToOpen();
      decisions.push(decision.startsWith("refused") ? "refused" : decision);
      reasons.add(decision);
      const book = s.lockService.book;
      const last = book.proof(book.size - 1)!;
      const report = await signPositionReport(
        s.lockAgent.signer,
        s.hasher,
        { chainId: s.chainId, registry: s.suite.registry },
        { device: s.lockId, seq: last.record.index, at: await s.chainTime(), record: last.leaf, ...AWAY },
      );
      accepted.push((await sendToGuardians(guardianUrls, report)).filter((a) => a.accepted).length);
    }
    record("three tries to open at 02:00, 240 km from home", [...new Set(decisions)].join(", "), "refused");
    say(
      `   the lock: ${[...reasons].join(", ")}; each try is in the lock's log; the lock reports it, signed, with its position (${deg(AWAY)})`,
    );
    record(
      "the lock reports each try to the three guardians (signed by its key)",
      accepted.every((n) => n === 3) ? "3 × 3 accepted" : `accepted ${accepted.join(", ")}`,
      "3 × 3 accepted",
    );
    const thief = secp256k1Key(keccak256(toUtf8Bytes("the thief's key")));
    const forged = await signPositionReport(
      thief,
      s.hasher,
      { chainId: s.chainId, registry: s.suite.registry },
      { device: s.lockId, seq: 1_000, at: await s.chainTime(), record: keccak256(toUtf8Bytes("made up")), ...HOME },
    );
    const forgedAnswers = await sendToGuardians(guardianUrls, forged);
    record(
      'a report forged by the thief ("the lock is home", its own key)',
      forgedAnswers.every((a) => !a.accepted) ? "refused" : "accepted",
      "refused",
    );
    say(`   guardian: ${forgedAnswers[0].reason}`);

    const flaggedAt = Date.now();
    const flagged = await until(
      async () => ((await registry.deviceInfo(s.lockId)).guardianFlagged ? true : undefined),
      60_000,
      block,
    );
    const votes = await quorum.queryFilter(quorum.filters.GuardianVoted(s.lockId));
    record(
      "the guardians' geofence rule fires; two of three vote: quarantined",
      flagged ? "quarantined" : "not quarantined",
      "quarantined",
      votes[0] ? (await votes[0].getTransactionReceipt()).gasUsed : "",
    );
    for (const v of votes) {
      const g = guardians.find((h) => h.address === v.args.guardian);
      say(
        `   guardian ${v.args.guardian.slice(0, 10)}… voted flag, reason ${v.args.reason.slice(0, 12)}… (evidence at ${g?.url}/evidence/${v.args.reason.slice(0, 8)}…)`,
      );
    }
    say(`   quarantined ${((Date.now() - flaggedAt) / 1000).toFixed(1)} s after the last report`);
    const evidence = votes[0]
      ? await fetch(
          `${guardians.find((h) => h.address === votes[0].args.guardian)!.url}/evidence/${votes[0].args.reason}`,
        )
      : undefined;
    const body = evidence?.ok ? await evidence.text() : "";
    record(
      "its evidence, served by the guardian, hashes to the reason on chain",
      body && keccak256(toUtf8Bytes(body)) === votes[0].args.reason ? "matches" : "does not match",
      "matches",
    );

    // ---------------------------------------------------------------- 9. the sealed beacon
    say("\n9. The quarantined lock posts where it is, sealed to its owner and the police.");
    const at = BigInt(await s.chainTime());
    await signLocationBeacon(s.lockAgent, AWAY, { at });
    await s.lockAgent.drain();
    const posted = (await beacons.queryFilter(beacons.filters.LocationBeaconPosted(s.lockId))).at(-1);
    const beaconGas = posted ? (await posted.getTransactionReceipt()).gasUsed : "";
    record("the lock posts a sealed location beacon", posted ? "posted" : "not posted", "posted", beaconGas);
    const wanted = ["device.quarantined", "device.location_beacon"];
    const arrived = await until(
      async () => (wanted.every((k) => events.some((e) => e.type === k)) ? true : undefined),
      30_000,
      block,
    );
    if (!arrived) {
      const d = await fetch(`${watch.url}/deliveries?subscription=${subscribed.id}`).then((r) => r.text());
      say(`   deliveries: ${d.slice(0, 600)}`);
      say(
        `   index: ${JSON.stringify(await watch.indexer.client.status(), (_k, v: unknown) => (typeof v === "bigint" ? v.toString() : v))}`,
      );
    }
    for (const e of events) {
      const alert = (e.data as { alert?: { kind: string; blockNumber: string; subjects: { device?: string } } }).alert;
      say(
        `   webhook ${e.id}: ${e.type}, lock ${alert?.subjects.device}, block ${alert?.blockNumber} (signature verified)`,
      );
    }
    record(
      "the owner's receiver gets both alerts, signatures verified",
      arrived ? "received" : `received ${events.map((e) => e.type).join(", ") || "nothing"}`,
      "received",
    );
    const open = async (key: BeaconKeyPair) => {
      if (!posted) return "no beacon";
      try {
        // By position: `at` is also the name of a method of ethers' Result.
        const [device, , , at, recipients, ciphertext] = posted.args as unknown as [
          bigint,
          unknown,
          unknown,
          bigint,
          string,
          string,
        ];
        const p = await openLocation(
          ciphertext,
          recipients,
          { chainId: s.chainId, contract: s.suite.locationBeacons, device, at },
          key.privateKey,
        );
        return `read ${deg(p)}`;
      } catch {
        return "refused";
      }
    };
    record("the owner opens the beacon with its key", await open(ownerKey), `read ${deg(AWAY)}`);
    record("the police (a registered responder) open it", await open(police), `read ${deg(AWAY)}`);
    record("a stranger's beacon key", await open(await generateBeaconKey()), "refused");
  } finally {
    for (const g of guardians) await g.stop();
    await new Promise<void>((r) => {
      server.closeAllConnections();
      server.close(() => r());
    });
  }
}

/**
 * CRASH: the dispatcher in a process of its own (`dispatcherProcess.ts`) is killed with SIGKILL 20
 * times while a burst of 1,000 alerts arrives, and restarted each time on the same data
 * directory. The alerts come from a feed this test serves over HTTP, in 20 slices (one per run);
 * four subscribers' receivers (real HTTP servers built with the receiver library) record every
 * request. Kills are aimed by a seeded schedule (`CUSTOS_CRASH_SEED` replays one) at three kinds
 * of moment: a receiver holding a delivery it got but has not answered (the dispatcher cannot know
 * it arrived: it must repeat it, with the same id), the feed answering a poll (deliveries being
 * queued), and a random time after start.
 *
 * Then: every one of the 1,000 deliveries arrived (0 lost), every repeat carried the id (and the
 * bytes) of the first, the library handed each to its handler once, each subscriber saw its alerts
 * in feed order, and the log marks all 1,000 delivered.
 */
import { expect } from "chai";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { Wallet } from "ethers";
import { crashSeed } from "../helpers/crashSeed.js";
import { deliveryIdOf } from "../../src/watch/webhooks/delivery.js";
import { DeliveryStore } from "../../src/watch/webhooks/deliveries.js";
import { SubscriptionStore } from "../../src/watch/webhooks/subscriptions.js";
import type { Alert } from "../../src/watch/alerts.js";
import type { Subscription } from "../../src/watch/webhooks/subscription.js";
import { makeAlert, MemoryFeed, serveFeed, startReceiver, subscriptionFor, type Received } from "./webhookHelpers.js";

const ALERTS = 1000;
const KILLS = 20;
const SUBSCRIBERS = 4;
const ENTRY = path.join(import.meta.dirname, "dispatcherProcess.ts");

const running = new Set<ChildProcess>();
const killGroup = (c: ChildProcess, signal: NodeJS.Signals = "SIGKILL") => {
  try {
    if (c.pid) process.kill(-c.pid, signal);
  } catch {
    // already gone
  }
};
process.on("exit", () => running.forEach((c) => killGroup(c)));

interface Run {
  child: ChildProcess;
  exited: Promise<string>;
  stderr: () => string;
}

function spawnDispatcher(env: Record<string, string>): Run {
  const child = spawn(process.execPath, ["--import", import.meta.resolve("tsx"), ENTRY], {
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, ...env },
  });
  running.add(child);
  let err = "";
  child.stderr!.on("data", (c: Buffer) => (err += c.toString()));
  child.stdout!.on("data", () => {});
  const exited = new Promise<string>((resolve) =>
    child.on("exit", (code, signal) => {
      running.delete(child);
      resolve(signal ?? String(code));
    }),
  );
  return { child, exited, stderr: () => err };
}

describe("watch webhooks: crash safety", function () {
  this.timeout(300_000);

  it(`CRASH: the dispatcher SIGKILLed ${KILLS} times during a burst of ${ALERTS} alerts — 0 lost, a repeat only with the same delivery id`, async function () {
    const { seed, random } = crashSeed();
    const dataDir = mkdtempSync(path.join(tmpdir(), "custos-webhook-crash-"));
    const owners = Array.from({ length: SUBSCRIBERS }, () => Wallet.createRandom().address);

    // What a kill is waiting for: called by a receiver (before it answers) or by the feed (before it answers).
    let trigger: { on: "delivery" | "poll"; left: number; fire: () => void } | null = null;
    const step = (on: "delivery" | "poll") => {
      if (trigger?.on === on && --trigger.left === 0) {
        const t = trigger;
        trigger = null;
        t.fire();
      }
    };
    const hold = async (_r: Received) => step("delivery");

    const receivers: (Awaited<ReturnType<typeof startReceiver>> & { sub: Subscription })[] = [];
    const store = SubscriptionStore.open(dataDir);
    for (const owner of owners) {
      const sub = subscriptionFor({ owner, url: "http://127.0.0.1:1/" });
      const r = await startReceiver(sub.secret, { hold });
      await store.add({ ...sub, url: r.url }, "1");
      receivers.push({ sub: { ...sub, url: r.url }, ...r });
    }
    await store.close();

    const feed = new MemoryFeed();
    const served = await serveFeed(feed, () => step("poll"));
    const all: Alert[] = Array.from({ length: ALERTS }, (_, i) =>
      makeAlert({ block: 1 + Math.floor(i / 10), owner: owners[i % SUBSCRIBERS], logIndex: i % 10 }),
    );
    const env = { CUSTOS_DATA_DIR: dataDir, CUSTOS_FEED_URL: served.url };
    const kinds: string[] = [];
    const started = Date.now();
    try {
      for (let k = 0; k < KILLS; k++) {
        // The burst arrives in slices while the dispatcher is being killed.
        feed.push(...all.slice((k * ALERTS) / KILLS, ((k + 1) * ALERTS) / KILLS));
        const run = spawnDispatcher(env);
        const kill = () => killGroup(run.child);
        const roll = random();
        if (roll < 0.55) {
          trigger = { on: "delivery", left: 1 + Math.floor(random() * 60), fire: kill };
          kinds.push("delivery");
        } else if (roll < 0.8) {
          trigger = { on: "poll", left: 1 + Math.floor(random() * 3), fire: kill };
          kinds.push("poll");
        } else {
          // A random moment from start-up (opening the logs, replaying) to well into the run.
          setTimeout(kill, 50 + random() * 1500);
          kinds.push("time");
        }
        // A trigger that does not come (nothing left to deliver) falls back to a timed kill.
        const fallback = setTimeout(kill, 8000);
        const how = await run.exited;
        clearTimeout(fallback);
        trigger = null;
        expect(how, run.stderr()).to.equal("SIGKILL");
      }
      // The last run: let it finish, then stop it cleanly.
      const last = spawnDispatcher(env);
      const expected = new Set(
        receivers.flatMap((r) =>
          all.filter((a) => a.subjects.owners[0] === r.sub.owner.toLowerCase()).map((a) => deliveryIdOf(r.sub.id, a)),
        ),
      );
      const received = () => new Set(receivers.flatMap((r) => r.events.map((e) => e.id)));
      const deadline = Date.now() + 120_000;
      while (received().size < expected.size && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      await new Promise((r) => setTimeout(r, 300)); // its last answers recorded
      killGroup(last.child, "SIGTERM");
      expect(await last.exited, last.stderr()).to.equal("0");
      const seconds = (Date.now() - started) / 1000;

      // 0 lost: every delivery arrived, and nothing else did.
      expect(received().size, "deliveries received").to.equal(expected.size);
      expect([...received()].every((id) => expected.has(id))).to.equal(true);
      const requests = receivers.flatMap((r) => r.requests);
      // Every request was genuine (the library verified it).
      expect(requests.filter((q) => q.status !== 200).map((q) => q.status)).to.deep.equal([]);
      let repeats = 0;
      for (const r of receivers) {
        // A repeat only with the same id and the same bytes: per alert, one id and one body.
        const byAlert = new Map<string, Set<string>>();
        for (const q of r.requests) {
          const alert = q.event!.data.alert.id;
          byAlert.set(alert, (byAlert.get(alert) ?? new Set()).add(`${q.headers["webhook-id"]} ${q.raw}`));
        }
        for (const [alert, variants] of byAlert) expect(variants.size, `alert ${alert}`).to.equal(1);
        repeats += r.requests.filter((q) => q.duplicate).length;
        // The library handed each delivery to the handler once, in the order of the feed.
        const mine = all.filter((a) => a.subjects.owners[0] === r.sub.owner.toLowerCase()).map((a) => a.id);
        expect(r.events.map((e) => e.data.alert.id)).to.deep.equal(mine);
      }
      // The dispatcher's log agrees: all delivered, nothing pending or failed.
      const log = DeliveryStore.open(dataDir);
      const states = log.list({});
      await log.close();
      expect(states).to.have.length(expected.size);
      expect(states.filter((s) => s.status !== "delivered")).to.deep.equal([]);
      console.log(
        `      crash: seed ${seed}; ${KILLS} SIGKILLs (${["delivery", "poll", "time"].map((k) => `${kinds.filter((x) => x === k).length} ${k}`).join(", ")}); ` +
          `${expected.size}/${expected.size} delivered, ${requests.length} requests, ${repeats} repeats (same id, dropped by the library); ` +
          `${seconds.toFixed(1)} s including ${KILLS + 1} process starts`,
      );
    } catch (err) {
      (err as Error).message += ` (crash seed ${seed}; replay with CUSTOS_CRASH_SEED=${seed})`;
      throw err;
    } finally {
      running.forEach((c) => killGroup(c));
      await served.close();
      for (const r of receivers) await r.close();
    }
  });
});

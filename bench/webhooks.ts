/**
 * Webhook dispatcher figures (for `npm run bench`, which the watch's lead wires; runnable alone:
 * `npx tsx bench/webhooks.ts`, prints one JSON line):
 *
 * - `watch.webhook_deliveries_per_s`: deliveries per second from a burst of 4,000 alerts queued
 *   (each synced to the durable log first) to all of them verified by the receiver library on
 *   loopback — 8 subscriptions, 8 in flight, each subscription in order.
 * - `watch.webhook_deliveries_per_s_one_subscription`: the same for one subscription, whose
 *   deliveries go one at a time (the ordering rule's cost).
 */
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { Wallet } from "ethers";
import { DeliveryStore } from "../src/watch/webhooks/deliveries.js";
import { Dispatcher } from "../src/watch/webhooks/dispatcher.js";
import { WebhookReceiver } from "../src/watch/webhooks/receiver.js";
import { SubscriptionStore } from "../src/watch/webhooks/subscriptions.js";
import { makeAlert, MemoryFeed, subscriptionFor } from "../test/watch/webhookHelpers.js";

async function rate(subscriptions: number, alerts: number): Promise<number> {
  const dir = mkdtempSync(path.join(os.tmpdir(), "custos-bench-webhooks-"));
  const subs = SubscriptionStore.open(dir);
  const deliveries = DeliveryStore.open(dir);
  const feed = new MemoryFeed();
  let received = 0;
  const servers = [];
  const owners = [];
  for (let i = 0; i < subscriptions; i++) {
    const owner = Wallet.createRandom().address;
    const sub = subscriptionFor({ owner, url: "http://127.0.0.1:1/" });
    const handler = new WebhookReceiver({ secret: sub.secret }).nodeHandler(() => void received++);
    const server = createServer(handler);
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
    servers.push(server);
    owners.push(owner);
    await subs.add({ ...sub, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/` }, "1");
  }
  for (let i = 0; i < alerts; i++)
    feed.push(makeAlert({ block: 1 + Math.floor(i / 20), owner: owners[i % subscriptions], logIndex: i % 20 }));
  const dispatcher = new Dispatcher({ feed, subscriptions: subs, deliveries, pollIntervalMs: 10, concurrency: 8 });
  const t0 = performance.now();
  await dispatcher.start();
  while (received < alerts) await new Promise((r) => setTimeout(r, 5));
  const seconds = (performance.now() - t0) / 1000;
  await dispatcher.stop();
  for (const s of servers) {
    s.closeAllConnections();
    s.close();
  }
  await Promise.all([subs.close(), deliveries.close()]);
  rmSync(dir, { recursive: true, force: true });
  return Math.round(alerts / seconds);
}

export async function measureWebhooks(): Promise<Record<string, number>> {
  return {
    "watch.webhook_deliveries_per_s": await rate(8, 4000),
    "watch.webhook_deliveries_per_s_one_subscription": await rate(1, 1000),
  };
}

if (process.argv[1] === import.meta.filename) console.log(JSON.stringify(await measureWebhooks()));

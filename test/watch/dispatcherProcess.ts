/**
 * The dispatcher alone in a process, for the crash test: reads the alerts from the feed served
 * at CUSTOS_FEED_URL, keeps its logs in CUSTOS_DATA_DIR. Prints `{"event":"started"}` once
 * running; SIGTERM stops it cleanly (SIGKILL is what the test is about). Run as a program only:
 * mocha loads every file under test/, and importing this one does nothing.
 */
import { DeliveryStore } from "../../src/watch/webhooks/deliveries.js";
import { Dispatcher } from "../../src/watch/webhooks/dispatcher.js";
import { SubscriptionStore } from "../../src/watch/webhooks/subscriptions.js";
import { httpFeed } from "./webhookHelpers.js";

if (process.argv[1] === import.meta.filename) await run();

async function run(): Promise<void> {
  const dataDir = process.env.CUSTOS_DATA_DIR!;
  const subscriptions = SubscriptionStore.open(dataDir);
  const deliveries = DeliveryStore.open(dataDir);
  const dispatcher = new Dispatcher({
    feed: httpFeed(process.env.CUSTOS_FEED_URL!),
    subscriptions,
    deliveries,
    pollIntervalMs: 25,
    concurrency: 4,
    log: (e) => {
      if (e.event === "poll_failed") console.error(JSON.stringify(e));
    },
  });
  await dispatcher.start(); // compacts the log first: a kill may land in that too
  console.log(JSON.stringify({ event: "started" }));
  process.on("SIGTERM", async () => {
    await dispatcher.stop();
    await Promise.all([subscriptions.close(), deliveries.close()]);
    console.log(JSON.stringify({ event: "stopped" }));
    process.exit(0);
  });
}

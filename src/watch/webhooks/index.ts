/**
 * `startWebhooks(options)`: the watch's signed webhooks in this process — the subscription
 * service (owner-checked against the chain), the durable dispatcher polling `feed`, and the HTTP
 * routes as a fastify plugin for the watch's server to mount. `stop()` stops the dispatcher (a
 * delivery in flight is tried again at the next start) and closes the logs.
 */
import { JsonRpcProvider } from "ethers";
import type { AlertFeed } from "../alerts.js";
import type { BackoffPolicy, Clock } from "./backoff.js";
import { DeliveryStore } from "./deliveries.js";
import { Dispatcher } from "./dispatcher.js";
import type { WatchAddresses } from "./ownership.js";
import { webhookRoutes } from "./routes.js";
import { SubscriptionService, SubscriptionStore } from "./subscriptions.js";

export interface WebhooksOptions {
  feed: AlertFeed;
  chain: { rpcUrl: string; addresses: WatchAddresses; chainId: number | bigint };
  /** Where `subscriptions.log` and `deliveries.log` live. */
  dataDir: string;
  clock?: Clock;
  policy?: BackoffPolicy;
  concurrency?: number;
  pollIntervalMs?: number;
  finalityDepth?: number;
  timeoutMs?: number;
  log?: (event: Record<string, unknown>) => void;
}

export async function startWebhooks(opts: WebhooksOptions) {
  const chainId = BigInt(opts.chain.chainId);
  const provider = new JsonRpcProvider(opts.chain.rpcUrl, chainId, { staticNetwork: true });
  const subscriptions = SubscriptionStore.open(opts.dataDir);
  const deliveries = DeliveryStore.open(opts.dataDir);
  const service = new SubscriptionService(
    subscriptions,
    provider,
    { chainId, verifyingContract: opts.chain.addresses.registry },
    opts.chain.addresses,
  );
  const dispatcher = new Dispatcher({ ...opts, subscriptions, deliveries });
  dispatcher.start();
  return {
    routes: webhookRoutes({ service, subscriptions, deliveries }),
    service,
    dispatcher,
    subscriptions,
    deliveries,
    async stop(): Promise<void> {
      await dispatcher.stop();
      await Promise.all([subscriptions.close(), deliveries.close()]);
      provider.destroy();
    },
  };
}

export type WebhooksHandle = Awaited<ReturnType<typeof startWebhooks>>;
export { PRODUCTION_BACKOFF, WALL_CLOCK, fastClock, type BackoffPolicy, type Clock } from "./backoff.js";
export { WebhookReceiver, MemorySeenStore, type SeenStore, type WebhookEvent } from "./receiver.js";
export { messageToSign, type SubscriptionRequest } from "./subscription.js";

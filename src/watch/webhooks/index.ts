/**
 * `startWebhooks(options)`: the watch's signed webhooks in this process — the subscription
 * service (owner-checked against the chain), the durable dispatcher polling `feed`, and the HTTP
 * routes as a fastify plugin for the watch's server to mount. `stop()` stops the dispatcher (a
 * delivery in flight is tried again at the next start) and closes the logs.
 */
import { isAddress, JsonRpcProvider } from "ethers";
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
  /** How long finished deliveries stay listed (and in `deliveries.log`) once out of reach of a reorg (default 7 days). */
  retainMs?: number;
  log?: (event: Record<string, unknown>) => void;
}

function check(opts: WebhooksOptions): void {
  const bad = (field: string, fix: string) => {
    throw new Error(`startWebhooks: ${field} ${fix}`);
  };
  if (typeof opts.feed?.alertsFrom !== "function") bad("feed", "must be an AlertFeed (alertsFrom(fromBlock))");
  if (!/^https?:\/\//.test(opts.chain?.rpcUrl ?? "")) bad("chain.rpcUrl", "must be the node's http(s) JSON-RPC URL");
  if (!isAddress(opts.chain.addresses?.registry ?? ""))
    bad("chain.addresses.registry", "must be the DeviceRegistry's address");
  for (const name of ["custodyLedger", "paymentChannels"] as const) {
    const a = opts.chain.addresses[name];
    if (a !== undefined && !isAddress(a)) bad(`chain.addresses.${name}`, "must be an address, or left out");
  }
  if (opts.chain.chainId === undefined || BigInt(opts.chain.chainId) <= 0n)
    bad("chain.chainId", "must be the chain's id");
  if (!opts.dataDir) bad("dataDir", "must name the directory for subscriptions.log and deliveries.log");
}

export async function startWebhooks(opts: WebhooksOptions) {
  check(opts);
  const chainId = BigInt(opts.chain.chainId);
  const provider = new JsonRpcProvider(opts.chain.rpcUrl, chainId, { staticNetwork: true });
  // The signatures are checked for `chainId`; ownership is read from `rpcUrl`: they must be one chain.
  try {
    const remote = BigInt((await provider.send("eth_chainId", [])) as string);
    if (remote !== chainId)
      throw new Error(
        `startWebhooks: chain.chainId is ${chainId} but the node at ${opts.chain.rpcUrl} serves chain ${remote}`,
      );
    if ((await provider.getCode(opts.chain.addresses.registry)) === "0x")
      throw new Error(
        `startWebhooks: chain.addresses.registry ${opts.chain.addresses.registry} has no code on chain ${chainId}`,
      );
  } catch (err) {
    provider.destroy();
    throw err;
  }
  const subscriptions = SubscriptionStore.open(opts.dataDir);
  const deliveries = DeliveryStore.open(opts.dataDir);
  const service = new SubscriptionService(
    subscriptions,
    provider,
    { chainId, verifyingContract: opts.chain.addresses.registry },
    opts.chain.addresses,
  );
  const dispatcher = new Dispatcher({ ...opts, subscriptions, deliveries });
  await dispatcher.start(); // compacts deliveries.log first
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

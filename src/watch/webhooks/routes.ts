/**
 * The webhooks' HTTP API, as a fastify plugin the watch's server mounts:
 *
 *   POST   /subscriptions                 a signed SubscriptionRequest → 201 { id, secret, fromBlock, subscription }
 *   DELETE /subscriptions/:id             { nonce, deadline, signature } (WatchUnsubscription) → 200 { id, active: false }
 *   GET    /subscriptions?owner=0x…       the owner's subscriptions, without their secrets
 *   GET    /deliveries?subscription=0x…   its deliveries and their status (&status=pending|delivered|failed|cancelled)
 *
 * A refusal is `{ error, message, field? }` with the status of its code (`refusal.ts`).
 */
import type { FastifyError, FastifyPluginAsync } from "fastify";
import { getAddress, isAddress, isHexString } from "ethers";
import type { DeliveryStatus, DeliveryStore } from "./deliveries.js";
import { WebhookRefusal } from "./refusal.js";
import type { SubscriptionService, SubscriptionStore } from "./subscriptions.js";

const STATUSES: DeliveryStatus[] = ["pending", "delivered", "failed", "cancelled"];

export function webhookRoutes(deps: {
  service: SubscriptionService;
  subscriptions: SubscriptionStore;
  deliveries: DeliveryStore;
}): FastifyPluginAsync {
  return async (app) => {
    app.setErrorHandler((err: FastifyError, _req, reply) => {
      if (err instanceof WebhookRefusal) return reply.code(err.status).send(err.toJSON());
      if (err.statusCode && err.statusCode < 500)
        return reply
          .code(err.statusCode)
          .send({ error: "invalid_json", message: `the body is not JSON: ${err.message}` });
      return reply.code(500).send({ error: "internal", message: err.message });
    });

    app.post("/subscriptions", async (req, reply) => reply.code(201).send(await deps.service.subscribe(req.body)));

    app.delete<{ Params: { id: string } }>("/subscriptions/:id", async (req) =>
      deps.service.unsubscribe(req.params.id, req.body),
    );

    app.get<{ Querystring: { owner?: string } }>("/subscriptions", async (req) => {
      const owner = req.query.owner;
      if (!owner || !isAddress(owner))
        throw new WebhookRefusal("invalid_field", "owner is required: ?owner=0x… (the subscriber's address)", "owner");
      return { subscriptions: deps.subscriptions.listFor(getAddress(owner)) };
    });

    app.get<{ Querystring: { subscription?: string; status?: string } }>("/deliveries", async (req) => {
      const { subscription, status } = req.query;
      if (!subscription || !isHexString(subscription, 32))
        throw new WebhookRefusal(
          "invalid_field",
          "subscription is required: ?subscription=0x… (its id)",
          "subscription",
        );
      if (!deps.subscriptions.get(subscription))
        throw new WebhookRefusal("unknown_subscription", `there is no subscription ${subscription}`, "subscription");
      if (status !== undefined && !STATUSES.includes(status as DeliveryStatus))
        throw new WebhookRefusal("invalid_field", `status must be one of ${STATUSES.join(", ")}`, "status");
      return { deliveries: deps.deliveries.list({ subscription, status: status as DeliveryStatus | undefined }) };
    });
  };
}

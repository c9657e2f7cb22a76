/**
 * What the webhook tests share: a subscription request signed the way a subscriber's wallet signs
 * it, and a fastify server on loopback with the routes mounted.
 */
import Fastify, { type FastifyPluginAsync } from "fastify";
import type { Signer } from "ethers";
import { typedData, type Deployment } from "../../src/eip712/index.js";
import { messageToSign, type SubscriptionRequest } from "../../src/watch/webhooks/subscription.js";

export type Unsigned = Omit<SubscriptionRequest, "signature">;

/** `request` signed by `signer` with EIP-712 (eth_signTypedData_v4) for the watch at `deployment`. */
export async function signRequest(
  signer: Signer,
  deployment: Deployment,
  request: Unsigned,
): Promise<SubscriptionRequest> {
  const t = typedData("WatchSubscription", deployment, { ...messageToSign(request) });
  return { ...request, signature: await signer.signTypedData(t.domain, t.types, t.message) };
}

/** The body of a signed DELETE /subscriptions/:id. */
export async function signUnsubscribe(
  signer: Signer,
  deployment: Deployment,
  owner: string,
  id: string,
  nonce: bigint,
  deadline: bigint,
) {
  const t = typedData("WatchUnsubscription", deployment, { owner, subscription: id, nonce, deadline });
  return {
    nonce: nonce.toString(),
    deadline: deadline.toString(),
    signature: await signer.signTypedData(t.domain, t.types, t.message),
  };
}

/** A fastify server on 127.0.0.1 with `plugin` mounted; its base URL and a JSON client. */
export async function serve(plugin: FastifyPluginAsync) {
  const app = Fastify();
  await app.register(plugin);
  const url = await app.listen({ host: "127.0.0.1", port: 0 });
  const call = async (method: string, path: string, body?: unknown) => {
    const res = await fetch(url + path, {
      method,
      headers: body === undefined ? {} : { "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: res.status, body: (await res.json()) as Record<string, any> };
  };
  return { url, call, close: () => app.close() };
}

/**
 * The subscriber's side of a subscription: sign a request with the owner's wallet (any ethers
 * signer: a key, a hardware wallet, an EIP-1193 provider) and send it to a watch. The watch answers
 * with the subscription's id and its secret, shown once: keep the secret, the receiver library
 * (`receiver.ts`) needs it to check each delivery.
 */
import type { Signer } from "ethers";
import { typedData, type Deployment } from "../../eip712/index.js";
import { messageToSign, type SubscriptionRequest } from "./subscription.js";

export type UnsignedSubscription = Omit<SubscriptionRequest, "signature">;

/** `request` signed by `signer` with EIP-712 (eth_signTypedData_v4) for the watch of the registry at `deployment`. */
export async function signSubscription(
  signer: Signer,
  deployment: Deployment,
  request: UnsignedSubscription,
): Promise<SubscriptionRequest> {
  const t = typedData("WatchSubscription", deployment, { ...messageToSign(request) });
  return { ...request, signature: await signer.signTypedData(t.domain, t.types, t.message) };
}

/** The body of a signed `DELETE /subscriptions/:id`. */
export async function signUnsubscription(
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

export interface Subscribed {
  id: string;
  /** The delivery secret (`whsec_…`): shown once. */
  secret: string;
  /** The first block whose alerts it receives. */
  fromBlock: string;
}

/** Signs `request` and subscribes at the watch `watchUrl`; a refusal is an error carrying the watch's sentence. */
export async function subscribe(
  watchUrl: string,
  signer: Signer,
  deployment: Deployment,
  request: UnsignedSubscription,
): Promise<Subscribed> {
  const body = await signSubscription(signer, deployment, request);
  const res = await fetch(new URL("/subscriptions", watchUrl), {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  const answer = (await res.json().catch(() => ({}))) as Partial<Subscribed> & { error?: string; message?: string };
  if (res.status !== 201 || !answer.id || !answer.secret)
    throw new Error(
      `the watch at ${watchUrl} refused the subscription (${res.status} ${answer.error ?? ""}): ${answer.message ?? "no reason given"}`,
    );
  return { id: answer.id, secret: answer.secret, fromBlock: String(answer.fromBlock) };
}

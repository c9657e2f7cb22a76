/**
 * Subscribe to alerts: the owner signs the watch's `WatchSubscription` (the catalogue's type; the
 * message built by the webhooks' own `messageToSign`) with its wallet, and the watch — which checks
 * the signature and the ownership against the chain — answers with the subscription and its secret.
 */
import { useState } from "react";
import { useSignTypedData } from "wagmi";
import type { Hex } from "viem";
import { DOMAINS, TYPES } from "../../src/eip712/index.js";
import { messageToSign } from "../../src/watch/webhooks/subscription.js";
import { useSettings } from "./context.js";
import { Wallet } from "./actions.js";

export function Subscribe({ chainId }: { chainId: number }) {
  const s = useSettings();
  const { signTypedDataAsync } = useSignTypedData();
  const [url, setUrl] = useState("");
  const [msg, setMsg] = useState<{ error: boolean; text: string } | null>(null);
  const subscribe = async (account: Hex) => {
    if (!s.contracts.registry)
      return setMsg({
        error: true,
        text: "The registry's address is not set (Settings): it names the watch's domain.",
      });
    try {
      const request = {
        owner: account,
        scope: "owner" as const,
        target: account,
        url,
        events: "all" as const,
        nonce: String(Date.now()),
        deadline: String(Math.floor(Date.now() / 1000) + 3600),
      };
      const message = messageToSign(request);
      const { name, version } = DOMAINS.watch;
      const signature = await signTypedDataAsync({
        domain: { name, version, chainId, verifyingContract: s.contracts.registry as Hex },
        types: { WatchSubscription: TYPES.WatchSubscription.fields.map((f) => ({ name: f.name, type: f.type })) },
        primaryType: "WatchSubscription",
        message,
      } as never);
      const res = await fetch(`${s.watch}/subscriptions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ ...request, signature }),
      });
      const body = (await res.json()) as { id?: string; secret?: string; message?: string; error?: string };
      if (res.status !== 201)
        return setMsg({ error: true, text: `The watch refused: ${body.message ?? body.error ?? res.status}` });
      setMsg({ error: false, text: `Subscribed: ${body.id}. Your webhook secret (shown once): ${body.secret}` });
    } catch (e) {
      setMsg({
        error: true,
        text: `Not subscribed: ${(e as { shortMessage?: string }).shortMessage ?? (e as Error).message.split("\n")[0]}`,
      });
    }
  };
  return (
    <section className="actions" aria-label="Alerts by webhook">
      <h2>Alerts by webhook</h2>
      <Wallet>
        {(account) => (
          <form
            onSubmit={(e) => {
              e.preventDefault();
              void subscribe(account);
            }}
          >
            <label htmlFor="hook-url">Send every alert about what this account owns to</label>
            <input
              id="hook-url"
              type="url"
              size={40}
              value={url}
              onChange={(e) => setUrl(e.target.value.trim())}
              required
            />
            <button type="submit">Sign and subscribe</button>
            {msg && (
              <p
                role={msg.error ? "alert" : "status"}
                className={msg.error ? "state error" : ""}
                data-testid="subscription"
              >
                {msg.text}
              </p>
            )}
          </form>
        )}
      </Wallet>
    </section>
  );
}

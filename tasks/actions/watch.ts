/**
 * The watch tasks' actions (definitions and flags: ../watch.ts): an owner's subscriptions signed
 * with the task's signer and sent to the watch through the subscriber library
 * (src/watch/webhooks/subscriber.ts). Each prints JSON and fails with one line naming the flag.
 */
import { getAddress, isAddress, isHexString } from "ethers";
import type { HardhatRuntimeEnvironment } from "hardhat/types/hre";
import { ALERT_KINDS, type AlertKind } from "../../src/watch/alerts.js";
import { SCOPES, type Scope } from "../../src/watch/webhooks/subscription.js";
import { signUnsubscription, subscribe } from "../../src/watch/webhooks/subscriber.js";
import type { Deployment } from "../../src/eip712/index.js";
import { contractAddress, openChain, signerOf, taskAction, type Chain } from "../chain.js";
import { inputError, required, type SignerArgs } from "../support.js";
import { watchClient, watchName } from "./watchIndex.js";

/** The watch's signing domain: this chain and its DeviceRegistry. */
async function deploymentOf(chain: Chain, registry?: string): Promise<Deployment> {
  return { chainId: chain.chainId, verifyingContract: await contractAddress(chain, "DeviceRegistry", registry) };
}

function eventsArg(value: string): AlertKind[] | "all" {
  if (value.trim() === "all") return "all";
  const kinds = value
    .split(",")
    .map((k) => k.trim())
    .filter(Boolean);
  const unknown = kinds.filter((k) => !(ALERT_KINDS as readonly string[]).includes(k));
  if (kinds.length === 0 || unknown.length)
    throw inputError(
      `--events: ${unknown.join(", ") || "nothing given"}: give all, or some of ${ALERT_KINDS.join(", ")}`,
    );
  return kinds as AlertKind[];
}

function targetArg(scope: Scope, target: string | undefined, signer: string): string {
  if (scope === "owner") {
    const t = target ?? signer;
    if (!isAddress(t)) throw inputError(`--target: ${t} is not an address (scope owner watches an owner's address)`);
    return getAddress(t);
  }
  const given = required(target, "--target");
  if (scope === "device" || scope === "lock") {
    if (!/^[0-9]+$/.test(given)) throw inputError(`--target: ${given} is not a decimal ${scope} id`);
    return given;
  }
  if (!isHexString(given, 32)) throw inputError(`--target: ${given} is not a ${scope} id (0x + 64 hex digits)`);
  return given.toLowerCase();
}

/** A nonce no earlier request of this owner used: the time in microseconds and a random part. */
function freshNonce(): bigint {
  return BigInt(Date.now()) * 1_000_000n + BigInt(Math.floor(Math.random() * 1_000_000));
}

/** Ten minutes of chain time for the watch to check the signature in. */
async function deadlineOf(chain: Chain): Promise<bigint> {
  const block = await chain.provider.getBlock("latest");
  return BigInt(block!.timestamp) + 600n;
}

/** A refusal from the watch as one line naming it. */
async function toWatch<T>(url: string, what: string, send: () => Promise<T>): Promise<T> {
  try {
    return await send();
  } catch (err) {
    const message = (err as Error).message;
    throw inputError(message.startsWith("the watch at") ? message : `${watchName(url)}: ${what}: ${message}`);
  }
}

export const subscribeTask = taskAction(
  "watch:subscribe",
  async (
    args: SignerArgs & {
      watch?: string;
      scope?: string;
      target?: string;
      url?: string;
      events: string;
      registry?: string;
    },
    hre: HardhatRuntimeEnvironment,
  ) => {
    const url = required(args.watch, "--watch");
    watchClient(url);
    const scope = required(args.scope, "--scope") as Scope;
    if (!SCOPES.includes(scope)) throw inputError(`--scope: ${scope} is not one of ${SCOPES.join(", ")}`);
    const hook = required(args.url, "--url");
    if (!/^https?:\/\//.test(hook)) throw inputError(`--url: ${hook} is not an http(s) URL`);
    const events = eventsArg(args.events);
    const chain = await openChain(hre, "watch:subscribe", false);
    const who = await signerOf(chain, args);
    const target = targetArg(scope, args.target, who.address);
    const deployment = await deploymentOf(chain, args.registry);
    const subscribed = await toWatch(url, "subscribe", async () =>
      subscribe(url, who.signer, deployment, {
        owner: who.address,
        scope,
        target,
        url: hook,
        events,
        nonce: freshNonce().toString(),
        deadline: (await deadlineOf(chain)).toString(),
      }),
    );
    const result = {
      ...subscribed,
      owner: who.address,
      scope,
      target,
      url: hook,
      events,
      note: "the secret is shown once, now: keep it; your receiver (WebhookReceiver) checks every delivery with it",
    };
    console.log(JSON.stringify(result, null, 2));
    return result;
  },
);

export const unsubscribeTask = taskAction(
  "watch:unsubscribe",
  async (args: SignerArgs & { watch?: string; id?: string; registry?: string }, hre: HardhatRuntimeEnvironment) => {
    const url = required(args.watch, "--watch");
    watchClient(url);
    const id = required(args.id, "--id");
    if (!isHexString(id, 32)) throw inputError(`--id: ${id} is not a subscription id (0x + 64 hex digits)`);
    const chain = await openChain(hre, "watch:unsubscribe", false);
    const who = await signerOf(chain, args);
    const deployment = await deploymentOf(chain, args.registry);
    const body = await signUnsubscription(
      who.signer,
      deployment,
      who.address,
      id,
      freshNonce(),
      await deadlineOf(chain),
    );
    const answer = await toWatch(url, `unsubscribe ${id}`, async () => {
      const res = await fetch(new URL(`/subscriptions/${id}`, url), {
        method: "DELETE",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(body),
      });
      const json = (await res.json().catch(() => ({}))) as {
        id?: string;
        active?: boolean;
        message?: string;
        error?: string;
      };
      if (!res.ok) throw new Error(`refused (${res.status} ${json.error ?? ""}): ${json.message ?? "no reason given"}`);
      return json;
    });
    console.log(JSON.stringify(answer));
    return answer;
  },
);

export const listTask = taskAction(
  "watch:subscriptions",
  async (args: SignerArgs & { watch?: string; owner?: string }, hre: HardhatRuntimeEnvironment) => {
    const url = required(args.watch, "--watch");
    watchClient(url);
    let owner = args.owner;
    if (owner === undefined) owner = (await signerOf(await openChain(hre, "watch:subscriptions", false), args)).address;
    if (!isAddress(owner)) throw inputError(`--owner: ${owner} is not an address`);
    const answer = await toWatch(url, "list subscriptions", async () => {
      const res = await fetch(new URL(`/subscriptions?owner=${getAddress(owner)}`, url));
      const json = (await res.json().catch(() => ({}))) as { subscriptions?: unknown[]; message?: string };
      if (!res.ok || !json.subscriptions)
        throw new Error(`refused (${res.status}): ${json.message ?? "no reason given"}`);
      return json as { subscriptions: unknown[] };
    });
    console.log(JSON.stringify(answer, null, 2));
    return answer;
  },
);

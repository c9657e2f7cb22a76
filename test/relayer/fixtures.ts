/**
 * Fixtures of the relayer tests: one node on loopback (`hardhat node`, or anvil with
 * CUSTOS_NODE=anvil) shared by every relayer test file
 * (stopped by a root `after` hook, and killed on exit whatever happens), a fresh suite deployment
 * per fleet, provisioned devices, signing helpers that produce exactly the JSON the device agent
 * posts, and a small HTTP client.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { generateBeaconKey, type BeaconKeyPair } from "../../src/beacons/index.js";
import http, { type IncomingHttpHeaders } from "node:http";
import os from "node:os";
import path from "node:path";
import type { JsonRpcProvider, JsonRpcSigner, Wallet } from "ethers";
import { startNode, type HardhatNode } from "../helpers/node.js";
import type { DeviceKeyKind } from "../../src/crypto/deviceKey.js";
import { TypedDataHasher } from "../../src/eip712/fast.js";
import { typedData } from "../../src/eip712/index.js";
import type { ForwardRequestBody } from "../../src/relayer/index.js";
import { startRelayer, type RelayerConfig, type RelayerHandle } from "../../src/relayer/index.js";
import {
  rpcProvider,
  signAttestation,
  signClaim,
  signMessage,
  simulateFleet,
  type SimDevice,
  type SimFleet,
} from "../../src/relayer/fleet.js";
import { ERC2771Forwarder__factory, LocationBeacons__factory } from "../../typechain-types/index.js";

let node: Promise<HardhatNode> | undefined;
const relayers = new Set<RelayerHandle>();
const tempDirs = new Set<string>();

/** The one node of this test run (the kind CUSTOS_NODE names). */
export function sharedNode(): Promise<HardhatNode> {
  node ??= startNode();
  return node;
}

after(async function () {
  this.timeout(30_000);
  await Promise.allSettled([...relayers].map((r) => r.close()));
  relayers.clear();
  if (node) await (await node).stop();
  node = undefined;
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
});

export function tempDir(prefix = "custos-relayer-"): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  tempDirs.add(dir);
  return dir;
}

let hasher: Promise<TypedDataHasher> | undefined;
export const fastHasher = () => (hasher ??= TypedDataHasher.create());

export type Device = SimDevice;

export interface Fleet extends SimFleet {
  node: HardhatNode;
  admin: JsonRpcSigner;
  owner: JsonRpcSigner;
  /** The owner's beacon key, registered on the fleet's LocationBeacons (its devices' beacons are sealed to it). */
  ownerBeaconKey: BeaconKeyPair;
}

/**
 * Deploys a suite on the shared node, commits one batch of `devices + unclaimed` keys, claims the
 * first `devices` for the owner, and funds a fresh relayer account.
 */
export async function makeFleet(
  opts: { devices?: number; unclaimed?: number; kinds?: DeviceKeyKind[]; ownerIndex?: number } = {},
): Promise<Fleet> {
  const n = await sharedNode();
  const provider = rpcProvider(n.url);
  const admin = await provider.getSigner(0);
  const owner = await provider.getSigner(opts.ownerIndex ?? 1);
  const fleet = await simulateFleet({
    provider,
    admin,
    owner,
    devices: opts.devices ?? 0,
    unclaimed: opts.unclaimed,
    kinds: opts.kinds,
  });
  const ownerBeaconKey = await generateBeaconKey();
  const beacons = LocationBeacons__factory.connect(fleet.addresses.locationBeacons, owner);
  await (await beacons.setBeaconKey(ownerBeaconKey.publicKey)).wait();
  return { ...fleet, node: n, admin, owner, ownerBeaconKey };
}

/**
 * Starts a relayer in this process for `fleet` — given every contract of the suite, as an operator
 * starts it from the Ignition deployment — (closed by the root `after` hook if a test does not).
 */
export async function relayerFor(fleet: Fleet, config: Partial<RelayerConfig> = {}): Promise<RelayerHandle> {
  const r = await startRelayer({
    rpc: fleet.node.url,
    privateKey: fleet.relayerWallet.privateKey,
    registry: fleet.addresses.registry,
    locationBeacons: fleet.addresses.locationBeacons,
    lockAccess: fleet.addresses.lockAccess,
    paymentChannels: fleet.addresses.paymentChannels,
    custodyLedger: fleet.addresses.custodyLedger,
    dataDir: config.dataDir ?? tempDir(),
    batchIntervalMs: 50,
    pollIntervalMs: 50,
    logLevel: process.env.RELAYER_LOG_LEVEL ?? "silent",
    ...config,
  });
  relayers.add(r);
  const close = r.close;
  r.close = async () => {
    relayers.delete(r);
    await close();
  };
  return r;
}

/** Seconds from now on the node's clock. */
export async function deadlineIn(provider: JsonRpcProvider, seconds = 3600): Promise<bigint> {
  const block = await provider.getBlock("latest");
  return BigInt(Math.max(block!.timestamp, Math.floor(Date.now() / 1000)) + seconds);
}

export const attestation = signAttestation;
export const signDeviceMessage = signMessage;
export { signClaim };

/** An owner's ERC-2771 forward request, signed with eth_signTypedData_v4 through the node. */
export async function forwardRequest(
  fleet: Fleet,
  signer: JsonRpcSigner | Wallet,
  call: { to: string; data: string; gas?: bigint; value?: bigint; deadline?: bigint; nonce?: bigint },
): Promise<ForwardRequestBody> {
  const from = (await signer.getAddress()).toLowerCase();
  const forwarder = ERC2771Forwarder__factory.connect(fleet.addresses.forwarder, fleet.provider);
  const nonce = call.nonce ?? (await forwarder.nonces(from));
  const message = {
    from,
    to: call.to.toLowerCase(),
    value: (call.value ?? 0n).toString(),
    gas: (call.gas ?? 200_000n).toString(),
    nonce: nonce.toString(),
    deadline: (call.deadline ?? (await deadlineIn(fleet.provider))).toString(),
    data: call.data,
  };
  const td = typedData("ForwardRequest", fleet.forwarderDeployment, message);
  const signature = await signer.signTypedData(td.domain, td.types, td.message);
  const { nonce: _n, ...rest } = message;
  return { ...rest, signature };
}

export interface HttpReply<T = Record<string, unknown>> {
  status: number;
  body: T;
  headers: IncomingHttpHeaders;
}

// node:http with keep-alive: far lighter than fetch (undici) for a load generator in the same process.
const agent = new http.Agent({ keepAlive: true, maxSockets: 128 });

function request<T>(base: string, method: string, route: string, payload?: string): Promise<HttpReply<T>> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      base + route,
      {
        method,
        agent,
        headers:
          payload === undefined
            ? {}
            : { "content-type": "application/json", "content-length": Buffer.byteLength(payload) },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => {
          try {
            resolve({
              status: res.statusCode!,
              body: JSON.parse(Buffer.concat(chunks).toString()) as T,
              headers: res.headers,
            });
          } catch (err) {
            reject(err);
          }
        });
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    req.end(payload);
  });
}

export function post<T = Record<string, unknown>>(base: string, route: string, body: unknown): Promise<HttpReply<T>> {
  return request<T>(base, "POST", route, typeof body === "string" ? body : JSON.stringify(body));
}

export function get<T = Record<string, unknown>>(base: string, route: string): Promise<HttpReply<T>> {
  return request<T>(base, "GET", route);
}

/** Polls until `check` is true (or throws after `ms`). */
export async function until(check: () => Promise<boolean> | boolean, ms = 30_000, what = "condition"): Promise<void> {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Every transaction the account sent, with its receipt, from block `from` on. */
export async function transactionsFrom(provider: JsonRpcProvider, account: string, from = 0) {
  const head = await provider.getBlockNumber();
  const out: { hash: string; status: number; gasUsed: bigint; to: string | null }[] = [];
  for (let b = from; b <= head; b++) {
    const block = await provider.getBlock(b, true);
    for (const tx of block?.prefetchedTransactions ?? []) {
      if (tx.from.toLowerCase() !== account.toLowerCase()) continue;
      const receipt = await provider.getTransactionReceipt(tx.hash);
      out.push({ hash: tx.hash, status: receipt!.status!, gasUsed: receipt!.gasUsed, to: tx.to });
    }
  }
  return out;
}

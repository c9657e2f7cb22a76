/**
 * Shared pieces of the agent tests: temporary data directories, a funded payer, a deployed and
 * provisioned registry on the in-process network, event counting, and waits on progress.
 */
import { mkdtempSync, rmSync, watch } from "node:fs";
import os from "node:os";
import path from "node:path";
import { ethers, setBalance } from "../helpers/hardhat.js";
import { Wallet, type Provider } from "ethers";
import type { DeviceKey } from "../../src/crypto/deviceKey.js";
import { deployRegistry, makeKeys, provision } from "../helpers/registry.js";
import { deployBeacons } from "../helpers/beacons.js";
import { DeviceRegistry__factory } from "../../typechain-types/index.js";
import { Agent } from "../../src/agent/agent.js";
import type { TypedDataHasher } from "../../src/eip712/fast.js";
import { DeviceSignatureVerifier } from "../../src/crypto/verify.js";
import { MeterPayee, MeterPayer, SimulatedMeter, type ChannelTerms } from "../../src/agent/roles/meter.js";
import { deployChannels, openChannel } from "../helpers/channels.js";

const dirs: string[] = [];
process.on("exit", () => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** A fresh temporary directory, removed when the test process exits. */
export function tempDir(prefix = "custos-agent-"): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  dirs.push(dir);
  return dir;
}

/** A new account with 100 ETH on the in-process network. */
export async function fundedWallet(): Promise<Wallet> {
  const wallet = new Wallet(Wallet.createRandom().privateKey);
  await setBalance(wallet.address, ethers.parseEther("100"));
  return wallet;
}

/** The registry (and LocationBeacons) with a secp256k1 and a P-256 device claimed by `owner`, and a funded payer. */
export async function agentFixture() {
  const ctx = await deployRegistry();
  const { beacons, ownerKey } = await deployBeacons(ctx);
  const keys = makeKeys(ctx, 2, ["secp256k1", "p256"]);
  const { ids, batch, batchId } = await provision(ctx, keys);
  const payer = await fundedWallet();
  const { chainId } = await ethers.provider.getNetwork();
  return {
    ctx,
    beacons,
    ownerKey,
    keys: keys as [DeviceKey, DeviceKey],
    ids,
    batch,
    batchId,
    payer,
    deployment: {
      chainId,
      registry: await ctx.registry.getAddress(),
      locationBeacons: await beacons.getAddress(),
    },
  };
}

// ---------------------------------------------------------------- the meter role

/** The payer and payee's agreed price in the meter tests: wei per Wh. */
export const METER_PRICE = 1_000_000_000n;

const FAST = { pollMs: 5, holdMs: 20, backoff: { baseMs: 20, capMs: 200 } };

/** PaymentChannels with payer and payee devices (`deployChannels`), a gas payer, and the agent's deployment. */
export async function meterFixture() {
  const f = await deployChannels();
  const gasPayer = await fundedWallet();
  const { chainId } = await ethers.provider.getNetwork();
  return {
    ...f,
    gasPayer,
    stackDeployment: {
      chainId,
      registry: await f.registry.getAddress(),
      paymentChannels: await f.channels.getAddress(),
    },
  };
}
export type MeterFixture = Awaited<ReturnType<typeof meterFixture>>;

/** What a meter test opens and closes after each test (last opened, first closed). */
export type Opened = { close(): Promise<unknown> }[];

export interface MeterSetupOptions {
  deposit?: bigint;
  dataDir?: string;
  minClaimValue?: bigint;
  rate?: bigint;
  allowance?: bigint;
}

/**
 * A channel from payer device 0 to payee device 0, the payee's agent and book (the channel added),
 * and a payer paying 10 Wh ahead of a simulated meter at {@link METER_PRICE}.
 */
export async function meterSetup(f: MeterFixture, hasher: TypedDataHasher, open: Opened, opts: MeterSetupOptions = {}) {
  const { terms, id } = await openChannel(f, {
    amount: opts.deposit ?? ethers.parseEther("1"),
    rate: opts.rate,
    allowance: opts.allowance,
  });
  const agent = await Agent.create({
    signer: f.payeeKeys[0],
    deployment: f.stackDeployment,
    dataDir: tempDir(),
    rpc: ethers.provider,
    payer: f.gasPayer,
    ...FAST,
  });
  open.push({ close: () => agent.stop() });
  const payee = openMeterPayee(f, hasher, open, agent, opts.dataDir ?? tempDir(), opts.minClaimValue);
  await payee.addChannel({
    terms: terms as ChannelTerms,
    deposit: opts.deposit ?? ethers.parseEther("1"),
    pricePerUnit: METER_PRICE,
    payerKey: f.payerKeys[0].signer,
  });
  const meter = new SimulatedMeter();
  const payer = new MeterPayer({
    key: f.payerKeys[0],
    hasher,
    deployment: f.channelDeployment,
    terms: terms as ChannelTerms,
    pricePerUnit: METER_PRICE,
    aheadUnits: 10n,
    meter,
  });
  return { terms: terms as ChannelTerms, id, agent, payee, payer, meter };
}

/** The payee's book in `dataDir`, claiming through `agent`'s outbox. */
export function openMeterPayee(
  f: MeterFixture,
  hasher: TypedDataHasher,
  open: Opened,
  agent: Agent,
  dataDir: string,
  minClaimValue?: bigint,
): MeterPayee {
  const payee = MeterPayee.open({
    hasher,
    deployment: f.channelDeployment,
    verifier: new DeviceSignatureVerifier([f.verifierAddress]),
    dataDir,
    outbox: agent.outbox,
    provider: ethers.provider,
    minClaimValue,
  });
  open.push(payee);
  return payee;
}

/** `FirmwareAttested` events of the registry, as `device:firmwareHash` strings. */
export async function firmwareEvents(provider: Provider, registry: string): Promise<string[]> {
  const r = DeviceRegistry__factory.connect(registry, provider);
  const events = await r.queryFilter(r.filters.FirmwareAttested(), 0, "latest");
  return events.map((e) => `${e.args.deviceId}:${e.args.firmwareHash}`);
}

/** Resolves once `check` holds, polling; rejects after `ms`. */
export async function eventually(check: () => boolean | Promise<boolean>, ms = 20_000, what = "condition") {
  const until = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/**
 * Resolves once `check()` holds, looking again at every change in `dir` so that what waits for a
 * write follows it closely (and every 25 ms besides, as change notices may be coalesced).
 */
export function onceWritten(dir: string, check: () => boolean, what: string, ms = 60_000): Promise<void> {
  return new Promise((resolve, reject) => {
    let settled = false;
    const finish = (err?: Error) => {
      if (settled) return;
      settled = true;
      watcher.close();
      clearInterval(backstop);
      clearTimeout(timer);
      if (err) reject(err);
      else resolve();
    };
    const look = () => {
      if (!settled && check()) finish();
    };
    const watcher = watch(dir, look);
    const backstop = setInterval(look, 25);
    const timer = setTimeout(() => finish(new Error(`timed out waiting for ${what}`)), ms);
    look();
  });
}

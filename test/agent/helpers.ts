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

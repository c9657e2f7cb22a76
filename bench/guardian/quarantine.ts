/**
 * Quarantine latency of the guardian service (`npm run bench:guardian:quarantine`): three guardians
 * (quorum two) on a real node with one-second blocks, each reading a real Ponder index. Each case
 * is one device whose firmware image its manufacturer revokes (the misbehaviour on chain: it runs
 * a recalled image); the figure is the number of blocks from that revocation's block to the block
 * of the device's `GuardianFlagged`. A revocation is sent every block (cases overlap, as they would
 * in a fleet), for `GUARDIAN_QUARANTINE_CASES` cases (default 100) or until `GUARDIAN_QUARANTINE_SECONDS`
 * (default 180) have passed. Merges into bench/results/guardian.json:
 * `guardian.quarantine_blocks_p50`, `guardian.quarantine_blocks_p99`, `guardian.quarantine_cases`.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { id as textHash } from "ethers";
import { startGuardian, type GuardianHandle } from "../../src/guardian/service/index.js";
import {
  STRICT_FIRMWARE,
  attest,
  guardianWorld,
  oneSecondBlocks,
  removeTempDirs,
  revokeFirmware,
  tempDir,
  writePolicy,
} from "../../test/guardian/serviceFixture.js";

const CASES = Number(process.env.GUARDIAN_QUARANTINE_CASES ?? 100);
const SECONDS = Number(process.env.GUARDIAN_QUARANTINE_SECONDS ?? 180);

const w = await guardianWorld(CASES);
const firmware = (i: number) => textHash(`firmware 0.9.${i} (recalled)`);
for (let i = 0; i < CASES; i++) await attest(w, i, firmware(i));
await w.indexer.waitForBlock(await w.provider.getBlockNumber());
const policyFile = writePolicy(path.join(tempDir(), "policy.json"), STRICT_FIRMWARE);
const guardians: GuardianHandle[] = [];
for (const g of w.guardians)
  guardians.push(
    await startGuardian({
      rpcUrl: w.node.url,
      chainId: 31337,
      watchUrl: w.indexer.url,
      addresses: w.fleet.addresses,
      key: g.privateKey,
      policyFile,
      dataDir: tempDir(),
    }),
  );
await oneSecondBlocks(w.node);

const revokedIn = new Map<bigint, number>();
const started = Date.now();
for (let i = 0; i < CASES && Date.now() - started < SECONDS * 1000; i++)
  revokedIn.set(w.fleet.devices[i].id, await revokeFirmware(w, firmware(i)));

// Each case's quarantine block, from the registry's events (waiting up to 30 s for the last ones).
const flaggedIn = new Map<bigint, number>();
const from = Math.min(...revokedIn.values());
for (const until = Date.now() + 30_000; flaggedIn.size < revokedIn.size && Date.now() < until;) {
  for (const log of await w.fleet.registry.queryFilter(w.fleet.registry.filters.GuardianFlagged(), from, "latest"))
    flaggedIn.set(log.args.deviceId, log.blockNumber);
  await new Promise((r) => setTimeout(r, 500));
}
for (const g of guardians) await g.stop();
await w.indexer.stop();
await w.node.stop();
removeTempDirs();

const blocks = [...revokedIn].map(([device, at]) => (flaggedIn.has(device) ? flaggedIn.get(device)! - at : Infinity));
blocks.sort((a, b) => a - b);
const pct = (p: number) => blocks[Math.min(blocks.length - 1, Math.ceil((p / 100) * blocks.length) - 1)];
const results: Record<string, number> = {
  "guardian.quarantine_blocks_p50": pct(50),
  "guardian.quarantine_blocks_p99": pct(99),
  "guardian.quarantine_blocks_max": blocks[blocks.length - 1],
  "guardian.quarantine_cases": blocks.length,
  "guardian.quarantine_missed": blocks.filter((b) => b === Infinity).length,
};
const dir = path.join(import.meta.dirname, "..", "results");
mkdirSync(dir, { recursive: true });
const file = path.join(dir, "guardian.json");
const previous = existsSync(file) ? (JSON.parse(readFileSync(file, "utf8")) as Record<string, number>) : {};
writeFileSync(file, JSON.stringify({ ...previous, ...results }, null, 2) + "\n");
console.table(results);
console.log(
  `${blocks.length} cases in ${((Date.now() - started) / 1000).toFixed(0)} s; wrote bench/results/guardian.json`,
);
if (results["guardian.quarantine_missed"] > 0) process.exitCode = 1;

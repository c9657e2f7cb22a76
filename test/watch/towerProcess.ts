/**
 * The watchtower as a process of its own, for the crash test: `startTower` with the options given
 * as JSON in the first argument, JSON log lines (debug level) on stdout. The test kills it with
 * SIGKILL at chosen log lines, so it has no signal handling and no clean exit: what survives is
 * what the outbox put on disk.
 */
import { createLogger } from "../../src/agent/log.js";
import { startTower, type TowerOptions } from "../../src/watch/tower/index.js";

// Mocha loads every file under test/: only a process started on this file runs a tower.
if (import.meta.main) {
  const options = JSON.parse(process.argv[2]) as TowerOptions;
  const tower = await startTower({ ...options, log: createLogger({ level: "debug", stream: process.stdout }) });
  process.stdout.write(JSON.stringify({ msg: "tower ready", address: tower.address }) + "\n");
}

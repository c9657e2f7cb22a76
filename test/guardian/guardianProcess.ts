/**
 * A guardian as a process of its own, for the crash test: `startGuardian` with the options given
 * as JSON in the first argument, JSON log lines (debug level) on stdout. The test kills it with
 * SIGKILL at chosen log lines, so it has no signal handling and no clean exit: what survives is
 * what the evidence store and the outbox put on disk.
 */
import { createLogger } from "../../src/agent/log.js";
import { startGuardian, type GuardianOptions } from "../../src/guardian/service/index.js";

// Mocha loads every file under test/: only a process started on this file runs a guardian.
if (import.meta.main) {
  const options = JSON.parse(process.argv[2]) as GuardianOptions;
  const guardian = await startGuardian({ ...options, log: createLogger({ level: "debug", stream: process.stdout }) });
  process.stdout.write(JSON.stringify({ msg: "guardian ready", address: guardian.address }) + "\n");
}

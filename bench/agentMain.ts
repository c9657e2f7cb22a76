/**
 * The off-chain throughput bench (`benchAgent`) in a process of its own, printing its figures as
 * JSON: a fresh heap, with no in-process Hardhat network (and the fleets the gas bench built)
 * beside it for the garbage collector to walk. Run by `bench/run.ts`.
 */
import { benchAgent } from "./agent.js";

benchAgent().then(
  (results) => {
    process.stdout.write(JSON.stringify(results) + "\n");
    process.exit(0);
  },
  (err) => {
    console.error(err);
    process.exit(1);
  },
);

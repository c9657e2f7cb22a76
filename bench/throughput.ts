/** Prints the agent throughput figures alone: `npx tsx bench/throughput.ts`. */
import { benchAgent } from "./agent.js";

benchAgent().then((r) => console.table(r));

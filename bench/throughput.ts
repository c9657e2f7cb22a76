/** Prints the agent throughput figures alone: `npx ts-node bench/throughput.ts`. */
import { benchAgent } from "./agent.js";

benchAgent().then((r) => console.table(r));

import { connection, hre } from "../helpers/hardhat.js";

/**
 * Runs task `name` with `args` (its options by their camelCase names, checked and defaulted as on
 * the command line). A task acts on `network.getOrCreate()`'s chain, which is the tests' chain only
 * if the shared connection was taken the same way: otherwise the task would act on an empty chain
 * of its own, so that fails here, by name.
 */
export async function runTask(name: string, args: Record<string, unknown> = {}): Promise<any> {
  if ((await hre.network.getOrCreate()) !== connection)
    throw new Error("test/helpers/hardhat.ts must take its connection with network.getOrCreate(): tasks use that one");
  return hre.tasks.getTask(name).run(args);
}

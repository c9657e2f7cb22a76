/**
 * Every operator task (`npx hardhat --help` lists them). Only the definitions load with the config:
 * each action is imported when its task runs.
 */
import { accessTasks } from "./access.js";
import { channelTasks } from "./channels.js";
import { custodyTasks } from "./custody.js";
import { registryTasks } from "./registry.js";

export const tasks = [...registryTasks, ...accessTasks, ...channelTasks, ...custodyTasks];

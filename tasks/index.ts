/**
 * Every operator task (`npx hardhat --help` lists them). Only the definitions load with the config:
 * each action is imported when its task runs.
 */
import module from "node:module";
import { accessTasks } from "./access.js";
import { beaconTasks } from "./beacons.js";
import { channelTasks } from "./channels.js";
import { custodyTasks } from "./custody.js";
import { registryTasks } from "./registry.js";
import { watchTasks } from "./watch.js";

// V8's compiled code of every module loaded from here on (a task's action, ethers, the plugins'
// network hooks) is kept on disk (NODE_COMPILE_CACHE, or the OS temp dir) and reused by the next
// command: a task's start-up is mostly loading modules. A failure to cache only costs speed.
module.enableCompileCache?.();

export const tasks = [
  ...registryTasks,
  ...accessTasks,
  ...channelTasks,
  ...custodyTasks,
  ...beaconTasks,
  ...watchTasks,
];

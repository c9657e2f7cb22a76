/**
 * The tests' chain. Hardhat 3 has no global network: every `network.create()` is a chain of its own.
 * Test files, their helpers, the bench and the operator tasks all use the process's one connection
 * (`getOrCreate`), so a fixture deployed by a helper is on the chain a test or a task reads. Under
 * `hardhat run` (bench, demo) it is the `--network`.
 */
import hardhat, { network } from "hardhat";

export const hre = hardhat;
export const connection = await network.getOrCreate();
export const { ethers, networkHelpers, ignition } = connection;
export const artifacts = hre.artifacts;

export const time = networkHelpers.time;
export const loadFixture = networkHelpers.loadFixture.bind(networkHelpers);
export const setBalance = networkHelpers.setBalance.bind(networkHelpers);
export const mine = networkHelpers.mine.bind(networkHelpers);

/**
 * Whether this run measures coverage (`hardhat test --coverage`): instrumented contracts are much
 * slower, and a property needs far fewer runs to reach every line than to find a bug.
 */
export const UNDER_COVERAGE = hre.globalOptions.coverage === true;

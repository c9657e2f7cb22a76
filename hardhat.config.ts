import path from "node:path";
import { subtask, vars } from "hardhat/config";
import { TASK_COMPILE_SOLIDITY_GET_SOLC_BUILD } from "hardhat/builtin-tasks/task-names";
import type { HardhatUserConfig } from "hardhat/config";
import "@nomicfoundation/hardhat-toolbox";
import "./tasks/registry";
import "./tasks/custody";
import "./tasks/access";
import "./tasks/channels";

const SOLC_VERSION = "0.8.30";

// No internet here or in CI: Hardhat must not download solc. Serve the pinned solc-js build
// that ships in node_modules instead (Hardhat's documented way to use a custom compiler).
subtask(TASK_COMPILE_SOLIDITY_GET_SOLC_BUILD, async (args: { solcVersion: string }, _hre, runSuper) => {
  if (args.solcVersion !== SOLC_VERSION) return runSuper();
  const compilerPath = path.join(__dirname, "node_modules", "solc", "soljson.js");
  return { compilerPath, isSolcJs: true, version: args.solcVersion, longVersion: `${SOLC_VERSION}+commit.73712a01` };
});

// Any EVM chain: its RPC URL from the environment, its deployer key from a Hardhat configuration
// variable (`npx hardhat vars set CUSTOS_DEPLOYER_KEY`), never from the repository.
const remote: HardhatUserConfig["networks"] = process.env.CUSTOS_RPC_URL
  ? {
      remote: {
        url: process.env.CUSTOS_RPC_URL,
        accounts: vars.has("CUSTOS_DEPLOYER_KEY") ? [vars.get("CUSTOS_DEPLOYER_KEY")] : [],
      },
    }
  : {};

const config: HardhatUserConfig = {
  networks: {
    // `npx hardhat node` serves 8545; tests that start their own node on another port say so here.
    localhost: { url: process.env.CUSTOS_LOCALHOST_URL ?? "http://127.0.0.1:8545" },
    ...remote,
  },
  solidity: {
    version: SOLC_VERSION,
    settings: {
      evmVersion: "prague",
      optimizer: { enabled: true, runs: 10_000 },
    },
  },
  typechain: { outDir: "typechain-types", target: "ethers-v6" },
  gasReporter: { enabled: process.env.REPORT_GAS === "true" },
  mocha: { timeout: 120_000 },
};

export default config;

import { createRequire } from "node:module";
import hardhatToolboxMochaEthers from "@nomicfoundation/hardhat-toolbox-mocha-ethers";
import { configVariable, defineConfig } from "hardhat/config";
import { tasks } from "./tasks/index.js";

const require = createRequire(import.meta.url);

export default defineConfig({
  plugins: [hardhatToolboxMochaEthers],
  tasks,
  solidity: {
    version: "0.8.30",
    // No internet here or in CI: with `path` set, Hardhat uses the pinned solc-js build from the
    // `solc` package instead of downloading a compiler.
    path: require.resolve("solc/soljson.js"),
    // OpenZeppelin's forwarder and timelock are deployed as they are: compiled from the package.
    npmFilesToBuild: [
      "@openzeppelin/contracts/metatx/ERC2771Forwarder.sol",
      "@openzeppelin/contracts/governance/TimelockController.sol",
    ],
    settings: {
      evmVersion: "prague",
      optimizer: { enabled: true, runs: 10_000 },
    },
  },
  networks: {
    // `npx hardhat node` serves 8545; tests that start their own node on another port say so here.
    localhost: { type: "http", url: process.env.CUSTOS_LOCALHOST_URL ?? "http://127.0.0.1:8545" },
    // Foundry's anvil, the second real node (`npm run demo:anvil` starts one and sets the URL). Its
    // unlocked dev accounts sign: the node's `eth_accounts`, as with `hardhat node`.
    anvil: { type: "http", url: process.env.CUSTOS_ANVIL_URL ?? "http://127.0.0.1:8546" },
    // Any EVM chain: its RPC URL and deployer key are configuration variables (the environment, or
    // `npx hardhat keystore set CUSTOS_DEPLOYER_KEY`), read only when this network is used.
    remote: {
      type: "http",
      url: configVariable("CUSTOS_RPC_URL"),
      accounts: [configVariable("CUSTOS_DEPLOYER_KEY")],
    },
  },
  typechain: { outDir: "typechain-types" },
  test: {
    mocha: { timeout: 120_000 },
    // test/solidity (see its README). CUSTOS_FUZZ_SEED (0x + 64 hex digits) varies or replays the
    // fuzz and invariant runs; unset, Hardhat's fixed default seed makes every run the same.
    solidity: {
      fuzz: {
        runs: 256,
        ...((seed?: string) => {
          if (!seed) return {};
          if (!/^0x[0-9a-fA-F]{1,64}$/.test(seed)) {
            throw new Error(`CUSTOS_FUZZ_SEED must be 0x and 1 to 64 hex digits (a uint256), not "${seed}"`);
          }
          return { seed };
        })(process.env.CUSTOS_FUZZ_SEED),
      },
      // 50 runs × 200 calls = 10,000 handler calls per invariant. Handlers catch every refusal
      // themselves, so a revert reaching the runner is a handler bug: it fails the suite.
      invariant: { runs: 50, depth: 200, failOnRevert: true },
    },
  },
});

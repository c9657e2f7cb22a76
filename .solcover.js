module.exports = {
  // Test doubles and attackers are not the suite's code.
  skipFiles: ["test/"],
  // OpenZeppelin's P256 needs the Yul optimizer's stack allocation to compile unoptimised.
  configureYulOptimizer: true,
  istanbulReporter: ["text", "text-summary", "json-summary", "html"],
};

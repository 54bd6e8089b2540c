// The local JSON-RPC node FedLedger's integration tests start: `npx hardhat node`.
// Nothing is compiled here; FedLedger deploys its own Vyper bytecode over JSON-RPC.

/** @type import('hardhat/config').HardhatUserConfig */
module.exports = {
  networks: {
    hardhat: {
      chainId: 31337,
      // Vyper 0.4 emits Cancun opcodes (MCOPY, transient storage) and our contracts pin that EVM
      // version; naming the hardfork keeps a Hardhat upgrade from changing the rules under the tests.
      hardfork: "cancun",
    },
  },
};

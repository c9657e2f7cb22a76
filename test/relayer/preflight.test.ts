/**
 * The relayer's start, as an operator runs it (`src/relayer/cli.ts` in its own process): started
 * with nothing but the Ignition deployment it finds, every contract of the suite is on its
 * allowlist, and a lock's unlock-log anchor lands; every start-up mistake (the node, the chain, a
 * contract address that is empty or another contract or another deployment's, an account without
 * ETH, the keystore's password) is one line on stderr naming the flag, and the process exits 2.
 */
import { expect } from "chai";
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { Wallet, ethers } from "ethers";
import { deploySuite } from "../../src/deploy/suite.js";
import { LockAccess__factory } from "../../typechain-types/index.js";
import { freePort } from "../helpers/node.js";
import {
  deadlineIn,
  fastHasher,
  get,
  makeFleet,
  post,
  signDeviceMessage,
  tempDir,
  until,
  type Fleet,
} from "./fixtures.js";
import { keystoreFiles, runRelayerToExit, spawnRelayer } from "./process.js";

describe("relayer start (issue 14): the suite from its deployment, and every start-up mistake named in one line", function () {
  this.timeout(120_000);
  let fleet: Fleet;
  let keys: { keystore: string; passwordFile: string };

  before(async function () {
    fleet = await makeFleet({ devices: 2 });
    keys = keystoreFiles(fleet.relayerWallet);
  });

  /** The flags of a start that passes every check; `change` replaces or adds some. */
  const argsWith = (change: Record<string, string | undefined> = {}) => {
    const flags: Record<string, string | undefined> = {
      "--rpc": fleet.node.url,
      "--keystore": keys.keystore,
      "--password-file": keys.passwordFile,
      "--registry": fleet.addresses.registry,
      "--data": tempDir(),
      ...change,
    };
    return Object.entries(flags).flatMap(([k, v]) => (v === undefined ? [] : [k, v]));
  };

  /** Runs a start that must fail: exit code 2 and exactly one line on stderr, which is returned. */
  async function refused(args: string[], env: Record<string, string> = {}): Promise<string> {
    const r = await runRelayerToExit(args, env);
    expect(r.code, `${r.stdout}\n${r.stderr}`).to.equal(2);
    const lines = r.stderr.trimEnd().split("\n");
    expect(lines, r.stderr).to.have.length(1);
    expect(lines[0]).to.match(/^custos-relayer: /);
    return lines[0].slice("custos-relayer: ".length);
  }

  it("started with nothing but this chain's Ignition deployment, it allows every contract: a lock's anchor lands", async function () {
    // An operator's project folder: Ignition's deployment of the Custos module for chain 31337.
    const project = tempDir("custos-project-");
    const dir = path.join(project, "ignition", "deployments", "chain-31337");
    mkdirSync(dir, { recursive: true });
    const a = fleet.addresses;
    writeFileSync(
      path.join(dir, "deployed_addresses.json"),
      JSON.stringify({
        "Custos#ERC2771Forwarder": a.forwarder,
        "Custos#ERC7913P256SHA256Verifier": a.p256Verifier,
        "Custos#DeviceRegistry": a.registry,
        "Custos#LockAccess": a.lockAccess,
        "Custos#PaymentChannels": a.paymentChannels,
        "Custos#CustodyLedger": a.custodyLedger,
        "Custos#LocationBeacons": a.locationBeacons,
      }),
    );
    const relayer = await spawnRelayer(
      [
        "--rpc",
        fleet.node.url,
        "--keystore",
        keys.keystore,
        "--password-file",
        keys.passwordFile,
        "--batch-interval-ms",
        "50",
      ],
      {},
      { cwd: project },
    );
    try {
      const listening = JSON.parse(relayer.lines.find((l) => l.includes('"event":"listening"'))!);
      expect(listening).to.include({
        registry: a.registry.toLowerCase(),
        lockAccess: a.lockAccess.toLowerCase(),
        paymentChannels: a.paymentChannels.toLowerCase(),
        custodyLedger: a.custodyLedger.toLowerCase(),
        locationBeacons: a.locationBeacons.toLowerCase(),
      });
      const h = await fastHasher();
      const lock = fleet.devices[0];
      const now = BigInt((await fleet.provider.getBlock("latest"))!.timestamp);
      const anchor = signDeviceMessage(
        h,
        lock.key,
        "UnlockLog",
        { chainId: 31337n, verifyingContract: a.lockAccess },
        {
          lock: lock.id,
          seq: 1n,
          root: ethers.id("a day of unlocks"),
          count: 12n,
          fromTime: now - 86_400n,
          toTime: now,
          deadline: await deadlineIn(fleet.provider),
        },
      );
      const r = await post(relayer.url, "/v1/messages", anchor);
      expect(r.status, JSON.stringify(r.body)).to.equal(202);
      await until(
        async () => (await get(relayer.url, `/v1/messages/${r.body.id}`)).body.status === "confirmed",
        30_000,
        "the anchor to be confirmed",
      );
      const locks = LockAccess__factory.connect(a.lockAccess, fleet.provider);
      expect((await locks.lockState(lock.id)).logSeq).to.equal(1n);
    } finally {
      await relayer.kill();
    }
  });

  it("mistake: --rpc of a node that is not running", async function () {
    const url = `http://127.0.0.1:${await freePort()}`;
    expect(await refused(argsWith({ "--rpc": url }))).to.equal(
      `--rpc ${url}: the node does not answer (connection refused): is it running, at that URL?`,
    );
  });

  it("mistake: --chain-id of another chain than the node's", async function () {
    expect(await refused(argsWith({ "--chain-id": "8453" }))).to.equal(
      `--chain-id 8453: the node at --rpc ${fleet.node.url} is chain 31337 — point --rpc at the right node, or correct --chain-id`,
    );
  });

  it("mistake: --registry where there is no contract (another node, or a typo)", async function () {
    const empty = Wallet.createRandom().address;
    expect(await refused(argsWith({ "--registry": empty }))).to.equal(
      `--registry ${empty.toLowerCase()}: no contract there on chain 31337 — is --rpc the node it was deployed to, and the address right?`,
    );
  });

  it("mistake: --registry holding another contract of the suite (LockAccess)", async function () {
    expect(await refused(argsWith({ "--registry": fleet.addresses.lockAccess }))).to.equal(
      `--registry ${fleet.addresses.lockAccess.toLowerCase()}: the contract there is not a DeviceRegistry ` +
        `(its EIP-712 domain is "Custos LockAccess" v1, not "Custos DeviceRegistry" v1)`,
    );
  });

  it("mistake: --registry holding a contract with no EIP-712 domain at all", async function () {
    expect(await refused(argsWith({ "--registry": fleet.addresses.p256Verifier }))).to.equal(
      `--registry ${fleet.addresses.p256Verifier.toLowerCase()}: the contract there is not a DeviceRegistry (it has no EIP-712 domain): is the address right?`,
    );
  });

  it("mistake: --lock-access holding PaymentChannels", async function () {
    expect(await refused(argsWith({ "--lock-access": fleet.addresses.paymentChannels }))).to.match(
      /^--lock-access 0x[0-9a-f]{40}: the contract there is not a LockAccess \(its EIP-712 domain is "Custos PaymentChannels" v1, not "Custos LockAccess" v1\)$/,
    );
  });

  it("mistake: --custody-ledger of another deployment (another registry)", async function () {
    const other = await deploySuite(fleet.admin);
    expect(await refused(argsWith({ "--custody-ledger": other.custodyLedger }))).to.equal(
      `--custody-ledger ${other.custodyLedger.toLowerCase()}: this CustodyLedger belongs to registry ` +
        `${other.registry.toLowerCase()}, not to --registry ${fleet.addresses.registry.toLowerCase()} (another deployment?)`,
    );
  });

  it("mistake: --deployment of another deployment than --registry", async function () {
    const file = path.join(tempDir(), "deployed_addresses.json");
    const other = Wallet.createRandom().address;
    writeFileSync(file, JSON.stringify({ "Custos#DeviceRegistry": other }));
    expect(await refused(argsWith({ "--deployment": file }))).to.equal(
      `--deployment ${file}: its registry is ${other}, not --registry ${fleet.addresses.registry} (another deployment?)`,
    );
  });

  it("mistake: no --registry, and no Ignition deployment of the node's chain to take it from", async function () {
    const r = await runRelayerToExit(argsWith({ "--registry": undefined }), {}, { cwd: tempDir() });
    expect(r.code).to.equal(2);
    expect(r.stderr.trimEnd()).to.equal(
      "custos-relayer: --registry is required: no Ignition deployment of chain 31337 at " +
        "ignition/deployments/chain-31337/deployed_addresses.json (or name one with --deployment)",
    );
  });

  it("mistake: a relayer account without ETH", async function () {
    const account = Wallet.createRandom();
    const poor = keystoreFiles(account as unknown as Wallet);
    const address = account.address.toLowerCase();
    expect(await refused(argsWith({ "--keystore": poor.keystore, "--password-file": poor.passwordFile }))).to.equal(
      `--keystore ${poor.keystore}: the relayer's account ${address} has no ETH on chain 31337 to pay gas with: fund it, then start the relayer`,
    );
  });

  it("mistake: the wrong password in --password-file (not raw library text)", async function () {
    const wrong = path.join(tempDir(), "wrong.pw");
    writeFileSync(wrong, "battery staple\n");
    expect(await refused(argsWith({ "--password-file": wrong }))).to.equal(
      `--keystore ${keys.keystore}: the password from --password-file ${wrong} does not open it (a different key's password?)`,
    );
  });

  it("mistake: the wrong password in CUSTOS_RELAYER_PASSWORD", async function () {
    expect(
      await refused(argsWith({ "--password-file": undefined }), { CUSTOS_RELAYER_PASSWORD: "battery staple" }),
    ).to.equal(
      `--keystore ${keys.keystore}: the password from CUSTOS_RELAYER_PASSWORD does not open it (a different key's password?)`,
    );
  });

  it("mistake: no password at all", async function () {
    const unset = await runRelayerToExit(argsWith({ "--password-file": undefined }), {
      CUSTOS_RELAYER_PASSWORD: undefined,
    });
    expect(unset.code).to.equal(2);
    expect(unset.stderr.trimEnd()).to.equal(
      `custos-relayer: --keystore ${keys.keystore} needs its password: give --password-file FILE, or set CUSTOS_RELAYER_PASSWORD`,
    );
  });
});

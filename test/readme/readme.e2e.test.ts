/**
 * README.md's "Deploying" and "Running agents and the relayer" sections, run as a user types them:
 * their ```sh blocks, command by command, in one bash, against a fresh `npx hardhat node` — each
 * command's exit status and the key part of its output checked (a JSON field, a line, a file, and
 * what the chain then holds). A README command with no step here, a step with no README command,
 * a flag or command that does not exist (a non-zero exit), or an output of another shape fails the
 * test: the README cannot drift from the code without it. A block that cannot run here is marked
 * `<!-- readme-test: skip (reason) -->` on the line before it.
 *
 * Where it runs: in the project's root, as the user does (`npx custos-agent` is the project's own
 * bin, `npm run relayer` runs there, Ignition deploys only modules under ./ignition/modules and
 * writes ./ignition/deployments, and Hardhat compiles everything again under another root). The
 * files the README writes there are declared by its steps and handled by `RootFiles` (the
 * developer's own put aside and back). The commands' stdout and stderr go to a temporary directory.
 *
 * The node: the README's `npx hardhat node &` with `--port` added, on a free port instead of 8545,
 * and each URL and `--port` of the README (8545, the relayer's 8787, the lock's 8700, the meter's
 * 8710) moved to a free port the same way; `--network localhost` reaches it through
 * CUSTOS_LOCALHOST_URL (hardhat.config.ts). Nothing else of a command is changed. The shell starts
 * with no CUSTOS_* variable of this process. It needs bash, jq and curl, as the README does.
 *
 * Each flow's time, end to end, is printed (and each command's).
 */
import { expect } from "chai";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { JsonRpcProvider } from "ethers";
import { freePort } from "../helpers/node.js";
import { readmeCommands, Shell, type Background, type ReadmeCommand, type Run } from "./shell.js";
import { RootFiles } from "./rootFiles.js";
import {
  CustodyLedger__factory,
  DeviceRegistry__factory,
  PaymentChannels__factory,
} from "../../typechain-types/index.js";
import parameters from "../../ignition/parameters.example.json" with { type: "json" };

const ROOT = path.join(import.meta.dirname, "..", "..");
const README = path.join(ROOT, "README.md");
const CHAIN = "ignition/deployments/chain-31337";
const DEPLOYED = `${CHAIN}/deployed_addresses.json`;

/** The README's fixed ports, each moved to a free one. */
const README_PORTS = [8545, 8787, 8700, 8710] as const;

// Hardhat's well-known accounts, as the README names them.
const ACCOUNT = {
  1: "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
  2: "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC",
  3: "0x90F79bf6EB2c4f870365E785982E1f101E93b906",
} as const;

const ADDRESS = /^0x[0-9a-fA-F]{40}$/;
const BYTES32 = /^0x[0-9a-f]{64}$/;
const DECIMAL = /^[1-9][0-9]*$/;

/** What a step's checks get: its run, what earlier steps learnt, and the chain. */
interface Ctx {
  run: Run;
  provider: JsonRpcProvider;
  ports: Record<number, number>;
  /** Ignition's deployed_addresses.json, once deployed. */
  deployed: Record<string, string>;
  /** Values steps leave for later steps. */
  seen: Record<string, string>;
  /** The last JSON line printed on stdout. */
  json(): Record<string, any>;
  /** Every JSON line printed on stdout. */
  jsonLines(): Record<string, any>[];
  /** A file the command wrote, relative to the project root. */
  file(name: string): string;
}

interface Step {
  /** Which README command this is (matched against its text). */
  command: RegExp;
  /** What the step is, in the report. */
  what: string;
  /** A background command: the line of its output that says it is ready. */
  ready?: (ports: Record<number, number>) => RegExp;
  /** Shell variables to read after it. */
  vars?: string[];
  /** Paths (relative to the project root) it writes: checked to exist after it. */
  creates?: string[];
  /** Its exit status (default 0). */
  exit?: number;
  check?: (ctx: Ctx, bg?: Background) => unknown;
}

/** What the agent and the relayer write by default in the directory they run in. */
const DEFAULT_STATE = [".custos", ".custos-agent"];

const DEPLOYING: Step[] = [
  {
    command: /^npx hardhat node &$/,
    what: "a local node",
    ready: (ports) => new RegExp(`Started HTTP and WebSocket JSON-RPC server at http://[^:/]+:${ports[8545]}/`),
  },
  {
    command: /^npx hardhat ignition deploy ignition\/modules\/Custos\.ts --network localhost /,
    what: "the suite deployed with Ignition",
    creates: [DEPLOYED],
    check: async ({ run, file, provider }) => {
      // The default build profile: the artifacts `npx hardhat build` made, nothing compiled again.
      expect(run.stdout + run.stderr, "the local deploy compiled the contracts again").to.not.match(
        /Compiled \d+ Solidity files?/,
      );
      expect(run.stdout).to.include("[ Custos ] successfully deployed");
      const deployed = JSON.parse(readFileSync(file(DEPLOYED), "utf8")) as Record<string, string>;
      for (const name of [
        "ERC2771Forwarder",
        "TimelockController",
        "DeviceRegistry",
        "CustodyLedger",
        "LocationBeacons",
        "LockAccess",
        "PaymentChannels",
        "GuardianQuorum",
      ]) {
        expect(deployed[`Custos#${name}`], name).to.match(ADDRESS);
        expect(run.stdout).to.include(`Custos#${name} - ${deployed[`Custos#${name}`]}`);
        expect(await provider.getCode(deployed[`Custos#${name}`]), name).to.not.equal("0x");
      }
    },
  },
  {
    command:
      /^npx hardhat registry:batch --csv ignition\/devices\.example\.csv --out batch\/ --commit --signer 1 --network localhost$/,
    what: "the example batch committed by its manufacturer",
    creates: ["batch/batch.json", "batch/proofs.jsonl", "batch/tree.json"],
    check: async ({ json, file, deployed, provider }) => {
      const summary = json();
      expect(summary).to.include({
        manufacturer: parameters.Custos.manufacturers[0],
        devices: 8,
        registry: deployed["Custos#DeviceRegistry"],
        chainId: "31337",
      });
      expect(summary.batchId).to.match(DECIMAL);
      expect(summary.commitTx).to.match(BYTES32);
      expect(JSON.parse(readFileSync(file("batch/batch.json"), "utf8"))).to.deep.equal(summary);
      expect(readFileSync(file("batch/proofs.jsonl"), "utf8").trim().split("\n")).to.have.length(8);
      const registry = DeviceRegistry__factory.connect(deployed["Custos#DeviceRegistry"], provider);
      expect((await registry.batch(BigInt(summary.batchId))).root).to.equal(summary.root);
    },
  },
];

/** `export NAME=…` of a contract's address from the deployment. */
function exported(name: string, future: string): Step {
  return {
    command: new RegExp(`^export ${name}=\\$\\(jq -r '\\."Custos#${future}"' \\$DEPLOYED\\)$`),
    what: `${name} from the deployment`,
    vars: [name],
    check: ({ run, deployed }) => expect(run.vars[name]).to.equal(deployed[`Custos#${future}`]),
  };
}

/** The n-th (0-based) device id the claims left. */
const idOf = (seen: Record<string, string>, n: number) => seen.ids.split(" ")[n];

const AGENTS: Step[] = [
  {
    command: /^export CUSTOS_RPC_URL=http:\/\/127\.0\.0\.1:8545$/,
    what: "the node's URL",
    vars: ["CUSTOS_RPC_URL"],
    check: ({ run, ports }) => expect(run.vars.CUSTOS_RPC_URL).to.equal(`http://127.0.0.1:${ports[8545]}`),
  },
  {
    command: /^DEPLOYED=ignition\/deployments\/chain-31337\/deployed_addresses\.json$/,
    what: "where Ignition wrote the addresses",
    vars: ["DEPLOYED"],
    check: ({ run }) => expect(run.vars.DEPLOYED).to.equal(DEPLOYED),
  },
  exported("CUSTOS_REGISTRY", "DeviceRegistry"),
  exported("CUSTOS_LOCK_ACCESS", "LockAccess"),
  exported("CUSTOS_PAYMENT_CHANNELS", "PaymentChannels"),
  exported("CUSTOS_CUSTODY_LEDGER", "CustodyLedger"),
  {
    command: /^export CUSTOS_PASSWORD=/,
    what: "the device keys' passphrase",
    vars: ["CUSTOS_PASSWORD"],
    check: ({ run }) => expect(run.vars.CUSTOS_PASSWORD).to.have.length.above(8),
  },
  {
    command: /^echo '.+' > relayer\.pw$/,
    what: "the relayer key's passphrase file",
    creates: ["relayer.pw"],
  },
  {
    command: /^npx custos-agent key create --kind secp256k1 --out relayer\.json --password-file relayer\.pw$/,
    what: "the relayer's key",
    creates: ["relayer.json"],
    check: ({ json, seen }) => {
      const key = json();
      expect(key).to.include({ file: "relayer.json", kind: "secp256k1" });
      expect(key.address).to.match(ADDRESS);
      seen.relayer = key.address;
    },
  },
  {
    command: /^curl -s \$CUSTOS_RPC_URL .*hardhat_setBalance/s,
    what: "the relayer's account funded",
    check: async ({ json, seen, provider }) => {
      expect(json()).to.deep.include({ result: true });
      expect(await provider.getBalance(seen.relayer)).to.be.above(0n);
    },
  },
  {
    command:
      /^npm run relayer -- --rpc \$CUSTOS_RPC_URL --port 8787 --keystore relayer\.json --password-file relayer\.pw &$/,
    what: "the relayer gateway",
    ready: () => /"event":"listening"/,
    creates: [".custos/relayer"],
    check: ({ ports, deployed, seen }, bg) => {
      const listening = bg!
        .stdout()
        .split("\n")
        .filter((l) => l.includes('"event":"listening"'))
        .map((l) => JSON.parse(l))[0];
      expect(listening.url).to.equal(`http://127.0.0.1:${ports[8787]}`);
      expect(listening.relayer).to.equal(seen.relayer.toLowerCase());
      // Every contract of the deployment is on its allowlist, with no flag naming one.
      for (const [key, future] of [
        ["registry", "DeviceRegistry"],
        ["locationBeacons", "LocationBeacons"],
        ["lockAccess", "LockAccess"],
        ["paymentChannels", "PaymentChannels"],
        ["custodyLedger", "CustodyLedger"],
      ])
        expect(listening[key], key).to.equal(deployed[`Custos#${future}`].toLowerCase());
      expect(bg!.stdout()).to.include('"event":"deployment"');
    },
  },
  {
    command: /^export CUSTOS_RELAYER_URL=http:\/\/127\.0\.0\.1:8787$/,
    what: "the relayer's URL",
    vars: ["CUSTOS_RELAYER_URL"],
    check: ({ run, ports }) => expect(run.vars.CUSTOS_RELAYER_URL).to.equal(`http://127.0.0.1:${ports[8787]}`),
  },
  {
    command: /^FIRMWARE=0x[0-9a-f]{64}$/,
    what: "the fleet's firmware hash",
    vars: ["FIRMWARE"],
    check: ({ run, seen }) => {
      expect(run.vars.FIRMWARE).to.match(BYTES32);
      seen.firmware = run.vars.FIRMWARE;
    },
  },
  {
    command: /^npx custos-agent key create --kind secp256k1 --count 4 --out-dir fleet /,
    what: "a test fleet's keys and devices.csv",
    creates: ["fleet/device-0001.json", "fleet/device-0004.json", "fleet/keys.jsonl", "fleet/devices.csv"],
    check: ({ run, json, file, seen }) => {
      expect(json()).to.include({ dir: "fleet", count: 4, kind: "secp256k1", csv: "fleet/devices.csv" });
      expect(run.stderr).to.include("custos-agent: 4/4 keys (100%");
      const csv = readFileSync(file("fleet/devices.csv"), "utf8").trim().split("\n");
      expect(csv[0]).to.equal("deviceKey,model,firmwareHash");
      expect(csv).to.have.length(5);
      expect(csv[1].split(",")[2]).to.equal(seen.firmware);
    },
  },
  {
    command:
      /^npx hardhat registry:batch --csv fleet\/devices\.csv --out fleet\/batch --commit --signer 1 --network localhost$/,
    what: "the fleet's batch committed",
    creates: ["fleet/batch/batch.json", "fleet/batch/proofs.jsonl"],
    check: async ({ json, deployed, provider }) => {
      const summary = json();
      expect(summary).to.include({ manufacturer: ACCOUNT[1], devices: 4, registry: deployed["Custos#DeviceRegistry"] });
      const registry = DeviceRegistry__factory.connect(deployed["Custos#DeviceRegistry"], provider);
      expect((await registry.batch(BigInt(summary.batchId))).root).to.equal(summary.root);
    },
  },
  {
    command:
      /^for n in 1 2 3 4; do\n.*sign claim .*registry:claim --message fleet\/claim\.json --network localhost\ndone$/s,
    what: "the four devices claimed by account #2",
    creates: ["fleet/claim.json"],
    check: async ({ jsonLines, file, deployed, provider, seen }) => {
      const keys = readFileSync(file("fleet/keys.jsonl"), "utf8")
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l));
      const claims = jsonLines();
      expect(claims.map((c) => c.deviceId)).to.deep.equal(keys.map((k) => k.deviceId));
      const registry = DeviceRegistry__factory.connect(deployed["Custos#DeviceRegistry"], provider);
      for (const c of claims) {
        expect(c.owner).to.equal(ACCOUNT[2]);
        expect(await registry.ownerOf(BigInt(c.deviceId))).to.equal(ACCOUNT[2]);
      }
      seen.ids = keys.map((k) => k.deviceId).join(" ");
    },
  },
  {
    command: /^read TRACKER LOCK CHARGER CAR <<< /,
    what: "the devices' ids by role",
    vars: ["TRACKER", "LOCK", "CHARGER", "CAR"],
    check: ({ run, seen }) =>
      expect([run.vars.TRACKER, run.vars.LOCK, run.vars.CHARGER, run.vars.CAR].join(" ")).to.equal(seen.ids),
  },
  {
    command: /^npx custos-agent --keystore fleet\/device-0001\.json --data-dir fleet\/tracker attest-firmware /,
    what: "a firmware attestation delivered through the relayer",
    creates: ["fleet/tracker/outbox.jsonl"],
    check: async ({ json, provider, seen }) => {
      const [m] = json().messages;
      expect(m).to.include({ type: "FirmwareAttestation", status: "delivered", device: idOf(seen, 0) });
      // Sent from the relayer's account: it went through the relayer.
      expect((await provider.getTransaction(m.txHash))!.from).to.equal(seen.relayer);
    },
  },
  {
    command: /^npx hardhat custody:create --epc \S+ --tracker \$TRACKER .*> shipment\.json$/s,
    what: "a shipment created by account #2 for account #3",
    creates: ["shipment.json"],
    check: ({ file, seen }) => {
      const shipment = JSON.parse(readFileSync(file("shipment.json"), "utf8"));
      expect(shipment.shipment).to.match(BYTES32);
      expect(shipment.creator).to.equal(ACCOUNT[2]);
      seen.shipment = shipment.shipment;
    },
  },
  {
    command: /^npx custos-agent --keystore fleet\/device-0001\.json --data-dir fleet\/tracker tracker run /,
    what: "the tracker's readings sealed and checkpointed",
    creates: ["fleet/tracker/tracker.jsonl"],
    check: async ({ jsonLines, deployed, provider, seen }) => {
      const [sealed, report] = jsonLines();
      expect(sealed).to.include({ checkpoint: 1, readings: 3 });
      expect(report.messages[0]).to.include({ type: "Checkpoint", status: "delivered" });
      const ledger = CustodyLedger__factory.connect(deployed["Custos#CustodyLedger"], provider);
      expect((await ledger.shipmentOf(seen.shipment)).checkpointSeq).to.equal(1n);
      expect((await provider.getTransaction(report.messages[0].txHash))!.from).to.equal(seen.relayer);
    },
  },
  {
    command: /^npx hardhat custody:history --shipment \$\(jq -r \.shipment shipment\.json\) --network localhost$/,
    what: "the shipment's history, re-verified",
    check: ({ run, seen }) => {
      expect(run.stdout).to.include(seen.shipment);
      expect(run.stdout).to.match(/checkpoint #1: 3 readings, .* signature ✓/);
      expect(run.stdout).to.include("every signature verified");
    },
  },
  {
    command: /^npx hardhat channel:open --payer \$CAR --payee \$CHARGER .*> channel\.json$/s,
    what: "a payment channel from the car to the charger",
    creates: ["channel.json"],
    check: async ({ file, deployed, provider, seen }) => {
      const opened = JSON.parse(readFileSync(file("channel.json"), "utf8"));
      expect(opened.channel).to.match(BYTES32);
      seen.channel = opened.channel;
      const channels = PaymentChannels__factory.connect(deployed["Custos#PaymentChannels"], provider);
      expect((await channels.channelState(opened.channel)).deposit).to.equal(10n ** 18n);
    },
  },
  {
    command: /^npx custos-agent --keystore fleet\/device-0003\.json --data-dir fleet\/charger meter serve .*&$/s,
    what: "the charger: meter serve",
    ready: (ports) => new RegExp(`"url":"http://127\\.0\\.0\\.1:${ports[8710]}"`),
    creates: ["fleet/charger"],
    check: ({ seen }, bg) => expect(JSON.parse(bg!.stdout().split("\n")[0]).channels).to.deep.equal([seen.channel]),
  },
  {
    command: /^npx custos-agent --keystore fleet\/device-0004\.json meter pay /,
    what: "the car: 10 units paid in vouchers",
    check: ({ json, seen }) => {
      const paid = json();
      expect(paid).to.include({ channel: seen.channel, units: "10", paid: "10000000000" });
      expect(paid.vouchers.sent).to.be.above(0);
      expect(paid.vouchers).to.include({ accepted: paid.vouchers.sent, refused: 0, unreachable: 0 });
    },
  },
  {
    command: /^npx custos-agent --keystore fleet\/device-0002\.json --data-dir fleet\/lock lock serve --port 8700 &$/,
    what: "the smart lock: lock serve",
    ready: (ports) => new RegExp(`"url":"http://127\\.0\\.0\\.1:${ports[8700]}"`),
    creates: ["fleet/lock"],
    check: ({ seen }, bg) => expect(JSON.parse(bg!.stdout().split("\n")[0]).lock).to.equal(idOf(seen, 1)),
  },
  {
    command: /^npx custos-agent key create --kind secp256k1 --out phone\.json$/,
    what: "the guest's phone key",
    creates: ["phone.json"],
    check: ({ json }) => expect(json()).to.include({ file: "phone.json", kind: "secp256k1" }),
  },
  {
    command: /^npx hardhat lock:grant --lock \$LOCK --holder 0x\$\(jq -r \.address phone\.json\) .*--out key\.json/s,
    what: "a key certificate from the lock's owner",
    creates: ["key.json"],
    check: ({ json, seen }) =>
      expect(json()).to.include({
        out: "key.json",
        lock: idOf(seen, 1),
        keyId: "1",
        issuedBy: "owner",
        issuer: ACCOUNT[2],
      }),
  },
  {
    command:
      /^npx custos-agent guest unlock --cert key\.json --lock http:\/\/127\.0\.0\.1:8700 --keystore phone\.json$/,
    what: "the guest's unlock: open",
    check: ({ json }) => expect(json()).to.include({ open: true }),
  },
  {
    command: /^npx custos-agent key create --kind secp256k1 --out fleet\/tracker-2\.json$/,
    what: "the tracker's next key",
    creates: ["fleet/tracker-2.json"],
    check: ({ json, seen }) => {
      seen.newKey = json().signer;
    },
  },
  {
    command:
      /^npx custos-agent --keystore fleet\/device-0001\.json key rotate --new-keystore fleet\/tracker-2\.json --out rotation\.json$/,
    what: "the rotation signed by both keys",
    creates: ["rotation.json"],
    check: ({ json, seen }) =>
      expect(json()).to.include({
        device: idOf(seen, 0),
        newKey: seen.newKey,
        signedBy: "the new key and the current key",
      }),
  },
  {
    command: /^npx hardhat registry:rotate --rotation rotation\.json --signer 2 --network localhost$/,
    what: "the rotation sent by the owner",
    check: async ({ json, deployed, provider, seen }) => {
      expect(json()).to.include({ device: idOf(seen, 0), newKey: seen.newKey, keyGeneration: 1 });
      const registry = DeviceRegistry__factory.connect(deployed["Custos#DeviceRegistry"], provider);
      expect((await registry.deviceInfo(BigInt(idOf(seen, 0)))).keyGeneration).to.equal(1n);
    },
  },
  {
    command: /^npx custos-agent --keystore fleet\/tracker-2\.json --data-dir fleet\/tracker attest-firmware /,
    what: "the new key attests, under the same device id",
    check: ({ json, seen }) =>
      expect(json().messages[0]).to.include({
        type: "FirmwareAttestation",
        status: "delivered",
        device: idOf(seen, 0),
      }),
  },
];

const FLOWS = [
  { heading: "Deploying", steps: DEPLOYING },
  { heading: "Running agents and the relayer", steps: AGENTS },
];

/** Pairs a section's commands with its steps, in order; any mismatch is named with its README line. */
function pair(commands: ReadmeCommand[], steps: Step[]): [ReadmeCommand, Step][] {
  const pairs: [ReadmeCommand, Step][] = [];
  for (let i = 0; i < Math.max(commands.length, steps.length); i++) {
    const c = commands[i];
    const s = steps[i];
    if (!s) throw new Error(`README.md line ${c.line}: a command no step of test/readme knows: ${c.text}`);
    if (!c) throw new Error(`"${s.what}" (${s.command}) is not in the README any more (after its last command)`);
    if (!s.command.test(c.text))
      throw new Error(`README.md line ${c.line}: expected "${s.what}" (${s.command}), found: ${c.text}`);
    if (!!s.ready !== c.background)
      throw new Error(`README.md line ${c.line}: "${s.what}" should ${s.ready ? "" : "not "}run in the background`);
    pairs.push([c, s]);
  }
  return pairs;
}

/** The command with the README's ports moved to this run's (and `hardhat node` given its port). */
function localize(text: string, ports: Record<number, number>): string {
  const port = /(127\.0\.0\.1:|localhost:|--port )(\d+)/g;
  for (const m of text.matchAll(port))
    if (!(Number(m[2]) in ports)) throw new Error(`a port the test does not move: ${m[0]} in ${text}`);
  let out = text.replace(port, (_m, before: string, p: string) => `${before}${ports[Number(p)]}`);
  if (/^npx hardhat node\b/.test(out) && !/--port/.test(out)) out = out.replace(/\s*&$/, ` --port ${ports[8545]} &`);
  return out;
}

function tail(text: string, lines = 25): string {
  return text.trim().split("\n").slice(-lines).join("\n");
}

describe("README.md: the Deploying and agents-and-relayer sections run as typed", function () {
  this.timeout(300_000);
  const readme = readFileSync(README, "utf8");
  const sections = FLOWS.map(({ heading, steps }) => ({ heading, steps, ...readmeCommands(readme, heading) }));
  // The top-level names the README writes: the steps' files (Ignition's deployment apart), and the defaults.
  const names = [
    ...new Set([
      ...FLOWS.flatMap((f) => f.steps.flatMap((s) => s.creates ?? []))
        .filter((p) => !p.startsWith(`${CHAIN}/`))
        .map((p) => p.split("/")[0]),
      ...DEFAULT_STATE,
    ]),
  ];
  const files = new RootFiles(ROOT, names, CHAIN);
  const outputs = mkdtempSync(path.join(tmpdir(), "custos-readme-"));
  const ports: Record<number, number> = {};
  const seen: Record<string, string> = {};
  const timings: { flow: string; what: string; ms: number }[] = [];
  const flowMs: Record<string, number> = {};
  let deployed: Record<string, string> = {};
  let provider: JsonRpcProvider | undefined;
  let shell: Shell | undefined;
  const killOnExit = () => shell?.killAll();

  before(async function () {
    for (const tool of ["bash", "jq", "curl"])
      if (spawnSync("sh", ["-c", `command -v ${tool}`]).status !== 0)
        throw new Error(`the README's commands need ${tool}, which is not on PATH`);
    // The README and this test agree on every command before anything runs.
    for (const s of sections) pair(s.commands, s.steps);

    for (const p of README_PORTS) {
      let port: number;
      do port = await freePort();
      while (Object.values(ports).includes(port));
      ports[p] = port;
    }
    files.enter();
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("CUSTOS_")));
    env.CUSTOS_LOCALHOST_URL = `http://127.0.0.1:${ports[8545]}`;
    env.HARDHAT_DISABLE_TELEMETRY_PROMPT = "true";
    process.on("exit", killOnExit);
    shell = new Shell(ROOT, env, outputs);
    provider = new JsonRpcProvider(`http://127.0.0.1:${ports[8545]}`, 31337, {
      staticNetwork: true,
      cacheTimeout: -1,
    });
  });

  after(async function () {
    provider?.destroy();
    await shell?.close();
    process.off("exit", killOnExit);
    const stray = files.leave();
    rmSync(outputs, { recursive: true, force: true });
    if (timings.length > 0) {
      console.log("\n    README flows, end to end (each command as typed, against a fresh hardhat node):");
      for (const [flow, ms] of Object.entries(flowMs)) console.log(`      ${flow}: ${(ms / 1000).toFixed(1)} s`);
      console.log("    each command:");
      for (const t of timings) console.log(`      ${(t.ms / 1000).toFixed(1).padStart(5)} s  ${t.flow} — ${t.what}`);
    }
    expect(stray, "the README wrote these at the project root, and no step of test/readme declares them").to.deep.equal(
      [],
    );
  });

  it("every shell block of the two sections is run, or marked skipped with a reason", function () {
    const [deploying, agents] = sections;
    expect(deploying.commands).to.have.length(DEPLOYING.length);
    expect(deploying.skipped).to.have.length(1);
    expect(deploying.skipped[0].reason).to.match(/real chain/);
    expect(agents.commands).to.have.length(AGENTS.length);
    expect(agents.skipped).to.deep.equal([]);
  });

  for (const { heading } of FLOWS) {
    it(`${heading}: every command exits 0 and prints what the README says it does`, async function () {
      const { commands, steps } = sections.find((s) => s.heading === heading)!;
      if (heading !== "Deploying" && !deployed["Custos#DeviceRegistry"])
        throw new Error("the Deploying flow did not complete: nothing to run the agents against");
      const started = performance.now();
      for (const [command, step] of pair(commands, steps)) {
        const text = localize(command.text, ports);
        const where = `README.md line ${command.line} (${step.what}):\n  ${command.text}`;
        let run: Run;
        let bg: Background | undefined;
        if (step.ready) {
          bg = await shell!.start(text, step.ready(ports)).catch((err: Error) => {
            throw new Error(`${where}\n${err.message}`);
          });
          run = { code: 0, stdout: bg.stdout(), stderr: bg.stderr(), ms: bg.ms, vars: {} };
        } else {
          run = await shell!.run(text, step.vars).catch((err: Error) => {
            throw new Error(`${where}\n${err.message}`);
          });
        }
        timings.push({ flow: heading, what: step.what, ms: run.ms });
        const failed = (why: string) =>
          `${where}\n${why}\n--- stdout\n${tail(run.stdout)}\n--- stderr\n${tail(run.stderr)}`;
        expect(run.code, failed(`exit status ${run.code}`)).to.equal(step.exit ?? 0);
        // A documented command never ends in a stack trace.
        expect(run.stderr, failed("a stack trace")).to.not.match(/^\s+at .+:\d+:\d+\)?$/m);
        for (const p of step.creates ?? [])
          expect(existsSync(path.join(ROOT, p)), failed(`${p} was not written`)).to.equal(true);
        if (existsSync(path.join(ROOT, DEPLOYED)))
          deployed = JSON.parse(readFileSync(path.join(ROOT, DEPLOYED), "utf8")) as Record<string, string>;
        const ctx: Ctx = {
          run,
          provider: provider!,
          ports,
          deployed,
          seen,
          json: () => {
            const lines = ctx.jsonLines();
            if (lines.length === 0) throw new Error("no JSON line on stdout");
            return lines.at(-1)!;
          },
          jsonLines: () =>
            run.stdout
              .split("\n")
              .filter((l) => l.trim().startsWith("{"))
              .map((l) => JSON.parse(l) as Record<string, any>),
          file: (name) => path.join(ROOT, name),
        };
        try {
          await step.check?.(ctx, bg);
        } catch (err) {
          (err as Error).message = failed((err as Error).message);
          throw err;
        }
      }
      // The services the section started are still up at its end (none crashed on a request).
      const down = pair(commands, steps)
        .filter(([, s]) => s.ready)
        .map(([c]) => c)
        .filter((c) => !shell!.running().some((b) => b.text === localize(c.text, ports)));
      expect(
        down.map((c) => `line ${c.line}: ${c.text}`),
        "background commands that exited during the flow",
      ).to.deep.equal([]);
      flowMs[heading] = performance.now() - started;
    });
  }
});

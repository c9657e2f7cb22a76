/**
 * The CustodyLedger tasks' actions (definitions and flags: ../custody.ts). Each checks the network,
 * the contract and the signer first, prints JSON or a timeline, returns what it printed, and fails
 * with one line naming the flag that is wrong.
 */
import { existsSync } from "node:fs";
import path from "node:path";
import { getAddress, id as textHash, isAddress, isHexString, ZeroHash } from "ethers";
import type { HardhatRuntimeEnvironment } from "hardhat/types/hre";
import { cbv, locationId, shipmentIdOf } from "../../src/custody/index.js";
import { shipmentHistory, timeline, type ShipmentHistory } from "../../src/custody/history.js";
import { typedData } from "../../src/eip712/index.js";
import type { TrackerRole } from "../../src/agent/roles/tracker.js";
import { deviceIdArg, readJsonArg } from "../addresses.js";
import {
  accountsOf,
  contractAddress,
  contractAt,
  howToSignAs,
  openChain,
  short,
  signerOf,
  taskAction,
  type Chain,
  type TaskSigner,
} from "../chain.js";
import { writeFileAtomic } from "../files.js";
import { shipmentTxHashes, watchClient, watchName } from "./watchIndex.js";
import { inputError, intArg, required, signedIntArg, type SignerArgs } from "../support.js";

/** The ledger address: the flag, else CUSTOS_CUSTODY_LEDGER, else this chain's Ignition deployment. */
export function ledgerAddress(chain: Chain, flag?: string): Promise<string> {
  return contractAddress(chain, "CustodyLedger", flag);
}

/** The CustodyLedger (checked to be one), connected to `who` when given. */
async function ledgerAt(chain: Chain, flag: string | undefined, who?: TaskSigner) {
  return contractAt(chain, "CustodyLedger", await ledgerAddress(chain, flag), who);
}

type Ledger = Awaited<ReturnType<typeof ledgerAt>>;

/**
 * The shipment's history, from the chain's logs, or with `--watch` from the transactions the
 * watch's index lists (their receipts read from the chain, every signature re-verified here).
 */
async function historyOf(chain: Chain, ledger: Ledger, shipment: string, watch?: string): Promise<ShipmentHistory> {
  const address = await ledger.getAddress();
  if (watch === undefined) {
    await needShipment(ledger, shipment);
    return shipmentHistory(chain.provider, address, shipment);
  }
  const client = watchClient(watch);
  const txHashes = await shipmentTxHashes(client, ledger, shipment);
  try {
    return await shipmentHistory(chain.provider, address, shipment, { txHashes, sourceName: watchName(client.url) });
  } catch (err) {
    throw inputError(`--watch: ${(err as Error).message}`);
  }
}

/** Refuses a shipment the ledger never created. */
async function needShipment(ledger: Ledger, shipment: string): Promise<void> {
  if ((await ledger.queryFilter(ledger.filters.ShipmentCreated(shipment))).length === 0)
    throw inputError(`--shipment: no shipment ${shipment} on the CustodyLedger at ${short(await ledger.getAddress())}`);
}

const iso = (s: number) => new Date(s * 1000).toISOString();

/**
 * The history as lines. A handoff and a checkpoint are dated by their signed time (`at`: when the
 * custodians or the tracker signed, which EPCIS reports as the event time), with the block that
 * recorded them alongside; other events by their block.
 */
export function timelineLines(h: ShipmentHistory): string[] {
  return timeline(h).map((line, i) => {
    const e = h.entries[i];
    const blockTime = iso(e.time);
    const rest = line.startsWith(blockTime) ? line.slice(blockTime.length) : `  ${line}`;
    if (e.kind === "handoff" || e.kind === "checkpoint")
      return `${iso(e.at)}${rest}  (signed; recorded in block ${e.block} at ${blockTime})`;
    return `${blockTime}${rest}  (block ${e.block})`;
  });
}

function shipmentArg(value: string): string {
  if (!/^0x[0-9a-fA-F]{64}$/.test(value))
    throw inputError(`--shipment: ${value} is not a shipment id (32 bytes of hex)`);
  return value.toLowerCase();
}

const EPC_URI = /^urn:epc:id:[a-z]+:[0-9.A-Za-z-]+$/;

interface ShipmentArgs {
  shipment?: string;
  epc?: string;
  creator?: string;
}

/** The shipment named by `--shipment`, or by `--epc` and `--creator` (default: the first account). */
async function shipmentOfArgs(chain: Chain, args: ShipmentArgs): Promise<string> {
  if (args.shipment !== undefined) {
    if (args.epc !== undefined || args.creator !== undefined)
      throw inputError("--shipment names the shipment: give it, or --epc (with --creator), not both");
    return shipmentArg(args.shipment);
  }
  if (args.epc === undefined) throw inputError("--shipment or --epc: name the shipment");
  if (!EPC_URI.test(args.epc)) throw inputError(`--epc: ${args.epc} is not an EPC URI`);
  let creator = args.creator;
  if (creator === undefined) {
    const [first] = await accountsOf(chain);
    if (!first) throw inputError("--creator: no account on this network to default to; name the shipment's creator");
    creator = first.address;
  }
  if (!isAddress(creator)) throw inputError(`--creator: ${creator} is not an address`);
  return shipmentIdOf(creator, args.epc);
}

export const history = taskAction(
  "custody:history",
  async (args: ShipmentArgs & { ledger?: string; json: boolean; watch?: string }, hre: HardhatRuntimeEnvironment) => {
    const chain = await openChain(hre, "custody:history", false);
    const shipment = await shipmentOfArgs(chain, args);
    const ledger = await ledgerAt(chain, args.ledger);
    const h = await historyOf(chain, ledger, shipment, args.watch);
    if (args.json) console.log(JSON.stringify(h, null, 2));
    else {
      console.log(`${h.epc} (${h.shipment})${h.parent ? `, split off ${h.parent}` : ""}`);
      for (const line of timelineLines(h)) console.log(`  ${line}`);
      console.log(h.allVerified ? "every signature verified" : "SOME SIGNATURES DID NOT VERIFY");
    }
    if (!h.allVerified) process.exitCode = 1;
    return h;
  },
);

export const proveReading = taskAction(
  "custody:prove-reading",
  async (
    args: SignerArgs &
      ShipmentArgs & { seq?: string; index?: string; readings?: string; ledger?: string; submit: boolean },
    hre: HardhatRuntimeEnvironment,
  ) => {
    const seq = intArg(required(args.seq, "--seq"), "--seq");
    const index = intArg(required(args.index, "--index"), "--index");
    const readings = required(args.readings, "--readings");
    const chain = await openChain(
      hre,
      args.submit ? "custody:prove-reading --submit" : "custody:prove-reading",
      args.submit,
    );
    const shipment = await shipmentOfArgs(chain, args);
    const dir = existsSync(path.join(readings, "tracker.jsonl")) ? readings : path.dirname(readings);
    if (!existsSync(path.join(dir, "tracker.jsonl"))) throw inputError(`--readings: no tracker.jsonl in ${readings}`);
    // What only this task needs is imported here: the other tasks start without it.
    const { TrackerRole: Tracker } = await import("../../src/agent/roles/tracker.js");
    let p: Awaited<ReturnType<typeof TrackerRole.proofFrom>>;
    try {
      p = await Tracker.proofFrom(dir, shipment, seq, index);
    } catch (err) {
      throw inputError(`--seq/--index: ${(err as Error).message}`);
    }
    const ledger = await ledgerAt(chain, args.ledger);
    await needShipment(ledger, shipment);
    const events = await ledger.queryFilter(ledger.filters.CheckpointPosted(shipment));
    const onChain = events.find((e) => Number(e.args.seq) === seq);
    if (!onChain) throw inputError(`--seq: checkpoint ${seq} of ${shipment} was never posted`);
    if (onChain.args.readingsRoot.toLowerCase() !== p.root.toLowerCase())
      throw inputError(
        `--readings: these readings make root ${p.root}, but checkpoint ${seq} posted ${onChain.args.readingsRoot}`,
      );
    const verified = await ledger.verifyReading(p.root, p.reading, p.proof);
    const s = await ledger.shipmentOf(shipment);
    const outOfRange = p.reading.temp < Number(s.minTemp) || p.reading.temp > Number(s.maxTemp);
    let submitted: string | undefined;
    let against: string | undefined;
    if (args.submit) {
      if (!outOfRange)
        throw inputError(`--submit: ${p.reading.temp / 100} °C is within the allowed range: not an excursion`);
      const sender = await signerOf(chain, args, true);
      const { submitExcursion } = await import("../../src/custody/excursion.js");
      const { tx, latest } = await submitExcursion(await ledger.getAddress(), sender.signer as never, p);
      submitted = (await tx.wait())!.hash;
      against = latest ? "the tracker's latest checkpoint" : "a signed earlier checkpoint";
    }
    const result = {
      shipment,
      seq,
      index,
      reading: p.reading,
      root: p.root,
      proof: p.proof,
      verified,
      outOfRange,
      ...(submitted ? { submitted, against } : {}),
    };
    console.log(JSON.stringify(result, null, 2));
    return result;
  },
);

export const epcis = taskAction(
  "custody:epcis",
  async (
    args: ShipmentArgs & { out?: string; locations?: string; ledger?: string; watch?: string },
    hre: HardhatRuntimeEnvironment,
  ) => {
    let locations: Record<string, string> | undefined;
    if (args.locations) {
      const raw = readJsonArg(args.locations, "--locations") as Record<string, string>;
      locations = Object.fromEntries(Object.entries(raw).map(([k, v]) => [k.toLowerCase(), v]));
    }
    const chain = await openChain(hre, "custody:epcis", false);
    const shipment = await shipmentOfArgs(chain, args);
    const ledger = await ledgerAt(chain, args.ledger);
    const h = await historyOf(chain, ledger, shipment, args.watch);
    const { toEpcisDocument } = await import("../../src/custody/epcis.js");
    const doc = toEpcisDocument(h, { locations });
    const text = JSON.stringify(doc, null, 2) + "\n";
    if (args.out) {
      writeFileAtomic(args.out, text);
      console.log(JSON.stringify({ out: args.out, events: doc.epcisBody.eventList.length }));
    } else process.stdout.write(text);
    return doc;
  },
);

export const create = taskAction(
  "custody:create",
  async (
    args: SignerArgs & {
      epc?: string;
      tracker?: string;
      receiver?: string;
      deadlineIn: number;
      maxSilence: number;
      minTemp: string;
      maxTemp: string;
      metadata: string;
      childrenRoot?: string;
      acceptOwnerKeys: boolean;
      ledger?: string;
    },
    hre: HardhatRuntimeEnvironment,
  ) => {
    const epc = required(args.epc, "--epc");
    const tracker = required(args.tracker, "--tracker");
    const receiver = required(args.receiver, "--receiver");
    if (!EPC_URI.test(epc)) throw inputError(`--epc: ${epc} is not an EPC URI`);
    if (!isAddress(receiver)) throw inputError(`--receiver: ${receiver} is not an address`);
    if (args.childrenRoot !== undefined && !isHexString(args.childrenRoot, 32))
      throw inputError("--children-root must be 32 bytes of hex");
    const minTemp = signedIntArg(args.minTemp, "--min-temp");
    const maxTemp = signedIntArg(args.maxTemp, "--max-temp");
    const trackerId = deviceIdArg(tracker, "--tracker");
    const chain = await openChain(hre, "custody:create", true);
    const who = await signerOf(chain, args, true);
    const ledger = await ledgerAt(chain, args.ledger, who);
    const registry = await contractAt(
      chain,
      "DeviceRegistry",
      await contractAddress(chain, "DeviceRegistry", await ledger.registry()),
    );
    if ((await registry.deviceStatus(trackerId)) === 0n)
      throw inputError(
        `--tracker: no device ${trackerId} in the registry the ledger uses (${short(await registry.getAddress())})`,
      );
    const now = (await chain.provider.getBlock("latest"))!.timestamp;
    const receipt = await (
      await ledger.createShipment({
        epc,
        tracker: trackerId,
        receiver,
        deadline: now + args.deadlineIn,
        maxSilence: args.maxSilence,
        minTemp,
        maxTemp,
        metadataHash: args.metadata ? textHash(args.metadata) : ZeroHash,
        childrenRoot: args.childrenRoot ?? ZeroHash,
        acceptOwnerKeys: args.acceptOwnerKeys,
      })
    ).wait();
    // The id is the creator's: read it from the event rather than guess who the creator was.
    const created = receipt!.logs
      .map((log) => ledger.interface.parseLog(log))
      .find((e) => e?.name === "ShipmentCreated");
    const result = {
      shipment: String(created!.args.shipment),
      creator: String(created!.args.creator),
      tx: receipt!.hash,
      gas: Number(receipt!.gasUsed),
    };
    console.log(JSON.stringify(result));
    return result;
  },
);

type HandoffFile = { message: Record<string, string>; signatures: Record<string, string> };

export const signHandoff = taskAction(
  "custody:sign-handoff",
  async (
    args: SignerArgs &
      ShipmentArgs & {
        from?: string;
        to?: string;
        bizStep: string;
        disposition: string;
        readPoint: string;
        validFor: number;
        message?: string;
        out?: string;
        ledger?: string;
      },
    hre: HardhatRuntimeEnvironment,
  ) => {
    const from = required(args.from, "--from");
    const to = required(args.to, "--to");
    const out = required(args.out, "--out");
    for (const [flag, a] of [
      ["--from", from],
      ["--to", to],
    ] as const)
      if (!isAddress(a)) throw inputError(`${flag}: ${a} is not an address`);
    // A signature is a file, no transaction; but it is for a chain: the one named, checked.
    const chain = await openChain(hre, "custody:sign-handoff", true);
    const shipment = await shipmentOfArgs(chain, args);
    const who = await signerOf(chain, args);
    const ledger = await ledgerAt(chain, args.ledger, who);
    await needShipment(ledger, shipment);
    const signer = who.signer;
    let file: HandoffFile;
    if (args.message) {
      file = readJsonArg(args.message, "--message") as HandoffFile;
      if (!file?.message || typeof file.signatures !== "object")
        throw inputError(`--message: ${args.message} is not a handoff file (message and signatures)`);
      if (String(file.message.shipment).toLowerCase() !== shipment)
        throw inputError(`--message: ${args.message} hands off shipment ${file.message.shipment}, not ${shipment}`);
    } else {
      const s = await ledger.shipmentOf(shipment);
      if (getAddress(from) !== s.custodian)
        throw inputError(
          `--from: ${from} is not the shipment's custodian (${s.custodian}): only it hands the shipment on`,
        );
      const now = (await chain.provider.getBlock("latest"))!.timestamp;
      file = {
        message: {
          shipment,
          from: getAddress(from),
          to: getAddress(to),
          seq: String(Number(s.handoffSeq) + 1),
          bizStep: cbv(args.bizStep),
          disposition: cbv(args.disposition),
          readPoint: locationId(args.readPoint),
          at: String(now),
          deadline: String(now + args.validFor),
        },
        signatures: {},
      };
    }
    // Only the two custodians sign a handoff: anyone else's signature would be dead weight.
    const parties = [String(file.message.from), String(file.message.to)];
    if (!parties.some((p) => p.toLowerCase() === who.address.toLowerCase()))
      throw inputError(
        `custody:sign-handoff needs one of the two custodians (--from ${short(parties[0])} or --to ${short(parties[1])}): ${who.label} is neither; ${await howToSignAs(chain, parties[0], "the sender")}, or ${await howToSignAs(chain, parties[1], "the receiver")}`,
      );
    const t = typedData(
      "Handoff",
      { chainId: chain.chainId, verifyingContract: await ledger.getAddress() },
      file.message,
    );
    file.signatures[who.address.toLowerCase()] = await signer.signTypedData(t.domain, t.types, file.message);
    writeFileAtomic(out, JSON.stringify(file, null, 2) + "\n");
    console.log(JSON.stringify({ out, signedBy: Object.keys(file.signatures) }));
    return file;
  },
);

export const handoff = taskAction(
  "custody:handoff",
  async (args: SignerArgs & { message?: string; ledger?: string }, hre: HardhatRuntimeEnvironment) => {
    const file = readJsonArg(required(args.message, "--message"), "--message") as {
      message?: Record<string, string>;
      signatures?: Record<string, string>;
    };
    const m = file.message;
    if (!m || !file.signatures) throw inputError("--message must hold message and signatures");
    const fromSig = file.signatures[String(m.from).toLowerCase()];
    const toSig = file.signatures[String(m.to).toLowerCase()];
    if (!fromSig) throw inputError(`--message: no signature by the sender ${m.from}`);
    if (!toSig) throw inputError(`--message: no signature by the receiver ${m.to}`);
    const chain = await openChain(hre, "custody:handoff", true);
    const who = await signerOf(chain, args, true);
    const ledger = await ledgerAt(chain, args.ledger, who);
    const receipt = await (await ledger.handoff(m as never, fromSig, toSig)).wait();
    const result = { tx: receipt!.hash, gas: Number(receipt!.gasUsed), seq: Number(m.seq) };
    console.log(JSON.stringify(result));
    return result;
  },
);

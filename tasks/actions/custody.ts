/**
 * The CustodyLedger tasks' actions (definitions and flags: ../custody.ts). Each prints JSON or a
 * timeline, returns what it printed, and fails with a message naming the flag that is wrong.
 */
import { existsSync, writeFileSync } from "node:fs";
import path from "node:path";
import { getAddress, id as textHash, isAddress, isHexString, ZeroHash } from "ethers";
import type { HardhatRuntimeEnvironment } from "hardhat/types/hre";
import { cbv, locationId, shipmentIdOf } from "../../src/custody/index.js";
import { shipmentHistory, timeline } from "../../src/custody/history.js";
import { toEpcisDocument } from "../../src/custody/epcis.js";
import { submitExcursion } from "../../src/custody/excursion.js";
import { typedData } from "../../src/eip712/index.js";
import { TrackerRole } from "../../src/agent/roles/tracker.js";
import { contractAddress, deviceIdArg, readJsonArg } from "../addresses.js";
import { chainOf, inputError, intArg, required, signedIntArg } from "../support.js";

/** The ledger address: the flag, else CUSTOS_CUSTODY_LEDGER, else this chain's Ignition deployment. */
export function ledgerAddress(hre: HardhatRuntimeEnvironment, flag?: string): Promise<string> {
  return contractAddress(hre, "CustodyLedger", flag);
}

async function ledgerAt(hre: HardhatRuntimeEnvironment, flag: string | undefined, signer: number) {
  const ethers = await chainOf(hre);
  const signers = await ethers.getSigners();
  if (!(signer >= 0 && signer < signers.length)) throw inputError(`--signer: no account ${signer} on this network`);
  return ethers.getContractAt("CustodyLedger", await ledgerAddress(hre, flag), signers[signer]);
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
async function shipmentOfArgs(hre: HardhatRuntimeEnvironment, args: ShipmentArgs): Promise<string> {
  if (args.shipment !== undefined) {
    if (args.epc !== undefined || args.creator !== undefined)
      throw inputError("--shipment names the shipment: give it, or --epc (with --creator), not both");
    return shipmentArg(args.shipment);
  }
  if (args.epc === undefined) throw inputError("--shipment or --epc: name the shipment");
  if (!EPC_URI.test(args.epc)) throw inputError(`--epc: ${args.epc} is not an EPC URI`);
  let creator = args.creator;
  if (creator === undefined) {
    const [first] = await (await chainOf(hre)).getSigners();
    if (!first) throw inputError("--creator: no account on this network to default to; name the shipment's creator");
    creator = first.address;
  }
  if (!isAddress(creator)) throw inputError(`--creator: ${creator} is not an address`);
  return shipmentIdOf(creator, args.epc);
}

export async function history(args: ShipmentArgs & { ledger?: string; json: boolean }, hre: HardhatRuntimeEnvironment) {
  const shipment = await shipmentOfArgs(hre, args);
  const ethers = await chainOf(hre);
  const h = await shipmentHistory(ethers.provider, await ledgerAddress(hre, args.ledger), shipment);
  if (args.json) console.log(JSON.stringify(h, null, 2));
  else {
    console.log(`${h.epc} (${h.shipment})${h.parent ? `, split off ${h.parent}` : ""}`);
    for (const line of timeline(h)) console.log(`  ${line}`);
    console.log(h.allVerified ? "every signature verified" : "SOME SIGNATURES DID NOT VERIFY");
  }
  if (!h.allVerified) process.exitCode = 1;
  return h;
}

export async function proveReading(
  args: ShipmentArgs & { seq?: string; index?: string; readings?: string; ledger?: string; submit: boolean },
  hre: HardhatRuntimeEnvironment,
) {
  const seq = intArg(required(args.seq, "--seq"), "--seq");
  const index = intArg(required(args.index, "--index"), "--index");
  const readings = required(args.readings, "--readings");
  const shipment = await shipmentOfArgs(hre, args);
  const dir = existsSync(path.join(readings, "tracker.jsonl")) ? readings : path.dirname(readings);
  if (!existsSync(path.join(dir, "tracker.jsonl"))) throw inputError(`--readings: no tracker.jsonl in ${readings}`);
  let p: Awaited<ReturnType<typeof TrackerRole.proofFrom>>;
  try {
    p = await TrackerRole.proofFrom(dir, shipment, seq, index);
  } catch (err) {
    throw inputError(`--seq/--index: ${(err as Error).message}`);
  }
  const ethers = await chainOf(hre);
  const ledger = await ethers.getContractAt("CustodyLedger", await ledgerAddress(hre, args.ledger));
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
    const [sender] = await ethers.getSigners();
    const { tx, latest } = await submitExcursion(await ledger.getAddress(), sender, p);
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
}

export async function epcis(
  args: ShipmentArgs & { out?: string; locations?: string; ledger?: string },
  hre: HardhatRuntimeEnvironment,
) {
  let locations: Record<string, string> | undefined;
  if (args.locations) {
    const raw = readJsonArg(args.locations, "--locations") as Record<string, string>;
    locations = Object.fromEntries(Object.entries(raw).map(([k, v]) => [k.toLowerCase(), v]));
  }
  const ethers = await chainOf(hre);
  const h = await shipmentHistory(
    ethers.provider,
    await ledgerAddress(hre, args.ledger),
    await shipmentOfArgs(hre, args),
  );
  const doc = toEpcisDocument(h, { locations });
  const text = JSON.stringify(doc, null, 2) + "\n";
  if (args.out) {
    writeFileSync(args.out, text);
    console.log(JSON.stringify({ out: args.out, events: doc.epcisBody.eventList.length }));
  } else process.stdout.write(text);
  return doc;
}

export async function create(
  args: {
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
    signer: number;
  },
  hre: HardhatRuntimeEnvironment,
) {
  const epc = required(args.epc, "--epc");
  const tracker = required(args.tracker, "--tracker");
  const receiver = required(args.receiver, "--receiver");
  if (!EPC_URI.test(epc)) throw inputError(`--epc: ${epc} is not an EPC URI`);
  if (!isAddress(receiver)) throw inputError(`--receiver: ${receiver} is not an address`);
  if (args.childrenRoot !== undefined && !isHexString(args.childrenRoot, 32))
    throw inputError("--children-root must be 32 bytes of hex");
  const minTemp = signedIntArg(args.minTemp, "--min-temp");
  const maxTemp = signedIntArg(args.maxTemp, "--max-temp");
  const ethers = await chainOf(hre);
  const ledger = await ledgerAt(hre, args.ledger, args.signer);
  const now = (await ethers.provider.getBlock("latest"))!.timestamp;
  const receipt = await (
    await ledger.createShipment({
      epc,
      tracker: deviceIdArg(tracker, "--tracker"),
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
  const created = receipt!.logs.map((log) => ledger.interface.parseLog(log)).find((e) => e?.name === "ShipmentCreated");
  const result = {
    shipment: String(created!.args.shipment),
    creator: String(created!.args.creator),
    tx: receipt!.hash,
    gas: Number(receipt!.gasUsed),
  };
  console.log(JSON.stringify(result));
  return result;
}

type HandoffFile = { message: Record<string, string>; signatures: Record<string, string> };

export async function signHandoff(
  args: ShipmentArgs & {
    from?: string;
    to?: string;
    bizStep: string;
    disposition: string;
    readPoint: string;
    validFor: number;
    message?: string;
    out?: string;
    ledger?: string;
    signer: number;
  },
  hre: HardhatRuntimeEnvironment,
) {
  const from = required(args.from, "--from");
  const to = required(args.to, "--to");
  const out = required(args.out, "--out");
  const shipment = await shipmentOfArgs(hre, args);
  const ethers = await chainOf(hre);
  const ledger = await ledgerAt(hre, args.ledger, args.signer);
  const signer = (await ethers.getSigners())[args.signer];
  let file: HandoffFile;
  if (args.message) file = readJsonArg(args.message, "--message") as HandoffFile;
  else {
    for (const [flag, a] of [
      ["--from", from],
      ["--to", to],
    ] as const)
      if (!isAddress(a)) throw inputError(`${flag}: ${a} is not an address`);
    const now = (await ethers.provider.getBlock("latest"))!.timestamp;
    const s = await ledger.shipmentOf(shipment);
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
  const { chainId } = await ethers.provider.getNetwork();
  const t = typedData("Handoff", { chainId, verifyingContract: await ledger.getAddress() }, file.message);
  file.signatures[(await signer.getAddress()).toLowerCase()] = await signer.signTypedData(
    t.domain,
    t.types,
    file.message,
  );
  writeFileSync(out, JSON.stringify(file, null, 2) + "\n");
  console.log(JSON.stringify({ out, signedBy: Object.keys(file.signatures) }));
  return file;
}

export async function handoff(
  args: { message?: string; ledger?: string; signer: number },
  hre: HardhatRuntimeEnvironment,
) {
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
  const ledger = await ledgerAt(hre, args.ledger, args.signer);
  const receipt = await (await ledger.handoff(m as never, fromSig, toSig)).wait();
  const result = { tx: receipt!.hash, gas: Number(receipt!.gasUsed), seq: Number(m.seq) };
  console.log(JSON.stringify(result));
  return result;
}

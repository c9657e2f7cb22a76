/**
 * Operator tasks for the CustodyLedger. Each prints JSON or a timeline and fails with a message
 * naming the argument that is wrong.
 *
 *   npx hardhat custody:history --shipment 0x… --network localhost
 *   npx hardhat custody:history --epc urn:epc:id:sscc:… --creator 0x…
 *   npx hardhat custody:prove-reading --shipment 0x… --seq 2 --index 17 --readings tracker.jsonl
 *   npx hardhat custody:epcis --shipment 0x… --out shipment.jsonld
 *
 * A shipment is named by its id, or by its EPC and its creator: ids belong to their creators
 * (keccak256(abi.encode(creator, keccak256(epc)))), so the same EPC created by someone else is
 * another shipment. `--creator` defaults to the network's first account, the one `custody:create`
 * creates with unless told `--signer`.
 */
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { task, types } from "hardhat/config";
import type { ConfigurableTaskDefinition, HardhatRuntimeEnvironment } from "hardhat/types";
import { contractAddress, deviceIdArg, readJsonArg } from "./addresses.js";

/** The ledger address: the flag, else CUSTOS_CUSTODY_LEDGER, else this chain's Ignition deployment. */
export function ledgerAddress(hre: HardhatRuntimeEnvironment, flag?: string): Promise<string> {
  return contractAddress(hre, "CustodyLedger", flag);
}

async function ledgerAt(hre: HardhatRuntimeEnvironment, flag: string | undefined, signer: number) {
  const signers = await hre.ethers.getSigners();
  if (!(signer >= 0 && signer < signers.length)) throw new Error(`--signer: no account ${signer} on this network`);
  return hre.ethers.getContractAt("CustodyLedger", await ledgerAddress(hre, flag), signers[signer]);
}

function shipmentArg(value: string): string {
  if (!/^0x[0-9a-fA-F]{64}$/.test(value ?? ""))
    throw new Error(`--shipment: ${value} is not a shipment id (32 bytes of hex)`);
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
      throw new Error("--shipment names the shipment: give it, or --epc (with --creator), not both");
    return shipmentArg(args.shipment);
  }
  if (args.epc === undefined) throw new Error("--shipment or --epc: name the shipment");
  if (!EPC_URI.test(args.epc)) throw new Error(`--epc: ${args.epc} is not an EPC URI`);
  let creator = args.creator;
  if (creator === undefined) {
    const [first] = await hre.ethers.getSigners();
    if (!first) throw new Error("--creator: no account on this network to default to; name the shipment's creator");
    creator = first.address;
  }
  if (!hre.ethers.isAddress(creator)) throw new Error(`--creator: ${creator} is not an address`);
  const { shipmentIdOf } = await import("../src/custody/index.js");
  return shipmentIdOf(creator, args.epc);
}

/** Adds `--shipment`, or `--epc` with `--creator`, to a task that reads one shipment. */
function namesShipment(t: ConfigurableTaskDefinition): ConfigurableTaskDefinition {
  return t
    .addOptionalParam("shipment", "the shipment id (or give --epc, with --creator)")
    .addOptionalParam("epc", "the shipment's GS1 EPC URI, instead of --shipment")
    .addOptionalParam("creator", "with --epc: the shipment's creator (default: the first account)");
}

namesShipment(
  task(
    "custody:history",
    "Rebuilds a shipment's custody chain and checkpoints from events, re-verifying every signature",
  ),
)
  .addOptionalParam("ledger", "CustodyLedger address (default: CUSTOS_CUSTODY_LEDGER or the Ignition deployment)")
  .addFlag("json", "print the history as JSON instead of a timeline")
  .setAction(async (args: ShipmentArgs & { ledger?: string; json: boolean }, hre) => {
    const shipment = await shipmentOfArgs(hre, args);
    const { shipmentHistory, timeline } = await import("../src/custody/history.js");
    const h = await shipmentHistory(hre.ethers.provider, await ledgerAddress(hre, args.ledger), shipment);
    if (args.json) console.log(JSON.stringify(h, null, 2));
    else {
      console.log(`${h.epc} (${h.shipment})${h.parent ? `, split off ${h.parent}` : ""}`);
      for (const line of timeline(h)) console.log(`  ${line}`);
      console.log(h.allVerified ? "every signature verified" : "SOME SIGNATURES DID NOT VERIFY");
    }
    if (!h.allVerified) process.exitCode = 1;
    return h;
  });

namesShipment(
  task(
    "custody:prove-reading",
    "Proves one raw reading of a tracker against its checkpoint's root (and, with --submit, posts an excursion)",
  ),
)
  .addParam("seq", "the checkpoint's sequence number", undefined, types.int)
  .addParam("index", "the reading's index within that checkpoint", undefined, types.int)
  .addParam("readings", "the tracker's data directory (or its tracker.jsonl)")
  .addOptionalParam("ledger", "CustodyLedger address")
  .addFlag("submit", "post the proof on chain as an excursion (the reading must be out of range)")
  .setAction(
    async (
      args: ShipmentArgs & { seq: number; index: number; readings: string; ledger?: string; submit: boolean },
      hre,
    ) => {
      const { TrackerRole } = await import("../src/agent/roles/tracker.js");
      const shipment = await shipmentOfArgs(hre, args);
      const file = existsSync(path.join(args.readings, "tracker.jsonl")) ? args.readings : path.dirname(args.readings);
      if (!existsSync(path.join(file, "tracker.jsonl")))
        throw new Error(`--readings: no tracker.jsonl in ${args.readings}`);
      let p: Awaited<ReturnType<typeof TrackerRole.proofFrom>>;
      try {
        p = await TrackerRole.proofFrom(file, shipment, args.seq, args.index);
      } catch (err) {
        throw new Error(`--seq/--index: ${(err as Error).message}`);
      }
      const ledger = await hre.ethers.getContractAt("CustodyLedger", await ledgerAddress(hre, args.ledger));
      const events = await ledger.queryFilter(ledger.filters.CheckpointPosted(shipment));
      const onChain = events.find((e) => Number(e.args.seq) === args.seq);
      if (!onChain) throw new Error(`--seq: checkpoint ${args.seq} of ${shipment} was never posted`);
      if (onChain.args.readingsRoot.toLowerCase() !== p.root.toLowerCase())
        throw new Error(
          `--readings: these readings make root ${p.root}, but checkpoint ${args.seq} posted ${onChain.args.readingsRoot}`,
        );
      const verified = await ledger.verifyReading(p.root, p.reading, p.proof);
      const s = await ledger.shipmentOf(shipment);
      const outOfRange = p.reading.temp < Number(s.minTemp) || p.reading.temp > Number(s.maxTemp);
      let submitted: string | undefined;
      let against: string | undefined;
      if (args.submit) {
        if (!outOfRange)
          throw new Error(`--submit: ${p.reading.temp / 100} °C is within the allowed range: not an excursion`);
        const { submitExcursion } = await import("../src/custody/excursion.js");
        const [sender] = await hre.ethers.getSigners();
        const { tx, latest } = await submitExcursion(await ledger.getAddress(), sender, p);
        submitted = (await tx.wait())!.hash;
        against = latest ? "the tracker's latest checkpoint" : "a signed earlier checkpoint";
      }
      const result = {
        shipment,
        seq: args.seq,
        index: args.index,
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

namesShipment(task("custody:epcis", "Writes a shipment's history as a GS1 EPCIS 2.0 JSON-LD document"))
  .addOptionalParam("out", "where to write it (default: print)")
  .addOptionalParam("locations", "JSON file mapping location ids (keccak256 of a URI) to their URIs")
  .addOptionalParam("ledger", "CustodyLedger address")
  .setAction(async (args: ShipmentArgs & { out?: string; locations?: string; ledger?: string }, hre) => {
    const { shipmentHistory } = await import("../src/custody/history.js");
    const { toEpcisDocument } = await import("../src/custody/epcis.js");
    let locations: Record<string, string> | undefined;
    if (args.locations) {
      if (!existsSync(args.locations)) throw new Error(`--locations: ${args.locations} does not exist`);
      const raw = JSON.parse(readFileSync(args.locations, "utf8")) as Record<string, string>;
      locations = Object.fromEntries(Object.entries(raw).map(([k, v]) => [k.toLowerCase(), v]));
    }
    const h = await shipmentHistory(
      hre.ethers.provider,
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
  });

task("custody:create", "Creates a shipment; the signer is its first custodian")
  .addParam("epc", "the shipment's GS1 EPC URI (e.g. urn:epc:id:sscc:0614141.1234567890)")
  .addParam("tracker", "the tracker device id")
  .addParam("receiver", "the receiver's address")
  .addOptionalParam("deadlineIn", "seconds from now it must be delivered by", 172_800, types.int)
  .addOptionalParam("maxSilence", "longest allowed silence between checkpoints (s)", 3_600, types.int)
  .addOptionalParam("minTemp", "lowest allowed temperature (hundredths of °C)", 200, types.int)
  .addOptionalParam("maxTemp", "highest allowed temperature (hundredths of °C)", 800, types.int)
  .addOptionalParam("metadata", "text whose keccak256 is the metadata hash", "")
  .addOptionalParam(
    "childrenRoot",
    "for a pallet: the Merkle root of its children (StandardMerkleTree over [bytes32 keccak256(epc)])",
  )
  .addFlag(
    "acceptOwnerKeys",
    "accept a tracker key its owner installed alone (provenance not reaching the manufacturer)",
  )
  .addOptionalParam("ledger", "CustodyLedger address")
  .addOptionalParam("signer", "index of the creating account", 0, types.int)
  .setAction(
    async (
      args: {
        epc: string;
        tracker: string;
        receiver: string;
        deadlineIn: number;
        maxSilence: number;
        minTemp: number;
        maxTemp: number;
        metadata: string;
        childrenRoot?: string;
        acceptOwnerKeys: boolean;
        ledger?: string;
        signer: number;
      },
      hre,
    ) => {
      if (!EPC_URI.test(args.epc)) throw new Error(`--epc: ${args.epc} is not an EPC URI`);
      if (!hre.ethers.isAddress(args.receiver)) throw new Error(`--receiver: ${args.receiver} is not an address`);
      if (args.childrenRoot !== undefined && !hre.ethers.isHexString(args.childrenRoot, 32))
        throw new Error("--children-root must be 32 bytes of hex");
      const ledger = await ledgerAt(hre, args.ledger, args.signer);
      const now = (await hre.ethers.provider.getBlock("latest"))!.timestamp;
      const receipt = await (
        await ledger.createShipment({
          epc: args.epc,
          tracker: deviceIdArg(args.tracker, "--tracker"),
          receiver: args.receiver,
          deadline: now + args.deadlineIn,
          maxSilence: args.maxSilence,
          minTemp: args.minTemp,
          maxTemp: args.maxTemp,
          metadataHash: args.metadata ? hre.ethers.id(args.metadata) : hre.ethers.ZeroHash,
          childrenRoot: args.childrenRoot ?? hre.ethers.ZeroHash,
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

namesShipment(
  task(
    "custody:sign-handoff",
    "Signs a handoff as the signer (the next seq is read from the chain) and writes it to a file",
  ),
)
  .addParam("from", "the current custodian")
  .addParam("to", "the next custodian")
  .addOptionalParam("bizStep", "GS1 CBV business step", "shipping")
  .addOptionalParam("disposition", "GS1 CBV disposition", "in_transit")
  .addOptionalParam("readPoint", "the read point's URI", "urn:epc:id:sgln:0614141.00001.0")
  .addOptionalParam("validFor", "seconds the signature stays valid", 3_600, types.int)
  .addOptionalParam("message", "a handoff file to countersign (instead of building one)")
  .addParam("out", "the handoff file to write (message and signatures)")
  .addOptionalParam("ledger", "CustodyLedger address")
  .addOptionalParam("signer", "index of the signing account", 0, types.int)
  .setAction(
    async (
      args: ShipmentArgs & {
        from: string;
        to: string;
        bizStep: string;
        disposition: string;
        readPoint: string;
        validFor: number;
        message?: string;
        out: string;
        ledger?: string;
        signer: number;
      },
      hre,
    ) => {
      const { cbv, locationId } = await import("../src/custody/index.js");
      const { typedData } = await import("../src/eip712/index.js");
      const shipment = await shipmentOfArgs(hre, args);
      const ledger = await ledgerAt(hre, args.ledger, args.signer);
      const signer = (await hre.ethers.getSigners())[args.signer];
      type HandoffFile = { message: Record<string, string>; signatures: Record<string, string> };
      let file: HandoffFile;
      if (args.message) file = readJsonArg(args.message, "--message") as HandoffFile;
      else {
        for (const [flag, a] of [
          ["--from", args.from],
          ["--to", args.to],
        ] as const)
          if (!hre.ethers.isAddress(a)) throw new Error(`${flag}: ${a} is not an address`);
        const now = (await hre.ethers.provider.getBlock("latest"))!.timestamp;
        const s = await ledger.shipmentOf(shipment);
        file = {
          message: {
            shipment,
            from: hre.ethers.getAddress(args.from),
            to: hre.ethers.getAddress(args.to),
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
      const { chainId } = await hre.ethers.provider.getNetwork();
      const t = typedData("Handoff", { chainId, verifyingContract: await ledger.getAddress() }, file.message);
      file.signatures[(await signer.getAddress()).toLowerCase()] = await signer.signTypedData(
        t.domain,
        t.types,
        file.message,
      );
      writeFileSync(args.out, JSON.stringify(file, null, 2) + "\n");
      console.log(JSON.stringify({ out: args.out, signedBy: Object.keys(file.signatures) }));
      return file;
    },
  );

task("custody:handoff", "Submits a handoff signed by both custodians (a file from custody:sign-handoff); anyone may")
  .addParam("message", "the handoff file with both signatures")
  .addOptionalParam("ledger", "CustodyLedger address")
  .addOptionalParam("signer", "index of the sending account", 0, types.int)
  .setAction(async (args: { message: string; ledger?: string; signer: number }, hre) => {
    const file = readJsonArg(args.message, "--message") as {
      message?: Record<string, string>;
      signatures?: Record<string, string>;
    };
    const m = file.message;
    if (!m || !file.signatures) throw new Error("--message must hold message and signatures");
    const fromSig = file.signatures[String(m.from).toLowerCase()];
    const toSig = file.signatures[String(m.to).toLowerCase()];
    if (!fromSig) throw new Error(`--message: no signature by the sender ${m.from}`);
    if (!toSig) throw new Error(`--message: no signature by the receiver ${m.to}`);
    const ledger = await ledgerAt(hre, args.ledger, args.signer);
    const receipt = await (await ledger.handoff(m as never, fromSig, toSig)).wait();
    const result = { tx: receipt!.hash, gas: Number(receipt!.gasUsed), seq: Number(m.seq) };
    console.log(JSON.stringify(result));
    return result;
  });

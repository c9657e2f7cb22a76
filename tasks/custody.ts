/**
 * Operator tasks for the CustodyLedger. Each prints JSON or a timeline and fails with a message
 * naming the argument that is wrong.
 *
 *   npx hardhat custody:history --shipment 0x… --network localhost
 *   npx hardhat custody:prove-reading --shipment 0x… --seq 2 --index 17 --readings tracker.jsonl
 *   npx hardhat custody:epcis --shipment 0x… --out shipment.jsonld
 */
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { task, types } from "hardhat/config";
import type { HardhatRuntimeEnvironment } from "hardhat/types";

/** The ledger address: the flag, else CUSTOS_CUSTODY_LEDGER, else this chain's Ignition deployment. */
export async function ledgerAddress(hre: HardhatRuntimeEnvironment, flag?: string): Promise<string> {
  const chosen = flag || process.env.CUSTOS_CUSTODY_LEDGER;
  if (chosen) {
    if (!hre.ethers.isAddress(chosen)) throw new Error(`--ledger: ${chosen} is not an address`);
    return chosen;
  }
  const { chainId } = await hre.ethers.provider.getNetwork();
  const file = path.join(
    hre.config.paths.root,
    "ignition",
    "deployments",
    `chain-${chainId}`,
    "deployed_addresses.json",
  );
  if (existsSync(file)) {
    const address = JSON.parse(readFileSync(file, "utf8"))["Custos#CustodyLedger"];
    if (address) return address;
  }
  throw new Error("--ledger is required (or CUSTOS_CUSTODY_LEDGER, or an Ignition deployment of the Custos module)");
}

function shipmentArg(value: string): string {
  if (!/^0x[0-9a-fA-F]{64}$/.test(value ?? ""))
    throw new Error(`--shipment: ${value} is not a shipment id (32 bytes of hex)`);
  return value.toLowerCase();
}

task("custody:history", "Rebuilds a shipment's custody chain and checkpoints from events, re-verifying every signature")
  .addParam("shipment", "the shipment id (keccak256 of its EPC URI)")
  .addOptionalParam("ledger", "CustodyLedger address (default: CUSTOS_CUSTODY_LEDGER or the Ignition deployment)")
  .addFlag("json", "print the history as JSON instead of a timeline")
  .setAction(async (args: { shipment: string; ledger?: string; json: boolean }, hre) => {
    const shipment = shipmentArg(args.shipment);
    const { shipmentHistory, timeline } = await import("../src/custody/history");
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

task(
  "custody:prove-reading",
  "Proves one raw reading of a tracker against its checkpoint's root (and, with --submit, posts an excursion)",
)
  .addParam("shipment", "the shipment id")
  .addParam("seq", "the checkpoint's sequence number", undefined, types.int)
  .addParam("index", "the reading's index within that checkpoint", undefined, types.int)
  .addParam("readings", "the tracker's data directory (or its tracker.jsonl)")
  .addOptionalParam("ledger", "CustodyLedger address")
  .addFlag("submit", "post the proof on chain as an excursion (the reading must be out of range)")
  .setAction(
    async (
      args: { shipment: string; seq: number; index: number; readings: string; ledger?: string; submit: boolean },
      hre,
    ) => {
      const { TrackerRole } = await import("../src/agent/roles/tracker");
      const shipment = shipmentArg(args.shipment);
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
      if (args.submit) {
        if (!outOfRange)
          throw new Error(`--submit: ${p.reading.temp / 100} °C is within the allowed range: not an excursion`);
        const tx = await ledger.proveExcursion(p.checkpoint as never, p.key, p.signature, p.reading, p.proof);
        submitted = (await tx.wait())!.hash;
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
        ...(submitted ? { submitted } : {}),
      };
      console.log(JSON.stringify(result, null, 2));
      return result;
    },
  );

task("custody:epcis", "Writes a shipment's history as a GS1 EPCIS 2.0 JSON-LD document")
  .addParam("shipment", "the shipment id")
  .addOptionalParam("out", "where to write it (default: print)")
  .addOptionalParam("locations", "JSON file mapping location ids (keccak256 of a URI) to their URIs")
  .addOptionalParam("ledger", "CustodyLedger address")
  .setAction(async (args: { shipment: string; out?: string; locations?: string; ledger?: string }, hre) => {
    const { shipmentHistory } = await import("../src/custody/history");
    const { toEpcisDocument } = await import("../src/custody/epcis");
    let locations: Record<string, string> | undefined;
    if (args.locations) {
      if (!existsSync(args.locations)) throw new Error(`--locations: ${args.locations} does not exist`);
      const raw = JSON.parse(readFileSync(args.locations, "utf8")) as Record<string, string>;
      locations = Object.fromEntries(Object.entries(raw).map(([k, v]) => [k.toLowerCase(), v]));
    }
    const h = await shipmentHistory(
      hre.ethers.provider,
      await ledgerAddress(hre, args.ledger),
      shipmentArg(args.shipment),
    );
    const doc = toEpcisDocument(h, { locations });
    const text = JSON.stringify(doc, null, 2) + "\n";
    if (args.out) {
      writeFileSync(args.out, text);
      console.log(JSON.stringify({ out: args.out, events: doc.epcisBody.eventList.length }));
    } else process.stdout.write(text);
    return doc;
  });

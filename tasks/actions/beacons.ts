/**
 * The beacon tasks' actions (definitions and flags: ../beacons.ts). Each prints JSON, returns it,
 * and fails with one line naming the flag that is wrong.
 */
import { readFileSync } from "node:fs";
import type { HardhatRuntimeEnvironment } from "hardhat/types/hre";
import { deviceIdArg } from "../addresses.js";
import { contractAddress, contractAt, openChain, signerOf, taskAction } from "../chain.js";
import { writeFileAtomic } from "../files.js";
import { inputError, required, type SignerArgs } from "../support.js";

type KeyFile = { publicKey: string; privateKey: string };

function readKeyFile(file: string): KeyFile {
  let k: Partial<KeyFile>;
  try {
    k = JSON.parse(readFileSync(file, "utf8")) as Partial<KeyFile>;
  } catch (err) {
    throw inputError(`--key-file ${file}: not a readable key file (${(err as Error).message})`);
  }
  if (typeof k.publicKey !== "string" || typeof k.privateKey !== "string")
    throw inputError(`--key-file ${file}: not a key file of beacons:keygen (publicKey, privateKey)`);
  return k as KeyFile;
}

async function publicKeyArg(key: string | undefined, flag: string): Promise<string> {
  const { checkKey } = await import("../../src/beacons/index.js");
  const k = required(key, flag);
  try {
    checkKey(k, flag);
  } catch (err) {
    throw inputError((err as Error).message);
  }
  return k.toLowerCase();
}

export const keygen = taskAction("beacons:keygen", async (args: { out?: string }) => {
  const out = required(args.out, "--out");
  const { generateBeaconKey } = await import("../../src/beacons/index.js");
  const pair = await generateBeaconKey();
  writeFileAtomic(out, JSON.stringify(pair, null, 2) + "\n");
  const result = { out, publicKey: pair.publicKey };
  console.log(JSON.stringify(result));
  return result;
});

/** LocationBeacons connected to the signer, a transaction sent, its receipt awaited. */
async function send(
  hre: HardhatRuntimeEnvironment,
  name: string,
  args: SignerArgs & { beacons?: string },
  call: (b: Awaited<ReturnType<typeof contractAt<"LocationBeacons">>>) => Promise<{ wait(): Promise<unknown> }>,
) {
  const chain = await openChain(hre, name, true);
  const who = await signerOf(chain, args, true);
  const b = await contractAt(
    chain,
    "LocationBeacons",
    await contractAddress(chain, "LocationBeacons", args.beacons),
    who,
  );
  const tx = await call(b);
  await tx.wait();
  const recipients = (await b.beaconRecipients(who.address)).toLowerCase();
  const result = { owner: who.address, recipients: (recipients.slice(2).match(/.{64}/g) ?? []).map((k) => "0x" + k) };
  console.log(JSON.stringify(result));
  return result;
}

export const setKey = taskAction(
  "beacons:set-key",
  async (args: SignerArgs & { key?: string; keyFile?: string; beacons?: string }, hre: HardhatRuntimeEnvironment) => {
    if ((args.key === undefined) === (args.keyFile === undefined))
      throw inputError("beacons:set-key needs exactly one of --key and --key-file");
    const key = await publicKeyArg(args.key ?? readKeyFile(args.keyFile!).publicKey, args.key ? "--key" : "--key-file");
    return send(hre, "beacons:set-key", args, (b) => b.setBeaconKey(key));
  },
);

export const addResponder = taskAction(
  "beacons:add-responder",
  async (args: SignerArgs & { key?: string; beacons?: string }, hre: HardhatRuntimeEnvironment) => {
    const key = await publicKeyArg(args.key, "--key");
    return send(hre, "beacons:add-responder", args, (b) => b.addResponder(key));
  },
);

export const removeResponder = taskAction(
  "beacons:remove-responder",
  async (args: SignerArgs & { key?: string; beacons?: string }, hre: HardhatRuntimeEnvironment) => {
    const key = await publicKeyArg(args.key, "--key");
    return send(hre, "beacons:remove-responder", args, (b) => b.removeResponder(key));
  },
);

export const open = taskAction(
  "beacons:open",
  async (
    args: { device?: string; keyFile?: string; beacons?: string; watch?: string },
    hre: HardhatRuntimeEnvironment,
  ) => {
    const device = deviceIdArg(required(args.device, "--device"));
    const key = readKeyFile(required(args.keyFile, "--key-file"));
    const chain = await openChain(hre, "beacons:open", false);
    const address = await contractAddress(chain, "LocationBeacons", args.beacons);
    const b = await contractAt(chain, "LocationBeacons", address);
    const { openLocation } = await import("../../src/beacons/index.js");
    // With --watch, the index says which transactions to read; the receipts come from the chain.
    const posted =
      args.watch === undefined
        ? await b.queryFilter(b.filters.LocationBeaconPosted(device))
        : await import("./watchIndex.js").then((w) => w.beaconLogs(w.watchClient(args.watch!), b, device));
    const beacons = [];
    for (const e of posted) {
      // By position: `at` is also the name of a method of ethers' Result.
      const [, , nonce, at, recipients, ciphertext] = e.args;
      const context = { chainId: chain.chainId, contract: address, device, at };
      const location = await openLocation(ciphertext, recipients, context, key.privateKey).then(
        (l) => l,
        (err: Error) => ({ unreadable: err.message }),
      );
      beacons.push({ nonce: nonce.toString(), at: Number(at), txHash: e.transactionHash, ...location });
    }
    const result = { device: device.toString(), beacons };
    console.log(JSON.stringify(result));
    return result;
  },
);

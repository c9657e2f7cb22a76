/**
 * The chain the watch's backfill is measured over: the suite deployed on a real node, a fleet of
 * claimed devices and a set of shipments, each with its tracker's checkpoint. Devices are claimed
 * in batches through the registry's Multicall (anyone may submit a claim; the device's signature is
 * the proof), transactions are sent without waiting and mined in full blocks, so the chain looks
 * like a busy one rather than one transaction per block.
 */
import {
  JsonRpcProvider,
  Wallet,
  ZeroAddress,
  ZeroHash,
  encodeBytes32String,
  getBytes,
  id as textHash,
  keccak256,
  toBeHex,
  type Signer,
} from "ethers";
import { deploySuite, type SuiteAddresses } from "../../src/deploy/suite.js";
import { TypedDataHasher } from "../../src/eip712/fast.js";
import { secp256k1Key, type DeviceKey } from "../../src/crypto/deviceKey.js";
import { DeviceBatch, deviceIdOf } from "../../src/registry/batch.js";
import { ReadingsBatch, locationId, shipmentIdOf } from "../../src/custody/index.js";
import {
  CustodyLedger__factory,
  DeviceRegistry__factory,
  ERC2771Forwarder__factory,
} from "../../typechain-types/index.js";

const MODEL = encodeBytes32String("custos-bench");
const FIRMWARE = textHash("firmware 1.0.0");
/** Claims per Multicall transaction: about 12.6 M gas, two to a 30 M-gas block. */
const CLAIMS_PER_TX = 100;
/** Keys per committed batch (one Merkle tree each). */
const BATCH_SIZE = 10_000;
/** Transactions sent before the node mines them. */
const WINDOW = 200;
/** Forwarded calls per `executeBatch`, and the gas each may use (a shipment's creation takes about 110 k). */
const REQUESTS_PER_TX = 50;
const REQUEST_GAS = 250_000n;

const hex = (bytes: Uint8Array) => "0x" + Buffer.from(bytes).toString("hex");

export interface WatchChainOptions {
  devices: number;
  shipments: number;
  /** Where progress goes (stderr by default). */
  log?: (line: string) => void;
}

export interface WatchChain {
  suite: SuiteAddresses;
  chainId: bigint;
  /** The owner of every device: its fleet is `devices` long. */
  fleetOwner: string;
  deviceIds: bigint[];
  shipmentIds: string[];
  /** Events the suite emitted while building (what the index must hold). */
  events: number;
  headBlock: number;
}

/** A deterministic device key: the bench builds the same fleet every run. */
function benchKey(i: number): DeviceKey {
  return secp256k1Key(getBytes(keccak256(toBeHex(i + 1, 32))));
}

/** The next block's base fee: zero (anvil's method, or Hardhat's). */
async function zeroBaseFee(provider: JsonRpcProvider): Promise<void> {
  try {
    await provider.send("anvil_setNextBlockBaseFeePerGas", ["0x0"]);
  } catch {
    await provider.send("hardhat_setNextBlockBaseFeePerGas", ["0x0"]);
  }
}

/**
 * Sends transactions built by `next` with explicit nonces, `WINDOW` at a time, mining between
 * windows; stops when `next` returns undefined. Returns the number of events their receipts hold.
 */
async function sendAll(
  provider: JsonRpcProvider,
  from: Wallet,
  next: () => Promise<{ to: string; data: string; gasLimit: bigint } | undefined>,
  /** Only logs of these contracts count (the forwarder's own are not the suite's events). */
  counted: Set<string>,
): Promise<number> {
  let nonce = await provider.getTransactionCount(from.address, "pending");
  let events = 0;
  for (;;) {
    const hashes: string[] = [];
    // Full blocks raise the base fee 12.5 % each, so a window of them would price its own last
    // transactions out: the bench holds the base fee at zero (its blocks are built, not bid for).
    const maxFeePerGas = 1_000_000_000n;
    for (let i = 0; i < WINDOW; i++) {
      const tx = await next();
      if (!tx) break;
      const signed = await from.signTransaction({
        ...tx,
        nonce: nonce++,
        chainId: 31337n,
        maxFeePerGas,
        maxPriorityFeePerGas: 0n,
        type: 2,
      });
      hashes.push(await provider.send("eth_sendRawTransaction", [signed]));
    }
    if (hashes.length === 0) return events;
    // Mine until every transaction of the window is in a block.
    for (;;) {
      await zeroBaseFee(provider);
      await provider.send("evm_mine", []);
      const pending = Number(await provider.send("eth_getBlockTransactionCountByNumber", ["pending"]));
      if (!pending) break;
    }
    for (const hash of hashes) {
      const receipt = await provider.getTransactionReceipt(hash);
      if (!receipt) throw new Error(`bench chain: transaction ${hash} was not mined`);
      if (receipt.status !== 1) throw new Error(`bench chain: transaction ${hash} reverted`);
      events += receipt.logs.filter((l) => counted.has(l.address.toLowerCase())).length;
    }
  }
}

/** Builds the chain on the node at `provider` (automine off while building; a fresh node). */
export async function buildWatchChain(provider: JsonRpcProvider, opts: WatchChainOptions): Promise<WatchChain> {
  const log = opts.log ?? ((line: string) => process.stderr.write(line + "\n"));
  const chainId = (await provider.getNetwork()).chainId;
  const admin: Signer = await provider.getSigner(0);
  // Hardhat's and anvil's account #1: the fleet's owner and shipper, a plain key so transactions can be signed here.
  const fleet = new Wallet("0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d", provider);
  const suite = await deploySuite(admin, { manufacturers: [await admin.getAddress()] });
  const registry = DeviceRegistry__factory.connect(suite.registry, admin);
  const ledger = CustodyLedger__factory.connect(suite.custodyLedger, fleet);
  const hasher = await TypedDataHasher.create();
  const registryDomain = { chainId, verifyingContract: suite.registry };
  const custodyDomain = { chainId, verifyingContract: suite.custodyLedger };
  const deadline = BigInt(Math.floor(Date.now() / 1000) + 30 * 24 * 3600);
  const counted = new Set([suite.registry, suite.custodyLedger].map((a) => a.toLowerCase()));
  await provider.send("evm_setAutomine", [false]);
  let events = 0;

  // Devices: batches committed by the manufacturer (account #0), claims sent by the fleet's owner.
  const keys: DeviceKey[] = [];
  const deviceIds: bigint[] = [];
  const started = Date.now();
  for (let first = 0; first < opts.devices; first += BATCH_SIZE) {
    const n = Math.min(BATCH_SIZE, opts.devices - first);
    const batchKeys = Array.from({ length: n }, (_, i) => benchKey(first + i));
    const batch = new DeviceBatch(
      batchKeys.map((k) => ({ deviceKey: k.signer, model: MODEL, firmwareHash: FIRMWARE })),
      await admin.getAddress(),
    );
    const commit = await registry.commitBatch(batch.root);
    await zeroBaseFee(provider);
    await provider.send("evm_mine", []);
    events += (await commit.wait())!.logs.length; // BatchCommitted
    let i = 0;
    events += await sendAll(
      provider,
      fleet,
      async () => {
        if (i >= n) return undefined;
        const calls: string[] = [];
        for (const end = Math.min(n, i + CLAIMS_PER_TX); i < end; i++) {
          const key = batchKeys[i];
          const signature = key.signDigest(
            hex(hasher.digest("DeviceClaim", registryDomain, { owner: fleet.address, batch: batch.id, deadline })),
          );
          calls.push(
            registry.interface.encodeFunctionData("claim", [
              {
                owner: fleet.address,
                batchId: batch.id,
                deviceKey: key.signer,
                model: MODEL,
                firmwareHash: FIRMWARE,
                deadline,
              },
              batch.proofAt(i),
              signature,
            ]),
          );
        }
        return {
          to: suite.registry,
          data: registry.interface.encodeFunctionData("multicall", [calls]),
          gasLimit: 14_000_000n,
        };
      },
      counted,
    );
    keys.push(...batchKeys);
    deviceIds.push(...batchKeys.map((k) => deviceIdOf(k.signer)));
    log(`bench chain: ${first + n} devices claimed (${((Date.now() - started) / 1000).toFixed(0)} s)`);
  }

  // Shipments: created by the fleet's owner, each tracked by one of its devices, which checkpoints
  // once. Both go through the forwarder in batches (the fleet's owner signs each request), as a
  // relayer would send them: one transaction per call would make the build, not the index, the
  // slow part.
  const forwarder = ERC2771Forwarder__factory.connect(suite.forwarder, fleet);
  const forwarderDomain = { chainId, verifyingContract: suite.forwarder };
  const fleetKey = secp256k1Key(fleet.privateKey);
  let forwardNonce = await forwarder.nonces(fleet.address);
  const forwarded = async (calls: { to: string; data: string }[]) => {
    let next = 0;
    return sendAll(
      provider,
      fleet,
      async () => {
        if (next >= calls.length) return undefined;
        const requests = calls.slice(next, next + REQUESTS_PER_TX).map((call) => {
          const message = {
            from: fleet.address,
            to: call.to,
            value: 0n,
            gas: REQUEST_GAS,
            nonce: forwardNonce++,
            deadline,
            data: call.data,
          };
          const signature = fleetKey.signDigest(hex(hasher.digest("ForwardRequest", forwarderDomain, message)));
          return {
            from: message.from,
            to: message.to,
            value: 0n,
            gas: REQUEST_GAS,
            deadline,
            data: call.data,
            signature,
          };
        });
        next += requests.length;
        return {
          to: suite.forwarder,
          // refundReceiver 0: a request that fails reverts the whole batch, so a broken build cannot pass unnoticed.
          data: forwarder.interface.encodeFunctionData("executeBatch", [requests, ZeroAddress]),
          gasLimit: REQUEST_GAS * BigInt(requests.length) + 1_000_000n,
        };
      },
      counted,
    );
  };
  const now = Number((await provider.getBlock("latest"))!.timestamp);
  const receiver = await admin.getAddress();
  const shipmentIds: string[] = [];
  const creates = Array.from({ length: opts.shipments }, (_, s) => {
    const epc = `urn:epc:id:sscc:0614141.${String(s).padStart(10, "0")}`;
    shipmentIds.push(shipmentIdOf(fleet.address, epc));
    return {
      to: suite.custodyLedger,
      data: ledger.interface.encodeFunctionData("createShipment", [
        {
          epc,
          tracker: deviceIds[s % deviceIds.length],
          receiver,
          deadline: now + 30 * 24 * 3600,
          maxSilence: 24 * 3600,
          minTemp: 200,
          maxTemp: 800,
          metadataHash: textHash("bench shipment"),
          childrenRoot: ZeroHash,
          acceptOwnerKeys: false,
        },
      ]),
    };
  });
  events += await forwarded(creates);
  log(`bench chain: ${opts.shipments} shipments created`);
  const at = BigInt(Number((await provider.getBlock("latest"))!.timestamp));
  const readings = new ReadingsBatch([{ at: Number(at) - 60, temp: 500 }]);
  const checkpoints = shipmentIds.map((shipment, i) => {
    const cp = {
      shipment,
      seq: 1,
      readingsRoot: readings.root,
      count: readings.count,
      minTemp: readings.min,
      maxTemp: readings.max,
      location: locationId("geo:52.37,4.89"),
      at,
    };
    const key = keys[i % keys.length];
    const signature = key.signDigest(hex(hasher.digest("Checkpoint", custodyDomain, cp)));
    return {
      to: suite.custodyLedger,
      data: ledger.interface.encodeFunctionData("checkpoint", [cp, key.signer, signature]),
    };
  });
  events += await forwarded(checkpoints);
  log(`bench chain: ${opts.shipments} checkpoints posted`);
  await provider.send("evm_setAutomine", [true]);
  return {
    suite,
    chainId,
    fleetOwner: fleet.address.toLowerCase(),
    deviceIds,
    shipmentIds,
    events,
    headBlock: await provider.getBlockNumber(),
  };
}

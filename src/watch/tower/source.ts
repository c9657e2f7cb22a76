/**
 * Where the watchtower learns which shipments and channels to look at: the events of a range of
 * blocks. `ChainSource` reads them from the node itself (`eth_getLogs` on CustodyLedger and
 * PaymentChannels), so the tower acts without waiting for an index; the indexer can implement
 * `WatchSource` later. Only ids come from here: the tower reads each touched shipment's state from
 * the chain (`shipmentOf`), so a source that repeats a block, or reports an orphaned one, costs a
 * read and never a wrong action.
 */
import type { Interface, Provider } from "ethers";
import { CustodyLedger__factory } from "../../../typechain-types/factories/contracts/custody/CustodyLedger__factory.js";
import { PaymentChannels__factory } from "../../../typechain-types/factories/contracts/payments/PaymentChannels__factory.js";

/** A unilateral close seen on chain. */
export interface CloseStarted {
  channel: string;
  /** When the challenge period ends (s): a claim must land in a block before it. */
  closesAt: bigint;
}

/** What happened in a range of blocks that the tower must look at. */
export interface Touched {
  /**
   * Shipments created, checkpointed, marked or delivered (ids, lower case), each with where its
   * latest event in the range is (`blockHash:logIndex`): when that changes, a reorg or a new event
   * changed it, and its state is read again.
   */
  shipments: Map<string, string>;
  /** Unilateral closes started. */
  closes: CloseStarted[];
  /** Channels that closed for good (ids, lower case). */
  closed: Set<string>;
}

export interface WatchSource {
  /** What happened in blocks `fromBlock..toBlock` (inclusive). */
  read(fromBlock: number, toBlock: number): Promise<Touched>;
}

const custody: Interface = CustodyLedger__factory.createInterface();
const channels: Interface = PaymentChannels__factory.createInterface();

/** The CustodyLedger events after which a shipment's overdue or silent condition may have changed. */
const SHIPMENT_EVENTS = ["ShipmentCreated", "CheckpointPosted", "MarkedOverdue", "MarkedSilent", "Delivered"];

/** Reads the events straight from the node, in ranges of at most `maxRange` blocks. */
export class ChainSource implements WatchSource {
  constructor(
    private readonly provider: Provider,
    private readonly addresses: { custodyLedger: string; paymentChannels?: string },
    private readonly maxRange = 5_000,
  ) {}

  async read(fromBlock: number, toBlock: number): Promise<Touched> {
    const touched: Touched = { shipments: new Map(), closes: [], closed: new Set() };
    for (let from = fromBlock; from <= toBlock; from += this.maxRange) {
      const to = Math.min(toBlock, from + this.maxRange - 1);
      const shipmentLogs = await this.provider.getLogs({
        address: this.addresses.custodyLedger,
        topics: [SHIPMENT_EVENTS.map((name) => custody.getEvent(name)!.topicHash)],
        fromBlock: from,
        toBlock: to,
      });
      // Every one of these events has the shipment as its first indexed argument.
      for (const log of shipmentLogs)
        touched.shipments.set(log.topics[1].toLowerCase(), `${log.blockHash}:${log.index}`);
      if (!this.addresses.paymentChannels) continue;
      const started = channels.getEvent("ChannelCloseStarted")!.topicHash;
      const closed = channels.getEvent("ChannelClosed")!.topicHash;
      const channelLogs = await this.provider.getLogs({
        address: this.addresses.paymentChannels,
        topics: [[started, closed]],
        fromBlock: from,
        toBlock: to,
      });
      for (const log of channelLogs) {
        const channel = log.topics[1].toLowerCase();
        if (log.topics[0] === closed) touched.closed.add(channel);
        else touched.closes.push({ channel, closesAt: BigInt(channels.parseLog(log)!.args.closesAt as bigint) });
      }
    }
    return touched;
  }
}

/**
 * Who may subscribe to a target, asked of the chain now (never of the index, which may lag or be
 * wrong): a device's or a lock's owner in the DeviceRegistry; a shipment's creator (the shipper,
 * from its `ShipmentCreated` log), its custodian or its receiver in the CustodyLedger; a channel's
 * payer device's or payee device's owner (the devices from its `ChannelOpened` log, their owners
 * from the registry). Every read is at one block, so the answer is one state of the chain.
 */
import { getAddress, ZeroAddress, type Provider } from "ethers";
import {
  CustodyLedger__factory,
  DeviceRegistry__factory,
  PaymentChannels__factory,
} from "../../../typechain-types/index.js";
import { WebhookRefusal } from "./refusal.js";
import type { Scope } from "./subscription.js";

/** The contracts a watch checks ownership in (CustodyLedger and PaymentChannels only if it serves those scopes). */
export interface WatchAddresses {
  registry: string;
  custodyLedger?: string;
  paymentChannels?: string;
}

export class OwnershipChecker {
  constructor(
    private readonly provider: Provider,
    private readonly addresses: WatchAddresses,
  ) {}

  /** The accounts that may subscribe to `target` of `scope` at block `blockTag`. */
  async ownersOf(scope: Scope, target: string, blockTag: number): Promise<string[]> {
    const registry = DeviceRegistry__factory.connect(this.addresses.registry, this.provider);
    const ownerOfDevice = async (id: bigint) => (await registry.ownership(id, { blockTag })).owner;
    switch (scope) {
      case "owner":
        return [target];
      case "device":
      case "lock": {
        const owner = await ownerOfDevice(BigInt(target));
        if (owner === ZeroAddress)
          throw new WebhookRefusal("unknown_target", `there is no ${scope} ${target} on chain`, "target");
        return [owner];
      }
      case "shipment": {
        const ledger = CustodyLedger__factory.connect(this.need("custodyLedger"), this.provider);
        const view = await ledger.shipmentOf(target, { blockTag });
        if (view.custodian === ZeroAddress)
          throw new WebhookRefusal("unknown_target", `there is no shipment ${target} on chain`, "target");
        const created = await ledger.queryFilter(ledger.filters.ShipmentCreated(target), 0, blockTag);
        return [view.custodian, view.receiver, ...created.map((e) => e.args.creator)].map((a) => getAddress(a));
      }
      case "channel": {
        const channels = PaymentChannels__factory.connect(this.need("paymentChannels"), this.provider);
        const opened = await channels.queryFilter(channels.filters.ChannelOpened(target), 0, blockTag);
        if (opened.length === 0)
          throw new WebhookRefusal("unknown_target", `there is no channel ${target} on chain`, "target");
        const { payer, payee } = opened[0].args;
        return (await Promise.all([ownerOfDevice(payer), ownerOfDevice(payee)])).filter((o) => o !== ZeroAddress);
      }
    }
  }

  private need(name: "custodyLedger" | "paymentChannels"): string {
    const address = this.addresses[name];
    if (!address)
      throw new WebhookRefusal("unknown_target", `this watch is not configured with a ${name} address`, "scope");
    return address;
  }
}

/**
 * The beacon role: a quarantined device reports where it is, sealed to the keys its owner
 * registered on LocationBeacons (the owner's beacon key and its responders'), read from the chain
 * when the beacon is built, so a device that changed hands reports to its new owner only. The
 * sealed beacon goes through the outbox like any device message (its own beacon nonce).
 */
import { BeaconError, sealLocation, type Location } from "../../beacons/index.js";
import { AgentError, type Agent, type Signed } from "../agent.js";

export interface BeaconOptions {
  /** When the fix was taken (unix seconds). Default: now. */
  at?: bigint;
  /** Signature deadline (unix seconds). Default: the agent's ttl from now. */
  deadline?: bigint;
  /** Idempotency key (see `Agent.sign`). */
  ref?: string;
}

/** Seals `location` to the device's owner's current recipients and signs it as a `LocationBeacon`. */
export async function signLocationBeacon(agent: Agent, location: Location, opts: BeaconOptions = {}): Promise<Signed> {
  const d = agent.deploymentOf("LocationBeacon"); // refuses first when no LocationBeacons is configured
  const recipients = await agent.chain.beaconRecipients(agent.deviceId);
  if (recipients === "0x") {
    throw new AgentError(
      "recipients",
      "the device's owner has registered no beacon key on LocationBeacons (setBeaconKey): a beacon would reach nobody",
    );
  }
  const at = opts.at ?? BigInt(Math.floor(Date.now() / 1000));
  let ciphertext: string;
  try {
    ciphertext = await sealLocation(location, recipients, {
      chainId: BigInt(d.chainId),
      contract: d.verifyingContract,
      device: agent.deviceId,
      at,
    });
  } catch (err) {
    if (err instanceof BeaconError) throw new AgentError(err.field, err.message);
    throw err;
  }
  const fields = { recipients, ciphertext, at, ...(opts.deadline === undefined ? {} : { deadline: opts.deadline }) };
  return agent.sign("LocationBeacon", fields, opts.ref === undefined ? {} : { ref: opts.ref });
}

/**
 * `DeviceReports`: the messages devices send their guardians — `PositionReport`s (a lock's unlock
 * attempt, where and when), signed by the device's registered key. A report counts as an
 * observation only once its signature checks against the key the registry resolves, now, to that
 * very device (a forged report, a key rotated away or another device's key is refused), and its
 * `seq` is above the last one taken from that key (a replay or a reorder is refused; per key, so a
 * leaked key's huge seq does not silence the device's next key), and it is not dated ahead of the
 * chain.
 *
 * Positions are not on chain (beacons are sealed, checkpoints carry a hashed place), so this is
 * how `geofence` and `rotationAway` see where a device is. Each observation keeps the key, the
 * digest and the signature: a vote's evidence lets anyone re-check the report. A report is kept in
 * the guardian's `OffChainBook` (on disk) before it is acknowledged.
 */
import { getBytes, type Provider } from "ethers";
import { digest, type Deployment } from "../../eip712/index.js";
import { DeviceSignatureVerifier } from "../../crypto/verify.js";
import { DeviceRegistry__factory } from "../../../typechain-types/factories/contracts/registry/DeviceRegistry__factory.js";
import { checkPositionReportShape, type PositionReportBody } from "../../messages/positionReport.js";
import type { Clock } from "./clock.js";
import type { OffChainBook } from "./offChainBook.js";

/** A signed position report as a device sends it. */
export type SignedPositionReport = PositionReportBody;

export type ReportVerdict = { accepted: true } | { accepted: false; reason: string; field?: string };

export class DeviceReports {
  private readonly registry;
  private readonly verifier: DeviceSignatureVerifier;
  private readonly deployment: Deployment;
  private readonly book: OffChainBook;
  private readonly clock: Clock;

  /** `deployment`: the guardians' EIP-712 domain — chain id and the DeviceRegistry's address. */
  constructor(opts: {
    provider: Provider;
    deployment: Deployment;
    book: OffChainBook;
    clock: Clock;
    p256Verifiers?: string[];
  }) {
    this.deployment = opts.deployment;
    this.book = opts.book;
    this.clock = opts.clock;
    this.registry = DeviceRegistry__factory.connect(opts.deployment.verifyingContract, opts.provider);
    this.verifier = new DeviceSignatureVerifier(opts.p256Verifiers ?? []);
  }

  /** Checks `report` and, when genuine and new, keeps it as the device's latest position. */
  async submit(report: SignedPositionReport): Promise<ReportVerdict> {
    const shape = checkPositionReportShape(report);
    if (shape) return { accepted: false, ...shape };
    const device = BigInt(report.device);
    const seq = BigInt(report.seq);
    const message = {
      device,
      seq,
      at: BigInt(report.at),
      latitudeE7: report.latitudeE7,
      longitudeE7: report.longitudeE7,
      record: report.record,
    };
    const d = digest("PositionReport", this.deployment, message);
    if (!this.verifier.verify(report.key, getBytes(d), getBytes(report.signature)))
      return { accepted: false, field: "signature", reason: "the signature is not the key's over this report" };
    // The key must be the device's registered key now, as the chain resolves it.
    const [resolved] = await this.registry.resolveKey(report.key);
    if (resolved !== device)
      return {
        accepted: false,
        field: "key",
        reason: `the key is not device ${device}'s registered key (the registry resolves it to ${resolved})`,
      };
    // Dated more than a minute ahead of the chain: refused (a report from the future would keep
    // the device looking alive, and its rules' windows open, for as long as it names).
    const head = await this.clock.now();
    if (message.at > BigInt(head + 60))
      return { accepted: false, field: "at", reason: `at ${message.at} is ahead of the chain's time (${head})` };
    const last = this.book.lastSeq(device, report.key);
    if (last !== undefined && seq <= last)
      return { accepted: false, field: "seq", reason: `seq ${seq} is not above the last report's (${last}): a replay` };
    await this.book.addPosition(device, report.key, seq, {
      txHash: "",
      blockNumber: 0,
      at: Number(message.at),
      latitudeE7: report.latitudeE7,
      longitudeE7: report.longitudeE7,
      source: "report",
      signed: { key: report.key.toLowerCase(), digest: d, signature: report.signature },
    });
    return { accepted: true };
  }

  /** The device's accepted reports, oldest first. */
  locations(device: bigint) {
    return this.book.observations(device).locations;
  }
}

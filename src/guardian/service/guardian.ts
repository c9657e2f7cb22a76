/**
 * The guardian's loop: on every block the index reaches, and whenever it was told something new off
 * chain (a signed report, a voucher, a relayer's refusal), evaluate the policy over each device the
 * guardian watches and vote where the decision differs from the chain — `flag` for a device that
 * fires and is not flagged by the guardians, `clearFlag` for a flagged one that is clear now.
 *
 * A vote is decided against the chain, not the index: the registry's flag and the quorum's round
 * and this guardian's ballot are read at the chain's head (the index may be a block behind them).
 * Its evidence is kept on disk before the vote is queued in the outbox, and the vote's id is
 * (guardian, device, side, round): a later evaluation in the same round, or a restart, finds the
 * vote already queued (or on chain) and queues nothing.
 */
import { statSync } from "node:fs";
import { ZeroHash, type Provider } from "ethers";
import type { Logger } from "../../agent/log.js";
import type { Outbox } from "../../agent/outbox.js";
import { callId, type GuardianVoteCall } from "../../messages/calls.js";
import type { IndexClient } from "../../watch/indexer/client.js";
import { DeviceRegistry__factory } from "../../../typechain-types/factories/contracts/registry/DeviceRegistry__factory.js";
import { GuardianQuorum__factory } from "../../../typechain-types/factories/contracts/guardians/GuardianQuorum__factory.js";
import { evaluate, loadPolicy, type Policy } from "../policy/index.js";
import type { ChainClock } from "./clock.js";
import type { EvidenceStore } from "./evidence.js";
import type { IndexReader, OffChainObservations } from "./observe.js";

export interface GuardianStats {
  /** The last index block evaluated, and its time. */
  block: number;
  blockTimestamp: number;
  devices: number;
  /** Devices whose decision was `fire` at the last evaluation. */
  firing: number;
  flagsQueued: number;
  clearsQueued: number;
  policy: { name: string; file: string };
  /** Set when the loop stopped because the evidence or the outbox could not be written. */
  halted?: string;
}

export interface GuardianLoopOptions {
  index: IndexClient;
  reader: IndexReader;
  provider: Provider;
  registry: string;
  guardianQuorum: string;
  guardian: string;
  outbox: Outbox;
  evidence: EvidenceStore;
  policyFile: string;
  log: Logger;
  pollMs: number;
  owners?: string[];
  /** What the guardian was told off chain of a device, and a counter that moves when that changes. */
  offChain?: { of: (device: bigint) => OffChainObservations; version: () => number };
  clock: ChainClock;
}

export class GuardianLoop {
  private readonly o: GuardianLoopOptions;
  private readonly registry;
  private readonly quorum;
  private policy: Policy;
  private policyMtime: number;
  private running = false;
  private loop: Promise<void> | undefined;
  private wake: (() => void) | undefined;
  private readonly s: GuardianStats;
  private header: { number: number; timestamp: number } | undefined;
  private offChainVersion = -1;
  private evaluatedAt = 0;

  constructor(o: GuardianLoopOptions) {
    this.o = o;
    this.registry = DeviceRegistry__factory.connect(o.registry, o.provider);
    this.quorum = GuardianQuorum__factory.connect(o.guardianQuorum, o.provider);
    this.policy = loadPolicy(o.policyFile); // a bad policy at start is the operator's to fix: it throws
    this.policyMtime = statSync(o.policyFile).mtimeMs;
    this.s = {
      block: -1,
      blockTimestamp: 0,
      devices: 0,
      firing: 0,
      flagsQueued: 0,
      clearsQueued: 0,
      policy: { name: this.policy.name, file: o.policyFile },
    };
  }

  stats(): GuardianStats {
    return { ...this.s, policy: { ...this.s.policy } };
  }

  start(): void {
    this.running = true;
    this.loop = this.run();
  }

  async stop(): Promise<void> {
    this.running = false;
    this.wake?.();
    await this.loop;
  }

  private async run(): Promise<void> {
    let failures = 0;
    while (this.running) {
      try {
        await this.tick();
        failures = 0;
      } catch (err) {
        if (err instanceof Halt) {
          this.s.halted = err.message;
          this.o.log.error("guardian: halted", { error: err.message });
          return;
        }
        failures++;
        this.o.log.warn("guardian: index or node failed; retrying", { error: String(err), failures });
      }
      const ms = failures === 0 ? this.o.pollMs : Math.min(5_000, this.o.pollMs * 2 ** failures);
      await new Promise<void>((resolve) => {
        this.wake = resolve;
        setTimeout(resolve, ms);
      });
    }
  }

  /** A policy file edited while the guardian runs takes effect at the next block; a bad edit is logged and ignored. */
  private reloadPolicy(): void {
    let mtime: number;
    try {
      mtime = statSync(this.o.policyFile).mtimeMs;
    } catch (err) {
      this.o.log.error("guardian: the policy file cannot be read; keeping the policy in force", { error: String(err) });
      return;
    }
    if (mtime === this.policyMtime) return;
    this.policyMtime = mtime;
    try {
      this.policy = loadPolicy(this.o.policyFile);
      this.s.policy.name = this.policy.name;
      this.o.log.info("guardian: policy reloaded", { file: this.o.policyFile, name: this.policy.name });
    } catch (err) {
      this.o.log.error("guardian: the edited policy is invalid; keeping the policy in force", {
        error: String(err),
      });
    }
  }

  private async tick(): Promise<void> {
    const { indexedBlock } = await this.o.index.status();
    const block = Number(indexedBlock);
    const version = this.o.offChain?.version() ?? 0;
    if (block < this.s.block || (block === this.s.block && version === this.offChainVersion)) return;
    // News off chain between blocks: at most one evaluation a second (each reads the whole fleet).
    if (block === this.s.block && Date.now() - this.evaluatedAt < OFF_CHAIN_EVALUATION_MS) return;
    this.reloadPolicy();
    if (this.header?.number !== block) {
      const header = await this.o.provider.getBlock(block);
      if (!header) throw new Error(`the node has no block ${block} (the index is ahead of it?)`);
      this.header = { number: block, timestamp: header.timestamp };
      this.o.clock.observe(header.timestamp);
    }
    // Off-chain news is dated on the chain-aligned clock, which runs on between blocks.
    const now = Math.max(this.header.timestamp, this.o.clock.now());
    const view = await this.o.reader.fleet({ owners: this.o.owners, offChain: this.o.offChain?.of });
    let firing = 0;
    for (const d of view.devices) {
      if (d.revoked) continue;
      const evaluation = evaluate(this.policy, view.observations.get(d.id)!, now);
      if (evaluation.decision === "fire") firing++;
      const flag = evaluation.decision === "fire";
      // Only a difference from the index's state is checked on chain (the index may be a block behind).
      if (flag === d.guardianFlagged) continue;
      const info = await this.registry.deviceInfo(d.id);
      if (info.guardianFlagged === flag) continue;
      const [round, , voted] = await this.quorum.votes(d.id, flag, this.o.guardian);
      if (voted) continue;
      const call: GuardianVoteCall = {
        type: flag ? "GuardianFlag" : "GuardianClear",
        guardian: this.o.guardian,
        device: d.id.toString(),
        round: Number(round),
        reason: ZeroHash,
      };
      if (this.o.outbox.get(callId(call))) continue; // queued in this round already (it may be in flight)
      // The evidence first: a vote on chain always has its evidence here (a clear's is kept too).
      const kept = persisting("the evidence", () => this.o.evidence.put(evaluation.evidence));
      if (flag) call.reason = kept.hash;
      const entry = await persistingAsync("the outbox", () => this.o.outbox.addCall(call));
      if (flag) this.s.flagsQueued++;
      else this.s.clearsQueued++;
      this.o.log.info("guardian: vote queued", {
        vote: call.type,
        device: call.device,
        round: call.round,
        reason: kept.hash,
        rules: evaluation.findings.filter((f) => f.decision === evaluation.decision).map((f) => f.rule),
        block,
        id: entry.id,
      });
    }
    this.s.block = block;
    this.s.blockTimestamp = this.header.timestamp;
    this.offChainVersion = version;
    this.evaluatedAt = Date.now();
    this.s.devices = view.devices.length;
    this.s.firing = firing;
  }
}

const OFF_CHAIN_EVALUATION_MS = 1_000;

/** A failure to keep what a vote depends on: the guardian must not vote on what it cannot keep. */
class Halt extends Error {}

function persisting<T>(what: string, f: () => T): T {
  try {
    return f();
  } catch (err) {
    throw new Halt(`writing ${what} failed: ${String(err)}`);
  }
}

async function persistingAsync<T>(what: string, f: () => Promise<T>): Promise<T> {
  try {
    return await f();
  } catch (err) {
    throw new Halt(`writing ${what} failed: ${String(err)}`);
  }
}

/**
 * The guardian's evidence, content-addressed: each evidence's canonical JSON is kept in a file named
 * by its keccak256 (the reason hash its flag vote carries), written durably before the vote is
 * queued, so every vote that reaches the chain has its evidence on disk, across crashes.
 */
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { keccak256, toUtf8Bytes } from "ethers";
import { writeFileAtomic } from "../../agent/keystore.js";
import { evidenceJson, type Evidence } from "../policy/index.js";

const HASH = /^0x[0-9a-f]{64}$/;

export class EvidenceStore {
  readonly dir: string;

  constructor(dir: string) {
    this.dir = dir;
    mkdirSync(dir, { recursive: true });
  }

  /** Keeps `evidence` (a no-op when it is there already); returns its hash and bytes. */
  put(evidence: Evidence): { hash: string; json: string } {
    const json = evidenceJson(evidence);
    const hash = keccak256(toUtf8Bytes(json));
    const file = this.fileOf(hash);
    if (!existsSync(file)) writeFileAtomic(file, json, 0o644);
    return { hash, json };
  }

  /** The canonical JSON kept under `hash`, or undefined (also for anything that is not a hash). */
  get(hash: string): string | undefined {
    const h = hash.toLowerCase();
    if (!HASH.test(h)) return undefined;
    const file = this.fileOf(h);
    return existsSync(file) ? readFileSync(file, "utf8") : undefined;
  }

  private fileOf(hash: string): string {
    return path.join(this.dir, `${hash}.json`);
  }
}

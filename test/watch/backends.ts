/**
 * The databases the watch's tests run the indexer on: PGlite always; PostgreSQL when
 * `CUSTOS_TEST_DATABASE_URL` names a server (CI sets it). Each test run gets a schema of its own,
 * so runs against one server do not meet.
 */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";

export interface Backend {
  name: string;
  /** Why this backend is skipped, or null when it runs. */
  skip: string | null;
  databaseUrl?: string;
}

export const BACKENDS: Backend[] = [
  { name: "PGlite", skip: null },
  {
    name: "PostgreSQL",
    databaseUrl: process.env.CUSTOS_TEST_DATABASE_URL || undefined,
    skip: process.env.CUSTOS_TEST_DATABASE_URL
      ? null
      : "CUSTOS_TEST_DATABASE_URL is not set (CI sets it to a PostgreSQL server; set it to run this variant here)",
  },
];

export function dataDir(): string {
  return mkdtempSync(path.join(tmpdir(), "custos-watch-"));
}

let n = 0;
/** A schema name no other run uses (Ponder allows 45 characters). */
export function freshSchema(prefix: string): string {
  return `${prefix}_${process.pid}_${Date.now().toString(36)}_${n++}`.slice(0, 45);
}

/**
 * The databases the watch's tests run the indexer on: PGlite always; PostgreSQL when
 * `CUSTOS_TEST_DATABASE_URL` names a server (CI sets it). Each run gets a database of its own:
 * Ponder keeps its sync cache (schema `ponder_sync`) per database, keyed by chain id, and every
 * test node is chain 31337 with the same deterministic addresses — a shared database would replay
 * another run's logs.
 */
import { mkdtempSync } from "node:fs";
import { createRequire } from "node:module";
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

interface PgClient {
  connect(): Promise<void>;
  query(sql: string): Promise<unknown>;
  end(): Promise<void>;
}
// `pg` is Ponder's own PostgreSQL driver (installed with it); only its Client is needed here.
const { Client } = createRequire(import.meta.url)("pg") as {
  Client: new (options: { connectionString: string }) => PgClient;
};

async function onServer(serverUrl: string, sql: string): Promise<void> {
  const client = new Client({ connectionString: serverUrl });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}

/** A new, empty database on the server `serverUrl` names; `drop()` removes it. */
export async function freshDatabase(serverUrl: string): Promise<{ url: string; drop(): Promise<void> }> {
  const name = freshSchema("custos_watch").toLowerCase();
  await onServer(serverUrl, `CREATE DATABASE "${name}"`);
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  return { url: url.toString(), drop: () => onServer(serverUrl, `DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`) };
}

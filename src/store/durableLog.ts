/**
 * A durable append-only log of JSON records: what the agent's outbox and the relayer's intake
 * persist before they act. An append resolves only after its bytes are on disk (`fdatasync`), so
 * an acknowledged record survives kill -9 and power loss. Concurrent appends share one write and
 * one sync (group commit), which keeps throughput high while every caller still waits for
 * durability. On open, a torn last line (a crash mid-write) is cut off; `rewrite` compacts the log
 * atomically (write a temporary file, sync it, rename it over, sync the directory).
 *
 * Why a log rather than SQLite: one writer, records that are only ever appended and replayed, and
 * no native build; the whole state is rebuilt from the log at start.
 */
import {
  closeSync,
  existsSync,
  fdatasync,
  fsyncSync,
  ftruncateSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  write,
  writeFileSync,
  writeSync,
} from "node:fs";
import path from "node:path";
import { promisify } from "node:util";

const fdatasyncAsync = promisify(fdatasync);
const writeAsync = promisify(write);

/** The appends that share one write and one sync: one promise for all of them. */
interface Group {
  done: Promise<void>;
  resolve: () => void;
  reject: (err: Error) => void;
}

function newGroup(): Group {
  let resolve!: () => void;
  let reject!: (err: Error) => void;
  const done = new Promise<void>((res, rej) => ((resolve = res), (reject = rej)));
  return { done, resolve, reject };
}

export class DurableLog<T> {
  private fd: number;
  private buffer: string[] = [];
  /** The group the buffered records belong to (null while the buffer is empty). */
  private group: Group | null = null;
  private flushing: Promise<void> | null = null;
  private paused = false;
  private closed = false;

  private constructor(
    readonly file: string,
    fd: number,
    /** The records found in the file when it was opened, in order. */
    readonly replayed: T[],
  ) {
    this.fd = fd;
  }

  /** Opens (creating if needed) the log at `file` and replays it. */
  static open<T>(file: string): DurableLog<T> {
    mkdirSync(path.dirname(file), { recursive: true });
    const records: T[] = [];
    if (existsSync(file)) {
      const text = readFileSync(file, "utf8");
      let good = 0; // bytes of complete, parseable lines
      let start = 0;
      for (;;) {
        const end = text.indexOf("\n", start);
        if (end < 0) break;
        const line = text.slice(start, end);
        try {
          records.push(JSON.parse(line) as T);
        } catch {
          // Only the last write can be torn; anything after it is not ours to trust.
          break;
        }
        start = end + 1;
        good += Buffer.byteLength(line, "utf8") + 1; // per line: measuring the prefix each time was O(n²)
      }
      if (good < Buffer.byteLength(text, "utf8")) {
        // Keep what is cut off beside the log: a torn last write is expected, anything more is evidence.
        writeFileSync(`${file}.cut-${Date.now()}`, Buffer.from(text, "utf8").subarray(good));
        const fd = openSync(file, "r+");
        ftruncateSync(fd, good);
        fsyncSync(fd);
        closeSync(fd);
      }
    }
    const fd = openSync(file, "a");
    syncDir(path.dirname(file));
    return new DurableLog<T>(file, fd, records);
  }

  /** Appends `record`; resolves once it is on disk. */
  append(record: T): Promise<void> {
    if (this.closed) return Promise.reject(new Error(`log ${this.file} is closed`));
    this.buffer.push(JSON.stringify(record, (_k, v) => (typeof v === "bigint" ? v.toString() : v)) + "\n");
    // One promise per group commit, not per record: a stream of appends allocates one per sync.
    this.group ??= newGroup();
    if (!this.paused) this.flushing ??= this.flush();
    return this.group.done;
  }

  /** Appends several records with one sync. */
  appendAll(records: T[]): Promise<void> {
    return Promise.all(records.map((r) => this.append(r))).then(() => undefined);
  }

  // Appends made while a sync is in flight wait for the next one, and share it.
  private async flush(): Promise<void> {
    await Promise.resolve();
    while (this.buffer.length > 0 && !this.paused) {
      const [lines, group] = [this.buffer.join(""), this.group!];
      this.buffer = [];
      this.group = null;
      try {
        const bytes = Buffer.from(lines, "utf8");
        let offset = 0;
        while (offset < bytes.length) offset += (await writeAsync(this.fd, bytes, offset)).bytesWritten;
        await fdatasyncAsync(this.fd);
        group.resolve();
      } catch (err) {
        group.reject(err as Error);
      }
    }
    this.flushing = null;
  }

  /**
   * Replaces the whole log with `records`, atomically. Appends already being written finish first;
   * appends made during the rewrite wait and land in the new file, after `records`.
   */
  async rewrite(records: T[]): Promise<void> {
    this.paused = true;
    await this.flushing;
    const tmp = `${this.file}.tmp`;
    const fd = openSync(tmp, "w");
    writeAll(fd, records.map((r) => JSON.stringify(r) + "\n").join(""));
    fsyncSync(fd);
    closeSync(fd);
    closeSync(this.fd);
    renameSync(tmp, this.file);
    syncDir(path.dirname(this.file));
    this.fd = openSync(this.file, "a");
    this.paused = false;
    if (this.buffer.length > 0) this.flushing ??= this.flush();
  }

  async close(): Promise<void> {
    await this.flushing;
    if (!this.closed) closeSync(this.fd);
    this.closed = true;
  }
}

function writeAll(fd: number, text: string): void {
  const bytes = Buffer.from(text, "utf8");
  let offset = 0;
  while (offset < bytes.length) offset += writeSync(fd, bytes, offset);
}

function syncDir(dir: string): void {
  const fd = openSync(dir, "r");
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

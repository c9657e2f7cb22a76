/**
 * Files a task writes appear only once what they record is true: each is written under a
 * temporary name next to its final one and renamed when the chain has accepted (a rename within a
 * directory is atomic), so a refused or failed transaction leaves nothing behind — not even the
 * directory, when the task created it.
 */
import {
  closeSync,
  createWriteStream,
  existsSync,
  fsyncSync,
  mkdirSync,
  openSync,
  renameSync,
  rmdirSync,
  rmSync,
  writeSync,
} from "node:fs";
import path from "node:path";

/** Files staged in one directory, published together by `publish()` or removed by `discard()`. */
export class StagedFiles {
  private readonly staged = new Map<string, string>();
  private readonly createdDir: string | undefined;

  constructor(readonly dir: string) {
    // The first directory mkdir creates, if any: what discard() removes again.
    this.createdDir = existsSync(dir) ? undefined : mkdirSync(dir, { recursive: true });
  }

  private tempFor(name: string): string {
    const final = path.join(this.dir, name);
    const tmp = path.join(this.dir, `.${name}.${process.pid}.tmp`);
    this.staged.set(final, tmp);
    return tmp;
  }

  /** Stages `name` with `text`. */
  write(name: string, text: string): void {
    writeDurably(this.tempFor(name), text);
  }

  /** Stages `name` line by line (large files): resolves when the stream is flushed. */
  async writeLines(name: string, lines: Iterable<string>): Promise<void> {
    const out = createWriteStream(this.tempFor(name));
    for (const line of lines) {
      if (!out.write(line + "\n")) await new Promise<void>((r) => out.once("drain", () => r()));
    }
    await new Promise<void>((resolve, reject) => out.end((err?: Error | null) => (err ? reject(err) : resolve())));
  }

  /** Renames every staged file to its final name. */
  publish(): string[] {
    const published: string[] = [];
    for (const [final, tmp] of this.staged) {
      renameSync(tmp, final);
      published.push(final);
    }
    this.staged.clear();
    return published;
  }

  /** Removes every staged file (and the directory, when this created it and it is empty). */
  discard(): void {
    for (const tmp of this.staged.values()) rmSync(tmp, { force: true });
    this.staged.clear();
    if (this.createdDir !== undefined) {
      // Innermost first, up to the first directory mkdir created; stops at one that is not empty.
      let d = path.resolve(this.dir);
      const top = path.resolve(this.createdDir);
      for (;;) {
        try {
          rmdirSync(d);
        } catch {
          break;
        }
        if (d === top) break;
        d = path.dirname(d);
      }
    }
  }
}

function writeDurably(file: string, text: string): void {
  const fd = openSync(file, "w", 0o644);
  try {
    const bytes = Buffer.from(text, "utf8");
    let offset = 0;
    while (offset < bytes.length) offset += writeSync(fd, bytes, offset);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Writes one file whole or not at all (temporary name, then rename). */
export function writeFileAtomic(file: string, text: string): void {
  const staged = new StagedFiles(path.dirname(path.resolve(file)));
  try {
    staged.write(path.basename(file), text);
    staged.publish();
  } catch (err) {
    staged.discard();
    throw err;
  }
}

/** Runs async sections one at a time, in call order: a mutex for one process's promises. */
export class Serial {
  private tail: Promise<void> = Promise.resolve();

  run<T>(fn: () => Promise<T>): Promise<T> {
    const previous = this.tail;
    let release!: () => void;
    this.tail = new Promise<void>((resolve) => (release = resolve));
    return previous.then(fn).finally(release);
  }
}

/**
 * A FIFO async mutex. Training a batch and taking a snapshot both hold it, so a snapshot
 * always sees whole batches, and the offsets it records match the state it writes.
 */
export class StateLock {
  #tail: Promise<unknown> = Promise.resolve();

  run<T>(fn: () => Promise<T>): Promise<T> {
    const result = this.#tail.then(fn);
    this.#tail = result.catch(() => undefined);
    return result;
  }
}

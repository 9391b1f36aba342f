/** Milliseconds since the Unix epoch. */
export type Milliseconds = number;

/** Injected time source, so windows and TTLs are testable without waiting. */
export interface Clock {
  now(): Milliseconds;
}

export const systemClock: Clock = { now: () => Date.now() };

/** A clock that moves only when told to. */
export class ManualClock implements Clock {
  #t: Milliseconds;
  constructor(start: Milliseconds = 0) {
    this.#t = start;
  }
  now(): Milliseconds {
    return this.#t;
  }
  advance(ms: Milliseconds): void {
    this.#t += ms;
  }
}

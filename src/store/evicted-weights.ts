/**
 * What an evicted token leaves behind: its linear weight and that weight's optimizer state, in a
 * small hashed table of buckets (newest eviction wins a bucket). A token created later under the
 * same key starts from them instead of from 0, so a budget or TTL eviction costs a returning token
 * its vector only, not the bias it learned. An 8-bit fingerprint of the key guards each bucket: a
 * different key hashing to the bucket starts from 0 (without it, collisions cost more AUC than the
 * memory gives). Fixed size, allocated at construction, counted in the store's bytes. Keys come
 * as their hash (key-table.ts hashKey, which the key table keeps per id): no key is hashed again.
 */

export class EvictedWeights {
  readonly buckets: number;
  /** Optimizer floats per weight (the store's linearOptimizerSlots). */
  readonly slots: number;
  /** 0: empty bucket; else 1..255, from the high bits of the key's hash. */
  readonly fingerprint: Uint8Array;
  readonly linear: Float32Array;
  readonly optimizer: Float32Array;
  readonly #mask: number;

  /** `buckets`: 0 (off) or a power of two. */
  constructor(buckets: number, slots: number) {
    this.buckets = buckets;
    this.slots = slots;
    this.#mask = buckets - 1;
    this.fingerprint = new Uint8Array(buckets);
    this.linear = new Float32Array(buckets);
    this.optimizer = new Float32Array(buckets * slots);
  }

  get bytes(): number {
    return this.buckets * EvictedWeights.bytesPerBucket(this.slots);
  }

  static bytesPerBucket(slots: number): number {
    return 1 + 4 + 4 * slots;
  }

  /** Keeps the weight and optimizer state (`state`, `slots` floats from `at`) of the key of hash `h`. */
  remember(h: number, linear: number, state: Float32Array, at: number): void {
    if (this.buckets === 0) return;
    const b = h & this.#mask;
    this.fingerprint[b] = fingerprintOf(h);
    this.linear[b] = linear;
    const s = this.slots;
    for (let i = 0; i < s; i++) this.optimizer[b * s + i] = state[at + i];
  }

  /**
   * Writes into `linear[id]` and `state` (at `id * slots`) what the key of hash `h` left when it
   * was evicted and empties its bucket (the live token holds them now); returns false, writing
   * nothing, when the bucket holds nothing of that key.
   */
  recall(h: number, id: number, linear: Float32Array, state: Float32Array): boolean {
    if (this.buckets === 0) return false;
    const b = h & this.#mask;
    if (this.fingerprint[b] !== fingerprintOf(h)) return false;
    this.fingerprint[b] = 0;
    linear[id] = this.linear[b];
    const s = this.slots;
    for (let i = 0; i < s; i++) state[id * s + i] = this.optimizer[b * s + i];
    return true;
  }
}

/** 1..255 from the hash's top byte (0 marks an empty bucket). */
function fingerprintOf(h: number): number {
  return ((h >>> 24) % 255) + 1;
}

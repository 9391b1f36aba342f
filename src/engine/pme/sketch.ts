/**
 * Decayed count-min sketch of token occurrences: finds the hot tokens in O(depth) per event and
 * fixed memory (width × depth floats), whatever the number of tokens.
 *
 * Decay is exponential in events, with half-life `halfLife`. Instead of multiplying every
 * counter at every event, each increment is scaled up by 2^(t/halfLife) and estimates are
 * divided by the current scale: the same numbers, O(1) per event. Counters are renormalised
 * when the scale grows large (once every ~1000 half-lives).
 */
import { PmeError } from '../../errors.js';

export interface SketchOptions {
  /** Counters per row, rounded up to a power of two. Default 65 536 (4 rows: 2 MiB of Float64). */
  width: number;
  /** Rows (independent hashes). Default 4: the estimate is the least of 4 counters. */
  depth: number;
  /** Events after which a count weighs half. Default 100 000. */
  halfLife: number;
  /** Seed of the hash functions. Default 1. */
  seed: number;
}

const DEFAULTS: Readonly<SketchOptions> = Object.freeze({
  width: 65_536,
  depth: 4,
  halfLife: 100_000,
  seed: 1,
});

export class DecayedCountMin {
  readonly options: Readonly<SketchOptions>;
  readonly #counts: Float64Array;
  readonly #mask: number;
  readonly #shift: number;
  readonly #salts: Int32Array;
  readonly #growth: number;
  #scale = 1;

  constructor(options: Partial<SketchOptions> = {}) {
    const o = { ...DEFAULTS, ...options };
    if (!Number.isInteger(o.width) || o.width < 16 || o.width > 2 ** 26)
      throw new PmeError(
        'PME_ERR_CONFIG_INVALID',
        `sketch width must be an integer in [16, 2^26], got ${o.width}`,
      );
    if (!Number.isInteger(o.depth) || o.depth < 1 || o.depth > 16)
      throw new PmeError(
        'PME_ERR_CONFIG_INVALID',
        `sketch depth must be an integer in [1, 16], got ${o.depth}`,
      );
    if (!(o.halfLife > 0))
      throw new PmeError('PME_ERR_CONFIG_INVALID', `sketch halfLife must be > 0, got ${o.halfLife}`);
    const bits = Math.ceil(Math.log2(o.width));
    o.width = 2 ** bits;
    this.options = Object.freeze(o);
    this.#mask = o.width - 1;
    this.#shift = 32 - bits;
    this.#counts = new Float64Array(o.width * o.depth);
    this.#salts = new Int32Array(o.depth);
    let s = o.seed >>> 0;
    for (let r = 0; r < o.depth; r++) {
      s = (Math.imul(s ^ (s >>> 15), 0x2c1b3c6d) + 0x297a2d39 + r) >>> 0;
      this.#salts[r] = s | 1;
    }
    this.#growth = 2 ** (1 / o.halfLife);
  }

  #index(key: number, r: number): number {
    // Multiply-shift hashing: the top bits of key × odd salt.
    let h = Math.imul(key ^ (key >>> 16), this.#salts[r]);
    h ^= h >>> 13;
    h = Math.imul(h, 0x5bd1e995);
    return r * (this.#mask + 1) + ((h >>> this.#shift) & this.#mask);
  }

  /** Counts one occurrence of `key` (an integer) and returns its decayed estimate. */
  add(key: number): number {
    // Conservative update: raise only the counters at the current minimum (less overestimate).
    const depth = this.options.depth;
    const counts = this.#counts;
    let min = Number.POSITIVE_INFINITY;
    for (let r = 0; r < depth; r++) {
      const c = counts[this.#index(key, r)];
      if (c < min) min = c;
    }
    const target = min + this.#scale;
    for (let r = 0; r < depth; r++) {
      const i = this.#index(key, r);
      if (counts[i] < target) counts[i] = target;
    }
    this.#tick();
    return target / this.#scale;
  }

  /** Decayed estimate of how often `key` was seen (never below the truth, up to decay). */
  estimate(key: number): number {
    const depth = this.options.depth;
    let min = Number.POSITIVE_INFINITY;
    for (let r = 0; r < depth; r++) {
      const c = this.#counts[this.#index(key, r)];
      if (c < min) min = c;
    }
    return min / this.#scale;
  }

  #tick(): void {
    this.#scale *= this.#growth;
    if (this.#scale > 1e100) {
      const counts = this.#counts;
      const inv = 1 / this.#scale;
      for (let i = 0; i < counts.length; i++) counts[i] *= inv;
      this.#scale = 1;
    }
  }

  /** The counters and their scale, as views (what a snapshot holds). */
  state(): { counts: Float64Array; scale: number } {
    return { counts: this.#counts, scale: this.#scale };
  }

  /** Continues from a state() of a sketch with the same width and depth; false when they differ
   *  (the sketch is then left as it is). */
  restore(counts: Float64Array, scale: number): boolean {
    if (counts.length !== this.#counts.length || !(scale > 0)) return false;
    this.#counts.set(counts);
    this.#scale = scale;
    return true;
  }

  /** Bytes held by the counters and the hash salts (exact: their typed arrays' byteLength). Fixed
   *  whatever the number of tokens: 2 MiB + 16 B at the defaults. */
  get bytes(): number {
    return this.#counts.byteLength + this.#salts.byteLength;
  }
}

/**
 * Seeded pseudo-random numbers. Every sampling decision in the project takes a `Random`,
 * so runs are reproducible from a seed (tests, benchmarks, offline splits).
 */
export interface Random {
  /** Uniform in [0, 1). */
  next(): number;
  /** Uniform integer in [0, n). */
  int(n: number): number;
  /** Standard normal. */
  normal(): number;
  /** The generator's whole state (to carry it across a restart: see `restore`). */
  state(): number[];
  /** Continues from a state given by `state()`. */
  restore(state: readonly number[]): void;
}

/** sfc32 seeded through splitmix32: fast, 128-bit state, good statistical quality. */
export function createRandom(seed: number): Random {
  let s = seed >>> 0;
  const split = (): number => {
    s = (s + 0x9e3779b9) >>> 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    return (z ^ (z >>> 16)) >>> 0;
  };
  let a = split();
  let b = split();
  let c = split();
  let d = split();
  let spare = Number.NaN;
  const next = (): number => {
    const t = (((a + b) >>> 0) + d) >>> 0;
    d = (d + 1) >>> 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) >>> 0;
    c = (c << 21) | (c >>> 11);
    c = (c + t) >>> 0;
    return t / 4294967296;
  };
  for (let i = 0; i < 12; i++) next();
  return {
    next,
    state: () => [a, b, c, d, spare],
    restore: (state) => {
      [a, b, c, d] = state.map((x) => x >>> 0);
      spare = state[4];
    },
    int: (n) => Math.floor(next() * n),
    normal: () => {
      if (!Number.isNaN(spare)) {
        const v = spare;
        spare = Number.NaN;
        return v;
      }
      let u = 0;
      while (u === 0) u = next();
      const r = Math.sqrt(-2 * Math.log(u));
      const theta = 2 * Math.PI * next();
      spare = r * Math.sin(theta);
      return r * Math.cos(theta);
    },
  };
}

/**
 * Samples ranks 0..n-1 with P(rank k) ∝ 1 / (k + 1)^exponent, by binary search over a
 * precomputed cumulative table (O(log n) per draw, n floats of memory).
 */
export class ZipfSampler {
  readonly #cdf: Float64Array;

  constructor(n: number, exponent: number) {
    if (!(n > 0)) throw new RangeError(`ZipfSampler needs n > 0, got ${n}`);
    this.#cdf = new Float64Array(n);
    let total = 0;
    for (let k = 0; k < n; k++) {
      total += 1 / (k + 1) ** exponent;
      this.#cdf[k] = total;
    }
    for (let k = 0; k < n; k++) this.#cdf[k] /= total;
  }

  sample(random: Random): number {
    const u = random.next();
    const cdf = this.#cdf;
    let lo = 0;
    let hi = cdf.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (cdf[mid] < u) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}

/** A seeded random permutation of 0..n-1 (Fisher-Yates). */
export function shuffledOrder(n: number, seed: number): Uint32Array {
  const random = createRandom(seed);
  const order = new Uint32Array(n);
  for (let i = 0; i < n; i++) order[i] = i;
  for (let i = n - 1; i > 0; i--) {
    const j = random.int(i + 1);
    const t = order[i];
    order[i] = order[j];
    order[j] = t;
  }
  return order;
}

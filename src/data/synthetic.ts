/**
 * A seeded synthetic workload with planted structure, for the demo, the tests and the
 * benchmarks. Users and items are drawn with Zipf popularity (rank 0 = `u0` / `i0` the most
 * active / popular). Each user and item has a hidden vector; an event's label is drawn from
 *
 *   p = sigmoid(bias + signal * (u . v) / sqrt(latentDim) + noise * N(0, 1))
 *
 * so a model has something real to learn, and the ground truth (`trueProbability`,
 * `favourites`) is known. Item fields (`category`, ...) carry signal: an item's vector is the
 * sum of one centroid per field (picked by its field value) plus its own part, so items that
 * share a value have similar vectors and a model can generalise from the field to rare items.
 * Popularity is independent of preference (a hot item is not liked more by everyone).
 */
import { PmeError } from '../errors.js';
import type { Milliseconds } from '../util/clock.js';
import { createRandom, type Random, ZipfSampler } from '../util/random.js';
import type { CatalogItem, Interaction } from './event.js';

export interface SyntheticField {
  /** Field name (not `user` or `item`). */
  name: string;
  /** Number of distinct values; values are `0`..`cardinality-1`, drawn uniformly per item. */
  cardinality: number;
}

export interface SyntheticOptions {
  /** Seed of every random draw: same seed and options, same catalog and stream. Default 1. */
  seed?: number;
  /** Number of users (`u0`..). Default 1000. Costs latentDim floats each. */
  users?: number;
  /** Number of items (`i0`..). Default 1000. Costs latentDim floats each. */
  items?: number;
  /** Item fields. Default `[{ name: 'category', cardinality: 20 }]`. */
  fields?: readonly SyntheticField[];
  /** Zipf exponent of user activity; 0 is uniform. Default 1. */
  userZipf?: number;
  /** Zipf exponent of item popularity; 0 is uniform. Default 1. */
  itemZipf?: number;
  /** Dimension of the planted vectors. Default 8. */
  latentDim?: number;
  /** Standard deviation of the Gaussian noise added to each event's logit. Default 0.5. */
  noise?: number;
  /** Weight of the preference `(u . v) / sqrt(latentDim)` (about N(0, 1)) in the logit. Default 2. */
  signal?: number;
  /**
   * Share of the item vector's variance explained by its fields, in [0, 1]. Default 0.6;
   * 0 makes fields pure noise. Ignored without fields.
   */
  fieldShare?: number;
  /** Target mean label; the bias is calibrated at construction to reach it. Default 0.3. */
  positiveRate?: number;
  /** Timestamp of the first event. Default 1_700_000_000_000 (Nov 2023). */
  startTime?: Milliseconds;
  /** Milliseconds between consecutive events. Default 100. */
  eventIntervalMs?: Milliseconds;
  /**
   * Planted ranks of users, each drawn uniformly from this list (each in [1, latentDim]): a user
   * of rank r has a vector in the span of the first r latent axes (variance latentDim / r per
   * axis, so every user's preferences are as strong), so r dimensions describe it exactly and more
   * are wasted on it. Items keep all latentDim axes. Default `[]`: every user of full rank.
   */
  userRanks?: readonly number[];
}

export type ResolvedSyntheticOptions = Readonly<Required<Omit<SyntheticOptions, 'fields' | 'userRanks'>>> & {
  readonly fields: readonly Readonly<SyntheticField>[];
  readonly userRanks: readonly number[];
};

export const SYNTHETIC_DEFAULTS: ResolvedSyntheticOptions = Object.freeze({
  seed: 1,
  users: 1000,
  items: 1000,
  fields: Object.freeze([Object.freeze({ name: 'category', cardinality: 20 })]),
  userZipf: 1,
  itemZipf: 1,
  latentDim: 8,
  noise: 0.5,
  signal: 2,
  fieldShare: 0.6,
  positiveRate: 0.3,
  startTime: 1_700_000_000_000,
  eventIntervalMs: 100,
  userRanks: Object.freeze([]),
});

function invalid(message: string): PmeError {
  return new PmeError('PME_ERR_CONFIG_INVALID', `synthetic workload: ${message}`);
}

/** Validates options against each other and fills defaults; the result is frozen. */
export function resolveSyntheticOptions(options: SyntheticOptions = {}): ResolvedSyntheticOptions {
  const o = { ...SYNTHETIC_DEFAULTS, ...options };
  const int = (name: keyof SyntheticOptions, min: number): void => {
    const v = o[name] as number;
    if (!(Number.isInteger(v) && v >= min)) throw invalid(`${name} must be an integer >= ${min}, got ${v}`);
  };
  const num = (name: keyof SyntheticOptions, min: number, max = Number.POSITIVE_INFINITY): void => {
    const v = o[name] as number;
    if (!(typeof v === 'number' && v >= min && v <= max)) {
      throw invalid(`${name} must be a number in [${min}, ${max}], got ${v}`);
    }
  };
  if (!Number.isInteger(o.seed)) throw invalid(`seed must be an integer, got ${o.seed}`);
  int('users', 1);
  int('items', 1);
  int('latentDim', 1);
  num('userZipf', 0, 10);
  num('itemZipf', 0, 10);
  num('noise', 0);
  num('signal', 0);
  num('fieldShare', 0, 1);
  num('eventIntervalMs', 0);
  if (!Number.isFinite(o.startTime)) throw invalid(`startTime must be a finite number, got ${o.startTime}`);
  if (!(o.positiveRate > 0 && o.positiveRate < 1)) {
    throw invalid(`positiveRate must be in (0, 1), got ${o.positiveRate}`);
  }
  const names = new Set<string>();
  for (const f of o.fields) {
    if (typeof f.name !== 'string' || f.name.length === 0 || f.name === 'user' || f.name === 'item') {
      throw invalid(`field name "${f.name}" must be a non-empty string other than user and item`);
    }
    if (names.has(f.name)) throw invalid(`field "${f.name}" is declared twice`);
    names.add(f.name);
    if (!(Number.isInteger(f.cardinality) && f.cardinality >= 1)) {
      throw invalid(`field "${f.name}" needs an integer cardinality >= 1, got ${f.cardinality}`);
    }
  }
  for (const r of o.userRanks) {
    if (!(Number.isInteger(r) && r >= 1 && r <= o.latentDim)) {
      throw invalid(`userRanks must hold integers in [1, latentDim = ${o.latentDim}], got ${r}`);
    }
  }
  return Object.freeze({
    ...o,
    fields: Object.freeze(o.fields.map((f) => Object.freeze({ ...f }))),
    userRanks: Object.freeze([...o.userRanks]),
  });
}

function sigmoid(z: number): number {
  return 1 / (1 + Math.exp(-z));
}

export class SyntheticWorkload {
  readonly options: ResolvedSyntheticOptions;
  /** Logit bias calibrated so that the mean label is close to positiveRate. */
  readonly bias: number;
  readonly #userVectors: Float32Array;
  /** Planted rank of each user (empty: every user of rank latentDim). */
  readonly #userRank: Uint8Array;
  readonly #itemVectors: Float32Array;
  readonly #userIds: string[];
  readonly #itemIds: string[];
  readonly #itemFields: Readonly<Record<string, string>>[];
  readonly #userSampler: ZipfSampler;
  readonly #itemSampler: ZipfSampler;
  readonly #random: Random;
  readonly #dim: number;
  /** signal / sqrt(latentDim), folded once. */
  readonly #scale: number;
  /** Divides the noiseless logit for the expected label under logit noise (probit approximation). */
  readonly #noiseShrink: number;
  #count = 0;

  constructor(options: SyntheticOptions = {}) {
    const o = resolveSyntheticOptions(options);
    this.options = o;
    const d = o.latentDim;
    this.#dim = d;
    this.#scale = o.signal / Math.sqrt(d);
    this.#noiseShrink = Math.sqrt(1 + (Math.PI * o.noise * o.noise) / 8);
    // Separate streams for the planted world and for the events, so one does not shift the other.
    const world = createRandom(o.seed);
    this.#random = createRandom((o.seed ^ 0x5bd1e995) + 1);

    this.#userVectors = new Float32Array(o.users * d);
    for (let i = 0; i < this.#userVectors.length; i++) this.#userVectors[i] = world.normal();
    // Drawn only when asked for, so that streams without planted ranks stay as they were.
    this.#userRank = new Uint8Array(o.userRanks.length === 0 ? 0 : o.users);
    for (let u = 0; u < this.#userRank.length; u++) {
      const r = o.userRanks[world.int(o.userRanks.length)];
      this.#userRank[u] = r;
      const v = this.#userVectors.subarray(u * d, (u + 1) * d);
      const scale = Math.sqrt(d / r);
      for (let j = 0; j < d; j++) v[j] = j < r ? v[j] * scale : 0;
    }

    // Item vector = sqrt(share / F) * sum of its field values' centroids + sqrt(1 - share) * own part,
    // so every component has unit variance whatever the number of fields.
    const nf = o.fields.length;
    const share = nf === 0 ? 0 : o.fieldShare;
    const centroids = o.fields.map((f) => {
      const c = new Float32Array(f.cardinality * d);
      for (let i = 0; i < c.length; i++) c[i] = world.normal();
      return c;
    });
    const fieldWeight = nf === 0 ? 0 : Math.sqrt(share / nf);
    const ownWeight = Math.sqrt(1 - share);
    this.#itemVectors = new Float32Array(o.items * d);
    this.#itemFields = new Array(o.items);
    const values = o.fields.map((f) => Array.from({ length: f.cardinality }, (_, k) => String(k)));
    for (let i = 0; i < o.items; i++) {
      const fields: Record<string, string> = {};
      const v = this.#itemVectors.subarray(i * d, (i + 1) * d);
      for (let j = 0; j < d; j++) v[j] = ownWeight * world.normal();
      for (let f = 0; f < nf; f++) {
        const k = world.int(o.fields[f].cardinality);
        fields[o.fields[f].name] = values[f][k];
        const c = centroids[f];
        for (let j = 0; j < d; j++) v[j] += fieldWeight * c[k * d + j];
      }
      this.#itemFields[i] = Object.freeze(fields);
    }
    this.#userIds = Array.from({ length: o.users }, (_, i) => `u${i}`);
    this.#itemIds = Array.from({ length: o.items }, (_, i) => `i${i}`);
    this.#userSampler = new ZipfSampler(o.users, o.userZipf);
    this.#itemSampler = new ZipfSampler(o.items, o.itemZipf);
    this.bias = this.#calibrate(createRandom(o.seed + 7919), o.positiveRate);
  }

  /** Bisection on the bias so the mean expected label over sampled (user, item) pairs hits the target. */
  #calibrate(random: Random, target: number): number {
    const n = 20000;
    const s = new Float64Array(n);
    for (let k = 0; k < n; k++) {
      s[k] = this.#preference(this.#userSampler.sample(random), this.#itemSampler.sample(random));
    }
    let lo = -30;
    let hi = 30;
    for (let it = 0; it < 60; it++) {
      const mid = (lo + hi) / 2;
      let mean = 0;
      for (let k = 0; k < n; k++) mean += sigmoid((mid + s[k]) / this.#noiseShrink);
      if (mean / n < target) lo = mid;
      else hi = mid;
    }
    return (lo + hi) / 2;
  }

  /** signal * (u . v) / sqrt(d): the noiseless logit without the bias. */
  #preference(u: number, i: number): number {
    const d = this.#dim;
    const uv = this.#userVectors;
    const iv = this.#itemVectors;
    let dot = 0;
    for (let j = 0, a = u * d, b = i * d; j < d; j++) dot += uv[a + j] * iv[b + j];
    return dot * this.#scale;
  }

  /** Events generated so far. */
  get count(): number {
    return this.#count;
  }

  /** The next event of the stream. `fields` is a fresh copy of the item's fields. */
  next(): Interaction {
    const random = this.#random;
    const u = this.#userSampler.sample(random);
    const i = this.#itemSampler.sample(random);
    const z = this.bias + this.#preference(u, i) + this.options.noise * random.normal();
    const label = random.next() < sigmoid(z) ? 1 : 0;
    const timestamp = this.options.startTime + this.#count * this.options.eventIntervalMs;
    this.#count++;
    return {
      user: this.#userIds[u],
      item: this.#itemIds[i],
      label,
      timestamp,
      fields: { ...this.#itemFields[i] },
    };
  }

  /** The next `n` events. */
  *events(n: number): Generator<Interaction, void, undefined> {
    for (let k = 0; k < n; k++) yield this.next();
  }

  /** The next `n` events, as an array. */
  take(n: number): Interaction[] {
    const out = new Array<Interaction>(n);
    for (let k = 0; k < n; k++) out[k] = this.next();
    return out;
  }

  /** The user's planted rank: the dimensions that describe it (latentDim without userRanks). */
  rankOf(user: string | number): number {
    const u = this.#index(user, 'u', this.options.users);
    return this.#userRank.length === 0 ? this.#dim : this.#userRank[u];
  }

  /** Every item with its fields. */
  catalog(): CatalogItem[] {
    return this.#itemIds.map((item, i) => ({ item, fields: { ...this.#itemFields[i] }, active: true }));
  }

  /** The item's fields (frozen). */
  itemFields(item: string | number): Readonly<Record<string, string>> {
    return this.#itemFields[this.#index(item, 'i', this.options.items)];
  }

  /**
   * Expected label of (user, item): sigmoid of the noiseless logit, shrunk for the logit noise
   * by the probit approximation E[sigmoid(z + sN)] ~ sigmoid(z / sqrt(1 + pi s^2 / 8)).
   */
  trueProbability(user: string | number, item: string | number): number {
    const u = this.#index(user, 'u', this.options.users);
    const i = this.#index(item, 'i', this.options.items);
    return sigmoid((this.bias + this.#preference(u, i)) / this.#noiseShrink);
  }

  /** The user's planted top-k items by preference (popularity plays no part), best first. */
  favourites(user: string | number, k: number): string[] {
    const u = this.#index(user, 'u', this.options.users);
    const n = this.options.items;
    const scores = new Float64Array(n);
    for (let i = 0; i < n; i++) scores[i] = this.#preference(u, i);
    const order = Array.from({ length: n }, (_, i) => i);
    order.sort((a, b) => scores[b] - scores[a] || a - b);
    return order.slice(0, Math.min(k, n)).map((i) => this.#itemIds[i]);
  }

  #index(id: string | number, prefix: string, n: number): number {
    const i = typeof id === 'number' ? id : id.startsWith(prefix) ? Number(id.slice(1)) : Number.NaN;
    if (!(Number.isInteger(i) && i >= 0 && i < n)) throw new RangeError(`unknown synthetic id ${id}`);
    return i;
  }
}

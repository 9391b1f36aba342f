/**
 * The online trainer: resolves each event's tokens in the store, scores the event before learning
 * from it (progressive validation), then updates the FM. It also serves reads: `score` (no side
 * effects, unknown tokens contribute nothing) and `recommend` (an exact scan over a precomputed
 * item-side table with a partial top-k).
 */

import type { CatalogItem, Interaction } from '../data/event.js';
import { PmeError } from '../errors.js';
import { type Clock, type Milliseconds, systemClock } from '../util/clock.js';
import { createRandom, type Random } from '../util/random.js';
import { FmModel, type FmOptions, type ModelStore, sigmoid, type TokenId } from './fm.js';
import { type MetricsSnapshot, ProgressiveMetrics } from './metrics.js';
import { PopularitySampler } from './negatives.js';

/** The part of the EmbeddingStore the trainer uses, on top of what the model reads. */
export interface TrainerStore extends ModelStore {
  id(key: string): TokenId;
  getOrCreate(key: string, size?: number): TokenId;
  touch(id: TokenId, now: Milliseconds): void;
}

/** Sees every token the trainer resolves (the PME hot-token tracker plugs in here). */
export interface TokenObserver {
  observe(id: TokenId): void;
  /** After every learn() (the place to move tokens: no event is half-resolved). */
  endBatch(): void;
}

export interface TrainerOptions {
  /** Options of the FM (learning rates, L2, optimizer); see FmOptions. */
  model: Partial<FmOptions>;
  /** Negatives drawn from the catalog per positive event, for positive-only streams. Default 0.
   *  Each costs one more scored-and-learned event. */
  negatives: number;
  /** Popularity smoothing of the negative draw: P(item) ∝ (count + 1)^exponent. Default 0.75. */
  negativeExponent: number;
  /** Events in the sliding window of the windowed AUC / logloss. Default 10 000 (≈ 200 KB). */
  metricsWindow: number;
  /** Histogram bins of the streaming AUC (logit scale). Default 2048. */
  aucBins: number;
  /** Seed of the negative draws. Default 1. */
  seed: number;
  /** Time source (TTL touches, throughput). Default the system clock. */
  clock: Clock;
  /** Known items and their fields; their fields join the item side of every event. Default none. */
  catalog: Iterable<CatalogItem> | null;
  /** Longest a recommend scan may use an item table older than the last update, in ms. Default 0
   *  (always exact); larger values save the table refresh (items × tokens × D) under load. */
  itemRefreshMs: Milliseconds;
  /** Notified of every resolved token (hot-token tracking). Default none. */
  observer: TokenObserver | null;
}

export const TRAINER_DEFAULTS: Readonly<Omit<TrainerOptions, 'clock' | 'catalog' | 'observer' | 'model'>> =
  Object.freeze({
    negatives: 0,
    negativeExponent: 0.75,
    metricsWindow: 10_000,
    aucBins: 2048,
    seed: 1,
    itemRefreshMs: 0,
  });

function invalid(message: string): PmeError {
  return new PmeError('PME_ERR_CONFIG_INVALID', message);
}

/** Merges defaults, validates and freezes. Throws PME_ERR_CONFIG_INVALID. */
export function resolveTrainerOptions(options: Partial<TrainerOptions> = {}): Readonly<TrainerOptions> {
  const o: TrainerOptions = {
    ...TRAINER_DEFAULTS,
    model: {},
    clock: systemClock,
    catalog: null,
    observer: null,
    ...options,
  };
  if (!Number.isInteger(o.negatives) || o.negatives < 0 || o.negatives > 100)
    throw invalid(`negatives must be an integer in [0, 100], got ${o.negatives}`);
  if (!(o.negativeExponent >= 0 && o.negativeExponent <= 2))
    throw invalid(`negativeExponent must be in [0, 2], got ${o.negativeExponent}`);
  if (!Number.isInteger(o.metricsWindow) || o.metricsWindow < 0)
    throw invalid(`metricsWindow must be an integer >= 0, got ${o.metricsWindow}`);
  if (!Number.isInteger(o.aucBins) || o.aucBins < 16)
    throw invalid(`aucBins must be an integer >= 16, got ${o.aucBins}`);
  if (!Number.isInteger(o.seed)) throw invalid(`seed must be an integer, got ${o.seed}`);
  if (!(o.itemRefreshMs >= 0)) throw invalid(`itemRefreshMs must be >= 0, got ${o.itemRefreshMs}`);
  if (typeof o.clock?.now !== 'function') throw invalid('clock must have a now() method');
  return Object.freeze(o);
}

/** One item known to the trainer: from the catalog, or first seen in the stream. */
interface ItemEntry {
  readonly index: number;
  readonly item: string;
  readonly key: string;
  /** `field=value` keys of its catalog fields. */
  fieldKeys: string[];
  /** Names of its catalog fields: those event fields belong to the item side. */
  fieldNames: Set<string>;
  active: boolean;
}

export interface Recommendation {
  item: string;
  score: number;
}

export interface RecommendResult {
  items: Recommendation[];
  /** 'popularity' when the user is unknown (scores are then popularity shares), else null.
   *  Same shape as src/api/contract.ts RecommendResult. */
  fallback: 'popularity' | null;
}

export interface TrainerStats extends MetricsSnapshot {
  /** Events learned from, negatives included. */
  learned: number;
  /** Negatives drawn so far. */
  negativesDrawn: number;
  /** Events per second of time spent inside learn(). */
  eventsPerSecond: number;
  /** Items known (catalog plus stream). */
  items: number;
}

const NO_FIELDS: Readonly<Record<string, string>> = Object.freeze({});

export class Trainer {
  readonly store: TrainerStore;
  readonly model: FmModel;
  readonly options: Readonly<TrainerOptions>;
  readonly metrics: ProgressiveMetrics;
  readonly #random: Random;
  readonly #clock: Clock;
  readonly #items = new Map<string, ItemEntry>();
  readonly #itemList: ItemEntry[] = [];
  readonly #popularity: PopularitySampler;
  readonly #ids: Int32Array;
  /** Tokens of the user side of the current event, kept to build its negatives. */
  #userCount = 0;
  #learned = 0;
  #negativesDrawn = 0;
  #busyMs = 0;
  /** Bumped by every learn(): the item table is current when it matches. */
  #version = 0;
  // Item-side table for recommend: per item, Σ v (D floats) and Σ w + self-interaction.
  #itemVectors: Float32Array;
  #itemScalars: Float64Array;
  #tableVersion = -1;
  #tableTime = Number.NEGATIVE_INFINITY;
  readonly #vec: Float64Array;
  readonly #acc: Float64Array;
  #heapIndex: Int32Array = new Int32Array(64);
  #heapScore: Float64Array = new Float64Array(64);

  constructor(store: TrainerStore, options: Partial<TrainerOptions> = {}) {
    this.options = resolveTrainerOptions(options);
    this.store = store;
    this.model = new FmModel(store, this.options.model);
    this.metrics = new ProgressiveMetrics(this.options.aucBins, this.options.metricsWindow);
    this.#random = createRandom(this.options.seed);
    this.#clock = this.options.clock;
    this.#popularity = new PopularitySampler(this.options.negativeExponent);
    this.#ids = new Int32Array(this.model.options.maxTokens);
    this.#itemVectors = new Float32Array(0);
    this.#itemScalars = new Float64Array(0);
    this.#vec = new Float64Array(store.dim);
    this.#acc = new Float64Array(store.dim);
    if (this.options.catalog !== null) for (const item of this.options.catalog) this.upsertItem(item);
  }

  /** Adds or updates a catalog item (the compacted `items` topic feeds this). */
  upsertItem(item: CatalogItem): void {
    const fieldKeys: string[] = [];
    for (const name in item.fields) fieldKeys.push(`${name}=${item.fields[name]}`);
    const fieldNames = new Set(Object.keys(item.fields));
    let entry = this.#items.get(item.item);
    if (entry === undefined) {
      entry = this.#addItem(item.item);
    }
    entry.fieldKeys = fieldKeys;
    entry.fieldNames = fieldNames;
    entry.active = item.active;
    this.#popularity.setActive(entry.index, item.active);
    this.#version++;
  }

  #addItem(item: string): ItemEntry {
    const entry: ItemEntry = {
      index: this.#popularity.add(),
      item,
      key: `item=${item}`,
      fieldKeys: [],
      fieldNames: new Set(),
      active: true,
    };
    this.#items.set(item, entry);
    this.#itemList.push(entry);
    return entry;
  }

  /**
   * Learns from a mini-batch: each event is scored, recorded in the metrics, then learned from;
   * positives are followed by `negatives` drawn items. Projections step once per batch.
   */
  learn(batch: readonly Interaction[]): void {
    const start = this.#clock.now();
    const negatives = this.options.negatives;
    for (let b = 0; b < batch.length; b++) {
      const event = batch[b];
      const entry = this.#items.get(event.item) ?? this.#addItem(event.item);
      const n = this.#resolveUser(event.user, event.fields, entry, start);
      const m = this.#resolveItem(entry, n, start);
      this.#step(m, event.label);
      this.#popularity.increment(entry.index);
      if (negatives > 0 && event.label > 0) {
        for (let j = 0; j < negatives; j++) {
          const index = this.#popularity.sample(this.#random);
          const other = index < 0 ? undefined : this.#itemList[index];
          if (other === undefined || other === entry) continue;
          const mm = this.#resolveItem(other, this.#userCount, start);
          this.#step(mm, 0);
          this.#negativesDrawn++;
        }
      }
    }
    this.model.flush();
    this.#version++;
    this.#busyMs += this.#clock.now() - start;
    if (this.options.observer !== null) this.options.observer.endBatch();
  }

  #step(n: number, label: number): void {
    const p = this.model.step(this.#ids, n, label);
    this.metrics.add(p, label);
    this.#learned++;
  }

  /** Writes the user-side token ids at #ids[0..) and returns how many. */
  #resolveUser(user: string, fields: Record<string, string>, entry: ItemEntry, now: Milliseconds): number {
    const store = this.store;
    const ids = this.#ids;
    const observer = this.options.observer;
    let n = 0;
    const userId = store.getOrCreate(`user=${user}`);
    ids[n++] = userId;
    store.touch(userId, now);
    if (observer !== null) observer.observe(userId);
    for (const name in fields) {
      if (entry.fieldNames.has(name)) continue;
      if (n === ids.length) break;
      const id = store.getOrCreate(`${name}=${fields[name]}`);
      ids[n++] = id;
      store.touch(id, now);
      if (observer !== null) observer.observe(id);
    }
    this.#userCount = n;
    return n;
  }

  /** Writes the item-side token ids after the user side (at #ids[from..)) and returns the total. */
  #resolveItem(entry: ItemEntry, from: number, now: Milliseconds): number {
    const store = this.store;
    const ids = this.#ids;
    const observer = this.options.observer;
    let n = from;
    if (n < ids.length) {
      const id = store.getOrCreate(entry.key);
      ids[n++] = id;
      store.touch(id, now);
      if (observer !== null) observer.observe(id);
    }
    const keys = entry.fieldKeys;
    for (let i = 0; i < keys.length && n < ids.length; i++) {
      const id = store.getOrCreate(keys[i]);
      ids[n++] = id;
      store.touch(id, now);
      if (observer !== null) observer.observe(id);
    }
    return n;
  }

  /** Ids of existing tokens only (reads never create tokens), user side then item side. */
  #lookup(keys: readonly string[], into: number[]): void {
    for (const key of keys) {
      const id = this.store.id(key);
      if (id >= 0) into.push(id);
    }
  }

  #userKeys(user: string, fields: Readonly<Record<string, string>>, entry: ItemEntry | undefined): string[] {
    const keys = [`user=${user}`];
    for (const name in fields)
      if (entry === undefined || !entry.fieldNames.has(name)) keys.push(`${name}=${fields[name]}`);
    return keys;
  }

  /**
   * Probabilities for `items` (same order) for `user`, with optional request fields. No side
   * effects: nothing is created, touched or learned; unknown tokens contribute nothing.
   */
  score(
    user: string,
    items: readonly string[],
    fields: Readonly<Record<string, string>> = NO_FIELDS,
  ): number[] {
    const out = new Array<number>(items.length);
    const scratch = new Int32Array(this.model.options.maxTokens);
    for (let i = 0; i < items.length; i++) {
      const entry = this.#items.get(items[i]);
      const ids: number[] = [];
      this.#lookup(this.#userKeys(user, fields, entry), ids);
      this.#lookup(entry === undefined ? [`item=${items[i]}`] : [entry.key, ...entry.fieldKeys], ids);
      const n = Math.min(ids.length, scratch.length);
      for (let k = 0; k < n; k++) scratch[k] = ids[k];
      out[i] = this.model.predict(scratch, n);
    }
    return out;
  }

  /**
   * Top-k active items for `user` by model score (exact scan). An unknown user gets the most
   * popular items instead, flagged `fallback: 'popularity'`.
   */
  recommend(
    user: string,
    k: number,
    options: { exclude?: Iterable<string>; fields?: Readonly<Record<string, string>> } = {},
  ): RecommendResult {
    if (!Number.isInteger(k) || k < 1)
      throw new PmeError('PME_ERR_BAD_REQUEST', `k must be an integer >= 1, got ${k}`);
    const excluded = new Set<number>();
    if (options.exclude !== undefined)
      for (const item of options.exclude) {
        const entry = this.#items.get(item);
        if (entry !== undefined) excluded.add(entry.index);
      }
    const list = this.#itemList;
    if (this.store.id(`user=${user}`) < 0) {
      const total = Math.max(1, this.#popularity.total);
      this.#prepareHeap(k);
      let size = 0;
      for (let i = 0; i < list.length; i++) {
        if (!list[i].active || excluded.has(i)) continue;
        size = this.#offer(size, k, i, this.#popularity.count(i));
      }
      return {
        items: this.#drain(size).map((e) => ({ item: list[e.index].item, score: e.score / total })),
        fallback: 'popularity',
      };
    }
    this.#refreshItemTable();
    // User side summed once: b + Σw + self-interaction, and S_user = Σ v.
    const D = this.model.dim;
    const ids: number[] = [];
    this.#lookup(this.#userKeys(user, options.fields ?? NO_FIELDS, undefined), ids);
    const S = this.#acc;
    const v = this.#vec;
    S.fill(0);
    let base = this.model.bias;
    let self = 0;
    for (const id of ids) {
      base += this.store.linear[id];
      this.model.vectorOf(id, v);
      for (let d = 0; d < D; d++) {
        S[d] += v[d];
        self += v[d] * v[d];
      }
    }
    let sq = 0;
    for (let d = 0; d < D; d++) sq += S[d] * S[d];
    base += 0.5 * (sq - self);
    const table = this.#itemVectors;
    const scalars = this.#itemScalars;
    this.#prepareHeap(k);
    let size = 0;
    for (let i = 0; i < list.length; i++) {
      if (!list[i].active || excluded.has(i)) continue;
      let z = scalars[i];
      const row = i * D;
      for (let d = 0; d < D; d++) z += S[d] * table[row + d];
      size = this.#offer(size, k, i, z);
    }
    return {
      items: this.#drain(size).map((e) => ({ item: list[e.index].item, score: sigmoid(base + e.score) })),
      fallback: null,
    };
  }

  #prepareHeap(k: number): void {
    if (this.#heapIndex.length < k) {
      this.#heapIndex = new Int32Array(k);
      this.#heapScore = new Float64Array(k);
    }
  }

  /** Min-heap of the k best so far: a candidate replaces the root when it beats it. */
  #offer(size: number, k: number, index: number, score: number): number {
    const hi = this.#heapIndex;
    const hs = this.#heapScore;
    if (size < k) {
      let c = size++;
      while (c > 0) {
        const parent = (c - 1) >> 1;
        if (hs[parent] <= score) break;
        hi[c] = hi[parent];
        hs[c] = hs[parent];
        c = parent;
      }
      hi[c] = index;
      hs[c] = score;
      return size;
    }
    if (score <= hs[0]) return size;
    let c = 0;
    for (;;) {
      const l = 2 * c + 1;
      if (l >= size) break;
      const r = l + 1;
      const m = r < size && hs[r] < hs[l] ? r : l;
      if (hs[m] >= score) break;
      hi[c] = hi[m];
      hs[c] = hs[m];
      c = m;
    }
    hi[c] = index;
    hs[c] = score;
    return size;
  }

  /** The heap's entries, best first (ties by item order, so results are deterministic). */
  #drain(size: number): Array<{ index: number; score: number }> {
    const out: Array<{ index: number; score: number }> = [];
    for (let j = 0; j < size; j++) out.push({ index: this.#heapIndex[j], score: this.#heapScore[j] });
    return out.sort((a, b) => b.score - a.score || a.index - b.index);
  }

  /** Recomputes the item-side sums when the model changed since the last scan (and the table is
   *  older than itemRefreshMs). Projections and shared field tokens move with every batch, so the
   *  refresh is of the whole table; it costs items × tokens per item × s × D multiply-adds. */
  #refreshItemTable(): void {
    const now = this.#clock.now();
    const n = this.#itemList.length;
    const D = this.model.dim;
    const stale = this.#tableVersion !== this.#version;
    const grown = this.#itemScalars.length < n;
    if (!grown && (!stale || now - this.#tableTime < this.options.itemRefreshMs)) return;
    if (grown) {
      const capacity = Math.max(n, this.#itemScalars.length * 2);
      this.#itemVectors = new Float32Array(capacity * D);
      this.#itemScalars = new Float64Array(capacity);
    }
    const table = this.#itemVectors;
    const v = this.#vec;
    const linear = this.store.linear;
    for (let i = 0; i < n; i++) {
      const entry = this.#itemList[i];
      const row = i * D;
      for (let d = 0; d < D; d++) table[row + d] = 0;
      let w = 0;
      let self = 0;
      for (let j = -1; j < entry.fieldKeys.length; j++) {
        const id = this.store.id(j < 0 ? entry.key : entry.fieldKeys[j]);
        if (id < 0) continue;
        w += linear[id];
        this.model.vectorOf(id, v);
        for (let d = 0; d < D; d++) {
          table[row + d] += v[d];
          self += v[d] * v[d];
        }
      }
      let sq = 0;
      for (let d = 0; d < D; d++) sq += table[row + d] * table[row + d];
      this.#itemScalars[i] = w + 0.5 * (sq - self);
    }
    this.#tableVersion = this.#version;
    this.#tableTime = now;
  }

  /** Items with their fields, activity and counts, for snapshots. */
  exportItems(): Array<{ item: string; fields: Record<string, string>; active: boolean; count: number }> {
    return this.#itemList.map((e) => ({
      item: e.item,
      fields: Object.fromEntries(
        e.fieldKeys.map((k) => [k.slice(0, k.indexOf('=')), k.slice(k.indexOf('=') + 1)]),
      ),
      active: e.active,
      count: this.#popularity.count(e.index),
    }));
  }

  /** Restores what exportItems wrote (after construction, before learning). */
  importItems(
    items: Array<{ item: string; fields: Record<string, string>; active: boolean; count: number }>,
  ): void {
    for (const it of items) {
      this.upsertItem({ item: it.item, fields: it.fields, active: it.active });
      const index = this.#items.get(it.item)!.index;
      for (let c = this.#popularity.count(index); c < it.count; c++) this.#popularity.increment(index);
      this.#popularity.setActive(index, it.active);
    }
  }

  stats(): TrainerStats {
    return {
      ...this.metrics.snapshot(),
      learned: this.#learned,
      negativesDrawn: this.#negativesDrawn,
      eventsPerSecond: this.#busyMs > 0 ? (this.#learned * 1000) / this.#busyMs : 0,
      items: this.#itemList.length,
    };
  }
}

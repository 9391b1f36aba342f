/**
 * The online trainer: resolves each event's tokens in the store, scores the event before learning
 * from it (progressive validation), then updates the FM. It also serves reads: `score` (no side
 * effects, unknown tokens contribute nothing) and `recommend` (an exact scan with a partial top-k).
 *
 * The logit of user side U and item side I = {item token i, catalog field tokens f} splits as
 *   z = [b + Σw_U + pairs(U)] + [w_i + Σw_f + pairs(I)] + S_U·v_i + Σ_f S_U·v_f
 * with S_U = Σ v over U, v_t = e_t P_s (row e_t of size s, tier projection P_s), and
 * S_U·v_t = e_t · (P_s S_U): once P_s S_U is computed per request and tier (Σ s × D work), each
 * token costs its own size s, read from the live slab. The second bracket c_I does not depend on
 * the user: recommend keeps it per item (see itemRefreshMs) and scans s multiply-adds per item.
 *
 * Consistency rule of the reads. Reads and learnEvents() are synchronous and JavaScript runs one
 * at a time, so a read sees every event learned before it and nothing of a later one (a mini-batch
 * learned in slices may be seen in part; its projections step at endBatch()). With itemRefreshMs 0
 * (the default) `score` and `recommend` are exact. Above 0, for catalog items, both read everything
 * that depends on the user (S_U·v for every item-side token) live, staleness 0, and take the
 * item-only term c_I as computed from the model at most `itemRefreshMs` before the read, so the two
 * agree; `score` stays exact for items the trainer does not know and for requests whose fields
 * replace an item's own. PME moves and evictions are seen at once in the live part, and in c_I
 * within the same bound. Measured in bench/api.ts.
 */

import type { CatalogItem, Interaction } from '../data/event.js';
import { PmeError } from '../errors.js';
import type { EmbeddingStore } from '../store/index.js';
import { type Clock, type Milliseconds, systemClock } from '../util/clock.js';
import { createRandom, type Random } from '../util/random.js';
import { FmModel, type FmOptions, type ModelStore, sigmoid, type TokenId } from './fm.js';
import { type MetricsSnapshot, ProgressiveMetrics } from './metrics.js';
import { PopularitySampler } from './negatives.js';

/** The part of the EmbeddingStore the trainer uses, on top of what the model reads. It hears
 *  evictions (to forget cached ids the store will reuse) and moves (a PME move changes a vector
 *  without a learn()) through the store's listeners. */
export type TrainerStore = ModelStore &
  Pick<EmbeddingStore, 'id' | 'key' | 'getOrCreate' | 'touch' | 'onEvict' | 'onMove'>;

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
  /** Longest the item-only part of a score or recommend logit (item bias and the interactions among
   *  an item's own tokens) may lag the model, in ms. Default 0: exact, every recommend recomputes it
   *  for every item (items × (fields + 2) × D work: for tests and small catalogs). Above 0 it is
   *  refreshed in chunks after each batch and on refreshItems() (a full sweep every
   *  itemRefreshMs / 2) and a read finishes any sweep older than the bound first. The
   *  user-dependent part is always live. */
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

/** An item as snapshots and the parameter topic carry it. */
export interface ExportedItem {
  item: string;
  fields: Record<string, string>;
  active: boolean;
  count: number;
}

/** The catalog as snapshots hold it (names and signatures, then exportCatalogColumns). */
export interface ExportedCatalog {
  names: string[];
  /** Sorted `field=value` keys of each signature. */
  signatures: string[][];
  /** Per item: index into signatures, active (1/0), event count. */
  signature: Int32Array;
  active: Uint8Array;
  count: Float64Array;
}

/** One item known to the trainer: from the catalog, or first seen in the stream. */
interface ItemEntry {
  readonly index: number;
  readonly item: string;
  readonly key: string;
  /** `field=value` keys of its catalog fields, sorted (shared by the items of one signature). */
  fieldKeys: readonly string[];
  /** Names of its catalog fields: those event fields belong to the item side. */
  fieldNames: ReadonlySet<string>;
  active: boolean;
}

/** Whether an item already has exactly these catalog fields. */
function sameFields(entry: ItemEntry, fields: Readonly<Record<string, string>>): boolean {
  let n = 0;
  for (const name in fields) {
    if (!entry.fieldKeys.includes(`${name}=${fields[name]}`)) return false;
    n++;
  }
  return n === entry.fieldKeys.length;
}

/** Field keys (`name=value`) as the `fields` object of a catalog item. */
function fieldsOf(keys: readonly string[]): Record<string, string> {
  return Object.fromEntries(keys.map((k) => [k.slice(0, k.indexOf('=')), k.slice(k.indexOf('=') + 1)]));
}

/** Signature of items without catalog fields (and of items unknown to the trainer). */
const EMPTY_SIGNATURE = 0;
/** Fewest items a refreshItems() refreshes when itemRefreshMs > 0 (so a stopped clock still sweeps). */
const MIN_SWEEP_CHUNK = 64;
/**
 * Sweeps per itemRefreshMs: the last completed sweep then started at most the bound ago. When a
 * timer fires late, a read past the bound finishes the running sweep itself: only the items that
 * late timer left, since the sweep keeps pace otherwise. Each sweep costs ~0.5 µs per item.
 */
const SWEEPS_PER_BOUND = 2;
/**
 * Most real time one refreshItems() spends, in ms: after an idle gap the time-proportional share
 * would be the whole catalog in one call, a pause every concurrent request would wait for. What
 * it leaves undone, the next calls do.
 */
const MAX_SWEEP_MS = 1.5;
/** Items refreshed between two looks at the clock. */
const SWEEP_CLOCK_EVERY = 256;

/** e[eAt..eAt+s) · q[qAt..qAt+s); ladder sizes are even: 4-way unrolled, 1-wide tail. */
function dot(e: Float32Array, eAt: number, q: Float64Array, qAt: number, s: number): number {
  let a0 = 0;
  let a1 = 0;
  let j = 0;
  for (; j + 4 <= s; j += 4) {
    a0 += e[eAt + j] * q[qAt + j] + e[eAt + j + 2] * q[qAt + j + 2];
    a1 += e[eAt + j + 1] * q[qAt + j + 1] + e[eAt + j + 3] * q[qAt + j + 3];
  }
  for (; j < s; j++) a0 += e[eAt + j] * q[qAt + j];
  return a0 + a1;
}

/** Whether a request's fields name any of an item's catalog fields. */
function overlaps(names: ReadonlySet<string>, fields: Readonly<Record<string, string>>): boolean {
  for (const name in fields) if (names.has(name)) return true;
  return false;
}

function grownInt32(a: Int32Array<ArrayBuffer>, n: number, fill = 0): Int32Array<ArrayBuffer> {
  if (a.length >= n) return a;
  const b = new Int32Array(Math.max(n, a.length * 2));
  b.fill(fill);
  b.set(a);
  return b;
}
function grownFloat64(a: Float64Array<ArrayBuffer>, n: number): Float64Array<ArrayBuffer> {
  if (a.length >= n) return a;
  const b = new Float64Array(Math.max(n, a.length * 2));
  b.set(a);
  return b;
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

/**
 * Raw values of the resolved tokens seen lately, summed over every field: a bound on the trainer's
 * key caches. Two generations of at most this many entries each are kept: ≈ 55 bytes an entry
 * with a short value (heap delta of such a Map, Node 20), so under 4 MB. The store's budget does
 * not count them. Trainer.learn with these caches: bench/train.ts, "Trainer.learn (string keys)".
 */
const KEY_CACHE_ENTRIES = 1 << 15;

/**
 * Raw value → token id for one field, so that learn() resolves a token without building its
 * `field=value` key (a concatenation, then flattening and hashing the new string in the store's
 * index). Two generations, young and old: a hit in old moves to young; when the trainer's young
 * entries reach KEY_CACHE_ENTRIES every cache drops its old generation (LRU-ish, no per-entry list).
 * Entries are removed when the store evicts their token (its id may be reused).
 */
class KeyCache {
  readonly prefix: string;
  young = new Map<string, TokenId>();
  old = new Map<string, TokenId>();

  constructor(field: string) {
    this.prefix = `${field}=`;
  }

  /** The id of `value` in the young generation, or -1. */
  get(value: string): TokenId {
    return this.young.get(value) ?? -1;
  }

  /** The id of `value` in the old generation, or -1; a hit leaves old (the caller adds it to young). */
  getOld(value: string): TokenId {
    const id = this.old.get(value);
    if (id === undefined) return -1;
    this.old.delete(value);
    return id;
  }

  /** Forgets `key` if this cache holds it for `id`. */
  forget(id: TokenId, key: string): void {
    if (!key.startsWith(this.prefix)) return;
    const value = key.slice(this.prefix.length);
    if (this.young.get(value) === id) this.young.delete(value);
    if (this.old.get(value) === id) this.old.delete(value);
  }

  rotate(): void {
    this.old = this.young;
    this.young = new Map();
  }
}

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
  /** Key caches of learn(): the user's, and one per event field name (see KeyCache). */
  readonly #userKeys = new KeyCache('user');
  readonly #fieldKeys = new Map<string, KeyCache>();
  /** Entries added to the young generations since the last rotation. */
  #youngKeys = 0;
  /** Tokens of the user side of the current event, kept to build its negatives. */
  #userCount = 0;
  #learned = 0;
  #negativesDrawn = 0;
  #busyMs = 0;
  // The item-only term c_I per item, when (clock) and at which #changes it was computed, and the
  // sweep that refreshes it: cursor, start of the running sweep and of the last completed one.
  #itemConst = new Float64Array(0);
  #changes = 0;
  #sweepCursor = 0;
  #sweepStart = 0;
  #sweepStartChanges = 0;
  #doneStart = Number.NEGATIVE_INFINITY;
  #doneChanges = -1;
  #lastSweepAt = Number.NEGATIVE_INFINITY;
  #sweepOwed = 0;
  // Per-refresh caches of field tokens (stamp #rgen): id, w, v (D), |v|².
  #rgen = 0;
  #rfStamp = new Int32Array(0);
  #rfId = new Int32Array(0);
  #rfW = new Float64Array(0);
  #rfSelf = new Float64Array(0);
  #rfV = new Float64Array(0);
  readonly #rF: Float64Array;
  // The sweep's order (items grouped by signature), the group being refreshed (its signature,
  // base_g and P_s F per tier, valid while a tier's stamp equals #groupSerial).
  #sweepOrder = new Int32Array(0);
  #orderVersion = -1;
  /** Bumped when an item is added or its signature changes. */
  #itemsVersion = 0;
  #groupSig = -1;
  #groupSerial = 0;
  #groupBase = 0;
  readonly #groupPF: Float64Array;
  readonly #groupTierStamp: Int32Array;
  // Per-recommend live parts: S_U · v_f per field token, Σ of them per signature.
  #ftLive = new Float64Array(0);
  /** Field token ids as last resolved (-1: absent then, resolved again on the next recommend). */
  #ftTok = new Int32Array(0);
  #sigLive = new Float64Array(0);
  /** Read generation in which #ftLive / #sigLive of a field token / signature was computed (score). */
  #ftLiveStamp = new Int32Array(0);
  #sigLiveStamp = new Int32Array(0);

  // Per item (by ItemEntry.index): its token id as last resolved (-1 none), its field signature,
  // whether it is active, and the read generation that excluded it.
  #itemToken = new Int32Array(0);
  #itemSig = new Int32Array(0);
  #itemActive = new Uint8Array(0);
  #excludeStamp = new Int32Array(0);

  // Field tokens of the catalog (by key) and signatures (distinct sets of them, CSR lists).
  readonly #ftIndex = new Map<string, number>();
  readonly #ftKeys: string[] = [];
  readonly #sigIndex = new Map<string, number>();
  /** Per signature: its sorted `field=value` keys and its field names (what items share). */
  readonly #sigKeys: string[][] = [];
  /** Each signature's fields as the JSON object exportItemJson() writes. */
  readonly #sigFieldsJson: string[] = [];
  readonly #sigNames: Set<string>[] = [];
  #sigStart = new Int32Array(0);
  #sigLength = new Int32Array(0);
  #sigFields = new Int32Array(0);
  #sigFieldsUsed = 0;

  // Per-request caches of score, valid when their stamp equals #gen (one generation per read, so
  // nothing is cleared between reads). Field tokens: id, w, v (D), |v|², S_U·v.
  #gen = 0;
  #ftStamp = new Int32Array(0);
  #ftId = new Int32Array(0);
  #ftW = new Float64Array(0);
  #ftSelf = new Float64Array(0);
  #ftSv = new Float64Array(0);
  #ftV = new Float64Array(0);
  // The user side: S_U and P_t S_U per tier.
  readonly #userSum: Float64Array;
  readonly #userP: Float64Array;
  /** Tier sizes, their offsets in a block, and the block (Σ sizes): one vector per tier, own space. */
  readonly #tierSize: Int32Array;
  readonly #tierOffset: Int32Array;
  /** The tiers' param slabs, re-read at the start of every read. */
  readonly #slabs: Float32Array[];
  readonly #scoreIds: Int32Array;
  readonly #vec: Float64Array;
  /** F = Σ v_f of one item's field tokens (score). */
  readonly #itemSum: Float64Array;
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
    this.#scoreIds = new Int32Array(this.model.options.maxTokens);
    const D = store.dim;
    this.#vec = new Float64Array(D);
    this.#itemSum = new Float64Array(D);
    this.#userSum = new Float64Array(D);
    const T = store.tiers.length;
    this.#tierSize = Int32Array.from(store.tiers, (t) => t.size);
    this.#tierOffset = new Int32Array(T);
    let block = 0;
    for (let ti = 0; ti < T; ti++) {
      this.#tierOffset[ti] = block;
      block += this.#tierSize[ti];
    }
    this.#userP = new Float64Array(block);
    this.#slabs = store.tiers.map((t) => t.params);
    this.#rF = new Float64Array(D);
    this.#groupPF = new Float64Array(block);
    this.#groupTierStamp = new Int32Array(T);
    store.onEvict((id, key) => this.#forget(id, key));
    // A bounded recommend must not take a sweep from before a move as current.
    store.onMove(() => this.#changes++);
    this.#signature([]);
    if (this.options.catalog !== null) for (const item of this.options.catalog) this.upsertItem(item);
  }

  /** Adds or updates a catalog item (the compacted `items` topic feeds this). */
  upsertItem(item: CatalogItem): void {
    const fieldKeys: string[] = [];
    for (const name in item.fields) fieldKeys.push(`${name}=${item.fields[name]}`);
    let entry = this.#items.get(item.item);
    if (entry === undefined) {
      entry = this.#addItem(item.item);
    }
    const sig = this.#signature(fieldKeys);
    // One keys array and one name set per signature, not per item: a large catalog holds far
    // fewer heap objects (less memory, shorter full garbage collections).
    entry.fieldKeys = this.#sigKeys[sig];
    entry.fieldNames = this.#sigNames[sig];
    entry.active = item.active;
    if (this.#itemSig[entry.index] !== sig) this.#itemsVersion++;
    this.#itemSig[entry.index] = sig;
    this.#itemActive[entry.index] = item.active ? 1 : 0;
    this.#popularity.setActive(entry.index, item.active);
    this.#changes++;
    this.#refreshItem(entry.index);
  }

  /** The signature of a set of field keys, registered when new (per-request caches grow with it). */
  #signature(fieldKeys: readonly string[]): number {
    const sorted = [...fieldKeys].sort();
    const name = sorted.join('\u0001');
    const known = this.#sigIndex.get(name);
    if (known !== undefined) return known;
    const g = this.#sigIndex.size;
    this.#sigIndex.set(name, g);
    this.#sigKeys.push(sorted);
    this.#sigNames.push(new Set(sorted.map((key) => key.slice(0, key.indexOf('=')))));
    this.#sigFieldsJson.push(JSON.stringify(fieldsOf(sorted)));
    const D = this.model.dim;
    for (const key of sorted) {
      if (this.#ftIndex.has(key)) continue;
      const f = this.#ftKeys.length;
      this.#ftIndex.set(key, f);
      this.#ftKeys.push(key);
      const n = f + 1;
      this.#ftStamp = grownInt32(this.#ftStamp, n);
      this.#ftId = grownInt32(this.#ftId, n);
      this.#ftW = grownFloat64(this.#ftW, n);
      this.#ftSelf = grownFloat64(this.#ftSelf, n);
      this.#ftSv = grownFloat64(this.#ftSv, n);
      this.#ftV = grownFloat64(this.#ftV, n * D);
      this.#rfStamp = grownInt32(this.#rfStamp, n);
      this.#rfId = grownInt32(this.#rfId, n);
      this.#rfW = grownFloat64(this.#rfW, n);
      this.#rfSelf = grownFloat64(this.#rfSelf, n);
      this.#rfV = grownFloat64(this.#rfV, n * D);
      this.#ftLive = grownFloat64(this.#ftLive, n);
      this.#ftTok = grownInt32(this.#ftTok, n, -1);
      this.#ftTok[f] = -1;
      this.#ftLiveStamp = grownInt32(this.#ftLiveStamp, n);
    }
    const n = g + 1;
    this.#sigStart = grownInt32(this.#sigStart, n);
    this.#sigLength = grownInt32(this.#sigLength, n);
    this.#sigFields = grownInt32(this.#sigFields, this.#sigFieldsUsed + fieldKeys.length);
    this.#sigStart[g] = this.#sigFieldsUsed;
    this.#sigLength[g] = fieldKeys.length;
    for (const key of sorted) this.#sigFields[this.#sigFieldsUsed++] = this.#ftIndex.get(key)!;
    this.#sigLive = grownFloat64(this.#sigLive, n);
    this.#sigLiveStamp = grownInt32(this.#sigLiveStamp, n);
    return g;
  }

  #addItem(item: string): ItemEntry {
    const entry: ItemEntry = {
      index: this.#popularity.add(),
      item,
      key: `item=${item}`,
      fieldKeys: this.#sigKeys[EMPTY_SIGNATURE],
      fieldNames: this.#sigNames[EMPTY_SIGNATURE],
      active: true,
    };
    this.#items.set(item, entry);
    this.#itemList.push(entry);
    const n = entry.index + 1;
    this.#itemToken = grownInt32(this.#itemToken, n, -1);
    this.#itemSig = grownInt32(this.#itemSig, n);
    this.#excludeStamp = grownInt32(this.#excludeStamp, n);
    this.#itemConst = grownFloat64(this.#itemConst, n);
    if (this.#itemActive.length < n) {
      const active = new Uint8Array(Math.max(n, this.#itemActive.length * 2));
      active.set(this.#itemActive);
      this.#itemActive = active;
    }
    this.#itemToken[entry.index] = this.store.id(entry.key);
    this.#itemSig[entry.index] = EMPTY_SIGNATURE;
    this.#itemActive[entry.index] = 1;
    this.#itemsVersion++;
    this.#refreshItem(entry.index);
    return entry;
  }

  /**
   * Learns from a mini-batch: each event is scored, recorded in the metrics, then learned from;
   * positives are followed by `negatives` drawn items. Projections step once per batch.
   */
  learn(batch: readonly Interaction[]): void {
    this.learnEvents(batch);
    this.endBatch();
  }

  /**
   * The events of a mini-batch, or a slice of one: per-token parameters learn at once, projections
   * wait for endBatch(). A mini-batch learned in several slices, with reads or other work in
   * between, trains exactly as one learn() of it (the service slices so that requests get in).
   */
  learnEvents(batch: readonly Interaction[], from = 0, to = batch.length): void {
    const start = this.#clock.now();
    // Reads between slices see per-token changes already: the item-only term must not pass for current.
    this.#changes++;
    const negatives = this.options.negatives;
    for (let b = from; b < to; b++) {
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
    this.#busyMs += this.#clock.now() - start;
  }

  /** Ends a mini-batch: projections step, the item sweep advances, the observer (PME) is told. */
  endBatch(): void {
    const start = this.#clock.now();
    this.model.flush();
    this.#changes++;
    this.refreshItems();
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
    const itemFields = entry.fieldNames.size > 0 ? entry.fieldNames : null;
    let n = 0;
    const userId = this.#resolve(this.#userKeys, user);
    ids[n++] = userId;
    store.touch(userId, now);
    if (observer !== null) observer.observe(userId);
    for (const name in fields) {
      if (itemFields?.has(name)) continue;
      if (n === ids.length) break;
      let cache = this.#fieldKeys.get(name);
      if (cache === undefined) {
        cache = new KeyCache(name);
        this.#fieldKeys.set(name, cache);
      }
      const id = this.#resolve(cache, fields[name]);
      ids[n++] = id;
      store.touch(id, now);
      if (observer !== null) observer.observe(id);
    }
    this.#userCount = n;
    return n;
  }

  /** The token of `value` in the cache's field, created in the store when absent. */
  #resolve(cache: KeyCache, value: string): TokenId {
    let id = cache.get(value);
    if (id >= 0) return id;
    id = cache.getOld(value);
    if (id < 0) id = this.store.getOrCreate(cache.prefix + value);
    cache.young.set(value, id);
    if (++this.#youngKeys >= KEY_CACHE_ENTRIES) {
      this.#youngKeys = 0;
      this.#userKeys.rotate();
      for (const c of this.#fieldKeys.values()) c.rotate();
    }
    return id;
  }

  /** Writes the item-side token ids after the user side (at #ids[from..)) and returns the total. */
  #resolveItem(entry: ItemEntry, from: number, now: Milliseconds): number {
    const store = this.store;
    const ids = this.#ids;
    const observer = this.options.observer;
    let n = from;
    if (n < ids.length) {
      // The item's token id is kept per item and forgotten when the store evicts it (#forget).
      let id = this.#itemToken[entry.index];
      if (id < 0) {
        id = store.getOrCreate(entry.key);
        this.#itemToken[entry.index] = id;
      }
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

  /** Tells the reads that parameters changed outside learn() (a replica applying updates, a
   *  restore): a bounded recommend then refreshes the item-only term within itemRefreshMs.
   *  `created`: the token keys created since the last call, when known (saves a catalog scan). */
  invalidateItems(created?: Iterable<string>): void {
    this.#changes++;
    // Item tokens created outside learn() (a replica's applied rows) are linked here: the ones
    // named when the caller knows them, else every item still without a token.
    if (created !== undefined) {
      for (const key of created) {
        const entry = key.startsWith('item=') ? this.#items.get(key.slice(5)) : undefined;
        if (entry !== undefined) this.#itemToken[entry.index] = this.store.id(key);
      }
      return;
    }
    const list = this.#itemList;
    for (let i = 0; i < list.length; i++)
      if (this.#itemToken[i] < 0) this.#itemToken[i] = this.store.id(list[i].key);
  }

  /** An evicted item token: its id will be reused, so the item has none until it is learned again. */
  #forget(id: TokenId, key: string): void {
    this.#changes++;
    this.#userKeys.forget(id, key);
    for (const cache of this.#fieldKeys.values()) cache.forget(id, key);
    const f = this.#ftIndex.get(key);
    if (f !== undefined && this.#ftTok[f] === id) this.#ftTok[f] = -1;
    if (!key.startsWith('item=')) return;
    const entry = this.#items.get(key.slice(5));
    if (entry !== undefined && this.#itemToken[entry.index] === id) this.#itemToken[entry.index] = -1;
  }

  /** One field token for this refresh: id, w, D-space v, |v|². */
  #refreshField(f: number): void {
    const id = this.store.id(this.#ftKeys[f]);
    this.#rfId[f] = id;
    this.#rfStamp[f] = this.#rgen;
    if (id < 0) return;
    const D = this.model.dim;
    const at = f * D;
    const V = this.#rfV;
    this.model.vectorOf(id, V, at);
    let self = 0;
    for (let d = 0; d < D; d++) self += V[at + d] * V[at + d];
    this.#rfW[f] = this.store.linear[id];
    this.#rfSelf[f] = self;
  }

  /** c_I of item i alone, from the current model (its fields read again): a new or changed item. */
  #refreshItem(i: number): void {
    this.#rgen++;
    this.#groupSig = -1;
    this.#refreshInGroup(i);
  }

  /**
   * c_I of item i: w_i + Σ w_f + ½(|v_i + F|² − |v_i|² − Σ|v_f|²) = base_g + w_i + v_i · F with
   * F = Σ v_f over its signature g's field tokens. The sweep visits items grouped by signature, so
   * F and base_g are summed once per group, and v_i · F = e_i · (P_s F) costs s per item once
   * P_s F is computed for the group (once per tier met).
   */
  #refreshInGroup(i: number): void {
    const D = this.model.dim;
    const F = this.#rF;
    const g = this.#itemSig[i];
    if (g !== this.#groupSig) {
      this.#groupSig = g;
      this.#groupSerial++;
      F.fill(0);
      let base = 0;
      let self = 0;
      const rgen = this.#rgen;
      const V = this.#rfV;
      const list = this.#sigFields;
      for (let j = this.#sigStart[g], end = j + this.#sigLength[g]; j < end; j++) {
        const f = list[j];
        if (this.#rfStamp[f] !== rgen) this.#refreshField(f);
        if (this.#rfId[f] < 0) continue;
        base += this.#rfW[f];
        self += this.#rfSelf[f];
        const at = f * D;
        for (let d = 0; d < D; d++) F[d] += V[at + d];
      }
      let ff = 0;
      for (let d = 0; d < D; d++) ff += F[d] * F[d];
      this.#groupBase = base + 0.5 * (ff - self);
    }
    let c = this.#groupBase;
    const id = this.#itemToken[i];
    if (id >= 0) {
      const store = this.store;
      const ti = store.tierOf[id];
      const tier = store.tiers[ti];
      const s = tier.size;
      const e = tier.params;
      const off = store.slotOf[id] * s;
      let vf = 0;
      if (s === D) for (let d = 0; d < D; d++) vf += e[off + d] * F[d];
      else if (s > 0) {
        const PF = this.#groupPF;
        const at = this.#tierOffset[ti];
        if (this.#groupTierStamp[ti] !== this.#groupSerial) {
          this.#groupTierStamp[ti] = this.#groupSerial;
          const P = this.model.projections[ti]!;
          for (let k = 0; k < s; k++) {
            let sum = 0;
            for (let d = 0, row = k * D; d < D; d++) sum += P[row + d] * F[d];
            PF[at + k] = sum;
          }
        }
        for (let k = 0; k < s; k++) vf += e[off + k] * PF[at + k];
      }
      c += store.linear[id] + vf;
    }
    this.#itemConst[i] = c;
  }

  /** The sweep order: item indices grouped by signature (counting sort), rebuilt at a sweep start
   *  when items were added or changed signature. */
  #updateSweepOrder(): void {
    if (this.#orderVersion === this.#itemsVersion) return;
    const n = this.#itemList.length;
    const sigs = this.#sigIndex.size;
    const count = new Int32Array(sigs + 1);
    for (let i = 0; i < n; i++) count[this.#itemSig[i] + 1]++;
    for (let g = 0; g < sigs; g++) count[g + 1] += count[g];
    const order = new Int32Array(n);
    for (let i = 0; i < n; i++) order[count[this.#itemSig[i]]++] = i;
    this.#sweepOrder = order;
    this.#orderVersion = this.#itemsVersion;
  }

  /**
   * Refreshes up to `count` items along the sweep (fewer past `deadline`); returns how many. Field
   * tokens are read once per sweep (at its start, or fresher): every c_I of a completed sweep comes
   * from the model as it was at the sweep's start or later, which is what the bound promises.
   */
  #advanceSweep(count: number, now: Milliseconds, deadline = Number.POSITIVE_INFINITY): number {
    if (this.#itemList.length === 0) return 0;
    let j = 0;
    for (; j < count; j++) {
      if (j % SWEEP_CLOCK_EVERY === SWEEP_CLOCK_EVERY - 1 && performance.now() > deadline) break;
      if (this.#sweepCursor === 0) {
        this.#sweepStart = now;
        this.#sweepStartChanges = this.#changes;
        this.#updateSweepOrder();
        this.#rgen++;
        this.#groupSig = -1;
      }
      const order = this.#sweepOrder;
      this.#refreshInGroup(order[this.#sweepCursor]);
      if (++this.#sweepCursor >= order.length) {
        this.#sweepCursor = 0;
        this.#doneStart = this.#sweepStart;
        this.#doneChanges = this.#sweepStartChanges;
      }
    }
    return j;
  }

  /** Before a recommend: every c_I computed at most itemRefreshMs ago (0: recomputed now). */
  #refreshForRead(): void {
    const n = this.#itemList.length;
    const bound = this.options.itemRefreshMs;
    const now = this.#clock.now();
    if (bound === 0) {
      this.#sweepCursor = 0;
      this.#advanceSweep(n, now);
      return;
    }
    if (this.#doneChanges === this.#changes || now - this.#doneStart < bound) return;
    // Finish the running sweep; if even that one started too long ago, run a whole new one.
    if (this.#sweepCursor > 0) this.#advanceSweep(this.#sweepOrder.length - this.#sweepCursor, now);
    if (this.#doneChanges !== this.#changes && now - this.#doneStart >= bound) this.#advanceSweep(n, now);
  }

  /**
   * Advances the item sweep by the share of the catalog due since the last call, so that a sweep
   * completes every itemRefreshMs / SWEEPS_PER_BOUND (at most MAX_SWEEP_MS a call). endBatch() calls it;
   * a service also calls it on a timer, so the sweep keeps pace when batches are rare or large and
   * no read has to finish a late sweep itself. Nothing to do when itemRefreshMs is 0.
   */
  refreshItems(): void {
    const bound = this.options.itemRefreshMs;
    if (bound === 0) return;
    const now = this.#clock.now();
    const last = this.#lastSweepAt;
    this.#lastSweepAt = now;
    // Nothing changed since the last completed sweep started: its values are current.
    if (this.#doneChanges === this.#changes && this.#sweepCursor === 0) {
      this.#sweepOwed = 0;
      return;
    }
    const n = this.#itemList.length;
    const share = Number.isFinite(last) ? ((now - last) * SWEEPS_PER_BOUND) / bound : 1;
    // What an earlier call left undone for lack of time is still due.
    const count = Math.min(n, Math.max(MIN_SWEEP_CHUNK, Math.ceil(n * share)) + this.#sweepOwed);
    this.#sweepOwed = count - this.#advanceSweep(count, now, performance.now() + MAX_SWEEP_MS);
  }

  /** Starts a read: a new generation (every per-request cache below goes stale at once). */
  #nextGeneration(): number {
    let gen = this.#gen + 1;
    if (gen > 0x3fffffff) {
      // Wrapped (after ~10⁹ reads): clear the stamps so no old value can pass for current.
      gen = 1;
      this.#ftStamp.fill(0);
      this.#excludeStamp.fill(0);
    }
    this.#gen = gen;
    // Slabs and columns are replaced when they grow: read them once per request (no await follows).
    const tiers = this.store.tiers;
    for (let ti = 0; ti < tiers.length; ti++) this.#slabs[ti] = tiers[ti].params;
    return gen;
  }

  /**
   * Sums the user side once: S_U = Σ v (in #userSum) and returns b + Σ w + ½(|S_U|² − Σ|v|²).
   * Unknown tokens contribute nothing.
   */
  #prepareUser(user: string, fields: Readonly<Record<string, string>>): number {
    const D = this.model.dim;
    const S = this.#userSum;
    const v = this.#vec;
    const linear = this.store.linear;
    S.fill(0);
    let base = this.model.bias;
    let self = 0;
    const add = (id: TokenId): void => {
      base += linear[id];
      this.model.vectorOf(id, v);
      for (let d = 0; d < D; d++) {
        S[d] += v[d];
        self += v[d] * v[d];
      }
    };
    const userId = this.store.id(`user=${user}`);
    if (userId >= 0) add(userId);
    for (const name in fields) {
      const id = this.store.id(`${name}=${fields[name]}`);
      if (id >= 0) add(id);
    }
    let sq = 0;
    for (let d = 0; d < D; d++) sq += S[d] * S[d];
    return base + 0.5 * (sq - self);
  }

  /** One field token for this request: id, w, v (D-space), |v|² and S_U · v. */
  #prepareField(f: number): void {
    const D = this.model.dim;
    const id = this.store.id(this.#ftKeys[f]);
    this.#ftId[f] = id;
    this.#ftStamp[f] = this.#gen;
    if (id < 0) return;
    const V = this.#ftV;
    const at = f * D;
    this.model.vectorOf(id, V, at);
    const S = this.#userSum;
    let self = 0;
    let sv = 0;
    for (let d = 0; d < D; d++) {
      const x = V[at + d];
      self += x * x;
      sv += S[d] * x;
    }
    this.#ftW[f] = this.store.linear[id];
    this.#ftSelf[f] = self;
    this.#ftSv[f] = sv;
  }

  /** x · P_tiᵀ into out[at..at+s): a D-space vector carried into tier ti's own space. */
  #project(ti: number, x: Float64Array, xAt: number, out: Float64Array, at: number): void {
    const D = this.model.dim;
    const s = this.#tierSize[ti];
    const P = this.model.projections[ti];
    if (P === null) {
      for (let d = 0; d < s; d++) out[at + d] = x[xAt + d];
      return;
    }
    for (let j = 0; j < s; j++) {
      const row = j * D;
      let acc = 0;
      for (let d = 0; d < D; d++) acc += P[row + d] * x[xAt + d];
      out[at + j] = acc;
    }
  }

  /**
   * Exact logit of one item without the user-side base (score's path): Σ w_f + S_U·F +
   * ½(|F|² − Σ|v_f|²) + w_i + v_i · (S_U + F), from the live model. Field tokens are prepared
   * once per request; the item token costs s × D. Call after #prepareUser, same synchronous stretch.
   */
  #itemLogit(g: number, id: TokenId): number {
    const D = this.model.dim;
    const gen = this.#gen;
    const F = this.#itemSum;
    F.fill(0);
    const V = this.#ftV;
    let z = 0;
    let self = 0;
    const list = this.#sigFields;
    for (let j = this.#sigStart[g], end = j + this.#sigLength[g]; j < end; j++) {
      const f = list[j];
      if (this.#ftStamp[f] !== gen) this.#prepareField(f);
      if (this.#ftId[f] < 0) continue;
      z += this.#ftW[f] + this.#ftSv[f];
      self += this.#ftSelf[f];
      const at = f * D;
      for (let d = 0; d < D; d++) F[d] += V[at + d];
    }
    let ff = 0;
    for (let d = 0; d < D; d++) ff += F[d] * F[d];
    z += 0.5 * (ff - self);
    if (id < 0) return z;
    const v = this.#vec;
    this.model.vectorOf(id, v);
    const S = this.#userSum;
    let vq = 0;
    for (let d = 0; d < D; d++) vq += v[d] * (S[d] + F[d]);
    return z + this.store.linear[id] + vq;
  }

  /**
   * Probabilities for `items` (same order) for `user`, with optional request fields. No side
   * effects: nothing is created, touched or learned; unknown tokens contribute nothing. The user
   * side is summed once; each item then costs its own token's size × D (see #itemLogit). Request
   * fields that an item's catalog also names belong to that item's side (as in learn()); such
   * items take the slower per-item path.
   */
  score(
    user: string,
    items: readonly string[],
    fields: Readonly<Record<string, string>> = NO_FIELDS,
  ): number[] {
    this.#nextGeneration();
    const base = this.#prepareUser(user, fields);
    let anyField = false;
    for (const _ in fields) {
      anyField = true;
      break;
    }
    // Bounded mode: known items take the item-only term from the sweep, as recommend does, so the
    // two agree and an item costs its own size (plus its fields' cached live terms).
    const bounded = this.options.itemRefreshMs > 0;
    if (bounded) {
      this.#refreshForRead();
      this.#projectUser();
    }
    const out = new Array<number>(items.length);
    for (let i = 0; i < items.length; i++) {
      const entry = this.#items.get(items[i]);
      if (entry === undefined) {
        out[i] = sigmoid(base + this.#itemLogit(EMPTY_SIGNATURE, this.store.id(`item=${items[i]}`)));
      } else if (anyField && overlaps(entry.fieldNames, fields)) {
        out[i] = this.#scoreApart(user, entry, fields);
      } else if (bounded) {
        out[i] = sigmoid(base + this.#itemConst[entry.index] + this.#itemLive(entry.index));
      } else {
        const id = this.#itemToken[entry.index];
        out[i] = sigmoid(base + this.#itemLogit(this.#itemSig[entry.index], id));
      }
    }
    return out;
  }

  /**
   * The user-dependent part of item i's logit, S_U · v_i + Σ_f S_U · v_f, with P_t S_U already in
   * #userP: e · (P_t S_U) per token, each field token and signature computed once per read.
   */
  #itemLive(i: number): number {
    const gen = this.#gen;
    const g = this.#itemSig[i];
    if (this.#sigLiveStamp[g] !== gen) {
      let z = 0;
      const list = this.#sigFields;
      for (let j = this.#sigStart[g], end = j + this.#sigLength[g]; j < end; j++) {
        const f = list[j];
        if (this.#ftLiveStamp[f] !== gen) {
          this.#ftLiveStamp[f] = gen;
          this.#ftLive[f] = this.#tokenLive(this.#fieldToken(f));
        }
        z += this.#ftLive[f];
      }
      this.#sigLive[g] = z;
      this.#sigLiveStamp[g] = gen;
    }
    return this.#sigLive[g] + this.#tokenLive(this.#itemToken[i]);
  }

  /** P_t S_U for every tier t into #userP (the user side in each tier's own space). */
  #projectUser(): void {
    for (let ti = 0; ti < this.#tierSize.length; ti++)
      this.#project(ti, this.#userSum, 0, this.#userP, this.#tierOffset[ti]);
  }

  /** The token id of catalog field token f, cached until the store evicts it (-1: absent). */
  #fieldToken(f: number): TokenId {
    let id = this.#ftTok[f];
    if (id < 0) {
      id = this.store.id(this.#ftKeys[f]);
      this.#ftTok[f] = id;
    }
    return id;
  }

  /** e_t · (P_s S_U) for token `id` (0 for none or size 0), from #userP. */
  #tokenLive(id: TokenId): number {
    if (id < 0) return 0;
    const ti = this.store.tierOf[id];
    const s = this.#tierSize[ti];
    return s === 0
      ? 0
      : dot(this.#slabs[ti], this.store.slotOf[id] * s, this.#userP, this.#tierOffset[ti], s);
  }

  /** An item whose catalog names a request field: its own user side, through the model. */
  #scoreApart(user: string, entry: ItemEntry, fields: Readonly<Record<string, string>>): number {
    const ids = this.#scoreIds;
    let n = 0;
    const put = (key: string): void => {
      const id = this.store.id(key);
      if (id >= 0 && n < ids.length) ids[n++] = id;
    };
    put(`user=${user}`);
    for (const name in fields) if (!entry.fieldNames.has(name)) put(`${name}=${fields[name]}`);
    put(entry.key);
    for (const key of entry.fieldKeys) put(key);
    return this.model.predict(ids, n);
  }

  /**
   * Top-k active items for `user` by model score: an exact scan over every item, reading the live
   * parameters (so it sees every batch learned before it: staleness 0 events), with the user side
   * summed once and a partial top-k heap. Per item it costs the item token's own size s in
   * multiply-adds; per request, per field signature and tier, a few s × D products. An unknown
   * user gets the most popular items instead, flagged `fallback: 'popularity'`.
   */
  recommend(
    user: string,
    k: number,
    options: { exclude?: Iterable<string>; fields?: Readonly<Record<string, string>> } = {},
  ): RecommendResult {
    if (!Number.isInteger(k) || k < 1)
      throw new PmeError('PME_ERR_BAD_REQUEST', `k must be an integer >= 1, got ${k}`);
    const gen = this.#nextGeneration();
    const stamp = this.#excludeStamp;
    if (options.exclude !== undefined)
      for (const item of options.exclude) {
        const entry = this.#items.get(item);
        if (entry !== undefined) stamp[entry.index] = gen;
      }
    const list = this.#itemList;
    const n = list.length;
    const active = this.#itemActive;
    this.#prepareHeap(k);
    let size = 0;
    if (this.store.id(`user=${user}`) < 0) {
      const total = Math.max(1, this.#popularity.total);
      for (let i = 0; i < n; i++) {
        if (active[i] === 0 || stamp[i] === gen) continue;
        size = this.#offer(size, k, i, this.#popularity.count(i));
      }
      return {
        items: this.#drain(size).map((e) => ({ item: list[e.index].item, score: e.score / total })),
        fallback: 'popularity',
      };
    }
    this.#refreshForRead();
    const base = this.#prepareUser(user, options.fields ?? NO_FIELDS);
    const store = this.store;
    const tierOf = store.tierOf;
    const slotOf = store.slotOf;
    const slabs = this.#slabs;
    const sizes = this.#tierSize;
    const offsets = this.#tierOffset;
    const uP = this.#userP;
    // P_t S_U for every tier, then S_U · v_f = e_f · (P_t S_U) per field token, Σ per signature.
    this.#projectUser();
    const live = this.#ftLive;
    for (let f = 0; f < this.#ftKeys.length; f++) live[f] = this.#tokenLive(this.#fieldToken(f));
    const sigLive = this.#sigLive;
    const fieldsOf = this.#sigFields;
    for (let g = 0; g < this.#sigIndex.size; g++) {
      let z = 0;
      for (let j = this.#sigStart[g], end = j + this.#sigLength[g]; j < end; j++) z += live[fieldsOf[j]];
      sigLive[g] = z;
    }
    const sigOf = this.#itemSig;
    const tokens = this.#itemToken;
    const constant = this.#itemConst;
    const heap = this.#heapScore;
    for (let i = 0; i < n; i++) {
      if (active[i] === 0 || stamp[i] === gen) continue;
      let z = constant[i] + sigLive[sigOf[i]];
      const id = tokens[i];
      if (id >= 0) {
        const ti = tierOf[id];
        const s = sizes[ti];
        if (s > 0) z += dot(slabs[ti], slotOf[id] * s, uP, offsets[ti], s);
      }
      // Most items lose to the heap's root: skip the call for them.
      if (size === k && z <= heap[0]) continue;
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

  /** Items with their fields, activity and counts, for snapshots. */
  exportItems(): ExportedItem[] {
    return this.#itemList.map((e) => this.exportItem(e.index));
  }

  /** Items known, by index 0..itemCount-1 (the order of exportItems). */
  get itemCount(): number {
    return this.#itemList.length;
  }

  /** How many events item `index` has had (its popularity count). */
  itemEvents(index: number): number {
    return this.#popularity.count(index);
  }

  /** The name of item `index`. */
  itemName(index: number): string {
    return this.#itemList[index].item;
  }

  /** One item of exportItems, by index. */
  exportItem(index: number): ExportedItem {
    const e = this.#itemList[index];
    return {
      item: e.item,
      fields: fieldsOf(e.fieldKeys),
      active: e.active,
      count: this.#popularity.count(e.index),
    };
  }

  /** exportItem(index) as JSON text, its fields encoded once per signature: the change tracker
   *  sends thousands of items a second, and an object per item was garbage for every one. */
  exportItemJson(index: number): string {
    const e = this.#itemList[index];
    const fields = this.#sigFieldsJson[this.#itemSig[index]];
    return `{"item":${JSON.stringify(e.item)},"fields":${fields},"active":${e.active},"count":${this.#popularity.count(index)}}`;
  }

  /**
   * The catalog in a compact form for snapshots: item names (itemName) and the field-key sets
   * (signatures) they share, then per item its signature, active flag and event count
   * (exportCatalogColumns). exportItems builds an object per item: ~140 ms at 100,000 items, all
   * of it a pause for requests. Names and signatures are only ever added, never changed or
   * removed, so a snapshot can encode them as they come (src/engine/state.ts).
   */
  get signatureCount(): number {
    return this.#sigKeys.length;
  }

  /** The field keys (`name=value`, sorted) of signature `g`. */
  signatureKeys(g: number): readonly string[] {
    return this.#sigKeys[g];
  }

  /** Per item (by index, as itemName): signature, active flag, event count. */
  exportCatalogColumns(): Omit<ExportedCatalog, 'names' | 'signatures'> {
    const n = this.#itemList.length;
    return {
      signature: this.#itemSig.slice(0, n),
      active: this.#itemActive.slice(0, n),
      count: this.#popularity.counts(n),
    };
  }

  /** Restores a catalog exported as above (after construction, before learning). */
  importCatalog(catalog: ExportedCatalog): void {
    const fields = catalog.signatures.map(fieldsOf);
    this.importItems(
      catalog.names.map((item, i) => ({
        item,
        fields: fields[catalog.signature[i]],
        active: catalog.active[i] === 1,
        count: catalog.count[i],
      })),
    );
  }

  /** Restores what exportItems wrote (after construction, before learning). */
  importItems(
    items: Array<{ item: string; fields: Record<string, string>; active: boolean; count: number }>,
  ): void {
    for (const it of items) {
      // A follower gets an item again whenever its count changes: only the count, mostly.
      const known = this.#items.get(it.item);
      if (known === undefined || known.active !== it.active || !sameFields(known, it.fields))
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

  /** Restores the counters a snapshot holds (after construction, before learning), so that
   *  `learned` counts every event applied to the state across restarts. */
  restoreCounters(counters: { learned: number; negativesDrawn: number }): void {
    this.#learned = counters.learned;
    this.#negativesDrawn = counters.negativesDrawn;
  }
}

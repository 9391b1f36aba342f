/**
 * The online trainer: the one object the service, the commands and the benches hold. It resolves
 * each event's tokens in the store (tokens.ts), hands the rows to its model (model/: scored before
 * learned from, progressive validation; when, feed.ts), draws negatives from the catalog
 * (catalog.ts), and answers reads (reads.ts: `score`, `recommend`) with the item-only terms kept by
 * item-terms.ts.
 *
 * Consistency rule of the reads. Reads and learnEvents() are synchronous and JavaScript runs one
 * at a time, so a read sees every event learned before it and nothing of a later one (a mini-batch
 * learned in slices may be seen in part; its projections step at endBatch()). With itemRefreshMs 0
 * (the default) `score` and `recommend` are exact. Above 0, for catalog items, both read everything
 * that depends on the user (S_U·v for every item-side token) live, staleness 0, and take the
 * item-only term c_I as computed from the model at most `itemRefreshMs` before the read, so the two
 * agree; `score` stays exact for items the trainer does not know and for requests whose fields
 * name an item's own. PME moves and evictions are seen at once in the live part, and in c_I
 * within the same bound. Measured in bench/api.ts.
 */
import type { CatalogItem, Interaction } from '../../data/event.js';
import type { Clock } from '../../util/clock.js';
import { createRandom, type Random } from '../../util/random.js';
import { type MetricsSnapshot, ProgressiveMetrics } from '../metrics.js';
import { FmModel } from '../model/fm.js';
import { type Model, Rows, type ScoreSink, type TokenId } from '../model/model.js';
import { tierLayout } from './arrays.js';
import { Catalog, type ExportedCatalog, type ExportedItem, fieldsOf, type ItemEntry } from './catalog.js';
import { CrossIndex } from './cross.js';
import { type RowFeed, rowFeed } from './feed.js';
import { ItemTerms } from './item-terms.js';
import { Limits, type Rejection } from './limits.js';
import {
  resolveTrainerOptions,
  type TokenObserver,
  type TrainerOptions,
  type TrainerStore,
} from './options.js';
import { Reads, type RecommendResult } from './reads.js';
import { FieldCodes, NO_OBSERVER, TokenResolver } from './tokens.js';

export type { ExportedCatalog, ExportedItem } from './catalog.js';
export { CROSS_FIELD, CrossIndex, crossKey, isCrossKey, parseCrossKey } from './cross.js';
export type { Rejection, RejectionReason } from './limits.js';
export {
  resolveTrainerOptions,
  type TokenObserver,
  TRAINER_DEFAULTS,
  type TrainerOptions,
  type TrainerStore,
} from './options.js';
export type { Recommendation, RecommendResult } from './reads.js';

export interface TrainerStats extends MetricsSnapshot {
  /** Events learned from, negatives included. */
  learned: number;
  /** Negatives drawn so far. */
  negativesDrawn: number;
  /** Events per second of time spent inside learn(). */
  eventsPerSecond: number;
  /** Items known (catalog plus stream). */
  items: number;
  /** Events and items refused (limits.ts), per reason. */
  rejected: Record<string, number>;
}

/** Bytes the trainer keeps besides the store and the model (see src/engine/memory.ts). */
export interface TrainerMemory {
  /** Key caches (TokenResolver), field codes and the cross index (crossUserItem): estimated. */
  keyCaches: number;
  /** The catalog with its negative sampler: typed columns exact, Maps and strings estimated. */
  catalog: number;
  /** Item-only terms (ItemTerms) and the read path's caches (Reads): exact. */
  itemCaches: number;
}

/** The metrics, counting what the model scored. */
class Scored implements ScoreSink {
  readonly metrics: ProgressiveMetrics;
  count = 0;

  constructor(metrics: ProgressiveMetrics) {
    this.metrics = metrics;
  }

  add(p: number, label: number): void {
    this.metrics.add(p, label);
    this.count++;
  }
}

export class Trainer {
  readonly store: TrainerStore;
  readonly model: Model;
  readonly options: Readonly<TrainerOptions>;
  readonly metrics: ProgressiveMetrics;
  readonly #clock: Clock;
  readonly #random: Random;
  readonly #observer: TokenObserver;
  readonly #codes = new FieldCodes();
  readonly #catalog: Catalog;
  readonly #limits: Limits;
  readonly #rejected: Record<string, number> = {};
  readonly #tokens: TokenResolver;
  /** Every user's live cross tokens (crossUserItem), null without them. */
  readonly #cross: CrossIndex | null;
  readonly #terms: ItemTerms;
  readonly #reads: Reads;
  readonly #scored: Scored;
  readonly #feed: RowFeed;
  /** Rows of predict(), made on its first call. */
  #lookups: Rows | null = null;
  /** Learned events a restored snapshot counted. */
  #learnedBefore = 0;
  #negativesDrawn = 0;
  /** Time spent learning (wall clock, for eventsPerSecond). */
  #busyMs = 0;
  /** The touch time of the open mini-batch (null: none open), and of the one before. */
  #batchTime: number | null = null;
  #lastBatchTime = Number.NEGATIVE_INFINITY;

  /** A trainer of `model` (default: an FM over the store with `options.model`). */
  constructor(store: TrainerStore, options: Partial<TrainerOptions> = {}, model?: Model) {
    const o = resolveTrainerOptions(options);
    this.options = o;
    this.store = store;
    this.model = model ?? new FmModel(store, o.model);
    this.metrics = new ProgressiveMetrics(o.aucBins, o.metricsWindow);
    this.#clock = o.clock;
    this.#random = createRandom(o.seed);
    this.#observer = o.observer ?? NO_OBSERVER;
    // The fields a restored store has count towards the limit on field names.
    for (const name of store.fieldNames?.() ?? []) if (name !== '') this.#codes.code(name);
    const maxTokens = this.model.maxTokens;
    this.#limits = new Limits(this.#codes, { maxTokens, ...o });
    this.#catalog = new Catalog(store, this.#codes, o.negativeExponent);
    this.#tokens = new TokenResolver(
      store,
      this.#catalog,
      this.#codes,
      this.#observer,
      this.model.maxTokens,
      o.crossUserItem,
    );
    const layout = tierLayout(store);
    this.#terms = new ItemTerms(store, this.model, this.#catalog, layout, o.clock, o.itemRefreshMs);
    this.#cross = o.crossUserItem ? new CrossIndex(store) : null;
    this.#reads = new Reads(
      store,
      this.model,
      this.#catalog,
      this.#terms,
      layout,
      o.itemRefreshMs,
      this.#cross,
    );
    this.#scored = new Scored(this.metrics);
    this.#feed = rowFeed(this.model, this.#codes.names, this.#scored);
    store.onEvict((id, key) => this.#forget(id, key));
    // A bounded recommend must not take a sweep from before a move as current.
    store.onMove(() => this.#terms.changed());
    if (o.catalog !== null) for (const item of o.catalog) this.upsertItem(item);
  }

  /**
   * Why `event` cannot be learned (limits.ts), or null. An admitted event's new field names are
   * registered, so learning it later finds room for them: the service asks this of each event as
   * it is decoded and sends a refused one to the DLQ. learnEvents() asks it again and skips.
   */
  admit(event: Interaction): Rejection | null {
    return this.#limits.event(event, this.#catalog.entry(event.item));
  }

  /** Why `item` cannot be kept in the catalog (limits.ts), or null. */
  admitItem(item: CatalogItem): Rejection | null {
    return this.#limits.item(item);
  }

  /** Adds or updates a catalog item (the compacted `items` topic feeds this); returns why it was
   *  refused instead, if it was (the catalog is then as before). */
  upsertItem(item: CatalogItem): Rejection | null {
    const rejection = this.#limits.item(item);
    if (rejection !== null) return this.#reject(rejection);
    const entry = this.#catalog.entry(item.item) ?? this.#addItem(item.item);
    this.#catalog.update(entry, item);
    this.#terms.changed();
    this.#terms.refreshItem(entry.index);
    return null;
  }

  #reject(rejection: Rejection): Rejection {
    this.#rejected[rejection.reason] = (this.#rejected[rejection.reason] ?? 0) + 1;
    return rejection;
  }

  #addItem(item: string): ItemEntry {
    const entry = this.#catalog.add(item);
    this.#terms.refreshItem(entry.index);
    return entry;
  }

  /**
   * Learns from a mini-batch: each event is scored, recorded in the metrics, then learned from;
   * positives are followed by `negatives` drawn items. Projections step once per batch. An event
   * past the limits (admit) is skipped and counted in stats().rejected.
   */
  learn(batch: readonly Interaction[]): void {
    this.learnEvents(batch);
    this.endBatch();
  }

  /**
   * The events of a mini-batch, or a slice of one: per-token parameters learn at once (for a model
   * of cadence 'event'), the dense ones wait for endBatch(). A mini-batch learned in several slices,
   * with reads or other work in between, trains exactly as one learn() of it (the service slices so
   * that requests get in).
   */
  learnEvents(batch: readonly Interaction[], from = 0, to = batch.length): void {
    const began = performance.now();
    const start = this.#openBatch();
    // Reads between slices see per-token changes already: the item-only term must not pass for current.
    this.#terms.changed();
    const catalog = this.#catalog;
    const tokens = this.#tokens;
    const feed = this.#feed;
    const rows = feed.rows;
    const negatives = this.options.negatives;
    for (let b = from; b < to; b++) {
      const event = batch[b];
      const known = catalog.entry(event.item);
      const rejection = this.#limits.event(event, known);
      if (rejection !== null) {
        this.#reject(rejection);
        continue;
      }
      const entry = known ?? this.#addItem(event.item);
      const r = feed.eventRow();
      const userCount = tokens.event(event.user, event.fields, entry, rows, r, start);
      rows.labels[r] = event.label;
      feed.resolved(r);
      catalog.popularity.increment(entry.index);
      if (negatives > 0 && event.label > 0) this.#negatives(event.user, entry, r, userCount, start);
      this.#observer.observeEvent?.(event);
    }
    this.#busyMs += performance.now() - began;
  }

  /**
   * The time every token of the mini-batch is touched at: read once when the batch opens (its
   * slices share it) and later than the batch before's. Recency decides what the budget evicts
   * and demotes, so ties must mean "same batch" whatever the machine's speed: were a batch's
   * slices stamped apart, or two batches stamped alike, what is learned would depend on timing.
   */
  #openBatch(): number {
    if (this.#batchTime !== null) return this.#batchTime;
    const now = this.#clock.now();
    // A microsecond past the batch before when the clock has not moved (fast batches, or a
    // stopped test clock): a drift of 1 ms per 1,000 such batches at most.
    const time = now > this.#lastBatchTime ? now : this.#lastBatchTime + 1e-3;
    this.#batchTime = time;
    this.#lastBatchTime = time;
    return time;
  }

  /** `negatives` items drawn by popularity, learned as negatives of the event in row `eventRow`. */
  #negatives(user: string, entry: ItemEntry, eventRow: number, userCount: number, now: number): void {
    const catalog = this.#catalog;
    const feed = this.#feed;
    const rows = feed.rows;
    for (let j = 0; j < this.options.negatives; j++) {
      const index = catalog.popularity.sample(this.#random);
      const other = index < 0 ? undefined : catalog.at(index);
      if (other === undefined || other === entry) continue;
      const r = feed.negativeRow(eventRow, userCount);
      this.#tokens.negative(user, other, rows, r, userCount, now);
      rows.labels[r] = 0;
      feed.resolved(r);
      this.#negativesDrawn++;
    }
  }

  /** Ends a mini-batch: kept rows learn, dense parameters step, the item sweep advances, the
   *  observer (PME) is told. */
  endBatch(): void {
    const began = performance.now();
    this.#feed.endBatch();
    this.model.endBatch();
    this.#terms.changed();
    this.#terms.advance();
    this.#batchTime = null;
    this.#busyMs += performance.now() - began;
    this.#observer.endBatch();
  }

  /**
   * Probabilities of events as the model scores them, without learning: nothing is created,
   * touched or learned, and unknown tokens contribute nothing. Unlike `score`, the whole model
   * answers (DeepFM's MLP included), one row per event.
   */
  predict(events: readonly Interaction[]): Float64Array {
    const rows = this.lookup(events);
    const out = new Float64Array(events.length);
    this.model.predictRows(rows, 0, events.length, out);
    return out;
  }

  /**
   * The tokens of events as rows (row r: events[r]'s live token ids), creating nothing. The rows
   * are reused by the next call (and by predict).
   */
  lookup(events: readonly Interaction[]): Rows {
    let rows = this.#lookups;
    if (rows === null) {
      rows = new Rows(this.model.maxTokens, this.#codes.names, events.length);
      this.#lookups = rows;
    }
    rows.reserve(events.length);
    events.forEach((e, r) => {
      this.#tokens.lookup(e.user, e.fields, e.item, this.#catalog.entry(e.item), rows, r);
    });
    rows.length = events.length;
    return rows;
  }

  /** See Reads.score. */
  score(user: string, items: readonly string[], fields?: Readonly<Record<string, string>>): number[] {
    return this.#reads.score(user, items, fields);
  }

  /** See Reads.recommend. */
  recommend(
    user: string,
    k: number,
    options: { exclude?: Iterable<string>; fields?: Readonly<Record<string, string>> } = {},
  ): RecommendResult {
    return this.#reads.recommend(user, k, options);
  }

  /** Tells the reads that parameters changed outside learn() (a replica applying updates, a
   *  restore): a bounded recommend then refreshes the item-only term within itemRefreshMs.
   *  `created`: the token keys created since the last call, when known (saves a catalog scan). */
  invalidateItems(created?: Iterable<string>): void {
    this.#terms.changed();
    this.#catalog.link(created);
  }

  /**
   * Advances the item sweep by the share of the catalog due since the last call (see ItemTerms).
   * endBatch() calls it; a service also calls it on a timer, so the sweep keeps pace when batches
   * are rare or large. Nothing to do when itemRefreshMs is 0.
   */
  refreshItems(): void {
    this.#terms.advance();
  }

  /** An evicted token: its id will be reused, so nothing may keep it. */
  #forget(id: TokenId, key: string): void {
    this.#terms.changed();
    this.#tokens.forget(id, key);
    this.#catalog.forget(id, key);
  }

  /** Items with their fields, activity and counts, for snapshots. */
  exportItems(): ExportedItem[] {
    const out: ExportedItem[] = [];
    for (let i = 0; i < this.#catalog.size; i++) out.push(this.#catalog.exportItem(i));
    return out;
  }

  /** Items known, by index 0..itemCount-1 (the order of exportItems). */
  get itemCount(): number {
    return this.#catalog.size;
  }

  /** How many events item `index` has had (its popularity count). */
  itemEvents(index: number): number {
    return this.#catalog.popularity.count(index);
  }

  /** The name of item `index`. */
  itemName(index: number): string {
    return this.#catalog.at(index).item;
  }

  /** One item of exportItems, by index. */
  exportItem(index: number): ExportedItem {
    return this.#catalog.exportItem(index);
  }

  /** exportItem(index) as JSON text (see Catalog.exportItemJson). */
  exportItemJson(index: number): string {
    return this.#catalog.exportItemJson(index);
  }

  /**
   * The catalog in a compact form for snapshots: item names (itemName) and the field-key sets
   * (signatures) they share, then per item its signature, active flag and event count
   * (exportCatalogColumns). Names and signatures are only ever added, never changed or removed,
   * so a snapshot can encode them as they come (src/engine/state.ts).
   */
  get signatureCount(): number {
    return this.#catalog.signatureCount;
  }

  /** The field keys (`name=value`, sorted) of signature `g`. */
  signatureKeys(g: number): readonly string[] {
    return this.#catalog.signatureKeys(g);
  }

  /** Per item (by index, as itemName): signature, active flag, event count. */
  exportCatalogColumns(): Omit<ExportedCatalog, 'names' | 'signatures'> {
    return this.#catalog.exportColumns();
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

  /** Restores what exportItems wrote (after construction, before learning); a follower applies
   *  published items the same way. */
  importItems(items: ExportedItem[]): void {
    const catalog = this.#catalog;
    for (const it of items) {
      if (catalog.differs(it)) this.upsertItem({ item: it.item, fields: it.fields, active: it.active });
      // Refused by the limits (lowered since it was kept): left out.
      const entry = catalog.entry(it.item);
      if (entry !== undefined) catalog.restoreCount(entry.index, it.count, it.active);
    }
  }

  /** Bytes of the trainer's caches and catalog, outside the store's budget (TrainerMemory). */
  memory(): TrainerMemory {
    return {
      keyCaches: this.#tokens.bytes() + this.#codes.bytes() + (this.#cross?.bytes() ?? 0),
      catalog: this.#catalog.bytes(),
      itemCaches: this.#terms.bytes() + this.#reads.bytes(),
    };
  }

  /** Events learned from, negatives included, across restarts (stats().learned, without the rest). */
  get learned(): number {
    return this.#learnedBefore + this.#scored.count;
  }

  stats(): TrainerStats {
    const learned = this.learned;
    return {
      ...this.metrics.snapshot(),
      learned,
      negativesDrawn: this.#negativesDrawn,
      eventsPerSecond: this.#busyMs > 0 ? (learned * 1000) / this.#busyMs : 0,
      items: this.#catalog.size,
      rejected: { ...this.#rejected },
    };
  }

  /** Restores the counters a snapshot holds (after construction, before learning), so that
   *  `learned` counts every event applied to the state across restarts. */
  restoreCounters(counters: { learned: number; negativesDrawn: number }): void {
    this.#learnedBefore = counters.learned - this.#scored.count;
    this.#negativesDrawn = counters.negativesDrawn;
  }
}

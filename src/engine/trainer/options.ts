/**
 * What a Trainer is built from: the store API it needs, the observer it tells of every token (PME),
 * and its options with their defaults and validation.
 */
import type { CatalogItem, Interaction } from '../../data/event.js';
import { PmeError } from '../../errors.js';
import type { EmbeddingStore } from '../../store/index.js';
import { type Clock, type Milliseconds, systemClock } from '../../util/clock.js';
import type { FmOptions } from '../model/fm.js';
import type { ModelStore, TokenId } from '../model/model.js';

/** The part of the EmbeddingStore the trainer uses, on top of what the model reads. It hears
 *  evictions (to forget cached ids the store will reuse) and moves (a PME move changes a vector
 *  without a learn()) through the store's listeners. */
export type TrainerStore = ModelStore &
  Pick<EmbeddingStore, 'id' | 'key' | 'getOrCreateMany' | 'touch' | 'onEvict' | 'onMove'> &
  Partial<Pick<EmbeddingStore, 'fieldNames' | 'onCreate' | 'forEachInTier'>>;

/** Sees every token the trainer resolves (the PME hot-token tracker plugs in here). */
export interface TokenObserver {
  observe(id: TokenId): void;
  /** Per event learned (after its tokens were observed). */
  observeEvent?(event: Interaction): void;
  /** After every learn() (the place to move tokens: no event is half-resolved). */
  endBatch(): void;
}

export interface TrainerOptions {
  /** Options of the FM the trainer builds when it is given no model (learning rates, L2,
   *  optimizer); see FmOptions. */
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
  /** Most distinct field names (`user` and `item` aside) of events and catalog together; an
   *  event or item that would add one more is refused (limits.ts). Default 1024. */
  maxFieldNames: number;
  /** Longest user, item, field name or field value, in UTF-16 code units; a longer one's event
   *  or item is refused. Default 1024. */
  maxKeyLength: number;
  /**
   * Every event carries one more token, the pair's own (`user:item=…`, tokens.ts crossKey):
   * a linear weight for that user with that item, as Vowpal Wabbit's `-q ui` gives, created at
   * size 0 and never sized by PME. It pays where pairs repeat (ad impressions); where each pair
   * comes once (ratings) it only costs a token per event. Drawn negatives never create one;
   * scores and recommendations read it (recommend through cross.ts CrossIndex). Default false.
   */
  crossUserItem: boolean;
}

export const TRAINER_DEFAULTS: Readonly<Omit<TrainerOptions, 'clock' | 'catalog' | 'observer' | 'model'>> =
  Object.freeze({
    negatives: 0,
    negativeExponent: 0.75,
    metricsWindow: 10_000,
    aucBins: 2048,
    seed: 1,
    itemRefreshMs: 0,
    maxFieldNames: 1024,
    maxKeyLength: 1024,
    crossUserItem: false,
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
  // The store's field table holds at most 65,536 names, 'user' and 'item' among them.
  if (!Number.isInteger(o.maxFieldNames) || o.maxFieldNames < 0 || o.maxFieldNames > 65_534)
    throw invalid(`maxFieldNames must be an integer in [0, 65534], got ${o.maxFieldNames}`);
  if (!Number.isInteger(o.maxKeyLength) || o.maxKeyLength < 1)
    throw invalid(`maxKeyLength must be an integer >= 1, got ${o.maxKeyLength}`);
  if (typeof o.crossUserItem !== 'boolean')
    throw invalid(`crossUserItem must be a boolean, got ${o.crossUserItem}`);
  return Object.freeze(o);
}

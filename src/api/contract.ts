/**
 * What the HTTP layer needs from the rest of the service. The API reads the engine and the
 * store only through this interface, so routes can be tested over real sockets against a
 * real engine, and the service wiring (src/service/adapter.ts) is the one place that adapts them.
 * Shapes the engine already defines are its own (one definition each).
 */
import type { MemoryActions, RecommendResult, UnbudgetedMemory, WindowTier } from '../engine/index.js';
import type { Subscription } from '../stream/json-mapping.js';

export type { Subscription } from '../stream/json-mapping.js';
/** A subscription as `POST /v1/subscriptions` answers it: `created` when its topic was made. */
export type SubscribeResult = Subscription & { created: boolean };

export type { MemoryActions, Recommendation, RecommendResult } from '../engine/index.js';

/**
 * What PME and the trainer keep besides the store, by part (src/engine/memory.ts): the hot-token
 * sketch, PME's per-token state, the key caches, the catalog, the item caches. Outside the budget,
 * reported beside it; they sum to `unbudgetedBytes`. Typed arrays are exact, Maps and strings
 * estimated.
 */
export type UnbudgetedParts = UnbudgetedMemory;

/** Bytes and tokens of one tier (optimizer bytes include the importance slab of the top tier). */
export type TierReport = WindowTier;

export interface FieldReport {
  field: string;
  tokens: number;
  bytes: number;
  /** size -> tokens of this field in that tier */
  tiers: Record<string, number>;
}

/**
 * What the store's budget counts, by part (StoreAccounting): the tier slabs (parameters, optimizer
 * state, importance, slot index), the per-token columns (with the table of evicted tokens' linear
 * weights), and the key index (Map and key strings). They sum to the store's `totalBytes`.
 */
export interface MemoryParts {
  tiers: number;
  tokenColumns: number;
  keyIndex: number;
}

export interface TiersReport {
  tiers: TierReport[];
  fields: FieldReport[];
  /** What the budget counts: the store's accounting total, all of `memoryParts`. */
  totalBytes: number;
  memoryParts: MemoryParts;
  budgetBytes: number;
  /** What the budget does not count, by part, and their sum: all the service accounts for is
   *  `totalBytes + unbudgetedBytes`. */
  unbudgeted: UnbudgetedParts;
  unbudgetedBytes: number;
}

export interface TokenInfo {
  token: string;
  field: string;
  tier: number;
  size: number;
  frequency: number;
  lastSeen: number;
}

export interface Readiness {
  ready: boolean;
  modelLoaded: boolean;
  consumerLive: boolean;
  detail: string;
}

/** Answered at once by a trainer's own thread, or asked of it by a serving thread. */
export type MaybePromise<T> = T | Promise<T>;

export interface ServiceApi {
  score(user: string, items: readonly string[], fields: Readonly<Record<string, string>>): number[];
  recommend(user: string, k: number, exclude: ReadonlySet<string>, excludeRecent: boolean): RecommendResult;
  /** Starts a window now; resolves with its id once started (not finished). Throws PME_ERR_PRUNE_RUNNING. */
  startPrune(reason: string): MaybePromise<number>;
  pruneWindows(): MaybePromise<PruneWindowReport[]>;
  tiers(): MaybePromise<TiersReport>;
  token(field: string, value: string): MaybePromise<TokenInfo | null>;
  readiness(): MaybePromise<Readiness>;
  /** The trainer's subscriptions (absent on a replica: the routes answer 404). */
  subscriptions?(): MaybePromise<Subscription[]>;
  /** Adds one (the body as sent: checked here). Throws PME_ERR_BAD_REQUEST, PME_ERR_SUBSCRIPTION_EXISTS. */
  subscribe?(value: unknown): Promise<SubscribeResult>;
  /** Removes one; once resolved its topic is no longer read. Throws PME_ERR_NOT_FOUND. */
  unsubscribe?(name: string): Promise<void>;
  /** What `/metrics` reports of training, input, tiers and windows, as values: `/v1/stats` maps it. */
  stats(): MaybePromise<ServiceStats>;
  /** Prometheus text exposition of every metric (rendered from the same sources as `stats`). */
  metrics(): Promise<string>;
  metricsContentType: string;
  /** Called per request with the route and its duration, for the latency histograms. */
  observeRequest(route: string, method: string, status: number, seconds: number): void;
}

/** The trainer's progressive metrics; NaN until there is anything to measure. */
export interface TrainingStats {
  events: number;
  /** Events in the state across restarts; default `events`. */
  learned?: number;
  auc: number;
  logloss: number;
  windowAuc: number;
  windowLogloss: number;
  /** Events and catalog items refused past the trainer's limits when learned (those refused as
   *  they were decoded went to the DLQ instead), by reason. */
  rejected?: Readonly<Record<string, number>>;
}

/** The input's counters: the interactions consumer, or a replica's parameter follower. */
export interface InputStats {
  consumed: number;
  skipped?: number;
  /** Values read as the current schema because they carried no schema header. */
  headerless?: number;
  pauses?: number;
  partitions?: number;
  decodeMs?: number;
  applyMs?: number;
  lockWaitMs?: number;
  /** Events sent to the dead-letter topics, by reason. */
  dlq: Readonly<Record<string, number>>;
  /** Messages behind the end of each partition, by partition number. */
  lag: Readonly<Record<string, number>>;
  /** Per subscription (`/v1/subscriptions`), its own counters; the totals above include them. */
  subscriptions?: Readonly<Record<string, SubscriptionCounters>>;
}

/** What one subscription's topic gave: messages read, events trained, DLQ sends by reason. */
export interface SubscriptionCounters {
  topic: string;
  consumed: number;
  trained: number;
  dlq: Readonly<Record<string, number>>;
  /** Messages behind the end of each of its partitions: from the last fetch, or read from the broker
   *  for a partition no fetch reported lately (idle, or never fetched). */
  lag: Readonly<Record<string, number>>;
}

/**
 * One reading of what the service reports about itself (all of `/metrics` but request latency):
 * the typed source that `/metrics` renders as text and `/v1/stats` maps to JSON, so the two agree.
 * Plain data, so a serving thread can receive it from the training thread.
 */
export interface ServiceStats {
  trainer: TrainingStats;
  consumer: InputStats;
  /** Per tier, as the store lists them. */
  tiers: TierReport[];
  /** What the budget counts (the store's accounting total): the tiers are only one of its parts. */
  totalBytes: number;
  memoryParts: MemoryParts;
  budgetBytes: number;
  /** Beside the budget: what PME and the trainer keep outside it (the sketch, caches, catalog). */
  unbudgeted: UnbudgetedParts;
  unbudgetedBytes: number;
  /** Windows run since start. */
  pruneWindows: number;
  /** Dense compute backend in use. */
  backend: string;
  /** What memory pressure made PME and the store do (absent on a replica). */
  memory?: MemoryActions;
}

/** A re-pruning window as reported: kept bounded in memory by the engine. */
export interface PruneWindowReport {
  id: number;
  reason: string;
  startedAt: number;
  durationMs: number;
  searched: number;
  moved: number;
  demoted: number;
  /** Tokens raised to a new base size, and the warmest at the base raised one size up; the size new
   *  tokens start at after the window. */
  raised: number;
  baseSize: number;
  evicted: number;
  /** The last events learned, scored just before and just after the window's moves: what the
   *  window did to the model (null without a probe). */
  probe: {
    events: number;
    aucBefore: number;
    aucAfter: number;
    loglossBefore: number;
    loglossAfter: number;
  } | null;
  /** Windowed progressive AUC at the start, and a metrics window after the end (other events). */
  aucBefore: number;
  aucAfter: number | null;
  before: TierReport[];
  after: TierReport[];
}

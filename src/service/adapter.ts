/**
 * Adapts the engine, the store and the consumer to what the HTTP layer needs (ServiceApi).
 */
import type {
  MemoryParts,
  PruneWindowReport,
  Readiness,
  ServiceApi,
  SubscribeResult,
  TierReport,
  TiersReport,
} from '../api/contract.js';
import { type PmeController, type Trainer, unbudgetedMemory, unbudgetedTotal } from '../engine/index.js';
import type { EmbeddingStore, StoreAccounting } from '../store/index.js';
import type { Subscription } from '../stream/index.js';
import type { MemoryReading, ServiceMetrics } from './metrics.js';
import type { RecentItems } from './recent.js';

export interface PruneControl {
  /** Starts a window now; returns its id. Throws PME_ERR_PRUNE_RUNNING while one runs. */
  start(reason: string): number;
  windows(): PruneWindowReport[];
}

export interface AdapterParts {
  store: EmbeddingStore;
  trainer: Trainer;
  /** The trainer's PME controller; null on a replica (no sketch, no queues). */
  pme: PmeController | null;
  recent: RecentItems;
  prune: PruneControl;
  metrics: () => ServiceMetrics;
  /** Whether the model is loaded and the input (consumer, or parameter follower) is live. */
  readiness: () => Readiness;
  /** The trainer's subscriptions (a replica has none: the routes answer 404). */
  subscriptions?: SubscriptionControl;
}

export interface SubscriptionControl {
  list(): Subscription[];
  add(value: unknown): Promise<SubscribeResult>;
  remove(name: string): Promise<void>;
}

/** Readiness of a trainer: its model is in memory once started; ready while the consumer runs and
 *  Kafka answers it (StreamConsumer.live). */
export function trainerReadiness(consumerLive: () => boolean): () => Readiness {
  return () => {
    const live = consumerLive();
    return {
      ready: live,
      modelLoaded: true,
      consumerLive: live,
      detail: live
        ? 'model loaded, consumer live'
        : 'consumer stopped, or no answer from Kafka within the session timeout',
    };
  };
}

export function tierReports(accounting: StoreAccounting): TierReport[] {
  return accounting.tiers.map((tier) => ({
    size: tier.size,
    tokens: tier.tokens,
    paramBytes: tier.paramBytes,
    optimizerBytes: tier.optimizerBytes + tier.importanceBytes,
    indexBytes: tier.indexBytes,
    totalBytes: tier.totalBytes,
  }));
}

/** The budget's parts, from the one accounting the budget itself checks: the tier slabs are only
 *  part of it, so a total summed from the tiers would understate what the budget holds. */
export function memoryParts(accounting: StoreAccounting): MemoryParts {
  let tiers = 0;
  for (const tier of accounting.tiers) tiers += tier.totalBytes;
  return {
    tiers,
    // The evicted tokens' linear weights are per-token columns kept past eviction.
    tokenColumns: accounting.tokenColumnsBytes + accounting.evictedBytes,
    keyIndex: accounting.indexBytes,
  };
}

/** Bytes and tokens per tier, the store's total and its parts, the budget, and beside it what the
 *  trainer and PME (null on a replica) keep outside the budget, as the metrics read them. */
export function tierMetrics(
  store: EmbeddingStore,
  trainer: Trainer,
  pme: PmeController | null,
): MemoryReading {
  const accounting = store.accounting();
  const unbudgeted = unbudgetedMemory(trainer, pme);
  return {
    tiers: tierReports(accounting),
    totalBytes: accounting.totalBytes,
    memoryParts: memoryParts(accounting),
    budgetBytes: accounting.budgetBytes,
    unbudgeted,
    unbudgetedBytes: unbudgetedTotal(unbudgeted),
  };
}

/** The two latency-bound reads, answered from a trainer (the training one, or a serving copy). */
export function readApi(trainer: Trainer, recent: RecentItems): Pick<ServiceApi, 'score' | 'recommend'> {
  return {
    score: (user, items, fields) => trainer.score(user, items, fields),
    recommend: (user, k, exclude, excludeRecent) => {
      const excluded = excludeRecent ? new Set([...exclude, ...recent.of(user)]) : exclude;
      return trainer.recommend(user, k, { exclude: excluded });
    },
  };
}

/** What `GET /v1/tiers` answers: tokens and bytes per tier and per field, and the budget's parts. */
export function tiersReport(store: EmbeddingStore, trainer: Trainer, pme: PmeController | null): TiersReport {
  const accounting = store.accounting();
  const unbudgeted = unbudgetedMemory(trainer, pme);
  return {
    tiers: tierReports(accounting),
    fields: store.fieldStats().map((f) => ({
      field: f.field,
      tokens: f.tokens,
      bytes: f.bytes,
      tiers: Object.fromEntries(Object.entries(f.tiers).map(([size, n]) => [String(size), n])),
    })),
    totalBytes: accounting.totalBytes,
    memoryParts: memoryParts(accounting),
    budgetBytes: accounting.budgetBytes,
    unbudgeted,
    unbudgetedBytes: unbudgetedTotal(unbudgeted),
  };
}

export function serviceApi(parts: AdapterParts): ServiceApi {
  const { store, trainer, pme, recent, prune } = parts;
  return {
    ...readApi(trainer, recent),
    startPrune: (reason) => prune.start(reason),
    pruneWindows: () => prune.windows(),
    tiers: () => tiersReport(store, trainer, pme),
    token: (field, value) => {
      const id = store.id(`${field}=${value}`);
      if (id < 0) return null;
      return {
        token: `${field}=${value}`,
        field,
        tier: store.tierOf[id],
        size: store.sizeOf(id),
        frequency: store.frequency[id],
        lastSeen: store.lastSeen[id],
      };
    },
    readiness: parts.readiness,
    ...(parts.subscriptions === undefined
      ? {}
      : {
          subscriptions: parts.subscriptions.list,
          subscribe: parts.subscriptions.add,
          unsubscribe: parts.subscriptions.remove,
        }),
    stats: () => parts.metrics().stats(),
    metrics: () => parts.metrics().registry.metrics(),
    get metricsContentType() {
      return parts.metrics().registry.contentType;
    },
    observeRequest: (route, method, status, seconds) =>
      parts.metrics().observeRequest(route, method, status, seconds),
  };
}

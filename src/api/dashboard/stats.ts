/**
 * `GET /v1/stats`: one JSON summary for the dashboard (events, progressive AUC and logloss, lag,
 * memory and tokens per tier), mapped from `ServiceApi.stats()`: the typed reading of the same
 * getters that `/metrics` renders as text, so the page and a Prometheus scrape agree.
 */
import type { Milliseconds } from '../../util/clock.js';
import type { MemoryParts, PruneWindowReport, ServiceStats, UnbudgetedParts } from '../contract.js';
import { memoryParts, unbudgetedParts } from '../schemas.js';

/** One subscription's counters. */
export interface SubscriptionStats {
  topic: string;
  consumed: number;
  trained: number;
  dlq: number;
  dlqByReason: Record<string, number>;
  lag: Record<string, number>;
}

/** One tier as the dashboard charts it. */
export interface TierStats {
  size: number;
  tokens: number;
  /** Parameters + optimizer state (importance included) + index. */
  bytes: number;
}

export interface DashboardStats {
  /** When the sample was taken, ms since the epoch (the service's clock). */
  at: Milliseconds;
  eventsTrained: number;
  eventsConsumed: number;
  /** Events sent to the dead-letter topics, all reasons. */
  dlq: number;
  /** Progressive AUC over all events so far; null before there is any. */
  auc: number | null;
  /** Progressive AUC over the recent window of events. */
  windowAuc: number | null;
  logloss: number | null;
  windowLogloss: number | null;
  /** Messages behind the end of the partition, per partition. */
  lag: Record<string, number>;
  lagTotal: number;
  /** Per subscription (`/v1/subscriptions`): its topic, messages read, events trained, DLQ sends
   *  (all reasons, and by reason), and its lag per partition. */
  subscriptions: Record<string, SubscriptionStats>;
  /** Ascending by size. */
  tiers: TierStats[];
  /** What the budget counts (the store's accounting total, as `/v1/tiers` reports it): the tiers,
   *  the per-token columns and the key index. The tiers alone are only `memoryParts.tiers`. */
  totalBytes: number;
  memoryParts: MemoryParts;
  /** Infinity when the store has no budget, which JSON writes as null. */
  budgetBytes: number;
  /** Beside the budget, not in it: PME's sketch and per-token state, the trainer's key caches,
   *  catalog and item caches (as `/v1/tiers` reports them), and their sum. */
  unbudgeted: UnbudgetedParts;
  unbudgetedBytes: number;
  /** Windows run since start. */
  pruneWindows: number;
  /** Id of the newest finished window still reported by `GET /v1/prune`; 0 when none. */
  lastWindowId: number;
  backend: string;
}

/** Non-finite readings (NaN before the first event) are "none yet" in JSON, which has no NaN. */
const finite = (value: number): number | null => (Number.isFinite(value) ? value : null);

/**
 * Maps the service's typed reading (what `/metrics` renders) and its prune windows to the summary.
 * Tier bytes are the three kinds `pme_tier_bytes` reports, summed; the total is the store's own
 * (`pme_budget_used_bytes`), not a sum of the tiers, which leave out the per-token columns and the
 * key index. Lag is copied, since the reading may hold the consumer's live counters and the reply
 * is serialized after this returns.
 */
export function dashboardStats(
  stats: ServiceStats,
  windows: readonly PruneWindowReport[],
  at: Milliseconds,
): DashboardStats {
  const { trainer, consumer } = stats;
  let dlq = 0;
  for (const reason in consumer.dlq) dlq += consumer.dlq[reason];
  const lag: Record<string, number> = {};
  let lagTotal = 0;
  for (const partition in consumer.lag) {
    lag[partition] = consumer.lag[partition];
    lagTotal += consumer.lag[partition];
  }
  const subscriptions: Record<string, SubscriptionStats> = {};
  for (const [name, c] of Object.entries(consumer.subscriptions ?? {})) {
    let total = 0;
    for (const reason in c.dlq) total += c.dlq[reason];
    subscriptions[name] = {
      topic: c.topic,
      consumed: c.consumed,
      trained: c.trained,
      dlq: total,
      dlqByReason: { ...c.dlq },
      lag: { ...c.lag },
    };
  }
  const tiers = stats.tiers
    .map(
      (tier): TierStats => ({
        size: tier.size,
        tokens: tier.tokens,
        bytes: tier.paramBytes + tier.optimizerBytes + tier.indexBytes,
      }),
    )
    .sort((a, b) => a.size - b.size);
  return {
    at,
    eventsTrained: trainer.events,
    eventsConsumed: consumer.consumed,
    dlq,
    auc: finite(trainer.auc),
    windowAuc: finite(trainer.windowAuc),
    logloss: finite(trainer.logloss),
    windowLogloss: finite(trainer.windowLogloss),
    lag,
    lagTotal,
    subscriptions,
    tiers,
    totalBytes: stats.totalBytes,
    memoryParts: { ...stats.memoryParts },
    budgetBytes: stats.budgetBytes,
    unbudgeted: { ...stats.unbudgeted },
    unbudgetedBytes: stats.unbudgetedBytes,
    pruneWindows: stats.pruneWindows,
    lastWindowId: windows.length > 0 ? windows[windows.length - 1].id : 0,
    backend: stats.backend,
  };
}

const nullableNumber = { type: ['number', 'null'] } as const;

export const statsSchema = {
  summary:
    'One summary for the dashboard: events, progressive AUC and logloss, lag, memory per tier, what the budget counts, and beside it what it does not (PME sketch, caches, catalog)',
  response: {
    200: {
      type: 'object',
      properties: {
        at: { type: 'number' },
        eventsTrained: { type: 'number' },
        eventsConsumed: { type: 'number' },
        dlq: { type: 'number' },
        auc: nullableNumber,
        windowAuc: nullableNumber,
        logloss: nullableNumber,
        windowLogloss: nullableNumber,
        lag: { type: 'object', additionalProperties: { type: 'number' } },
        lagTotal: { type: 'number' },
        subscriptions: {
          type: 'object',
          additionalProperties: {
            type: 'object',
            properties: {
              topic: { type: 'string' },
              consumed: { type: 'number' },
              trained: { type: 'number' },
              dlq: { type: 'number' },
              dlqByReason: { type: 'object', additionalProperties: { type: 'number' } },
              lag: { type: 'object', additionalProperties: { type: 'number' } },
            },
          },
        },
        tiers: {
          type: 'array',
          items: {
            type: 'object',
            properties: { size: { type: 'integer' }, tokens: { type: 'number' }, bytes: { type: 'number' } },
          },
        },
        totalBytes: { type: 'number' },
        memoryParts,
        budgetBytes: { type: 'number' },
        unbudgeted: unbudgetedParts,
        unbudgetedBytes: { type: 'number' },
        pruneWindows: { type: 'number' },
        lastWindowId: { type: 'integer' },
        backend: { type: 'string' },
      },
    },
  },
} as const;

/**
 * What a service's `/metrics` text says, summarized in the shape of `/v1/stats` (all of
 * DashboardStats but the time stamp and the newest window id, which the text does not carry).
 * Read with the stream tests' sample readers, independently of the route, so that a test can
 * check the JSON against the text.
 */
import type { DashboardStats, SubscriptionStats, TierStats } from '../../src/api/dashboard/stats.js';
import { metric, metricByLabel } from '../stream/helpers.js';

/** As JSON carries it: a store without a budget reports `+Inf`, which JSON writes as null. */
export type TextSummary = Omit<DashboardStats, 'at' | 'lastWindowId' | 'budgetBytes'> & {
  budgetBytes: number | null;
};

/** One label's value in a label set such as `{size="8",kind="params"}`. */
const label = (set: string, name: string): string => new RegExp(`${name}="([^"]*)"`).exec(set)?.[1] ?? '';

const orNull = (value: number | undefined): number | null =>
  value !== undefined && Number.isFinite(value) ? value : null;

const sum = (samples: Record<string, number>): number =>
  Object.values(samples).reduce((total, value) => total + value, 0);

export async function summaryFromMetrics(url: string): Promise<TextSummary> {
  const auc = await metricByLabel(url, 'pme_progressive_auc');
  const logloss = await metricByLabel(url, 'pme_progressive_logloss');
  const lagSamples = await metricByLabel(url, 'pme_consumer_lag');
  const lag: Record<string, number> = {};
  for (const [set, value] of Object.entries(lagSamples)) lag[label(set, 'partition')] = value;
  const subscriptions: Record<string, SubscriptionStats> = {};
  const of = (set: string): SubscriptionStats => {
    const name = label(set, 'subscription');
    subscriptions[name] ??= { topic: '', consumed: 0, trained: 0, dlq: 0, dlqByReason: {}, lag: {} };
    return subscriptions[name];
  };
  for (const [set, value] of Object.entries(await metricByLabel(url, 'pme_subscription_events_total'))) {
    const s = of(set);
    s.topic = label(set, 'topic');
    const outcome = label(set, 'outcome');
    if (outcome === 'consumed') s.consumed = value;
    else if (outcome === 'trained') s.trained = value;
    else {
      s.dlq += value;
      s.dlqByReason[label(set, 'reason')] = value;
    }
  }
  for (const [set, value] of Object.entries(await metricByLabel(url, 'pme_subscription_lag')))
    of(set).lag[label(set, 'partition')] = value;
  const tiers = new Map<number, TierStats>();
  for (const [set, tokens] of Object.entries(await metricByLabel(url, 'pme_tier_tokens'))) {
    const size = Number(label(set, 'size'));
    tiers.set(size, { size, tokens, bytes: 0 });
  }
  const bytes = await metricByLabel(url, 'pme_tier_bytes');
  const parts = await metricByLabel(url, 'pme_store_bytes');
  const outside = await metricByLabel(url, 'pme_unbudgeted_bytes');
  for (const [set, value] of Object.entries(bytes)) {
    const tier = tiers.get(Number(label(set, 'size')));
    if (tier === undefined) throw new Error(`pme_tier_bytes${set} has no pme_tier_tokens`);
    tier.bytes += value;
  }
  return {
    eventsTrained: await metric(url, 'pme_events_trained_total'),
    eventsConsumed: await metric(url, 'pme_events_consumed_total'),
    dlq: sum(await metricByLabel(url, 'pme_dlq_events_total')),
    auc: orNull(auc['{scope="cumulative"}']),
    windowAuc: orNull(auc['{scope="window"}']),
    logloss: orNull(logloss['{scope="cumulative"}']),
    windowLogloss: orNull(logloss['{scope="window"}']),
    lag,
    lagTotal: sum(lagSamples),
    subscriptions,
    tiers: [...tiers.values()].sort((a, b) => a.size - b.size),
    // What the budget counts: not sum(pme_tier_bytes), which is only its tiers part.
    totalBytes: await metric(url, 'pme_budget_used_bytes'),
    memoryParts: {
      tiers: parts['{part="tiers"}'],
      tokenColumns: parts['{part="token-columns"}'],
      keyIndex: parts['{part="key-index"}'],
    },
    budgetBytes: orNull(await metric(url, 'pme_budget_bytes')),
    // Beside the budget: its parts, and their sum (the text carries no total of its own).
    unbudgeted: {
      pmeSketch: outside['{part="pme-sketch"}'],
      pmeTokens: outside['{part="pme-tokens"}'],
      keyCaches: outside['{part="key-caches"}'],
      catalog: outside['{part="catalog"}'],
      itemCaches: outside['{part="item-caches"}'],
    },
    unbudgetedBytes: sum(outside),
    pruneWindows: await metric(url, 'pme_prune_windows_total'),
    backend: label(Object.keys(await metricByLabel(url, 'pme_backend_info'))[0] ?? '', 'backend'),
  };
}

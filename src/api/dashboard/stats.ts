/**
 * `GET /v1/stats`: one JSON summary for the dashboard (events, progressive AUC and logloss, lag,
 * memory and tokens per tier). ServiceApi exposes these only as Prometheus text, so the summary
 * is read back from that text: one source of truth, and nothing new for the service to wire.
 */
import type { Milliseconds } from '../../util/clock.js';
import type { PruneWindowReport } from '../contract.js';

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
  /** Ascending by size. */
  tiers: TierStats[];
  totalBytes: number;
  budgetBytes: number;
  /** Windows run since start. */
  pruneWindows: number;
  /** Id of the newest finished window still reported by `GET /v1/prune`; 0 when none. */
  lastWindowId: number;
  backend: string;
}

/** One sample: metric name, its labels, its value. */
export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

const SAMPLE = /^([A-Za-z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)/;
const LABEL = /([A-Za-z_]\w*)="((?:[^"\\]|\\.)*)"/g;

/** Go's float spellings, as the exposition format writes them; everything else is a JS number. */
function sampleValue(text: string): number {
  if (text === '+Inf') return Number.POSITIVE_INFINITY;
  if (text === '-Inf') return Number.NEGATIVE_INFINITY;
  return Number(text);
}

/** Parses Prometheus text exposition (version 0.0.4) into samples; comments and blank lines are skipped. */
export function parseMetrics(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const match = SAMPLE.exec(line);
    if (match === null) continue;
    const labels: Record<string, string> = {};
    if (match[2] !== undefined)
      for (const [, key, raw] of match[2].matchAll(LABEL))
        labels[key] = raw.replace(/\\n/g, '\n').replace(/\\(.)/g, '$1');
    samples.push({ name: match[1], labels, value: sampleValue(match[3]) });
  }
  return samples;
}

const finite = (value: number | undefined): number | null =>
  value !== undefined && Number.isFinite(value) ? value : null;

/** Builds the summary from the service's metrics text and its prune windows. */
export function statsFromMetrics(
  text: string,
  windows: readonly PruneWindowReport[],
  at: Milliseconds,
): DashboardStats {
  const one = new Map<string, number>();
  const lag: Record<string, number> = {};
  const tiers = new Map<number, TierStats>();
  const tier = (size: number): TierStats => {
    let t = tiers.get(size);
    if (t === undefined) {
      t = { size, tokens: 0, bytes: 0 };
      tiers.set(size, t);
    }
    return t;
  };
  let dlq = 0;
  let lagTotal = 0;
  let backend = '';
  for (const { name, labels, value } of parseMetrics(text)) {
    switch (name) {
      case 'pme_progressive_auc':
      case 'pme_progressive_logloss':
        one.set(`${name}:${labels.scope}`, value);
        break;
      case 'pme_consumer_lag':
        lag[labels.partition] = value;
        lagTotal += value;
        break;
      case 'pme_dlq_events_total':
        dlq += value;
        break;
      case 'pme_tier_bytes':
        tier(Number(labels.size)).bytes += value;
        break;
      case 'pme_tier_tokens':
        tier(Number(labels.size)).tokens = value;
        break;
      case 'pme_backend_info':
        backend = labels.backend ?? '';
        break;
      default:
        one.set(name, value);
    }
  }
  const sorted = [...tiers.values()].sort((a, b) => a.size - b.size);
  return {
    at,
    eventsTrained: one.get('pme_events_trained_total') ?? 0,
    eventsConsumed: one.get('pme_events_consumed_total') ?? 0,
    dlq,
    auc: finite(one.get('pme_progressive_auc:cumulative')),
    windowAuc: finite(one.get('pme_progressive_auc:window')),
    logloss: finite(one.get('pme_progressive_logloss:cumulative')),
    windowLogloss: finite(one.get('pme_progressive_logloss:window')),
    lag,
    lagTotal,
    tiers: sorted,
    totalBytes: sorted.reduce((sum, t) => sum + t.bytes, 0),
    budgetBytes: one.get('pme_budget_bytes') ?? 0,
    pruneWindows: one.get('pme_prune_windows_total') ?? 0,
    lastWindowId: windows.length > 0 ? windows[windows.length - 1].id : 0,
    backend,
  };
}

const nullableNumber = { type: ['number', 'null'] } as const;

export const statsSchema = {
  summary: 'One summary for the dashboard: events, progressive AUC and logloss, lag, memory per tier',
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
        tiers: {
          type: 'array',
          items: {
            type: 'object',
            properties: { size: { type: 'integer' }, tokens: { type: 'number' }, bytes: { type: 'number' } },
          },
        },
        totalBytes: { type: 'number' },
        budgetBytes: { type: 'number' },
        pruneWindows: { type: 'number' },
        lastWindowId: { type: 'integer' },
        backend: { type: 'string' },
      },
    },
  },
} as const;

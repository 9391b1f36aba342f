/**
 * Prometheus metrics of the whole service. Values are read from their owners when scraped
 * (collect callbacks), so the hot paths keep plain counters and pay nothing per event for
 * metrics; only request latency is observed per request. The same getters give `stats()`, the
 * typed reading that `/v1/stats` is built from, so the JSON and the text cannot drift apart.
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { InputStats, MemoryActions, ServiceStats, TrainingStats } from '../api/contract.js';

/** What the metrics, `/v1/stats` and `/v1/tiers` read of memory: the budget's, and what lies beside it. */
export type MemoryReading = Pick<
  ServiceStats,
  'tiers' | 'totalBytes' | 'memoryParts' | 'budgetBytes' | 'unbudgeted' | 'unbudgetedBytes'
>;

/** The getters both outputs read: `/metrics` on each scrape, `stats()` (hence `/v1/stats`) per call. */
export interface MetricSources {
  trainer(): TrainingStats;
  consumer(): InputStats;
  /** The store's accounting (tierMetrics): per tier, and the total the budget counts with its parts;
   *  beside it, what PME and the trainer keep outside the budget. */
  tiers(): MemoryReading;
  pruneWindows(): number;
  backend(): string;
  /** What memory pressure did (none on a replica). */
  memory?(): MemoryActions;
  /** Seconds since the newest durable snapshot (SnapshotAge; none on a replica, which takes none). */
  snapshotAge?(): number;
}

/** Counters whose value lives elsewhere: set on scrape from a monotonic source. */
function setCounter(counter: Counter<string>, value: number, labels?: Record<string, string>): void {
  if (labels) {
    counter.remove(labels);
    counter.inc(labels, value);
  } else {
    counter.reset();
    counter.inc(value);
  }
}

export class ServiceMetrics {
  readonly registry = new Registry();
  readonly #sources: MetricSources;
  readonly #requests: RequestMetrics | null;

  /** `requests`: false when a serving thread observes requests itself (RequestMetrics). */
  constructor(sources: MetricSources, options: { requests: boolean } = { requests: true }) {
    this.#sources = sources;
    const registers = [this.registry];
    new Counter({
      name: 'pme_events_consumed_total',
      help: 'Messages read from the interactions topic',
      registers,
      collect() {
        setCounter(this, sources.consumer().consumed);
      },
    });
    new Counter({
      name: 'pme_events_trained_total',
      help: 'Events the trainer learned from',
      registers,
      collect() {
        setCounter(this, sources.trainer().events);
      },
    });
    new Counter({
      name: 'pme_events_applied_total',
      help: 'Events applied to the state since it began, across restarts (the snapshot holds the count)',
      registers,
      collect() {
        const t = sources.trainer();
        setCounter(this, t.learned ?? t.events);
      },
    });
    new Counter({
      name: 'pme_events_skipped_total',
      help: 'Messages read again below the restored snapshot offsets, and skipped',
      registers,
      collect() {
        setCounter(this, sources.consumer().skipped ?? 0);
      },
    });
    new Counter({
      name: 'pme_events_headerless_total',
      help: 'Values without a pme-schema header, read as the current schema (a value written with another schema and no header is misread or undecodable)',
      registers,
      collect() {
        setCounter(this, sources.consumer().headerless ?? 0);
      },
    });
    new Gauge({
      name: 'pme_consumer_partitions',
      help: 'Partitions of the interactions topic this instance owns in its consumer group',
      registers,
      collect() {
        this.set(sources.consumer().partitions ?? 0);
      },
    });
    new Counter({
      name: 'pme_consumer_seconds_total',
      help: 'Time the consumer spent per phase: decode (Avro, checks, DLQ), train (applying events), lock-wait',
      labelNames: ['phase'],
      registers,
      collect() {
        const c = sources.consumer();
        setCounter(this, (c.decodeMs ?? 0) / 1000, { phase: 'decode' });
        setCounter(this, (c.applyMs ?? 0) / 1000, { phase: 'train' });
        setCounter(this, (c.lockWaitMs ?? 0) / 1000, { phase: 'lock-wait' });
      },
    });
    new Counter({
      name: 'pme_consumer_pauses_total',
      help: 'Times fetching paused because the state lock was held too long',
      registers,
      collect() {
        setCounter(this, sources.consumer().pauses ?? 0);
      },
    });
    new Counter({
      name: 'pme_dlq_events_total',
      help: 'Events sent to the dead-letter topic, by reason',
      labelNames: ['reason'],
      registers,
      collect() {
        for (const [reason, count] of Object.entries(sources.consumer().dlq))
          setCounter(this, count, { reason });
      },
    });
    // Per subscription (its name): reset on each scrape, so a removed one is no longer reported.
    new Counter({
      name: 'pme_subscription_events_total',
      help: "Messages of a subscription's topic, by what became of them: consumed (read), trained (learned), dlq (sent to <topic>.dlq, with reason)",
      labelNames: ['subscription', 'topic', 'outcome', 'reason'],
      registers,
      collect() {
        this.reset();
        for (const [subscription, c] of Object.entries(sources.consumer().subscriptions ?? {})) {
          const { topic } = c;
          this.inc({ subscription, topic, outcome: 'consumed', reason: '' }, c.consumed);
          this.inc({ subscription, topic, outcome: 'trained', reason: '' }, c.trained);
          for (const [reason, count] of Object.entries(c.dlq))
            this.inc({ subscription, topic, outcome: 'dlq', reason }, count);
        }
      },
    });
    new Gauge({
      name: 'pme_subscription_lag',
      help: "Messages behind the end of each partition of a subscription's topic: at the last fetch, or read from the broker when no fetch reported it lately",
      labelNames: ['subscription', 'partition'],
      registers,
      collect() {
        this.reset();
        for (const [subscription, c] of Object.entries(sources.consumer().subscriptions ?? {}))
          for (const [partition, lag] of Object.entries(c.lag)) this.set({ subscription, partition }, lag);
      },
    });
    new Counter({
      name: 'pme_events_rejected_total',
      help: 'Events and catalog items the trainer refused past its limits when learning them, by reason (the DLQ counts those refused as decoded)',
      labelNames: ['reason'],
      registers,
      collect() {
        for (const [reason, count] of Object.entries(sources.trainer().rejected ?? {}))
          setCounter(this, count, { reason });
      },
    });
    new Gauge({
      name: 'pme_consumer_lag',
      help: 'Messages behind the end of each partition: at the last fetch, or read from the broker when no fetch reported it lately',
      labelNames: ['partition'],
      registers,
      collect() {
        this.reset();
        for (const [partition, lag] of Object.entries(sources.consumer().lag)) this.set({ partition }, lag);
      },
    });
    new Gauge({
      name: 'pme_progressive_auc',
      help: 'AUC of scores made before learning from each event (window: recent events)',
      labelNames: ['scope'],
      registers,
      collect() {
        const t = sources.trainer();
        this.set({ scope: 'cumulative' }, t.auc);
        this.set({ scope: 'window' }, t.windowAuc);
      },
    });
    new Gauge({
      name: 'pme_progressive_logloss',
      help: 'Logloss of scores made before learning from each event',
      labelNames: ['scope'],
      registers,
      collect() {
        const t = sources.trainer();
        this.set({ scope: 'cumulative' }, t.logloss);
        this.set({ scope: 'window' }, t.windowLogloss);
      },
    });
    new Gauge({
      name: 'pme_tier_bytes',
      help: 'Bytes held per embedding tier (parameters, optimizer state, index)',
      labelNames: ['size', 'kind'],
      registers,
      collect() {
        for (const tier of sources.tiers().tiers) {
          const size = String(tier.size);
          this.set({ size, kind: 'params' }, tier.paramBytes);
          this.set({ size, kind: 'optimizer' }, tier.optimizerBytes);
          this.set({ size, kind: 'index' }, tier.indexBytes);
        }
      },
    });
    new Gauge({
      name: 'pme_tier_tokens',
      help: 'Tokens per embedding tier',
      labelNames: ['size'],
      registers,
      collect() {
        for (const tier of sources.tiers().tiers) this.set({ size: String(tier.size) }, tier.tokens);
      },
    });
    // The whole store by part: the tiers above are one part, so sum(pme_tier_bytes) is not what the
    // budget counts; sum(pme_store_bytes) is, and equals pme_budget_used_bytes.
    new Gauge({
      name: 'pme_store_bytes',
      help: "Bytes of the embedding store by part: tier slabs (= sum of pme_tier_bytes), per-token columns (with the evicted tokens' linear weights), key index (Map and key strings)",
      labelNames: ['part'],
      registers,
      collect() {
        const { memoryParts } = sources.tiers();
        this.set({ part: 'tiers' }, memoryParts.tiers);
        this.set({ part: 'token-columns' }, memoryParts.tokenColumns);
        this.set({ part: 'key-index' }, memoryParts.keyIndex);
      },
    });
    new Gauge({
      name: 'pme_budget_used_bytes',
      help: "Bytes the embedding store's budget counts (the sum of pme_store_bytes), against pme_budget_bytes",
      registers,
      collect() {
        this.set(sources.tiers().totalBytes);
      },
    });
    // Beside the budget, not in it: sum(pme_unbudgeted_bytes) + pme_budget_used_bytes is all the
    // service accounts for (not the process: the model's dense parameters, V8, buffers).
    new Gauge({
      name: 'pme_unbudgeted_bytes',
      help: "Bytes outside the store's budget, by part: PME's hot-token sketch (pme-sketch) and per-token state (pme-tokens), the trainer's key caches, catalog and item caches (typed arrays exact, Maps and strings estimated)",
      labelNames: ['part'],
      registers,
      collect() {
        const { unbudgeted } = sources.tiers();
        this.set({ part: 'pme-sketch' }, unbudgeted.pmeSketch);
        this.set({ part: 'pme-tokens' }, unbudgeted.pmeTokens);
        this.set({ part: 'key-caches' }, unbudgeted.keyCaches);
        this.set({ part: 'catalog' }, unbudgeted.catalog);
        this.set({ part: 'item-caches' }, unbudgeted.itemCaches);
      },
    });
    new Gauge({
      name: 'pme_budget_bytes',
      help: 'Hard memory budget of the embedding store',
      registers,
      collect() {
        this.set(sources.tiers().budgetBytes);
      },
    });
    new Counter({
      name: 'pme_prune_windows_total',
      help: 'Re-pruning windows run',
      registers,
      collect() {
        setCounter(this, sources.pruneWindows());
      },
    });
    new Counter({
      name: 'pme_memory_actions_total',
      help: 'What kept memory within the budget: tokens PME stepped down with their vectors (relieved), the store demoted by truncation or evicted (its last resort), new tokens and moves refused, tokens expired past the TTL; and new tokens that started from the linear weight their key left when evicted (recalled)',
      labelNames: ['action'],
      registers,
      collect() {
        const m = sources.memory?.();
        if (m === undefined) return;
        setCounter(this, m.relieved, { action: 'relieved' });
        setCounter(this, m.truncated, { action: 'truncated' });
        setCounter(this, m.evicted, { action: 'evicted' });
        setCounter(this, m.refusedTokens, { action: 'refused-token' });
        setCounter(this, m.refusedMoves, { action: 'refused-move' });
        setCounter(this, m.expired, { action: 'expired' });
        setCounter(this, m.recalled, { action: 'recalled' });
      },
    });
    new Gauge({
      name: 'pme_warm_evictions_ratio',
      help: "Share of the budget's recent evictions (about the last 128) that took tokens seen about twice or more lately; above 0.5 PME's search stops evicting for itself and keeps to the headroom",
      registers,
      collect() {
        const m = sources.memory?.();
        if (m !== undefined) this.set(m.warmEvictions);
      },
    });
    const snapshotAge = sources.snapshotAge;
    if (snapshotAge !== undefined)
      new Gauge({
        name: 'pme_snapshot_age_seconds',
        help: 'Seconds since the newest snapshot was durably written (fsynced, renamed); before the first in a fresh state directory, since the service started',
        registers,
        collect() {
          this.set(snapshotAge());
        },
      });
    new Gauge({
      name: 'pme_backend_info',
      help: 'Dense compute backend in use (value is always 1)',
      labelNames: ['backend'],
      registers,
      collect() {
        this.reset();
        this.set({ backend: sources.backend() }, 1);
      },
    });
    this.#requests = options.requests ? new RequestMetrics(null, this.registry) : null;
  }

  /**
   * What the registry would report now, read from the same getters as its collect callbacks.
   * Parts may be their owners' live counters (the consumer's): read it at once, or post it.
   */
  stats(): ServiceStats {
    const sources = this.#sources;
    const { tiers, totalBytes, memoryParts, budgetBytes, unbudgeted, unbudgetedBytes } = sources.tiers();
    return {
      trainer: sources.trainer(),
      consumer: sources.consumer(),
      tiers,
      totalBytes,
      memoryParts,
      budgetBytes,
      unbudgeted,
      unbudgetedBytes,
      pruneWindows: sources.pruneWindows(),
      backend: sources.backend(),
      ...(sources.memory === undefined ? {} : { memory: sources.memory() }),
    };
  }

  observeRequest(route: string, method: string, status: number, seconds: number): void {
    this.#requests?.observeRequest(route, method, status, seconds);
  }
}

/**
 * What a serving thread measures itself: request latency per route and the bytes of its copy of
 * the model. Its /metrics text is the training thread's ServiceMetrics (built without request
 * metrics) followed by these.
 */
export class RequestMetrics {
  readonly registry: Registry;
  readonly #latency: Histogram<'route' | 'method' | 'status'>;

  constructor(copyBytes: (() => number) | null, registry = new Registry()) {
    this.registry = registry;
    const registers = [registry];
    this.#latency = new Histogram({
      name: 'pme_http_request_duration_seconds',
      help: 'HTTP request latency per route',
      labelNames: ['route', 'method', 'status'],
      buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 1],
      registers,
    });
    if (copyBytes === null) return;
    new Gauge({
      name: 'pme_serving_copy_bytes',
      help: "Bytes of the serving thread's read-only copy of the model (parameters and index)",
      registers,
      collect() {
        this.set(copyBytes());
      },
    });
    // What a request may wait for before its handler runs: the serving loop's delay (1 ms timer).
    const delay = monitorEventLoopDelay({ resolution: 1 });
    delay.enable();
    new Gauge({
      name: 'pme_serving_loop_delay_seconds',
      help: "Delay of the serving thread's event loop since the previous scrape (quantile 0.5, 0.99, 1 = max)",
      labelNames: ['quantile'],
      registers,
      collect() {
        this.set({ quantile: '0.5' }, delay.percentile(50) / 1e9);
        this.set({ quantile: '0.99' }, delay.percentile(99) / 1e9);
        this.set({ quantile: '1' }, delay.max / 1e9);
        delay.reset();
      },
    });
  }

  observeRequest(route: string, method: string, status: number, seconds: number): void {
    this.#latency.observe({ route, method, status: String(status) }, seconds);
  }
}

import type { InputStats, ServiceApi } from '../../src/api/contract.js';
import type { PmeController, Trainer } from '../../src/engine/index.js';
import { serviceApi, tierMetrics, trainerReadiness } from '../../src/service/adapter.js';
import { ServiceMetrics } from '../../src/service/metrics.js';
import type { RecentItems } from '../../src/service/recent.js';
import type { EmbeddingStore } from '../../src/store/index.js';

export interface InProcessParts {
  store: EmbeddingStore;
  trainer: Trainer;
  pme: PmeController;
  recent: RecentItems;
  /** What the metrics report of the consumer: there is none, no Kafka here. */
  consumer: () => InputStats;
  /** Whether the consumer counts as live, for readiness. Default: always. */
  live?: () => boolean;
  /** false when a serving thread observes requests itself (as ServiceMetrics). Default true. */
  requests?: boolean;
}

/**
 * The service's API over a store, trainer and PME controller a test built, wired to them and to
 * its metrics as the service wires them, so the HTTP tests exercise the service's own adapter.
 */
export function inProcessApi(parts: InProcessParts): ServiceApi {
  const { store, trainer, pme, recent } = parts;
  const metrics = new ServiceMetrics(
    {
      trainer: () => trainer.stats(),
      consumer: parts.consumer,
      tiers: () => tierMetrics(store, trainer, pme),
      pruneWindows: () => pme.reports().length,
      backend: () => 'cpu',
    },
    { requests: parts.requests ?? true },
  );
  return serviceApi({
    store,
    trainer,
    pme,
    recent,
    prune: { start: (reason) => pme.startWindow(reason), windows: () => pme.reports() },
    metrics: () => metrics,
    readiness: trainerReadiness(parts.live ?? (() => true)),
  });
}

/**
 * `/v1/stats` against `/metrics` over real sockets (buildApi over serviceApi and ServiceMetrics):
 * the JSON the dashboard charts and the Prometheus text report the same numbers, for values fed
 * by hand and for a real trainer and store as they learn.
 */
import t, { type Test } from 'tap';
import type {
  InputStats,
  PruneWindowReport,
  TierReport,
  TiersReport,
  TrainingStats,
} from '../../src/api/contract.js';
import type { DashboardStats } from '../../src/api/dashboard/stats.js';
import { buildApi } from '../../src/api/server.js';
import { SyntheticWorkload } from '../../src/data/index.js';
import { PmeController, Trainer } from '../../src/engine/index.js';
import { serviceApi, tierMetrics, trainerReadiness } from '../../src/service/adapter.js';
import { type MetricSources, ServiceMetrics } from '../../src/service/metrics.js';
import { RecentItems } from '../../src/service/recent.js';
import { EmbeddingStore } from '../../src/store/index.js';
import { summaryFromMetrics } from './metrics-text.js';

async function serve(
  t: Test,
  parts: {
    store: EmbeddingStore;
    trainer: Trainer;
    pme?: PmeController;
    sources: MetricSources;
    windows: PruneWindowReport[];
  },
): Promise<string> {
  const metrics = new ServiceMetrics(parts.sources);
  const api = serviceApi({
    store: parts.store,
    trainer: parts.trainer,
    pme: parts.pme ?? null,
    recent: new RecentItems(),
    prune: { start: () => 0, windows: () => parts.windows },
    metrics: () => metrics,
    readiness: trainerReadiness(() => true),
  });
  const app = await buildApi(api, { adminToken: '' });
  t.teardown(() => app.close());
  return app.listen({ host: '127.0.0.1', port: 0 });
}

/** `/v1/stats` now, once checked: all in it but `at` and `lastWindowId` is what `/metrics` says. */
async function agreed(t: Test, url: string, what: string): Promise<DashboardStats> {
  const stats = (await (await fetch(`${url}/v1/stats`)).json()) as DashboardStats;
  const { at: _at, lastWindowId: _id, ...rest } = stats;
  t.same(rest, await summaryFromMetrics(url), `${what}: /v1/stats says what /metrics says`);
  return stats;
}

const tier = (size: number, tokens: number, paramBytes: number): TierReport => ({
  size,
  tokens,
  paramBytes,
  optimizerBytes: 2 * paramBytes,
  indexBytes: 16 * tokens,
  totalBytes: 3 * paramBytes + 16 * tokens,
});

/** A store's reading fed by hand: the tiers plus 4,000 bytes of token columns and 1,000 of key
 *  index; beside the budget, 1,000 + 2,000 + … + 5,000 bytes of sketch and caches. */
const memory = (tiers: TierReport[]) => {
  const tierBytes = tiers.reduce((sum, t) => sum + t.totalBytes, 0);
  return {
    tiers,
    totalBytes: tierBytes + 5000,
    memoryParts: { tiers: tierBytes, tokenColumns: 4000, keyIndex: 1000 },
    budgetBytes: 1 << 24,
    unbudgeted: { pmeSketch: 1000, pmeTokens: 2000, keyCaches: 3000, catalog: 4000, itemCaches: 5000 },
    unbudgetedBytes: 15_000,
  };
};

t.test('values fed by hand reach both, and both follow them', async (t) => {
  const store = new EmbeddingStore({ seed: 5 });
  const training: TrainingStats = {
    events: 5000,
    learned: 7000,
    auc: 0.6875,
    logloss: 0.4375,
    windowAuc: 0.8125,
    windowLogloss: Number.NaN,
  };
  const lag: Record<string, number> = { '2': 9, '0': 1 };
  const input: InputStats = { consumed: 5100, dlq: { undecodable: 1, 'no "user"': 6 }, lag };
  let tiers = [tier(16, 40, 2560), tier(4, 300, 4800), tier(0, 900, 0)];
  const windows = [{ id: 11 } as PruneWindowReport];
  const url = await serve(t, {
    store,
    trainer: new Trainer(store, { seed: 5 }),
    sources: {
      trainer: () => training,
      consumer: () => input,
      tiers: () => memory(tiers),
      pruneWindows: () => windows.length,
      backend: () => 'wasm',
    },
    windows,
  });

  t.match(await agreed(t, url, 'fed'), {
    eventsTrained: 5000,
    eventsConsumed: 5100,
    dlq: 7,
    auc: 0.6875,
    windowAuc: 0.8125,
    windowLogloss: null,
    lag: { '0': 1, '2': 9 },
    lagTotal: 10,
    tiers: [
      { size: 0, tokens: 900, bytes: 900 * 16 },
      { size: 4, tokens: 300, bytes: 3 * 4800 + 300 * 16 },
      { size: 16, tokens: 40, bytes: 3 * 2560 + 40 * 16 },
    ],
    totalBytes: 900 * 16 + 3 * 4800 + 300 * 16 + 3 * 2560 + 40 * 16 + 5000,
    memoryParts: {
      tiers: 900 * 16 + 3 * 4800 + 300 * 16 + 3 * 2560 + 40 * 16,
      tokenColumns: 4000,
      keyIndex: 1000,
    },
    budgetBytes: 1 << 24,
    unbudgeted: { pmeSketch: 1000, pmeTokens: 2000, keyCaches: 3000, catalog: 4000, itemCaches: 5000 },
    unbudgetedBytes: 15_000,
    pruneWindows: 1,
    lastWindowId: 11,
    backend: 'wasm',
  });

  training.events = 6000;
  training.auc = 0.75;
  training.windowLogloss = 0.5;
  lag['1'] = 4;
  tiers = [tier(16, 10, 640), tier(4, 500, 8000), tier(0, 2000, 0)];
  windows.push({ id: 12 } as PruneWindowReport);
  t.match(await agreed(t, url, 'changed'), {
    eventsTrained: 6000,
    auc: 0.75,
    windowLogloss: 0.5,
    lagTotal: 14,
    tiers: [
      { size: 0, tokens: 2000 },
      { size: 4, tokens: 500 },
      { size: 16, bytes: 3 * 640 + 10 * 16 },
    ],
    totalBytes: 2000 * 16 + 3 * 8000 + 500 * 16 + 3 * 640 + 10 * 16 + 5000,
    pruneWindows: 2,
    lastWindowId: 12,
  });
});

t.test('a real trainer and store, before and after learning', async (t) => {
  const store = new EmbeddingStore({ seed: 6 });
  const trainer = new Trainer(store, { seed: 6 });
  const workload = new SyntheticWorkload({ seed: 6, users: 100, items: 300 });
  for (const item of workload.catalog()) trainer.upsertItem(item);
  const url = await serve(t, {
    store,
    trainer,
    sources: {
      trainer: () => trainer.stats(),
      consumer: () => ({ consumed: trainer.stats().events, dlq: {}, lag: {} }),
      tiers: () => tierMetrics(store, trainer, null),
      pruneWindows: () => 0,
      backend: () => 'cpu',
    },
    windows: [],
  });

  const before = await agreed(t, url, 'nothing learned');
  t.match(before, { eventsTrained: 0, auc: null, lagTotal: 0, lastWindowId: 0 });
  t.equal(before.budgetBytes, null, 'no budget: +Inf in the text, null in JSON');
  trainer.learn(workload.take(4000));
  const after = await agreed(t, url, '4,000 events learned');
  t.equal(after.eventsTrained, trainer.stats().events);
  t.equal(after.auc, trainer.stats().auc, 'the trainer’s progressive AUC');
  t.ok(after.totalBytes > before.totalBytes, 'tokens learned take bytes');
});

t.test('memory: stats, tiers and metrics report what the budget counts, with its parts', async (t) => {
  const store = new EmbeddingStore({ seed: 7, budgetBytes: 2_000_000 });
  // Enough tokens to fill the budget: the per-token columns and the key index are then a large
  // share of it, so the tier slabs alone fall well short of the total.
  for (let i = 0; i < 30_000; i++) store.getOrCreate(`item=i${i}`);
  const trainer = new Trainer(store, { seed: 7 });
  const url = await serve(t, {
    store,
    trainer,
    sources: {
      trainer: () => ({
        events: 0,
        auc: Number.NaN,
        logloss: Number.NaN,
        windowAuc: Number.NaN,
        windowLogloss: Number.NaN,
      }),
      consumer: () => ({ consumed: 0, dlq: {}, lag: {} }),
      tiers: () => tierMetrics(store, trainer, null),
      pruneWindows: () => 0,
      backend: () => 'cpu',
    },
    windows: [],
  });
  const accounting = store.accounting();
  const stats = (await (await fetch(`${url}/v1/stats`)).json()) as DashboardStats;
  const tiers = (await (await fetch(`${url}/v1/tiers`)).json()) as TiersReport;
  t.comment(`/v1/stats: ${JSON.stringify({ totalBytes: stats.totalBytes, memoryParts: stats.memoryParts })}`);
  t.ok(accounting.totalBytes > 0.9 * 2_000_000, 'the store is near its budget');
  t.equal(stats.totalBytes, accounting.totalBytes, '/v1/stats totalBytes is what the budget counts');
  t.equal(tiers.totalBytes, accounting.totalBytes, '/v1/tiers says the same');
  t.same(tiers.memoryParts, stats.memoryParts, 'with the same parts');
  t.equal(stats.budgetBytes, 2_000_000);
  let tierBytes = 0;
  for (const tier of accounting.tiers) tierBytes += tier.totalBytes;
  t.same(
    stats.memoryParts,
    {
      tiers: tierBytes,
      tokenColumns: accounting.tokenColumnsBytes + accounting.evictedBytes,
      keyIndex: accounting.indexBytes,
    },
    'the parts, as the store accounts them',
  );
  const parts = stats.memoryParts;
  t.equal(parts.tiers + parts.tokenColumns + parts.keyIndex, stats.totalBytes, 'the parts sum to the total');
  t.equal(
    stats.tiers.reduce((sum, tier) => sum + tier.bytes, 0),
    parts.tiers,
    'the per-tier bytes sum to the tiers part',
  );
  await agreed(t, url, 'near the budget');
});

t.test('beside the budget: PME’s sketch and per-token state, the trainer’s caches and catalog', async (t) => {
  const store = new EmbeddingStore({ seed: 8, budgetBytes: 4_000_000 });
  const pme = new PmeController(store, { windowEvents: 0, hotThreshold: 5 });
  const trainer = new Trainer(store, { seed: 8, observer: pme });
  pme.attach(trainer);
  const workload = new SyntheticWorkload({ seed: 8, users: 400, items: 300 });
  for (const item of workload.catalog()) trainer.upsertItem(item);
  const url = await serve(t, {
    store,
    trainer,
    pme,
    sources: {
      trainer: () => trainer.stats(),
      consumer: () => ({ consumed: trainer.stats().events, dlq: {}, lag: {} }),
      tiers: () => tierMetrics(store, trainer, pme),
      pruneWindows: () => 0,
      backend: () => 'cpu',
    },
    windows: [],
  });
  const tiers = async (): Promise<TiersReport> =>
    (await (await fetch(`${url}/v1/tiers`)).json()) as TiersReport;
  const sum = (parts: TiersReport['unbudgeted']): number =>
    parts.pmeSketch + parts.pmeTokens + parts.keyCaches + parts.catalog + parts.itemCaches;

  const before = await tiers();
  t.comment(`before learning: ${JSON.stringify(before.unbudgeted)}`);
  // The sketch's counters are width × depth Float64 and its salts depth Int32: 2 MiB + 16 B at the
  // defaults, whatever the number of tokens.
  const { width, depth } = pme.sketch.options;
  const { counts } = pme.sketch.state();
  t.equal(width * depth * 8, counts.byteLength, 'the sketch holds width × depth counters');
  t.equal(
    before.unbudgeted?.pmeSketch,
    counts.byteLength + depth * 4,
    'the sketch: its typed arrays, exactly',
  );
  t.equal(before.unbudgeted?.pmeSketch, 2 * 1024 * 1024 + 16, '2 MiB + 16 B at the defaults');
  t.ok(before.unbudgeted?.catalog > 0, 'the catalog of 300 items takes bytes');
  t.equal(before.unbudgetedBytes, sum(before.unbudgeted), 'unbudgetedBytes is the sum of the parts');
  t.equal(before.totalBytes, store.accounting().totalBytes, 'the budget still counts the store alone');

  trainer.learn(workload.take(3000));
  // Items the catalog never listed, first seen in the stream, grow it.
  trainer.learn(
    Array.from({ length: 200 }, (_, i) => ({
      user: `new-user-${i}`,
      item: `stream-item-${i}`,
      label: 1,
      timestamp: 0,
      fields: {},
    })),
  );
  const after = await tiers();
  t.comment(`after 3,200 events: ${JSON.stringify(after.unbudgeted)} = ${after.unbudgetedBytes} B`);
  t.equal(after.unbudgeted?.pmeSketch, before.unbudgeted?.pmeSketch, 'the sketch stays the size it is');
  t.ok(after.unbudgeted?.pmeTokens > before.unbudgeted?.pmeTokens, 'PME keeps a sketch key per token id');
  t.ok(after.unbudgeted?.keyCaches > before.unbudgeted?.keyCaches, 'the key caches hold the users seen');
  t.ok(after.unbudgeted?.catalog > before.unbudgeted?.catalog, 'the catalog holds the new items');
  t.ok(after.unbudgeted?.itemCaches >= before.unbudgeted?.itemCaches, 'the item caches do not shrink');
  t.equal(after.unbudgetedBytes, sum(after.unbudgeted), 'still the sum of the parts');
  t.same(
    after.unbudgeted,
    { pmeSketch: pme.memory().sketch, pmeTokens: pme.memory().tokens, ...trainer.memory() },
    'what PME and the trainer say of themselves',
  );

  const stats = await agreed(t, url, 'PME on, learned');
  t.same(stats.unbudgeted, after.unbudgeted, '/v1/stats lists the same parts as /v1/tiers');
  t.equal(stats.unbudgetedBytes, after.unbudgetedBytes);
  const text = await (await fetch(`${url}/metrics`)).text();
  t.match(text, /pme_unbudgeted_bytes\{part="pme-sketch"\} 2097168\n/, 'and /metrics has the sketch');
});

/**
 * The dashboard's pure parts: the page's formats, history and stacking, and the summary mapped
 * from the real ServiceMetrics' typed reading (its agreement with the /metrics text over HTTP is
 * test/api/stats.test.ts).
 */
import t from 'tap';
import type { PruneWindowReport, TierReport } from '../../src/api/contract.js';
import {
  COUNT_STEPS,
  eventRate,
  formatBytes,
  formatChange,
  formatCount,
  formatMetric,
  History,
  memoryFigure,
  stack,
  windowRows,
} from '../../src/api/dashboard/page/format.js';
import { type DashboardStats, dashboardStats } from '../../src/api/dashboard/stats.js';
import { ServiceMetrics } from '../../src/service/metrics.js';

const tier = (size: number, tokens: number, bytes: number): TierReport => ({
  size,
  tokens,
  paramBytes: bytes / 2,
  optimizerBytes: bytes / 4,
  indexBytes: bytes / 4,
  totalBytes: bytes,
});

function sample(at: number, events: number, tiers: Array<[number, number, number]>): DashboardStats {
  return {
    at,
    eventsTrained: events,
    eventsConsumed: events,
    dlq: 0,
    auc: 0.7,
    windowAuc: 0.72,
    logloss: 0.5,
    windowLogloss: 0.48,
    lag: { '0': 3 },
    subscriptions: {},
    lagTotal: 3,
    tiers: tiers.map(([size, tokens, bytes]) => ({ size, tokens, bytes })),
    // The tiers plus 300 bytes of token columns and 100 of key index.
    totalBytes: tiers.reduce((sum, [, , bytes]) => sum + bytes, 0) + 400,
    memoryParts: {
      tiers: tiers.reduce((sum, [, , bytes]) => sum + bytes, 0),
      tokenColumns: 300,
      keyIndex: 100,
    },
    budgetBytes: 1 << 20,
    unbudgeted: { pmeSketch: 1000, pmeTokens: 100, keyCaches: 200, catalog: 300, itemCaches: 400 },
    unbudgetedBytes: 2000,
    pruneWindows: 0,
    lastWindowId: 0,
    backend: 'cpu',
  };
}

t.test('formats', async (t) => {
  t.equal(formatBytes(0), '0 B');
  t.equal(formatBytes(1023), '1023 B');
  t.equal(formatBytes(1536), '1.5 KiB');
  t.equal(formatBytes(200 * 1024), '200 KiB');
  t.equal(formatBytes(1023.9 * 1024), '1024 KiB', 'never exponent notation');
  t.equal(formatBytes(3 * 1024 ** 3), '3.0 GiB');
  t.equal(formatCount(999), '999');
  t.equal(formatCount(1234), '1.23k');
  t.equal(formatCount(2_500_000), '2.50M');
  t.equal(formatCount(0.5), '0.50');
  t.equal(formatMetric(null), '–');
  t.equal(formatMetric(Number.NaN), '–');
  t.equal(formatMetric(0.123456), '0.1235');
  t.equal(formatChange(100, 75), '-25.0%');
  t.equal(formatChange(100, 150), '+50.0%');
  t.equal(formatChange(0, 0), '0%');
  t.ok(
    COUNT_STEPS.every((step) => Number.isInteger(step)),
    'count axes never step by a fraction',
  );
});

t.test('the memory figure: what the budget counts against the budget, and its parts', async (t) => {
  // A store of 30,000 tokens at a 2,000,000-byte budget (test/api/stats.test.ts): its tier slabs
  // are 747,592 bytes, and the figure used to read "730 KiB / 1.9 MiB (37.4%)" from them alone.
  // Beside the budget: PME's 2 MiB sketch, the trainer's caches and catalog (not in the budget).
  const stats = {
    totalBytes: 1_990_599,
    memoryParts: { tiers: 747_592, tokenColumns: 500_127, keyIndex: 742_880 },
    budgetBytes: 2_000_000,
    unbudgeted: {
      pmeSketch: 2_097_168,
      pmeTokens: 4096,
      keyCaches: 300_000,
      catalog: 150_000,
      itemCaches: 40_000,
    },
    unbudgetedBytes: 2_591_264,
  };
  t.same(memoryFigure(stats), {
    text: '1.9 MiB / 1.9 MiB (99.5%)',
    parts: 'tiers 730 KiB · token columns 488 KiB · key index 725 KiB',
    outside: '+2.5 MiB',
    outsideParts:
      'PME sketch 2.0 MiB · PME per token 4.0 KiB · key caches 293 KiB · catalog 146 KiB · item caches 39.1 KiB',
  });
  t.equal(
    memoryFigure({ ...stats, budgetBytes: null as unknown as number }).text,
    '1.9 MiB (no budget)',
    'an unbudgeted store (Infinity, null in JSON) shows no share',
  );
});

t.test('stack sums rows bottom-up and treats gaps as zero', async (t) => {
  t.same(
    stack([
      [1, 2, null],
      [10, null, 30],
      [100, 200, 300],
    ]),
    [
      [1, 2, 0],
      [11, 2, 30],
      [111, 202, 330],
    ],
  );
  t.same(stack([]), []);
});

t.test('event rate is the trained-events delta over the time delta', async (t) => {
  const a = sample(10_000, 1_000, []);
  const b = sample(12_000, 5_000, []);
  t.equal(eventRate(null, a), null);
  t.equal(eventRate(a, b), 2_000);
  t.equal(eventRate(b, b), null, 'no time passed');
  t.equal(eventRate(b, sample(13_000, 0, [])), 0, 'a restart (counter back to 0) is not a negative rate');
});

t.test('history keeps the newest samples and restarts the tier columns on a new ladder', async (t) => {
  const history = new History(3);
  t.ok(history.push(sample(1_000, 0, [[0, 5, 10]])), 'the first sample sets the ladder');
  t.notOk(history.push(sample(2_000, 100, [[0, 6, 12]])));
  t.notOk(history.push(sample(3_000, 300, [[0, 7, 14]])));
  t.notOk(history.push(sample(4_000, 600, [[0, 8, 16]])));
  t.same(history.times, [2, 3, 4], 'seconds, oldest dropped past capacity');
  t.same(history.bytes, [[12, 14, 16]]);
  t.same(history.tokens, [[6, 7, 8]]);
  t.same(history.rate, [100, 200, 300]);
  t.equal(history.last?.eventsTrained, 600);
  t.same(
    stack(history.memoryRows()).at(-1),
    [412, 414, 416],
    "stacked, the memory chart's rows (tiers, token columns, key index) reach each sample's totalBytes",
  );
  t.ok(
    history.push(
      sample(5_000, 1_000, [
        [0, 1, 2],
        [8, 3, 4],
      ]),
    ),
    'new sizes',
  );
  t.same(history.sizes, [0, 8]);
  t.same(history.bytes, [
    [null, null, 2],
    [null, null, 4],
  ]);
  t.equal(history.times.length, 3);
  t.same(history.tokenColumns, [300, 300, 300], 'the other parts keep their history across a new ladder');
  t.same(
    [history.auc.length, history.lag.length, history.rate.length, history.windowLogloss.length],
    [3, 3, 3, 3],
    'every column stays aligned with the times',
  );
});

t.test('the prune table: newest first, one column per size, unchanged tiers as one figure', async (t) => {
  const windows: PruneWindowReport[] = [1, 2].map((id) => ({
    id,
    reason: id === 1 ? 'events' : 'dashboard',
    startedAt: id * 1000,
    durationMs: 12.34,
    searched: 1500,
    moved: 10,
    demoted: 2,
    raised: 0,
    baseSize: 8,
    evicted: 0,
    probe:
      id === 1
        ? { events: 2048, aucBefore: 0.8, aucAfter: 0.79, loglossBefore: 0.5, loglossAfter: 0.51 }
        : null,
    aucBefore: 0.7,
    aucAfter: id === 1 ? 0.71 : null,
    before: [tier(0, 1, 0), tier(8, 10, 4096), tier(64, 5, 8192)],
    after: [tier(0, 1, 0), tier(8, 12, 4096), tier(64, 2, 2048)],
  }));
  const { sizes, rows } = windowRows(windows, (ms) => `t${ms}`);
  t.same(sizes, [0, 8, 64]);
  t.same(
    rows.map((r) => r.id),
    [2, 1],
  );
  t.equal(rows[0].started, 't2000');
  t.equal(rows[0].auc, '0.7000 → –', 'AUC after not known yet');
  t.equal(rows[1].auc, '0.7000 → 0.7100');
  t.equal(rows[1].step, '0.8000 → 0.7900', "the window's own step on the probe");
  t.equal(rows[0].step, '–', 'no probe');
  t.same(rows[0].tiers, [
    { text: '0 B', changed: false },
    { text: '4.0 KiB', changed: false },
    { text: '8.0 KiB → 2.0 KiB', changed: true },
  ]);
  t.equal(rows[0].total, '12.0 KiB → 6.0 KiB');
  t.equal(rows[0].change, '-50.0%');
  t.equal(rows[0].direction, -1, 'memory went down');
  t.equal(rows[0].searched, '1.50k');
  t.same(windowRows([], String), { sizes: [], rows: [] });
});

t.test('the summary maps what the service metrics report', async (t) => {
  const metrics = new ServiceMetrics({
    trainer: () => ({ events: 1234, auc: 0.71, logloss: 0.52, windowAuc: 0.75, windowLogloss: Number.NaN }),
    consumer: () => ({ consumed: 1300, dlq: { undecodable: 2, 'bad "label"': 3 }, lag: { '0': 5, '1': 7 } }),
    tiers: () => ({
      tiers: [tier(64, 3, 4000), tier(0, 10, 0), tier(8, 20, 1000)],
      totalBytes: 9000,
      memoryParts: { tiers: 5000, tokenColumns: 2500, keyIndex: 1500 },
      budgetBytes: 1 << 20,
      unbudgeted: { pmeSketch: 2048, pmeTokens: 10, keyCaches: 20, catalog: 30, itemCaches: 40 },
      unbudgetedBytes: 2148,
    }),
    pruneWindows: () => 4,
    backend: () => 'wasm',
  });
  const windows = [{ id: 7 }, { id: 9 }] as PruneWindowReport[];
  const stats = dashboardStats(metrics.stats(), windows, 42);
  t.same(stats, {
    at: 42,
    eventsTrained: 1234,
    eventsConsumed: 1300,
    dlq: 5,
    auc: 0.71,
    windowAuc: 0.75,
    logloss: 0.52,
    windowLogloss: null,
    lag: { '0': 5, '1': 7 },
    lagTotal: 12,
    subscriptions: {},
    tiers: [
      { size: 0, tokens: 10, bytes: 0 },
      { size: 8, tokens: 20, bytes: 1000 },
      { size: 64, tokens: 3, bytes: 4000 },
    ],
    totalBytes: 9000,
    memoryParts: { tiers: 5000, tokenColumns: 2500, keyIndex: 1500 },
    budgetBytes: 1 << 20,
    unbudgeted: { pmeSketch: 2048, pmeTokens: 10, keyCaches: 20, catalog: 30, itemCaches: 40 },
    unbudgetedBytes: 2148,
    pruneWindows: 4,
    lastWindowId: 9,
    backend: 'wasm',
  });
});

t.test('before anything is measured: no AUC or logloss, no lag, no tiers, no window', async (t) => {
  const nothing = Number.NaN;
  const metrics = new ServiceMetrics({
    trainer: () => ({
      events: 0,
      auc: nothing,
      logloss: nothing,
      windowAuc: Number.POSITIVE_INFINITY,
      windowLogloss: nothing,
    }),
    consumer: () => ({ consumed: 0, dlq: {}, lag: {} }),
    tiers: () => ({
      tiers: [],
      totalBytes: 0,
      memoryParts: { tiers: 0, tokenColumns: 0, keyIndex: 0 },
      budgetBytes: 0,
      unbudgeted: { pmeSketch: 0, pmeTokens: 0, keyCaches: 0, catalog: 0, itemCaches: 0 },
      unbudgetedBytes: 0,
    }),
    pruneWindows: () => 0,
    backend: () => '',
  });
  t.same(
    dashboardStats(metrics.stats(), [], 0),
    {
      at: 0,
      eventsTrained: 0,
      eventsConsumed: 0,
      dlq: 0,
      auc: null,
      windowAuc: null,
      logloss: null,
      windowLogloss: null,
      lag: {},
      lagTotal: 0,
      subscriptions: {},
      tiers: [],
      totalBytes: 0,
      memoryParts: { tiers: 0, tokenColumns: 0, keyIndex: 0 },
      budgetBytes: 0,
      unbudgeted: { pmeSketch: 0, pmeTokens: 0, keyCaches: 0, catalog: 0, itemCaches: 0 },
      unbudgetedBytes: 0,
      pruneWindows: 0,
      lastWindowId: 0,
      backend: '',
    },
    'non-finite readings are null, as JSON has no NaN or Infinity',
  );
});

/**
 * The dashboard plugin over fastify's inject, against a fake service: what it serves, the
 * summary route and its options. The page itself runs in test/dashboard/dashboard.test.ts.
 */
import Fastify from 'fastify';
import t from 'tap';
import type { PruneWindowReport, ServiceApi, ServiceStats } from '../../src/api/contract.js';
import { type DashboardOptions, dashboard } from '../../src/api/dashboard/index.js';
import { buildApi } from '../../src/api/server.js';
import { ManualClock } from '../../src/util/clock.js';

/** What the fake service reports: no logloss yet, one tier (bytes 100 + 50 + 0). */
const STATS: ServiceStats = {
  trainer: { events: 321, auc: 0.6, windowAuc: 0.65, logloss: Number.NaN, windowLogloss: Number.NaN },
  consumer: { consumed: 0, dlq: {}, lag: { '0': 4 } },
  tiers: [{ size: 8, tokens: 3, paramBytes: 100, optimizerBytes: 50, indexBytes: 0, totalBytes: 150 }],
  totalBytes: 250,
  memoryParts: { tiers: 150, tokenColumns: 64, keyIndex: 36 },
  budgetBytes: 0,
  unbudgeted: { pmeSketch: 2048, pmeTokens: 8, keyCaches: 16, catalog: 32, itemCaches: 64 },
  unbudgetedBytes: 2168,
  pruneWindows: 0,
  backend: '',
};

function fakeService(): ServiceApi {
  const unused = (): never => {
    throw new Error('not used by the dashboard');
  };
  return {
    score: unused,
    recommend: unused,
    startPrune: unused,
    pruneWindows: () => [{ id: 3 } as PruneWindowReport],
    tiers: unused,
    token: unused,
    readiness: unused,
    stats: () => STATS,
    // The summary comes from stats(), never from the text.
    metrics: unused,
    metricsContentType: 'text/plain',
    observeRequest: () => {},
  };
}

t.test('serves the page, its code, uPlot and the summary', async (t) => {
  const app = Fastify();
  await app.register(dashboard, { service: fakeService(), clock: new ManualClock(5_000), pollMs: 2_000 });
  t.teardown(() => app.close());

  const page = await app.inject('/');
  t.equal(page.statusCode, 200);
  t.match(page.headers['content-type'], /text\/html/);
  t.match(page.body, /<script type="importmap">\{"imports":\{"uplot":"\/dashboard\/uPlot\.esm\.js"\}\}/);
  t.match(page.body, /data-poll-ms="2000"/, 'the poll interval reaches the page');
  for (const id of ['memory', 'tokens', 'auc', 'logloss', 'rate', 'lag'])
    t.match(page.body, `id="chart-${id}"`, `chart ${id} is on the page`);
  t.equal(page.headers['cache-control'], 'no-cache', 'a redeploy is picked up');

  const app_js = await app.inject('/dashboard/app.js');
  t.equal(app_js.statusCode, 200);
  t.match(app_js.headers['content-type'], /javascript/);
  t.match(app_js.body, /from 'uplot'/, 'uPlot comes through the import map');
  t.match(app_js.body, /from '\.\/format\.js'/);
  t.notMatch(app_js.body, /^\s*(interface|type) \w+/m, 'plain JavaScript: the types are gone');
  t.notMatch(app_js.body, /contract\.js|stats\.js/, 'type-only imports are not fetched by the browser');
  t.equal((await app.inject('/dashboard/format.js')).statusCode, 200);

  const uplot = await app.inject('/dashboard/uPlot.esm.js');
  t.equal(uplot.statusCode, 200);
  t.match(uplot.body, /export \{ uPlot as default \}/);
  t.match((await app.inject('/dashboard/uPlot.min.css')).headers['content-type'], /text\/css/);

  for (const path of ['/dashboard/nope.js', '/dashboard/..%2Fstats.ts', '/dashboard/format.ts'])
    t.equal((await app.inject(path)).statusCode, 404, `${path} is not served`);

  const stats = await app.inject('/v1/stats');
  t.equal(stats.statusCode, 200);
  t.match(stats.json(), {
    at: 5_000,
    eventsTrained: 321,
    auc: 0.6,
    windowAuc: 0.65,
    logloss: null,
    lagTotal: 4,
    tiers: [{ size: 8, tokens: 3, bytes: 150 }],
    // The store's total, not the tiers' 150: the schema lets the parts through.
    totalBytes: 250,
    memoryParts: { tiers: 150, tokenColumns: 64, keyIndex: 36 },
    // Beside the budget, through the schema as well.
    unbudgeted: { pmeSketch: 2048, pmeTokens: 8, keyCaches: 16, catalog: 32, itemCaches: 64 },
    unbudgetedBytes: 2168,
    lastWindowId: 3,
  });
});

t.test('inside the API: catalog errors and the OpenAPI document', async (t) => {
  const app = await buildApi(fakeService(), { adminToken: '' });
  t.teardown(() => app.close());
  const missing = await app.inject('/dashboard/nope.js');
  t.equal(missing.statusCode, 404);
  t.equal(missing.json().code, 'PME_ERR_NOT_FOUND');
  t.match(missing.json().message, /nope\.js/);
  t.equal((await app.inject('/')).statusCode, 200);
  const doc = (await app.inject('/docs/json')).json();
  t.ok(doc.paths['/v1/stats'], '/v1/stats is documented');
  t.notOk(doc.paths['/'], 'the page is not an API route');
});

t.test('options are validated', async (t) => {
  for (const [options, why] of [
    [{ pollMs: 10 }, /pollMs/],
    [{ pollMs: 1.5 }, /pollMs/],
    [{ historyPoints: 2 }, /historyPoints/],
    [{ service: undefined }, /service/],
  ] as const) {
    const app = Fastify();
    await t.rejects(
      async () => {
        await app.register(dashboard, { service: fakeService(), ...options } as DashboardOptions);
        await app.ready();
      },
      { code: 'PME_ERR_CONFIG_INVALID', message: why },
      JSON.stringify(options),
    );
  }
});

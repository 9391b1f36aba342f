import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { offlineCommand } from '../../src/cli/commands/offline.js';
import { exactAuc } from '../../src/engine/metrics.js';
import { mdeSizes, runOffline } from '../../src/engine/offline.js';
import { planted } from './planted.js';

t.test('runOffline: four methods, budgets respected, deterministic for a seed', async (t) => {
  const { events, catalog } = planted(3000, 5, 120, 80, 4);
  const options = { dim: 8, budget: 0.3, epochs: 3, seed: 7 };
  const a = await runOffline(events, catalog, options);
  t.same(
    a.results.map((r) => r.method),
    ['full', 'uniform', 'mde', 'pme'],
  );
  const full = a.results[0];
  t.equal(full.embeddingParams, a.fullParams);
  t.equal(a.budgetParams, Math.floor(0.3 * a.fullParams));
  for (const r of a.results.slice(1)) {
    t.ok(r.embeddingParams <= a.budgetParams, `${r.method}: ${r.embeddingParams} <= ${a.budgetParams}`);
    t.ok(r.embeddingParams > 0, `${r.method} has some embedding`);
  }
  for (const r of a.results) t.ok(r.auc > 0.6, `${r.method} learns the planted groups: AUC ${r.auc}`);
  t.ok(a.pmeSearchSeconds > 0);
  t.same(a.events, { train: 2400, validation: 300, test: 300 });
  const b = await runOffline(events, catalog, options);
  const strip = (x: typeof a) => x.results.map(({ seconds: _s, ...rest }) => rest);
  t.same(strip(b), strip(a), 'same seed, same results');
  const c = await runOffline(events, catalog, { ...options, seed: 8 });
  t.not(c.results[0].auc, a.results[0].auc, 'another seed, another split');
});

t.test('mdeSizes: popular tokens get more, the total fits the budget', async (t) => {
  const counts = Float64Array.from([100, 50, 10, 1, 200, 3]);
  const fields = ['user', 'user', 'user', 'user', 'item', 'item'];
  const ladder = [0, 2, 4, 8, 16];
  const { sizes, alpha } = mdeSizes({ counts, fields }, ladder, 40);
  let total = 0;
  for (const s of sizes) total += s;
  t.ok(total <= 40, `total ${total}`);
  t.ok(alpha > 0);
  t.ok(sizes[0] >= sizes[1] && sizes[1] >= sizes[2] && sizes[2] >= sizes[3], `user sizes ${sizes}`);
  t.ok(sizes[4] >= sizes[5]);
  t.equal(sizes[0], 16, 'the most popular token of a field gets D');
});

t.test('exactAuc counts ties one half', async (t) => {
  t.equal(exactAuc(Float64Array.from([0.1, 0.4, 0.35, 0.8]), Float32Array.from([0, 0, 1, 1])), 0.75);
  t.equal(exactAuc(Float64Array.from([0.5, 0.5]), Float32Array.from([0, 1])), 0.5);
  t.ok(Number.isNaN(exactAuc(Float64Array.from([0.5]), Float32Array.from([1]))));
});

t.test('pme offline writes the table and the JSON', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'pme-offline-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const out = join(dir, 'out.json');
  const fixtures = new URL('../fixtures/', import.meta.url).pathname;
  const code = await offlineCommand([
    '--data',
    join(fixtures, 'ratings.csv'),
    '--items',
    join(fixtures, 'movies.csv'),
    '--format',
    'movielens',
    '--dim',
    '8',
    '--epochs',
    '2',
    '--json',
    out,
  ]);
  t.equal(code, 0);
  const json = JSON.parse(await readFile(out, 'utf8'));
  t.same(
    json.results.map((r: { method: string }) => r.method),
    ['full', 'uniform', 'mde', 'pme'],
  );
  for (const r of json.results)
    t.ok('auc' in r && 'logloss' in r && 'embeddingParams' in r && 'seconds' in r);
  t.ok(json.results[3].embeddingParams <= json.budgetParams);
  t.equal(typeof json.pmeSearchSeconds, 'number');
  t.equal(await offlineCommand(['--format', 'movielens']), 2, 'missing --data is a usage error');
});

t.test('mdeSizes: a budget below one D per field scales every size down', async (t) => {
  const counts = Float64Array.from([100, 50, 200, 3]);
  const fields = ['user', 'user', 'item', 'item'];
  const { sizes } = mdeSizes({ counts, fields }, [0, 2, 4, 8, 16], 10);
  let total = 0;
  for (const s of sizes) total += s;
  t.ok(total <= 10 && total > 0, `total ${total}`);
});

import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { offlineCommand } from '../../src/cli/commands/offline.js';
import { splitEvents } from '../../src/data/index.js';
import { exactAuc } from '../../src/engine/metrics.js';
import { mdeSizes, runOffline, uniformSizes } from '../../src/engine/offline.js';
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
  t.equal(a.results[1].embeddingParams, a.budgetParams, 'uniform gets its whole budget');
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

t.test(
  'uniformSizes: the whole budget, the remainder one more dimension for the most frequent',
  async (t) => {
    const counts = Float64Array.from([5, 100, 1, 50, 7]);
    // 20% of 5 tokens × 64 = 64 parameters: 12 each (60), and 4 tokens at 13.
    const { sizes, ladder } = uniformSizes(counts, 64, 64);
    t.same([...sizes], [13, 13, 12, 13, 13]);
    t.same(ladder, [0, 12, 13, 64]);
    t.same([...uniformSizes(counts, 8, 40).sizes], [8, 8, 8, 8, 8], 'a budget of full is full');
    t.same(uniformSizes(counts, 8, 40).ladder, [0, 8]);
    const even = uniformSizes(counts, 64, 60);
    t.same([...even.sizes], [12, 12, 12, 12, 12], 'no remainder, one size');
    t.same(even.ladder, [0, 12, 64]);
  },
);

t.test('minCount counts the training split only, and folds every split', async (t) => {
  // Field values that occur twice in the file: rare or not depends on whether both are in training.
  const events = Array.from({ length: 2000 }, (_, i) => ({
    user: `u${i % 40}`,
    item: `i${i % 30}`,
    label: (i % 40) % 3 === 0 ? 1 : 0,
    timestamp: i,
    fields: { tag: `t${i % 1000}` },
  }));
  const seed = 4;
  const [train, validation, test] = splitEvents(events, [0.8, 0.1, 0.1], seed);
  const inTraining = new Map<string, number>();
  for (const e of train) inTraining.set(e.fields.tag, (inTraining.get(e.fields.tag) ?? 0) + 1);
  const expected = [...train, ...validation, ...test].filter(
    (e) => (inTraining.get(e.fields.tag) ?? 0) < 2,
  ).length;
  // With the whole file counted, no value (each occurs twice) would be rare.
  t.ok(expected > 100, `${expected} values rare by the training split's counts`);
  const result = await runOffline(events, [], {
    dim: 4,
    budget: 0.5,
    epochs: 1,
    seed,
    minCount: 2,
    methods: ['full'],
  });
  t.equal(result.rareFolded, expected);
  t.equal(events[0].fields.tag, 't0', "the caller's events are not rewritten");
  await t.rejects(runOffline(events, [], { minCount: 0 }), /minCount must be an integer >= 1/);
});

import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { offlineCommand } from '../../src/cli/commands/offline.js';
import { readEvents, splitEvents } from '../../src/data/index.js';
import { exactAuc } from '../../src/engine/metrics.js';
import { liveStartSize, type OfflineResult, runOffline, uniformSizes } from '../../src/engine/offline.js';
import { ladderFor } from '../../src/engine/pme/options.js';
import { mdeSizes } from '../../src/engine/pme/popularity.js';
import { planted } from './planted.js';

t.test('runOffline: five methods, budgets respected, deterministic for a seed', async (t) => {
  const { events, catalog } = planted(3000, 5, 120, 80, 4);
  const options = { dim: 8, budget: 0.3, epochs: 3, seed: 7 };
  const a = await runOffline(events, catalog, options);
  t.same(
    a.results.map((r) => r.method),
    ['full', 'uniform', 'mde', 'pme', 'pme-paper'],
  );
  const full = a.results[0];
  t.equal(full.embeddingParams, a.fullParams);
  t.equal(a.budgetParams, Math.floor(0.3 * a.fullParams));
  t.equal(a.results[1].embeddingParams, a.budgetParams, 'uniform gets its whole budget');
  for (const r of a.results.slice(1)) {
    t.ok(r.embeddingParams <= a.budgetParams, `${r.method}: ${r.embeddingParams} <= ${a.budgetParams}`);
    t.ok(r.embeddingParams > 0, `${r.method} has some embedding`);
  }
  // pme too: at this store size (220 tokens, a 28 KB budget) each eviction step of the store once
  // made room for 1/16 of the budget, evicting ~16 live tokens at a time (1,778 evictions over the
  // epochs, AUC 0.526).
  for (const r of a.results) t.ok(r.auc > 0.6, `${r.method} learns the planted groups: AUC ${r.auc}`);
  const live = a.results.find((r) => r.method === 'pme')!.live!;
  t.ok(live.evicted < 500, `fewer evictions at a tight budget: ${live.evicted}`);
  t.ok(a.pmeSearchSeconds > 0);
  t.same(a.events, { train: 2400, validation: 300, test: 300 });
  const b = await runOffline(events, catalog, options);
  t.same(strip(b), strip(a), 'same seed, same results');
  const c = await runOffline(events, catalog, { ...options, seed: 8 });
  t.not(c.results[0].auc, a.results[0].auc, 'another seed, another split');
});

/** Results without what depends on the machine's speed. */
function strip(x: OfflineResult) {
  return x.results.map(({ seconds: _s, live, ...rest }) => ({
    ...rest,
    live: live && { ...live, windowSeconds: 0, searchPasses: 0 },
  }));
}

/** The row bytes of budgetParams parameters over the tokens: 8 per parameter (the float and its
 *  Adagrad accumulator), 4 per row (its slot → id entry). */
function rowBudget(a: OfflineResult): number {
  return a.budgetParams * 8 + a.tokens * 4;
}

/** The MovieLens fixture: 25 ratings, 7 movies with genres. */
async function fixture() {
  const dir = new URL('../fixtures/', import.meta.url).pathname;
  return await readEvents({
    path: join(dir, 'ratings.csv'),
    itemsPath: join(dir, 'movies.csv'),
    format: 'movielens',
    sortByTime: false,
  });
}

// A window every 4 events of mini-batches of 2, and every token hot from its second sighting: on
// 17 training events the controller searches, prunes and moves tokens.
const LIVE_FIXTURE = {
  dim: 8,
  budget: 0.5,
  epochs: 3,
  patience: 3,
  batch: 2,
  windowEvents: 4,
  // A small fixture: every field is searched, however few its tokens.
  pme: { hotThreshold: 1.5, chunk: 1, searchFieldTokens: 0 },
};

t.test('pme is the live controller: its windows move tokens within the budget', async (t) => {
  const { events, catalog } = await fixture();
  const a = await runOffline(events, catalog, { ...LIVE_FIXTURE, methods: ['pme', 'pme-paper'] });
  t.same(
    a.results.map((r) => r.method),
    ['pme', 'pme-paper'],
  );
  const [pme, paper] = a.results;
  const live = pme.live!;
  t.ok(live.windows >= 3, `${live.windows} windows`);
  t.ok(live.promoted > 0, `${live.promoted} tokens searched at D`);
  t.ok(live.moved > 0, `${live.moved} tokens moved by the windows' threshold`);
  t.equal(live.truncated + live.evicted + live.refusedTokens, 0, "the store's last resort never ran");
  t.ok(live.peakParams <= a.budgetParams, `peak ${live.peakParams} <= budget ${a.budgetParams} params`);
  t.ok(pme.embeddingParams > 0 && pme.embeddingParams <= a.budgetParams);
  t.ok(pme.rowBytes <= rowBudget(a), `rows ${pme.rowBytes} <= ${rowBudget(a)} bytes`);
  t.ok(live.searchPasses >= 0);
  t.ok(paper.embeddingParams > 0 && paper.embeddingParams <= a.budgetParams, 'pme-paper still runs');
  t.ok(a.pmeSearchSeconds > 0, "pme-paper's search is timed");
  const b = await runOffline(events, catalog, { ...LIVE_FIXTURE, methods: ['pme', 'pme-paper'] });
  t.same(strip(b), strip(a), 'same seed, same results');
});

t.test('pme holds the budget on a larger stream, and moves tokens at its default settings', async (t) => {
  const { events, catalog } = planted(6000, 3, 150, 100, 4);
  for (const budget of [0.25, 0.5]) {
    const options = { dim: 16, budget, epochs: 2, seed: 2, methods: ['uniform', 'pme'] as const };
    const a = await runOffline(events, catalog, { ...options, pme: { hotThreshold: 5 } });
    const [uniform, pme] = a.results;
    const live = pme.live!;
    t.ok(live.moved > 0, `budget ${budget}: ${live.moved} moved in ${live.windows} windows`);
    t.equal(live.truncated + live.evicted, 0, `budget ${budget}: the store's last resort never ran`);
    t.ok(live.peakParams <= a.budgetParams, `budget ${budget}: peak ${live.peakParams} <= ${a.budgetParams}`);
    t.ok(pme.auc > 0.6, `budget ${budget}: pme learns the planted groups, AUC ${pme.auc}`);
    t.ok(pme.rowBytes <= rowBudget(a), `budget ${budget}: rows ${pme.rowBytes} <= ${rowBudget(a)} bytes`);
    t.ok(uniform.rowBytes <= rowBudget(a), 'uniform is held to the same row bytes');
  }
  await t.rejects(runOffline(events, catalog, { startSize: 3 }), /startSize must be -1 or on the ladder/);
});

t.test(
  'pme keeps the tokens that never turn hot one size below the budget’s, and raises no base',
  async (t) => {
    t.same(
      [0.1, 0.2, 0.4].map((b) => liveStartSize(ladderFor(64), b)),
      [2, 4, 8],
      'one ladder size below the largest under budget × D',
    );
    t.same(
      [0.05, 0.03].map((b) => liveStartSize(ladderFor(64), b)),
      [2, 0],
      'never down to 0 (under 3.2: 2), unless nothing larger fits (under 1.9)',
    );
    const { events, catalog } = planted(6000, 3, 150, 100, 4);
    // At full's parameter count the base had room to rise: every token went to 8.
    const a = await runOffline(events, catalog, { dim: 16, budget: 1, epochs: 2, seed: 2, methods: ['pme'] });
    const [pme] = a.results;
    const live = pme.live!;
    t.equal(live.startSize, 4, 'budget 1 × D 16: 8 the largest under 16, one size below');
    // Only a search moves a token above the start size: the tokens above it are at most those
    // promoted (with the base raised, all 270 were above it, 61 searched).
    let above = 0;
    for (const [size, count] of Object.entries(pme.sizes)) if (Number(size) > live.startSize) above += count;
    t.ok(live.promoted > 0, `${live.promoted} searched`);
    t.ok(above <= live.promoted, `${above} tokens above the start size, ${live.promoted} searched`);
  },
);

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
    ['full', 'uniform', 'mde', 'pme', 'pme-paper'],
  );
  for (const r of json.results)
    t.ok('auc' in r && 'logloss' in r && 'embeddingParams' in r && 'seconds' in r);
  t.ok(json.results[3].embeddingParams <= json.budgetParams);
  t.equal(typeof json.results[3].live.windows, 'number', 'pme reports its windows');
  t.ok(json.results[4].embeddingParams <= json.budgetParams);
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

t.test('sizes fixed for a whole run learn without prefix losses; the live pme with them', async (t) => {
  // Uniform and MDE never cut a token to a prefix: the prefix losses would only cost them. The
  // live controller cuts, and learns with them.
  const { events, catalog } = planted(3000, 5, 120, 80, 4);
  const base = { dim: 16, budget: 0.3, epochs: 2, seed: 3, methods: ['uniform', 'mde', 'pme'] as const };
  const withWeight = (w: number) =>
    runOffline(events, catalog, {
      ...base,
      methods: [...base.methods],
      model: { projection: 'nested', prefixLossWeight: w },
    });
  const [off, on] = [await withWeight(0), await withWeight(1)];
  const auc = (r: OfflineResult, m: string) => r.results.find((x) => x.method === m)!.auc;
  const held = (m: string) =>
    Object.entries(on.results.find((x) => x.method === m)!.sizes).filter(([s, n]) => Number(s) > 0 && n > 0);
  t.ok(held('uniform').length > 1 && held('mde').length > 1, 'both hold more than one size above 0');
  t.equal(auc(on, 'uniform'), auc(off, 'uniform'), 'uniform');
  t.equal(auc(on, 'mde'), auc(off, 'mde'), 'mde');
  t.not(auc(on, 'pme'), auc(off, 'pme'), 'pme learns from its prefixes');
});

/**
 * The recommender in process (issue 19, point 2): learns, prunes with PME (windows that move
 * tokens), reports tiers, refuses what it cannot learn with the service's reasons, and a snapshot
 * restores to the same scores and counters.
 */
import t from 'tap';
import { isPmeError } from '../../src/errors.js';
import { createRecommender, type Interaction } from '../../src/index.js';
import { tempDir } from '../helpers/temp-dir.js';
import { zipfStream } from '../helpers/zipf-stream.js';

const stream = (n: number, seed: number): Interaction[] =>
  zipfStream(n, { seed, users: 300, items: 200, genres: 7 });

const OPTIONS = { ladder: [0, 2, 4, 8, 16], startSize: 4, pruneEveryEvents: 3000, pruneTarget: 0.2, seed: 3 };

t.test('learn, prune, tiers, refusals, snapshot and restore', async (t) => {
  const dir = await tempDir(t, 'pme-library-');
  const rec = await createRecommender(OPTIONS);
  t.teardown(() => rec.close());
  t.same(
    rec.upsertItems([
      { item: 'i1', fields: { genre: 'g1' }, active: true },
      { item: '', fields: {}, active: true },
    ]),
    [{ index: 1, reason: 'missing-item', detail: 'item is empty' }],
  );

  const bad = [
    { user: '', item: 'i1', label: 1, timestamp: 0, fields: {} },
    { user: 'u1', item: '', label: 1, timestamp: 0, fields: {} },
    { user: 'u1', item: 'i1', label: 4, timestamp: 0, fields: {} },
    { user: 'u1', item: 'i1', label: Number.NaN, timestamp: 0, fields: {} },
    { user: 'u1', item: 'i1', label: 1, timestamp: Number.NaN, fields: {} },
    { user: 'u1', item: 'i1', label: 1, timestamp: 0, fields: { genre: 3 } },
    { user: 'u1'.repeat(2000), item: 'i1', label: 1, timestamp: 0, fields: {} },
  ] as unknown as Interaction[];
  const events = stream(20_000, 1);
  const { learned, refused } = await rec.learn([...events.slice(0, 100), ...bad, ...events.slice(100)]);
  t.equal(learned, events.length, 'every good event learned');
  t.same(
    refused.map((r) => [r.index, r.reason]),
    [
      [100, 'missing-user'],
      [101, 'missing-item'],
      [102, 'bad-label'],
      [103, 'bad-label'],
      [104, 'malformed'],
      [105, 'malformed'],
      [106, 'oversized-key'],
    ],
    'each bad one refused with its reason and position',
  );
  const stats = rec.stats();
  t.equal(stats.learned, events.length);
  t.ok(stats.auc > 0.6, `progressive AUC ${stats.auc.toFixed(3)}`);

  const windows = stats.events >= 3000 ? await rec.prune('test') : null;
  t.equal(windows?.reason, 'test', 'prune() runs a window now');
  t.ok(
    (windows?.moved ?? 0) > 0,
    `and it moves tokens (${windows?.moved}): a target of 20% is below the start size's 25%`,
  );
  const tiers = rec.tiers();
  t.same(
    tiers.tiers.map((tier) => tier.size),
    OPTIONS.ladder,
  );
  t.ok(tiers.tiers.filter((tier) => tier.tokens > 0).length >= 2, 'tokens in several tiers: PME moved some');
  t.ok(tiers.totalBytes > 0 && tiers.fields.some((f) => f.field === 'genre'));

  const items = ['i1', 'i2', 'i3', 'i50'];
  const scores = rec.score('u1', items);
  const top = rec.recommend('u1', 3).items.map((i) => i.item);
  const path = await rec.snapshot(dir);
  t.match(path, /store-\d+\.pme$/);
  await rec.close();
  t.throws(() => rec.score('u1', items), { code: 'PME_ERR_NOT_READY' }, 'closed is closed');

  const back = await createRecommender({ ...OPTIONS, restoreFrom: dir });
  t.teardown(() => back.close());
  t.same(back.score('u1', items), scores, 'restored: the same scores');
  t.same(
    back.recommend('u1', 3).items.map((i) => i.item),
    top,
  );
  t.equal(back.stats().learned, events.length, 'and the same counters');
  t.same(back.tiers().tiers, tiers.tiers, 'and the same tiers');
});

t.test('options are the table names, checked once', async (t) => {
  for (const [options, message] of [
    [{ startSize: 5 }, /--start-size 5 is not on the ladder/],
    [{ learningRate: 0 }, /--learning-rate must be above 0/],
    [{ ladder: 'nope' }, /ladder must be an array/],
    [{ budgetBytes: -1 }, /budgetBytes must be a number >= 0, got -1/],
    [{ port: 1.5 }, /port must be an integer >= 0, got 1.5/],
    [{ leaningRate: 0.1 }, /unknown option leaningRate/],
  ] as const) {
    const error = await createRecommender(options as never).then(
      () => null,
      (e: unknown) => e,
    );
    t.ok(isPmeError(error, 'PME_ERR_CONFIG_INVALID'), `${JSON.stringify(options)}: coded`);
    t.match((error as Error | null)?.message, message);
  }
  await t.rejects(createRecommender({ restoreFrom: '/nonexistent/pme' }), { code: 'PME_ERR_NOT_FOUND' });
});

t.test('FTRL linear weights: learned, snapshot, restored only under FTRL', async (t) => {
  const dir = await tempDir(t, 'pme-library-ftrl-');
  const ftrl = { ...OPTIONS, linearOptimizer: 'ftrl', ftrlL1: 0.5 };
  const rec = await createRecommender(ftrl);
  const events = stream(6000, 9);
  await rec.learn(events);
  t.ok(rec.stats().auc > 0.6, `AUC ${rec.stats().auc}`);
  const items = ['i1', 'i2', 'i3', 'i40'];
  const scores = rec.score('u1', items);
  await rec.snapshot(dir);
  await rec.close();
  await t.rejects(createRecommender({ ...OPTIONS, restoreFrom: dir }), {
    code: 'PME_ERR_CONFIG_INVALID',
    message: /--linear-optimizer adagrad keeps 1 float per linear weight, the store keeps 2/,
  });
  const back = await createRecommender({ ...ftrl, restoreFrom: dir });
  t.teardown(() => back.close());
  t.same(back.score('u1', items), scores, 'restored under FTRL: the same scores');
});

import t from 'tap';
import { histogramAuc } from '../../src/engine/metrics.js';
import { resolveTrainerOptions, type TokenObserver, Trainer } from '../../src/engine/trainer/index.js';
import { ARRAY_SLOT_BYTES, mapBytesEstimate, stringBytes } from '../../src/store/accounting.js';
import { EmbeddingStore } from '../../src/store/index.js';
import { ManualClock } from '../../src/util/clock.js';
import { GrowingStore } from './fake-store.js';
import { planted } from './planted.js';

const D = 16;
const LADDER = [0, 2, 4, 8, 16];

function train(seed: number, events = planted(20000, 7).events, catalog = planted(1, 7).catalog) {
  const store = new GrowingStore(D, LADDER, D, seed);
  const trainer = new Trainer(store, { clock: new ManualClock(0), seed, catalog });
  for (let i = 0; i < events.length; i += 100) trainer.learn(events.slice(i, i + 100));
  return { store, trainer };
}

/** AUC of fixed scores, through the same histogram the metrics use. */
function aucOf(scores: number[], labels: number[]): number {
  const bins = 1000;
  const pos = new Float64Array(bins);
  const neg = new Float64Array(bins);
  scores.forEach((s, i) => {
    const b = Math.min(bins - 1, Math.floor(s * bins));
    if (labels[i] > 0.5) pos[b]++;
    else neg[b]++;
  });
  return histogramAuc(pos, neg);
}

/** Progressive AUC of "the item's positive rate so far": what popularity alone can do. */
function popularityBaselineAuc(events: { item: string; label: number }[]): number {
  const bins = 1000;
  const pos = new Float64Array(bins);
  const neg = new Float64Array(bins);
  const seen = new Map<string, [number, number]>();
  for (const e of events) {
    const [p, n] = seen.get(e.item) ?? [0, 0];
    const rate = (p + 1) / (p + n + 2);
    const b = Math.min(bins - 1, Math.floor(rate * bins));
    if (e.label > 0.5) pos[b]++;
    else neg[b]++;
    seen.set(e.item, [p + e.label, n + 1 - e.label]);
  }
  return histogramAuc(pos, neg);
}

t.test('learns the planted preferences: progressive AUC well above 0.5 and above popularity', async (t) => {
  const { events, truths } = planted(20000, 7);
  const { trainer } = train(1, events);
  const stats = trainer.stats();
  const baseline = popularityBaselineAuc(events);
  const oracle = aucOf(
    truths.slice(-10000),
    events.slice(-10000).map((e) => e.label),
  );
  t.equal(stats.events, 20000);
  t.ok(stats.auc > 0.7, `cumulative AUC ${stats.auc}`);
  t.ok(stats.windowAuc > oracle - 0.03, `windowed AUC ${stats.windowAuc}, oracle ${oracle}`);
  t.ok(stats.auc > baseline + 0.1, `AUC ${stats.auc} vs popularity ${baseline}`);
  t.ok(stats.windowLogloss < stats.logloss, 'later events are predicted better than the average');
});

t.test('same seed, same scores', async (t) => {
  const a = train(3).trainer;
  const b = train(3).trainer;
  const items = ['i0', 'i1', 'i2', 'i3', 'i50'];
  t.same(a.score('u1', items), b.score('u1', items));
  t.same(a.stats().auc, b.stats().auc);
  t.same(a.recommend('u2', 5), b.recommend('u2', 5));
});

t.test(
  'a mini-batch learned in slices, with reads between them, trains exactly as one learn()',
  async (t) => {
    const { events, catalog } = planted(6000, 7);
    const whole = train(4, events, catalog);
    const store = new GrowingStore(D, LADDER, D, 4);
    const sliced = new Trainer(store, { clock: new ManualClock(0), seed: 4, catalog });
    for (let i = 0; i < events.length; i += 100) {
      for (let j = i; j < i + 100; j += 30) {
        sliced.learnEvents(events.slice(j, Math.min(j + 30, i + 100)));
        sliced.score('u1', ['i0', 'i1']);
        sliced.recommend('u2', 3);
      }
      sliced.endBatch();
    }
    t.same(sliced.stats().auc, whole.trainer.stats().auc, 'same progressive AUC');
    t.same(
      store.tiers[store.tiers.length - 1].params,
      whole.store.tiers[store.tiers.length - 1].params,
      'same rows',
    );
    t.same(sliced.model.projections, whole.trainer.model.projections, 'same projections');
    t.same(sliced.recommend('u3', 5), whole.trainer.recommend('u3', 5));
  },
);

t.test('score has no side effects and ignores unknown tokens', async (t) => {
  const { store, trainer } = train(1, planted(3000, 7).events);
  const size = store.size;
  const touches = store.touches;
  const params = Float32Array.from(store.tiers[LADDER.indexOf(D)].params);
  const linear = Float32Array.from(store.linear);
  const first = trainer.score('u1', ['i0', 'i1']);
  const unknown = trainer.score('nobody', ['i0', 'nothing'], { device: 'new' });
  t.same(trainer.score('u1', ['i0', 'i1']), first, 'repeatable');
  t.equal(store.size, size, 'no token created');
  t.equal(store.touches, touches, 'nothing touched');
  t.same(store.tiers[LADDER.indexOf(D)].params, params);
  t.same(store.linear, linear);
  t.ok(unknown.every((p) => p > 0 && p < 1));
  t.not(first[0], first[1]);
});

t.test('recommend returns the planted favourites and agrees with score', async (t) => {
  const p = planted(20000, 7);
  const { trainer } = train(1, p.events);
  let hits = 0;
  let total = 0;
  for (let u = 0; u < 40; u++) {
    const user = `u${u}`;
    const { items, fallback } = trainer.recommend(user, 5);
    t.equal(fallback, null);
    t.equal(items.length, 5);
    for (const r of items) if (p.groupOf(r.item) === p.favourite(user)) hits++;
    total += items.length;
    if (u < 3) {
      const scores = trainer.score(
        user,
        items.map((r) => r.item),
      );
      items.forEach((r, i) => {
        t.ok(Math.abs(r.score - scores[i]) < 1e-5, 'recommend score equals score()');
      });
      for (let i = 1; i < items.length; i++) t.ok(items[i - 1].score >= items[i].score, 'sorted');
    }
  }
  // Chance is 1/5 of the items in the favourite group.
  t.ok(hits / total > 0.6, `favourite share ${hits / total}`);
  const excluded = trainer.recommend('u0', 3).items.map((r) => r.item);
  const again = trainer.recommend('u0', 3, { exclude: excluded }).items.map((r) => r.item);
  t.notOk(
    again.some((i) => excluded.includes(i)),
    'exclude is honoured',
  );
});

t.test('unknown users get popularity, flagged', async (t) => {
  const { trainer } = train(1, planted(5000, 7).events);
  const r = trainer.recommend('stranger', 3);
  t.equal(r.fallback, 'popularity');
  // Zipf ranks 0, 1, 2 are the most frequent items of the planted stream.
  t.same(
    r.items.map((x) => x.item),
    ['i0', 'i1', 'i2'],
  );
  t.ok(r.items[0].score >= r.items[1].score);
  t.throws(() => trainer.recommend('u1', 0), { code: 'PME_ERR_BAD_REQUEST' });
});

t.test('positive-only streams draw seeded negatives by smoothed popularity', async (t) => {
  const p = planted(20000, 9);
  const positives = p.events.filter((e) => e.label === 1);
  const store = new GrowingStore(D, LADDER, D, 1);
  const trainer = new Trainer(store, { clock: new ManualClock(0), negatives: 2, catalog: p.catalog });
  for (let i = 0; i < positives.length; i += 50) trainer.learn(positives.slice(i, i + 50));
  const s = trainer.stats();
  // Some draws hit the positive's own item and are skipped, so slightly fewer than 2 per positive.
  t.ok(s.negativesDrawn > 1.8 * positives.length && s.negativesDrawn <= 2 * positives.length);
  t.equal(s.events, positives.length + s.negativesDrawn);
  t.ok(Math.abs(s.positiveRate - positives.length / s.events) < 1e-9);
  t.ok(s.auc > 0.6, `AUC against sampled negatives ${s.auc}`);
});

t.test('trainer options are validated and frozen', async (t) => {
  t.ok(Object.isFrozen(resolveTrainerOptions({})));
  for (const bad of [
    { negatives: -1 },
    { negatives: 1.5 },
    { aucBins: 3 },
    { negativeExponent: -1 },
    { seed: 0.5 },
  ])
    t.throws(() => resolveTrainerOptions(bad), { code: 'PME_ERR_CONFIG_INVALID' });
});

/** Records the ids the trainer resolves, in order. */
class Recorder implements TokenObserver {
  ids: number[] = [];
  observe(id: number): void {
    this.ids.push(id);
  }
  endBatch(): void {}
}

t.test('learn resolves every token to its current id after evictions reuse ids', async (t) => {
  const clock = new ManualClock(0);
  const store = new EmbeddingStore({ ladder: LADDER, startSize: 4, seed: 1, ttlMs: 1000, clock });
  const observer = new Recorder();
  const trainer = new Trainer(store, { clock, seed: 1, observer });
  const event = (u: number) => ({
    user: `u${u}`,
    item: `i${u}`,
    label: 1,
    timestamp: 0,
    fields: { device: `d${u}` },
  });
  const keysOf = (u: number) => [`user=u${u}`, `device=d${u}`, `item=i${u}`];
  trainer.learn([event(1)]);
  const first = observer.ids.slice();
  t.same(
    first,
    keysOf(1).map((k) => store.id(k)),
  );
  clock.advance(5000);
  trainer.learn([event(2)]);
  t.ok(store.evictExpired(clock.now()) >= 3, "u1's tokens expired");
  trainer.learn([event(3)]); // new tokens take the freed ids
  t.ok(
    first.some((id) => store.alive(id) && !keysOf(1).includes(store.key(id))),
    'an id of u1 now names another token',
  );
  observer.ids = [];
  trainer.learn([event(1)]);
  t.same(
    observer.ids.map((id) => store.key(id)),
    keysOf(1),
    'u1 is resolved to its new tokens, not to the reused ids',
  );
});

t.test(
  'learn resolves correctly across key-cache generations (more users than the cache holds)',
  async (t) => {
    const store = new GrowingStore(D, LADDER, 2, 1);
    const observer = new Recorder();
    const trainer = new Trainer(store, { clock: new ManualClock(0), seed: 1, observer });
    const users = 50_000;
    let wrong = 0;
    let checked = 0;
    // Two passes over the users (the second finds them in the old generation or gone from it), then
    // the first users again.
    const order = [...Array(users).keys(), ...Array(users).keys(), ...Array(1000).keys()];
    for (let b = 0; b < order.length; b += 1000) {
      const batch = order.slice(b, b + 1000).map((u) => ({
        user: `u${u}`,
        item: `i${u % 97}`,
        label: u % 2,
        timestamp: 0,
        fields: { device: `d${u % 13}` },
      }));
      observer.ids = [];
      trainer.learn(batch);
      batch.forEach((e, j) => {
        const expected = [`user=${e.user}`, `device=${e.fields.device}`, `item=${e.item}`];
        for (let k = 0; k < 3; k++, checked++)
          if (store.keys[observer.ids[j * 3 + k]] !== expected[k]) wrong++;
      });
    }
    t.equal(wrong, 0, `${checked} resolutions name the event's own tokens`);
    t.equal(store.size, users + 97 + 13, 'no token created twice');
  },
);

t.test('the tokens of one event are created together: the budget never evicts one for another', async (t) => {
  // A budget that holds one token and not two: the event's item cannot be made without evicting
  // its user. Resolving one token at a time did exactly that, then stepped the item's token (which
  // took the user's freed id) twice. Created together, the user stays and the item is refused:
  // not created, counted, and the event learned with the token it has.
  const exact = { ladder: [0, 4], startSize: 4, chunkRows: 1, evictedBuckets: 0 };
  const probe = new EmbeddingStore(exact);
  probe.getOrCreate('user=u');
  const one = probe.accounting().totalBytes;
  const store = new EmbeddingStore({ ...exact, budgetBytes: one + 8 });
  const observer = new Recorder();
  const trainer = new Trainer(store, { seed: 1, clock: new ManualClock(0), observer });
  trainer.learn([{ user: 'u', item: 'i', label: 1, timestamp: 0, fields: {} }]);
  t.equal(trainer.stats().learned, 1);
  t.ok(store.id('user=u') >= 0, 'the user, made first, stays');
  t.equal(store.id('item=i'), -1, 'the item is refused');
  t.equal(store.refused, 1, 'and counted');
  t.same(observer.ids, [store.id('user=u')], 'the row holds the user alone, once');
  t.ok(store.accounting().totalBytes <= store.accounting().budgetBytes, 'the budget holds');

  // With room for both, the event learns with two distinct tokens.
  const roomy = new EmbeddingStore({ ladder: [0, 4], startSize: 4, chunkRows: 1, budgetBytes: 4 * one });
  const ok = new Trainer(roomy, { seed: 1, clock: new ManualClock(0) });
  ok.learn([{ user: 'u', item: 'i', label: 1, timestamp: 0, fields: {} }]);
  t.not(roomy.id('user=u'), roomy.id('item=i'));
  t.ok(roomy.id('user=u') >= 0 && roomy.id('item=i') >= 0);
  t.equal(roomy.refused, 0);
});

t.test(
  'memory beside the store: caches grow with new tokens and items, key caches give back what evictions take',
  async (t) => {
    const clock = new ManualClock(0);
    const store = new EmbeddingStore({ ladder: LADDER, startSize: 4, seed: 9, ttlMs: 1000, clock });
    const trainer = new Trainer(store, { clock, seed: 9 });
    const empty = trainer.memory();
    const events = Array.from({ length: 2000 }, (_, u) => ({
      user: `u${u}`,
      item: `i${u % 300}`,
      label: 1,
      timestamp: 0,
      fields: { device: `d${u % 50}` },
    }));
    trainer.learn(events);
    trainer.score('u1', ['i1']);
    const learned = trainer.memory();
    t.comment(`empty ${JSON.stringify(empty)}, after 2,000 events ${JSON.stringify(learned)}`);
    // 2,000 users and 50 devices cached: Map slots (28 B) and the value strings (24 B each here).
    t.ok(learned.keyCaches >= empty.keyCaches + 2050 * (28 + 24), 'the key caches hold every value seen');
    t.ok(
      learned.catalog >= empty.catalog + 300 * 72,
      'the catalog holds the 300 items first seen in the stream',
    );
    t.ok(learned.itemCaches >= empty.itemCaches + 300 * 8, 'the item caches hold a term per item');
    clock.advance(5000);
    t.equal(store.evictExpired(clock.now()), 2000 + 50 + 300, 'every token expires');
    const evicted = trainer.memory();
    // What stays: the `device` field's cache (two empty generations and its prefix) and its code.
    const deviceField =
      2 * mapBytesEstimate(0) + stringBytes('device=') + stringBytes('device') + ARRAY_SLOT_BYTES;
    t.equal(
      evicted.keyCaches,
      empty.keyCaches + deviceField,
      'evicted tokens leave the key caches, strings and all',
    );
    t.equal(evicted.catalog, learned.catalog, 'the catalog keeps its items (they are never removed)');
  },
);

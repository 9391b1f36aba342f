/**
 * The user × item cross token (TrainerOptions.crossUserItem): the pair's own linear weight, kept
 * at size 0, learned from the pair's events, read by score, recommend and predict alike, never
 * created by a drawn negative, never sized by PME.
 */
import t from 'tap';
import type { Interaction } from '../../src/data/event.js';
import { LogisticRegression } from '../../src/engine/model/lr.js';
import { PmeController } from '../../src/engine/pme/controller.js';
import { PopularitySizes } from '../../src/engine/pme/popularity.js';
import {
  CROSS_FIELD,
  crossKey,
  parseCrossKey,
  Trainer,
  type TrainerOptions,
} from '../../src/engine/trainer/index.js';
import { EmbeddingStore } from '../../src/store/index.js';
import { ManualClock } from '../../src/util/clock.js';
import { zipfStream } from '../helpers/zipf-stream.js';

const LADDER = [0, 2, 4, 8];

const event = (user: string, item: string, label: number, timestamp = 0): Interaction => ({
  user,
  item,
  label,
  timestamp,
  fields: {},
});

/** Live keys of the cross field. */
function crossKeys(store: EmbeddingStore): string[] {
  const keys: string[] = [];
  for (const size of LADDER)
    store.forEachInTier(size, (id) => {
      if (store.field(id) === CROSS_FIELD) keys.push(store.key(id));
    });
  return keys.sort();
}

/** XOR of user and item: u1 likes a, u2 likes b. No sum of a user and an item weight fits it. */
const XOR = [event('u1', 'a', 1), event('u1', 'b', 0), event('u2', 'a', 0), event('u2', 'b', 1)];

function logistic(options: Partial<TrainerOptions>) {
  const store = new EmbeddingStore({ ladder: LADDER, startSize: 0, seed: 1 });
  const trainer = new Trainer(store, { seed: 1, ...options }, new LogisticRegression(store));
  for (let i = 0; i < 50; i++) trainer.learn(XOR);
  return { store, trainer };
}

t.test('the pair weight learns what user and item weights cannot, and every read sees it', async (t) => {
  const { store, trainer } = logistic({ crossUserItem: true });
  t.same(
    crossKeys(store),
    [crossKey('u1', 'a'), crossKey('u1', 'b'), crossKey('u2', 'a'), crossKey('u2', 'b')].sort(),
  );
  for (const key of crossKeys(store)) t.equal(store.sizeOf(store.id(key)), 0, `${key} has no row`);
  t.ok(store.linear[store.id(crossKey('u1', 'a'))] > 0.5, 'u1 × a: a positive weight');
  t.ok(store.linear[store.id(crossKey('u1', 'b'))] < -0.5, 'u1 × b: a negative weight');

  const [u1a, u1b] = trainer.score('u1', ['a', 'b']);
  const [u2a, u2b] = trainer.score('u2', ['a', 'b']);
  t.ok(u1a > 0.8 && u2b > 0.8 && u1b < 0.2 && u2a < 0.2, `fits XOR: ${[u1a, u1b, u2a, u2b]}`);
  const predicted = trainer.predict(XOR);
  t.ok(
    Math.abs(predicted[0] - u1a) < 1e-9 && Math.abs(predicted[3] - u2b) < 1e-9,
    'predict agrees with score',
  );
  const top = trainer.recommend('u2', 2);
  t.same(
    top.items.map((r) => r.item),
    ['b', 'a'],
  );
  t.ok(Math.abs(top.items[0].score - u2b) < 1e-9, 'recommend agrees with score');

  // Without the option: no cross token, and the same stream cannot be told apart per user.
  const plain = logistic({});
  t.same(crossKeys(plain.store), []);
  const [p1a, p1b] = plain.trainer.score('u1', ['a', 'b']);
  t.ok(Math.abs(p1a - p1b) < 0.1, `without it u1's scores of a and b stay close: ${p1a}, ${p1b}`);
});

t.test('a cross key names its pair whatever the user and item hold', async (t) => {
  t.same(parseCrossKey(crossKey('a|b:c', 'x|y')), { user: 'a|b:c', item: 'x|y' });
  t.same(parseCrossKey(crossKey('', '')), { user: '', item: '' });
  t.not(crossKey('a|b', 'c'), crossKey('a', 'b|c'));
  t.equal(parseCrossKey('user=a'), null);
  t.equal(parseCrossKey(`${CROSS_FIELD}=9:a|b`), null);
});

t.test("recommend finds a user's pairs through an index that follows the store", async (t) => {
  const { store, trainer } = logistic({ crossUserItem: true });
  // recommend reads the index; predict looks every pair's key up in the store.
  const agrees = (tr: Trainer, user: string, label: string) => {
    const top = tr.recommend(user, 2).items;
    const predicted = tr.predict(top.map((r) => event(user, r.item, 0)));
    t.ok(
      top.every((r, k) => Math.abs(r.score - predicted[k]) < 1e-9),
      `${label}: recommend ${top.map((r) => `${r.item} ${r.score.toFixed(4)}`)} = predict ${[...predicted].map((p) => p.toFixed(4))}`,
    );
    return top.map((r) => r.item);
  };
  // A restored store: the index starts from the live cross tokens.
  const restored = EmbeddingStore.fromState(store.exportState());
  const catalog = ['a', 'b'].map((item) => ({ item, fields: {}, active: true }));
  const again = new Trainer(
    restored,
    { seed: 1, catalog, crossUserItem: true },
    new LogisticRegression(restored),
  );
  t.same(agrees(again, 'u2', 'restored'), ['b', 'a'], 'restored: u2 still prefers b');
  t.same(agrees(again, 'u1', 'restored'), ['a', 'b'], 'restored: u1 still prefers a');
  // An evicted pair leaves the index (its id may be reused by another key).
  store.evict(store.id(crossKey('u1', 'a')));
  store.evict(store.id(crossKey('u1', 'b')));
  for (const key of ['user=someone-else', 'item=elsewhere']) store.linear[store.getOrCreate(key, 0)] = 3;
  agrees(trainer, 'u1', 'after evictions');
  // A pair created outside learning (a replica applying the trainer's tokens) joins it.
  const id = store.getOrCreate(crossKey('u1', 'b'), 0);
  store.linear[id] = 5;
  t.same(agrees(trainer, 'u1', 'created by key'), ['b', 'a']);
});

t.test('drawn negatives learn an existing pair weight but never create one', async (t) => {
  const store = new EmbeddingStore({ ladder: LADDER, startSize: 2, seed: 1 });
  const catalog = ['a', 'b', 'c', 'd', 'e'].map((item) => ({ item, fields: {}, active: true }));
  const trainer = new Trainer(store, { seed: 1, negatives: 3, catalog, crossUserItem: true });
  const positives = [event('u1', 'a', 1), event('u1', 'b', 1), event('u2', 'c', 1)];
  for (let i = 0; i < 30; i++) trainer.learn(positives);
  t.ok(trainer.stats().negativesDrawn > 100, `${trainer.stats().negativesDrawn} negatives drawn`);
  t.same(
    crossKeys(store),
    [crossKey('u1', 'a'), crossKey('u1', 'b'), crossKey('u2', 'c')].sort(),
    'only the pairs of real events',
  );
  // A drawn pair whose token exists learns it: u1 × a is also a negative of u1's events with b.
  // u2 × c is never drawn against u2 (a draw of the event's own item is skipped).
  const touches = (user: string, item: string) => store.frequency[store.id(crossKey(user, item))];
  t.ok(touches('u1', 'a') > 30, `u1 × a: ${touches('u1', 'a')} touches, 30 of them its own events`);
  t.equal(touches('u2', 'c'), 30, 'u2 × c: its own 30 events only');
});

t.test('PME and the popularity sizing never give a cross token a row', async (t) => {
  const events = zipfStream(6000, { seed: 5, users: 30, items: 20 });
  // The popularity sizing ranks every field's tokens: the most repeated pairs would get rows.
  {
    const clock = new ManualClock(0);
    const store = new EmbeddingStore({ ladder: LADDER, startSize: 2, seed: 1, clock });
    const sizer = new PopularitySizes(store, { windowEvents: 1000, target: 1 });
    const trainer = new Trainer(store, { seed: 1, clock, observer: sizer, crossUserItem: true });
    sizer.attach(trainer);
    for (let i = 0; i < events.length; i += 200) trainer.learn(events.slice(i, i + 200));
    t.ok(
      sizer.reports().some((r) => r.grown > 0),
      'the sizing grew tokens',
    );
    const sized = crossKeys(store).filter((key) => store.sizeOf(store.id(key)) > 0);
    t.ok(crossKeys(store).length > 100, `${crossKeys(store).length} cross tokens`);
    t.same(sized, [], 'popularity: every cross token at size 0');
  }
  // PME starting every token at 0 raises the base size for every token when there is room.
  {
    const clock = new ManualClock(0);
    const store = new EmbeddingStore({ ladder: LADDER, startSize: 0, seed: 1, clock });
    const pme = new PmeController(store, {
      windowEvents: 1000,
      hotThreshold: 6,
      target: 1,
      searchShare: 0.2,
      headroom: 0,
      searchFieldTokens: 0,
      clock,
    });
    const trainer = new Trainer(store, { seed: 1, clock, observer: pme, crossUserItem: true });
    pme.attach(trainer);
    for (let i = 0; i < events.length; i += 200) {
      trainer.learn(events.slice(i, i + 200));
      await pme.running;
    }
    let rows = 0;
    for (const size of [2, 4, 8]) store.forEachInTier(size, () => rows++);
    t.ok(pme.reports().length > 0 && rows > 20, `PME gave ${rows} tokens rows`);
    const sized = crossKeys(store).filter((key) => store.sizeOf(store.id(key)) > 0);
    t.same(sized, [], 'PME: every cross token at size 0');
  }
});

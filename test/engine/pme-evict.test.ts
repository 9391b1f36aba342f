/**
 * PME against a store that evicts and reuses ids (issue 17, point 4): a token evicted while queued
 * for promotion, or while a window runs, is skipped (nothing throws, nothing else is moved in its
 * place), and a token that takes an evicted one's id starts with its own count.
 */
import t from 'tap';
import type { Interaction } from '../../src/data/event.js';
import { PmeController } from '../../src/engine/pme/controller.js';
import { Trainer } from '../../src/engine/trainer/index.js';
import { EmbeddingStore } from '../../src/store/index.js';
import { ManualClock } from '../../src/util/clock.js';

const LADDER = [0, 2, 4, 8, 16];

function setup(options: { hotThreshold?: number; chunk?: number } = {}) {
  const clock = new ManualClock(0);
  const store = new EmbeddingStore({ ladder: LADDER, startSize: 4, seed: 1, clock });
  // Two users: every field is small, and searched all the same.
  const pme = new PmeController(store, {
    windowEvents: 0,
    hotThreshold: 1.5,
    chunk: 1,
    searchFieldTokens: 0,
    clock,
    ...options,
  });
  const trainer = new Trainer(store, { seed: 1, clock, observer: pme });
  pme.attach(trainer);
  return { store, pme, trainer, clock };
}

const event = (user: string, item: string): Interaction => ({
  user,
  item,
  label: 1,
  timestamp: 0,
  fields: {},
});

t.test('a token evicted while queued for promotion is skipped; later batches go on', async (t) => {
  const { store, trainer } = setup();
  // Two events per user: each token is seen twice, past the hot threshold, and queued. One
  // promotion per batch (chunk 1), so most stay queued.
  trainer.learn([event('a', 'x'), event('b', 'y'), event('a', 'x'), event('b', 'y')]);
  const queued = ['user=b', 'item=y'].map((k) => store.id(k)).filter((id) => store.sizeOf(id) !== 16);
  t.ok(queued.length > 0, 'some hot tokens wait for their promotion');
  const victim = queued[0];
  const key = store.key(victim);
  store.evict(victim);
  // The id is reused by a new token seen once: it must be neither promoted nor counted as hot.
  trainer.learn([event('fresh', 'x')]);
  t.equal(store.id('user=fresh'), victim, 'the new token took the evicted id');
  t.doesNotThrow(() => {
    trainer.endBatch();
    trainer.endBatch();
    trainer.endBatch();
  }, 'endBatch no longer throws "token id N not found"');
  t.equal(store.sizeOf(store.id('user=fresh')), 4, 'the reused id was not promoted in its place');
  t.equal(store.id(key), -1, 'the evicted token stays gone');
});

t.test('a token seen once that reuses a hot token’s id is not hot', async (t) => {
  // Seen 5 times, one short of hot: then evicted, and its id taken by a token seen once.
  const { store, trainer } = setup({ hotThreshold: 5.5 });
  for (let i = 0; i < 5; i++) trainer.learn([event('hot', `i${i}`)]);
  t.equal(store.sizeOf(store.id('user=hot')), 4, 'not promoted yet');
  const id = store.id('user=hot');
  store.evict(id);
  trainer.learn([event('cold', 'i9')]);
  t.equal(store.id('user=cold'), id, 'same id');
  trainer.endBatch();
  t.equal(store.sizeOf(id), 4, 'not promoted: its count is its own, not the evicted token’s');
});

t.test('tokens evicted while a window runs are skipped in every phase', async (t) => {
  for (const phase of ['listed', 'searched', 'cold'] as const) {
    const { store, pme, trainer } = setup({ hotThreshold: 2, chunk: 1 });
    // Hot tokens promoted to 16 and searched; other tokens at 4 that cool down.
    for (let r = 0; r < 6; r++)
      trainer.learn(Array.from({ length: 8 }, (_, i) => event(`u${i}`, `i${(i + r) % 5}`)));
    for (let i = 0; i < 40; i++) trainer.learn([event(`once${i}`, `j${i}`)]);
    const running = pme.runWindow('test');
    // Evict a token of each kind between the window's first yields, and reuse its id at once.
    const topIds = store.lruOrder(16);
    const coldIds = store.lruOrder(4);
    const victims = phase === 'cold' ? coldIds.slice(0, 3) : topIds.slice(0, 3);
    for (let turn = 0; turn < (phase === 'listed' ? 1 : phase === 'searched' ? 3 : 6); turn++)
      await new Promise((resolve) => setImmediate(resolve));
    for (const id of victims) if (store.alive(id)) store.evict(id);
    trainer.learn(victims.map((_, i) => event(`new${phase}${i}`, 'k')));
    const report = await running;
    t.ok(report.id >= 1, `${phase}: the window finished`);
    // A new token in an id the window had listed is not taken for the token listed there.
    let reused = 0;
    for (let i = 0; i < victims.length; i++) {
      const id = store.id(`user=new${phase}${i}`);
      if (!victims.includes(id)) continue;
      reused++;
      t.equal(store.sizeOf(id), 4, `${phase}: the new token in id ${id} kept its own size`);
    }
    t.ok(reused > 0, `${phase}: ids were reused`);
  }
});

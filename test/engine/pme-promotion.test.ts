import t from 'tap';
import { PmeController } from '../../src/engine/pme/controller.js';
import type { PmeOptions } from '../../src/engine/pme/options.js';
import { Trainer } from '../../src/engine/trainer/index.js';
import { EmbeddingStore } from '../../src/store/index.js';
import { ManualClock } from '../../src/util/clock.js';

/** A tiny store (ladder 0, 4, 8) whose PME has room to search (the default target and search
 *  share would allow no row at D), with its trainer; PME's other options are the defaults. */
function searching(options: Partial<PmeOptions>) {
  const clock = new ManualClock(0);
  const store = new EmbeddingStore({ ladder: [0, 4, 8], startSize: 4, clock, seed: 1 });
  const pme = new PmeController(store, {
    windowEvents: 0,
    target: 1,
    searchShare: 1,
    headroom: 0,
    clock,
    ...options,
  });
  const trainer = new Trainer(store, { clock, observer: pme, seed: 1 });
  pme.attach(trainer);
  return { store, trainer };
}

/** The Adagrad accumulators of user=a's row right after the batch that promoted it to D. */
function promotedAccumulators(promotionCarry: number): Float32Array {
  // Every field searched, however few its tokens.
  const { store, trainer } = searching({ hotThreshold: 6, promotionCarry, searchFieldTokens: 0 });
  const event = (k: number) => ({ user: 'a', item: `i${k % 3}`, label: k % 2, timestamp: k, fields: {} });
  // Promotion happens at the end of a batch, after its steps: stop at the batch that promotes.
  let k = 0;
  while (store.id('user=a') < 0 || store.sizeOf(store.id('user=a')) !== 8) {
    if (k === 100) throw new Error('user=a was never promoted');
    trainer.learn([event(k++)]);
  }
  const id = store.id('user=a');
  const tier = store.tiers[store.tierOf[id]];
  const width = tier.size * store.options.optimizerSlots;
  return tier.optimizer.slice(store.slotOf[id] * width, (store.slotOf[id] + 1) * width);
}

t.test('a promoted row starts its accumulators at promotionCarry × its old row mean', async (t) => {
  // Promoted in the same batch in every run (the runs are the same up to the promotion), so the
  // rows differ only by the share carried; read before any step at D.
  const whole = promotedAccumulators(1);
  const share = promotedAccumulators(0.3);
  const none = promotedAccumulators(0);
  t.ok(whole[0] > 0, `the old row had learned: mean accumulator ${whole[0]}`);
  t.ok(
    whole.every((a) => a === whole[0]),
    'every new dimension starts at the same value (the old mean)',
  );
  for (let d = 0; d < whole.length; d++) t.ok(Math.abs(share[d] - 0.3 * whole[d]) < 1e-6 * whole[d]);
  t.ok(
    none.every((a) => a === 0),
    'promotionCarry 0: the new row starts fresh',
  );
});

t.test('a hot token is searched only while its field holds searchFieldTokens live tokens', async (t) => {
  const { store, trainer } = searching({ hotThreshold: 6, searchFieldTokens: 4 });
  // One user, four items: user=a is the hottest token, but its field holds one token.
  let k = 0;
  const learn = (user: string) => {
    trainer.learn([{ user, item: `i${k % 4}`, label: k % 2, timestamp: k, fields: {} }]);
    k++;
  };
  for (let i = 0; i < 60; i++) learn('a');
  t.equal(store.sizeOf(store.id('user=a')), 4, 'user=a, alone in its field, is not searched');
  t.equal(store.sizeOf(store.id('item=i0')), 8, 'item=i0, one of four items, is');
  // Three more users: the field holds four tokens, and user=a's next event queues it.
  for (const user of ['b', 'c', 'd']) learn(user);
  learn('a');
  learn('a');
  t.equal(store.sizeOf(store.id('user=a')), 8, 'with four users, user=a is searched');
  t.equal(store.sizeOf(store.id('user=b')), 4, 'user=b, seen once, is not');
});

t.test('by default a token is searched at D once its decayed count reaches 5', async (t) => {
  // The default hot threshold; every field searched.
  const { store, trainer } = searching({ searchFieldTokens: 0 });
  let events = 0;
  while (store.id('user=a') < 0 || store.sizeOf(store.id('user=a')) !== 8) {
    if (events === 30) break;
    trainer.learn([{ user: 'a', item: `i${events % 3}`, label: events % 2, timestamp: events, fields: {} }]);
    events++;
  }
  t.equal(store.sizeOf(store.id('user=a')), 8, `user=a searched at D after ${events} events`);
  // A count of 5 after five events, less the decay since the first (a hair under 5 or not, by
  // rounding): the fifth or the sixth event, far before 20.
  t.ok(events === 5 || events === 6, `at its fifth or sixth event: ${events}`);
});

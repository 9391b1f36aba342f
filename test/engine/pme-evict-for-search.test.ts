import t from 'tap';
import type { Interaction } from '../../src/data/event.js';
import { memoryActions, PmeController } from '../../src/engine/pme/controller.js';
import { Trainer } from '../../src/engine/trainer/index.js';
import { EmbeddingStore } from '../../src/store/index.js';
import { dotStream } from '../helpers/dot-stream.js';

// PME option evictForSearch: once the budget binds, the hot tokens' search comes before the
// coldest tokens, which the store evicts for it; without it the relief steps the searched tokens
// back down to keep every cold token resident.
const LADDER = [0, 2, 4, 8, 16];
const START = 2;

/** 20 hot users among 3,000. */
const stream = (n: number, seed: number) => dotStream(n, seed, 3000);

/** Learns `events` in mini-batches of 100, as the service does (promotions run between them). */
function learn(trainer: Trainer, events: Interaction[]): void {
  for (let i = 0; i < events.length; i += 100) trainer.learn(events.slice(i, i + 100));
}

/** `warmEvictions` 0.5 is the default; 1 lets the search evict whatever the store evicts. */
function run(budgetBytes: number, evictForSearch: boolean, warmEvictions = 0.5) {
  const store = new EmbeddingStore({ ladder: LADDER, startSize: START, chunkRows: 64, budgetBytes });
  const pme = new PmeController(store, {
    windowEvents: 0,
    hotThreshold: 30,
    target: 1,
    searchShare: 0.8,
    evictForSearch,
    warmEvictions,
  });
  const trainer = new Trainer(store, { observer: pme, seed: 1 });
  pme.attach(trainer);
  return { store, pme, trainer };
}

/** Tokens above the start size whose key names one of the 20 hot users. */
function hotAboveStart(store: EmbeddingStore): number {
  let n = 0;
  for (let u = 0; u < 20; u++) {
    const id = store.id(`user=u${u}`);
    if (id >= 0 && store.sizeOf(id) > START) n++;
  }
  return n;
}

const events = stream(6000, 1);
const unbounded = run(Number.POSITIVE_INFINITY, true);
learn(unbounded.trainer, events);
const budget = Math.floor(unbounded.store.accounting().totalBytes * 0.3);

t.test(
  'once the budget binds, hot tokens are searched at D and keep a size: the coldest are evicted',
  async (t) => {
    const { store, pme, trainer } = run(budget, true);
    learn(trainer, events.slice(0, 3000));
    t.ok(store.lastResort.evicted > 0, `the budget binds: ${store.lastResort.evicted} evicted`);
    const searched = hotAboveStart(store);
    t.ok(searched >= 5, `${searched} of the 20 hot users under search above the start size`);
    const report = await pme.runWindow('test');
    t.ok(report.moved > 0, `the window prunes: ${report.moved} tokens moved`);
    learn(trainer, events.slice(3000));
    const kept = hotAboveStart(store);
    t.ok(kept >= 10, `${kept} hot users above the start size after the window and more learning`);
    t.equal(store.lastResort.demoted, 0, 'no truncating demotion');
    t.ok(store.accounting().totalBytes <= budget, 'within the budget');
  },
);

t.test('evictForSearch off: the relief steps searched tokens down to keep cold ones resident', async (t) => {
  const on = run(budget, true);
  const off = run(budget, false);
  learn(on.trainer, events.slice(0, 3000));
  learn(off.trainer, events.slice(0, 3000));
  t.ok(
    hotAboveStart(off.store) < hotAboveStart(on.store),
    `hot users under search: ${hotAboveStart(off.store)} off, ${hotAboveStart(on.store)} on`,
  );
  t.ok(
    off.store.lastResort.evicted < on.store.lastResort.evicted,
    `evicted: ${off.store.lastResort.evicted} off, ${on.store.lastResort.evicted} on`,
  );
});

t.test(
  'a window that finds the budget, less its headroom, full binds it: the searched tokens keep D',
  async (t) => {
    // A budget 5% above what the first 3,000 events take: the store has not had to make room yet,
    // but the rows are past the budget less its 10% headroom, so the store will evict soon.
    const probe = run(Number.POSITIVE_INFINITY, true);
    learn(probe.trainer, events.slice(0, 3000));
    const tight = Math.floor(probe.store.accounting().totalBytes * 1.05);
    const { store, pme, trainer } = run(tight, true);
    learn(trainer, events.slice(0, 3000));
    t.equal(store.lastResort.evicted, 0, 'nothing evicted yet');
    const atD = store.tiers[LADDER.length - 1].count;
    t.ok(atD >= 10, `${atD} tokens under search at D`);
    const report = await pme.runWindow('test');
    t.equal(report.moved, 0, 'the window prunes none of them for tokens the budget will evict');
    t.equal(store.tiers[LADDER.length - 1].count, atD, 'all still at D');
    learn(trainer, events.slice(3000));
    t.ok(store.lastResort.evicted > 0, `the budget binds: ${store.lastResort.evicted} evicted`);
    t.ok(hotAboveStart(store) >= 10, `${hotAboveStart(store)} hot users above the start size`);
    t.ok(store.accounting().totalBytes <= tight, 'within the budget');
  },
);

t.test('where the budget evicts warm tokens, the search does not evict for itself', async (t) => {
  // 60 users, all seen again and again: a budget of 15% evicts users that come back, not a tail
  // seen once as above.
  const warmEvents = dotStream(6000, 2, 60);
  const probe = run(Number.POSITIVE_INFINITY, true);
  learn(probe.trainer, warmEvents);
  const warmBudget = Math.floor(probe.store.accounting().totalBytes * 0.15);
  const always = run(warmBudget, true, 1);
  const byDefault = run(warmBudget, true);
  learn(always.trainer, warmEvents);
  learn(byDefault.trainer, warmEvents);
  const evicted = (r: ReturnType<typeof run>) => r.store.lastResort.evicted;
  const atD = (r: ReturnType<typeof run>) => r.store.tiers[LADDER.length - 1].count;
  t.ok(evicted(always) > 0 && evicted(byDefault) > 0, 'the budget binds in both');
  t.ok(
    evicted(byDefault) < evicted(always),
    `evicted: ${evicted(byDefault)} by default, ${evicted(always)} when the search always evicts`,
  );
  t.ok(
    atD(byDefault) < atD(always),
    `tokens under search at D: ${atD(byDefault)} by default, ${atD(always)} always`,
  );
  const warmShare = (r: ReturnType<typeof run>) => memoryActions(r.store, r.pme).warmEvictions;
  t.ok(
    warmShare(byDefault) > 0.5,
    `warm share of the evictions reported: ${warmShare(byDefault).toFixed(2)}`,
  );
  // The cold tail of the tests above keeps the search's evictions on by default.
  const cold = run(budget, true);
  const coldAlways = run(budget, true, 1);
  learn(cold.trainer, events.slice(0, 3000));
  learn(coldAlways.trainer, events.slice(0, 3000));
  t.equal(evicted(cold), evicted(coldAlways), 'a cold tail: the same evictions as always');
  t.ok(warmShare(cold) < 0.5, `a cold tail's warm share: ${warmShare(cold).toFixed(2)}`);
});

/**
 * Under a binding budget a full tier grows into the bytes another tier gives back. Given back a
 * few rows at a time, the same rows went back and forth between tiers, and each step reallocated
 * a whole tier: ml-latest-small with --cross-user-item at 2.5 MiB reallocated tier 8 16,981 times.
 */
import t from 'tap';
import { PmeController } from '../../src/engine/pme/controller.js';
import { Trainer } from '../../src/engine/trainer/index.js';
import { EmbeddingStore } from '../../src/store/index.js';
import { ManualClock } from '../../src/util/clock.js';
import { zipfStream } from '../helpers/zipf-stream.js';

t.test('a binding budget does not move rows back and forth between tiers', async (t) => {
  // Every event brings a new user × item pair at size 0 beside items at the start size 8, as
  // --cross-user-item does: both tiers keep asking for room.
  const events = zipfStream(20_000, { seed: 3, users: 600, items: 5000, genres: 20 });
  for (const budget of [300_000, 1_000_000]) {
    const clock = new ManualClock(0);
    const store = new EmbeddingStore({
      ladder: [0, 2, 4, 8, 16, 32],
      startSize: 8,
      budgetBytes: budget,
      seed: 1,
      clock,
    });
    const pme = new PmeController(store, { windowEvents: 5000, clock });
    const trainer = new Trainer(store, { seed: 1, clock, observer: pme, crossUserItem: true });
    pme.attach(trainer);
    let evicted = 0;
    store.onEvict(() => evicted++);
    const start = store.tiers[3];
    let slab = start.ids;
    let reallocations = 0;
    for (const event of events) {
      trainer.learn([event]);
      if (pme.running) await pme.running;
      if (start.ids !== slab) reallocations++;
      slab = start.ids;
    }
    t.ok(evicted > events.length / 2, `budget ${budget}: it binds (${evicted} evictions)`);
    t.ok(store.accounting().totalBytes <= budget, `budget ${budget}: it holds`);
    // Before: a reallocation every 2.5 events at 300,000 bytes (8,030), now every 33 (597).
    t.ok(
      reallocations < events.length / 10,
      `budget ${budget}: tier 8 reallocated ${reallocations} times in ${events.length} events`,
    );
  }
});

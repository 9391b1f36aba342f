/**
 * No budget, ladder or start size stops training with PME on (issue 17, point 3): over random
 * cases, every batch and window completes, the budget holds after each, and what the budget could
 * not hold is refused and counted (a new token not created, a move not made), never thrown.
 */
import t from 'tap';
import type { Interaction } from '../../src/data/event.js';
import { PmeController } from '../../src/engine/pme/controller.js';
import { Trainer } from '../../src/engine/trainer/index.js';
import { EmbeddingStore } from '../../src/store/index.js';
import { ManualClock } from '../../src/util/clock.js';
import { createRandom } from '../../src/util/random.js';
import { zipfStream } from '../helpers/zipf-stream.js';

/** Zipf events with a genre field (a third kind of token), under an affinity of their own. */
function stream(n: number, seed: number): Interaction[] {
  return zipfStream(n, {
    seed,
    users: 400,
    items: 300,
    genres: 7,
    likes: (u, it) => (u + it) % 3 === 0,
    noise: 0.1,
  });
}

t.test('random budgets, ladders and start sizes: training never stops, the budget holds', async (t) => {
  const random = createRandom(17);
  const events = stream(3000, 3);
  let refusedSomewhere = 0;
  for (let c = 0; c < 24; c++) {
    const D = [8, 16, 32][random.int(3)];
    const ladder = [0, ...[2, 4, 8, 16].filter((s) => s < D && random.next() < 0.6), D];
    const startSize = ladder[random.int(ladder.length)];
    // From far too small for a single event to comfortable.
    const budget = Math.round(200 * 2 ** (random.next() * 10));
    const name = `case ${c}: D ${D}, ladder ${ladder}, start ${startSize}, budget ${budget}`;
    const clock = new ManualClock(0);
    const store = new EmbeddingStore({
      ladder,
      startSize,
      budgetBytes: budget,
      seed: c,
      clock,
      chunkRows: 16,
    });
    const pme = new PmeController(store, { windowEvents: 500, hotThreshold: 3, chunk: 64, clock });
    const trainer = new Trainer(store, { seed: c, clock, observer: pme });
    pme.attach(trainer);
    let ok = true;
    try {
      for (let i = 0; i < events.length; i += 100) {
        trainer.learn(events.slice(i, i + 100));
        if (pme.running) await pme.running;
        if (store.accounting().totalBytes > budget) ok = false;
      }
    } catch (error) {
      t.fail(`${name}: ${(error as Error).message}`);
      continue;
    }
    t.ok(ok, `${name}: the budget held after every batch and window`);
    t.equal(trainer.stats().learned, events.length, `${name}: every event learned`);
    refusedSomewhere += store.refused;
  }
  t.ok(refusedSomewhere > 0, 'some budgets were too small to hold every new token (and said so)');
});

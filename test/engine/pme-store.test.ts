import t from 'tap';
import { PmeController } from '../../src/engine/pme/controller.js';
import { Trainer } from '../../src/engine/trainer/index.js';
import { EmbeddingStore } from '../../src/store/index.js';
import { ManualClock } from '../../src/util/clock.js';
import { zipfStream } from '../helpers/zipf-stream.js';

const stream = (n: number, seed: number) => zipfStream(n, { seed, users: 300, items: 400 });

t.test(
  'with the real store: the budget holds after every batch and window, and slack is not read as full',
  async (t) => {
    const clock = new ManualClock(0);
    const budget = 400_000;
    const store = new EmbeddingStore({
      ladder: [0, 2, 4, 8, 16, 32],
      startSize: 8,
      budgetBytes: budget,
      clock,
      chunkRows: 512,
    });
    // The budget alone decides sizes here (target 1: prune only what it needs).
    const pme = new PmeController(store, { windowEvents: 4000, hotThreshold: 8, target: 1, clock });
    const trainer = new Trainer(store, { clock, observer: pme, seed: 1 });
    pme.attach(trainer);
    const events = stream(24000, 4);
    for (let i = 0; i < events.length; i += 250) {
      trainer.learn(events.slice(i, i + 250));
      if (pme.running) await pme.running;
      t.ok(store.accounting().totalBytes <= budget, 'budget holds');
    }
    const reports = pme.reports();
    t.ok(reports.length >= 4, `${reports.length} windows`);
    for (const r of reports) {
      t.ok(r.totalBytesAfter <= budget, `window ${r.id}: ${r.totalBytesAfter} <= ${budget}`);
      // The old accounting sized windows on capacity: with chunked slabs the top tier's slack made
      // every window look full and every searched token went to size 0.
      if (r.searched > 0)
        t.ok(Number.isFinite(r.threshold), `window ${r.id} kept dims (threshold ${r.threshold})`);
    }
    const after = store.accounting().tiers;
    t.ok(
      after[after.length - 1].tokens + after[after.length - 2].tokens > 0,
      'some hot tokens keep large sizes',
    );
    t.ok(trainer.stats().auc > 0.55, `progressive AUC ${trainer.stats().auc}`);
  },
);

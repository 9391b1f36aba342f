/**
 * The popularity-scaled baseline (issue 18, point 3): MDE's rule on running counts, run online at
 * PME's windows and byte limit. Popular tokens get larger rows than rare ones of the same field,
 * the rows fit the target, and a moved token keeps the scores it had as well as its size allows.
 */
import t from 'tap';
import type { Interaction } from '../../src/data/event.js';
import { PopularitySizes } from '../../src/engine/pme/popularity.js';
import { Trainer } from '../../src/engine/trainer/index.js';
import { EmbeddingStore } from '../../src/store/index.js';
import { ManualClock } from '../../src/util/clock.js';
import { zipfStream } from '../helpers/zipf-stream.js';

const LADDER = [0, 2, 4, 8, 16, 32];

async function run(events: Interaction[], target: number, budgetBytes = Number.POSITIVE_INFINITY) {
  const clock = new ManualClock(0);
  const store = new EmbeddingStore({ ladder: LADDER, startSize: 8, seed: 1, clock, budgetBytes });
  const sizer = new PopularitySizes(store, { windowEvents: 3000, target });
  const trainer = new Trainer(store, { seed: 1, clock, observer: sizer });
  sizer.attach(trainer);
  for (let i = 0; i < events.length; i += 250) {
    clock.advance(1000);
    trainer.learn(events.slice(i, i + 250));
  }
  return { store, sizer, trainer };
}

const tokens = (store: EmbeddingStore) => {
  const out: { field: string; count: number; size: number }[] = [];
  for (const size of LADDER)
    store.forEachInTier(size, (id) => out.push({ field: store.field(id), count: store.frequency[id], size }));
  return out;
};

// A row at the start size (8 of 32) costs 17.5% of one at D: a 12% target makes every resize shrink.
t.test('sizes follow running counts within each field, and the rows fit the target', async (t) => {
  const { store, sizer, trainer } = await run(zipfStream(12_000, { seed: 2, users: 400, items: 300 }), 0.12);
  const reports = sizer.reports();
  t.equal(reports.length, 4, 'a resize every 3000 events');
  t.ok(
    reports.every((r) => r.shrunk > 0),
    `every resize shrank tokens: ${reports.map((r) => r.shrunk)}`,
  );
  t.ok(
    reports.some((r) => r.grown > 0),
    `popular tokens grew: ${reports.map((r) => r.grown)}`,
  );
  // At the last resize (no event learned since): within a field, a token counted more often is
  // never smaller than one counted less.
  const live = tokens(store);
  for (const field of ['user', 'item']) {
    const of = live.filter((x) => x.field === field).sort((a, b) => b.count - a.count);
    let inversions = 0;
    for (let k = 1; k < of.length; k++)
      if (of[k].count < of[k - 1].count && of[k].size > of[k - 1].size) inversions++;
    t.equal(inversions, 0, `${field}: sizes fall with the count (${of.length} tokens)`);
    t.ok(of[0].size > of[of.length - 1].size, `${field}: the most popular is larger than the rarest`);
  }
  const rows = live.reduce((sum, x) => sum + store.bytesPerRow(x.size), 0);
  const limit = 0.12 * live.length * store.bytesPerRow(32);
  t.ok(rows <= limit, `${rows} bytes of rows within the target's ${Math.round(limit)}`);
  t.equal(trainer.stats().learned, 12_000);
});

t.test('under a binding budget it learns every event and holds the budget', async (t) => {
  const budget = 60_000;
  const { store, sizer, trainer } = await run(
    zipfStream(12_000, { seed: 3, users: 400, items: 300 }),
    1,
    budget,
  );
  t.ok(sizer.reports().length > 0);
  t.ok(store.accounting().totalBytes <= budget, `${store.accounting().totalBytes} bytes <= ${budget}`);
  t.equal(trainer.stats().learned, 12_000);
});

t.test('a moved token keeps its D-space vector as well as its new size holds it', async (t) => {
  const events = zipfStream(2999, { seed: 4, users: 200, items: 150 });
  const { store, sizer, trainer } = await run(events, 0.12);
  const model = trainer.model;
  const keys = tokens(store).length;
  t.ok(keys > 0);
  const before = new Map<number, Float64Array>();
  for (const size of LADDER)
    store.forEachInTier(size, (id) => {
      const v = new Float64Array(store.dim);
      model.vectorOf(id, v);
      before.set(id, v);
    });
  const report = sizer.resize();
  t.ok(report.shrunk > 0, `${report.shrunk} tokens shrunk`);
  // Shrunk tokens keep most of their vector: the relative error of least squares onto the tier's
  // projection, far below the 1 of a row dropped.
  let err = 0;
  let n = 0;
  const v = new Float64Array(store.dim);
  for (const [id, old] of before) {
    model.vectorOf(id, v);
    let num = 0;
    let den = 0;
    for (let d = 0; d < v.length; d++) {
      num += (v[d] - old[d]) ** 2;
      den += old[d] ** 2;
    }
    if (den > 0 && num > 0) {
      err += Math.sqrt(num / den);
      n++;
    }
  }
  t.ok(n > 0, `${n} vectors changed`);
  t.ok(err / n < 0.9, `mean relative change ${(err / n).toFixed(3)}`);
});

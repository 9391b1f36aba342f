import t from 'tap';
import { PmeController } from '../../src/engine/pme/controller.js';
import { Trainer } from '../../src/engine/trainer/index.js';
import { EmbeddingStore } from '../../src/store/index.js';
import { fnv1a } from '../../src/util/hash.js';
import { dotStream } from '../helpers/dot-stream.js';

// The base size (controller.ts #fill): raised while the target has room for every token below D
// at a larger size, stepped down when memory turns short.
const LADDER = [0, 2, 4, 8, 16];
const D = 16;

/** 20 hot users among 300. */
const stream = (n: number, seed: number, prefix = '') => dotStream(n, seed, 300, prefix);

function setup(
  options: { target: number; fill?: boolean; fillWarmest?: boolean },
  budgetBytes = Number.POSITIVE_INFINITY,
) {
  const store = new EmbeddingStore({ ladder: LADDER, startSize: 2, chunkRows: 64, budgetBytes });
  const pme = new PmeController(store, { windowEvents: 0, hotThreshold: 30, ...options });
  const trainer = new Trainer(store, { observer: pme, seed: 1 });
  pme.attach(trainer);
  return { store, pme, trainer };
}

const sizes = (store: EmbeddingStore) => {
  const out: number[] = [];
  for (const tier of store.tiers) for (let k = 0; k < tier.count; k++) out.push(tier.size);
  return out;
};

t.test('with room in the target, a window raises the base: tokens move up with their vectors', async (t) => {
  const { store, pme, trainer } = setup({ target: 0.6 });
  trainer.learn(stream(4000, 1));
  const probe = stream(200, 9);
  const before = trainer.predict(probe);
  t.ok(
    sizes(store).some((s) => s === 2),
    'tokens at the start size before the window',
  );
  const rowsBefore = new Map<number, Float32Array>();
  store.forEachInTier(2, (id) => void rowsBefore.set(id, store.row(id).slice()));
  const report = await pme.runWindow('test');
  t.ok(report.baseSize > 2, `base raised to ${report.baseSize}`);
  t.ok(report.raised > 0, `${report.raised} tokens raised`);
  // Into a nested tier a raised row keeps its dims exactly; only the new ones get noise.
  let raised = 0;
  let kept = 0;
  let noisy = 0;
  for (const [id, old] of rowsBefore) {
    if (!store.alive(id) || store.sizeOf(id) <= 2) continue;
    raised++;
    const row = store.row(id);
    if (row[0] === old[0] && row[1] === old[1]) kept++;
    if (row.subarray(2).some((x) => x !== 0)) noisy++;
  }
  t.ok(raised > 0, `${raised} tokens raised from the start size`);
  t.equal(kept, raised, 'every raised row keeps its first dims');
  t.equal(noisy, raised, 'every raised row has noise in its new dims');
  t.ok(
    sizes(store).every((s) => s >= report.baseSize),
    'no token below the base after the window',
  );
  t.equal(store.createSize, report.baseSize, 'new tokens start at the base');
  const id = store.getOrCreate('user\u0000new');
  t.equal(store.sizeOf(id), report.baseSize);
  // Least squares from the D-space vectors (plus small noise): scores barely move.
  const after = trainer.predict(probe);
  const worst = Math.max(...after.map((p, i) => Math.abs(p - before[i])));
  t.ok(worst < 0.05, `largest score change ${worst.toFixed(4)} < 0.05`);
  const acc = store.accounting();
  let rows = 0;
  for (const tier of acc.tiers) rows += tier.tokens * store.bytesPerRow(tier.size);
  t.ok(rows <= 0.6 * acc.tokens * store.bytesPerRow(D), 'the rows stay within the target');
});

t.test('fill off: the base stays at the start size', async (t) => {
  const { store, pme, trainer } = setup({ target: 0.6, fill: false });
  trainer.learn(stream(4000, 1));
  const report = await pme.runWindow('test');
  t.equal(report.baseSize, 2);
  t.equal(report.raised, 0);
  t.equal(store.createSize, 2);
});

t.test('when memory turns short the base steps down, and a restart keeps it', async (t) => {
  // The first stream's 339 tokens fit 100 kB at the base; 300 new users outgrow it.
  const { store, pme, trainer } = setup({ target: 0.6 }, 100_000);
  trainer.learn(stream(4000, 1));
  const first = await pme.runWindow('test');
  t.ok(first.baseSize > 2, `base raised to ${first.baseSize}`);
  // New users outgrow the budget: relief steps the coldest down, which makes memory short.
  trainer.learn(stream(2000, 2, 'x'));
  t.ok(pme.reliefMoves > 0, `relief moved ${pme.reliefMoves} tokens`);
  const second = await pme.runWindow('test');
  t.equal(second.baseSize, LADDER[LADDER.indexOf(first.baseSize) - 1], 'one size down');
  t.equal(store.createSize, second.baseSize);

  // The base is PME state: a controller restored from the snapshot sections creates at it.
  const state = pme.exportState();
  const restored = new EmbeddingStore({ ladder: LADDER, startSize: 2 });
  const again = new PmeController(restored, { windowEvents: 0, hotThreshold: 30, target: 0.6 });
  t.equal(restored.createSize, 2);
  again.importState(state);
  t.equal(restored.createSize, second.baseSize, 'restored: new tokens start at the base');
});

t.test('the room the base leaves goes to the warmest tokens at the base, one size up', async (t) => {
  const TARGET = 0.3;
  const run = async (fillWarmest: boolean) => {
    const { store, pme, trainer } = setup({ target: TARGET, fillWarmest });
    trainer.learn(stream(4000, 1));
    const report = await pme.runWindow('test');
    const inTier = (size: number) => {
      const ids: number[] = [];
      store.forEachInTier(size, (id) => void ids.push(id));
      return ids;
    };
    const rows = () => {
      let bytes = 0;
      for (const tier of store.accounting().tiers) bytes += tier.tokens * store.bytesPerRow(tier.size);
      return bytes;
    };
    return { store, pme, trainer, report, inTier, rows };
  };
  const without = await run(false);
  const { store, pme, trainer, report, inTier, rows } = await run(true);
  t.equal(report.baseSize, without.report.baseSize, 'the same base');
  const up = LADDER[LADDER.indexOf(report.baseSize) + 1];
  t.ok(up < D, `base ${report.baseSize}, one size up ${up} is below D`);
  t.equal(without.inTier(up).length, 0, 'without it no token is one size above the base');
  const raised = inTier(up);
  t.ok(raised.length > 0, `${raised.length} tokens raised to ${up}`);
  t.ok(report.raised >= raised.length, 'counted as raised');
  const warmth = (id: number) => pme.sketch.estimate(fnv1a(store.key(id)) | 1);
  const coolestRaised = Math.min(...raised.map(warmth));
  const warmestLeft = Math.max(...inTier(report.baseSize).map(warmth));
  // Warmest first, to within the 1/256 of a doubling its buckets are.
  t.ok(
    coolestRaised * 2 ** (1 / 256) >= warmestLeft,
    `warmest first: ${coolestRaised.toFixed(3)} against ${warmestLeft.toFixed(3)} left`,
  );
  const limitNow = () => TARGET * store.accounting().tokens * store.bytesPerRow(D);
  const limit = limitNow();
  t.ok(without.rows() < 0.9 * limit, `without it the rows leave room: ${without.rows()} of ${limit}`);
  t.ok(rows() <= limit && rows() > 0.95 * limit, `the rows fill the target: ${rows()} of ${limit}`);
  // The next window, on the same stream, keeps the base (the raised tokens count at the base
  // when it decides whether memory is short).
  trainer.learn(stream(1000, 3));
  const next = await pme.runWindow('test');
  t.equal(next.baseSize, report.baseSize, 'the base stays');
  t.ok(rows() <= limitNow(), `and the rows within the target: ${rows()} of ${limitNow()}`);
});

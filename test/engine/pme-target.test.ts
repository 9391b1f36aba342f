/**
 * PME owns memory (issue 17, point 1): every window prunes the searched tokens to a target share of
 * full size whether or not the budget binds, so a token at D leaves D; and when the budget needs
 * room between windows, the store asks PME first, which steps the coldest tokens down with their
 * vectors carried by least squares. The store's own truncation is the last resort, counted.
 */
import t from 'tap';
import type { Interaction } from '../../src/data/event.js';
import { PmeController } from '../../src/engine/pme/controller.js';
import { Trainer } from '../../src/engine/trainer/index.js';
import { EmbeddingStore } from '../../src/store/index.js';
import { ManualClock } from '../../src/util/clock.js';
import { zipfStream } from '../helpers/zipf-stream.js';

const LADDER = [0, 2, 4, 8, 16, 32];

const stream = (n: number, seed: number): Interaction[] => zipfStream(n, { seed, users: 400, items: 300 });

async function run(store: EmbeddingStore, clock: ManualClock, events: Interaction[], target: number) {
  const pme = new PmeController(store, { windowEvents: 3000, hotThreshold: 8, target, clock });
  const trainer = new Trainer(store, { seed: 1, clock, observer: pme });
  pme.attach(trainer);
  for (let i = 0; i < events.length; i += 250) {
    clock.advance(1000);
    trainer.learn(events.slice(i, i + 250));
    await pme.running;
  }
  return { pme, trainer };
}

t.test('without a budget, every window prunes to the target, and tokens leave D', async (t) => {
  const clock = new ManualClock(0);
  const store = new EmbeddingStore({ ladder: LADDER, startSize: 8, seed: 1, clock });
  // A target of 20%: tokens at the start size (8) take 17.5% of full, so the searched ones must
  // give most of their dimensions back.
  const { pme } = await run(store, clock, stream(21_000, 2), 0.2);
  const reports = pme.reports();
  t.ok(reports.length >= 6, `${reports.length} windows`);
  const moved = reports.reduce((sum, r) => sum + r.moved, 0);
  t.ok(moved > 0, `${moved} searched tokens pruned (there is no budget to bind)`);
  for (const r of reports) {
    // What a window leaves in rows is within the target: 20% of the live tokens' rows all at D.
    const tokens = r.after.reduce((sum, tier) => sum + tier.tokens, 0);
    const rows = r.after.reduce((sum, tier) => sum + tier.tokens * store.bytesPerRow(tier.size), 0);
    const target = 0.2 * tokens * store.bytesPerRow(32);
    t.ok(rows <= target + 1, `window ${r.id}: ${rows} bytes of rows, target ${Math.round(target)}`);
  }
  t.ok(
    reports.some((r) => r.searched > 0 && r.moved > 0),
    'searched tokens at D left D',
  );
});

t.test(
  'budget pressure between windows: PME steps the coldest down first, the store truncates last',
  async (t) => {
    const clock = new ManualClock(0);
    const budget = 90_000;
    const store = new EmbeddingStore({
      ladder: LADDER,
      startSize: 8,
      budgetBytes: budget,
      seed: 1,
      clock,
      chunkRows: 64,
    });
    const { pme, trainer } = await run(store, clock, stream(15_000, 3), 1);
    t.ok(pme.reliefMoves > 0, `${pme.reliefMoves} tokens stepped down for the budget by PME`);
    t.equal(store.lastResort.demoted, 0, 'no truncating demotion while PME had tokens to step down');
    t.ok(store.accounting().totalBytes <= budget, 'the budget held');
    t.equal(trainer.stats().learned, 15_000);
  },
);

t.test('a relieved token keeps its vector as well as its new size can hold it', async (t) => {
  const clock = new ManualClock(0);
  // Tokens made at 16, above the start size (8), which is as far down as the relief goes.
  const store = new EmbeddingStore({ ladder: LADDER, startSize: 8, seed: 1, clock });
  const events = stream(4000, 4);
  for (const e of events) for (const key of [`user=${e.user}`, `item=${e.item}`]) store.getOrCreate(key, 16);
  const pme = new PmeController(store, { windowEvents: 0, hotThreshold: 1e9, clock });
  const trainer = new Trainer(store, { seed: 1, clock, observer: pme });
  pme.attach(trainer);
  trainer.learn(events);
  const D = 32;
  const old = new Map<number, { row: Float32Array; v: Float64Array }>();
  for (const id of store.lruOrder(16)) {
    const v = new Float64Array(D);
    trainer.model.vectorOf(id, v);
    old.set(id, { row: store.row(id).slice(), v });
  }
  // One step down each for 20 tokens, the coldest first (a token moved is kept from moving again).
  const done = new Set<number>();
  for (let k = 0; k < 20; k++) {
    const before = new Set(store.lruOrder(8));
    t.equal(
      pme.relieve(store.bytesPerRow(16) - store.bytesPerRow(8), (id) => done.has(id)),
      1,
    );
    for (const id of store.lruOrder(8)) if (!before.has(id)) done.add(id);
  }
  let carried = 0;
  let truncated = 0;
  let norm = 0;
  let count = 0;
  for (const [id, { row, v }] of old) {
    const s = store.sizeOf(id);
    if (s === 16) continue;
    count++;
    const after = new Float64Array(D);
    trainer.model.vectorOf(id, after);
    // Truncation to the new size: the old row's first s values through P_s (none at 0).
    const P = trainer.model.projections[LADDER.indexOf(s)];
    const cut = new Float64Array(D);
    if (P !== null) for (let i = 0; i < s; i++) for (let d = 0; d < D; d++) cut[d] += row[i] * P[i * D + d];
    for (let d = 0; d < D; d++) {
      carried += (after[d] - v[d]) ** 2;
      truncated += (cut[d] - v[d]) ** 2;
      norm += v[d] ** 2;
    }
  }
  t.ok(count > 0, `${count} tokens stepped down`);
  t.ok(
    carried < truncated,
    `least squares ${Math.sqrt(carried / norm).toFixed(3)} vs truncation ${Math.sqrt(truncated / norm).toFixed(3)} (relative error)`,
  );
});

t.test('a token pruned into a nested tier keeps its first dims as they were', async (t) => {
  const clock = new ManualClock(0);
  const store = new EmbeddingStore({ ladder: LADDER, startSize: 8, seed: 1, clock });
  // Least squares on the vector (partnerRidge Infinity), which into a nested tier is truncation.
  const pme = new PmeController(store, {
    windowEvents: 0,
    hotThreshold: 8,
    target: 0.2,
    partnerRidge: Number.POSITIVE_INFINITY,
    clock,
  });
  const trainer = new Trainer(store, { seed: 1, clock, observer: pme });
  pme.attach(trainer);
  const events = stream(12_000, 3);
  for (let i = 0; i < events.length; i += 250) trainer.learn(events.slice(i, i + 250));
  // The first window promotes the hot tokens; the second prunes them.
  await pme.runWindow('test');
  for (let i = 0; i < events.length; i += 250) trainer.learn(events.slice(i, i + 250));
  const D = 32;
  const top = store.tiers[LADDER.indexOf(D)];
  const before = new Map<number, Float32Array>();
  store.forEachInTier(D, (id) => {
    const at = store.slotOf[id] * D;
    before.set(id, top.params.slice(at, at + D));
  });
  t.ok(before.size > 10, `${before.size} tokens searched at D`);
  const report = await pme.runWindow('test');
  let pruned = 0;
  for (const [id, was] of before) {
    const s = store.sizeOf(id);
    if (s === D || s === 0) continue;
    pruned++;
    const tier = store.tiers[store.tierOf[id]];
    const row = Array.from(tier.params.subarray(store.slotOf[id] * s, (store.slotOf[id] + 1) * s));
    t.strictSame(row, Array.from(was.subarray(0, s)), `token ${id}: its first ${s} dims as they were`);
  }
  t.ok(pruned > 0 && report.moved >= pruned, `${pruned} searched tokens pruned below D`);
});

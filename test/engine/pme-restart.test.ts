/**
 * PME's state in the snapshot (issue 17, point 5): a run stopped half-way and restored from a
 * snapshot file goes on exactly as one that was never stopped, with PME searching, pruning and
 * demoting under a budget that binds: the same promotions, windows and moves, bit for bit.
 */
import t from 'tap';
import type { Interaction } from '../../src/data/event.js';
import { learnInSlices } from '../../src/engine/pacing.js';
import { PmeController } from '../../src/engine/pme/controller.js';
import { Trainer } from '../../src/engine/trainer/index.js';
import { StateLock } from '../../src/service/lock.js';
import { applyRestored, takeSnapshot } from '../../src/service/state.js';
import { EmbeddingStore, readSnapshot } from '../../src/store/index.js';
import { ManualClock, systemClock } from '../../src/util/clock.js';
import { tempDir } from '../helpers/temp-dir.js';
import { zipfStream } from '../helpers/zipf-stream.js';

const stream = (n: number, users = 500, items = 400): Interaction[] =>
  zipfStream(n, { seed: 9, users, items, genres: 9 });

const BUDGET = 150_000;
const PME = { windowEvents: 2000, hotThreshold: 6, chunk: 64 };

function build(store: EmbeddingStore, clock: ManualClock) {
  const pme = new PmeController(store, { ...PME, clock });
  const trainer = new Trainer(store, { seed: 3, clock, observer: pme });
  pme.attach(trainer);
  return { pme, trainer };
}

async function learn(
  parts: { trainer: Trainer; pme: PmeController },
  events: Interaction[],
  clock: ManualClock,
): Promise<void> {
  for (let i = 0; i < events.length; i += 250) {
    clock.advance(1000);
    parts.trainer.learn(events.slice(i, i + 250));
    await parts.pme.running;
  }
}

t.test(
  'a restart from a snapshot goes on as an uninterrupted run, PME and a binding budget included',
  async (t) => {
    const events = stream(16_000);
    const half = 8000;
    const options = {
      ladder: [0, 2, 4, 8, 16, 32],
      startSize: 8,
      budgetBytes: BUDGET,
      seed: 3,
      chunkRows: 64,
    };

    const cleanClock = new ManualClock(0);
    const cleanStore = new EmbeddingStore({ ...options, clock: cleanClock });
    const clean = build(cleanStore, cleanClock);
    await learn(clean, events, cleanClock);

    const clock = new ManualClock(0);
    const first = build(new EmbeddingStore({ ...options, clock }), clock);
    await learn(first, events.slice(0, half), clock);
    const dir = await tempDir(t, 'pme-restart-');
    await takeSnapshot(
      dir,
      first.trainer.store as EmbeddingStore,
      first.trainer,
      first.pme,
      new StateLock(),
      () => ({}),
    );
    const { store, extra } = await readSnapshot(dir, { clock });
    const second = build(store, clock);
    applyRestored(second.trainer, extra);
    second.pme.importState(extra);
    await learn(second, events.slice(half), clock);

    const reports = clean.pme.reports();
    t.ok(reports.length >= 7, `${reports.length} windows ran`);
    t.ok(
      reports.some((r) => r.moved + r.demoted > 0),
      'the windows moved tokens',
    );
    t.ok(cleanStore.accounting().totalBytes <= BUDGET, 'the budget held');
    t.same(
      second.pme.reports().map((r) => [r.id, r.searched, r.moved, r.demoted, r.promoted, r.probe]),
      reports.map((r) => [r.id, r.searched, r.moved, r.demoted, r.promoted, r.probe]),
      // The probe's events too: they size and carry the window's tokens.
      'the same windows, with the same moves and the same probe',
    );
    t.equal(second.trainer.stats().learned, clean.trainer.stats().learned);
    const a = cleanStore.exportState();
    const b = store.exportState();
    t.same(b.keys, a.keys, 'the same tokens in the same ids');
    t.same(b.tierOf, a.tierOf, 'in the same tiers');
    for (let ti = 0; ti < a.tiers.length; ti++)
      t.same(b.tiers[ti].params, a.tiers[ti].params, `tier ${a.tiers[ti].count}: the same rows`);
    t.same(b.linear, a.linear, 'the same linear weights');
    t.same(second.trainer.model.projections, clean.trainer.model.projections, 'the same projections');
    t.equal(second.trainer.model.bias, clean.trainer.model.bias);
  },
);

t.test(
  'what is learned does not depend on how fast the machine is: slices of no time and of all the time',
  async (t) => {
    const events = stream(12_000);
    const options = {
      ladder: [0, 2, 4, 8, 16, 32],
      startSize: 8,
      budgetBytes: 60_000,
      seed: 4,
      chunkRows: 64,
    };
    // The service's loop: mini-batches learned in slices, windows let finish before the next batch.
    const run = async (sliceMs: number) => {
      const store = new EmbeddingStore({ ...options, clock: systemClock });
      const pme = new PmeController(store, { ...PME, sliceMs });
      const trainer = new Trainer(store, { seed: 4, observer: pme });
      pme.attach(trainer);
      for (let i = 0; i < events.length; i += 500) {
        await pme.running;
        await learnInSlices(trainer, events.slice(i, i + 500), sliceMs);
      }
      await pme.running;
      return { store, trainer, pme };
    };
    const eager = await run(1e-9);
    const lazy = await run(Number.POSITIVE_INFINITY);
    t.ok(eager.pme.reports().length >= 5, 'windows ran');
    t.ok(eager.store.size < new Set(events.flatMap((e) => [e.user, e.item])).size, 'the budget binds');
    const a = eager.store.exportState();
    const b = lazy.store.exportState();
    t.same(b.keys, a.keys, 'the same tokens in the same ids');
    t.same(b.tierOf, a.tierOf, 'in the same tiers');
    t.same(b.linear, a.linear, 'with the same weights');
    for (let ti = 0; ti < a.tiers.length; ti++)
      t.same(b.tiers[ti].params, a.tiers[ti].params, `tier ${ti} rows`);
    t.same(lazy.trainer.model.projections, eager.trainer.model.projections, 'the same projections');
  },
);

t.test('nor on the gaps between batches: times decide order, never distance', async (t) => {
  // Enough tokens that tiers outgrow the LRU's walk of 64 and moves land mid-list.
  const events = stream(30_000, 5000, 2000);
  const options = {
    ladder: [0, 2, 4, 8, 16, 32],
    startSize: 8,
    budgetBytes: 150_000,
    seed: 5,
    chunkRows: 64,
  };
  // One machine takes 1 ms a batch; the other is slow and uneven (1 ms to 10 s).
  const run = async (gap: (batch: number) => number) => {
    const clock = new ManualClock(0);
    const store = new EmbeddingStore({ ...options, clock });
    const parts = build(store, clock);
    for (let i = 0, k = 0; i < events.length; i += 250, k++) {
      clock.advance(gap(k));
      parts.trainer.learn(events.slice(i, i + 250));
      await parts.pme.running;
    }
    return { store, ...parts };
  };
  const even = await run(() => 1);
  const uneven = await run((k) => 1 + ((k * 7919) % 10_000));
  t.ok(
    even.pme.reports().some((r) => r.moved + r.demoted > 0) || even.pme.reliefMoves > 0,
    'PME moved tokens',
  );
  t.ok(even.store.lastResort.evicted + even.pme.reliefMoves > 0, 'the budget binds');
  const a = even.store.exportState();
  const b = uneven.store.exportState();
  t.same(b.keys, a.keys, 'the same tokens in the same ids');
  t.same(b.tierOf, a.tierOf, 'in the same tiers');
  t.same(b.linear, a.linear, 'with the same weights');
  for (let ti = 0; ti < a.tiers.length; ti++)
    t.same(b.tiers[ti].params, a.tiers[ti].params, `tier ${ti} rows`);
});

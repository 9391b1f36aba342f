/**
 * Random operation sequences (create, update a row, touch, move, evict, TTL, snapshot + restore) from a
 * seeded generator, with every invariant recomputed from scratch after every step.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { EmbeddingStore, readSnapshot, type StoreOptions, writeSnapshot } from '../../src/store/index.js';
import { ManualClock } from '../../src/util/clock.js';
import { createRandom } from '../../src/util/random.js';
import { checkInvariants, diffStates } from './helpers.js';

const FIELDS = ['user', 'item', 'genre', 'device'];

async function run(t: Test, seed: number, options: Partial<StoreOptions>, steps: number): Promise<void> {
  const random = createRandom(seed);
  const clock = new ManualClock(1_000_000);
  let store = new EmbeddingStore({ ...options, clock, seed });
  const dir = await mkdtemp(join(tmpdir(), 'pme-store-prop-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const ladder = store.options.ladder;
  const counts: Record<string, number> = {};
  let policyEvictions = 0;
  let explicit = false;
  const watch = (s: EmbeddingStore): void => {
    s.onEvict(() => {
      if (!explicit) policyEvictions++;
    });
  };
  watch(store);
  let maxFill = 0;
  const pickLive = (): number => {
    if (store.size === 0) return -1;
    for (;;) {
      const id = random.int(store.idLimit);
      if (store.alive(id)) return id;
    }
  };
  for (let step = 0; step < steps; step++) {
    const r = random.next();
    let op: string;
    if (r < 0.35) {
      op = 'create';
      const key = `${FIELDS[random.int(FIELDS.length)]}=${random.int(400)}${random.next() < 0.05 ? 'é€' : ''}`;
      const size = random.next() < 0.3 ? ladder[random.int(ladder.length)] : undefined;
      store.getOrCreate(key, size);
    } else if (r < 0.5) {
      op = 'update';
      const id = pickLive();
      if (id >= 0) {
        const row = store.row(id);
        for (let j = 0; j < row.length; j++) row[j] = random.normal();
        const tier = store.tiers[store.tierOf[id]];
        const o = store.slotOf[id] * tier.size * store.options.optimizerSlots;
        for (let j = 0; j < tier.size * store.options.optimizerSlots; j++)
          tier.optimizer[o + j] += random.next();
        if (tier.importance) tier.importance[store.slotOf[id] * store.dim] += 1;
        store.linear[id] = random.normal();
        const ls = store.options.linearOptimizerSlots;
        for (let j = 0; j < ls; j++) store.linearOptimizer[id * ls + j] += random.next();
      }
    } else if (r < 0.65) {
      op = 'touch';
      clock.advance(random.int(20));
      const id = pickLive();
      if (id >= 0) store.touch(id, random.next() < 0.1 ? clock.now() - random.int(50) : clock.now());
    } else if (r < 0.8) {
      op = 'move';
      const id = pickLive();
      if (id >= 0) {
        const size = ladder[random.int(ladder.length)];
        const before = Array.from(store.row(id));
        store.move(id, size, (src, dst) => dst.set(src.subarray(0, Math.min(src.length, dst.length))));
        if (store.alive(id)) {
          const after = store.row(id);
          const n = Math.min(before.length, after.length);
          for (let j = 0; j < n; j++) {
            if (after[j] !== before[j]) throw new Error(`step ${step}: move lost value ${j} of ${id}`);
          }
        }
      }
    } else if (r < 0.87) {
      op = 'evict';
      const id = pickLive();
      explicit = true;
      if (id >= 0) store.evict(id);
      explicit = false;
    } else if (r < 0.92) {
      op = 'ttl';
      clock.advance(random.int(100));
      explicit = true;
      store.evictExpired(clock.now());
      explicit = false;
    } else if (r < 0.94) {
      op = 'decay';
      store.decayFrequencies(0.9);
    } else if (r < 0.95) {
      op = 'compact';
      store.compact();
    } else {
      op = 'snapshot';
      const engineBlob = new Float32Array([step, seed, Math.PI]);
      await writeSnapshot(store, dir, { dense: engineBlob });
      const { store: restored, extra } = await readSnapshot(dir, { clock });
      const diff = diffStates(store.exportState(), restored.exportState());
      if (diff !== null) throw new Error(`step ${step}: restore differs: ${diff}`);
      const blob = new Float32Array(extra.dense.buffer, extra.dense.byteOffset, 3);
      if (blob[0] !== step || blob[2] !== engineBlob[2]) throw new Error('extra did not round-trip');
      store = restored; // go on with the restored store: it must behave like the original
      watch(store);
    }
    counts[op] = (counts[op] ?? 0) + 1;
    maxFill = Math.max(maxFill, store.accounting().totalBytes / store.options.budgetBytes);
    const broken = checkInvariants(store);
    if (broken !== null) {
      t.fail(`seed ${seed}, step ${step} (${op}): ${broken}`);
      return;
    }
  }
  t.pass(`seed ${seed}: ${steps} steps, ${JSON.stringify(counts)}, ${store.size} tokens at the end`);
  t.ok(
    (counts.snapshot ?? 0) > 0 && (counts.move ?? 0) > 0 && (counts.evict ?? 0) > 0,
    'every kind of step ran',
  );
  if (Number.isFinite(store.options.budgetBytes)) {
    t.ok(maxFill > 0.9, `the budget was reached (max fill ${maxFill.toFixed(3)})`);
    t.ok(policyEvictions > 0, `the budget policy evicted ${policyEvictions} tokens`);
  }
}

t.test('no budget', (t) => run(t, 1, { chunkRows: 16, ttlMs: 400 }, 1500));
t.test('no budget, Adam slots, no importance', (t) =>
  run(t, 2, { chunkRows: 5, optimizerSlots: 2, importance: false, ladder: [0, 3, 12], startSize: 3 }, 1500),
);
t.test('tight budget, FTRL linear slots (z and n per token)', (t) =>
  run(t, 5, { chunkRows: 8, budgetBytes: 30_000, ttlMs: 5000, linearOptimizerSlots: 2 }, 2000),
);
t.test('tight budget (policy runs often)', (t) =>
  run(t, 3, { chunkRows: 8, budgetBytes: 30_000, ttlMs: 5000 }, 2000),
);
t.test('very tight budget, chunk of 1', (t) =>
  run(t, 4, { chunkRows: 1, budgetBytes: 9_000, ladder: [0, 2, 4, 8], startSize: 4 }, 2000),
);

t.test('the same operations on a restored store give the same state as on the original', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'pme-store-det-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const clock = new ManualClock(0);
  const a = new EmbeddingStore({ clock, chunkRows: 4, budgetBytes: 30_000 });
  for (let i = 0; i < 50; i++) a.touch(a.getOrCreate(`user=${i}`), i);
  await writeSnapshot(a, dir);
  const { store: b } = await readSnapshot(dir, { clock });
  for (const s of [a, b]) {
    const random = createRandom(9);
    for (let i = 0; i < 300; i++) {
      const id = s.getOrCreate(`item=${random.int(500)}`);
      s.touch(id, 100 + i);
      if (i % 7 === 0) s.move(id, 64, (src, dst) => dst.set(src));
    }
  }
  t.equal(diffStates(a.exportState(), b.exportState()), null, 'identical, including new rows');
});

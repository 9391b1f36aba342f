import t from 'tap';
import { FmModel } from '../../src/engine/model/fm.js';
import { logloss, sigmoid } from '../../src/engine/model/math.js';
import type { ModelStore } from '../../src/engine/model/model.js';
import { TierLeastSquares } from '../../src/engine/pme/prune.js';
import { exportTrainerState, importTrainerState } from '../../src/engine/state.js';
import { Trainer } from '../../src/engine/trainer/index.js';
import { EmbeddingStore } from '../../src/store/index.js';
import { ManualClock } from '../../src/util/clock.js';
import { fakeStore } from './fake-store.js';
import { exactSgd, pairwiseLogit, touchedSquares } from './fm-objective.js';
import { planted } from './planted.js';

// Nested (prefix) projections: a row of size s is the first s dims of its D-space vector, the rest
// 0, and P_s is never learned. Every size of the ladder, five tokens of size 2, and a size-0
// token; at D = 64 (BIG) a learned model would share the size-2 tier's projection (fm.ts' #shares).
const D = 8;
const LADDER = [0, 2, 4, 8];
const SIZES = [8, 4, 2, 0, 4, 2, 2, 2, 2];
const IDS = Int32Array.from(SIZES.keys());
const BIG = { D: 64, ladder: [0, 2, 4, 8, 16, 32, 64], sizes: [64, 4, 2, 0, 16, 2, 2, 2, 2, 32, 8] };
const L2 = 0.01;

const SGD = exactSgd(L2);

/** The row of a token zero-padded to D, straight from the store (not through the model). */
function padded(store: ModelStore, id: number): Float64Array {
  const tier = store.tiers[store.tierOf[id]];
  const s = tier.size;
  const v = new Float64Array(store.dim);
  for (let i = 0; i < s; i++) v[i] = tier.params[store.slotOf[id] * s + i];
  return v;
}

/** The FM's logit over zero-padded rows, pair by pair. */
function paddedLogit(model: FmModel, ids: Int32Array): number {
  return pairwiseLogit(
    model,
    ids,
    Array.from(ids, (id) => padded(model.store, id)),
  );
}

/** The objective the update descends: logloss + L2/2 on the touched rows and weights. */
function objective(model: FmModel, label: number): number {
  return logloss(sigmoid(paddedLogit(model, IDS)), label) + (L2 / 2) * touchedSquares(model.store, IDS);
}

for (const kernels of ['auto', 'js'] as const) {
  for (const shape of [{ D, ladder: LADDER, sizes: SIZES }, BIG])
    t.test(
      `nested (${kernels} kernels, D ${shape.D}): no projection, scores are the zero-padded rows'`,
      async (t) => {
        const ids = Int32Array.from(shape.sizes.keys());
        const model = new FmModel(fakeStore(shape.D, shape.ladder, shape.sizes, 3), {
          projection: 'nested',
          kernels,
        });
        t.ok(
          model.projections.every((P) => P === null),
          'no tier has a projection',
        );
        t.same(model.stats().projection, 'nested');
        const v = new Float64Array(shape.D);
        for (let step = 0; step < 20; step++) {
          // Events of several token subsets, each ending a mini-batch (where learned P_s would step).
          const n = 3 + (step % (ids.length - 2));
          const expected = sigmoid(paddedLogit(model, ids.subarray(0, n)));
          t.ok(Math.abs(model.step(ids, n, step % 3 === 0 ? 0 : 1) - expected) < 1e-9);
          model.flush();
        }
        t.ok(Math.abs(model.predict(ids, ids.length) - sigmoid(paddedLogit(model, ids))) < 1e-9);
        for (const id of ids) {
          model.vectorOf(id, v);
          t.strictSame(Array.from(v), Array.from(padded(model.store, id)), `token ${id}: v = [e, 0, …]`);
        }
        t.ok(
          model.projections.every((P) => P === null),
          'still none after learning',
        );
      },
    );

  for (const label of [1, 0]) {
    t.test(`nested (${kernels}): a step is −∇ of the zero-padded objective (label ${label})`, async (t) => {
      const reference = new FmModel(fakeStore(D, LADDER, SIZES, 5), {
        ...SGD,
        projection: 'nested',
        kernels,
      });
      const updated = new FmModel(fakeStore(D, LADDER, SIZES, 5), { ...SGD, projection: 'nested', kernels });
      reference.bias = updated.bias = 0.2;
      updated.step(IDS, IDS.length, label);
      updated.flush();
      const h = 1e-3;
      let worst = 0;
      for (const id of IDS) {
        const tier = reference.store.tiers[reference.store.tierOf[id]];
        const off = reference.store.slotOf[id] * tier.size;
        for (let i = 0; i < tier.size; i++) {
          const x = tier.params[off + i];
          tier.params[off + i] = x + h;
          const up = objective(reference, label);
          tier.params[off + i] = x - h;
          const down = objective(reference, label);
          tier.params[off + i] = x;
          const numeric = (up - down) / (2 * h);
          const analytic = x - updated.store.tiers[reference.store.tierOf[id]].params[off + i];
          worst = Math.max(worst, Math.abs(numeric - analytic));
        }
      }
      t.ok(worst < 1e-4, `rows: worst |numeric − step| ${worst}`);
    });
  }
}

t.test('nested and learned agree at the start; only learned moves its projections', async (t) => {
  const learned = new FmModel(fakeStore(D, LADDER, SIZES, 7), { projection: 'learned' });
  const nested = new FmModel(fakeStore(D, LADDER, SIZES, 7), { projection: 'nested' });
  // P_s starts as the first s rows of the identity: the same scores before any step.
  t.ok(Math.abs(learned.predict(IDS, IDS.length) - nested.predict(IDS, IDS.length)) < 1e-9);
  const before = learned.projections.map((P) => (P === null ? null : Float32Array.from(P)));
  for (let step = 0; step < 5; step++) {
    learned.step(IDS, IDS.length, 1);
    nested.step(IDS, IDS.length, 1);
    learned.flush();
    nested.flush();
  }
  let moved = 0;
  learned.projections.forEach((P, ti) => {
    if (P === null) return;
    for (let j = 0; j < P.length; j++) if (P[j] !== before[ti]![j]) moved++;
  });
  t.ok(moved > 0, 'the learned projections stepped');
  t.ok(
    Math.abs(learned.predict(IDS, IDS.length) - nested.predict(IDS, IDS.length)) > 1e-6,
    'and the two models differ',
  );
  t.throws(() => new FmModel(fakeStore(D, LADDER, SIZES), { projection: 'prefix' as 'nested' }), {
    code: 'PME_ERR_CONFIG_INVALID',
  });
});

t.test('least squares into a nested tier is truncation', async (t) => {
  const target = Float64Array.from({ length: D }, (_, d) => d - 2.5);
  const out = new Float32Array(4).fill(9);
  const r = new TierLeastSquares(null, 3, D).solve(target, out);
  t.strictSame(Array.from(out), [-2.5, -1.5, -0.5, 9], 'the first s dims, nothing past s written');
  let tail = 0;
  for (let d = 3; d < D; d++) tail += target[d] ** 2;
  t.ok(Math.abs(r - tail) < 1e-9, 'residual: the dims past s');
});

t.test('nested: the read paths (score, recommend) agree with the model on small tokens', async (t) => {
  const p = planted(5000, 3);
  const store = new EmbeddingStore({ ladder: [0, 2, 4, 8, 16], startSize: 4, seed: 1 });
  const trainer = new Trainer(store, {
    clock: new ManualClock(0),
    seed: 1,
    catalog: p.catalog,
    model: { projection: 'nested' },
  });
  for (let i = 0; i < p.events.length; i += 100) trainer.learn(p.events.slice(i, i + 100));
  t.ok(trainer.model.projections.every((P) => P === null));
  t.ok(store.accounting().tiers.find((x) => x.size === 4)!.tokens > 0, 'tokens below D');
  const items = ['i0', 'i1', 'i2', 'i7'];
  for (const user of ['u1', 'u2', 'u3']) {
    const scores = trainer.score(user, items);
    items.forEach((item, k) => {
      const shelf = p.catalog.find((c) => c.item === item)!.fields.shelf;
      const ids = Int32Array.from([`user=${user}`, `item=${item}`, `shelf=${shelf}`], (key) => store.id(key));
      t.ok(Math.abs(scores[k] - trainer.model.predict(ids, 3)) < 1e-7, `${user} ${item}: score = model`);
    });
    for (const r of trainer.recommend(user, 5).items) {
      t.ok(Math.abs(r.score - trainer.score(user, [r.item])[0]) < 1e-5, 'recommend = score');
    }
  }
});

t.test('a snapshot continues only under the projection it was taken with', async (t) => {
  const p = planted(500, 3);
  const make = (projection: 'learned' | 'nested') => {
    const store = new EmbeddingStore({ ladder: [0, 2, 4, 8, 16], startSize: 4, seed: 1 });
    const trainer = new Trainer(store, {
      clock: new ManualClock(0),
      seed: 1,
      catalog: p.catalog,
      model: { projection },
    });
    trainer.learn(p.events);
    return trainer;
  };
  const learned = exportTrainerState(make('learned'));
  const nested = exportTrainerState(make('nested'));
  t.notOk(
    Object.keys(nested).some((k) => /P\d+\.f32$/.test(k)),
    'no projection in a nested snapshot',
  );
  t.throws(() => importTrainerState(make('nested'), learned), /learned projection for size 2/);
  t.throws(() => importTrainerState(make('learned'), nested), /projection for size 2 does not match/);
  t.doesNotThrow(() => importTrainerState(make('nested'), nested));
});

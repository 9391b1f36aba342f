import t from 'tap';
import { SyntheticWorkload } from '../../src/data/index.js';
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

/** The FM's logit over zero-padded rows, pair by pair; over their first `dims` dims when given. */
function paddedLogit(model: FmModel, ids: Int32Array, dims = model.store.dim): number {
  return pairwiseLogit(
    model,
    ids,
    Array.from(ids, (id) => padded(model.store, id).subarray(0, dims)),
  );
}

/** The objective the rows' update descends: the full score's logloss, plus `prefixWeight` times
 *  the logloss of the prefix of each size below D that tokens of the store hold
 *  (FmOptions.prefixLossWeight), plus L2/2 on the touched rows and weights. */
function objective(
  model: FmModel,
  ids: Int32Array,
  label: number,
  prefixWeight: number,
  sizes: number[],
): number {
  let loss = logloss(sigmoid(paddedLogit(model, ids)), label);
  for (const s of LADDER)
    if (s > 0 && s < D && sizes.includes(s))
      loss += prefixWeight * logloss(sigmoid(paddedLogit(model, ids, s)), label);
  return loss + (L2 / 2) * touchedSquares(model.store, ids);
}

/** An event of the tokens of sizes 2 and 0 alone: its longest row is 2, so the prefix of 4 scores
 *  as the whole event (the model stops its prefix work at the event's longest row). */
const SHORT = Int32Array.from(IDS.filter((id) => SIZES[id] <= 2));
/** A store where no token is at 4: no row is ever cut to 4, and its prefix is not learned from. */
const NO_FOUR = [8, 2, 0, 2, 8, 2];

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

  for (const [label, prefixLossWeight, sizes, ids] of [
    [1, 0, SIZES, IDS],
    [0, 0, SIZES, IDS],
    [1, 0.5, SIZES, IDS],
    [0, 0.5, SIZES, IDS],
    [1, 0.5, SIZES, SHORT],
    [0, 0.5, NO_FOUR, Int32Array.from(NO_FOUR.keys())],
  ] as const) {
    t.test(
      `nested (${kernels}): a step is −∇ of the zero-padded objective (label ${label}, prefix loss weight ${prefixLossWeight}, event sizes ${Array.from(ids, (id) => sizes[id]).join(' ')} of a store of ${[...new Set(sizes)].join(', ')})`,
      async (t) => {
        const options = { ...SGD, projection: 'nested', kernels, prefixLossWeight } as const;
        const reference = new FmModel(fakeStore(D, LADDER, [...sizes], 5), options);
        const updated = new FmModel(fakeStore(D, LADDER, [...sizes], 5), options);
        reference.bias = updated.bias = 0.2;
        updated.step(ids, ids.length, label);
        updated.flush();
        const h = 1e-3;
        let worst = 0;
        for (const id of ids) {
          const tier = reference.store.tiers[reference.store.tierOf[id]];
          const off = reference.store.slotOf[id] * tier.size;
          for (let i = 0; i < tier.size; i++) {
            const x = tier.params[off + i];
            tier.params[off + i] = x + h;
            const up = objective(reference, ids, label, prefixLossWeight, [...sizes]);
            tier.params[off + i] = x - h;
            const down = objective(reference, ids, label, prefixLossWeight, [...sizes]);
            tier.params[off + i] = x;
            const numeric = (up - down) / (2 * h);
            const analytic = x - updated.store.tiers[reference.store.tierOf[id]].params[off + i];
            worst = Math.max(worst, Math.abs(numeric - analytic));
          }
        }
        t.ok(worst < 1e-4, `rows: worst |numeric − step| ${worst}`);
      },
    );
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

t.test('the prefix losses put what most users share in the leading dims', async (t) => {
  // Users of planted rank 2 live in the first 2 latent axes, which rank-32 users use too: the most
  // shared directions. With the prefix losses a rank-2 user's vector gathers in the first 2 dims;
  // without them no dim is worth more than another and each holds about 2/64 of it. Every token
  // the events touch is at D; an idle token at each smaller size makes it a store of mixed sizes,
  // where the prefix of each is learned from (with one size in use there is none, as the second
  // half checks).
  const train = (prefixLossWeight: number, mixed: boolean) => {
    const workload = new SyntheticWorkload({
      seed: 3,
      users: 200,
      items: 1000,
      latentDim: 32,
      userRanks: [2, 32],
      userZipf: 0,
      itemZipf: 0.3,
      signal: 4,
      noise: 0.1,
    });
    const store = new EmbeddingStore({ ladder: [0, 2, 4, 8, 16, 32, 64], startSize: 64, seed: 1 });
    if (mixed) for (const size of [2, 4, 8, 16, 32]) store.getOrCreate(`idle=${size}`, size);
    const trainer = new Trainer(store, {
      clock: new ManualClock(0),
      seed: 1,
      catalog: workload.catalog(),
      model: { prefixLossWeight },
    });
    for (let i = 0; i < 100; i++) trainer.learn(workload.take(2000));
    return { workload, store, trainer };
  };
  const leadingShare = (prefixLossWeight: number) => {
    const { workload, store, trainer } = train(prefixLossWeight, true);
    const shares = new Map<number, number[]>();
    const v = new Float64Array(64);
    for (let u = 0; u < 200; u++) {
      trainer.model.vectorOf(store.id(`user=u${u}`), v);
      let all = 0;
      for (let d = 0; d < 64; d++) all += v[d] ** 2;
      const rank = workload.rankOf(u);
      shares.set(rank, [...(shares.get(rank) ?? []), (v[0] ** 2 + v[1] ** 2) / all]);
    }
    const mean = (a: number[]) => a.reduce((x, y) => x + y, 0) / a.length;
    return { rank2: mean(shares.get(2)!), rank32: mean(shares.get(32)!) };
  };
  const off = leadingShare(0);
  const on = leadingShare(0.2);
  t.ok(
    off.rank2 < 0.06 && off.rank32 < 0.06,
    `without: ${off.rank2.toFixed(3)} and ${off.rank32.toFixed(3)}`,
  );
  t.ok(on.rank2 > 2 * off.rank2, `with: a rank-2 user's first 2 dims hold ${on.rank2.toFixed(3)} of it`);
  t.ok(on.rank2 > 2 * on.rank32, `a rank-32 user's ${on.rank32.toFixed(3)}`);

  const single = (w: number) =>
    Array.from(train(w, false).store.tiers.find((tier) => tier.size === 64)!.params);
  t.strictSame(single(0.2), single(0), 'every token at one size: the rows learn as without them');
});

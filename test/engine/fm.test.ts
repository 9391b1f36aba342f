import t from 'tap';
import { FmModel, logloss, resolveFmOptions, sigmoid } from '../../src/engine/fm.js';
import { fakeStore } from './fake-store.js';

const D = 8;
const LADDER = [0, 2, 4, 8];
// tokens: 0 full size, 1 and 4 share tier 4 (one projection, two contributions), 2 size 2, 3 size 0
const SIZES = [8, 4, 2, 0, 4];
const IDS = Int32Array.from([0, 1, 2, 3, 4]);
const L2 = 0.01;

/** The objective the update descends: logloss + L2/2 on the touched rows, weights and projections. */
function objective(model: FmModel, label: number): number {
  const store = model.store;
  let reg = 0;
  for (const id of IDS) {
    reg += store.linear[id] ** 2;
    const tier = store.tiers[store.tierOf[id]];
    const off = store.slotOf[id] * tier.size;
    for (let i = 0; i < tier.size; i++) reg += tier.params[off + i] ** 2;
  }
  for (const P of model.projections) if (P) for (const x of P) reg += x ** 2;
  return logloss(model.predict(IDS, IDS.length), label) + (L2 / 2) * reg;
}

function explicitScore(model: FmModel): number {
  const store = model.store;
  const vs = Array.from(IDS, (id) => {
    const v = new Float64Array(D);
    model.vectorOf(id, v);
    return v;
  });
  let z = model.bias;
  for (const id of IDS) z += store.linear[id];
  for (let a = 0; a < vs.length; a++)
    for (let b = a + 1; b < vs.length; b++) for (let d = 0; d < D; d++) z += vs[a][d] * vs[b][d];
  return sigmoid(z);
}

function makeModel(seed = 1): FmModel {
  const store = fakeStore(D, LADDER, SIZES, seed);
  const model = new FmModel(store, {
    optimizer: 'sgd',
    learningRate: 1,
    projectionLearningRate: 1,
    l2: L2,
    l2Projection: L2,
  });
  // Projections away from their identity start, so the projection gradients are generic.
  let x = 0.37;
  for (const P of model.projections) {
    if (P === null) continue;
    for (let j = 0; j < P.length; j++) {
      x = (x * 7.1) % 1;
      P[j] += x - 0.5;
    }
  }
  model.bias = 0.2;
  return model;
}

t.test('forward equals the explicit pairwise sum', async (t) => {
  const model = makeModel();
  t.ok(Math.abs(model.predict(IDS, IDS.length) - explicitScore(model)) < 1e-6);
});

for (const label of [1, 0]) {
  t.test(`gradients match finite differences (label ${label})`, async (t) => {
    const reference = makeModel();
    const store = reference.store;
    // Analytical gradients: with SGD and step 1 the update is exactly θ ← θ − ∇.
    const updated = makeModel();
    updated.step(IDS, IDS.length, label);
    updated.flush();
    const h = 1e-3;
    const check = (name: string, arr: Float32Array, j: number, after: Float32Array) => {
      const analytic = arr[j] - after[j];
      const keep = arr[j];
      arr[j] = keep + h;
      const up = objective(reference, label);
      arr[j] = keep - h;
      const down = objective(reference, label);
      arr[j] = keep;
      const numeric = (up - down) / (2 * h);
      t.ok(
        Math.abs(analytic - numeric) <= 2e-3 * Math.max(1, Math.abs(numeric)),
        `${name}[${j}] analytic ${analytic} numeric ${numeric}`,
      );
    };
    for (const id of IDS) check(`linear`, store.linear, id, updated.store.linear);
    for (let ti = 1; ti < LADDER.length; ti++) {
      const p = store.tiers[ti].params;
      for (let j = 0; j < p.length; j++) check(`tier${LADDER[ti]}`, p, j, updated.store.tiers[ti].params);
    }
    for (let ti = 0; ti < LADDER.length; ti++) {
      const P = reference.projections[ti];
      if (P) for (let j = 0; j < P.length; j++) check(`P${LADDER[ti]}`, P, j, updated.projections[ti]!);
    }
    const before = reference.predict(IDS, IDS.length);
    t.ok(Math.abs(updated.bias - (reference.bias - (before - label))) < 1e-9, 'bias gradient is y − label');
  });
}

t.test('size-D identity tier: importance gathers |e·g| on the searched rows only', async (t) => {
  const model = makeModel();
  const imp = model.store.tiers[3].importance!;
  const e0 = Float32Array.from(model.store.tiers[3].params);
  model.step(IDS, IDS.length, 1);
  const e1 = model.store.tiers[3].params;
  let total = 0;
  for (let d = 0; d < D; d++) {
    // SGD step 1: e1 = e0 − (g + l2 e0), so g = e0 − e1 − l2 e0
    const g = e0[d] - e1[d] - L2 * e0[d];
    t.ok(Math.abs(imp[d] - Math.abs(e0[d] * g)) < 1e-5, `importance[${d}]`);
    total += imp[d];
  }
  t.ok(total > 0);
});

t.test('adagrad steps lower the loss on a repeated event', async (t) => {
  const store = fakeStore(D, LADDER, SIZES, 3);
  const model = new FmModel(store);
  const first = logloss(model.predict(IDS, IDS.length), 1);
  for (let i = 0; i < 50; i++) {
    model.step(IDS, IDS.length, 1);
    model.flush();
  }
  t.ok(logloss(model.predict(IDS, IDS.length), 1) < first * 0.5);
});

t.test('options are validated and frozen', async (t) => {
  t.ok(Object.isFrozen(resolveFmOptions({})));
  for (const bad of [{ learningRate: 0 }, { l2: -1 }, { maxTokens: 0.5 }, { optimizer: 'adam' as 'sgd' }]) {
    t.throws(() => resolveFmOptions(bad), { code: 'PME_ERR_CONFIG_INVALID' });
  }
  const model = new FmModel(fakeStore(D, LADDER, SIZES), { maxTokens: 2 });
  t.throws(() => model.predict(IDS, 5), { code: 'PME_ERR_CONFIG_INVALID' });
});

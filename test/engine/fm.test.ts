import t from 'tap';
import { FmModel, resolveFmOptions } from '../../src/engine/model/fm.js';
import { TierGrams } from '../../src/engine/model/fm-gram.js';
import { logloss, sigmoid } from '../../src/engine/model/math.js';
import { fakeStore } from './fake-store.js';
import { exactSgd, pairwiseLogit, touchedSquares } from './fm-objective.js';

const D = 8;
const LADDER = [0, 2, 4, 8];
// tokens: 0 full size, 1 and 4 share tier 4 (one projection, two contributions), 2 size 2, 3 size 0
const SIZES = [8, 4, 2, 0, 4];
const IDS = Int32Array.from([0, 1, 2, 3, 4]);
const L2 = 0.01;

/** The objective the update descends: logloss + L2/2 on the touched rows, weights and projections. */
function objective(model: FmModel, label: number): number {
  let reg = touchedSquares(model.store, IDS);
  for (const P of model.projections) if (P) for (const x of P) reg += x ** 2;
  return logloss(model.predict(IDS, IDS.length), label) + (L2 / 2) * reg;
}

function explicitScore(model: FmModel): number {
  const vs = Array.from(IDS, (id) => {
    const v = new Float64Array(D);
    model.vectorOf(id, v);
    return v;
  });
  return sigmoid(pairwiseLogit(model, IDS, vs));
}

function makeModel(seed = 1): FmModel {
  const store = fakeStore(D, LADDER, SIZES, seed);
  const model = new FmModel(store, { projection: 'learned', ...exactSgd(L2) });
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
    // Every write bumps denseVersion, as writers of P_s in place must (the FM's G_s follow it).
    const check = (name: string, arr: Float32Array, j: number, after: Float32Array) => {
      const analytic = arr[j] - after[j];
      const keep = arr[j];
      arr[j] = keep + h;
      reference.denseVersion++;
      const up = objective(reference, label);
      arr[j] = keep - h;
      reference.denseVersion++;
      const down = objective(reference, label);
      arr[j] = keep;
      reference.denseVersion++;
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
  const model = new FmModel(store, { projection: 'learned' });
  const first = logloss(model.predict(IDS, IDS.length), 1);
  for (let i = 0; i < 50; i++) {
    model.step(IDS, IDS.length, 1);
    model.flush();
  }
  t.ok(logloss(model.predict(IDS, IDS.length), 1) < first * 0.5);
});

t.test(
  'rows of an event of n tokens step at their rate × rateTokens / n, linear weights when n > rateTokens',
  async (t) => {
    const n = IDS.length;
    const stepped = (rateTokens: number) => {
      const model = new FmModel(fakeStore(D, LADDER, SIZES, 3), { projection: 'learned', rateTokens });
      const store = model.store;
      const before = store.tiers.map((tier) => Float32Array.from(tier.params));
      const linear = Float32Array.from(store.linear);
      model.step(IDS, n, 1);
      return {
        rows: store.tiers.flatMap((tier, ti) => Array.from(tier.params, (x, j) => x - before[ti][j])),
        linear: Array.from(store.linear, (x, j) => x - linear[j]),
      };
    };
    const plain = stepped(0);
    // rateTokens 2 < n scales both down; 7 > n scales the rows up and leaves the linear weights.
    for (const [rateTokens, part, scale] of [
      [2, 'rows', 2 / n],
      [2, 'linear', 2 / n],
      [7, 'rows', 7 / n],
      [7, 'linear', 1],
    ] as const) {
      const scaled = stepped(rateTokens);
      let moved = 0;
      for (let j = 0; j < plain[part].length; j++) {
        const was = plain[part][j];
        if (was === 0) continue;
        moved++;
        t.ok(
          Math.abs(scaled[part][j] - was * scale) <= 1e-6 * Math.abs(was) + 1e-9,
          `rateTokens ${rateTokens}, ${part} float ${j}: ${scaled[part][j]} = ${was} × ${scale.toFixed(3)}`,
        );
      }
      t.ok(moved >= n, `the event moved its ${part} (${moved} floats)`);
    }
    t.equal(resolveFmOptions({}).rateTokens, 5);
  },
);

t.test('options are validated and frozen', async (t) => {
  t.ok(Object.isFrozen(resolveFmOptions({})));
  for (const bad of [
    { learningRate: 0 },
    { l2: -1 },
    { rateTokens: -1 },
    { maxTokens: 0.5 },
    { optimizer: 'adam' as 'sgd' },
    { kernels: 'gpu' as 'js' },
  ]) {
    t.throws(() => resolveFmOptions(bad), { code: 'PME_ERR_CONFIG_INVALID' });
  }
  const model = new FmModel(fakeStore(D, LADDER, SIZES), { projection: 'learned', maxTokens: 2 });
  t.throws(() => model.predict(IDS, 5), { code: 'PME_ERR_CONFIG_INVALID' });
});

/**
 * One step written the plain way (every product a single loop, no pairing of rows), as the
 * reference for the model's unrolled kernels on sizes that exercise every remainder (odd, 2 mod 4,
 * several rows of 4) and on a tier shared by two tokens of the event.
 */
function referenceStep(
  model: FmModel,
  ids: Int32Array,
  label: number,
): { params: Float32Array[]; P: (Float64Array | null)[]; linear: Float32Array; imp: Float32Array | null } {
  const store = model.store;
  const dim = model.dim;
  const o = model.options;
  const adagrad = o.optimizer === 'adagrad';
  const params = store.tiers.map((tier) => Float32Array.from(tier.params));
  const opt = store.tiers.map((tier) => Float32Array.from(tier.optimizer));
  const top = store.tiers.findIndex((tier) => tier.size === dim);
  const imp =
    top >= 0 && store.tiers[top].importance ? Float32Array.from(store.tiers[top].importance!) : null;
  const linear = Float32Array.from(store.linear);
  const linearOpt = Float32Array.from(store.linearOptimizer);
  const vs = Array.from(ids, (id) => {
    const v = new Float64Array(dim);
    model.vectorOf(id, v);
    return v;
  });
  const S = new Float64Array(dim);
  let z = model.bias;
  let self = 0;
  for (const [k, id] of ids.entries()) {
    z += store.linear[id];
    for (let d = 0; d < dim; d++) {
      S[d] += vs[k][d];
      self += vs[k][d] ** 2;
    }
  }
  let sq = 0;
  for (let d = 0; d < dim; d++) sq += S[d] ** 2;
  const g = sigmoid(z + 0.5 * (sq - self)) - label;
  // Rows and linear weights of an event of n tokens step at their rate × rateTokens / n.
  const scale = o.rateTokens > 0 ? o.rateTokens / ids.length : 1;
  const rowRate = o.learningRate * scale;
  const linearRate = o.linearLearningRate * Math.min(1, scale);
  const step = (x: number, grad: number, acc: Float32Array, at: number, rate = rowRate): number => {
    if (!adagrad) return x - rate * grad;
    acc[at] += grad * grad;
    return x - (rate * grad) / (Math.sqrt(acc[at]) + o.epsilon);
  };
  const dP = model.projections.map((P) => (P === null ? null : new Float64Array(P.length)));
  for (const [k, id] of ids.entries()) {
    linear[id] = step(store.linear[id], g + o.l2 * store.linear[id], linearOpt, id, linearRate);
    const ti = store.tierOf[id];
    const s = store.tiers[ti].size;
    if (s === 0) continue;
    const off = store.slotOf[id] * s;
    const e = store.tiers[ti].params;
    const dv = Float64Array.from(S, (x, d) => g * (x - vs[k][d]));
    const P = model.projections[ti];
    for (let i = 0; i < s; i++) {
      let gi = 0;
      if (P === null) gi = dv[i];
      else
        for (let d = 0; d < dim; d++) {
          gi += P[i * dim + d] * dv[d];
          dP[ti]![i * dim + d] += e[off + i] * dv[d];
        }
      if (P === null && imp !== null && o.importance) imp[off + i] += Math.abs(e[off + i] * gi);
      params[ti][off + i] = step(e[off + i], gi + o.l2 * e[off + i], opt[ti], off + i);
    }
  }
  return { params, P: dP, linear, imp };
}

const close = (a: number, b: number) => Math.abs(a - b) <= 1e-5 * Math.max(1, Math.abs(b));

/** Rows and linear weights (and the top tier's importance, with `imp`) that differ from the
 *  reference step's, and how many were checked. */
function stepMismatches(
  model: FmModel,
  ref: { params: Float32Array[]; linear: Float32Array; imp: Float32Array | null },
  imp: boolean,
): { bad: number; checked: number } {
  let bad = 0;
  let checked = 0;
  model.store.tiers.forEach((tier, ti) => {
    for (let j = 0; j < tier.params.length; j++, checked++)
      if (!close(tier.params[j], ref.params[ti][j])) bad++;
  });
  for (let j = 0; j < ref.linear.length; j++, checked++)
    if (!close(model.store.linear[j], ref.linear[j])) bad++;
  if (imp) {
    const top = model.store.tiers[model.store.tiers.length - 1].importance!;
    for (let j = 0; j < top.length; j++, checked++) if (!close(top[j], ref.imp![j])) bad++;
  }
  return { bad, checked };
}

/** Projections that differ from an SGD step P − lr (dP + l2 P) from `before`, after a flush. */
function projectionMismatches(
  model: FmModel,
  before: (Float32Array | null)[],
  dP: (Float64Array | null)[],
): number {
  model.flush();
  const lr = model.options.projectionLearningRate;
  const l2 = model.options.l2Projection;
  let bad = 0;
  model.projections.forEach((P, ti) => {
    if (P === null) return;
    for (let j = 0; j < P.length; j++) {
      const expected = before[ti]![j] - lr * (dP[ti]![j] + l2 * before[ti]![j]);
      if (!close(P[j], expected)) bad++;
    }
  });
  return bad;
}

for (const kernels of ['auto', 'js'] as const)
  for (const optimizer of ['adagrad', 'sgd'] as const)
    t.test(`${kernels} kernels equal the plain step on every size remainder (${optimizer})`, async (t) => {
      const dim = 16;
      const ladder = [0, 1, 3, 5, 6, 7, 10, 16];
      const sizes = [16, 10, 7, 6, 5, 3, 1, 0, 10, 16];
      const ids = Int32Array.from(sizes, (_, i) => i);
      const model = new FmModel(fakeStore(dim, ladder, sizes, 4, 0.2), {
        projection: 'learned',
        optimizer,
        maxTokens: 16,
        kernels,
      });
      // Node >= 16.4 runs wasm SIMD; 'auto' must then use it (D = 16 is a multiple of 4).
      t.equal(model.kernels, kernels === 'auto' ? 'wasm-simd' : 'js');
      let x = 0.61;
      for (const P of model.projections)
        if (P !== null)
          for (let j = 0; j < P.length; j++) {
            x = (x * 9.7) % 1;
            P[j] += 0.3 * (x - 0.5);
          }
      for (const label of [1, 0]) {
        const ref = referenceStep(model, ids, label);
        const before = model.projections.map((P) => (P === null ? null : Float32Array.from(P)));
        model.step(ids, ids.length, label);
        const { bad, checked } = stepMismatches(model, ref, true);
        t.equal(bad, 0, `${checked} parameters match the plain step (label ${label})`);
        // With SGD the projection step is P − lr (dP + l2 P): compare the accumulated gradients.
        if (optimizer === 'sgd') {
          t.equal(projectionMismatches(model, before, ref.P), 0, `projection steps match (label ${label})`);
        } else model.flush();
      }
    });

t.test('kernels: D not a multiple of 4 falls back to JavaScript, with the same scores', async (t) => {
  const sizes = [13, 6, 3, 0];
  const ids = Int32Array.from(sizes, (_, i) => i);
  const auto = new FmModel(fakeStore(13, [0, 3, 6, 13], sizes, 2), {
    projection: 'learned',
    kernels: 'auto',
  });
  t.equal(auto.kernels, 'js');
  const wasm = new FmModel(fakeStore(16, [0, 3, 6, 16], [16, 6, 3, 0], 2), {
    projection: 'learned',
    kernels: 'auto',
  });
  const js = new FmModel(fakeStore(16, [0, 3, 6, 16], [16, 6, 3, 0], 2), {
    projection: 'learned',
    kernels: 'js',
  });
  for (const m of [wasm, js])
    m.projections.forEach((P) => {
      if (P !== null) for (let j = 0; j < P.length; j++) P[j] += Math.sin(j) * 0.2;
    });
  for (let i = 0; i < 20; i++) {
    const label = i % 2;
    const a = wasm.step(ids, ids.length, label);
    const b = js.step(ids, ids.length, label);
    t.ok(Math.abs(a - b) < 1e-5, `step ${i}: wasm ${a} js ${b}`);
    wasm.flush();
    js.flush();
  }
});

for (const kernels of ['auto', 'js'] as const)
  for (const optimizer of ['adagrad', 'sgd'] as const)
    t.test(
      `${kernels} kernels: tiers shared by several tokens step as the plain step (${optimizer})`,
      async (t) => {
        // At D = 64 the tokens of sizes 2, 3 and 5 go through P_s once as their sum (with G_s; odd
        // sizes are padded in the wasm layout), those of 13 and 32 one by one (FmModel.#shares); a
        // projection changes mid-batch, as DeepFM's do.
        const dim = 64;
        const ladder = [0, 2, 3, 5, 13, 32, 64];
        const event = [64, 32, 32, 13, 13, 13, 13, 5, 5, 5, 5, 3, 3, 3, 2, 2, 2, 2, 0];
        const events = 4;
        const sizes = Array.from({ length: events }, () => event).flat();
        const model = new FmModel(fakeStore(dim, ladder, sizes, 5, 0.2), {
          projection: 'learned',
          optimizer,
          maxTokens: 32,
          kernels,
        });
        const perturb = (amount: number) => {
          let x = 0.43;
          for (const P of model.projections)
            if (P !== null)
              for (let j = 0; j < P.length; j++) {
                x = (x * 9.7) % 1;
                P[j] += amount * (x - 0.5);
              }
          model.denseVersion++;
        };
        perturb(0.3);
        const prepare = TierGrams.prototype.prepare;
        let sharedRuns = 0;
        TierGrams.prototype.prepare = function (this: TierGrams, ti: number, version: number) {
          sharedRuns++;
          prepare.call(this, ti, version);
        };
        t.teardown(() => {
          TierGrams.prototype.prepare = prepare;
        });
        const dP = model.projections.map((P) => (P === null ? null : new Float64Array(P.length)));
        for (let r = 0; r < events; r++) {
          const ids = Int32Array.from(event, (_, i) => r * event.length + i);
          const label = r % 2;
          if (r === 2) perturb(0.05);
          const ref = referenceStep(model, ids, label);
          ref.P.forEach((g, ti) => {
            if (g !== null) for (let j = 0; j < g.length; j++) dP[ti]![j] += g[j];
          });
          const p = model.predict(ids, ids.length);
          const explicit = model.itemSide(ids, ids.length, new Float64Array(dim)) + model.bias;
          t.ok(Math.abs(p - sigmoid(explicit)) < 1e-9, `event ${r}: score ${p} against the read path's`);
          model.step(ids, ids.length, label);
          const { bad, checked } = stepMismatches(model, ref, false);
          t.equal(bad, 0, `event ${r}: ${checked} parameters match the plain step`);
        }
        t.ok(sharedRuns > 0, 'tiers were shared');
        if (optimizer === 'sgd') {
          const before = model.projections.map((P) => (P === null ? null : Float32Array.from(P)));
          t.equal(
            projectionMismatches(model, before, dP),
            0,
            'projection steps match the plain steps summed over the batch',
          );
        }
      },
    );

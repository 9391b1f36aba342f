/**
 * FTRL-Proximal for the linear weights (src/engine/model/linear-step.ts, `--linear-optimizer ftrl`):
 * the step against McMahan et al.'s algorithm worked by hand, the models stepping by it, the
 * store's width checked, learning, and a snapshot that continues as if never stopped.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import type { Interaction } from '../../src/data/event.js';
import { exportTrainerState, importTrainerState, Trainer } from '../../src/engine/index.js';
import { FmModel, linearOptimizerSlotsOf } from '../../src/engine/model/fm.js';
import { createModel } from '../../src/engine/model/index.js';
import { ftrlLinear, type LinearStepParams, linearEventRate } from '../../src/engine/model/linear-step.js';
import { LogisticRegression } from '../../src/engine/model/lr.js';
import { Rows } from '../../src/engine/model/model.js';
import { EmbeddingStore, readSnapshot, writeSnapshot } from '../../src/store/index.js';
import { ManualClock } from '../../src/util/clock.js';
import { createRandom } from '../../src/util/random.js';
import { diffStates } from '../store/helpers.js';
import { fakeStore } from './fake-store.js';
import { planted } from './planted.js';

const LADDER = [0, 2, 4, 8, 16];
const FTRL = { linearOptimizer: 'ftrl' } as const;

t.test('the FTRL step is McMahan et al.’s, worked by hand, L1 zeroing included', async (t) => {
  // alpha 0.5, beta 1, L1 0.3, L2 0.1. Per step: sigma = (√(n + g²) − √n) / alpha,
  // z += g − sigma w, n += g², w = 0 if |z| <= L1 else −(z − sign(z) L1) / ((beta + √n) / alpha + L2).
  const p: LinearStepParams = { rate: 0.5, rateTokens: 0, l2: 0.1, epsilon: 1e-7, beta: 1, l1: 0.3 };
  const steps: Array<[g: number, z: number, n: number, w: number]> = [
    // z = 0.6, n = 0.36: w = −0.3 / (1.6 / 0.5 + 0.1) = −0.3 / 3.3.
    [0.6, 0.6, 0.36, -0.3 / 3.3],
    // sigma = (√0.4 − 0.6) / 0.5; z = 0.6 − 0.2 + sigma · 0.3/3.3.
    [
      -0.2,
      0.4 + ((Math.sqrt(0.4) - 0.6) / 0.5) * (0.3 / 3.3),
      0.4,
      -(0.4 + ((Math.sqrt(0.4) - 0.6) / 0.5) * (0.3 / 3.3) - 0.3) / ((1 + Math.sqrt(0.4)) / 0.5 + 0.1),
    ],
  ];
  // Third step: |z| falls to about 0.11, at most L1: the weight is exactly 0.
  const [, z2, , w2] = steps[1];
  const z3 = z2 - 0.3 - ((0.7 - Math.sqrt(0.4)) / 0.5) * w2;
  steps.push([-0.3, z3, 0.49, 0]);
  // Fourth: z ≈ −0.39, past −L1 the other way: a positive weight.
  const z4 = z3 - 0.5;
  steps.push([-0.5, z4, 0.74, -(z4 + 0.3) / ((1 + Math.sqrt(0.74)) / 0.5 + 0.1)]);

  // Token 1 of 3: its z and n at 2 and 3, the neighbours' untouched.
  const w = new Float32Array(3);
  const zn = new Float32Array(6);
  for (const [i, [g, z, n, want]] of steps.entries()) {
    ftrlLinear(w, zn, 1, g, p, p.rate);
    t.ok(Math.abs(zn[2] - z) < 1e-6, `step ${i + 1}: z ${zn[2]}, by hand ${z}`);
    t.ok(Math.abs(zn[3] - n) < 1e-6, `step ${i + 1}: n ${zn[3]}, by hand ${n}`);
    t.ok(Math.abs(w[1] - want) < 1e-6, `step ${i + 1}: w ${w[1]}, by hand ${want}`);
  }
  t.equal(steps[2][3], 0);
  t.ok(z3 > 0.1 && z3 < 0.3, `step 3 has 0 < z = ${z3} <= L1`);
  t.ok(w[1] > 0.02, 'step 4 leaves a positive weight');
  t.same([w[0], w[2], zn[0], zn[1], zn[4], zn[5]], [0, 0, 0, 0, 0, 0], 'other tokens untouched');
});

/** One row of tokens 0, 1, 2 with `label`. */
function row(label: number): Rows {
  const rows = new Rows(3, []);
  rows.ids.set([0, 1, 2]);
  rows.counts[0] = 3;
  rows.labels[0] = label;
  rows.length = 1;
  return rows;
}

t.test('fm and lr step their linear weights by FTRL when asked, Adagrad by default', async (t) => {
  const ids = Int32Array.from([0, 1, 2]);
  const ignore = { add: () => {} };
  for (const make of [
    (s: ReturnType<typeof fakeStore>, o = {}) => new FmModel(s, { kernels: 'js', ...o }),
    (s: ReturnType<typeof fakeStore>, o = {}) => new LogisticRegression(s, o),
  ]) {
    const options = {
      ...FTRL,
      ftrlBeta: 0.5,
      ftrlL1: 0.01,
      linearLearningRate: 0.3,
      l2: 0.02,
      rateTokens: 2,
    };
    const store = fakeStore(4, [0, 2, 4], [4, 2, 0], 5, 0.3, 2);
    store.linear.fill(0);
    const model = make(store, options);
    const params = {
      rate: 0.3,
      rateTokens: 2,
      l2: 0.02,
      epsilon: model.options.epsilon,
      beta: 0.5,
      l1: 0.01,
    };
    // An event of 3 tokens, more than rateTokens 2: alpha × 2 / 3.
    const rate = linearEventRate(0.3, 2, 3);
    t.ok(Math.abs(rate - 0.2) < 1e-12);
    const w = new Float32Array(3);
    const zn = new Float32Array(6);
    for (const label of [1, 0, 1, 1]) {
      const p = model.predict(ids, 3);
      model.learn(row(label), 0, 1, ignore);
      for (const id of ids) ftrlLinear(w, zn, id, p - label, params, rate);
    }
    t.same(Array.from(store.linear), Array.from(w), `${model.kind}: the weights are FTRL's`);
    t.same(Array.from(store.linearOptimizer), Array.from(zn), `${model.kind}: z and n in the store`);

    const adagrad = fakeStore(4, [0, 2, 4], [4, 2, 0], 5, 0.3, 1);
    const before = Float32Array.from(adagrad.linear);
    make(adagrad).learn(row(1), 0, 1, ignore);
    t.ok(
      adagrad.linearOptimizer.every((a, i) => a > 0 && adagrad.linear[i] !== before[i]),
      `${model.kind}: Adagrad by default, one accumulator per token`,
    );
  }
});

t.test('a store that keeps another width per linear weight is refused, naming the option', async (t) => {
  for (const kind of ['fm', 'lr'] as const) {
    await t.rejects(createModel(kind, new EmbeddingStore({ ladder: LADDER }), { fm: FTRL }), {
      code: 'PME_ERR_CONFIG_INVALID',
      message: /--linear-optimizer ftrl keeps 2 floats per linear weight, the store keeps 1/,
    });
    await t.rejects(
      createModel(kind, new EmbeddingStore({ ladder: LADDER, linearOptimizerSlots: 2 })),
      /--linear-optimizer adagrad keeps 1 float per linear weight, the store keeps 2/,
    );
  }
  t.equal(linearOptimizerSlotsOf(FTRL), 2);
  t.equal(linearOptimizerSlotsOf({}), 1);
  t.equal(linearOptimizerSlotsOf({ ...FTRL, optimizer: 'sgd' }), 0, 'plain SGD keeps nothing');
  // SGD reads no state: any width will do (replicas keep none).
  new FmModel(new EmbeddingStore({ ladder: LADDER, linearOptimizerSlots: 0 }), { ...FTRL, optimizer: 'sgd' });
});

/** Events whose label depends on the item alone (item i is liked with probability 0.05 + 0.9 i / 99);
 *  a third of the events carry a one-off token (noise that L1 holds at 0). */
function itemRates(n: number, seed: number): Interaction[] {
  const random = createRandom(seed);
  const events: Interaction[] = [];
  for (let k = 0; k < n; k++) {
    const it = random.int(100);
    const label = random.next() < 0.05 + (0.9 * it) / 99 ? 1 : 0;
    const fields: Record<string, string> = k % 3 === 0 ? { once: `o${k}` } : {};
    events.push({ user: `u${random.int(50)}`, item: `i${it}`, label, timestamp: k, fields });
  }
  return events;
}

function ftrlTrainer(
  kind: 'fm' | 'lr',
  options: Record<string, number | string>,
  clock = new ManualClock(0),
) {
  const store = new EmbeddingStore({
    ladder: LADDER,
    startSize: kind === 'lr' ? 0 : 8,
    seed: 1,
    linearOptimizerSlots: 2,
    clock,
  });
  return { store, make: () => createModel(kind, store, { fm: { ...FTRL, ...options } }) };
}

t.test('FTRL learns: lr on per-item rates, the FM on planted preferences', async (t) => {
  const events = itemRates(20_000, 7);
  const { store, make } = ftrlTrainer('lr', { ftrlL1: 1 });
  const trainer = new Trainer(store, { seed: 1, clock: new ManualClock(0) }, await make());
  for (let i = 0; i < events.length; i += 100) trainer.learn(events.slice(i, i + 100));
  const stats = trainer.stats();
  t.ok(stats.windowAuc > 0.78, `lr: windowed AUC ${stats.windowAuc}`);
  let once = 0;
  let zero = 0;
  for (let i = 0; i < events.length; i += 3) {
    once++;
    if (store.linear[store.id(`once=o${i}`)] === 0) zero++;
  }
  t.ok(zero / once > 0.9, `L1 holds ${zero} of ${once} one-off tokens at exactly 0`);
  t.ok(store.linear[store.id('item=i99')] > 0.5 && store.linear[store.id('item=i0')] < -0.5, 'items learned');

  // The planted label is in the user × item interactions: FTRL moves only the linear part, and the
  // FM learns as well as under Adagrad (0.7254 against 0.7235 when written).
  const p = planted(20_000, 7);
  const fmAuc = async (linearOptimizer: 'adagrad' | 'ftrl') => {
    const store = new EmbeddingStore({
      ladder: LADDER,
      startSize: 8,
      seed: 1,
      linearOptimizerSlots: linearOptimizerSlotsOf({ linearOptimizer }),
    });
    const model = await createModel('fm', store, { fm: { linearOptimizer } });
    const trainer = new Trainer(store, { seed: 1, clock: new ManualClock(0) }, model);
    for (let i = 0; i < p.events.length; i += 100) trainer.learn(p.events.slice(i, i + 100));
    return trainer.stats().windowAuc;
  };
  const [ftrl, adagrad] = [await fmAuc('ftrl'), await fmAuc('adagrad')];
  t.ok(ftrl > 0.7 && ftrl > adagrad - 0.01, `fm: windowed AUC ${ftrl}, under Adagrad ${adagrad}`);
});

t.test('a snapshot keeps z and n: restored, then continued, equals never stopped', async (t) => {
  const events = planted(6000, 3).events;
  const dir = await mkdtemp(join(tmpdir(), 'pme-ftrl-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  // One clock per run, a millisecond a batch: the restored run goes on at the time it stopped.
  const start = async (clock: ManualClock) => {
    const { store, make } = ftrlTrainer('fm', { ftrlL1: 0.05 }, clock);
    return new Trainer(store, { seed: 4, clock }, await make());
  };
  const learn = (trainer: Trainer, clock: ManualClock, from: number, to: number) => {
    for (let i = from; i < to; i += 100) {
      clock.advance(1);
      trainer.learn(events.slice(i, Math.min(to, i + 100)));
    }
  };
  const straightClock = new ManualClock(0);
  const straight = await start(straightClock);
  learn(straight, straightClock, 0, events.length);

  const firstClock = new ManualClock(0);
  const first = await start(firstClock);
  learn(first, firstClock, 0, 3000);
  await writeSnapshot(first.store as EmbeddingStore, dir, exportTrainerState(first));
  const clock = new ManualClock(firstClock.now());
  const { store, extra } = await readSnapshot(dir, { clock });
  t.equal(store.options.linearOptimizerSlots, 2, 'the snapshot carries the width');
  t.ok(
    store.linearOptimizer.some((x, i) => i % 2 === 1 && x > 0),
    'n came back',
  );
  const model = await createModel('fm', store, { fm: { ...FTRL, ftrlL1: 0.05 } });
  const resumed = new Trainer(store, { seed: 4, clock }, model);
  importTrainerState(resumed, extra);
  learn(resumed, clock, 3000, events.length);
  t.equal(
    diffStates(store.exportState(), (straight.store as EmbeddingStore).exportState()),
    null,
    'the store, z and n included, bit for bit',
  );
  t.same(resumed.metrics.snapshot(), straight.metrics.snapshot(), 'and every score on the way');
  await t.rejects(
    createModel('fm', store, { fm: { linearOptimizer: 'adagrad' } }),
    /the store keeps 2/,
    'it does not continue under Adagrad',
  );
});

import t from 'tap';
import type { Interaction } from '../../src/data/event.js';
import { backendName } from '../../src/engine/backend.js';
import {
  DEEPFM_DEFAULTS,
  DeepFm,
  type DeepFmOptions,
  resolveDeepFmOptions,
} from '../../src/engine/model/deepfm.js';
import { streamEval } from '../../src/engine/stream-eval.js';
import { Trainer, type TrainerOptions } from '../../src/engine/trainer/index.js';
import { ManualClock } from '../../src/util/clock.js';
import { GrowingStore } from './fake-store.js';
import { planted } from './planted.js';

const D = 16;
const LADDER = [0, 2, 4, 8, 16];

/** A trainer of a DeepFM model over a growing store (trainer options as `trainer`). */
async function deepFm(
  options: Partial<DeepFmOptions> & { trainer?: Partial<TrainerOptions> } = {},
  seed = 1,
  size = D,
) {
  const store = new GrowingStore(D, LADDER, size, seed);
  const { trainer: trainerOptions, ...deepOptions } = options;
  const deep = await DeepFm.create(store, { seed, ...deepOptions });
  t.teardown(() => deep.dispose());
  const trainer = new Trainer(
    store,
    { clock: new ManualClock(0), seed, catalog: planted(1, 7).catalog, ...trainerOptions },
    deep,
  );
  return { store, deep, trainer };
}

function learnAll(trainer: Trainer, events: Interaction[], batch = 100): void {
  for (let i = 0; i < events.length; i += batch) trainer.learn(events.slice(i, i + batch));
}

t.test('options: defaults, validation, frozen', async (t) => {
  const o = resolveDeepFmOptions();
  t.same(o.hidden, [64, 32]);
  t.equal(o.embeddingGradient, true);
  t.ok(Object.isFrozen(o) && Object.isFrozen(o.hidden));
  t.equal(DEEPFM_DEFAULTS.learningRate, 1e-3);
  for (const bad of [
    { hidden: [0] },
    { hidden: [1.5] },
    { learningRate: 0 },
    { l2: -1 },
    { fields: ['user'] },
    { fields: ['a', 'a'] },
    { seed: 0.5 },
  ] as Partial<DeepFmOptions>[]) {
    t.throws(() => resolveDeepFmOptions(bad), { code: 'PME_ERR_CONFIG_INVALID' }, JSON.stringify(bad));
  }
});

t.test('shapes: slots in fixed order, input width, a fresh deep part adds nothing', async (t) => {
  const p = planted(300, 7);
  const events = p.events.map((e, i) => ({ ...e, fields: { device: `d${i % 3}` } }));
  const { deep, store, trainer } = await deepFm({ hidden: [8, 4] });
  t.equal(deep.backend.name, backendName(), 'the backend in use is reported');
  t.equal(deep.slots, null);
  t.equal(deep.inputWidth, 0);
  trainer.learn(events.slice(0, 1));
  // user, item, then catalog (shelf) and event (device) fields by name.
  t.same(deep.slots, ['user', 'item', 'device', 'shelf']);
  t.equal(deep.inputWidth, 4 * D);
  t.equal(trainer.stats().events, 1);

  // Same tokens, a second DeepFM whose MLP has not stepped: its output layer is zero, so it
  // scores exactly as a fresh FM over the same store.
  const probe = events.slice(0, 5);
  const viaFm = new Trainer(store, { catalog: p.catalog });
  // Explicit fields fix the slots (and build the MLP) before any learning.
  const fixed = await DeepFm.create(store, { hidden: [8, 4], fields: ['device', 'shelf'] });
  t.teardown(() => fixed.dispose());
  const fixedTrainer = new Trainer(store, { catalog: p.catalog }, fixed);
  t.same(fixed.slots, ['user', 'item', 'device', 'shelf']);
  const got = fixedTrainer.predict(probe);
  t.equal(got.length, 5);
  probe.forEach((e, i) => {
    const want = viaFm.score(e.user, [e.item], { device: e.fields.device })[0];
    // The FM trainer's bias is its own (0); the store's rows and weights are shared.
    t.ok(Math.abs(got[i] - want) < 1e-5, `event ${i}: ${got[i]} vs FM ${want}`);
  });

  // After learning, the deep part moves the scores away from the FM's.
  learnAll(trainer, events.slice(1));
  const after = trainer.predict(probe);
  for (const v of after) t.ok(v > 0 && v < 1);
});

t.test('determinism for a seed; another MLP seed gives other scores', async (t) => {
  const events = planted(3000, 7).events;
  const run = async (seed: number, mlpSeed: number) => {
    const store = new GrowingStore(D, LADDER, D, seed);
    const deep = await DeepFm.create(store, { seed: mlpSeed });
    const trainer = new Trainer(
      store,
      { clock: new ManualClock(0), seed, catalog: planted(1, 7).catalog },
      deep,
    );
    learnAll(trainer, events);
    const out = { stats: trainer.stats(), scores: Array.from(trainer.predict(events.slice(0, 20))) };
    deep.dispose();
    return out;
  };
  const a = await run(1, 1);
  const b = await run(1, 1);
  const c = await run(1, 2);
  t.equal(a.stats.events, 3000);
  t.equal(a.stats.auc, b.stats.auc);
  t.equal(a.stats.logloss, b.stats.logloss);
  t.same(a.scores, b.scores);
  t.not(a.scores.join(), c.scores.join(), 'the MLP seed matters');
});

t.test('learns the planted preferences (progressive AUC well above 0.5)', async (t) => {
  const { events } = planted(20000, 7);
  const { trainer } = await deepFm();
  learnAll(trainer, events);
  const s = trainer.stats();
  t.equal(s.events, 20000);
  t.equal(s.learned, 20000);
  t.ok(s.auc > 0.7, `cumulative AUC ${s.auc}`);
  t.ok(s.windowAuc > 0.75, `windowed AUC ${s.windowAuc}`);

  // The deep part alone (rows trained by the FM only) also learns.
  const { trainer: inputsOnly } = await deepFm({ embeddingGradient: false });
  learnAll(inputsOnly, events);
  t.ok(inputsOnly.stats().auc > 0.7, `inputs-only AUC ${inputsOnly.stats().auc}`);
});

t.test('the deep gradient reaches rows of every size through the projections', async (t) => {
  const events = planted(2000, 7).events;
  const withGrad = await deepFm({ fm: { projection: 'learned' } }, 1, 4);
  const without = await deepFm({ fm: { projection: 'learned' }, embeddingGradient: false }, 1, 4);
  learnAll(withGrad.trainer, events);
  learnAll(without.trainer, events);
  const ti = LADDER.indexOf(4);
  const P1 = withGrad.deep.projections[ti]!;
  const P2 = without.deep.projections[ti]!;
  let diff = 0;
  for (let i = 0; i < P1.length; i++) diff += Math.abs(P1[i] - P2[i]);
  t.ok(diff > 0, `projections differ by ${diff}`);
  const id = withGrad.store.id('user=u1');
  t.ok(id >= 0);
  const r1 = withGrad.store.tiers[ti].params.subarray(
    withGrad.store.slotOf[id] * 4,
    withGrad.store.slotOf[id] * 4 + 4,
  );
  const r2 = without.store.tiers[ti].params.subarray(
    without.store.slotOf[id] * 4,
    without.store.slotOf[id] * 4 + 4,
  );
  t.not(Array.from(r1).join(), Array.from(r2).join());
});

t.test('negatives are drawn for positive-only streams and scored as events', async (t) => {
  const positives = planted(20000, 7).events.filter((e) => e.label > 0);
  const { trainer } = await deepFm({ trainer: { negatives: 2 } });
  learnAll(trainer, positives);
  const s = trainer.stats();
  t.ok(s.negativesDrawn > positives.length, `${s.negativesDrawn} negatives`);
  t.equal(s.events, positives.length + s.negativesDrawn);
  // Positives against popularity-drawn negatives: the FM alone reaches about 0.63 here.
  const fm = new Trainer(new GrowingStore(D, LADDER, D, 1), {
    clock: new ManualClock(0),
    negatives: 2,
    catalog: planted(1, 7).catalog,
  });
  for (let i = 0; i < positives.length; i += 100) fm.learn(positives.slice(i, i + 100));
  t.ok(s.auc > 0.6, `AUC ${s.auc}`);
  t.ok(s.auc > fm.stats().auc - 0.03, `DeepFM ${s.auc} vs FM ${fm.stats().auc}`);
});

t.test('stream-eval --model deepfm runs the fixture and reports the backend', async (t) => {
  const common = {
    data: 'test/fixtures/ratings.csv',
    items: 'test/fixtures/movies.csv',
    format: 'movielens',
    dim: 8,
    pme: false,
    windowEvents: 100_000,
    negatives: 0,
    batch: 4,
    seed: 1,
  };
  const fm = await streamEval({ ...common, model: 'fm' });
  const deep = await streamEval({ ...common, model: 'deepfm', hidden: [4] });
  t.equal(fm.model, 'fm');
  t.equal(fm.backend, null);
  t.equal(deep.model, 'deepfm');
  t.equal(deep.backend, backendName());
  t.ok(deep.events > 0);
  t.equal(deep.events, fm.events, 'same events scored');
  t.same(deep.tiers, fm.tiers, 'same tokens');
});

/**
 * The model interface (src/engine/model/model.ts) as the trainer drives it: models picked by name,
 * the split forward the read path relies on, the rows a trainer hands a model of each cadence,
 * and logistic regression, the model added through the interface alone.
 */
import t from 'tap';
import type { CatalogItem, Interaction } from '../../src/data/event.js';
import { SyntheticWorkload } from '../../src/data/index.js';
import { FmModel } from '../../src/engine/model/fm.js';
import { createModel, MODEL_KINDS } from '../../src/engine/model/index.js';
import { LogisticRegression } from '../../src/engine/model/lr.js';
import type { Model, ModelStats, Rows, ScoreSink, TokenId } from '../../src/engine/model/model.js';
import { Trainer } from '../../src/engine/trainer/index.js';
import { EmbeddingStore } from '../../src/store/index.js';
import { ManualClock } from '../../src/util/clock.js';
import { createRandom } from '../../src/util/random.js';
import { planted } from './planted.js';

const LADDER = [0, 2, 4, 8, 16];

t.test('models are picked by name; an unknown name says which there are', async (t) => {
  t.same(MODEL_KINDS, ['fm', 'deepfm', 'lr']);
  const store = new EmbeddingStore({ ladder: LADDER, startSize: 4, seed: 1 });
  t.ok((await createModel('fm', store)) instanceof FmModel);
  t.ok((await createModel('lr', store)) instanceof LogisticRegression);
  await t.rejects(createModel('svm', store), {
    code: 'PME_ERR_CONFIG_INVALID',
    message: /model must be one of fm, deepfm, lr, got "svm"/,
  });
});

/** Token ids of `keys` that exist. */
function idsOf(store: EmbeddingStore, keys: string[]): Int32Array {
  return Int32Array.from(keys.map((k) => store.id(k)).filter((id) => id >= 0));
}

for (const kind of ['fm', 'lr'] as const)
  t.test(`${kind}: userSide(U) + itemSide(I) + S_U · F_I is the logit of U ∪ I`, async (t) => {
    const store = new EmbeddingStore({ ladder: LADDER, startSize: 4, seed: 2 });
    const model = await createModel(kind, store);
    const trainer = new Trainer(store, { seed: 2, clock: new ManualClock(0) }, model);
    const p = planted(3000, 3);
    trainer.learn(p.events.map((e, i) => ({ ...e, fields: { device: `d${i % 3}` } })));
    const D = store.dim;
    const user = idsOf(store, ['user=u1', 'device=d2']);
    const item = idsOf(store, ['item=i3']);
    const S = new Float64Array(D);
    const F = new Float64Array(D);
    const z = model.userSide(user, user.length, S) + model.itemSide(item, item.length, F);
    let cross = 0;
    for (let d = 0; d < D; d++) cross += S[d] * F[d];
    const all = Int32Array.from([...user, ...item]);
    const logit = Math.log(model.predict(all, all.length) / (1 - model.predict(all, all.length)));
    t.ok(Math.abs(z + cross - logit) < 1e-9, `${z + cross} vs ${logit}`);
    if (kind === 'lr') t.equal(cross, 0, 'no vectors: no interactions');
  });

/** Events whose label depends on the item alone (item i is liked with probability 0.05 + 0.9 i / 99). */
function itemRates(n: number, seed: number): { events: Interaction[]; catalog: CatalogItem[] } {
  const random = createRandom(seed);
  const events: Interaction[] = [];
  for (let k = 0; k < n; k++) {
    const it = random.int(100);
    const label = random.next() < 0.05 + (0.9 * it) / 99 ? 1 : 0;
    events.push({ user: `u${random.int(50)}`, item: `i${it}`, label, timestamp: k, fields: {} });
  }
  const catalog = Array.from({ length: 100 }, (_, it) => ({ item: `i${it}`, fields: {}, active: true }));
  return { events, catalog };
}

t.test('lr learns per-token rates, and score and recommend agree with predict', async (t) => {
  const { events, catalog } = itemRates(20000, 7);
  const store = new EmbeddingStore({ ladder: LADDER, startSize: 0, seed: 1 });
  const model = await createModel('lr', store);
  const trainer = new Trainer(store, { seed: 1, clock: new ManualClock(0), catalog }, model);
  for (let i = 0; i < events.length; i += 100) trainer.learn(events.slice(i, i + 100));
  const stats = trainer.stats();
  t.equal(stats.events, 20000);
  t.ok(stats.windowAuc > 0.75, `windowed AUC ${stats.windowAuc}`);
  t.equal(
    store.accounting().tiers.find((x) => x.size > 0 && x.tokens > 0),
    undefined,
    'no rows held',
  );
  const items = catalog.map((c) => c.item);
  const scores = trainer.score('u3', items);
  const exact = trainer.predict(
    items.map((item) => ({ user: 'u3', item, label: 0, timestamp: 0, fields: {} })),
  );
  let worst = 0;
  for (let i = 0; i < items.length; i++) worst = Math.max(worst, Math.abs(scores[i] - exact[i]));
  t.ok(worst < 1e-9, `score vs predict: ${worst}`);
  const best = items.map((item, i) => ({ item, score: exact[i] })).sort((a, b) => b.score - a.score);
  t.same(
    trainer.recommend('u3', 5).items.map((r) => r.item),
    best.slice(0, 5).map((b) => b.item),
  );
});

/** A model that records the rows it is handed (a copy of each), scoring everything 0.5. */
class RecordingModel implements Model {
  readonly kind = 'recording';
  readonly dim: number;
  readonly maxTokens = 8;
  readonly cadence: 'event' | 'batch';
  bias = 0;
  biasAccumulator = 0;
  readonly projections: readonly null[];
  readonly projectionAccumulators: readonly null[];
  denseVersion = 0;
  /** Per learn() call: the rows, as [field name, token key] pairs, with their labels. */
  readonly calls: Array<Array<{ tokens: string[]; label: number }>> = [];
  readonly #store: EmbeddingStore;

  constructor(store: EmbeddingStore, cadence: 'event' | 'batch') {
    this.#store = store;
    this.dim = store.dim;
    this.cadence = cadence;
    this.projections = store.tiers.map(() => null);
    this.projectionAccumulators = this.projections;
  }

  learn(rows: Rows, from: number, to: number, scores: ScoreSink): void {
    const call: Array<{ tokens: string[]; label: number }> = [];
    for (let r = from; r < to; r++) {
      const tokens: string[] = [];
      for (let k = 0; k < rows.counts[r]; k++) {
        const at = r * rows.stride + k;
        tokens.push(`${rows.fieldNames[rows.fields[at]]}:${this.#store.key(rows.ids[at])}`);
      }
      call.push({ tokens, label: rows.labels[r] });
      scores.add(0.5, rows.labels[r]);
    }
    this.calls.push(call);
  }
  endBatch(): void {}
  predictRows(_rows: Rows, from: number, to: number, out: Float64Array): void {
    out.fill(0.5, from, to);
  }
  predict(): number {
    return 0.5;
  }
  userSide(_ids: Int32Array, _n: number, sum: Float64Array): number {
    sum.fill(0);
    return 0;
  }
  itemSide(_ids: Int32Array, _n: number, sum: Float64Array): number {
    sum.fill(0);
    return 0;
  }
  vectorOf(_id: TokenId, out: Float32Array | Float64Array, at = 0): void {
    out.fill(0, at, at + this.dim);
  }
  stats(): ModelStats {
    return { kind: this.kind };
  }
}

t.test(
  'the trainer hands rows with field codes: each event at once, or the whole batch at its end',
  async (t) => {
    const events: Interaction[] = [
      { user: 'a', item: 'x', label: 1, timestamp: 0, fields: { device: 'phone', shelf: 'ignored' } },
      { user: 'b', item: 'y', label: 0, timestamp: 0, fields: {} },
    ];
    const catalog: CatalogItem[] = [
      { item: 'x', fields: { shelf: 's1' }, active: true },
      { item: 'y', fields: {}, active: true },
    ];
    const rowsOf = (cadence: 'event' | 'batch') => {
      const store = new EmbeddingStore({ ladder: LADDER, startSize: 4, seed: 1 });
      const model = new RecordingModel(store, cadence);
      const trainer = new Trainer(
        store,
        { seed: 1, negatives: 1, catalog, clock: new ManualClock(0) },
        model,
      );
      // One negative per positive, drawn by popularity: y has had nearly every event so far.
      trainer.importItems([{ item: 'y', fields: {}, active: true, count: 1e6 }]);
      trainer.learnEvents(events);
      const before = model.calls.length;
      trainer.endBatch();
      return { calls: model.calls, before, stats: trainer.stats() };
    };
    const event = rowsOf('event');
    const batch = rowsOf('batch');
    // The item's catalog names `shelf`: the event's own shelf belongs to the item side, so it is left out.
    const first = {
      tokens: ['user:user=a', 'device:device=phone', 'item:item=x', 'shelf:shelf=s1'],
      label: 1,
    };
    const negative = { tokens: ['user:user=a', 'device:device=phone', 'item:item=y'], label: 0 };
    const second = { tokens: ['user:user=b', 'item:item=y'], label: 0 };
    t.same(event.calls, [[first], [negative], [second]], 'event cadence: one row per call, as resolved');
    t.equal(event.before, 3, 'all learned before endBatch');
    t.same(batch.calls, [[first, negative, second]], 'batch cadence: one call at endBatch');
    t.equal(batch.before, 0, 'nothing learned before endBatch');
    for (const { stats } of [event, batch]) {
      t.equal(stats.learned, 3);
      t.equal(stats.negativesDrawn, 1);
    }
  },
);

t.test('predict scores events through the whole model without creating or touching tokens', async (t) => {
  const workload = new SyntheticWorkload({ seed: 4, users: 20, items: 30 });
  const store = new EmbeddingStore({ ladder: LADDER, startSize: 8, seed: 4 });
  const trainer = new Trainer(store, { seed: 4, catalog: workload.catalog(), clock: new ManualClock(0) });
  trainer.learn(workload.take(2000));
  const probe = workload.take(20);
  const size = store.size;
  const got = trainer.predict([
    ...probe,
    { user: 'nobody', item: 'nothing', label: 0, timestamp: 0, fields: {} },
  ]);
  t.equal(store.size, size, 'nothing created');
  probe.forEach((e, i) => {
    const want = trainer.score(e.user, [e.item], e.fields)[0];
    t.ok(Math.abs(got[i] - want) < 1e-9, `event ${i}: ${got[i]} vs score ${want}`);
  });
  t.ok(Math.abs(got[20] - 1 / (1 + Math.exp(-trainer.model.bias))) < 1e-12, 'unknown tokens add nothing');
});

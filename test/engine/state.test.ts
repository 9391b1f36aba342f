/**
 * The trainer's part of a snapshot: dense parameters, counters and the catalog (compact form),
 * restored into a fresh trainer; snapshots written before the compact catalog still restore.
 */
import t from 'tap';
import { SyntheticWorkload } from '../../src/data/index.js';
import { exportTrainerState, importTrainerState, Trainer } from '../../src/engine/index.js';
import { EmbeddingStore } from '../../src/store/index.js';

function trained() {
  const store = new EmbeddingStore({ seed: 8 });
  const workload = new SyntheticWorkload({
    seed: 8,
    users: 50,
    items: 120,
    fields: [
      { name: 'brand', cardinality: 7 },
      { name: 'shelf', cardinality: 3 },
    ],
  });
  const trainer = new Trainer(store, { seed: 8, catalog: workload.catalog() });
  trainer.upsertItem({ item: 'gone', fields: { brand: 'b1' }, active: false });
  trainer.learn(workload.take(3_000));
  trainer.learn([{ user: 'u1', item: 'stream-only', label: 1, timestamp: 0, fields: {} }]);
  return { store, trainer };
}

t.test('the catalog comes back item for item: fields, active flag, event count, order', async (t) => {
  const { store, trainer } = trained();
  const extra = exportTrainerState(trainer);
  const names = Object.keys(extra);
  t.ok(
    names.some((k) => k.endsWith('catalog.json')) && !names.some((k) => k.endsWith('items.json')),
    'written in the compact form',
  );
  const restored = new Trainer(store, { seed: 8 });
  importTrainerState(restored, extra);
  t.same(restored.exportItems(), trainer.exportItems(), `${trainer.itemCount} items equal`);
  t.same(restored.stats().learned, trainer.stats().learned, 'counters restored');
  const items = trainer
    .exportItems()
    .slice(0, 20)
    .map((i) => i.item);
  t.same(restored.score('u3', items), trainer.score('u3', items), 'and it scores as the original');
});

t.test('a snapshot with the catalog as items.json (before the compact form) restores', async (t) => {
  const { store, trainer } = trained();
  const extra = exportTrainerState(trainer);
  const legacy: typeof extra = {};
  for (const [name, value] of Object.entries(extra)) if (!/catalog/.test(name)) legacy[name] = value;
  const prefix = Object.keys(extra)
    .find((k) => k.endsWith('catalog.json'))!
    .replace('catalog.json', '');
  legacy[`${prefix}items.json`] = new TextEncoder().encode(JSON.stringify(trainer.exportItems()));
  const restored = new Trainer(store, { seed: 8 });
  importTrainerState(restored, legacy);
  t.same(restored.exportItems(), trainer.exportItems());
});

t.test(
  'items and signatures added after a snapshot are in the next one (names re-encoded only then)',
  async (t) => {
    const { store, trainer } = trained();
    const keysOf = (extra: ReturnType<typeof exportTrainerState>) =>
      Object.entries(extra).find(([name]) => name.endsWith('catalog.json'))![1];
    const restoredFrom = (extra: ReturnType<typeof exportTrainerState>) => {
      const restored = new Trainer(store, { seed: 8 });
      importTrainerState(restored, extra);
      return restored.exportItems();
    };
    const first = exportTrainerState(trainer);
    const known = trainer.exportItems().slice(0, 5);
    trainer.learn(known.map((i) => ({ user: 'u2', item: i.item, label: 1, timestamp: 1, fields: {} })));
    t.equal(
      keysOf(exportTrainerState(trainer)),
      keysOf(first),
      'learning alone adds no name: the same bytes',
    );

    trainer.learn([{ user: 'u2', item: 'new-in-stream', label: 1, timestamp: 2, fields: {} }]);
    const second = exportTrainerState(trainer);
    t.not(keysOf(second), keysOf(first), 'a new item: encoded again');
    t.same(restoredFrom(second), trainer.exportItems(), 'the new item comes back');

    trainer.upsertItem({ item: known[0].item, fields: { brand: 'brand-never-seen' }, active: true });
    const third = exportTrainerState(trainer);
    t.not(keysOf(third), keysOf(second), 'a new signature: encoded again');
    t.same(restoredFrom(third), trainer.exportItems(), 'the new signature comes back');
  },
);

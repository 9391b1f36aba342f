/**
 * The trainer's part of a snapshot: dense parameters, counters and the catalog (compact form),
 * restored into a fresh trainer; snapshots written before the compact catalog still restore.
 */
import t from 'tap';
import { SyntheticWorkload } from '../../src/data/index.js';
import {
  encodeCatalogAhead,
  exportTrainerState,
  importTrainerState,
  Trainer,
} from '../../src/engine/index.js';
import { EmbeddingStore } from '../../src/store/index.js';
import { turnsDuring } from '../helpers/wait.js';

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
    names.some((k) => k.endsWith('catalogNames.jsonl')) && !names.some((k) => k.endsWith('items.json')),
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

t.test('the progressive metrics come back and go on as if never stopped', async (t) => {
  const { store, trainer } = trained();
  const restored = new Trainer(store, { seed: 8 });
  importTrainerState(restored, exportTrainerState(trainer));
  const before = trainer.metrics.snapshot();
  t.ok(before.events > 3000 && before.auc > 0.5, `events ${before.events}, AUC ${before.auc}`);
  t.same(restored.metrics.snapshot(), before, 'events, AUC, logloss, windowed AUC and logloss');
  // The same scores afterwards land alike: the window ring and its sums came back too.
  for (let i = 0; i < 12_000; i++) {
    const p = (i % 97) / 97;
    const y = i % 3 === 0 ? 1 : 0;
    trainer.metrics.add(p, y);
    restored.metrics.add(p, y);
  }
  t.same(restored.metrics.snapshot(), trainer.metrics.snapshot(), 'after the window has turned over');
  const other = new Trainer(store, { seed: 8, metricsWindow: 500 });
  importTrainerState(other, exportTrainerState(trainer));
  t.equal(other.metrics.snapshot().events, 0, 'another window size: the metrics start afresh');
});

/** One section of a trainer export, by the end of its name. */
const section = (extra: ReturnType<typeof exportTrainerState>, suffix: string) =>
  Object.entries(extra).find(([name]) => name.endsWith(suffix))![1] as Uint8Array;
const text = (bytes: Uint8Array) =>
  Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8');

t.test('snapshots of the catalog in the forms written before restore', async (t) => {
  const { store, trainer } = trained();
  const extra = exportTrainerState(trainer);
  const prefix = Object.keys(extra)
    .find((k) => k.endsWith('catalogNames.jsonl'))!
    .replace('catalogNames.jsonl', '');
  const without: typeof extra = {};
  for (const [name, value] of Object.entries(extra))
    if (!/catalog(Names|Signatures)/.test(name)) without[name] = value;
  const restore = (extra: ReturnType<typeof exportTrainerState>) => {
    const restored = new Trainer(store, { seed: 8 });
    importTrainerState(restored, extra);
    return restored.exportItems();
  };

  const lines = (bytes: Uint8Array) =>
    text(bytes)
      .split('\n')
      .slice(0, -1)
      .map((line) => JSON.parse(line));
  const catalogJson = {
    ...without,
    [`${prefix}catalog.json`]: new TextEncoder().encode(
      JSON.stringify({
        names: lines(section(extra, 'catalogNames.jsonl')),
        signatures: lines(section(extra, 'catalogSignatures.jsonl')),
      }),
    ),
  };
  t.same(restore(catalogJson), trainer.exportItems(), 'names and signatures in one catalog.json');

  const itemsJson: typeof extra = {};
  for (const [name, value] of Object.entries(extra)) if (!/catalog/.test(name)) itemsJson[name] = value;
  itemsJson[`${prefix}items.json`] = new TextEncoder().encode(JSON.stringify(trainer.exportItems()));
  t.same(restore(itemsJson), trainer.exportItems(), 'every item as an object in items.json');
});

t.test(
  'items and signatures added after a snapshot are in the next one; the earlier one stays as it was',
  async (t) => {
    const { store, trainer } = trained();
    const restoredFrom = (extra: ReturnType<typeof exportTrainerState>) => {
      const restored = new Trainer(store, { seed: 8 });
      importTrainerState(restored, extra);
      return restored.exportItems();
    };
    const first = exportTrainerState(trainer);
    const firstNames = text(section(first, 'catalogNames.jsonl'));
    const firstItems = trainer.exportItems();
    const known = firstItems.slice(0, 5);
    trainer.learn(known.map((i) => ({ user: 'u2', item: i.item, label: 1, timestamp: 1, fields: {} })));
    t.equal(
      text(section(exportTrainerState(trainer), 'catalogNames.jsonl')),
      firstNames,
      'learning alone adds no name',
    );

    trainer.learn([{ user: 'u2', item: 'new-in-stream', label: 1, timestamp: 2, fields: {} }]);
    const second = exportTrainerState(trainer);
    t.equal(
      text(section(second, 'catalogNames.jsonl')),
      `${firstNames}"new-in-stream"\n`,
      'a new item: one line more',
    );
    t.same(restoredFrom(second), trainer.exportItems(), 'the new item comes back');

    const signatures = text(section(second, 'catalogSignatures.jsonl'));
    trainer.upsertItem({ item: known[0].item, fields: { brand: 'brand-never-seen' }, active: true });
    for (let i = 0; i < 5_000; i++) trainer.upsertItem({ item: `later-${i}`, fields: {}, active: true });
    const third = exportTrainerState(trainer);
    t.equal(
      text(section(third, 'catalogSignatures.jsonl')),
      `${signatures}["brand=brand-never-seen"]\n`,
      'a new signature: one line more',
    );
    t.same(restoredFrom(third), trainer.exportItems(), 'the new signature comes back');
    t.equal(text(section(first, 'catalogNames.jsonl')), firstNames, 'the first export reads as it did');
    t.same(restoredFrom(first).length, firstItems.length, 'and restores its items');
  },
);

t.test('names encoded as they come, some ahead in steps, are the lines of one whole encoding', async (t) => {
  const trainer = new Trainer(new EmbeddingStore({ seed: 9 }), { seed: 9 });
  const add = (from: number, to: number) => {
    for (let i = from; i < to; i++)
      trainer.upsertItem({ item: `ítem-${i}-"q"\n`, fields: { shelf: `s${i % 13}` }, active: true });
  };
  const names = () => text(section(exportTrainerState(trainer), 'catalogNames.jsonl'));
  const whole = () =>
    trainer
      .exportItems()
      .map((i) => `${JSON.stringify(i.item)}\n`)
      .join('');

  add(0, 5);
  t.equal(names(), whole(), 'a first export');
  add(5, 10_000);
  const { turns } = await turnsDuring(() => encodeCatalogAhead(trainer));
  t.ok(turns > 0, `encoding 9,995 names ahead gave other work turns (${turns})`);
  add(10_000, 10_050);
  t.equal(names(), whole(), 'names encoded ahead, then the rest at the export');
  const restored = new Trainer(new EmbeddingStore({ seed: 9 }), { seed: 9 });
  importTrainerState(restored, exportTrainerState(trainer));
  t.same(restored.exportItems(), trainer.exportItems(), 'and names holding quotes and newlines come back');
});

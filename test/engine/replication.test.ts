/**
 * ChangeTracker: what a publish carries. Every token and item the first time; after that only the
 * tokens seen since and the items whose event count moved; everything again after reset().
 * Observed as the records src/stream packs them into (their format: test/stream/param-records.test.ts).
 */
import t from 'tap';
import { SyntheticWorkload } from '../../src/data/index.js';
import { ChangeTracker, Trainer } from '../../src/engine/index.js';
import { EmbeddingStore } from '../../src/store/index.js';
import { type PackedRecords, ParamPacker, unpackRecords } from '../../src/stream/index.js';
import { ManualClock } from '../../src/util/clock.js';
import { turnsDuring } from '../helpers/wait.js';

t.test(
  'a publish carries the items whose event count changed, and nothing else of the catalog',
  async (t) => {
    const clock = new ManualClock(1_000);
    const store = new EmbeddingStore({ seed: 3, clock });
    const workload = new SyntheticWorkload({ seed: 3, users: 20, items: 50 });
    const trainer = new Trainer(store, { seed: 3, clock, catalog: workload.catalog() });
    const tracker = new ChangeTracker(store, trainer);
    const collect = () => tracker.collect(clock.now(), new ParamPacker()).finish().flatMap(unpackRecords);
    const items = (records: { key: string }[]) =>
      records
        .filter((r) => r.key.startsWith('i:'))
        .map((r) => r.key.slice(2))
        .sort();

    const first = collect();
    t.equal(items(first).length, 50, 'the first publish carries every item');
    clock.advance(10);
    t.same(items(collect()), [], 'nothing learned: no item again');

    const events = workload.take(30);
    clock.advance(10);
    trainer.learn(events);
    const learned = [...new Set(events.map((e) => e.item))].sort();
    const second = collect();
    t.same(items(second), learned, 'then exactly the items the events named');
    const record = second.find((r) => r.key === `i:${learned[0]}`);
    const body = JSON.parse(Buffer.from(record?.value ?? '').toString());
    t.equal(body.count, events.filter((e) => e.item === learned[0]).length, 'with their new count');
    t.same(
      body,
      trainer.exportItems().find((i) => i.item === learned[0]),
      'as exportItems has it',
    );

    tracker.reset();
    t.equal(items(collect()).length, 50, 'after reset: every item again');
  },
);

t.test('collectInSlices gives the records collect gives, with turns in between', async (t) => {
  const clock = new ManualClock(1_000);
  const store = new EmbeddingStore({ seed: 5, clock });
  const workload = new SyntheticWorkload({ seed: 5, users: 2_000, items: 3_000 });
  const trainer = new Trainer(store, { seed: 5, clock, catalog: workload.catalog() });
  trainer.learn(workload.take(5_000));
  const whole = new ChangeTracker(store, trainer);
  const sliced = new ChangeTracker(store, trainer);
  const asText = (packs: PackedRecords[]) =>
    packs
      .flatMap(unpackRecords)
      .map((r) => `${r.key}:${r.value === null ? 'null' : r.value.toString('base64')}`);

  for (let round = 0; round < 2; round++) {
    clock.advance(10);
    const expected = asText(whole.collect(clock.now(), new ParamPacker()).finish());
    const { result: packer, turns } = await turnsDuring(() =>
      sliced.collectInSlices(clock.now(), new ParamPacker(), 0),
    );
    const got = asText(packer.finish());
    t.same(got, expected, `round ${round}: the same ${expected.length} records`);
    t.ok(turns > 0, `round ${round}: other work ran during it (${turns} turns)`);
    trainer.learn(workload.take(2_000));
  }
});

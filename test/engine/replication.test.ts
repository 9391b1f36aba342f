/**
 * ChangeTracker: what a publish carries. Every token and item the first time; after that only the
 * tokens seen since and the items whose event count moved; everything again after reset().
 */
import t from 'tap';
import { SyntheticWorkload } from '../../src/data/index.js';
import {
  ChangeTracker,
  type PackedRecords,
  RECORDS_PER_PACK,
  Trainer,
  unpackRecords,
} from '../../src/engine/index.js';
import { EmbeddingStore } from '../../src/store/index.js';
import { ManualClock } from '../../src/util/clock.js';

t.test(
  'a publish carries the items whose event count changed, and nothing else of the catalog',
  async (t) => {
    const clock = new ManualClock(1_000);
    const store = new EmbeddingStore({ seed: 3, clock });
    const workload = new SyntheticWorkload({ seed: 3, users: 20, items: 50 });
    const trainer = new Trainer(store, { seed: 3, clock, catalog: workload.catalog() });
    const tracker = new ChangeTracker(store, trainer);
    const collect = () => tracker.collect(clock.now()).flatMap(unpackRecords);
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
    const expected = asText(whole.collect(clock.now()));
    let turns = 0;
    const counting = setInterval(() => turns++, 0);
    const got = asText(await sliced.collectInSlices(clock.now(), 0));
    clearInterval(counting);
    t.same(got, expected, `round ${round}: the same ${expected.length} records`);
    t.ok(turns > 0, `round ${round}: other work ran during it (${turns} timer turns)`);
    trainer.learn(workload.take(2_000));
  }
});

t.test('a collect packs its records: rows aligned and as the store holds them, text as UTF-8', async (t) => {
  const clock = new ManualClock(1_000);
  const store = new EmbeddingStore({ seed: 7, clock });
  const workload = new SyntheticWorkload({ seed: 7, users: 1_500, items: 1_500 });
  const catalog = [...workload.catalog(), { item: 'café-☕', fields: { shelf: 'größe' }, active: true }];
  const trainer = new Trainer(store, { seed: 7, clock, catalog });
  trainer.learn(workload.take(4_000));
  const packs = new ChangeTracker(store, trainer).collect(clock.now());

  const records = packs.flatMap(unpackRecords);
  t.ok(packs.length > 1, `${records.length} records make ${packs.length} packs`);
  t.ok(
    packs.every((p) => p.keyEnds.length <= RECORDS_PER_PACK && p.lengths.length === p.keyEnds.length),
    `each of at most ${RECORDS_PER_PACK} records`,
  );
  t.equal(records.at(-1)?.key, 'm:clock', 'the marker comes last');

  let rows = 0;
  let misplaced = 0;
  for (const { key, value } of records) {
    if (!key.startsWith('t:') || value === null) continue;
    rows++;
    const id = store.id(key.slice(2));
    const got = new Float32Array(value.buffer, value.byteOffset, value.byteLength / 4);
    const size = store.sizeOf(id);
    const at = store.offsetOf(id);
    const want = [size, store.linear[id], ...store.tiers[store.tierOf[id]].params.subarray(at, at + size)];
    if (
      value.byteOffset % 4 !== 0 ||
      got.length !== want.length ||
      got.some((v, j) => v !== Math.fround(want[j]))
    )
      misplaced++;
  }
  t.equal(rows, store.size, 'every token once');
  t.equal(misplaced, 0, 'each row read in place equals the store row');

  const cafe = records.find((r) => r.key === 'i:café-☕');
  t.same(
    JSON.parse(cafe?.value?.toString('utf8') ?? 'null'),
    trainer.exportItems().find((i) => i.item === 'café-☕'),
    'a non-ASCII item decodes as exportItems has it',
  );
});

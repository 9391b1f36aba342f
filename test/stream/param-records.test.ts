/**
 * The parameter topic's record format (src/stream/param-records.ts): how a collect's changes are
 * packed, and the round trip trainer → packs → records → a replica's store and model.
 */
import t from 'tap';
import { SyntheticWorkload } from '../../src/data/index.js';
import { ChangeTracker, ReplicaApplier, Trainer } from '../../src/engine/index.js';
import { EmbeddingStore } from '../../src/store/index.js';
import {
  applyRecord,
  type PackedRecords,
  ParamPacker,
  RECORDS_PER_PACK,
  unpackRecords,
} from '../../src/stream/index.js';
import { ManualClock } from '../../src/util/clock.js';

/** A trainer that has learned 4,000 events of a synthetic catalog, a non-ASCII item added to it. */
function trained(seed: number, users: number, items: number) {
  const clock = new ManualClock(1_000);
  const store = new EmbeddingStore({ seed, clock });
  const workload = new SyntheticWorkload({ seed, users, items });
  const catalog = [...workload.catalog(), { item: 'café-☕', fields: { shelf: 'größe' }, active: true }];
  // Learned projections: the records carry them too.
  const trainer = new Trainer(store, { seed, clock, catalog, model: { projection: 'learned' } });
  trainer.learn(workload.take(4_000));
  return { clock, store, workload, trainer };
}

t.test('a collect packs its records: rows aligned and as the store holds them, text as UTF-8', async (t) => {
  const { clock, store, trainer } = trained(7, 1_500, 1_500);
  const packs = new ChangeTracker(store, trainer).collect(clock.now(), new ParamPacker()).finish();

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

/** What differs between a trainer's parameters and items and a replica's, part by part. */
function differences(
  from: { store: EmbeddingStore; trainer: Trainer },
  to: { store: EmbeddingStore; trainer: Trainer },
): string[] {
  const out: string[] = [];
  for (let id = 0; id < from.store.idLimit; id++) {
    if (!from.store.alive(id)) continue;
    const key = from.store.key(id);
    const other = to.store.id(key);
    if (other < 0) {
      out.push(`${key}: missing`);
      continue;
    }
    const size = from.store.sizeOf(id);
    if (to.store.sizeOf(other) !== size) out.push(`${key}: size`);
    else if (from.store.row(id).some((v, j) => v !== to.store.row(other)[j])) out.push(`${key}: row`);
    if (to.store.linear[other] !== from.store.linear[id]) out.push(`${key}: linear`);
  }
  for (let id = 0; id < to.store.idLimit; id++)
    if (to.store.alive(id) && from.store.id(to.store.key(id)) < 0) out.push(`${to.store.key(id)}: extra`);
  if (to.trainer.model.bias !== Math.fround(from.trainer.model.bias)) out.push('bias');
  from.trainer.model.projections.forEach((P, ti) => {
    const mine = to.trainer.model.projections[ti];
    if (P !== null && (mine === null || P.some((v, j) => v !== mine[j])))
      out.push(`P${from.store.tiers[ti].size}`);
  });
  const items = (trainer: Trainer) => new Map(trainer.exportItems().map((i) => [i.item, JSON.stringify(i)]));
  const theirs = items(to.trainer);
  for (const [item, json] of items(from.trainer)) if (theirs.get(item) !== json) out.push(`item ${item}`);
  return out;
}

/** A replica's store and trainer, as the serving thread makes them (another seed: nothing shared by chance). */
function replica(projection: 'learned' | 'nested' = 'learned') {
  const store = new EmbeddingStore({ seed: 99, optimizerSlots: 0, importance: false });
  const trainer = new Trainer(store, {
    seed: 99,
    model: { optimizer: 'sgd', importance: false, projection },
  });
  return { store, trainer, applier: new ReplicaApplier(store, trainer) };
}

/** Packs → records → the applier, as the serving thread and a replica apply them. */
function apply(packs: PackedRecords[], applier: ReplicaApplier): void {
  for (const pack of packs) for (const record of unpackRecords(pack)) applyRecord(record, applier);
  applier.done();
}

t.test(
  'a replica applying the records holds the trainer’s rows, weights, dense params and items',
  async (t) => {
    const { clock, store, workload, trainer } = trained(11, 2_500, 600);
    const tracker = new ChangeTracker(store, trainer);
    const source = { store, trainer };
    const copy = replica();

    const before = differences(source, copy);
    t.ok(
      before.some((d) => d.endsWith(': missing')),
      'before: the replica lacks the tokens',
    );
    t.ok(before.includes('bias'), 'and the bias');
    t.ok(
      before.some((d) => /^P\d+$/.test(d)),
      'and the learned projections',
    );
    t.ok(before.includes('item café-☕'), 'and the items');

    const first = tracker.collect(clock.now(), new ParamPacker()).finish();
    t.ok(first.length > 1, `the first publish spans ${first.length} packs`);
    apply(first, copy.applier);
    t.same(
      differences(source, copy),
      [],
      'after the first publish: the same tokens, rows, linear weights, bias, projections and items',
    );
    t.same(
      copy.applier.lastMarker,
      { publishedAt: 1_000, learned: trainer.stats().learned, seq: 1 },
      'and its marker',
    );

    // Then: more learning, a token evicted and one moved to another size.
    clock.advance(10);
    trainer.learn(workload.take(1_000));
    const ids = [...Array(store.idLimit).keys()].filter((id) => store.alive(id) && store.sizeOf(id) > 0);
    const evicted = store.key(ids[0]);
    store.evict(ids[0]);
    const moved = store.key(ids[1]);
    const size = store.options.ladder.find((s) => s > 0 && s !== store.sizeOf(ids[1]))!;
    store.move(ids[1], size, (src, dst) => dst.set(src.subarray(0, Math.min(src.length, dst.length))));
    clock.advance(10);
    const second = tracker.collect(clock.now(), new ParamPacker()).finish();
    const records = second.flatMap(unpackRecords);
    t.ok(
      records.some((r) => r.key === `t:${evicted}` && r.value === null),
      'the eviction goes out as a tombstone',
    );
    t.ok(copy.store.id(evicted) >= 0, `the replica held ${evicted}`);
    apply(second, copy.applier);
    t.equal(copy.store.id(evicted), -1, 'and no longer does');
    t.equal(copy.store.sizeOf(copy.store.id(moved)), size, `${moved} moved to size ${size} there too`);
    t.same(differences(source, copy), [], 'after the second publish: the same again');
    t.equal(copy.applier.lastMarker?.seq, 2, 'its marker next');
    t.equal(copy.applier.mismatch, null, 'a replica of the same projection follows');

    // The comparison notices a part lost on the way: here the linear weight, dropped by the encoder.
    const ZERO = new Float32Array(1);
    class DropsLinear extends ParamPacker {
      override token(...[key, size, , , row, rowAt]: Parameters<ParamPacker['token']>) {
        super.token(key, size, ZERO, 0, row, rowAt);
      }
    }
    const lossy = replica();
    apply(new ChangeTracker(store, trainer).collect(clock.now(), new DropsLinear()).finish(), lossy.applier);
    const lost = differences(source, lossy);
    t.ok(
      lost.length > 0 && lost.every((d) => d.endsWith(': linear')),
      `an encoder dropping it is caught (${lost.length} tokens)`,
    );
  },
);

t.test(
  'a replica that runs another projection or D than the trainer says why it cannot follow',
  async (t) => {
    const { clock, store, trainer } = trained(5, 800, 300);
    const nested = replica('nested');
    apply(new ChangeTracker(store, trainer).collect(clock.now(), new ParamPacker()).finish(), nested.applier);
    t.match(
      nested.applier.mismatch,
      /learned projection of size \d+ .*--projection/,
      nested.applier.mismatch ?? '',
    );
    t.ok(nested.store.size > 0, 'it still applies the rows');

    // Another D: the rows of the sizes it lacks are skipped, not thrown on.
    const small = new EmbeddingStore({
      seed: 99,
      ladder: [0, 2, 4],
      startSize: 4,
      optimizerSlots: 0,
      importance: false,
    });
    const narrow = new ReplicaApplier(
      small,
      new Trainer(small, { seed: 99, model: { optimizer: 'sgd', importance: false } }),
    );
    const packs = new ChangeTracker(store, trainer).collect(clock.now(), new ParamPacker()).finish();
    for (const pack of packs)
      for (const record of unpackRecords(pack)) if (record.key.startsWith('t:')) applyRecord(record, narrow);
    t.match(narrow.mismatch, /row of size 8, which this replica's ladder \(0, 2, 4\) lacks/);
    t.equal(small.size, 0, 'the rows of a size it lacks are skipped, nothing thrown');
  },
);

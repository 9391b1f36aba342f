import { mkdtemp, open, readdir, readFile, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import {
  copyStore,
  copyStoreInSlices,
  EmbeddingStore,
  listSnapshots,
  readSnapshot,
  readSnapshotFile,
  writeSnapshot,
  writeStoreCopy,
} from '../../src/store/index.js';
import { removeStaleTemps } from '../../src/store/snapshot.js';
import { ManualClock } from '../../src/util/clock.js';
import { turnsDuring } from '../helpers/wait.js';
import { diffStates } from './helpers.js';

async function tempDir(t: Test): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'pme-store-snap-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

function sample(tokens: number, clock = new ManualClock(0)): EmbeddingStore {
  const store = new EmbeddingStore({ clock, chunkRows: 8, ttlMs: 5000, budgetBytes: 1e7 });
  for (let i = 0; i < tokens; i++) {
    const id = store.getOrCreate(`item=${i}`, i % 5 === 0 ? 64 : undefined);
    store.touch(id, i);
    store.linear[id] = i / 10;
  }
  return store;
}

t.test('round trip: options, extra arrays, and the state bit for bit', async (t) => {
  const dir = await tempDir(t);
  const clock = new ManualClock(0);
  const store = sample(100, clock);
  store.evict(store.id('item=3'));
  const dense = new Float32Array([1.5, -2, 3]);
  const path = await writeSnapshot(store, dir, { dense, offsets: new Uint8Array([7, 8]) });
  t.match(path, /store-000000000001\.pme$/);
  const { store: back, extra, skipped } = await readSnapshot(dir, { clock });
  t.same(skipped, []);
  t.equal(diffStates(store.exportState(), back.exportState()), null);
  t.equal(back.options.ttlMs, 5000);
  t.equal(back.options.budgetBytes, 1e7);
  t.equal(back.options.clock, clock, 'the clock comes from the caller');
  t.same(Array.from(new Float32Array(extra.dense.buffer, extra.dense.byteOffset, 3)), [1.5, -2, 3]);
  t.same(Array.from(extra.offsets), [7, 8]);
  t.same(back.fieldStats(), store.fieldStats());
  const unlimited = new EmbeddingStore();
  unlimited.getOrCreate('a=1');
  await writeSnapshot(unlimited, dir);
  const again = await readSnapshot(dir);
  t.equal(again.store.options.budgetBytes, Number.POSITIVE_INFINITY, 'Infinity survives JSON');
});

t.test('the linear weights’ slot count travels with a snapshot and cannot be overridden', async (t) => {
  const dir = await tempDir(t);
  const clock = new ManualClock(0);
  const store = new EmbeddingStore({ linearOptimizerSlots: 2, clock, chunkRows: 8 });
  for (let i = 0; i < 20; i++) {
    const id = store.getOrCreate(`item=${i}`);
    store.linearOptimizer[2 * id] = i; // FTRL's z
    store.linearOptimizer[2 * id + 1] = i * i; // and n
  }
  await writeSnapshot(store, dir);
  const { store: back } = await readSnapshot(dir, { clock });
  t.equal(back.options.linearOptimizerSlots, 2);
  t.equal(back.options.optimizerSlots, 1, 'the rows keep one');
  t.equal(diffStates(store.exportState(), back.exportState()), null, 'z and n bit for bit');
  t.throws(() => EmbeddingStore.fromState(store.exportState(), { linearOptimizerSlots: 1 }), {
    code: 'PME_ERR_SNAPSHOT_CORRUPT',
    message: /linearOptimizerSlots cannot be overridden/,
  });
});

t.test('the evicted tokens’ weights travel with a snapshot; a state without them starts empty', async (t) => {
  const dir = await tempDir(t);
  const store = sample(20);
  store.evict(store.id('item=7'));
  await writeSnapshot(store, dir);
  const { store: back } = await readSnapshot(dir);
  t.equal(diffStates(store.exportState(), back.exportState()), null, 'the table is in the state bit for bit');
  t.equal(back.linear[back.getOrCreate('item=7')], store.linear[store.getOrCreate('item=7')]);
  t.equal(
    back.linear[back.id('item=7')],
    Math.fround(0.7),
    'item=7 comes back with its weight after a restart',
  );
  t.equal(back.recalled, 1);

  // A state written before the table existed (no `evicted`): restored, the table is empty.
  const older = sample(20);
  older.evict(older.id('item=7'));
  const fresh = EmbeddingStore.fromState({ ...older.exportState(), evicted: undefined });
  t.equal(fresh.linear[fresh.getOrCreate('item=7')], 0);
  t.equal(fresh.recalled, 0);
});

t.test('a key index of many encoding steps (4,096 keys each) round-trips', async (t) => {
  const dir = await tempDir(t);
  const store = new EmbeddingStore({ chunkRows: 4096 });
  for (let i = 0; i < 40_000; i++) store.getOrCreate(`user=u${i}`, 2);
  store.evict(store.id('user=u17000'));
  await writeSnapshot(store, dir);
  const { store: back } = await readSnapshot(dir);
  t.equal(diffStates(store.exportState(), back.exportState()), null, 'every key and id as written');
  t.equal(back.id('user=u39999'), store.id('user=u39999'));
  t.equal(back.id('user=u17000'), -1);
});

t.test(
  'a copy in slices is the copy at once, with turns in between, and writes the same snapshot',
  async (t) => {
    const dir = await tempDir(t);
    const store = new EmbeddingStore({ seed: 4 });
    for (let i = 0; i < 20_000; i++) store.row(store.getOrCreate(`user=u${i}`, i % 3 === 0 ? 64 : 8)).fill(i);
    store.evict(store.id('user=u7'));
    const { result: sliced, turns } = await turnsDuring(() => copyStoreInSlices(store));
    t.equal(diffStates(sliced, copyStore(store)), null, 'every array as copyStore copies it');
    t.ok(turns > 0, `other work ran during it (${turns} turns)`);
    t.not(sliced.tiers[0].params, store.exportState().tiers[0].params, 'a copy, not a view');
    await writeStoreCopy(sliced, dir);
    const { store: back } = await readSnapshot(dir);
    t.equal(diffStates(back.exportState(), store.exportState()), null, 'and it reads back as the store');
  },
);

t.test('the newest two snapshots are kept, no temporary file is left', async (t) => {
  const dir = await tempDir(t);
  const store = sample(10);
  for (let i = 0; i < 4; i++) await writeSnapshot(store, dir);
  t.same(
    (await listSnapshots(dir)).map((s) => s.sequence),
    [4, 3],
  );
  t.same((await readdir(dir)).sort(), ['store-000000000003.pme', 'store-000000000004.pme']);
});

t.test('a failed write rejects to its caller and to nobody else (no unhandled rejection)', async (t) => {
  const dir = await tempDir(t);
  const unhandled: unknown[] = [];
  const note = (reason: unknown): void => void unhandled.push(reason);
  process.on('unhandledRejection', note);
  t.teardown(() => process.off('unhandledRejection', note));
  await t.rejects(writeSnapshot(sample(5), join(dir, 'absent')), { code: 'ENOENT' });
  await new Promise((resolve) => setTimeout(resolve, 50));
  t.same(unhandled, [], 'a service would have died here instead of logging "snapshot failed"');
  t.match(await writeSnapshot(sample(5), dir), /store-000000000001\.pme$/, 'the next write goes on');
});

t.test(
  'removeStaleTemps: what dead writers left goes; live writers, snapshots and the rest stay',
  async (t) => {
    const dir = await tempDir(t);
    t.same(await removeStaleTemps(join(dir, 'absent')), [], 'no directory: nothing to do');
    const started = Math.floor(performance.timeOrigin);
    const dead = 2 ** 22 + 11; // past Linux's largest pid_max: no such process
    const gone = [`.store-1.${dead}.${started - 1}.tmp`, `.store-12.${process.pid}.${started - 10_000}.tmp`];
    const stay = [
      `.store-3.${process.pid}.${started + 1}.tmp`, // this process's own
      `.store-4.${process.ppid}.${started - 10_000}.tmp`, // a live process's
      `.store-5.0.${started - 10_000}.tmp`, // pid 0: no name a writer makes
      '.store-x.tmp',
      'store-000000000009.pme.tmp',
    ];
    for (const name of [...gone, ...stay]) await writeFile(join(dir, name), 'half a snapshot');
    // A write of this process under way: the removal waits for it, and leaves its file alone.
    const writing = writeSnapshot(sample(20), dir);
    let written = false;
    void writing.then(() => {
      written = true;
    });
    const removed = await removeStaleTemps(dir);
    t.ok(written, 'removed only once the write under way had ended');
    t.same(removed.sort(), gone.map((name) => join(dir, name)).sort());
    t.same((await readdir(dir)).sort(), [...stay, 'store-000000000001.pme'].sort());
    t.equal((await readSnapshot(dir)).store.size, 20);
  },
);

t.test('a snapshot taken while the store keeps changing holds the state of when it started', async (t) => {
  const dir = await tempDir(t);
  const store = sample(50);
  const copy = structuredClone(store.exportState());
  const writing = writeSnapshot(store, dir);
  for (let i = 0; i < 50; i++) store.row(store.getOrCreate(`late=${i}`)).fill(9);
  await writing;
  const { store: back } = await readSnapshot(dir);
  t.equal(back.size, 50);
  t.equal(diffStates(copy, back.exportState()), null);
});

t.test('damaged files: clear error, and the previous snapshot stays usable', async (t) => {
  const dir = await tempDir(t);
  const first = sample(30);
  await writeSnapshot(first, dir);
  const second = sample(40);
  const damage: Array<[string, (path: string) => Promise<void>, RegExp]> = [
    [
      'one flipped byte',
      async (path) => {
        const fh = await open(path, 'r+');
        const b = Buffer.alloc(1);
        const at = Math.floor((await stat(path)).size / 2);
        await fh.read(b, 0, 1, at);
        b[0] ^= 0x10;
        await fh.write(b, 0, 1, at);
        await fh.close();
      },
      /checksum mismatch/,
    ],
    ['truncated', async (path) => truncate(path, Math.floor((await stat(path)).size * 0.7)), /truncated/],
    ['foreign file', (path) => writeFile(path, '{"not": "a snapshot"}\n'), /bad magic/],
    ['empty file', (path) => writeFile(path, ''), /too short/],
  ];
  for (const [name, hurt, why] of damage) {
    const path = await writeSnapshot(second, dir);
    await hurt(path);
    await t.rejects(readSnapshotFile(path), { code: 'PME_ERR_SNAPSHOT_CORRUPT', message: why }, name);
    const { store, path: used, skipped } = await readSnapshot(dir);
    t.equal(used.endsWith('.pme') && used !== path, true, `${name}: the older snapshot is used`);
    t.equal(skipped.length, 1);
    t.equal(skipped[0].error.code, 'PME_ERR_SNAPSHOT_CORRUPT');
    t.equal(store.size, 30, `${name}: the older state is intact`);
    await rm(path);
  }
});

t.test('no snapshot is NOT_FOUND; only damaged ones is SNAPSHOT_CORRUPT', async (t) => {
  const dir = await tempDir(t);
  await t.rejects(readSnapshot(dir), { code: 'PME_ERR_NOT_FOUND' });
  await t.rejects(readSnapshot(join(dir, 'absent')), { code: 'PME_ERR_NOT_FOUND' });
  await writeFile(join(dir, 'store-000000000001.pme'), 'garbage, definitely not a store');
  await writeFile(join(dir, 'notes.txt'), 'not a snapshot name: ignored');
  await t.rejects(readSnapshot(dir), { code: 'PME_ERR_SNAPSHOT_CORRUPT', message: /bad magic/ });
});

t.test('a file with a valid checksum but an inconsistent state is rejected', async (t) => {
  const dir = await tempDir(t);
  const store = sample(10);
  const state = store.exportState();
  state.slotOf[2] = 7; // two tokens would share a slot
  t.throws(() => EmbeddingStore.fromState(state), { code: 'PME_ERR_SNAPSHOT_CORRUPT', message: /slot/ });
  const other = sample(10).exportState();
  other.next[other.tiers[3].head] = other.tiers[3].head;
  t.throws(() => EmbeddingStore.fromState(other), { code: 'PME_ERR_SNAPSHOT_CORRUPT', message: /LRU/ });
  t.throws(() => EmbeddingStore.fromState(sample(3).exportState(), { ladder: [0, 64] }), {
    code: 'PME_ERR_SNAPSHOT_CORRUPT',
  });
  // A committed fixture written by this format's first version must stay readable.
  const fixture = join(import.meta.dirname, '../fixtures/store/store-000000000001.pme');
  const { store: old } = await readSnapshotFile(fixture);
  t.equal(old.size, 3);
  t.same(
    ['user=1', 'item=7', 'genre=Drama'].map((k) => old.sizeOf(old.id(k))),
    [8, 64, 0],
  );
  t.equal(old.row(old.id('item=7'))[63], 0.5);
  t.equal(
    old.options.linearOptimizerSlots,
    1,
    'written before the linear slots had their own count: the rows’',
  );
  t.ok((await readFile(fixture)).length > 0, dir);
});

/**
 * The service's snapshot copy: the store in slices under the state lock, never with a prune window
 * (which runs outside that lock) half done: the copy waits for a running window, and is taken again
 * when one started meanwhile.
 */
import t from 'tap';
import { SyntheticWorkload } from '../../src/data/index.js';
import { Trainer } from '../../src/engine/index.js';
import { copyState, type WindowWatch } from '../../src/service/state.js';
import { copyStore, copyStoreInSlices, EmbeddingStore } from '../../src/store/index.js';
import { diffStates } from '../store/helpers.js';

function trained() {
  const store = new EmbeddingStore({ seed: 6 });
  const workload = new SyntheticWorkload({ seed: 6, users: 2_000, items: 2_000 });
  const trainer = new Trainer(store, { seed: 6, catalog: workload.catalog() });
  trainer.learn(workload.take(20_000));
  // Several MB of store: a copy of many steps.
  for (let i = 0; i < 100_000; i++) store.row(store.getOrCreate(`user=cold${i}`, 8)).fill(i);
  return { store, trainer };
}

/** A window that rewrites every linear weight in two steps a few turns apart: half done in between. */
function window(store: EmbeddingStore, watch: { running: Promise<unknown> | null; windowsStarted: number }) {
  watch.windowsStarted++;
  watch.running = (async () => {
    store.linear.fill(0.5, 0, store.linear.length >> 1);
    for (let turn = 0; turn < 5; turn++) await new Promise((resolve) => setImmediate(resolve));
    store.linear.fill(0.5);
    watch.running = null;
  })();
}

/** A window that starts at the copy's first turn. */
function windowDuringCopy(store: EmbeddingStore): WindowWatch {
  const watch = { running: null as Promise<unknown> | null, windowsStarted: 3 };
  setImmediate(() => window(store, watch));
  return watch;
}

t.test('quiet: the copy in slices is the state as it was', async (t) => {
  const { store, trainer } = trained();
  const before = copyStore(store);
  const copy = await copyState(
    store,
    trainer,
    { 'interactions:0': '12' },
    { running: null, windowsStarted: 0 },
  );
  t.equal(diffStates(copy.store, before), null, 'the store');
  t.ok(
    Object.keys(copy.extra).some((name) => name.startsWith('engine/')),
    "and the trainer's sections",
  );
  t.same(
    JSON.parse(Buffer.from(copy.extra['offsets.json']).toString()),
    { 'interactions:0': '12' },
    'the offsets',
  );
});

t.test('a window that starts during the copy: copied again once it has ended', async (t) => {
  const { store, trainer } = trained();
  t.ok(store.exportState().linear.byteLength > 400_000, 'a store of several copy steps');

  const mixed = copyStoreInSlices(store);
  windowDuringCopy(store);
  t.not(diffStates(await mixed, copyStore(store)), null, 'copied in slices alone, it would be a mix');

  store.linear.fill(0.25);
  const copy = await copyState(store, trainer, {}, windowDuringCopy(store));
  t.ok(
    copy.store.linear.every((w) => w === 0.5),
    'copied again after the window ended: all of its change, none half done',
  );
  t.equal(diffStates(copy.store, copyStore(store)), null);
});

t.test('a window running at the start: the copy waits for its end', async (t) => {
  const { store, trainer } = trained();
  const watch = { running: null as Promise<unknown> | null, windowsStarted: 0 };
  window(store, watch);
  const copy = await copyState(store, trainer, {}, watch);
  t.ok(
    copy.store.linear.every((w) => w === 0.5),
    'the whole window, not half of it',
  );
});

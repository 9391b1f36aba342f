/**
 * The service's snapshot copy: the store in slices under the state lock, never with a prune window
 * (which runs outside that lock) half done: the copy waits for a running window, and is taken again
 * when one started meanwhile.
 */
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import t, { type Test } from 'tap';
import { loadConfig } from '../../src/config.js';
import { SyntheticWorkload } from '../../src/data/index.js';
import { Trainer } from '../../src/engine/index.js';
import { tierMetrics } from '../../src/service/adapter.js';
import { StateLock } from '../../src/service/lock.js';
import { type MetricSources, ServiceMetrics } from '../../src/service/metrics.js';
import {
  applyRestored,
  copyState,
  restoreState,
  SnapshotAge,
  takeSnapshot,
  trainerOptions,
  type WindowWatch,
} from '../../src/service/state.js';
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

t.test("the service's trainer takes --cross-user-item from flag or environment", async (t) => {
  t.equal(trainerOptions(loadConfig([], {})).crossUserItem, false, 'off by default');
  t.equal(trainerOptions(loadConfig(['--cross-user-item', 'true'], {})).crossUserItem, true, 'the flag');
  t.equal(
    trainerOptions(loadConfig([], { PME_CROSS_USER_ITEM: 'true' })).crossUserItem,
    true,
    'the environment',
  );
});

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

/** A pid no process can have (Linux's pid_max is at most 2^22): a writer that is gone. */
const DEAD_PID = 2 ** 22 + 7;

/** A state directory of its own (removed after `t`) and a store of `tokens` users to snapshot into it. */
async function stateDirWith(t: Test, prefix: string, seed: number, tokens: number) {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  // The service's default budget and TTL, which a restore with the default config keeps.
  const { budgetBytes, tokenTtlMs } = loadConfig([], {});
  const store = new EmbeddingStore({ seed, budgetBytes, ttlMs: tokenTtlMs });
  for (let i = 0; i < tokens; i++) store.row(store.getOrCreate(`user=u${i}`, 8)).fill(i);
  const trainer = new Trainer(store, { seed });
  const watch = { running: null, windowsStarted: 0 };
  const lock = new StateLock();
  const take = (offsets: Record<string, string>) =>
    takeSnapshot(dir, store, trainer, watch, lock, () => offsets);
  return { dir, store, take };
}

t.test('a restore removes the temporary files of writes that died with an earlier process', async (t) => {
  const { dir, store, take } = await stateDirWith(t, 'pme-state-tmp-', 3, 500);
  const taken = await take({ 'i:0': '7' });
  const whole = await readFile(taken.path);
  const started = Math.floor(performance.timeOrigin);
  const stale = [
    // kill -9 half way through a write: what a later start finds.
    `.store-2.${DEAD_PID}.${started - 60_000}.tmp`,
    // The same pid as this process but from before it started: a container's restarted process
    // usually gets the pid its predecessor had.
    `.store-2.${process.pid}.${started - 5_000}.tmp`,
  ];
  const kept = [
    // This process's since it started: a write of its own could be under way.
    `.store-2.${process.pid}.${Date.now()}.tmp`,
    // A live process's (the parent): not a leftover, and not this process's to remove.
    `.store-2.${process.ppid}.${started - 1_000}.tmp`,
    'notes.tmp',
  ];
  for (const name of [...stale, ...kept])
    await writeFile(join(dir, name), whole.subarray(0, whole.length >> 1));

  const restored = await restoreState(loadConfig([], { PME_STATE_DIR: dir }));
  t.equal(restored.removedTemps, 2, 'two removed, and told');
  t.same((await readdir(dir)).sort(), [...kept, basename(taken.path)].sort(), 'the rest is left');
  t.equal(diffStates(restored.store.exportState(), store.exportState()), null, 'the snapshot loads');
  t.same(applyRestored(new Trainer(restored.store, { seed: 3 }), restored.extra), { 'i:0': '7' });

  const fresh = await mkdtemp(join(tmpdir(), 'pme-state-tmp-'));
  t.teardown(() => rm(fresh, { recursive: true, force: true }));
  await writeFile(join(fresh, stale[0]), whole.subarray(0, 100));
  const first = await restoreState(loadConfig([], { PME_STATE_DIR: fresh }));
  t.equal(first.removedTemps, 1, 'a kill during the very first snapshot leaves no snapshot: removed too');
  t.equal(first.store.size, 0, 'and the store starts fresh');
  t.same(await readdir(fresh), []);
});

t.test(
  'a restore takes the budget and the TTL the service starts with, the rest from the snapshot',
  async (t) => {
    const { dir, store, take } = await stateDirWith(t, 'pme-state-budget-', 5, 400);
    await take({});
    const bytes = store.accounting().totalBytes;
    const restored = await restoreState(
      loadConfig([], {
        PME_STATE_DIR: dir,
        PME_BUDGET_BYTES: String(bytes * 4),
        PME_TOKEN_TTL_MS: '60000',
        PME_SEED: '99',
      }),
    );
    t.equal(restored.store.options.budgetBytes, bytes * 4, 'the new budget');
    t.equal(restored.store.accounting().budgetBytes, bytes * 4, 'and the accounting holds to it');
    t.equal(restored.store.options.ttlMs, 60_000, 'the new TTL');
    t.equal(restored.store.options.seed, 5, "the snapshot's seed: new rows continue its sequence");
    t.equal(restored.store.size, 400);
  },
);

t.test('a restore that passes over an unusable snapshot says which one and why', async (t) => {
  const { dir, store, take } = await stateDirWith(t, 'pme-state-skip-', 4, 300);
  const older = await take({ 'i:0': '3' });
  const expected = structuredClone(store.exportState()); // export shares the live columns
  store.row(store.getOrCreate('user=late', 8)).fill(1);
  const newer = await take({ 'i:0': '9' });
  // A disk that lost the newest file's tail: it is complete on its name but not in its bytes.
  const whole = await readFile(newer.path);
  await writeFile(newer.path, whole.subarray(0, whole.length - 64));

  const restored = await restoreState(loadConfig([], { PME_STATE_DIR: dir }));
  t.same(
    restored.skipped.map((s) => s.path),
    [newer.path],
    'the newest is passed over, and named',
  );
  t.match(restored.skipped[0].reason, /unusable/, `with its reason: ${restored.skipped[0].reason}`);
  t.not(older.path, newer.path);
  t.equal(diffStates(restored.store.exportState(), expected), null, 'the one before it is restored');
  t.same(applyRestored(new Trainer(restored.store, { seed: 4 }), restored.extra), { 'i:0': '3' });
});

/** The value of a gauge without labels in Prometheus text, or undefined when it is absent. */
function gauge(text: string, name: string): number | undefined {
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
  return m === null ? undefined : Number(m[1]);
}

t.test(
  'pme_snapshot_age_seconds: from the start, then each snapshot taken, then the restored one',
  async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'pme-state-age-'));
    t.teardown(() => rm(dir, { recursive: true, force: true }));
    const { store, trainer } = trained();
    const watch = { running: null, windowsStarted: 0 };
    let now = Date.now();
    const sources = (age: SnapshotAge): MetricSources => ({
      trainer: () => trainer.stats(),
      consumer: () => ({ consumed: 0, dlq: {}, lag: {} }),
      tiers: () => tierMetrics(store, trainer, null),
      pruneWindows: () => 0,
      backend: () => 'test',
      snapshotAge: () => age.seconds(),
    });
    const age = new SnapshotAge(null, now, () => now);
    const metrics = new ServiceMetrics(sources(age));
    now += 12_000;
    t.equal(
      gauge(await metrics.registry.metrics(), 'pme_snapshot_age_seconds'),
      12,
      'none yet: since the start',
    );

    const taken = await takeSnapshot(dir, store, trainer, watch, new StateLock(), () => ({}));
    age.taken(taken.writtenAt);
    now = taken.writtenAt + 1_500;
    t.equal(
      gauge(await metrics.registry.metrics(), 'pme_snapshot_age_seconds'),
      1.5,
      'a snapshot: back down',
    );
    now += 30_000;
    t.equal(gauge(await metrics.registry.metrics(), 'pme_snapshot_age_seconds'), 31.5, 'and up again');

    const restored = await restoreState(loadConfig([], { PME_STATE_DIR: dir }));
    t.ok(
      restored.writtenAt !== null && Math.abs(restored.writtenAt - taken.writtenAt) < 1000,
      `restored: the file's time (${restored.writtenAt} vs ${taken.writtenAt})`,
    );
    const after = new SnapshotAge(restored.writtenAt, now, () => now);
    const age2 = gauge(
      await new ServiceMetrics(sources(after)).registry.metrics(),
      'pme_snapshot_age_seconds',
    );
    t.ok(
      age2 !== undefined && Math.abs(age2 - 31.5) < 1,
      `a restart goes on from the restored snapshot: ${age2}`,
    );

    const { snapshotAge: _none, ...replica } = sources(age);
    t.equal(
      gauge(await new ServiceMetrics(replica).registry.metrics(), 'pme_snapshot_age_seconds'),
      undefined,
      'no snapshots (a replica): no series, not a made-up 0',
    );
  },
);

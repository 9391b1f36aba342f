/**
 * Garbage collection behind the API: what the service's background work costs the thread that
 * answers requests, in young and full collections, without HTTP or a load generator in the way.
 * A store, PME controller and trainer are warmed on the synthetic workload (as bench/api.ts), then
 * for `--seconds` they learn at `--train-rate` events/s in the service's slices, with the
 * parameter publish's change scan every `--publish-ms` (the Kafka send left out) and a snapshot
 * every `--snapshot-ms` (0: off). Every collection V8 reports is counted by kind, and the event
 * loop's delay is sampled: the longest pauses are what a request would wait.
 *
 *   npm run bench:gc [-- --items 100000 --seconds 20 --train-rate 10000 --publish-ms 1000
 *     --snapshot-ms 5000]
 *
 * Runs under the launchers' Node flags (package.json's script passes them). The events learned
 * while measuring are made before the clock starts and used in turn, so the generator's own
 * garbage stays out of the figures. Writes bench/results/gc.json. About 40 s.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay, PerformanceObserver } from 'node:perf_hooks';
import { execArgv } from 'node:process';
import { setTimeout as sleep } from 'node:timers/promises';
import { type Interaction, SyntheticWorkload } from '../src/data/index.js';
import {
  ChangeTracker,
  learnInSlices,
  PmeController,
  startItemRefresh,
  Trainer,
} from '../src/engine/index.js';
import { StateLock } from '../src/service/lock.js';
import { takeSnapshot } from '../src/service/state.js';
import { EmbeddingStore } from '../src/store/index.js';
import { ParamPacker } from '../src/stream/index.js';
import { numberArg as arg } from './args.js';

const ITEMS = arg('items', 100_000);
const SECONDS = arg('seconds', 20);
const TRAIN_RATE = arg('train-rate', 10_000);
const PUBLISH_MS = arg('publish-ms', 1000);
const SNAPSHOT_MS = arg('snapshot-ms', 5000);
const WARM_EVENTS = 300_000;
const BATCH = 1024;
/** Distinct batches learned in turn while measuring: 10 s of events at the default rate. */
const POOL_BATCHES = 100;

/** V8's kinds in PerformanceObserver's gc entries. */
const KINDS: Record<number, string> = {
  1: 'young',
  2: 'minorMarkSweep',
  4: 'full',
  8: 'incremental',
  16: 'weakCallbacks',
};

interface Tally {
  count: number;
  totalMs: number;
  maxMs: number;
}

async function main(): Promise<void> {
  const store = new EmbeddingStore({ seed: 1 });
  const pme = new PmeController(store, { windowEvents: 100_000 });
  const workload = new SyntheticWorkload({
    seed: 1,
    users: 20_000,
    items: ITEMS,
    fields: [
      { name: 'category', cardinality: 20 },
      { name: 'brand', cardinality: 500 },
    ],
  });
  const trainer = new Trainer(store, {
    seed: 1,
    observer: pme,
    catalog: workload.catalog(),
    itemRefreshMs: 1000,
  });
  pme.attach(trainer);
  for (let i = 0; i < WARM_EVENTS; i += BATCH) {
    await learnInSlices(trainer, workload.take(BATCH));
    if (pme.running !== null) await pme.running;
  }
  const stopRefresh = startItemRefresh(trainer);
  const pool: Interaction[][] = Array.from({ length: POOL_BATCHES }, () => workload.take(BATCH));
  const tracker = new ChangeTracker(store, trainer);
  tracker.collect(Date.now(), new ParamPacker());
  const snapshotDir = await mkdtemp(join(tmpdir(), 'pme-bench-gc-'));
  process.stderr.write(
    `warmed: ${store.size.toLocaleString('en-US')} tokens, ${ITEMS.toLocaleString('en-US')} items\n`,
  );

  const gc = new Map<string, Tally>();
  const observer = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      const kind = KINDS[(e as PerformanceEntry & { detail: { kind: number } }).detail.kind] ?? 'other';
      const t = gc.get(kind) ?? { count: 0, totalMs: 0, maxMs: 0 };
      t.count++;
      t.totalMs += e.duration;
      t.maxMs = Math.max(t.maxMs, e.duration);
      gc.set(kind, t);
    }
  });
  observer.observe({ entryTypes: ['gc'] });
  const delay = monitorEventLoopDelay({ resolution: 1 });
  delay.enable();
  const work = { publishes: 0, records: 0, snapshots: 0, learned: 0 };
  // Training, the publish's change scan and the snapshot's copy hold the state lock, as in the service.
  const lock = new StateLock();
  let writing: Promise<unknown> = Promise.resolve();
  const timers: NodeJS.Timeout[] = [];
  if (PUBLISH_MS > 0)
    timers.push(
      setInterval(async () => {
        const packer = await lock.run(() => tracker.collectInSlices(Date.now(), new ParamPacker()));
        const packs = packer.finish();
        work.publishes++;
        for (const pack of packs) work.records += pack.keyEnds.length;
      }, PUBLISH_MS),
    );
  if (SNAPSHOT_MS > 0)
    timers.push(
      setInterval(() => {
        writing = takeSnapshot(snapshotDir, store, trainer, pme, lock, () => ({})).then(
          () => work.snapshots++,
        );
      }, SNAPSHOT_MS),
    );
  const t0 = performance.now();
  while (performance.now() - t0 < SECONDS * 1000) {
    const due = ((performance.now() - t0) * TRAIN_RATE) / 1000;
    if (work.learned + BATCH <= due) {
      await lock.run(() => learnInSlices(trainer, pool[(work.learned / BATCH) % POOL_BATCHES]));
      work.learned += BATCH;
    } else await sleep(2);
  }
  const seconds = (performance.now() - t0) / 1000;
  for (const timer of timers) clearInterval(timer);
  delay.disable();
  observer.disconnect();
  stopRefresh();
  await pme.running;
  await writing;
  await rm(snapshotDir, { recursive: true, force: true });

  const round = (x: number) => Math.round(x * 100) / 100;
  const collections = Object.fromEntries(
    [...gc].map(([kind, t]) => [kind, { count: t.count, totalMs: round(t.totalMs), maxMs: round(t.maxMs) }]),
  );
  const result = {
    node: process.version,
    nodeFlags: execArgv,
    cpus: cpus().length,
    items: ITEMS,
    seconds: round(seconds),
    trainRateTarget: TRAIN_RATE,
    publishMs: PUBLISH_MS,
    snapshotMs: SNAPSHOT_MS,
    ...work,
    eventsPerSecond: Math.round(work.learned / seconds),
    collections,
    loopDelayMs: {
      p99: round(delay.percentile(99) / 1e6),
      max: round(delay.max / 1e6),
    },
    loadAverage: loadavg(),
  };
  for (const [kind, t] of Object.entries(collections))
    console.log(
      `${kind.padEnd(14)} ${String(t.count).padStart(4)} collections, ${t.totalMs.toFixed(1).padStart(7)} ms in all, longest ${t.maxMs.toFixed(2)} ms`,
    );
  console.log(
    `learned ${work.learned.toLocaleString('en-US')} events in ${seconds.toFixed(1)} s; ${work.publishes} publishes (${work.records.toLocaleString('en-US')} records), ${work.snapshots} snapshots; loop delay p99 ${result.loopDelayMs.p99} ms, max ${result.loopDelayMs.max} ms`,
  );
  await mkdir('bench/results', { recursive: true });
  await writeFile('bench/results/gc.json', `${JSON.stringify(result, null, 2)}\n`);
  console.log('wrote bench/results/gc.json');
}

await main();

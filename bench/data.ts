/**
 * Parse speed of the file formats on the real sample data, and generation speed of the
 * synthetic workload. Usage: node dist/bench/data.js [datasetsDir]
 * Writes bench/results/data.json.
 */
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type ReadOptions, readEvents, SyntheticWorkload, streamEvents } from '../src/data/index.js';

const datasets = process.argv[2] ?? '../shared/datasets';
const RUNS = 5;

async function time(
  fn: () => Promise<number>,
): Promise<{ coldMs: number; medianMs: number; events: number }> {
  let t0 = performance.now();
  const events = await fn();
  const coldMs = performance.now() - t0;
  const runs: number[] = [];
  for (let r = 0; r < RUNS; r++) {
    t0 = performance.now();
    await fn();
    runs.push(performance.now() - t0);
  }
  runs.sort((a, b) => a - b);
  return { coldMs, medianMs: runs[RUNS >> 1], events };
}

const results: Record<string, unknown> = { node: process.version, runs: RUNS };
const files: [string, ReadOptions][] = [
  ['movielens ratings.csv', { path: join(datasets, 'ml-latest-small/ratings.csv'), format: 'movielens' }],
  [
    'movielens ratings.csv + movies.csv',
    {
      path: join(datasets, 'ml-latest-small/ratings.csv'),
      format: 'movielens',
      itemsPath: join(datasets, 'ml-latest-small/movies.csv'),
    },
  ],
  ['criteo train.tsv', { path: join(datasets, 'criteo-sample/train.tsv'), format: 'criteo' }],
  [
    'criteo train.tsv minCount 5',
    { path: join(datasets, 'criteo-sample/train.tsv'), format: 'criteo', minCount: 5 },
  ],
  ['avazu train.csv', { path: join(datasets, 'avazu-sample/train.csv'), format: 'avazu' }],
];
for (const [name, options] of files) {
  if (!existsSync(options.path)) {
    console.log(`${name}: ${options.path} not found, skipped`);
    continue;
  }
  const read = await time(async () => (await readEvents(options)).events.length);
  const stream = await time(async () => {
    let n = 0;
    for await (const _ of streamEvents(options)) n++;
    return n;
  });
  const row = {
    events: read.events,
    readEventsColdMs: +read.coldMs.toFixed(1),
    readEventsMs: +read.medianMs.toFixed(1),
    readEventsPerSecond: Math.round(read.events / (read.medianMs / 1000)),
    streamEventsMs: +stream.medianMs.toFixed(1),
    streamEventsPerSecond: Math.round(stream.events / (stream.medianMs / 1000)),
  };
  results[name] = row;
  console.log(name, JSON.stringify(row));
}

for (const [name, options] of [
  ['synthetic small (1k users, 1k items, d=8)', {}],
  [
    'synthetic large (100k users, 50k items, d=16, 3 fields)',
    {
      users: 100_000,
      items: 50_000,
      latentDim: 16,
      fields: [
        { name: 'category', cardinality: 50 },
        { name: 'brand', cardinality: 500 },
        { name: 'price', cardinality: 10 },
      ],
    },
  ],
] as const) {
  let t0 = performance.now();
  const w = new SyntheticWorkload({ seed: 1, ...options });
  const setupMs = performance.now() - t0;
  w.take(100_000);
  const n = 1_000_000;
  let positives = 0;
  t0 = performance.now();
  for (let k = 0; k < n; k++) positives += w.next().label;
  const ms = performance.now() - t0;
  const row = {
    setupMs: +setupMs.toFixed(1),
    eventsPerSecond: Math.round(n / (ms / 1000)),
    positiveRate: positives / n,
  };
  results[name] = row;
  console.log(name, JSON.stringify(row));
}

mkdirSync('bench/results', { recursive: true });
writeFileSync('bench/results/data.json', `${JSON.stringify(results, null, 2)}\n`);

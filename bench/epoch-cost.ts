/**
 * CPU seconds per training epoch of the offline protocol's fixed-size methods (full, uniform,
 * MDE) under learned and nested projections (`--projection`): issue 18's "an epoch of a
 * multi-size model must cost no more than full's". Per dataset, method and projection: the median
 * over --runs runs (default 3) of runOffline with --epochs epochs (default 6, patience as many, so
 * none stops early), the first dropped (warm-up), the rest averaged; budget 0.2, seed 1. CPU time
 * (process.cpuUsage, user + system) stands in for performance.now, which the protocol times its
 * epochs with, so the figures are CPU seconds of the epochs alone (no evaluation). Full has no
 * projection: it is run once. Writes bench/results/epoch-cost.json.
 *
 *   npm run build && node dist/bench/epoch-cost.js [--data-dir ../shared/datasets] [--runs 3] [--epochs 6]
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { readEvents } from '../src/data/index.js';
import { type OfflineMethod, runOffline } from '../src/engine/offline.js';
import { numberArg, stringArg } from './args.js';
import { foundDatasets } from './datasets.js';

const DATA = stringArg('data-dir') ?? '../shared/datasets';
const RUNS = numberArg('runs', 3);
const EPOCHS = numberArg('epochs', 6);
const RUNS_OF: Array<{ method: OfflineMethod; projection: 'learned' | 'nested' }> = [
  { method: 'full', projection: 'learned' },
  { method: 'uniform', projection: 'learned' },
  { method: 'mde', projection: 'learned' },
  { method: 'uniform', projection: 'nested' },
  { method: 'mde', projection: 'nested' },
];

const median = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];

async function main(): Promise<void> {
  const cpuMs = () => {
    const u = process.cpuUsage();
    return (u.user + u.system) / 1000;
  };
  performance.now = cpuMs;
  const rows: unknown[] = [];
  for (const d of foundDatasets(DATA)) {
    const read = await readEvents({
      path: d.path,
      format: d.format,
      itemsPath: d.itemsPath,
      sortByTime: false,
    });
    const cells: string[] = [];
    let full = Number.NaN;
    for (const { method, projection } of RUNS_OF) {
      const perRun: number[] = [];
      for (let run = 0; run < RUNS; run++) {
        const seconds: number[] = [];
        await runOffline(read.events, read.catalog, {
          budget: 0.2,
          seed: 1,
          epochs: EPOCHS,
          patience: EPOCHS,
          methods: [method],
          minCount: d.minCount ?? 1,
          model: { projection },
          onEpoch: (p) => {
            if (p.method === method) seconds.push(p.seconds);
          },
        });
        const kept = seconds.slice(1);
        perRun.push(kept.reduce((a, b) => a + b, 0) / kept.length);
      }
      const cpu = median(perRun);
      if (method === 'full') full = cpu;
      rows.push({
        dataset: d.name,
        method,
        projection,
        cpuSecondsPerEpoch: cpu,
        runs: perRun,
        ofFull: cpu / full,
      });
      cells.push(`${method}${method === 'full' ? '' : ` ${projection}`} ${cpu.toFixed(3)}`);
    }
    console.log(`${d.name.padEnd(16)} CPU s/epoch: ${cells.join('  ')}`);
  }
  await mkdir('bench/results', { recursive: true });
  await writeFile(
    'bench/results/epoch-cost.json',
    `${JSON.stringify({ budget: 0.2, seed: 1, runs: RUNS, epochs: EPOCHS, rows }, null, 2)}\n`,
  );
  console.log('wrote bench/results/epoch-cost.json');
}

await main();

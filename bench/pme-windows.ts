/**
 * What PME's windows do on real streams, over several seeds and budgets: progressive AUC, the
 * window's own AUC step (its probe: the last events learned, scored just before and just after its
 * moves), tokens moved by PME against the store's last resort, and bytes. Budgets and targets are
 * shares of full size (every token at D, measured by a replay with PME off at D). Datasets not
 * found are skipped with a line. Writes bench/results/pme-windows.json.
 *
 *   npm run bench:pme -- [--data-dir ../shared/datasets] [--shares 0.1,0.25,0.5] [--seeds 1,2,3]
 */
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type StreamEvalOptions, streamEval } from '../src/engine/stream-eval.js';
import { stringArg } from './args.js';
import { STREAM_DATASETS } from './datasets.js';

const DATA = stringArg('data-dir') ?? '../shared/datasets';
const SHARES = (stringArg('shares') ?? '0.1,0.25,0.5').split(',').map(Number);
const SEEDS = (stringArg('seeds') ?? '1,2,3').split(',').map(Number);
const DIM = 64;

const DATASETS = STREAM_DATASETS;

const mean = (a: number[]) => a.reduce((x, y) => x + y, 0) / a.length;
const sum = (a: number[]) => a.reduce((x, y) => x + y, 0);

async function main(): Promise<void> {
  const rows: unknown[] = [];
  for (const d of DATASETS) {
    const data = join(DATA, d.data);
    if (!existsSync(data)) {
      console.log(`${d.name}: skipped (${data} not found)`);
      continue;
    }
    const base: StreamEvalOptions = {
      data,
      format: d.format,
      items: d.items === undefined ? undefined : join(DATA, d.items),
      dim: DIM,
      pme: false,
      windowEvents: d.windowEvents,
      negatives: 0,
      batch: 256,
      seed: 1,
    };
    const full = (await streamEval({ ...base, startSize: DIM })).totalEmbeddingBytes;
    for (const share of SHARES) {
      const runs = [];
      for (const seed of SEEDS)
        runs.push(
          await streamEval({
            ...base,
            seed,
            pme: true,
            budgetBytes: Math.floor(full * share),
            target: share,
          }),
        );
      const steps = runs.flatMap((r) =>
        r.windows.flatMap((w) => (w.probe === null ? [] : [w.probe.aucAfter - w.probe.aucBefore])),
      );
      const row = {
        dataset: d.name,
        share,
        fullBytes: full,
        seeds: SEEDS,
        auc: runs.map((r) => r.auc),
        bytes: runs.map((r) => r.totalEmbeddingBytes),
        windows: runs.map((r) => r.windows.length),
        probeStep: { mean: mean(steps), min: Math.min(...steps), windows: steps.length },
        prunedByPme: runs.map((r) => sum(r.windows.map((w) => w.moved))),
        memory: runs.map((r) => r.memory),
      };
      rows.push(row);
      const m = runs.map((r) => r.memory);
      console.log(
        `${d.name.padEnd(16)} ${`${share * 100}%`.padStart(4)}  AUC ${mean(row.auc).toFixed(4)} [${row.auc.map((a) => a.toFixed(4)).join(' ')}]` +
          `  window step ${row.probeStep.mean.toFixed(4)} (min ${row.probeStep.min.toFixed(4)}, ${steps.length} windows)` +
          `  PME pruned ${mean(row.prunedByPme).toFixed(0)} relieved ${mean(m.map((x) => x.relieved)).toFixed(0)}` +
          `  store truncated ${mean(m.map((x) => x.truncated)).toFixed(0)} evicted ${mean(m.map((x) => x.evicted)).toFixed(0)}` +
          `  bytes ${Math.round(mean(row.bytes))} of full ${full}`,
      );
    }
  }
  await mkdir('bench/results', { recursive: true });
  await writeFile('bench/results/pme-windows.json', `${JSON.stringify({ dim: DIM, rows }, null, 2)}\n`);
  console.log('wrote bench/results/pme-windows.json');
}

await main();

/**
 * What PME's windows do on real streams, over several seeds and budgets: progressive AUC, the
 * window's own AUC step (its probe: the last events learned, scored just before and just after its
 * moves; and its lookahead: the next events, not learned yet, scored the same way), tokens moved
 * by PME against the store's last resort, and bytes. Budgets are shares of full size (every token
 * at D, measured by a replay with PME off at D); PME's windows prune to the same share (--target),
 * and PME with target 1 (only the budget limits it, as it limits the uniform sizes) runs beside.
 * Datasets not found are skipped with a line. Beside PME, every uniform size of --uniform held to
 * the same bytes (the store evicts at the budget), popularity-scaled sizes (MDE's rule on running
 * counts, under PME's own target, budget, moves and relief: src/engine/pme/popularity.ts) and full
 * size with no budget, on the same seeds: the figures "PME beats fixed sizes at equal bytes" is
 * judged by. Each of PME's paired differences comes with its 95% interval over the events (a
 * paired block bootstrap of every seed's predictions: bootstrap.ts).
 * Writes bench/results/pme-windows.json (or --out). `--learner` sets model options (FmOptions'
 * names, e.g. '{"projection":"nested"}') for every replay, full, uniform and popularity included.
 *
 *   npm run bench:pme -- [--data-dir ../shared/datasets] [--shares 0.1,0.25,0.5] [--seeds 1,2,3]
 *     [--uniform 8,16,32] [--target 1|share] [--pme-options JSON] [--learner JSON] [--start-size S]
 *     [--evicted-buckets N] [--out FILE]
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { WindowReport } from '../src/engine/pme/options.js';
import type { ProbeReport } from '../src/engine/pme/probe.js';
import { type StreamEvalOptions, streamEval } from '../src/engine/stream-eval.js';
import { stringArg } from './args.js';
import { pairedAucBootstrap } from './bootstrap.js';
import { foundDatasets } from './datasets.js';
import { meanInterval, meanStd } from './quality-core.js';

const DATA = stringArg('data-dir') ?? '../shared/datasets';
const SHARES = (stringArg('shares') ?? '0.1,0.25,0.5').split(',').map(Number);
const SEEDS = (stringArg('seeds') ?? '1,2,3').split(',').map(Number);
const UNIFORM_SIZES = (stringArg('uniform') ?? '8,16,32').split(',').map(Number);
/** PME controller options for an experiment (e.g. '{"searchShare":0.1}'). Default none. */
const PME_OPTIONS = JSON.parse(stringArg('pme-options') ?? '{}');
/** What PME (and popularity) prune to: `share` (default), every window to the budget's share of
 *  what the live tokens would take at D (PME frees memory before the budget needs it, as
 *  `--prune-target` does in the service), or a number such as 1: only what the budget needs (the
 *  budget then limits PME as it limits the uniform sizes). PME at the other one (1 for `share`,
 *  `share` for a number) runs too, as a column. */
const TARGET = stringArg('target') ?? 'share';
if (TARGET !== 'share' && !(Number(TARGET) > 0 && Number(TARGET) <= 1))
  throw new Error(`--target must be in (0, 1] or "share", got ${TARGET}`);
/** Model options for every replay (e.g. '{"projection":"nested"}'). Default none. */
const LEARNER = JSON.parse(stringArg('learner') ?? '{}') as NonNullable<StreamEvalOptions['learner']>;
/** PME's start size (an experiment; default the replay's, 8). */
const START_SIZE = stringArg('start-size');
/** Buckets of the store's evicted-weights table (0: off; default the store's). */
const EVICTED_BUCKETS = stringArg('evicted-buckets');
const OUT = stringArg('out') ?? 'bench/results/pme-windows.json';
const DIM = 64;

const mean = (a: number[]) => a.reduce((x, y) => x + y, 0) / a.length;
/** A paired difference as printed: mean ± std over seeds, and its 95% interval over the events. */
const delta = (x: { mean: number; std: number; ci95: number[] }) =>
  `${x.mean.toFixed(4)} ± ${x.std.toFixed(4)} [${x.ci95.map((v) => v.toFixed(4)).join(', ')}]`;
const sum = (a: number[]) => a.reduce((x, y) => x + y, 0);

async function main(): Promise<void> {
  const rows: unknown[] = [];
  for (const d of foundDatasets(DATA)) {
    const base: StreamEvalOptions = {
      data: d.path,
      format: d.format,
      items: d.itemsPath,
      dim: DIM,
      pme: false,
      windowEvents: d.windowEvents,
      negatives: 0,
      batch: 256,
      seed: 1,
      learner: LEARNER,
      ...(EVICTED_BUCKETS === undefined ? {} : { evictedBuckets: Number(EVICTED_BUCKETS) }),
    };
    /** One replay per seed, in order, with every event's progressive prediction. */
    let labels: readonly number[] = [];
    const replay = async (o: Partial<StreamEvalOptions>) => {
      const out = [];
      for (const seed of SEEDS) {
        const predictions: number[] = [];
        const seen: number[] = [];
        const onPrediction = (p: number, label: number) => {
          predictions.push(p);
          seen.push(label);
        };
        const r = await streamEval({ ...base, ...o, seed, onPrediction });
        // Pairing needs the very same events in every replay (no negatives are drawn here).
        if (labels.length === 0) labels = seen;
        else if (seen.length !== labels.length || seen.some((y, i) => y !== labels[i]))
          throw new Error(
            `${d.name}: a replay saw other events than the first; paired intervals need the same`,
          );
        out.push({ ...r, predictions });
      }
      return out;
    };
    /** PME − another sizing, paired by seed: mean ± std, and the 95% interval of the mean over
     *  resamples of the events (bootstrap.ts). */
    type Scored = { auc: number; predictions: number[] };
    const against = (mine: Scored[], theirs: Scored[]) => {
      const { lo, hi } = pairedAucBootstrap(
        mine.map((m, i) => ({ labels, a: m.predictions, b: theirs[i].predictions })),
      );
      return { ...meanStd(mine.map((m, i) => m.auc - theirs[i].auc)), ci95: [lo, hi] };
    };
    const fullRuns = await replay({ startSize: DIM });
    const full = fullRuns[0].totalEmbeddingBytes;
    const fullAuc = fullRuns.map((r) => r.auc);
    console.log(`${d.name.padEnd(16)} full  AUC ${mean(fullAuc).toFixed(4)}  bytes ${full}`);
    for (const share of SHARES) {
      const budgetBytes = Math.floor(full * share);
      const target = TARGET === 'share' ? share : Number(TARGET);
      const pmeRun = (t: number) =>
        replay({
          pme: true,
          pmeOptions: PME_OPTIONS,
          budgetBytes,
          target: t,
          ...(START_SIZE === undefined ? {} : { startSize: Number(START_SIZE) }),
        });
      const runs = await pmeRun(target);
      // The other target, for the column beside it.
      const otherTarget = TARGET === 'share' ? 1 : share;
      const other = await pmeRun(otherTarget);
      // A window's AUC step on the last events learned (its probe) and on the next ones (lookahead).
      const stepsOf = (pick: (w: WindowReport) => ProbeReport | null) =>
        runs.flatMap((r) =>
          r.windows.flatMap((w) => {
            const p = pick(w);
            return p === null ? [] : [p.aucAfter - p.aucBefore];
          }),
        );
      const steps = stepsOf((w) => w.probe);
      const aheadSteps = stepsOf((w) => w.lookahead);
      // Every uniform size held to the same budget, on the same seeds.
      const uniform = [];
      for (const size of UNIFORM_SIZES) {
        const u = await replay({ startSize: size, budgetBytes });
        uniform.push({ size, runs: u, auc: u.map((r) => r.auc), bytes: u.map((r) => r.totalEmbeddingBytes) });
      }
      // MDE's rule online: the same windows, target and budget; only the sizing rule differs.
      const popular = await replay({ pme: true, sizing: 'popularity', budgetBytes, target });
      const popularAuc = popular.map((r) => r.auc);
      const best = uniform.reduce((a, b) => (mean(b.auc) > mean(a.auc) ? b : a));
      const row = {
        dataset: d.name,
        share,
        fullBytes: full,
        fullAuc,
        uniform: uniform.map(({ runs: _, ...u }) => u),
        bestUniform: { size: best.size, auc: meanStd(best.auc) },
        // PME − best uniform and − popularity, paired by seed, with their intervals (against).
        deltaBestUniform: against(runs, best.runs),
        popularity: { auc: popularAuc, bytes: popular.map((r) => r.totalEmbeddingBytes) },
        deltaPopularity: against(runs, popular),
        seeds: SEEDS,
        target,
        auc: runs.map((r) => r.auc),
        /** PME at the other target (see --target), and its − best uniform, paired by seed. */
        otherTarget: {
          target: otherTarget,
          auc: other.map((r) => r.auc),
          bytes: other.map((r) => r.totalEmbeddingBytes),
          deltaBestUniform: against(other, best.runs),
        },
        bytes: runs.map((r) => r.totalEmbeddingBytes),
        windows: runs.map((r) => r.windows.length),
        // With the 95% t-interval of the mean over the windows of all seeds.
        probeStep: {
          mean: mean(steps),
          min: Math.min(...steps),
          windows: steps.length,
          ci95: meanInterval(steps),
        },
        lookaheadStep: {
          mean: mean(aheadSteps),
          min: Math.min(...aheadSteps),
          windows: aheadSteps.length,
          ci95: meanInterval(aheadSteps),
        },
        prunedByPme: runs.map((r) => sum(r.windows.map((w) => w.moved))),
        memory: runs.map((r) => r.memory),
      };
      rows.push(row);
      const m = runs.map((r) => r.memory);
      console.log(
        `${d.name.padEnd(16)} ${`${share * 100}%`.padStart(4)}  AUC ${mean(row.auc).toFixed(4)} [${row.auc.map((a) => a.toFixed(4)).join(' ')}]` +
          `  window step ${row.probeStep.mean.toFixed(4)} (min ${row.probeStep.min.toFixed(4)}, ${steps.length} windows)` +
          `, on the next events ${row.lookaheadStep.mean.toFixed(4)} (min ${row.lookaheadStep.min.toFixed(4)})` +
          `  PME pruned ${mean(row.prunedByPme).toFixed(0)} relieved ${mean(m.map((x) => x.relieved)).toFixed(0)}` +
          `  store truncated ${mean(m.map((x) => x.truncated)).toFixed(0)} evicted ${mean(m.map((x) => x.evicted)).toFixed(0)}` +
          `  bytes ${Math.round(mean(row.bytes))} of full ${full}`,
      );
      console.log(
        `${''.padEnd(16)} ${''.padStart(4)}  ${uniform.map((u) => `uniform ${u.size} ${mean(u.auc).toFixed(4)}`).join('  ')}  PME − best uniform ${delta(row.deltaBestUniform)}` +
          `  popularity ${mean(popularAuc).toFixed(4)}  PME − popularity ${delta(row.deltaPopularity)}` +
          `  PME at target ${otherTarget} ${mean(row.otherTarget.auc).toFixed(4)} (− best uniform ${delta(row.otherTarget.deltaBestUniform)})`,
      );
    }
  }
  await mkdir(dirname(OUT), { recursive: true });
  await writeFile(OUT, `${JSON.stringify({ dim: DIM, learner: LEARNER, rows }, null, 2)}\n`);
  console.log(`wrote ${OUT}`);
}

await main();

/**
 * `pme stream-eval`: replays a file (or a synthetic stream) through the trainer in process, in
 * timestamp order, and reports progressive AUC / logloss, throughput and memory per tier.
 * This file owns the command's flags, usage, printed report, `--json` file and exit codes; the
 * replay itself is `streamEval()` in src/engine/stream-eval.ts.
 */
import { writeFile } from 'node:fs/promises';
import {
  checkHotThreshold,
  LEARNER_FLAGS,
  type LearnerConfig,
  learnerFlags,
  learnerUsage,
  modelOptionsOf,
} from '../../config.js';
import { FORMAT_NAMES } from '../../data/index.js';
import { initBackend } from '../../engine/backend.js';
import { MODEL_KINDS, MODELS } from '../../engine/model/index.js';
import { streamEval } from '../../engine/stream-eval.js';
import { isPmeError, PmeError } from '../../errors.js';
import { formatBytes } from '../../util/bytes.js';
import { commandFlags } from '../args.js';

const USAGE = `usage: pme stream-eval (--data FILE --format F [--items FILE] | --synthetic N) [flags]

  --data FILE          events file
  --format F           ${FORMAT_NAMES.join(' | ')}
  --items FILE         MovieLens movies file (genres)
  --synthetic N        N events from the synthetic generator instead of a file
  --dim D              full embedding size D (ladder 0, 2, 4, .., D). Default 64
  --model M            ${MODEL_KINDS.join(' | ')}. Default fm
${MODEL_KINDS.map((kind) => `                         ${kind}: ${MODELS[kind].summary}`).join('\n')}
${learnerUsage(23)}
  --hidden W,W         DeepFM hidden layer widths. Default 64,32
  --budget-bytes N     hard memory budget of the store. Default none
  --evicted-buckets N  buckets keeping evicted tokens' linear weights (0: off). Default 4096
  --pme                PME: tokens start small, hot ones are searched at D, windows prune to the budget
  --start-size S       size of new tokens. Default D without --pme; with it the size at or above
                       target × D, at most 16 and below D (8 at --target 0.1, 16 at 0.25)
  --window-events N    PME window every N events. Default 100000
  --target F           PME: share of full size (every token at D) each window prunes to. Default 0.25
  --hot-threshold F    PME: decayed count at which a token is searched at D. Default 5
  --negatives N        negatives per positive (positive-only streams). Default 0
  --cross-user-item    one more token per event: the user and item pair's linear weight (VW's -q ui)
  --batch N            mini-batch size. Default 256
  --seed S             seed. Default 1
  --limit N            stop after N events
  --timeline-events N  also sample AUC and memory per tier every N events (JSON timeline). Default off
  --json OUT           also write the result as JSON
`;

function int(name: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0)
    throw new PmeError('PME_ERR_CONFIG_INVALID', `--${name} must be an integer >= 0`);
  return n;
}

/** Runs the command; returns the exit code. */
export async function streamEvalCommand(argv: string[]): Promise<number> {
  const v = commandFlags(
    'stream-eval',
    USAGE,
    argv,
    [
      'data',
      'format',
      'items',
      'synthetic',
      'dim',
      ...LEARNER_FLAGS,
      'hidden',
      'budget-bytes',
      'evicted-buckets',
      'start-size',
      'window-events',
      'target',
      'hot-threshold',
      'negatives',
      'batch',
      'seed',
      'limit',
      'timeline-events',
      'json',
    ],
    ['pme', 'cross-user-item'],
  );
  if (typeof v === 'number') return v;
  if ((v.data === undefined || v.format === undefined) && v.synthetic === undefined) {
    process.stderr.write(`pme stream-eval: --data and --format (or --synthetic N) are needed\n\n${USAGE}`);
    return 2;
  }
  let learner: LearnerConfig;
  try {
    learner = learnerFlags(v, MODEL_KINDS);
  } catch (error) {
    process.stderr.write(`pme stream-eval: ${(error as Error).message}\n\n${USAGE}`);
    return 2;
  }
  const model = learner.model;
  try {
    const hidden = v.hidden === undefined ? undefined : v.hidden.split(',').map((w) => int('hidden', w, 0));
    if (model === 'deepfm') {
      const backend = await initBackend();
      const skipped = backend.skipped.map((s) => `${s.name}: ${s.reason}`).join('; ');
      process.stderr.write(
        `deepfm: TensorFlow.js backend ${backend.name}${skipped === '' ? '' : ` (skipped ${skipped})`}\n`,
      );
    }
    const tty = process.stderr.isTTY === true;
    const result = await streamEval({
      model,
      learner: modelOptionsOf(learner),
      initStd: learner.initStd,
      hidden,
      data: v.data,
      format: v.format,
      items: v.items,
      synthetic: v.synthetic === undefined ? undefined : int('synthetic', v.synthetic, 0),
      dim: int('dim', v.dim, 64),
      budgetBytes: v['budget-bytes'] === undefined ? undefined : int('budget-bytes', v['budget-bytes'], 0),
      evictedBuckets:
        v['evicted-buckets'] === undefined ? undefined : int('evicted-buckets', v['evicted-buckets'], 0),
      pme: v.pme === true,
      startSize: v['start-size'] === undefined ? undefined : int('start-size', v['start-size'], 8),
      windowEvents: int('window-events', v['window-events'], 100_000),
      target: v.target === undefined ? undefined : Number(v.target),
      pmeOptions:
        v['hot-threshold'] === undefined
          ? undefined
          : { hotThreshold: checkHotThreshold(Number(v['hot-threshold']), v['hot-threshold']) },
      negatives: int('negatives', v.negatives, 0),
      crossUserItem: v['cross-user-item'] === true,
      batch: Math.max(1, int('batch', v.batch, 256)),
      seed: int('seed', v.seed, 1),
      limit: v.limit === undefined ? undefined : int('limit', v.limit, 0),
      timelineEvents: int('timeline-events', v['timeline-events'], 0),
      onProgress: tty ? drawProgress : undefined,
    });
    if (tty) process.stderr.write('\r\x1b[K');
    const t = result;
    const lines = [
      `model            ${t.model}${t.backend === null ? '' : ` (TensorFlow.js ${t.backend})`}`,
      `events           ${t.events} (${t.negativesDrawn} negatives drawn)`,
      `events/s         ${Math.round(t.eventsPerSecond)}`,
      `progressive AUC  ${t.auc.toFixed(4)} (last window ${t.windowAuc.toFixed(4)})`,
      `logloss          ${t.logloss.toFixed(4)} (last window ${t.windowLogloss.toFixed(4)})`,
      `embedding bytes  ${formatBytes(t.totalEmbeddingBytes)}${t.budgetBytes === null ? '' : ` of ${formatBytes(t.budgetBytes)}`}`,
      ...t.tiers.map(
        (x) =>
          `  size ${String(x.size).padStart(3)}  ${String(x.tokens).padStart(8)} tokens  ${formatBytes(x.bytes)}`,
      ),
      ...(t.windows.length > 0 ? [`PME windows      ${t.windows.length}`] : []),
      ...t.windows.map((w) => {
        const step =
          (w.probe === null
            ? ''
            : `, AUC of the last ${w.probe.events} events ${w.probe.aucBefore.toFixed(4)} -> ${w.probe.aucAfter.toFixed(4)}`) +
          (w.lookahead === null
            ? ''
            : `, of the next ${w.lookahead.events} ${w.lookahead.aucBefore.toFixed(4)} -> ${w.lookahead.aucAfter.toFixed(4)}`);
        return `  window ${String(w.id).padStart(3)}  ${w.moved} pruned, ${w.demoted} cooled, ${w.promoted} promoted${step}`;
      }),
      ...(t.memory.relieved + t.memory.truncated + t.memory.evicted + t.memory.refusedTokens > 0
        ? [
            `budget           ${t.memory.relieved} stepped down by PME, ${t.memory.truncated} truncated and ${t.memory.evicted} evicted by the store, ${t.memory.refusedTokens} new tokens refused, ${t.memory.recalled} returning tokens given back their evicted linear weight`,
          ]
        : []),
    ];
    process.stdout.write(`${lines.join('\n')}\n`);
    if (v.json !== undefined) await writeFile(v.json, `${JSON.stringify(t, null, 2)}\n`);
    return 0;
  } catch (error) {
    if (isPmeError(error)) {
      process.stderr.write(`pme stream-eval: ${error.message}\n`);
      return 1;
    }
    throw error;
  }
}

function drawProgress(done: number, total: number, auc: number): void {
  const width = 30;
  const f = Math.min(1, done / total);
  const bar = '#'.repeat(Math.round(f * width)).padEnd(width, '.');
  process.stderr.write(
    `\r[${bar}] ${(f * 100).toFixed(0).padStart(3)}% ${done}/${total} events  AUC ${Number.isNaN(auc) ? '-' : auc.toFixed(4)}`,
  );
}

/**
 * `pme stream-eval`: replays a file (or a synthetic stream) through the trainer in process, in
 * timestamp order, and reports progressive AUC / logloss, throughput and memory per tier.
 */
import { writeFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import type { CatalogItem, Interaction } from '../data/event.js';
import { FORMAT_NAMES, readEvents, SyntheticWorkload } from '../data/index.js';
import { isPmeError, PmeError } from '../errors.js';
import { EmbeddingStore } from '../store/index.js';
import { formatBytes } from '../util/bytes.js';
import { initBackend } from './backend.js';
import { DeepFm } from './deepfm.js';
import { PmeController, type PmeOptions, type WindowReport } from './pme/controller.js';
import { Trainer, type TrainerStats } from './trainer.js';

const USAGE = `usage: pme stream-eval (--data FILE --format F [--items FILE] | --synthetic N) [flags]

  --data FILE          events file
  --format F           ${FORMAT_NAMES.join(' | ')}
  --items FILE         MovieLens movies file (genres)
  --synthetic N        N events from the synthetic generator instead of a file
  --dim D              full embedding size D (ladder 0, 2, 4, .., D). Default 64
  --model M            fm | deepfm (FM plus an MLP over the field vectors, on TensorFlow.js). Default fm
  --hidden W,W         DeepFM hidden layer widths. Default 64,32
  --budget-bytes N     hard memory budget of the store. Default none
  --pme                PME: tokens start small, hot ones are searched at D, windows prune to the budget
  --start-size S       size of new tokens. Default D without --pme, 8 with it
  --window-events N    PME window every N events. Default 100000
  --negatives N        negatives per positive (positive-only streams). Default 0
  --batch N            mini-batch size. Default 256
  --seed S             seed. Default 1
  --limit N            stop after N events
  --timeline-events N  also sample AUC and memory per tier every N events (JSON timeline). Default off
  --json OUT           also write the result as JSON
`;

export interface StreamEvalResult {
  /** 'fm' or 'deepfm'. */
  model: string;
  /** TensorFlow.js backend of the deep part (null for fm). */
  backend: string | null;
  events: number;
  eventsPerSecond: number;
  auc: number;
  logloss: number;
  windowAuc: number;
  windowLogloss: number;
  negativesDrawn: number;
  seconds: number;
  totalEmbeddingBytes: number;
  budgetBytes: number | null;
  tiers: Array<{ size: number; tokens: number; bytes: number }>;
  windows: WindowReport[];
  /** Samples every `timelineEvents` events (plus one at the end); absent when not asked for. */
  timeline?: TimelineSample[];
  data: Record<string, unknown>;
}

/** One point of the optional timeline: progressive metrics and memory per tier after `events`. */
export interface TimelineSample {
  events: number;
  /** Wall time since the replay started. */
  seconds: number;
  auc: number;
  logloss: number;
  windowAuc: number;
  totalBytes: number;
  tiers: Array<{ size: number; tokens: number; bytes: number }>;
}

function ladderFor(dim: number): number[] {
  const ladder = [0];
  for (let s = 2; s < dim; s *= 2) ladder.push(s);
  ladder.push(dim);
  return ladder;
}

function int(name: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0)
    throw new PmeError('PME_ERR_CONFIG_INVALID', `--${name} must be an integer >= 0`);
  return n;
}

function syntheticEvents(n: number, seed: number): { events: Interaction[]; catalog: CatalogItem[] } {
  const w = new SyntheticWorkload({ seed });
  return { events: w.take(n), catalog: w.catalog() };
}

/** Runs the command; returns the exit code. */
export async function streamEvalCommand(argv: string[]): Promise<number> {
  let args: ReturnType<typeof parse>;
  const parse = (a: string[]) =>
    parseArgs({
      args: a,
      options: {
        data: { type: 'string' },
        format: { type: 'string' },
        items: { type: 'string' },
        synthetic: { type: 'string' },
        dim: { type: 'string' },
        model: { type: 'string' },
        hidden: { type: 'string' },
        'budget-bytes': { type: 'string' },
        pme: { type: 'boolean' },
        'start-size': { type: 'string' },
        'window-events': { type: 'string' },
        negatives: { type: 'string' },
        batch: { type: 'string' },
        seed: { type: 'string' },
        limit: { type: 'string' },
        'timeline-events': { type: 'string' },
        json: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  try {
    args = parse(argv);
  } catch (error) {
    process.stderr.write(`pme stream-eval: ${(error as Error).message}\n\n${USAGE}`);
    return 2;
  }
  const v = args.values;
  if (v.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  if ((v.data === undefined || v.format === undefined) && v.synthetic === undefined) {
    process.stderr.write(`pme stream-eval: --data and --format (or --synthetic N) are needed\n\n${USAGE}`);
    return 2;
  }
  const model = v.model ?? 'fm';
  if (model !== 'fm' && model !== 'deepfm') {
    process.stderr.write(`pme stream-eval: --model must be fm or deepfm, got ${model}\n\n${USAGE}`);
    return 2;
  }
  try {
    const hidden = v.hidden === undefined ? undefined : v.hidden.split(',').map((w) => int('hidden', w, 0));
    if (model === 'deepfm') {
      const backend = await initBackend();
      const skipped = backend.skipped.map((s) => `${s.name}: ${s.reason}`).join('; ');
      process.stderr.write(
        `deepfm: TensorFlow.js backend ${backend.name}${skipped === '' ? '' : ` (skipped ${skipped})`}\n`,
      );
    }
    const result = await streamEval({
      model,
      hidden,
      data: v.data,
      format: v.format,
      items: v.items,
      synthetic: v.synthetic === undefined ? undefined : int('synthetic', v.synthetic, 0),
      dim: int('dim', v.dim, 64),
      budgetBytes: v['budget-bytes'] === undefined ? undefined : int('budget-bytes', v['budget-bytes'], 0),
      pme: v.pme === true,
      startSize: v['start-size'] === undefined ? undefined : int('start-size', v['start-size'], 8),
      windowEvents: int('window-events', v['window-events'], 100_000),
      negatives: int('negatives', v.negatives, 0),
      batch: Math.max(1, int('batch', v.batch, 256)),
      seed: int('seed', v.seed, 1),
      limit: v.limit === undefined ? undefined : int('limit', v.limit, 0),
      timelineEvents: int('timeline-events', v['timeline-events'], 0),
      progress: process.stderr.isTTY === true,
    });
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

export interface StreamEvalOptions {
  /** 'fm' (default) or 'deepfm'. */
  model?: 'fm' | 'deepfm';
  /** DeepFM hidden layer widths. Default [64, 32]. */
  hidden?: number[];
  data?: string;
  format?: string;
  items?: string;
  synthetic?: number;
  dim: number;
  budgetBytes?: number;
  pme: boolean;
  startSize?: number;
  windowEvents: number;
  negatives: number;
  batch: number;
  seed: number;
  limit?: number;
  /** Sample a timeline point every N events (at batch boundaries); 0 or absent = no timeline. */
  timelineEvents?: number;
  progress: boolean;
  /** PME controller options beyond `windowEvents` (experiments, tests). */
  pmeOptions?: Partial<PmeOptions>;
}

/** The command's work, callable in process (tests, offline). */
export async function streamEval(o: StreamEvalOptions): Promise<StreamEvalResult> {
  let events: Interaction[];
  let catalog: CatalogItem[];
  let data: Record<string, unknown>;
  if (o.synthetic !== undefined) {
    ({ events, catalog } = syntheticEvents(o.synthetic, o.seed));
    data = { synthetic: o.synthetic };
  } else {
    const read = await readEvents({ path: o.data!, format: o.format!, itemsPath: o.items, limit: o.limit });
    events = read.events;
    catalog = read.catalog;
    data = { path: o.data, format: o.format, report: read.report };
  }
  if (o.limit !== undefined && events.length > o.limit) events = events.slice(0, o.limit);
  // Stable sort: ties keep file order.
  events = events.slice().sort((a, b) => a.timestamp - b.timestamp);

  const ladder = ladderFor(o.dim);
  const startSize = o.startSize ?? (o.pme ? Math.min(8, o.dim) : o.dim);
  const store = new EmbeddingStore({
    ladder,
    startSize,
    budgetBytes: o.budgetBytes ?? Number.POSITIVE_INFINITY,
    seed: o.seed,
  });
  const controller = o.pme
    ? new PmeController(store, { ...o.pmeOptions, windowEvents: o.windowEvents })
    : null;
  const trainerOptions = { seed: o.seed, negatives: o.negatives, catalog, observer: controller };
  // DeepFM shares its FM trainer (model, metrics) with the PME controller and learns in its place.
  const deep =
    o.model === 'deepfm'
      ? await DeepFm.create(store, {
          seed: o.seed,
          trainer: trainerOptions,
          ...(o.hidden === undefined ? {} : { hidden: o.hidden }),
        })
      : null;
  const trainer = deep?.trainer ?? new Trainer(store, trainerOptions);
  const learner: { learn(batch: readonly Interaction[]): void; stats(): TrainerStats } = deep ?? trainer;
  controller?.attach(trainer);

  const started = performance.now();
  const every = o.timelineEvents ?? 0;
  const timeline: TimelineSample[] | null = every > 0 ? [] : null;
  // Sampled between batches, outside the learn call, so it costs the replay one accounting() per sample.
  const sample = (): void => {
    const m = learner.stats();
    const acc = store.accounting();
    timeline!.push({
      events: m.events,
      seconds: (performance.now() - started) / 1000,
      auc: m.auc,
      logloss: m.logloss,
      windowAuc: m.windowAuc,
      totalBytes: acc.totalBytes,
      tiers: acc.tiers.map((t) => ({ size: t.size, tokens: t.tokens, bytes: t.totalBytes })),
    });
  };
  let nextSample = every;
  let lastDraw = 0;
  for (let i = 0; i < events.length; i += o.batch) {
    learner.learn(events.slice(i, i + o.batch));
    if (controller?.running) await controller.running;
    if (timeline !== null && i + o.batch >= nextSample) {
      sample();
      while (nextSample <= i + o.batch) nextSample += every;
    }
    if (o.progress && performance.now() - lastDraw > 100) {
      lastDraw = performance.now();
      drawProgress(i + o.batch, events.length, learner.stats().windowAuc);
    }
  }
  if (o.progress) process.stderr.write('\r\x1b[K');
  const seconds = (performance.now() - started) / 1000;
  if (timeline !== null && timeline.at(-1)?.events !== learner.stats().events) sample();
  const stats = learner.stats();
  deep?.dispose();
  const acc = store.accounting();
  return {
    model: deep === null ? 'fm' : 'deepfm',
    backend: deep === null ? null : deep.backend.name,
    events: stats.events,
    eventsPerSecond: stats.events / seconds,
    auc: stats.auc,
    logloss: stats.logloss,
    windowAuc: stats.windowAuc,
    windowLogloss: stats.windowLogloss,
    negativesDrawn: stats.negativesDrawn,
    seconds,
    totalEmbeddingBytes: acc.totalBytes,
    budgetBytes: Number.isFinite(acc.budgetBytes) ? acc.budgetBytes : null,
    tiers: acc.tiers.map((t) => ({ size: t.size, tokens: t.tokens, bytes: t.totalBytes })),
    windows: controller?.reports() ?? [],
    ...(timeline === null ? {} : { timeline }),
    data,
  };
}

function drawProgress(done: number, total: number, auc: number): void {
  const width = 30;
  const f = Math.min(1, done / total);
  const bar = '#'.repeat(Math.round(f * width)).padEnd(width, '.');
  process.stderr.write(
    `\r[${bar}] ${(f * 100).toFixed(0).padStart(3)}% ${Math.min(done, total)}/${total} events  AUC ${Number.isNaN(auc) ? '-' : auc.toFixed(4)}`,
  );
}

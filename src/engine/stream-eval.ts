/**
 * `streamEval()`, the work of `pme stream-eval` (src/cli/commands/stream-eval.ts): replays a file
 * (or a synthetic stream) through the trainer in process, in timestamp order, and returns
 * progressive AUC / logloss, throughput and memory per tier.
 */
import type { CatalogItem, Interaction } from '../data/event.js';
import { readEvents, SyntheticWorkload } from '../data/index.js';
import { PmeError } from '../errors.js';
import { EmbeddingStore } from '../store/index.js';
import { type FmOptions, linearOptimizerSlotsOf } from './model/fm.js';
import { createModel, modelEntry } from './model/index.js';
import {
  ladderFor,
  type MemoryActions,
  memoryActions,
  PME_DEFAULTS,
  PmeController,
  type PmeOptions,
  pmeStartSize,
  type WindowReport,
} from './pme/controller.js';
import { PopularitySizes } from './pme/popularity.js';
import { Trainer } from './trainer/index.js';

export interface StreamEvalResult {
  /** The model's name (MODELS in src/engine/model/index.ts). */
  model: string;
  /** TensorFlow.js backend of the deep part (null for models without one). */
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
  /** What kept memory within the budget. */
  memory: MemoryActions;
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

function syntheticEvents(n: number, seed: number): { events: Interaction[]; catalog: CatalogItem[] } {
  const w = new SyntheticWorkload({ seed });
  return { events: w.take(n), catalog: w.catalog() };
}

export interface StreamEvalOptions {
  /** A model's name (MODELS in src/engine/model/index.ts): 'fm' (default), 'deepfm', 'lr'. */
  model?: string;
  /** DeepFM hidden layer widths. Default [64, 32]. */
  hidden?: number[];
  /** Learning rates and L2 of the sparse part (every model has one). Default FM_DEFAULTS'. */
  learner?: Partial<
    Pick<
      FmOptions,
      | 'learningRate'
      | 'rateTokens'
      | 'linearLearningRate'
      | 'projectionLearningRate'
      | 'projection'
      | 'prefixLossWeight'
      | 'l2'
      | 'epsilon'
      | 'linearOptimizer'
      | 'ftrlBeta'
      | 'ftrlL1'
    >
  >;
  /** Standard deviation of a new row's normal init (`--init-std`). Default the store's (0.01). */
  initStd?: number;
  data?: string;
  format?: string;
  /** Events already read (a benchmark that gives the very same stream to other systems): used
   *  instead of `data`, still sorted by timestamp (stable) and cut at `limit`. */
  input?: { events: Interaction[]; catalog: CatalogItem[] };
  items?: string;
  synthetic?: number;
  dim: number;
  budgetBytes?: number;
  /** Buckets of the store's evicted-weights table (StoreOptions.evictedBuckets). Default the store's. */
  evictedBuckets?: number;
  pme: boolean;
  startSize?: number;
  /** Tokens created before the replay, each at its size (bench:planted's planted-rank sizes: every
   *  user at the dimensions its preferences need). Default none. */
  presetSizes?: ReadonlyMap<string, number>;
  windowEvents: number;
  /** With `pme`: who picks the sizes at each window. 'pme' (default) by importance; 'popularity'
   *  by MDE's rule on running counts (popularity.ts), the baseline PME is judged against, under
   *  the same target, budget, moves and relief. */
  sizing?: 'pme' | 'popularity';
  /** PME: the share of full size every window prunes to. Default the controller's (0.25). */
  target?: number;
  negatives: number;
  /** TrainerOptions.crossUserItem (`--cross-user-item`). Default false. */
  crossUserItem?: boolean;
  batch: number;
  seed: number;
  limit?: number;
  /** Sample a timeline point every N events (at batch boundaries); 0 or absent = no timeline. */
  timelineEvents?: number;
  /** Told how far the replay is, at most every 100 ms (a progress bar). Default none. */
  onProgress?: (done: number, total: number, windowAuc: number) => void;
  /** PME controller options beyond `windowEvents`, which this one refuses (experiments, tests). */
  pmeOptions?: Partial<PmeOptions>;
  /**
   * Told every progressive prediction as it is made: the probability the model gave the event
   * before learning from it, and its label, in the order learned (negatives drawn, if any, come
   * after their event). Default none: the replay then records nothing more than its metrics.
   */
  onPrediction?: (p: number, label: number) => void;
  /** Told, at the end, every live token's key and embedding size (how sizes were chosen), and a
   *  function that reads its vector in D-space (the row through its tier's projection). */
  onToken?: (key: string, size: number, vector: () => Float64Array) => void;
}

/** The command's work, callable in process (tests, offline). */
export async function streamEval(o: StreamEvalOptions): Promise<StreamEvalResult> {
  // The replay's own windowEvents sets the windows: one in pmeOptions would be overridden unseen.
  if (o.pmeOptions?.windowEvents !== undefined)
    throw new PmeError(
      'PME_ERR_CONFIG_INVALID',
      `stream-eval: pmeOptions.windowEvents (${o.pmeOptions.windowEvents}) is not used: set the replay's windowEvents (${o.windowEvents})`,
    );
  let events: Interaction[];
  let catalog: CatalogItem[];
  let data: Record<string, unknown>;
  if (o.input !== undefined) {
    ({ events, catalog } = o.input);
    data = { input: 'events given in process' };
  } else if (o.synthetic !== undefined) {
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
  const kind = o.model ?? 'fm';
  // Who sizes the tokens: PME's controller, popularity-scaled sizes, or nobody (every token at the
  // start size).
  const sizing = o.pme ? (o.sizing ?? 'pme') : null;
  const pmeOptions = {
    ...o.pmeOptions,
    windowEvents: o.windowEvents,
    ...(o.target === undefined ? {} : { target: o.target }),
  };
  const target = pmeOptions.target ?? PME_DEFAULTS.target;
  // A model without vectors needs no rows: its tokens start at size 0.
  const startSize =
    o.startSize ?? (!modelEntry(kind).vectors ? 0 : o.pme ? pmeStartSize(ladder, target) : o.dim);
  const store = new EmbeddingStore({
    ladder,
    startSize,
    budgetBytes: o.budgetBytes ?? Number.POSITIVE_INFINITY,
    evictedBuckets: o.evictedBuckets,
    seed: o.seed,
    initStd: o.initStd,
    linearOptimizerSlots: linearOptimizerSlotsOf(o.learner),
    // Only PME's search reads the top tier's importance slab (D floats a row): without it a
    // full-size store is 4·(2D + 1) bytes a row, not 4·(3D + 1), and the shares of full's bytes
    // that the benchmarks give PME are shares of the store a user would run instead.
    importance: sizing === 'pme',
  });
  for (const [key, size] of o.presetSizes ?? []) store.getOrCreate(key, size);
  const popularity = sizing === 'popularity' ? new PopularitySizes(store, pmeOptions) : null;
  const controller = sizing === 'pme' ? new PmeController(store, pmeOptions) : null;
  const observer = controller ?? popularity ?? undefined;
  const model = await createModel(kind, store, {
    fm: { ...o.learner },
    deepfm: { seed: o.seed, ...(o.hidden === undefined ? {} : { hidden: o.hidden }) },
  });
  const learner = new Trainer(
    store,
    { seed: o.seed, negatives: o.negatives, crossUserItem: o.crossUserItem ?? false, catalog, observer },
    model,
  );
  controller?.attach(learner);
  popularity?.attach(learner);
  if (o.onPrediction !== undefined) {
    // Every score the trainer makes lands in its metrics' add(): this instance's add() also tells
    // the hook. Only when asked, so the default replay keeps its plain method.
    const metrics = learner.metrics;
    const add = metrics.add.bind(metrics);
    const hook = o.onPrediction;
    metrics.add = (p: number, label: number): void => {
      add(p, label);
      hook(p, label);
    };
  }

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
  // A replay knows what comes next: its windows also score events the model has not learned yet.
  let next = 0;
  controller?.setLookahead((n) => events.slice(next, next + n));
  for (let i = 0; i < events.length; i += o.batch) {
    next = i + o.batch;
    learner.learn(events.slice(i, i + o.batch));
    if (controller?.running) await controller.running;
    if (timeline !== null && i + o.batch >= nextSample) {
      sample();
      while (nextSample <= i + o.batch) nextSample += every;
    }
    if (o.onProgress !== undefined && performance.now() - lastDraw > 100) {
      lastDraw = performance.now();
      o.onProgress(Math.min(i + o.batch, events.length), events.length, learner.stats().windowAuc);
    }
  }
  const seconds = (performance.now() - started) / 1000;
  if (timeline !== null && timeline.at(-1)?.events !== learner.stats().events) sample();
  const stats = learner.stats();
  const onToken = o.onToken;
  if (onToken !== undefined)
    for (const size of ladder)
      store.forEachInTier(size, (id) =>
        onToken(store.key(id), size, () => {
          const v = new Float64Array(o.dim);
          model.vectorOf(id, v);
          return v;
        }),
      );
  const backend = model.stats().backend;
  model.dispose?.();
  const acc = store.accounting();
  return {
    model: kind,
    backend: typeof backend === 'string' ? backend : null,
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
    memory: memoryActions(store, controller ?? popularity),
    ...(timeline === null ? {} : { timeline }),
    data,
  };
}

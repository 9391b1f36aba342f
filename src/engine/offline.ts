/**
 * `runOffline()`, the work of `pme offline` (src/cli/commands/offline.ts), on a file's events.
 * Random 80/10/10 split (seeded); every method trains on the training split with early stopping on
 * validation AUC and reports the test metrics of its best epoch. Methods, at the same
 * embedding-parameter count (the budget):
 * - `full`: every token at D, the reference (not held to the budget);
 * - `uniform`: every token at ⌊budget·D⌋; `mde`: sizes ∝ popularity rank^-alpha per field;
 * - `pme`: the live PME controller, what the service runs (offline-live.ts), with the budget as
 *   its store's hard byte budget: its figures speak for the live system;
 * - `pme-paper`: the paper's protocol: a search phase trains the full-size model for
 *   `searchEpochs` while collecting per-(token, dimension) importance, one global threshold prunes
 *   them to the budget, and the found sizes are retrained from scratch.
 *
 * Embedding parameters are Σ over tokens of their size (the rows); the projections P_s (s × D per
 * tier, shared by all tokens of a tier) are reported apart as `projectionParams`, and linear weights
 * (one per token, the same in every method) are not counted.
 */
import { setImmediate as nextTurn } from 'node:timers/promises';
import type { CatalogItem, Interaction } from '../data/event.js';
import { RareFolder, splitEvents } from '../data/index.js';
import { PmeError } from '../errors.js';
import { EmbeddingStore } from '../store/index.js';
import { shuffledOrder } from '../util/random.js';
import { evaluationMetrics } from './metrics.js';
import { FmModel, type FmOptions, linearOptimizerSlotsOf } from './model/fm.js';
import { type LiveActivity, LiveRun, liveBudgetBytes } from './offline-live.js';
import { ladderFor, type PmeOptions } from './pme/controller.js';
import { mdeSizes } from './pme/popularity.js';
import { chooseSizes } from './pme/prune.js';

export const OFFLINE_METHODS = Object.freeze(['full', 'uniform', 'mde', 'pme', 'pme-paper'] as const);
export type OfflineMethod = (typeof OFFLINE_METHODS)[number];

/** Options of `runOffline`. Validated once by `resolveOfflineOptions`, then frozen. */
export interface OfflineOptions {
  /** Full embedding size D; the ladder is 0, 2, 4, .., D. Default 64. */
  dim: number;
  /** Embedding parameters allowed to the compressed methods, as a fraction of full's (N·D). Default 0.2. */
  budget: number;
  /** Seed of the split, the initialisation and the shuffles. Default 1. */
  seed: number;
  /** Most training epochs per method (early stopping usually ends sooner). Default 10. */
  epochs: number;
  /** Epochs without a better validation AUC before training stops. Default 1. */
  patience: number;
  /** pme-paper: epochs of its search phase at full size (its cost is reported as pmeSearchSeconds). Default 1. */
  searchEpochs: number;
  /** pme: a window every this many learned events; 0 = a quarter of the training split (four
   *  windows an epoch). Default 0. */
  windowEvents: number;
  /** pme: size of a token when first seen; -1 = one ladder size below the largest under
   *  budget · D (liveStartSize). Default -1. */
  startSize: number;
  /** pme: the share of the budget's embedding room (bytes above the tokens at size 0) that every
   *  window prunes to: the controller's target, below the hard budget so that the tokens turning
   *  hot after a window have room to be searched at D. Default 0.7 (1 − the search share). */
  pmeTarget: number;
  /** pme: controller options beyond the window and target (experiments, tests). Default headroom
   *  0 (after the first epoch no token is new). */
  pme: Partial<PmeOptions>;
  /** Events per mini-batch: the projections step once per batch. Default 256. */
  batch: number;
  /** Field values seen fewer than this many times in the training split become one `rare`
   *  token per field, in every split (counted on training alone: the test split must not decide
   *  what is rare). Default 1: none. */
  minCount: number;
  /** Methods to run, in this order. Default all four. */
  methods: readonly OfflineMethod[];
  /** FM options (learning rates, L2, linear optimizer). Default the FM's defaults. */
  model: Partial<FmOptions>;
  /** Standard deviation of a new row's normal init (`--init-std`). Default the store's (0.01). */
  initStd?: number;
  /** Called after every epoch (progress display). Default none. */
  onEpoch: ((e: EpochProgress) => void) | null;
}

export interface EpochProgress {
  method: OfflineMethod | 'search';
  epoch: number;
  epochs: number;
  valAuc: number;
  seconds: number;
}

export const OFFLINE_DEFAULTS: Readonly<Omit<OfflineOptions, 'onEpoch' | 'model' | 'methods' | 'pme'>> =
  Object.freeze({
    dim: 64,
    budget: 0.2,
    seed: 1,
    epochs: 10,
    patience: 1,
    searchEpochs: 1,
    windowEvents: 0,
    startSize: -1,
    pmeTarget: 0.7,
    batch: 256,
    minCount: 1,
  });

/** The live controller's options offline, under OfflineOptions.pme: no headroom is kept for new
 *  tokens (after the first epoch there are none); the target is set in bytes (pmeTarget); no probe
 *  (a window report's detail, which would cost 2 × 2048 predictions a window: offline measures on
 *  the validation split); the base size stays the start size (no fill, see liveStartSize). */
export const OFFLINE_PME_DEFAULTS: Readonly<Partial<PmeOptions>> = Object.freeze({
  target: 1,
  headroom: 0,
  probeEvents: 0,
  fill: false,
});

export function resolveOfflineOptions(options: Partial<OfflineOptions> = {}): Readonly<OfflineOptions> {
  const o: OfflineOptions = {
    ...OFFLINE_DEFAULTS,
    methods: OFFLINE_METHODS,
    model: {},
    onEpoch: null,
    ...options,
    pme: { ...OFFLINE_PME_DEFAULTS, ...options.pme },
  };
  const bad = (m: string) => new PmeError('PME_ERR_CONFIG_INVALID', `offline: ${m}`);
  if (!Number.isInteger(o.dim) || o.dim < 2 || o.dim > 1024)
    throw bad(`dim must be an integer in [2, 1024], got ${o.dim}`);
  if (!(o.budget > 0 && o.budget <= 1)) throw bad(`budget must be a fraction in (0, 1], got ${o.budget}`);
  if (!Number.isInteger(o.seed)) throw bad(`seed must be an integer, got ${o.seed}`);
  if (!Number.isInteger(o.epochs) || o.epochs < 1)
    throw bad(`epochs must be an integer >= 1, got ${o.epochs}`);
  if (!Number.isInteger(o.patience) || o.patience < 1)
    throw bad(`patience must be an integer >= 1, got ${o.patience}`);
  if (!Number.isInteger(o.searchEpochs) || o.searchEpochs < 1)
    throw bad(`searchEpochs must be an integer >= 1, got ${o.searchEpochs}`);
  if (!Number.isInteger(o.windowEvents) || o.windowEvents < 0)
    throw bad(`windowEvents must be an integer >= 0, got ${o.windowEvents}`);
  if (!(o.pmeTarget > 0 && o.pmeTarget <= 1)) throw bad(`pmeTarget must be in (0, 1], got ${o.pmeTarget}`);
  if (o.startSize !== -1 && !ladderFor(o.dim).includes(o.startSize))
    throw bad(`startSize must be -1 or on the ladder ${ladderFor(o.dim).join(', ')}, got ${o.startSize}`);
  if (!Number.isInteger(o.batch) || o.batch < 1) throw bad(`batch must be an integer >= 1, got ${o.batch}`);
  if (!Number.isInteger(o.minCount) || o.minCount < 1)
    throw bad(`minCount must be an integer >= 1, got ${o.minCount}`);
  if (o.methods.length === 0 || o.methods.some((m) => !OFFLINE_METHODS.includes(m)))
    throw bad(`methods must be among ${OFFLINE_METHODS.join(', ')}, got ${o.methods.join(', ')}`);
  return Object.freeze({ ...o, methods: Object.freeze([...o.methods]) });
}

export interface OfflineMethodResult {
  method: OfflineMethod;
  /** Test AUC and logloss of the epoch with the best validation AUC. */
  auc: number;
  logloss: number;
  valAuc: number;
  /** Σ token sizes (pme: of the live tokens at its best epoch). */
  embeddingParams: number;
  /** Bytes of the embedding rows as the store charges them (StoreTier.bytesPerRow): parameters,
   *  their optimizer state, the slot → id entry, and for pme's tokens at D their importance; no
   *  capacity slack, per-token columns or key index (the same for every method). pme: at its
   *  best epoch. */
  rowBytes: number;
  /** Σ over tiers with a projection of s·D. */
  projectionParams: number;
  /** Training time (all epochs run, evaluation included); the PME search is apart. */
  seconds: number;
  epochs: number;
  bestEpoch: number;
  /** Tokens per size. */
  sizes: Record<string, number>;
  /** mde only: the tuned exponent. */
  alpha?: number;
  /** pme only: the controller's work over the run and what held it. */
  live?: LiveSummary;
}

export interface LiveSummary extends LiveActivity {
  /** The store's hard budget, matched to budgetParams (liveBudgetBytes in offline-live.ts). */
  budgetBytes: number;
  startSize: number;
  windowEvents: number;
  /** windowSeconds in full-size training epochs (fullEpochSeconds): what searching added beyond
   *  training, which gathers the importances at no extra pass. */
  searchPasses: number;
}

export interface OfflineResult {
  results: OfflineMethodResult[];
  /** pme-paper: seconds of its search phase (full-size training with importance, then the pruning). */
  pmeSearchSeconds: number;
  /** Mean seconds of one full-size training epoch, to compare the search cost against. */
  fullEpochSeconds: number;
  /** pme-paper: pmeSearchSeconds / fullEpochSeconds, its search cost in training passes (pme's is
   *  in its result's `live`). */
  searchPasses: number;
  budget: number;
  /** budget · N · D, the embedding parameters allowed to uniform, mde, pme and pme-paper. */
  budgetParams: number;
  fullParams: number;
  dim: number;
  seed: number;
  tokens: number;
  events: { train: number; validation: number; test: number };
  /** Field values folded into `rare` (minCount), over all three splits. */
  rareFolded: number;
}

/** Events as flat token-index arrays over the training vocabulary. */
interface Encoded {
  tokens: Int32Array;
  offsets: Int32Array;
  labels: Float32Array;
  length: number;
}

interface Vocabulary {
  keys: string[];
  index: Map<string, number>;
  counts: Float64Array;
  fields: string[];
}

function eventKeys(e: Interaction, catalog: Map<string, CatalogItem>, out: string[]): void {
  out.length = 0;
  out.push(`user=${e.user}`, `item=${e.item}`);
  for (const name in e.fields) out.push(`${name}=${e.fields[name]}`);
  const item = catalog.get(e.item);
  if (item !== undefined)
    for (const name in item.fields) if (!(name in e.fields)) out.push(`${name}=${item.fields[name]}`);
}

function buildVocabulary(train: readonly Interaction[], catalog: Map<string, CatalogItem>): Vocabulary {
  const index = new Map<string, number>();
  const keys: string[] = [];
  const counts: number[] = [];
  const scratch: string[] = [];
  for (const e of train) {
    eventKeys(e, catalog, scratch);
    for (const k of scratch) {
      let i = index.get(k);
      if (i === undefined) {
        i = keys.length;
        index.set(k, i);
        keys.push(k);
        counts.push(0);
      }
      counts[i]++;
    }
  }
  const fields = keys.map((k) => {
    const eq = k.indexOf('=');
    return eq < 0 ? '' : k.slice(0, eq);
  });
  return { keys, index, counts: Float64Array.from(counts), fields };
}

/** Tokens unknown to the training vocabulary are dropped (they would have no trained row). */
function encode(
  events: readonly Interaction[],
  vocab: Vocabulary,
  catalog: Map<string, CatalogItem>,
): Encoded {
  const offsets = new Int32Array(events.length + 1);
  const tokens: number[] = [];
  const labels = new Float32Array(events.length);
  const scratch: string[] = [];
  for (let i = 0; i < events.length; i++) {
    eventKeys(events[i], catalog, scratch);
    for (const k of scratch) {
      const t = vocab.index.get(k);
      if (t !== undefined) tokens.push(t);
    }
    offsets[i + 1] = tokens.length;
    labels[i] = events[i].label;
  }
  return { tokens: Int32Array.from(tokens), offsets, labels, length: events.length };
}

/** One model with the given per-token sizes over a fresh store whose token ids are the vocabulary indexes. */
class Run {
  readonly store: EmbeddingStore;
  readonly model: FmModel;
  readonly #scratch: Int32Array;

  constructor(
    vocab: Vocabulary,
    sizes: Int32Array,
    ladder: number[],
    o: Readonly<OfflineOptions>,
    importance: boolean,
  ) {
    const top = ladder[ladder.length - 1];
    this.store = new EmbeddingStore({
      ladder,
      startSize: top,
      seed: o.seed,
      importance,
      chunkRows: 1024,
      initStd: o.initStd,
      linearOptimizerSlots: linearOptimizerSlotsOf(o.model),
    });
    for (let v = 0; v < vocab.keys.length; v++) {
      const id = this.store.getOrCreate(vocab.keys[v], sizes[v]);
      if (id !== v) throw new Error(`offline: token ${v} got id ${id}`);
    }
    // A run's sizes are fixed (uniform, MDE, pme-paper's retrain; the search is all at D): no
    // token is ever cut to a prefix, so prefix losses would only cost. With them (bench:offline,
    // 5 seeds, 10 / 20 / 40%) MDE's test AUC was 0.7393 / 0.7387 / 0.7380 on criteo-sample
    // (without: 0.7403 / 0.7396 / 0.7395), pme-paper's 0.7387 / 0.7390 / 0.7376 (0.7406 / 0.7406
    // / 0.7386), and an MDE epoch cost 0.83 / 1.03 / 1.47 of full's on ml-latest-small /
    // criteo-sample / avazu-sample (without: 0.64 / 0.73 / 0.81; bench/results/epoch-cost.json).
    this.model = new FmModel(this.store, { ...o.model, importance, maxTokens: 256, prefixLossWeight: 0 });
    this.#scratch = new Int32Array(256);
  }

  epoch(data: Encoded, order: Uint32Array, batch: number): void {
    const { tokens, offsets, labels } = data;
    const ids = this.#scratch;
    const model = this.model;
    for (let k = 0; k < order.length; k++) {
      const i = order[k];
      const from = offsets[i];
      const n = Math.min(offsets[i + 1] - from, ids.length);
      for (let j = 0; j < n; j++) ids[j] = tokens[from + j];
      model.step(ids, n, labels[i]);
      if ((k + 1) % batch === 0) model.flush();
    }
    model.flush();
  }

  evaluate(data: Encoded): { auc: number; logloss: number } {
    const { tokens, offsets, labels } = data;
    const ids = this.#scratch;
    const scores = new Float64Array(data.length);
    for (let i = 0; i < data.length; i++) {
      const from = offsets[i];
      const n = Math.min(offsets[i + 1] - from, ids.length);
      for (let j = 0; j < n; j++) ids[j] = tokens[from + j];
      scores[i] = this.model.predict(ids, n);
    }
    return evaluationMetrics(scores, labels);
  }
}

function sizeCounts(sizes: Int32Array, ladder: number[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const s of ladder) out[s] = 0;
  for (const s of sizes) out[s]++;
  return out;
}

/**
 * The live method's default start size: one ladder size below the largest under `budget · D`, where
 * the tokens that never turn hot stay (offline PME raises no base: OFFLINE_PME_DEFAULTS), and the
 * room above is the hot tokens'. Epochs over a small training split overfit the rare tokens' rows:
 * against the largest size under budget · D with the base raised (the rule before), validation AUC,
 * mean of 5 seeds at budgets 0.1 / 0.2 / 0.4, went ml-latest-small 0.7898 / 0.7908 / 0.7908 to
 * 0.7922 / 0.7930 / 0.7935, criteo-sample 0.7238 / 0.7248 / 0.7256 to 0.7248 / 0.7244 / 0.7246,
 * avazu-sample 0.7152 / 0.7155 / 0.7149 to 0.7166 / 0.7174 / 0.7157, with a third fewer
 * parameters. Start size 2 at every budget did as well (mean 0.7449 against 0.7447); size 0 did worse.
 */
export function liveStartSize(ladder: readonly number[], budget: number): number {
  const D = ladder[ladder.length - 1];
  let below = 0;
  for (let i = 0; i < ladder.length; i++) if (ladder[i] < budget * D) below = i;
  // Never down to 0 (a row-less token learns no interaction): 0 only when nothing larger fits.
  return ladder[below > 1 ? below - 1 : below];
}

/** A model that `train` can run epochs of and evaluate: a Run (fixed sizes) or a LiveRun (pme). */
interface Trainable {
  epoch(order: Uint32Array): void | Promise<void>;
  evaluate(split: 'validation' | 'test'): { auc: number; logloss: number };
}

/** Trains with early stopping on validation AUC; the test metrics are those of the best epoch.
 *  `onBest` is told of each new best epoch (pme records its sizes there). */
async function train(
  method: OfflineMethod,
  run: Trainable,
  trainLength: number,
  o: Readonly<OfflineOptions>,
  onBest: () => void = () => {},
): Promise<{
  auc: number;
  logloss: number;
  valAuc: number;
  epochs: number;
  bestEpoch: number;
  epochSeconds: number[];
}> {
  let best = { auc: Number.NaN, logloss: Number.NaN, valAuc: Number.NEGATIVE_INFINITY };
  let bestEpoch = 0;
  const epochSeconds: number[] = [];
  let epoch = 0;
  while (epoch < o.epochs) {
    epoch++;
    const t0 = performance.now();
    await run.epoch(shuffledOrder(trainLength, o.seed * 7919 + epoch));
    epochSeconds.push((performance.now() - t0) / 1000);
    const val = run.evaluate('validation');
    o.onEpoch?.({ method, epoch, epochs: o.epochs, valAuc: val.auc, seconds: epochSeconds[epoch - 1] });
    if (val.auc > best.valAuc) {
      const test = run.evaluate('test');
      best = { auc: test.auc, logloss: test.logloss, valAuc: val.auc };
      bestEpoch = epoch;
      onBest();
    } else if (epoch - bestEpoch >= o.patience) break;
  }
  return { ...best, epochs: epoch, bestEpoch, epochSeconds };
}

/** Folds rare field values (counted on the training split) in copies of every split's events. */
function foldRare(splits: Interaction[][], minCount: number): number {
  const folder = new RareFolder(minCount);
  for (const e of splits[0]) folder.count(e);
  let folded = 0;
  for (const split of splits)
    for (let i = 0; i < split.length; i++) {
      split[i] = { ...split[i], fields: { ...split[i].fields } };
      folded += folder.fold(split[i]);
    }
  return folded;
}

/**
 * Uniform at the whole budget: every token at u = ⌊budget / N⌋, not restricted to the ladder, and
 * the budget's remainder as one more dimension for the most frequent tokens (u alone left up to
 * 1/u of the budget unused: 18.75% of full's parameters when asked for 20% at D = 64). Tiers u
 * and u + 1 get identity-initialised projections.
 */
export function uniformSizes(
  counts: Float64Array,
  D: number,
  budgetParams: number,
): { sizes: Int32Array; ladder: number[] } {
  const N = counts.length;
  const u = Math.max(1, Math.min(D, Math.floor(budgetParams / N)));
  const sizes = new Int32Array(N).fill(u);
  const extra = u === D ? 0 : Math.max(0, Math.min(N, budgetParams - u * N));
  const byCount = Array.from({ length: N }, (_, t) => t).sort((a, b) => counts[b] - counts[a] || a - b);
  for (let i = 0; i < extra; i++) sizes[byCount[i]] = u + 1;
  const ladder = [0, u, ...(extra > 0 ? [u + 1] : []), D].filter((s, i, a) => a.indexOf(s) === i);
  return { sizes, ladder };
}

/** Σ over tokens of their row's accounted bytes (see OfflineMethodResult.rowBytes). */
function rowBytes(store: EmbeddingStore): number {
  let bytes = 0;
  for (const t of store.tiers) bytes += t.count * store.bytesPerRow(t.size);
  return bytes;
}

function projectionParams(sizes: Int32Array, ladder: number[], D: number, nested: boolean): number {
  if (nested) return 0;
  const used = new Set(sizes);
  let p = 0;
  for (const s of ladder) if (s > 0 && s < D && used.has(s)) p += s * D;
  return p;
}

/** Runs the protocol over events already read. */
export async function runOffline(
  events: readonly Interaction[],
  catalogItems: readonly CatalogItem[],
  options: Partial<OfflineOptions> = {},
): Promise<OfflineResult> {
  const o = resolveOfflineOptions(options);
  const D = o.dim;
  const ladder = ladderFor(D);
  const catalog = new Map(catalogItems.map((c) => [c.item, c]));
  const splits = splitEvents(events, [0.8, 0.1, 0.1], o.seed);
  const rareFolded = o.minCount > 1 ? foldRare(splits, o.minCount) : 0;
  const [trainEvents, valEvents, testEvents] = splits;
  const vocab = buildVocabulary(trainEvents, catalog);
  const N = vocab.keys.length;
  if (N === 0) throw new PmeError('PME_ERR_CONFIG_INVALID', 'offline: the training split has no events');
  const data = {
    train: encode(trainEvents, vocab, catalog),
    validation: encode(valEvents, vocab, catalog),
    test: encode(testEvents, vocab, catalog),
  };
  const fullParams = N * D;
  const budgetParams = Math.floor(o.budget * fullParams);
  const results: OfflineMethodResult[] = [];
  let pmeSearchSeconds = 0;
  let fullEpochSeconds = Number.NaN;
  const searchEpochSeconds: number[] = [];

  const fixed = (run: Run): Trainable => ({
    epoch: (order) => run.epoch(data.train, order, o.batch),
    evaluate: (split) => run.evaluate(data[split]),
  });

  const fit = async (
    method: OfflineMethod,
    sizes: Int32Array,
    runLadder: number[],
    extra: Partial<OfflineMethodResult> = {},
  ) => {
    const t0 = performance.now();
    const run = new Run(vocab, sizes, runLadder, o, false);
    const r = await train(method, fixed(run), data.train.length, o);
    let embeddingParams = 0;
    for (const s of sizes) embeddingParams += s;
    results.push({
      method,
      auc: r.auc,
      logloss: r.logloss,
      valAuc: r.valAuc,
      embeddingParams,
      rowBytes: rowBytes(run.store),
      projectionParams: projectionParams(sizes, runLadder, D, o.model.projection === 'nested'),
      seconds: (performance.now() - t0) / 1000,
      epochs: r.epochs,
      bestEpoch: r.bestEpoch,
      sizes: sizeCounts(sizes, runLadder),
      ...extra,
    });
    return r;
  };

  /** The live controller (offline-live.ts), its byte budget matched to budgetParams. */
  const fitLive = async (): Promise<LiveSummary> => {
    const t0 = performance.now();
    const startSize = o.startSize >= 0 ? o.startSize : liveStartSize(ladder, o.budget);
    const windowEvents = o.windowEvents > 0 ? o.windowEvents : Math.max(1, Math.ceil(trainEvents.length / 4));
    const { budgetBytes, fixedBytes } = liveBudgetBytes(
      vocab.keys,
      ladder,
      budgetParams,
      linearOptimizerSlotsOf(o.model),
    );
    const targetBytes = fixedBytes + o.pmeTarget * (budgetBytes - fixedBytes);
    const run = new LiveRun(trainEvents, catalogItems, {
      ladder,
      startSize,
      budgetBytes,
      seed: o.seed,
      batch: o.batch,
      windowEvents,
      model: { ...o.model, maxTokens: 256 },
      initStd: o.initStd,
      pme: { targetBytes, ...o.pme },
    });
    const split = { validation: valEvents, test: testEvents };
    let atBest = { params: 0, sizes: {} as Record<string, number>, projections: 0, rowBytes: 0 };
    const r = await train(
      'pme',
      { epoch: (order) => run.epoch(order), evaluate: (s) => run.evaluate(split[s]) },
      trainEvents.length,
      o,
      () => {
        const sizes: Record<string, number> = {};
        let projections = 0;
        for (const t of run.store.tiers) {
          sizes[t.size] = t.count;
          if (t.count > 0 && t.size > 0 && t.size < D && o.model.projection !== 'nested')
            projections += t.size * D;
        }
        atBest = { params: run.params(), sizes, projections, rowBytes: rowBytes(run.store) };
      },
    );
    const live: LiveSummary = {
      ...run.activity(),
      budgetBytes,
      startSize,
      windowEvents,
      searchPasses: Number.NaN,
    };
    results.push({
      method: 'pme',
      auc: r.auc,
      logloss: r.logloss,
      valAuc: r.valAuc,
      embeddingParams: atBest.params,
      rowBytes: atBest.rowBytes,
      projectionParams: atBest.projections,
      seconds: (performance.now() - t0) / 1000,
      epochs: r.epochs,
      bestEpoch: r.bestEpoch,
      sizes: atBest.sizes,
      live,
    });
    return live;
  };

  let live: LiveSummary | null = null;
  for (const method of o.methods) {
    await nextTurn();
    if (method === 'full') {
      const r = await fit('full', new Int32Array(N).fill(D), ladder);
      fullEpochSeconds = r.epochSeconds.reduce((a, b) => a + b, 0) / r.epochSeconds.length;
    } else if (method === 'uniform') {
      const { sizes, ladder: uniformLadder } = uniformSizes(vocab.counts, D, budgetParams);
      await fit('uniform', sizes, uniformLadder);
    } else if (method === 'mde') {
      const { sizes, alpha } = mdeSizes(vocab, ladder, budgetParams);
      await fit('mde', sizes, ladder, { alpha });
    } else if (method === 'pme') {
      live = await fitLive();
    } else {
      const search = new Run(vocab, new Int32Array(N).fill(D), ladder, o, true);
      // Counted like full's epochs (fullEpochSeconds): training and the size choice, not setup.
      const t0 = performance.now();
      for (let e = 1; e <= o.searchEpochs; e++) {
        const s0 = performance.now();
        search.epoch(data.train, shuffledOrder(data.train.length, o.seed * 7919 + e), o.batch);
        searchEpochSeconds.push((performance.now() - s0) / 1000);
        o.onEpoch?.({
          method: 'search',
          epoch: e,
          epochs: o.searchEpochs,
          valAuc: Number.NaN,
          seconds: searchEpochSeconds[e - 1],
        });
      }
      // Store ids are vocabulary indexes; rows sit at their slot in the top tier.
      const top = search.store.tiers[ladder.length - 1];
      const importance = new Float32Array(N * D);
      const slotOf = search.store.slotOf;
      for (let t = 0; t < N; t++)
        importance.set(top.importance!.subarray(slotOf[t] * D, slotOf[t] * D + D), t * D);
      const choice = chooseSizes(importance, N, D, ladder, (s) => s, budgetParams);
      pmeSearchSeconds = (performance.now() - t0) / 1000;
      await fit('pme-paper', choice.sizes, ladder);
    }
  }
  if (Number.isNaN(fullEpochSeconds) && searchEpochSeconds.length > 0)
    fullEpochSeconds = searchEpochSeconds.reduce((a, b) => a + b, 0) / searchEpochSeconds.length;
  if (live !== null && fullEpochSeconds > 0) live.searchPasses = live.windowSeconds / fullEpochSeconds;
  return {
    results,
    pmeSearchSeconds,
    fullEpochSeconds,
    searchPasses: fullEpochSeconds > 0 ? pmeSearchSeconds / fullEpochSeconds : Number.NaN,
    budget: o.budget,
    budgetParams,
    fullParams,
    dim: D,
    seed: o.seed,
    tokens: N,
    events: { train: data.train.length, validation: data.validation.length, test: data.test.length },
    rareFolded,
  };
}

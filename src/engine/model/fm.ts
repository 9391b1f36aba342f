/**
 * Factorization machine over multi-size embeddings: the default model.
 *
 * Every token t has a linear weight w_t (store.linear) and a row e_t of its tier's size s. The row
 * reaches the shared D-space through the tier's projection P_s (s × D, learned): v_t = e_t · P_s.
 * Tier D uses the identity, tier 0 has no vector. The score of one event with tokens T is
 *   z = b + Σ w_t + ½ [ (Σ v_t)² − Σ v_t² ]   (summed over the D dims),   y = sigmoid(z)
 * and the loss is logloss. Forward, backward and Adagrad are written by hand over the store's
 * typed arrays; all scratch is preallocated so a step allocates nothing. The kernels are in
 * fm-kernels.ts (JavaScript) and fm-wasm.ts (WebAssembly SIMD), picked once at construction with
 * the update rules the options name. The tokens of one tier in an event go through P_s once, as
 * their sum, when that is cheaper than one by one (small sizes, several tokens: see #shares;
 * fm-gram.ts has the s × s rest): one s × D product per token made an epoch of a multi-size model
 * cost up to twice full's.
 */
import { PmeError } from '../../errors.js';
import { TierGrams } from './fm-gram.js';
import {
  adagradFullRow,
  adagradFullRowImportance,
  adagradPrefixRow,
  adagradRow,
  type FullRowStep,
  gatherRow,
  gramStride,
  JsProjector,
  type PrefixRowStep,
  type Projector,
  type RowStep,
  sgdFullRow,
  sgdPrefixRow,
  sgdRow,
} from './fm-kernels.js';
import { createSimdProjector } from './fm-wasm.js';
import {
  checkLinearSlots,
  eventRate,
  ftrlLinear,
  LINEAR_OPTIMIZERS,
  type LinearOptimizer,
  type LinearStepParams,
  linearEventRate,
  linearOptimizerSlots,
  linearStepParams,
} from './linear-step.js';
import { sigmoid } from './math.js';
import {
  fmSide,
  type Model,
  ModelBase,
  type ModelStats,
  type ModelStore,
  type Rows,
  type ScoreSink,
  type TokenId,
} from './model.js';

/** Model options. Every field is validated once by `resolveFmOptions` and frozen. */
export interface FmOptions {
  /** Step size for embedding rows, in an event of `rateTokens` tokens (see there). Default 0.05. */
  learningRate: number;
  /**
   * Rows of an event of n tokens step at learningRate × rateTokens / n, and its linear weights at
   * linearLearningRate × rateTokens / n when n > rateTokens (linear-step.ts eventRate,
   * linearEventRate); 0: at the rates whatever n. Default 5. Adagrad moves every coordinate of a
   * row by about the rate whatever its gradient, and all n rows step on each event, each against
   * the sum of the n − 1 others, so one event moved its own score by an amount that grew with the
   * number of fields: with one rate for all, the FM at D = 64 learned far less than at size 8 on
   * the many-field streams.
   * Progressive AUC at the default rates, 0 → 5 (`node dist/bench/pme-windows.js`, 3 seeds):
   * full size criteo-sample (39 tokens an event) 0.6644 → 0.6863, avazu-sample (22)
   * 0.6655 → 0.6843, ml-latest-small (4) 0.7816 → 0.7809; PME at 25% of full's bytes, mean of
   * the three 0.7118 → 0.7170; planted stream (3 tokens; `node dist/bench/planted.js --events
   * 1000000 --users 200000 --seeds 1 --shares 0.25`) PME at 25% 0.6538 → 0.6601, full
   * 0.6593 → 0.6573. The figures of the options below were measured before it (rateTokens 0:
   * add `"rateTokens":0` to bench/quality.js' `--learner` to reproduce them).
   * The linear weights are scaled down too for the same reason (each moves by about its rate, n
   * of them per event): the linear rate that suited ml-latest-small (4 tokens an event: user,
   * item, genres, genre) overshot criteo-sample's 39. Progressive AUC at the default rates, linear unscaled → scaled
   * (`node dist/bench/pme-windows.js`, 3 seeds): full size criteo-sample 0.6863 → 0.7191,
   * avazu-sample 0.6843 → 0.6935 (ml-latest-small unchanged, 0.7809); PME at 25% 0.6864 →
   * 0.7207, 0.6851 → 0.6911. With the linear rate tuned per stream (bench:quality, AUC of the
   * last 80%) it is a wash on criteo-sample and a loss on avazu-sample, where the coarser grid
   * steps past the best rate: fm full 0.7267 / 0.7035 → 0.7265 / 0.7021, PME at 25% 0.7286 /
   * 0.7011 → 0.7271 / 0.7019 (rate chosen 0.04 / 0.04 → 0.12 / 0.4).
   */
  rateTokens: number;
  /** Step size for the linear weights (one per token), in an event of at most `rateTokens`
   *  tokens. Default 0.2: four times the rows' (one rate for both was 0.05, and the linear part
   *  learned too slowly: progressive AUC on the three shared datasets, 0.05 → 0.2: ml-latest-small 0.7786 → 0.7813, criteo-sample 0.6387 → 0.6633,
   *  avazu-sample 0.6619 → 0.6659; 0.1, 0.3 and 0.5 did no better on the mean). */
  linearLearningRate: number;
  /** Step size for the dense projections P_s and the bias. Default 0.01: they are shared by
   *  every token of a tier, so they see many more updates than any row. */
  projectionLearningRate: number;
  /** How a row of size s < D reaches the D-space (`--projection`). 'nested' (default): P_s is the
   *  first s rows of the identity and is never learned, v = [e, 0, …, 0] (prefix, or Matryoshka,
   *  embeddings): a token costs O(s), its gradient is the first s dims of the D-space one, there
   *  is no projection to store, publish or snapshot (`projections` are all null), and PME's
   *  least-squares transfer into a tier is truncation to its first s dims (exact when a window
   *  raises a token). 'learned': P_s (s × D) starts there and steps once per mini-batch; a token
   *  then costs O(s · D) forward and backward, plus O(s · D) for P_s's gradient.
   *  Why nested is the default: it costs less than full size per epoch and learns as well.
   *  CPU seconds a training epoch at 20% (`npm run bench:epoch`), full / uniform / MDE,
   *  learned → nested: ml-latest-small 0.150 / 0.193 → 0.049 / 0.297 → 0.091, criteo-sample
   *  0.104 / 0.103 → 0.025 / 0.170 → 0.073, avazu-sample 0.065 / 0.067 → 0.016 / 0.079 → 0.053
   *  (bench:train's tier mix through Trainer.learn 241k → 328k events/s). Quality, nested −
   *  learned: offline test AUC (uniform, MDE, pme; budgets 0.1 / 0.2 / 0.4; 5 seeds; three
   *  datasets) +0.00006 on the mean of 135 pairs; progressive AUC (`node dist/bench/pme-windows.js
   *  --learner '{"projection":"nested"}'`, PME's base size on: PME at 10 / 25 / 50%, 3 seeds)
   *  ml-latest-small 0.7772 / 0.7803 / 0.7828 → 0.7771 / 0.7803 / 0.7823, criteo-sample and
   *  avazu-sample within 0.0001; PME's window steps on ml-latest-small at 25 / 50%, worst
   *  −0.0003 / −0.0004 → −0.0000 / −0.0001; the planted stream (`node dist/bench/planted.js
   *  --seeds 1`, 2M events) PME 0.6421 / 0.6671 / 0.6694 → 0.6426 / 0.6667 / 0.6717. Where it
   *  costs: the quality bench (`node dist/bench/quality.js --no-peers --learner
   *  '{"projection":"learned"}'` against the default; rate chosen on the first 20%, AUC of the last
   *  80%) on ml-latest-small, PME at 25% 0.7880 → 0.7873 and every token at 8 0.7880 → 0.7874;
   *  criteo-sample and avazu-sample equal to 4 digits. */
  projection: 'learned' | 'nested';
  /**
   * Weight of each nested prefix's own loss (`--prefix-loss-weight`; projection 'nested' only):
   * every event is also scored on its first s dims alone, for each size 0 < s < D that tokens of
   * the store hold (the sizes rows are cut to), and the rows step on the full score's logistic
   * loss plus this weight times each prefix's (Matryoshka learning). With one size in use nothing
   * is cut and there is no prefix loss (#prefixesInUse). The served score stays the full one; the
   * bias and linear weights step on it alone. Without it no dim of a D-size row is worth more than
   * another: on the planted stream at 5M events (PME at 25%, seed 1), the first 8 of 64 dims held
   * 12.6% of a rank-2 user's energy and 13.6% of a rank-32 user's (8/64 is 12.5%), so a window
   * that cut a row to its first s dims cut its scores too, whatever the token needed. With it
   * (0.2, every ladder prefix) the leading dims carry what most tokens share (31.5% and 18.6%),
   * and a token cut to them keeps more: PME's progressive AUC there went from 0.6850 to 0.6897
   * at 25%, and at 10% from 0.6793 to 0.6848 (weight 0.1: 0.6842, 0.5: 0.6851, 1: 0.6850).
   * Prefixes of the sizes in use only, not every ladder size: 0.6851 at 10%, and on ml-100k
   * (held out; `node dist/bench/pme-windows.js`, 3 seeds, 10 / 25 / 50%) 0.7570 / 0.7602 /
   * 0.7608 against every prefix's 0.7568 / 0.7599 / 0.7607 (none: 0.7573 / 0.7604 / 0.7609):
   * a prefix below the start size, where no row is cut, only constrains the leading dims.
   * `pme offline`'s fixed-size methods (uniform, MDE, pme-paper) learn without them: none of
   * their tokens is ever cut (offline.ts). 0: the full score's loss alone. Default 0.2.
   */
  prefixLossWeight: number;
  /** L2 on the rows and linear weights touched by a step. Default 1e-6. */
  l2: number;
  /** L2 on the projections, applied when they are updated (once per mini-batch). Default 1e-6. */
  l2Projection: number;
  /** 'adagrad' (default): per-coordinate accumulators in the store's optimizer slabs.
   *  'sgd': plain steps, no optimizer state read (used by the gradient tests, and cheaper). */
  optimizer: 'adagrad' | 'sgd';
  /** Update rule of the linear weights (`--linear-optimizer`, linear-step.ts): 'adagrad' (default),
   *  or 'ftrl', FTRL-Proximal with alpha = linearLearningRate, beta = ftrlBeta, L1 = ftrlL1 and
   *  L2 = l2, whose z and n take two floats per token (the store's linearOptimizerSlots 2). Under
   *  optimizer 'sgd' the linear weights take plain steps whatever this says. Adagrad stays the
   *  default: `node dist/bench/quality.js --no-peers --learner '{"linearOptimizer":"ftrl"}'` (mean
   *  AUC on the last 80% over the three datasets, 3 seeds) put FTRL at beta 0.1 ahead by little,
   *  pme lr 0.7389 → 0.7397, fm full 0.7366 → 0.7369, fm pme 25% 0.7376 → 0.7381, fm size 8
   *  0.7390 → 0.7396 (avazu-sample down 0.0007 and 0.0005 on the first two FM rows), with beta
   *  picked on those very streams, for 4 more bytes a token, and a snapshot taken under Adagrad
   *  does not continue under FTRL. */
  linearOptimizer: LinearOptimizer;
  /** FTRL's beta (`--ftrl-beta`): a weight's rate is linearLearningRate / (beta + √n), and beta /
   *  linearLearningRate a pull of the weight towards 0 that its own gradients outgrow. Default 0.1,
   *  not the paper's 1: `node dist/bench/quality.js --no-peers --learner
   *  '{"linearOptimizer":"ftrl","ftrlBeta":B}'` (mean AUC on the last 80% over the three datasets)
   *  at beta 0.01 / 0.1 / 0.3 / 1 / 10: pme lr 0.7392 / 0.7397 / 0.7390 / 0.7374 / 0.7274 (Adagrad
   *  0.7389), fm full 0.7366 / 0.7369 / 0.7367 / 0.7359 / 0.7323 (0.7366), fm pme 25% 0.7378 /
   *  0.7381 / 0.7374 / 0.7293 / 0.7243 (0.7376). */
  ftrlBeta: number;
  /** FTRL's L1 (`--ftrl-l1`): a weight whose |z| is at most this is exactly 0. Default 0: on the
   *  same bench (beta 0.1) L1 0.1 and 1 gave pme lr 0.7393 and 0.7343 against 0.7397, fm pme 25%
   *  0.7377 and 0.7276 against 0.7381 (sparser, not better). */
  ftrlL1: number;
  /** Added to √(accumulator) in every Adagrad step (`--adagrad-epsilon`). Default 1e-7: the
   *  first step of a coordinate moves it by about the full rate whatever its gradient. Measured with
   *  `node dist/bench/quality.js --no-peers --seeds 1` (rate chosen on the first 20%, AUC on the last
   *  80%, mean over the 12 pme rows): 1e-7 0.7374, 0.03 0.7387, 0.1 0.7395, 0.3 0.7394, 1 0.7369;
   *  but at 0.1 the trainer test's 20,000-event planted stream ends more than 0.03 below its oracle
   *  (0.7706 against 0.8170), where at 1e-7 it is within 0.03: kept as it was. */
  epsilon: number;
  /** Value the Adagrad accumulator of a projection starts at. Default 0.1 (a gentle first step). */
  initialAccumulator: number;
  /** Most tokens one event may carry; scratch buffers are sized by it. Default 64. */
  maxTokens: number;
  /** Whether steps on top-tier rows add |e_j · g_j| to the tier's importance slab. Default true
   *  (costs one multiply-add per dimension of a full-size token). */
  importance: boolean;
  /** 'auto' (default): the projected tokens' s × D (and s × s) products run in WebAssembly SIMD
   *  when the runtime has it and D is a multiple of 4 (forward in doubles, f64x2; backward in
   *  floats, f32x4), else in JavaScript; 'js': always JavaScript, all in doubles. The wasm kernels
   *  make a tier-mix step about 1.5x faster (bench/train.ts, "tier mix"); P_s, its gradient, G_s,
   *  M_s and the per-event scratch then live in the model's wasm memory (whole 64 KiB pages: two
   *  for D = 64, the default ladder and maxTokens). */
  kernels: 'auto' | 'js';
}

export const FM_DEFAULTS: Readonly<FmOptions> = Object.freeze({
  learningRate: 0.05,
  rateTokens: 5,
  linearLearningRate: 0.2,
  projectionLearningRate: 0.01,
  projection: 'nested',
  prefixLossWeight: 0.2,
  l2: 1e-6,
  l2Projection: 1e-6,
  optimizer: 'adagrad',
  linearOptimizer: 'adagrad',
  ftrlBeta: 0.1,
  ftrlL1: 0,
  epsilon: 1e-7,
  initialAccumulator: 0.1,
  maxTokens: 64,
  importance: true,
  kernels: 'auto',
});

function positive(name: string, value: number): void {
  if (!(typeof value === 'number' && Number.isFinite(value) && value > 0))
    throw new PmeError('PME_ERR_CONFIG_INVALID', `${name} must be a positive number, got ${value}`);
}
function nonNegative(name: string, value: number): void {
  if (!(typeof value === 'number' && Number.isFinite(value) && value >= 0))
    throw new PmeError('PME_ERR_CONFIG_INVALID', `${name} must be a number >= 0, got ${value}`);
}

/** Merges defaults, validates and freezes. Throws PME_ERR_CONFIG_INVALID. */
export function resolveFmOptions(options: Partial<FmOptions> = {}): Readonly<FmOptions> {
  const o: FmOptions = { ...FM_DEFAULTS, ...options };
  positive('learningRate', o.learningRate);
  nonNegative('rateTokens', o.rateTokens);
  positive('linearLearningRate', o.linearLearningRate);
  positive('projectionLearningRate', o.projectionLearningRate);
  nonNegative('prefixLossWeight', o.prefixLossWeight);
  nonNegative('l2', o.l2);
  nonNegative('l2Projection', o.l2Projection);
  positive('epsilon', o.epsilon);
  nonNegative('initialAccumulator', o.initialAccumulator);
  nonNegative('ftrlBeta', o.ftrlBeta);
  nonNegative('ftrlL1', o.ftrlL1);
  if (o.optimizer !== 'adagrad' && o.optimizer !== 'sgd')
    throw new PmeError('PME_ERR_CONFIG_INVALID', `optimizer must be "adagrad" or "sgd", got ${o.optimizer}`);
  if (!LINEAR_OPTIMIZERS.includes(o.linearOptimizer))
    throw new PmeError(
      'PME_ERR_CONFIG_INVALID',
      `linearOptimizer must be ${LINEAR_OPTIMIZERS.map((x) => `"${x}"`).join(' or ')}, got ${o.linearOptimizer}`,
    );
  if (o.projection !== 'learned' && o.projection !== 'nested')
    throw new PmeError(
      'PME_ERR_CONFIG_INVALID',
      `projection must be "learned" or "nested", got ${o.projection}`,
    );
  if (o.kernels !== 'auto' && o.kernels !== 'js')
    throw new PmeError('PME_ERR_CONFIG_INVALID', `kernels must be "auto" or "js", got ${o.kernels}`);
  if (!Number.isInteger(o.maxTokens) || o.maxTokens < 1)
    throw new PmeError('PME_ERR_CONFIG_INVALID', `maxTokens must be an integer >= 1, got ${o.maxTokens}`);
  return Object.freeze(o);
}

/** Floats per token the store keeps for the linear weights of a model of these options: its
 *  `linearOptimizerSlots` (2 for FTRL's z and n, 1 for Adagrad's accumulator, 0 under SGD). */
export function linearOptimizerSlotsOf(options: Partial<FmOptions> = {}): number {
  const o = { ...FM_DEFAULTS, ...options };
  return linearOptimizerSlots(o.optimizer, o.linearOptimizer);
}

/**
 * One step of a projection on its accumulated gradient G (then cleared), with L2, by Adagrad
 * (accumulators A) or plain SGD as the options say. Shared by the FM's flush and DeepFM.
 */
export function stepProjection(
  P: Float32Array,
  A: Float32Array,
  G: Float64Array | Float32Array,
  o: Readonly<FmOptions>,
): void {
  const lr = o.projectionLearningRate;
  const l2 = o.l2Projection;
  const eps = o.epsilon;
  const adagrad = o.optimizer === 'adagrad';
  for (let j = 0; j < P.length; j++) {
    const gr = G[j] + l2 * P[j];
    G[j] = 0;
    if (adagrad) {
      const acc = A[j] + gr * gr;
      A[j] = acc;
      P[j] -= (lr * gr) / (Math.sqrt(acc) + eps);
    } else P[j] -= lr * gr;
  }
}

export class FmModel extends ModelBase implements Model {
  readonly kind = 'fm';
  readonly cadence = 'event';
  readonly store: ModelStore;
  readonly options: Readonly<FmOptions>;
  readonly projections: (Float32Array | null)[];
  readonly projectionAccumulators: (Float32Array | null)[];
  /** Index of the tier of size D (the searched tier), -1 if the ladder has none. */
  readonly topTier: number;
  /** Where the projected tokens' products run: 'wasm-simd' or 'js' (see FmOptions.kernels). */
  readonly kernels: 'wasm-simd' | 'js';

  // What the options chose, once: the products of projected tokens and each update rule.
  readonly #projector: Projector;
  readonly #stepFullRow: FullRowStep;
  readonly #stepRow: RowStep;
  /** Step of a nested row (projection 'nested'): a full-size row's step over its first s dims. */
  readonly #stepPrefixRow: FullRowStep;
  /** projection 'nested': rows below D are the first s dims of their D-space vector. */
  readonly #nested: boolean;
  /** The prefix losses (prefixLossWeight > 0, nested): the tiers of the ladder's sizes 0 < s < D,
   *  ascending (empty: none; a prefix counts while its tier holds tokens); the rows' step under
   *  them; per event, the bias and linear part of the score and the prefixes' weighted
   *  (p_s − label). */
  readonly #prefixTiers: Int32Array;
  /** Per event: each prefix's weight, 0 for a size no token holds (#prefixesInUse). */
  readonly #prefixWeight: Float64Array;
  readonly #stepPrefixLoss: PrefixRowStep;
  #linearPart = 0;
  readonly #prefixP: Float64Array;
  /** The blocks of dims between prefix sizes: their ends (the prefix sizes, then D), per event
   *  each block's multiplier (the full score's g plus the weighted g of each prefix holding it)
   *  and its Σ v² over the tokens up to the longest prefix. */
  readonly #blockEnds: Int32Array;
  readonly #blockGrad: Float64Array;
  readonly #blockSelf: Float64Array;
  readonly #adagrad: boolean;
  /** The linear weights step by FTRL (else inline, see backward). */
  readonly #ftrl: boolean;
  readonly #linearParams: LinearStepParams;
  /** Whether full-size rows gather importance (PME's search): the top tier's slab, else none. */
  readonly #importance: boolean;
  /** Gradients of the projections accumulated over the current mini-batch (the projector's). */
  readonly #projectionGrads: (Float32Array | Float64Array | null)[];
  /** Per tier: whether #projectionGrads holds anything (avoids sweeping untouched tiers). */
  readonly #projectionTouched: Uint8Array;
  readonly #grams: TierGrams;

  // Scratch for one event. Per token (at k, or k · D): its tier, size, offset, D-space vector
  // (full size, or projected alone); if its tier may be shared, its row in doubles x, x G_s and
  // the next token of the tier. Per tier that may be shared (present): its tokens' count, first
  // and last, whether shared, and if so its rows' sum E (E P_s in the first token's V slot),
  // Σ x G_s, the rows' gradient from the rest of the event, and the sum R of the rows stepped so
  // far. Tiers that cannot be shared with this many tokens are projected token by token at once.
  readonly #tier: Int32Array;
  readonly #size: Int32Array;
  readonly #offset: Int32Array;
  readonly #v: Float64Array;
  readonly #sum: Float64Array;
  readonly #scratch: Float64Array;
  readonly #x: Float64Array;
  readonly #xg: Float64Array;
  readonly #next: Int32Array;
  readonly #present: Int32Array;
  #presentCount = 0;
  readonly #tierCount: Int32Array;
  readonly #tierFirst: Int32Array;
  readonly #tierLast: Int32Array;
  readonly #shared: Uint8Array;
  /** Per tier: the fewest tokens of it in an event that #shares shares (maxTokens + 1: never). */
  readonly #shareFrom: Int32Array;
  readonly #tierSum: Float64Array;
  readonly #tierXg: Float64Array;
  readonly #tierGrad: Float64Array;
  readonly #tierRest: Float64Array;
  readonly #tierSeen: Int32Array;
  #ids: Int32Array;
  #at = 0;
  #n = 0;
  #p = 0;

  constructor(store: ModelStore, options: Partial<FmOptions> = {}) {
    const o = resolveFmOptions(options);
    super(store.dim, o.maxTokens, o.initialAccumulator);
    this.options = o;
    this.store = store;
    const D = store.dim;
    const sizes = store.tiers.map((t) => t.size);
    for (const s of sizes)
      if (s > D) throw new PmeError('PME_ERR_CONFIG_INVALID', `tier size ${s} exceeds dim ${D}`);
    const m = o.maxTokens;
    const nested = o.projection === 'nested';
    this.#nested = nested;
    // Nested tiers have no projection: the kernels see them as size 0 (nothing allocated for them).
    const projected = nested ? sizes.map((s) => (s < D ? 0 : s)) : sizes;
    this.#projector =
      (o.kernels === 'auto' ? createSimdProjector(projected, D, m) : null) ??
      new JsProjector(projected, D, m);
    this.#v = this.#projector.V;
    this.#sum = this.#projector.S;
    this.kernels = this.#projector.kind;
    this.projections = this.#projector.projections;
    this.#projectionGrads = this.#projector.projectionGrads;
    this.projectionAccumulators = this.projections.map((P) =>
      P === null ? null : new Float32Array(P.length).fill(o.initialAccumulator),
    );
    this.topTier = sizes.indexOf(D);
    this.#projectionTouched = new Uint8Array(sizes.length);
    this.#grams = new TierGrams(projected, D, this.#projector);
    this.#importance = o.importance && this.topTier >= 0 && store.tiers[this.topTier].importance !== null;
    const adagrad = o.optimizer === 'adagrad';
    this.#adagrad = adagrad;
    this.#stepFullRow = !adagrad ? sgdFullRow : this.#importance ? adagradFullRowImportance : adagradFullRow;
    this.#stepRow = adagrad ? adagradRow : sgdRow;
    this.#stepPrefixRow = adagrad ? adagradFullRow : sgdFullRow;
    const prefixSizes =
      nested && o.prefixLossWeight > 0 ? sizes.filter((s) => s > 0 && s < D).sort((a, b) => a - b) : [];
    this.#stepPrefixLoss = adagrad ? adagradPrefixRow : sgdPrefixRow;
    this.#prefixP = new Float64Array(prefixSizes.length);
    this.#prefixTiers = Int32Array.from(prefixSizes, (s) => sizes.indexOf(s));
    this.#prefixWeight = new Float64Array(prefixSizes.length);
    this.#blockEnds = Int32Array.from([...prefixSizes, D]);
    this.#blockGrad = new Float64Array(prefixSizes.length + 1);
    this.#blockSelf = new Float64Array(prefixSizes.length);
    checkLinearSlots(store.options.linearOptimizerSlots, o.optimizer, o.linearOptimizer);
    this.#ftrl = adagrad && o.linearOptimizer === 'ftrl';
    this.#linearParams = linearStepParams(o);
    this.#tier = new Int32Array(m);
    this.#size = new Int32Array(m);
    this.#offset = new Int32Array(m);
    this.#scratch = new Float64Array(D);
    this.#x = new Float64Array(m * D);
    this.#xg = new Float64Array(m * D);
    this.#next = new Int32Array(m);
    const T = sizes.length;
    this.#present = new Int32Array(T);
    this.#tierCount = new Int32Array(T);
    this.#tierFirst = new Int32Array(T);
    this.#tierLast = new Int32Array(T);
    this.#shared = new Uint8Array(T);
    this.#shareFrom = Int32Array.from(sizes, (s) => {
      let c = 2;
      while (c <= m && !(!nested && s > 0 && s < D && FmModel.#shares(s, c, D))) c++;
      return c;
    });
    this.#tierSum = new Float64Array(T * D);
    this.#tierXg = new Float64Array(T * D);
    this.#tierGrad = new Float64Array(T * D);
    this.#tierRest = new Float64Array(T * D);
    this.#tierSeen = new Int32Array(T);
    this.#ids = new Int32Array(0);
  }

  /**
   * Forward pass over tokens ids[at .. at + n): fills the scratch (kept for `backward`) and
   * returns the probability. Reads only; safe for scoring.
   */
  forward(ids: Int32Array, n: number, at = 0): number {
    if (n > this.maxTokens)
      throw new PmeError('PME_ERR_CONFIG_INVALID', `event has ${n} tokens, maxTokens is ${this.maxTokens}`);
    const store = this.store;
    const D = this.dim;
    const tiers = store.tiers;
    const tierOf = store.tierOf;
    const slotOf = store.slotOf;
    const linear = store.linear;
    const projector = this.#projector;
    const tierScratch = this.#tier;
    const sizeScratch = this.#size;
    const offsetScratch = this.#offset;
    const V = this.#v;
    const S = this.#sum;
    const present = this.#present;
    const first = this.#tierFirst;
    const last = this.#tierLast;
    const next = this.#next;
    const count = this.#tierCount;
    const shared = this.#shared;
    const shareFrom = this.#shareFrom;
    const nested = this.#nested;
    for (let j = 0; j < this.#presentCount; j++) {
      count[present[j]] = 0;
      shared[present[j]] = 0;
    }
    let presentCount = 0;
    S.fill(0);
    let z = this.bias;
    let selfSq = 0;
    for (let k = 0; k < n; k++) {
      const id = ids[at + k];
      z += linear[id];
      const ti = tierOf[id];
      const tier = tiers[ti];
      const s = tier.size;
      tierScratch[k] = ti;
      sizeScratch[k] = s;
      if (s === 0) {
        offsetScratch[k] = 0;
        continue;
      }
      const off = slotOf[id] * s;
      offsetScratch[k] = off;
      const base = k * D;
      // Full size, or nested: the row is its D-space vector's first s dims (the rest are 0 and
      // neither read nor written: backward reads V and S at the token's first s dims only).
      if (s === D || nested) selfSq += gatherRow(tier.params, off, s, V, base, S);
      else if (shareFrom[ti] > n) selfSq += projector.forward(tier.params, off, s, ti, base);
      else {
        // The tier may be shared (#shares): the token waits, listed with its tier's.
        if (count[ti]++ === 0) {
          present[presentCount++] = ti;
          first[ti] = k;
        } else next[last[ti]] = k;
        last[ti] = k;
        next[k] = -1;
      }
    }
    this.#presentCount = presentCount;
    for (let j = 0; j < presentCount; j++) {
      const ti = present[j];
      const s = tiers[ti].size;
      if (count[ti] >= shareFrom[ti]) {
        shared[ti] = 1;
        selfSq += this.#forwardShared(ti, s);
      } else {
        const e = tiers[ti].params;
        for (let k = first[ti]; k >= 0; k = next[k])
          selfSq += projector.forward(e, offsetScratch[k], s, ti, k * D);
      }
    }
    let sq0 = 0;
    let sq1 = 0;
    let d = 0;
    for (; d + 1 < D; d += 2) {
      sq0 += S[d] * S[d];
      sq1 += S[d + 1] * S[d + 1];
    }
    if (d < D) sq0 += S[d] * S[d];
    this.#linearPart = z;
    z += 0.5 * (sq0 + sq1 - selfSq);
    this.#ids = ids;
    this.#at = at;
    this.#n = n;
    this.#p = sigmoid(z);
    return this.#p;
  }

  /**
   * Whether c tokens of size s in one event go through P_s once, as their sum, with G_s for the
   * rest (fm-gram.ts), or one by one. Costs in the kernels' loop turns: one by one, a token takes
   * s · D / 2 (projection and back, four dims a turn; its D-long work runs there too); shared, the
   * tier takes one token's cost, each token s · s' / 2 for x G_s (two dims a turn, s' =
   * gramStride(s)) and as much for the cross terms but the first, and about 12 s in JavaScript
   * (copies in and out of the kernels, sums; fitted on events of one tier of 2 to 6 tokens at
   * D = 64). Sharing must also win by 15%: G_s's rebuild and M_s's settling (s² · D each, once
   * per mini-batch) are not amortised when few events share. At D = 64, sizes 2 to 4 share from
   * 3 tokens, 8 from 4, 12 from 9, 13 from 21, and 16 and over never: uniform at 20% on
   * criteo-sample and avazu-sample (one tier of 12-13, 39 and 22 tokens) shares, ml-latest-small
   * (4 tokens an event) does not, as measured (sharing on / off, CPU a training epoch: 0.110 /
   * 0.141, 0.072 / 0.095 and 0.221 / 0.208 s).
   */
  static #shares(s: number, c: number, D: number): boolean {
    if (c < 2) return false;
    const one = (s * D) / 2;
    return one + ((2 * c - 1) * s * gramStride(s)) / 2 + 12 * c * s < 0.85 * c * one;
  }

  /**
   * Tier ti's tokens, shared: their rows x in doubles, E = Σ x through P_s into the first token's
   * V slot (and S), and Σ ‖x P_s‖² through G_s, keeping x G_s per token and Σ x G_s for
   * `backward`. Returns that Σ.
   */
  #forwardShared(ti: number, s: number): number {
    const D = this.dim;
    const projector = this.#projector;
    const X = this.#x;
    const XG = this.#xg;
    const next = this.#next;
    const t = ti * D;
    const E = this.#tierSum;
    const tierXg = this.#tierXg;
    this.#grams.prepare(ti, this.denseVersion);
    const k0 = this.#tierFirst[ti];
    for (let i = 0; i < s; i++) {
      E[t + i] = 0;
      tierXg[t + i] = 0;
    }
    const e = this.store.tiers[ti].params;
    let selfSq = 0;
    for (let k = k0; k >= 0; k = next[k]) {
      const base = k * D;
      const off = this.#offset[k];
      for (let i = 0; i < s; i++) X[base + i] = e[off + i];
      selfSq += projector.selfTerm(X, base, s, ti, XG);
      for (let i = 0; i < s; i++) {
        E[t + i] += X[base + i];
        tierXg[t + i] += XG[base + i];
      }
    }
    projector.forward(E, t, s, ti, k0 * D);
    return selfSq;
  }

  /**
   * Backward pass and update for the event last given to `forward`, against `label`. Rows and
   * linear weights are updated now; projection gradients accumulate until `flush()`.
   */
  backward(label: number): void {
    const store = this.store;
    const o = this.options;
    const D = this.dim;
    const n = this.#n;
    const ids = this.#ids;
    const at = this.#at;
    const g = this.#p - label;
    const lr = eventRate(o.learningRate, o.rateTokens, n);
    const linearRate = linearEventRate(o.linearLearningRate, o.rateTokens, n);
    const l2 = o.l2;
    const eps = o.epsilon;
    const tiers = store.tiers;
    const linear = store.linear;
    const linearOpt = store.linearOptimizer;
    const V = this.#v;
    const S = this.#sum;
    const sizeScratch = this.#size;
    const tierScratch = this.#tier;
    const offsetScratch = this.#offset;
    const projector = this.#projector;
    const grams = this.#grams;
    const shared = this.#shared;
    const tierGrad = this.#tierGrad;
    const tierXg = this.#tierXg;
    const rest = this.#tierRest;
    const seen = this.#tierSeen;
    const X = this.#x;
    const XG = this.#xg;
    const adagrad = this.#adagrad;
    const ftrl = this.#ftrl;
    const linearParams = this.#linearParams;
    const stepFullRow = this.#stepFullRow;
    const stepRow = this.#stepRow;
    const stepPrefixRow = this.#stepPrefixRow;
    const nested = this.#nested;
    const importance = this.#importance;

    this.stepBias(g, o.projectionLearningRate, eps, this.#adagrad);
    const prefixLoss = this.#prefixTiers.length > 0 && this.#prefixesInUse();
    if (prefixLoss) this.#prefixGradients(g, label);
    const ends = this.#blockEnds;
    const M = this.#blockGrad;
    const stepPrefixLoss = this.#stepPrefixLoss;

    // Shared tiers: with dv = g (S − E P_s), the part of their rows' gradients from the rest of
    // the event, P_s dv, and E ⊗ dv into P_s's.
    const grad = projector.grad;
    const gradAt = projector.gradAt;
    for (let j = 0; j < this.#presentCount; j++) {
      const ti = this.#present[j];
      if (shared[ti] === 0) continue;
      const s = tiers[ti].size;
      const t = ti * D;
      projector.backward(this.#tierSum, t, s, ti, g, this.#tierFirst[ti] * D);
      for (let i = 0; i < s; i++) {
        tierGrad[t + i] = grad[gradAt + i];
        rest[t + i] = 0;
      }
      seen[ti] = 0;
    }

    for (let k = 0; k < n; k++) {
      // Adagrad and SGD inline, not a picked function as the rows are: a call per token cost ~2%
      // of a tier-mix step (in-process A/B against the inline form).
      const id = ids[at + k];
      if (ftrl) ftrlLinear(linear, linearOpt, id, g, linearParams, linearRate);
      else {
        const gw = g + l2 * linear[id];
        if (adagrad) {
          const acc = linearOpt[id] + gw * gw;
          linearOpt[id] = acc;
          linear[id] -= (linearRate * gw) / (Math.sqrt(acc) + eps);
        } else linear[id] -= linearRate * gw;
      }
      const s = sizeScratch[k];
      if (s === 0) continue;
      const ti = tierScratch[k];
      const tier = tiers[ti];
      const off = offsetScratch[k];
      const base = k * D;
      if (s === D) {
        // dL/de_d = g (S_d − v_d): read straight from the forward's sums, no dv pass.
        const imp = importance ? tier.importance : null;
        if (prefixLoss)
          stepPrefixLoss(tier.params, tier.optimizer, imp, off, D, S, V, base, ends, M, g, lr, l2, eps);
        else stepFullRow(tier.params, tier.optimizer, imp, off, D, S, V, base, g, lr, l2, eps);
      } else if (nested) {
        // dL/de_i = g (S_i − v_i) over the first s dims: a full-size step cut to s, no P_s.
        if (prefixLoss)
          stepPrefixLoss(tier.params, tier.optimizer, null, off, s, S, V, base, ends, M, g, lr, l2, eps);
        else stepPrefixRow(tier.params, tier.optimizer, null, off, s, S, V, base, g, lr, l2, eps);
      } else if (shared[ti] === 0) {
        this.#projectionTouched[ti] = 1;
        projector.backward(tier.params, off, s, ti, g, base);
        stepRow(tier.params, tier.optimizer, off, s, grad, gradAt, lr, l2, eps);
      } else {
        // The rest of a shared row's gradient is from its own tier: g (E − x) G_s. Into the
        // projector's buffer, as one by one, so the row step sees one array type.
        const t = ti * D;
        this.#projectionTouched[ti] = 1;
        for (let i = 0; i < s; i++) grad[gradAt + i] = tierGrad[t + i] + g * (tierXg[t + i] - XG[base + i]);
        // Cross terms with the tier's earlier tokens (their sum R): M_s += g x Rᵀ.
        if (seen[ti]++ > 0) grams.addOuter(X, base, rest, t, s, ti, g);
        for (let i = 0; i < s; i++) rest[t + i] += X[base + i];
        stepRow(tier.params, tier.optimizer, off, s, grad, gradAt, lr, l2, eps);
      }
    }
  }

  /** Each prefix's weight for this event (0 where its size holds no token), and whether more than
   *  one size above 0 holds tokens. The prefix losses serve a store of mixed sizes, whose tokens
   *  get cut to a prefix: with every token at one size (full, or uniform) nothing is cut, and every
   *  ladder prefix cost (the planted stream at 5M events, seed 1: full 0.6867 → 0.6857, uniform 32
   *  at 10% 0.6820 → 0.6812), so such a store learns as it did without them. */
  #prefixesInUse(): boolean {
    const tiers = this.store.tiers;
    const pt = this.#prefixTiers;
    const weight = this.#prefixWeight;
    const w = this.options.prefixLossWeight;
    let sizes = this.topTier >= 0 && tiers[this.topTier].count > 0 ? 1 : 0;
    for (let b = 0; b < pt.length; b++) {
      const held = tiers[pt[b]].count > 0;
      weight[b] = held ? w : 0;
      if (held) sizes++;
    }
    return sizes > 1;
  }

  /**
   * The prefix losses' multipliers of the event last given to `forward` (nested tiers, so every
   * token's vector is V's first `size` dims): the prefix of s dims scores
   * z_s = linear part + ½ Σ_{d<s} (S_d² − Σ_tokens v_d²), and dim d's multiplier is the full
   * score's g plus the weighted (p_s − label) of every prefix s > d whose size tokens hold: one
   * per block of dims between two prefix sizes. Only here, not in forward: scoring (predict, the
   * read paths) never pays for them.
   */
  #prefixGradients(g: number, label: number): void {
    const D = this.dim;
    const n = this.#n;
    const V = this.#v;
    const S = this.#sum;
    const size = this.#size;
    const ends = this.#blockEnds;
    const prefixes = ends.length - 1;
    const self = this.#blockSelf;
    // Σ v² over the tokens, per block of dims between two prefix sizes. A row's dims past the
    // longest prefix enter no prefix's score, so a full-size row is read to D / 2 only.
    self.fill(0);
    let top = 0;
    for (let k = 0; k < n; k++) {
      const s = size[k];
      if (s > top) top = s;
      const base = k * D;
      let d = 0;
      for (let b = 0; b < prefixes && d < s; b++) {
        const end = Math.min(ends[b], s);
        let sq = 0;
        for (; d < end; d++) sq += V[base + d] * V[base + d];
        self[b] += sq;
      }
    }
    if (top === 0) return; // no row steps
    const p = this.#prefixP;
    const weight = this.#prefixWeight;
    // p[b] is the prefix's weight times (p_s − label): 0 for a size no token holds, no sigmoid.
    // Past the event's longest row `top` S and Σ v² are 0: a longer prefix scores as that row's
    // length. So the work is O(Σ sizes + longest), not O(D) an event (an epoch of small rows must
    // not cost more than full size's).
    let z = this.#linearPart;
    let d = 0;
    let b = 0;
    for (; b < prefixes; b++) {
      const end = Math.min(ends[b], top);
      let sq = 0;
      for (; d < end; d++) sq += S[d] * S[d];
      z += 0.5 * (sq - self[b]);
      p[b] = weight[b] === 0 ? 0 : weight[b] * (sigmoid(z) - label);
      if (ends[b] >= top) break;
    }
    // The prefixes past the block that reached `top` all score the whole event.
    if (++b < prefixes) {
      const whole = sigmoid(z) - label;
      for (; b < prefixes; b++) p[b] = weight[b] * whole;
    }
    // Block b's multiplier: g plus the weighted g of every prefix holding it (b and longer).
    const M = this.#blockGrad;
    M[prefixes] = g;
    for (b = prefixes - 1; b >= 0; b--) M[b] = M[b + 1] + p[b];
  }

  /** Score then learn one event (progressive validation): returns the probability before the update. */
  step(ids: Int32Array, n: number, label: number, at = 0): number {
    const p = this.forward(ids, n, at);
    this.backward(label);
    return p;
  }

  learn(rows: Rows, from: number, to: number, scores: ScoreSink): void {
    const stride = rows.stride;
    const ids = rows.ids;
    const counts = rows.counts;
    const labels = rows.labels;
    for (let r = from; r < to; r++) {
      const label = labels[r];
      scores.add(this.step(ids, counts[r], label, r * stride), label);
    }
  }

  endBatch(): void {
    this.flush();
  }

  /** Applies the projection gradients accumulated since the last flush (end of a mini-batch). */
  flush(): void {
    const o = this.options;
    this.#grams.settle();
    let any = false;
    for (let ti = 0; ti < this.#projectionTouched.length; ti++) {
      if (this.#projectionTouched[ti] === 0) continue;
      this.#projectionTouched[ti] = 0;
      any = true;
      stepProjection(this.projections[ti]!, this.projectionAccumulators[ti]!, this.#projectionGrads[ti]!, o);
    }
    if (any) this.denseVersion++;
  }

  /** Probability for tokens ids[at .. at + n) without side effects on parameters. */
  predict(ids: Int32Array, n: number, at = 0): number {
    return this.forward(ids, n, at);
  }

  predictRows(rows: Rows, from: number, to: number, out: Float64Array): void {
    for (let r = from; r < to; r++) out[r] = this.forward(rows.ids, rows.counts[r], r * rows.stride);
  }

  userSide(ids: Int32Array, n: number, sum: Float64Array): number {
    return fmSide(this, this.store.linear, ids, n, sum, this.#scratch, this.bias);
  }

  itemSide(ids: Int32Array, n: number, sum: Float64Array): number {
    return fmSide(this, this.store.linear, ids, n, sum, this.#scratch, 0);
  }

  /**
   * The D-space vector of one token into `out` (length D, offset `at`): zeros for size 0.
   * Used by the read path, PME's capacity transfer and DeepFM's input.
   */
  vectorOf(id: TokenId, out: Float32Array | Float64Array, at = 0): void {
    const store = this.store;
    const D = this.dim;
    const ti = store.tierOf[id];
    const tier = store.tiers[ti];
    const s = tier.size;
    if (s === 0) {
      for (let d = 0; d < D; d++) out[at + d] = 0;
      return;
    }
    const off = store.slotOf[id] * s;
    const e = tier.params;
    const P = this.projections[ti];
    if (s === D || P === null) {
      // Full size, or nested (no projection): the row, zero-padded.
      for (let d = 0; d < s; d++) out[at + d] = e[off + d];
      for (let d = s; d < D; d++) out[at + d] = 0;
      return;
    }
    for (let d = 0; d < D; d++) out[at + d] = 0;
    for (let i = 0; i < s; i++) {
      const ei = e[off + i];
      const row = i * D;
      for (let d = 0; d < D; d++) out[at + d] += ei * P[row + d];
    }
  }

  stats(): ModelStats {
    return { kind: this.kind, kernels: this.kernels, projection: this.options.projection };
  }
}

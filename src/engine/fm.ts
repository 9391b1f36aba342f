/**
 * Factorization machine over multi-size embeddings.
 *
 * Every token t has a linear weight w_t (store.linear) and a row e_t of its tier's size s. The row
 * reaches the shared D-space through the tier's projection P_s (s × D, learned): v_t = e_t · P_s.
 * Tier D uses the identity, tier 0 has no vector. The score of one event with tokens T is
 *   z = b + Σ w_t + ½ [ (Σ v_t)² − Σ v_t² ]   (summed over the D dims),   y = sigmoid(z)
 * and the loss is logloss. Forward, backward and Adagrad are written by hand over the store's
 * typed arrays; all scratch is preallocated so a step allocates nothing.
 */
import { PmeError } from '../errors.js';

/** A token handle, as the store hands them out. */
export type TokenId = number;

/** One tier of the store, as the model reads it (arrays are re-read every event: they grow). */
export interface ModelTier {
  readonly size: number;
  readonly params: Float32Array;
  readonly optimizer: Float32Array;
  readonly importance: Float32Array | null;
}

/**
 * The part of the EmbeddingStore the model reads and writes. The store in src/store satisfies it;
 * stating it here keeps the math testable on its own and says exactly what the model touches.
 */
export interface ModelStore {
  readonly dim: number;
  readonly tiers: readonly ModelTier[];
  readonly tierOf: Uint8Array;
  readonly slotOf: Int32Array;
  readonly linear: Float32Array;
  readonly linearOptimizer: Float32Array;
}

/** Model options. Every field is validated once by `resolveFmOptions` and frozen. */
export interface FmOptions {
  /** Step size for embedding rows and linear weights. Default 0.05. */
  learningRate: number;
  /** Step size for the dense projections P_s and the bias. Default 0.01: they are shared by
   *  every token of a tier, so they see many more updates than any row. */
  projectionLearningRate: number;
  /** L2 on the rows and linear weights touched by a step. Default 1e-6. */
  l2: number;
  /** L2 on the projections, applied when they are updated (once per mini-batch). Default 1e-6. */
  l2Projection: number;
  /** 'adagrad' (default): per-coordinate accumulators in the store's optimizer slabs.
   *  'sgd': plain steps, no optimizer state read (used by the gradient tests, and cheaper). */
  optimizer: 'adagrad' | 'sgd';
  /** Added to √(accumulator) so the first Adagrad step is bounded. Default 1e-7. */
  epsilon: number;
  /** Value the Adagrad accumulator of a projection starts at. Default 0.1 (a gentle first step). */
  initialAccumulator: number;
  /** Most tokens one event may carry; scratch buffers are sized by it. Default 64. */
  maxTokens: number;
  /** Whether steps on top-tier rows add |e_j · g_j| to the tier's importance slab. Default true
   *  (costs one multiply-add per dimension of a full-size token). */
  importance: boolean;
}

export const FM_DEFAULTS: Readonly<FmOptions> = Object.freeze({
  learningRate: 0.05,
  projectionLearningRate: 0.01,
  l2: 1e-6,
  l2Projection: 1e-6,
  optimizer: 'adagrad',
  epsilon: 1e-7,
  initialAccumulator: 0.1,
  maxTokens: 64,
  importance: true,
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
  positive('projectionLearningRate', o.projectionLearningRate);
  nonNegative('l2', o.l2);
  nonNegative('l2Projection', o.l2Projection);
  positive('epsilon', o.epsilon);
  nonNegative('initialAccumulator', o.initialAccumulator);
  if (o.optimizer !== 'adagrad' && o.optimizer !== 'sgd')
    throw new PmeError('PME_ERR_CONFIG_INVALID', `optimizer must be "adagrad" or "sgd", got ${o.optimizer}`);
  if (!Number.isInteger(o.maxTokens) || o.maxTokens < 1)
    throw new PmeError('PME_ERR_CONFIG_INVALID', `maxTokens must be an integer >= 1, got ${o.maxTokens}`);
  return Object.freeze(o);
}

export function sigmoid(z: number): number {
  return z >= 0 ? 1 / (1 + Math.exp(-z)) : Math.exp(z) / (1 + Math.exp(z));
}

/** Logloss of probability p against label y in [0, 1], clamped away from log(0). */
export function logloss(p: number, y: number): number {
  const q = Math.min(Math.max(p, 1e-7), 1 - 1e-7);
  return -(y * Math.log(q) + (1 - y) * Math.log(1 - q));
}

export class FmModel {
  readonly store: ModelStore;
  readonly options: Readonly<FmOptions>;
  readonly dim: number;
  /** Global bias b. */
  bias = 0;
  /** Adagrad accumulator of the bias. */
  biasAccumulator: number;
  /** P_s per tier index, row-major s × D; null for size 0 and size D (identity). */
  readonly projections: (Float32Array | null)[];
  /** Adagrad accumulators of the projections, same layout. */
  readonly projectionAccumulators: (Float32Array | null)[];
  /** Gradients of the projections accumulated over the current mini-batch. */
  readonly #projectionGrads: (Float64Array | null)[];
  /** Per tier: whether #projectionGrads holds anything (avoids sweeping untouched tiers). */
  readonly #projectionTouched: Uint8Array;
  /** Index of the tier of size D (the searched tier), -1 if the ladder has none. */
  readonly topTier: number;
  /** Incremented whenever parameters that every item shares change (projections, bias). */
  denseVersion = 0;

  // Scratch for one event: per token its tier, size, offset and D-space vector.
  readonly #tier: Int32Array;
  readonly #size: Int32Array;
  readonly #offset: Int32Array;
  readonly #v: Float64Array;
  readonly #sum: Float64Array;
  readonly #dv: Float64Array;
  /** dL/de of the projected token being updated (its own s-space). */
  readonly #rowGrad: Float64Array;
  #ids: Int32Array;
  #n = 0;
  #p = 0;

  constructor(store: ModelStore, options: Partial<FmOptions> = {}) {
    this.options = resolveFmOptions(options);
    this.store = store;
    const D = store.dim;
    this.dim = D;
    this.biasAccumulator = this.options.initialAccumulator;
    this.projections = [];
    this.projectionAccumulators = [];
    this.#projectionGrads = [];
    let top = -1;
    for (let i = 0; i < store.tiers.length; i++) {
      const s = store.tiers[i].size;
      if (s === D) top = i;
      if (s === 0 || s === D) {
        this.projections.push(null);
        this.projectionAccumulators.push(null);
        this.#projectionGrads.push(null);
        continue;
      }
      if (s > D) throw new PmeError('PME_ERR_CONFIG_INVALID', `tier size ${s} exceeds dim ${D}`);
      this.projections.push(initialProjection(s, D));
      this.projectionAccumulators.push(new Float32Array(s * D).fill(this.options.initialAccumulator));
      this.#projectionGrads.push(new Float64Array(s * D));
    }
    this.topTier = top;
    this.#projectionTouched = new Uint8Array(store.tiers.length);
    const m = this.options.maxTokens;
    this.#tier = new Int32Array(m);
    this.#size = new Int32Array(m);
    this.#offset = new Int32Array(m);
    this.#v = new Float64Array(m * D);
    this.#sum = new Float64Array(D);
    this.#dv = new Float64Array(D);
    this.#rowGrad = new Float64Array(D);
    this.#ids = new Int32Array(0);
  }

  /**
   * Forward pass over tokens ids[0..n): fills the scratch (kept for `backward`) and returns the
   * probability. Reads only; safe for scoring.
   */
  forward(ids: Int32Array, n: number): number {
    if (n > this.options.maxTokens)
      throw new PmeError(
        'PME_ERR_CONFIG_INVALID',
        `event has ${n} tokens, maxTokens is ${this.options.maxTokens}`,
      );
    const store = this.store;
    const D = this.dim;
    const tiers = store.tiers;
    const tierOf = store.tierOf;
    const slotOf = store.slotOf;
    const linear = store.linear;
    const projections = this.projections;
    const tierScratch = this.#tier;
    const sizeScratch = this.#size;
    const offsetScratch = this.#offset;
    const V = this.#v;
    const S = this.#sum;
    S.fill(0);
    let z = this.bias;
    let selfSq = 0;
    for (let k = 0; k < n; k++) {
      const id = ids[k];
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
      if (s === D) {
        const e = tier.params;
        for (let d = 0; d < D; d++) {
          const x = e[off + d];
          V[base + d] = x;
          S[d] += x;
          selfSq += x * x;
        }
      } else {
        project(tier.params, off, s, projections[ti]!, D, V, base);
        for (let d = 0; d < D; d++) {
          const x = V[base + d];
          S[d] += x;
          selfSq += x * x;
        }
      }
    }
    let sumSq = 0;
    for (let d = 0; d < D; d++) sumSq += S[d] * S[d];
    z += 0.5 * (sumSq - selfSq);
    this.#ids = ids;
    this.#n = n;
    this.#p = sigmoid(z);
    return this.#p;
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
    const g = this.#p - label;
    const lr = o.learningRate;
    const l2 = o.l2;
    const eps = o.epsilon;
    const adagrad = o.optimizer === 'adagrad';
    const tiers = store.tiers;
    const linear = store.linear;
    const linearOpt = store.linearOptimizer;
    const V = this.#v;
    const S = this.#sum;
    const dv = this.#dv;
    const rowGrad = this.#rowGrad;
    const sizeScratch = this.#size;
    const tierScratch = this.#tier;
    const offsetScratch = this.#offset;
    const withImportance = o.importance;

    // Bias: dense, but one scalar, so it is stepped per event.
    if (adagrad) {
      this.biasAccumulator += g * g;
      this.bias -= (o.projectionLearningRate * g) / (Math.sqrt(this.biasAccumulator) + eps);
    } else this.bias -= o.projectionLearningRate * g;

    for (let k = 0; k < n; k++) {
      const id = ids[k];
      const gw = g + l2 * linear[id];
      if (adagrad) {
        const acc = linearOpt[id] + gw * gw;
        linearOpt[id] = acc;
        linear[id] -= (lr * gw) / (Math.sqrt(acc) + eps);
      } else linear[id] -= lr * gw;

      const s = sizeScratch[k];
      if (s === 0) continue;
      const ti = tierScratch[k];
      const tier = tiers[ti];
      const e = tier.params;
      const opt = tier.optimizer;
      const off = offsetScratch[k];
      const base = k * D;
      if (s === D) {
        // dL/de_d = g (S_d − v_d): read straight from the forward's sums, no dv pass.
        const imp = withImportance ? tier.importance : null;
        if (adagrad) {
          if (imp !== null) adagradRowImportance(e, opt, imp, off, D, S, V, base, g, lr, l2, eps);
          else adagradRow(e, opt, off, D, S, V, base, g, lr, l2, eps);
        } else {
          for (let d = 0; d < D; d++) {
            const x = e[off + d];
            const gl = g * (S[d] - V[base + d]);
            if (imp !== null) imp[off + d] += Math.abs(x * gl);
            e[off + d] = x - lr * (gl + l2 * x);
          }
        }
      } else {
        for (let d = 0; d < D; d++) dv[d] = g * (S[d] - V[base + d]);
        this.#projectionTouched[ti] = 1;
        backProject(e, off, s, this.projections[ti]!, this.#projectionGrads[ti]!, D, dv, rowGrad);
        if (adagrad)
          for (let i = 0; i < s; i++) {
            const x = e[off + i];
            const gr = rowGrad[i] + l2 * x;
            const acc = opt[off + i] + gr * gr;
            opt[off + i] = acc;
            e[off + i] = x - (lr * gr) / (Math.sqrt(acc) + eps);
          }
        else for (let i = 0; i < s; i++) e[off + i] -= lr * (rowGrad[i] + l2 * e[off + i]);
      }
    }
  }

  /** Score then learn one event (progressive validation): returns the probability before the update. */
  step(ids: Int32Array, n: number, label: number): number {
    const p = this.forward(ids, n);
    this.backward(label);
    return p;
  }

  /** Applies the projection gradients accumulated since the last flush (end of a mini-batch). */
  flush(): void {
    const o = this.options;
    const lr = o.projectionLearningRate;
    const l2 = o.l2Projection;
    const eps = o.epsilon;
    const adagrad = o.optimizer === 'adagrad';
    let any = false;
    for (let ti = 0; ti < this.#projectionTouched.length; ti++) {
      if (this.#projectionTouched[ti] === 0) continue;
      this.#projectionTouched[ti] = 0;
      any = true;
      const P = this.projections[ti]!;
      const A = this.projectionAccumulators[ti]!;
      const G = this.#projectionGrads[ti]!;
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
    if (any) this.denseVersion++;
  }

  /** Probability for tokens ids[0..n) without side effects on parameters. */
  predict(ids: Int32Array, n: number): number {
    return this.forward(ids, n);
  }

  /**
   * The D-space vector of one token into `out` (length D, offset `at`): zeros for size 0.
   * Used to build the item-side table and by capacity transfer.
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
    if (s === D) {
      for (let d = 0; d < D; d++) out[at + d] = e[off + d];
      return;
    }
    const P = this.projections[ti]!;
    for (let d = 0; d < D; d++) out[at + d] = 0;
    for (let i = 0; i < s; i++) {
      const ei = e[off + i];
      const row = i * D;
      for (let d = 0; d < D; d++) out[at + d] += ei * P[row + d];
    }
  }
}

/**
 * P_s starts as the first s rows of the identity: a new size-s token lives in the first s dims of
 * the D-space. The tiers are then nested (the dims of tier 2 are inside those of tier 4, ...),
 * so small tokens of different tiers interact at full strength from their first step, and a
 * token's vector has the same scale whatever its size. Random projections would couple two
 * tiers only through chance overlaps (~√(s/D)), which makes fresh small tokens nearly inert.
 */
function initialProjection(s: number, D: number): Float32Array {
  const P = new Float32Array(s * D);
  for (let i = 0; i < s; i++) P[i * D + i] = 1;
  return P;
}

// The per-event kernels. With a tier mix, the s × D products below are most of a step's work
// (bench/train.ts, "tier mix"); rows go two or four at a time so each pass over the D-space
// vector serves several rows (fewer loads and stores of out / dv per multiply-add).

/** out[at..at+D) = e[off..off+s) · P, P row-major s × D. */
function project(
  e: Float32Array,
  off: number,
  s: number,
  P: Float32Array,
  D: number,
  out: Float64Array,
  at: number,
): void {
  let i: number;
  if ((s & 1) === 1) {
    const a = e[off];
    for (let d = 0; d < D; d++) out[at + d] = a * P[d];
    i = 1;
  } else {
    const a = e[off];
    const b = e[off + 1];
    for (let d = 0; d < D; d++) out[at + d] = a * P[d] + b * P[D + d];
    i = 2;
  }
  for (; i + 4 <= s; i += 4) {
    const a = e[off + i];
    const b = e[off + i + 1];
    const c = e[off + i + 2];
    const f = e[off + i + 3];
    const r0 = i * D;
    const r1 = r0 + D;
    const r2 = r1 + D;
    const r3 = r2 + D;
    for (let d = 0; d < D; d++) out[at + d] += a * P[r0 + d] + b * P[r1 + d] + c * P[r2 + d] + f * P[r3 + d];
  }
  if (i < s) {
    // s − i is even here (the first step took the odd row): two rows remain.
    const a = e[off + i];
    const b = e[off + i + 1];
    const r0 = i * D;
    const r1 = r0 + D;
    for (let d = 0; d < D; d++) out[at + d] += a * P[r0 + d] + b * P[r1 + d];
  }
}

/**
 * The two products of a projected token's backward pass in one sweep over P: grad = P · dv (the
 * row's gradient, s entries) and dP += e ⊗ dv (the projection's gradient). Rows in pairs.
 */
function backProject(
  e: Float32Array,
  off: number,
  s: number,
  P: Float32Array,
  dP: Float64Array,
  D: number,
  dv: Float64Array,
  grad: Float64Array,
): void {
  let i = 0;
  for (; i + 4 <= s; i += 4) {
    const x0 = e[off + i];
    const x1 = e[off + i + 1];
    const x2 = e[off + i + 2];
    const x3 = e[off + i + 3];
    const r0 = i * D;
    const r1 = r0 + D;
    const r2 = r1 + D;
    const r3 = r2 + D;
    let g0 = 0;
    let g1 = 0;
    let g2 = 0;
    let g3 = 0;
    for (let d = 0; d < D; d++) {
      const q = dv[d];
      g0 += P[r0 + d] * q;
      g1 += P[r1 + d] * q;
      g2 += P[r2 + d] * q;
      g3 += P[r3 + d] * q;
      dP[r0 + d] += x0 * q;
      dP[r1 + d] += x1 * q;
      dP[r2 + d] += x2 * q;
      dP[r3 + d] += x3 * q;
    }
    grad[i] = g0;
    grad[i + 1] = g1;
    grad[i + 2] = g2;
    grad[i + 3] = g3;
  }
  for (; i + 2 <= s; i += 2) {
    const x0 = e[off + i];
    const x1 = e[off + i + 1];
    const r0 = i * D;
    const r1 = r0 + D;
    let g0 = 0;
    let g1 = 0;
    for (let d = 0; d < D; d++) {
      const q = dv[d];
      g0 += P[r0 + d] * q;
      g1 += P[r1 + d] * q;
      dP[r0 + d] += x0 * q;
      dP[r1 + d] += x1 * q;
    }
    grad[i] = g0;
    grad[i + 1] = g1;
  }
  if (i < s) {
    const x0 = e[off + i];
    const r0 = i * D;
    let g0 = 0;
    for (let d = 0; d < D; d++) {
      const q = dv[d];
      g0 += P[r0 + d] * q;
      dP[r0 + d] += x0 * q;
    }
    grad[i] = g0;
  }
}

/** Adagrad on a full-size row whose gradient is g (S − v) + l2 e. */
function adagradRow(
  e: Float32Array,
  opt: Float32Array,
  off: number,
  D: number,
  S: Float64Array,
  V: Float64Array,
  base: number,
  g: number,
  lr: number,
  l2: number,
  eps: number,
): void {
  for (let d = 0; d < D; d++) {
    const x = e[off + d];
    const gr = g * (S[d] - V[base + d]) + l2 * x;
    const acc = opt[off + d] + gr * gr;
    opt[off + d] = acc;
    e[off + d] = x - (lr * gr) / (Math.sqrt(acc) + eps);
  }
}

/** adagradRow that also adds |e_d · dL/de_d| to the row's importance (a searched token). */
function adagradRowImportance(
  e: Float32Array,
  opt: Float32Array,
  imp: Float32Array,
  off: number,
  D: number,
  S: Float64Array,
  V: Float64Array,
  base: number,
  g: number,
  lr: number,
  l2: number,
  eps: number,
): void {
  for (let d = 0; d < D; d++) {
    const x = e[off + d];
    const gl = g * (S[d] - V[base + d]);
    imp[off + d] += Math.abs(x * gl);
    const gr = gl + l2 * x;
    const acc = opt[off + d] + gr * gr;
    opt[off + d] = acc;
    e[off + d] = x - (lr * gr) / (Math.sqrt(acc) + eps);
  }
}

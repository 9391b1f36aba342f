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
import type { TokenId } from '../store/index.js';

export type { TokenId };

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
  /** 'auto' (default): the projected tokens' s × D products run in WebAssembly SIMD when the
   *  runtime has it and D is a multiple of 4 (forward in doubles, f64x2; backward in floats,
   *  f32x4), else in JavaScript; 'js': always JavaScript, all in doubles. The wasm kernels make a
   *  tier-mix step about 1.5x faster (bench/train.ts, "tier mix"); P_s and its gradient then live
   *  in the model's wasm memory (whole 64 KiB pages: one for D = 64 and the default ladder). */
  kernels: 'auto' | 'js';
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
  positive('projectionLearningRate', o.projectionLearningRate);
  nonNegative('l2', o.l2);
  nonNegative('l2Projection', o.l2Projection);
  positive('epsilon', o.epsilon);
  nonNegative('initialAccumulator', o.initialAccumulator);
  if (o.optimizer !== 'adagrad' && o.optimizer !== 'sgd')
    throw new PmeError('PME_ERR_CONFIG_INVALID', `optimizer must be "adagrad" or "sgd", got ${o.optimizer}`);
  if (o.kernels !== 'auto' && o.kernels !== 'js')
    throw new PmeError('PME_ERR_CONFIG_INVALID', `kernels must be "auto" or "js", got ${o.kernels}`);
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
  readonly #projectionGrads: (Float32Array | Float64Array | null)[];
  /** Per tier: whether #projectionGrads holds anything (avoids sweeping untouched tiers). */
  readonly #projectionTouched: Uint8Array;
  /** Index of the tier of size D (the searched tier), -1 if the ladder has none. */
  readonly topTier: number;
  /** Where the projected tokens' products run: 'wasm-simd' or 'js' (see FmOptions.kernels). */
  readonly kernels: 'wasm-simd' | 'js';
  /** The wasm kernels and their memory, null when the products run in JavaScript. */
  readonly #simd: SimdKernels | null;
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
    const simd = this.options.kernels === 'auto' ? createSimdKernels(store.tiers, D) : null;
    this.#simd = simd;
    this.kernels = simd === null ? 'js' : 'wasm-simd';
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
      if (simd === null) {
        this.projections.push(initialProjection(new Float32Array(s * D), s, D));
        this.#projectionGrads.push(new Float64Array(s * D));
      } else {
        const f = simd.f32;
        this.projections.push(
          initialProjection(f.subarray(simd.pAt[i] >> 2, (simd.pAt[i] >> 2) + s * D), s, D),
        );
        this.#projectionGrads.push(f.subarray(simd.dpAt[i] >> 2, (simd.dpAt[i] >> 2) + s * D));
      }
      this.projectionAccumulators.push(new Float32Array(s * D).fill(this.options.initialAccumulator));
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
    const simd = this.#simd;
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
        selfSq += gatherRow(tier.params, off, D, V, base, S);
      } else if (simd !== null) {
        const f = simd.f64;
        const e = tier.params;
        const eAt = simd.eAt >> 3;
        for (let i = 0; i < s; i++) f[eAt + i] = e[off + i];
        simd.project(simd.eAt, s, simd.pAt[ti], D, simd.outAt);
        selfSq += gatherRow(f, simd.outAt >> 3, D, V, base, S);
      } else {
        project(tier.params, off, s, projections[ti]!, D, V, base);
        selfSq += gatherRow(V, base, D, V, base, S);
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
    z += 0.5 * (sq0 + sq1 - selfSq);
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
    const simd = this.#simd;

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
        this.#projectionTouched[ti] = 1;
        let grad: Float32Array | Float64Array = rowGrad;
        let gradAt = 0;
        if (simd !== null) {
          const f = simd.f32;
          const dvAt = simd.dvAt >> 2;
          const eAt = simd.eAt >> 3;
          for (let d = 0; d < D; d++) f[dvAt + d] = g * (S[d] - V[base + d]);
          for (let i = 0; i < s; i++) simd.f64[eAt + i] = e[off + i];
          simd.backProject(simd.eAt, s, simd.pAt[ti], simd.dpAt[ti], D, simd.dvAt, simd.gradAt);
          grad = f;
          gradAt = simd.gradAt >> 2;
        } else {
          for (let d = 0; d < D; d++) dv[d] = g * (S[d] - V[base + d]);
          backProject(
            e,
            off,
            s,
            this.projections[ti]!,
            this.#projectionGrads[ti] as Float64Array,
            D,
            dv,
            rowGrad,
          );
        }
        if (adagrad)
          for (let i = 0; i < s; i++) {
            const x = e[off + i];
            const gr = grad[gradAt + i] + l2 * x;
            const acc = opt[off + i] + gr * gr;
            opt[off + i] = acc;
            e[off + i] = x - (lr * gr) / (Math.sqrt(acc) + eps);
          }
        else for (let i = 0; i < s; i++) e[off + i] -= lr * (grad[gradAt + i] + l2 * e[off + i]);
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
    let any = false;
    for (let ti = 0; ti < this.#projectionTouched.length; ti++) {
      if (this.#projectionTouched[ti] === 0) continue;
      this.#projectionTouched[ti] = 0;
      any = true;
      stepProjection(this.projections[ti]!, this.projectionAccumulators[ti]!, this.#projectionGrads[ti]!, o);
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
function initialProjection(P: Float32Array, s: number, D: number): Float32Array {
  P.fill(0);
  for (let i = 0; i < s; i++) P[i * D + i] = 1;
  return P;
}

// The per-event kernels. With a tier mix, the s × D products below are most of a step's work
// (bench/train.ts, "tier mix"); rows go two or four at a time so each pass over the D-space
// vector serves several rows (fewer loads and stores of out / dv per multiply-add).

/**
 * V[base..base+D) = x[at..at+D), S += it; returns its squared norm. Two accumulators: one would
 * chain every add on the last (a 4-cycle latency per dim on this hot path).
 */
function gatherRow(
  x: Float32Array | Float64Array,
  at: number,
  D: number,
  V: Float64Array,
  base: number,
  S: Float64Array,
): number {
  let a = 0;
  let b = 0;
  let d = 0;
  for (; d + 1 < D; d += 2) {
    const u = x[at + d];
    const w = x[at + d + 1];
    V[base + d] = u;
    V[base + d + 1] = w;
    S[d] += u;
    S[d + 1] += w;
    a += u * u;
    b += w * w;
  }
  if (d < D) {
    const u = x[at + d];
    V[base + d] = u;
    S[d] += u;
    a += u * u;
  }
  return a + b;
}

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

// ---------------------------------------------------------------------------------------------
// WebAssembly SIMD kernels. The same two products as `project` and `backProject`, several dims per
// instruction. The module is built here from its opcodes (no toolchain, no binary blob): two
// functions over a memory the model allocates, holding every tier's P_s and dP_s and the
// per-token scratch (row e, output v, dv, row gradient). JS copies a row in (s values) and reads
// s or D back: small next to the s × D products. The forward product runs in double precision
// (f64x2), like the JS one, so scores agree with the read paths' double-precision sums (the
// read-path tests hold them to 1e-9); the backward products, gradients only, run in f32x4.

/** The WebAssembly API used here (lib ES2022 declares none). */
interface WasmApi {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: object) => { exports: Record<string, unknown> };
  Memory: new (descriptor: { initial: number }) => { buffer: ArrayBuffer };
}

interface SimdKernels {
  /** The whole wasm memory as floats and as doubles (it never grows, so the views stay valid). */
  readonly f32: Float32Array;
  readonly f64: Float64Array;
  /** out[d] = Σ_i e[i] P[i·D + d] in doubles (e, out: f64; P: f32); byte addresses. */
  readonly project: (e: number, s: number, P: number, D: number, out: number) => void;
  /** grad[i] = Σ_d P[i·D + d] dv[d] and dP[i·D + d] += e[i] dv[d] in floats (e: f64, read as
   *  f32); byte addresses. */
  readonly backProject: (
    e: number,
    s: number,
    P: number,
    dP: number,
    D: number,
    dv: number,
    grad: number,
  ) => void;
  /** Byte address of P_s and dP_s per tier index (-1 for tiers without a projection). */
  readonly pAt: Int32Array;
  readonly dpAt: Int32Array;
  readonly eAt: number;
  readonly outAt: number;
  readonly dvAt: number;
  readonly gradAt: number;
}

/** The compiled module: undefined until first asked, null when the runtime cannot run it. */
let simdModule: object | null | undefined;

/** Kernels over a fresh memory laid out for these tiers, or null (no SIMD, or D % 4 ≠ 0). */
function createSimdKernels(tiers: readonly ModelTier[], D: number): SimdKernels | null {
  const api = (globalThis as unknown as { WebAssembly?: WasmApi }).WebAssembly;
  if (api === undefined || D % 4 !== 0) return null;
  if (simdModule === undefined) {
    try {
      simdModule = new api.Module(simdModuleBytes());
    } catch {
      simdModule = null;
    }
  }
  if (simdModule === null) return null;
  // Every block is a multiple of D floats, so 16-byte aligned for v128 loads.
  const pAt = new Int32Array(tiers.length).fill(-1);
  const dpAt = new Int32Array(tiers.length).fill(-1);
  let at = 0;
  for (let ti = 0; ti < tiers.length; ti++) {
    const s = tiers[ti].size;
    if (s === 0 || s === D) continue;
    pAt[ti] = at;
    at += s * D * 4;
    dpAt[ti] = at;
    at += s * D * 4;
  }
  const eAt = at;
  const outAt = eAt + D * 8;
  const dvAt = outAt + D * 8;
  const gradAt = dvAt + D * 4;
  const bytes = gradAt + D * 4;
  const memory = new api.Memory({ initial: Math.ceil(bytes / 65536) });
  const { exports } = new api.Instance(simdModule, { m: { mem: memory } });
  return {
    f32: new Float32Array(memory.buffer),
    f64: new Float64Array(memory.buffer),
    project: exports.project as SimdKernels['project'],
    backProject: exports.backProject as SimdKernels['backProject'],
    pAt,
    dpAt,
    eAt,
    outAt,
    dvAt,
    gradAt,
  };
}

function uleb(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n !== 0) b |= 0x80;
    out.push(b);
  } while (n !== 0);
  return out;
}

/** The kernels' module, in the WebAssembly binary format (core spec + fixed-width SIMD). */
function simdModuleBytes(): Uint8Array {
  const I32 = 0x7f;
  const V128 = 0x7b;
  const get = (i: number) => [0x20, i];
  const set = (i: number) => [0x21, i];
  const tee = (i: number) => [0x22, i];
  const i32 = (n: number) => [0x41, n]; // 0 ≤ n < 64: one signed-LEB byte
  const add = 0x6a;
  const shl = 0x74;
  const geU = 0x4f;
  const block = [0x02, 0x40];
  const loop = [0x03, 0x40];
  const brIf = (depth: number) => [0x0d, depth];
  const br = (depth: number) => [0x0c, depth];
  const end = 0x0b;
  const f64Load = [0x2b, 3, 0];
  const load64Zero = (offset: number) => [0xfd, 0x5d, 3, offset];
  const promote = [0xfd, 0x5f];
  const v128StoreAt = (offset: number) => [0xfd, 0x0b, 4, offset];
  const dSplat = [0xfd, 0x14];
  const dAdd = [0xfd, 0xf0, 0x01];
  const dMul = [0xfd, 0xf2, 0x01];
  const f32Store = [0x38, 2, 0];
  const f32Add = 0x92;
  const v128Load = [0xfd, 0x00, 4, 0];
  const v128Store = [0xfd, 0x0b, 4, 0];
  const v128Zero = [0xfd, 0x0c, ...new Array<number>(16).fill(0)];
  const splat = [0xfd, 0x13];
  const fAdd = [0xfd, 0xe4, 0x01];
  const fMul = [0xfd, 0xe6, 0x01];
  const lane = (l: number) => [0xfd, 0x1f, l];
  // project(e 0, s 1, P 2, D 3, out 4); locals d 5, i 6, p 7, bytes 8 (i32), a 9, b 10, x 11 (v128).
  // for d in 0..D step 4 (d counts P's bytes): a, b = Σ_i e[i] · P[i, d..d+2), P[i, d+2..d+4),
  // with P's floats promoted to doubles; out[d..d+4) = a, b.
  const project = [
    ...[...get(3), ...i32(2), shl, ...set(8)],
    ...block,
    ...loop,
    ...[...get(5), ...get(8), geU, ...brIf(1)],
    ...[
      ...v128Zero,
      ...set(9),
      ...v128Zero,
      ...set(10),
      ...i32(0),
      ...set(6),
      ...get(2),
      ...get(5),
      add,
      ...set(7),
    ],
    ...block,
    ...loop,
    ...[...get(6), ...get(1), geU, ...brIf(1)],
    ...[...get(0), ...get(6), ...i32(3), shl, add, ...f64Load, ...dSplat, ...set(11)],
    ...[...get(9), ...get(7), ...load64Zero(0), ...promote, ...get(11), ...dMul, ...dAdd, ...set(9)],
    ...[...get(10), ...get(7), ...load64Zero(8), ...promote, ...get(11), ...dMul, ...dAdd, ...set(10)],
    ...[...get(7), ...get(8), add, ...set(7), ...get(6), ...i32(1), add, ...set(6), ...br(0)],
    end,
    end,
    ...[...get(4), ...get(5), ...i32(1), shl, add, ...tee(6), ...get(9), ...v128Store],
    ...[...get(6), ...get(10), ...v128StoreAt(16)],
    ...[...get(5), ...i32(16), add, ...set(5), ...br(0)],
    end,
    end,
    end,
  ];
  // backProject(e 0, s 1, P 2, dP 3, D 4, dv 5, grad 6); locals i 7, d 8, bytes 9, row 10 (i32),
  // x 11, g 12, q 13 (v128), at 14 (i32). Per row i: x = e[i] as a float (f32.demote_f64, 0xb6),
  // g = Σ P[i, ·] dv (lanes summed at the end), dP[i, ·] += x dv, one pass over the row.
  const backProject = [
    ...[...get(4), ...i32(2), shl, ...set(9)],
    ...block,
    ...loop,
    ...[...get(7), ...get(1), geU, ...brIf(1)],
    ...[...get(0), ...get(7), ...i32(3), shl, add, ...f64Load, 0xb6, ...splat, ...set(11)],
    ...[...v128Zero, ...set(12), ...i32(0), ...set(8)],
    ...block,
    ...loop,
    ...[...get(8), ...get(9), geU, ...brIf(1)],
    ...[...get(5), ...get(8), add, ...v128Load, ...set(13)],
    ...[
      ...get(12),
      ...get(2),
      ...get(10),
      add,
      ...get(8),
      add,
      ...v128Load,
      ...get(13),
      ...fMul,
      ...fAdd,
      ...set(12),
    ],
    ...[...get(3), ...get(10), add, ...get(8), add, ...tee(14)],
    ...[...get(14), ...v128Load, ...get(11), ...get(13), ...fMul, ...fAdd, ...v128Store],
    ...[...get(8), ...i32(16), add, ...set(8), ...br(0)],
    end,
    end,
    ...[...get(6), ...get(7), ...i32(2), shl, add],
    ...[...get(12), ...lane(0), ...get(12), ...lane(1), f32Add, ...get(12), ...lane(2), f32Add],
    ...[...get(12), ...lane(3), f32Add, ...f32Store],
    ...[...get(10), ...get(9), add, ...set(10), ...get(7), ...i32(1), add, ...set(7), ...br(0)],
    end,
    end,
    end,
  ];
  const vec = (items: number[][]) => [...uleb(items.length), ...items.flat()];
  const section = (id: number, body: number[]) => [id, ...uleb(body.length), ...body];
  const name = (s: string) => [...uleb(s.length), ...Array.from(s, (c) => c.charCodeAt(0))];
  const body = (locals: number[][], code: number[]) => {
    const b = [...vec(locals), ...code];
    return [...uleb(b.length), ...b];
  };
  return Uint8Array.from([
    ...[0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00],
    ...section(
      1,
      vec([
        [0x60, ...vec(Array(5).fill([I32])), 0],
        [0x60, ...vec(Array(7).fill([I32])), 0],
      ]),
    ),
    ...section(2, vec([[...name('m'), ...name('mem'), 0x02, 0x00, 0x01]])),
    ...section(3, vec([[0], [1]])),
    ...section(
      7,
      vec([
        [...name('project'), 0x00, 0],
        [...name('backProject'), 0x00, 1],
      ]),
    ),
    ...section(
      10,
      vec([
        body(
          [
            [4, I32],
            [3, V128],
          ],
          project,
        ),
        body(
          [
            [4, I32],
            [3, V128],
            [1, I32],
          ],
          backProject,
        ),
      ]),
    ),
  ]);
}

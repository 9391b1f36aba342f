/**
 * The FM's per-event kernels in JavaScript, over the store's typed arrays: gathering a full-size
 * row, the s × D products through a tier's projection (forward and backward), and the row updates
 * of each optimizer. fm.ts picks among them once, at construction (fm-wasm.ts has the same products
 * in WebAssembly SIMD). The products run per token, or once per tier on the sum of an event's
 * rows of the tier (fm.ts' #shares, fm-gram.ts); rows of P go two or four at a time so each pass
 * over the D-space vector serves several rows (fewer loads and stores of out / dv per multiply-add).
 */

/**
 * The s × D products through the projections P_s, and the projections themselves (the wasm
 * kernels keep them in their own memory). A projector holds its model's per-event scratch: V,
 * D-space vectors (one per token or per tier, at `base`), and S, the event's sum of them all (in
 * the wasm memory for the wasm kernels). `e` is what goes through P_s: a row of the store
 * (floats), or the sum of the event's rows of tier ti (doubles; fm.ts' shared tiers).
 */
export interface Projector {
  readonly kind: 'js' | 'wasm-simd';
  /** P_s per tier index, row-major s × D; null for size 0 and size D (identity). */
  readonly projections: (Float32Array | null)[];
  /** Gradients of the projections accumulated over the current mini-batch, same layout. */
  readonly projectionGrads: (Float32Array | Float64Array | null)[];
  /** The model's per-event scratch V (maxTokens × D) and S (D), here so that the wasm kernels
   *  read and write them in their own memory. */
  readonly V: Float64Array;
  readonly S: Float64Array;
  /** Where `backward` leaves its gradient w.r.t. e: grad[gradAt .. gradAt + s). */
  readonly grad: Float32Array | Float64Array;
  readonly gradAt: number;
  /** v = e[off .. off + s) · P_ti into V[base .. base + D), S += v; returns |v|². */
  forward(e: Float32Array | Float64Array, off: number, s: number, ti: number, base: number): number;
  /** With dv = g (S − V[base ..)): P_ti · dv into `grad`, and dP_ti += e ⊗ dv. */
  backward(e: Float32Array | Float64Array, off: number, s: number, ti: number, g: number, base: number): void;
  /** fm-gram.ts' G_s and M_s per tier index, s × s with row stride gramStride(s); null without
   *  a projection. */
  readonly grams: (Float64Array | null)[];
  readonly crosses: (Float64Array | null)[];
  /** u[at .. at + s) = x[at .. at + s) G_ti; returns x · u (the squared norm of x P_ti). */
  selfTerm(x: Float64Array, at: number, s: number, ti: number, u: Float64Array): number;
  /** M_ti += w x yᵀ, x = x[xAt .. xAt + s), y = y[yAt .. yAt + s). */
  addOuter(
    x: Float64Array,
    xAt: number,
    y: Float64Array,
    yAt: number,
    s: number,
    ti: number,
    w: number,
  ): void;
}

/** Row stride of an s × s Gram matrix: s rounded up to even (whole f64x2 lanes in wasm). */
export function gramStride(s: number): number {
  return s + (s & 1);
}

/**
 * P_s starts as the first s rows of the identity: a new size-s token lives in the first s dims of
 * the D-space. The tiers are then nested (the dims of tier 2 are inside those of tier 4, ...),
 * so small tokens of different tiers interact at full strength from their first step, and a
 * token's vector has the same scale whatever its size. Random projections would couple two
 * tiers only through chance overlaps (~√(s/D)), which makes fresh small tokens nearly inert.
 */
export function initialProjection(P: Float32Array, s: number, D: number): Float32Array {
  P.fill(0);
  for (let i = 0; i < s; i++) P[i * D + i] = 1;
  return P;
}

/** The products in JavaScript, all in doubles. */
export class JsProjector implements Projector {
  readonly kind = 'js';
  readonly projections: (Float32Array | null)[];
  readonly projectionGrads: (Float64Array | null)[];
  readonly grams: (Float64Array | null)[];
  readonly crosses: (Float64Array | null)[];
  readonly grad: Float64Array;
  readonly gradAt = 0;
  readonly V: Float64Array;
  readonly S: Float64Array;
  readonly #D: number;
  readonly #dv: Float64Array;

  constructor(sizes: readonly number[], D: number, maxTokens: number) {
    this.#D = D;
    this.V = new Float64Array(maxTokens * D);
    this.S = new Float64Array(D);
    const projected = (s: number) => s > 0 && s < D;
    this.projections = sizes.map((s) =>
      projected(s) ? initialProjection(new Float32Array(s * D), s, D) : null,
    );
    this.projectionGrads = sizes.map((s) => (projected(s) ? new Float64Array(s * D) : null));
    const square = (s: number) => (projected(s) ? new Float64Array(gramStride(s) ** 2) : null);
    this.grams = sizes.map(square);
    this.crosses = sizes.map(square);
    this.grad = new Float64Array(D);
    this.#dv = new Float64Array(D);
  }

  forward(e: Float32Array | Float64Array, off: number, s: number, ti: number, base: number): number {
    const D = this.#D;
    const V = this.V;
    project(e, off, s, this.projections[ti]!, D, V, base);
    return gatherRow(V, base, D, V, base, this.S);
  }

  backward(
    e: Float32Array | Float64Array,
    off: number,
    s: number,
    ti: number,
    g: number,
    base: number,
  ): void {
    const D = this.#D;
    const V = this.V;
    const S = this.S;
    const dv = this.#dv;
    for (let d = 0; d < D; d++) dv[d] = g * (S[d] - V[base + d]);
    backProject(e, off, s, this.projections[ti]!, this.projectionGrads[ti]!, D, dv, this.grad);
  }

  selfTerm(x: Float64Array, at: number, s: number, ti: number, u: Float64Array): number {
    const G = this.grams[ti]!;
    const sp = gramStride(s);
    let norm = 0;
    // G is symmetric: u_j = G_j · x, a dot product per j (sums in registers, no stores).
    for (let j = 0; j < s; j++) {
      const row = j * sp;
      let a = 0;
      let b = 0;
      let i = 0;
      for (; i + 1 < s; i += 2) {
        a += G[row + i] * x[at + i];
        b += G[row + i + 1] * x[at + i + 1];
      }
      if (i < s) a += G[row + i] * x[at + i];
      const uj = a + b;
      u[at + j] = uj;
      norm += uj * x[at + j];
    }
    return norm;
  }

  addOuter(
    x: Float64Array,
    xAt: number,
    y: Float64Array,
    yAt: number,
    s: number,
    ti: number,
    w: number,
  ): void {
    const M = this.crosses[ti]!;
    const sp = gramStride(s);
    for (let i = 0; i < s; i++) {
      const wx = w * x[xAt + i];
      const row = i * sp;
      for (let j = 0; j < s; j++) M[row + j] += wx * y[yAt + j];
    }
  }
}

/**
 * V[base..base+D) = x[at..at+D), S += it; returns its squared norm. Two accumulators: one would
 * chain every add on the last (a 4-cycle latency per dim on this hot path).
 */
export function gatherRow(
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
  e: Float32Array | Float64Array,
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
 * The two products of a projected tier's backward pass in one sweep over P: grad = P · dv (the
 * row's gradient, s entries) and dP += e ⊗ dv (the projection's gradient). Rows in pairs.
 */
function backProject(
  e: Float32Array | Float64Array,
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

// The optimizers' updates, one function per (optimizer, row kind): a model picks its set once
// (the linear weights' are in linear-step.ts).

/**
 * Step of a full-size row e[off .. off + D) whose loss gradient is g (S − v) (+ L2 on e), read
 * straight from the forward's sums; `imp`, when given, gains |e_d · dL/de_d| (a searched token).
 */
export type FullRowStep = (
  e: Float32Array,
  opt: Float32Array,
  imp: Float32Array | null,
  off: number,
  D: number,
  S: Float64Array,
  V: Float64Array,
  base: number,
  g: number,
  lr: number,
  l2: number,
  eps: number,
) => void;

export const adagradFullRow: FullRowStep = (e, opt, _imp, off, D, S, V, base, g, lr, l2, eps) => {
  for (let d = 0; d < D; d++) {
    const x = e[off + d];
    const gr = g * (S[d] - V[base + d]) + l2 * x;
    const acc = opt[off + d] + gr * gr;
    opt[off + d] = acc;
    e[off + d] = x - (lr * gr) / (Math.sqrt(acc) + eps);
  }
};

export const adagradFullRowImportance: FullRowStep = (e, opt, imp, off, D, S, V, base, g, lr, l2, eps) => {
  const importance = imp!;
  for (let d = 0; d < D; d++) {
    const x = e[off + d];
    const gl = g * (S[d] - V[base + d]);
    importance[off + d] += Math.abs(x * gl);
    const gr = gl + l2 * x;
    const acc = opt[off + d] + gr * gr;
    opt[off + d] = acc;
    e[off + d] = x - (lr * gr) / (Math.sqrt(acc) + eps);
  }
};

export const sgdFullRow: FullRowStep = (e, _opt, imp, off, D, S, V, base, g, lr, l2) => {
  for (let d = 0; d < D; d++) {
    const x = e[off + d];
    const gl = g * (S[d] - V[base + d]);
    if (imp !== null) imp[off + d] += Math.abs(x * gl);
    e[off + d] = x - lr * (gl + l2 * x);
  }
};

/**
 * Step of a D-space row e[off .. off + len) (full size, or a nested row's first len dims) under
 * the prefix losses (FmOptions.prefixLossWeight): dim d's loss gradient is m (S_d − v_d), where
 * the block of dims [ends[b − 1], ends[b]) holding d has multiplier m = M[b], the full score's g
 * plus the weighted g of every prefix holding that block (ends: the prefix sizes, then D).
 * `imp`, when given, gains |e_d · g (S_d − v_d)|: the full score's sensitivity, which PME's
 * importances estimate.
 */
export type PrefixRowStep = (
  e: Float32Array,
  opt: Float32Array,
  imp: Float32Array | null,
  off: number,
  len: number,
  S: Float64Array,
  V: Float64Array,
  base: number,
  ends: Int32Array,
  M: Float64Array,
  g: number,
  lr: number,
  l2: number,
  eps: number,
) => void;

export const adagradPrefixRow: PrefixRowStep = (
  e,
  opt,
  imp,
  off,
  len,
  S,
  V,
  base,
  ends,
  M,
  g,
  lr,
  l2,
  eps,
) => {
  let d = 0;
  for (let b = 0; d < len; b++) {
    const end = Math.min(ends[b], len);
    const m = M[b];
    for (; d < end; d++) {
      const x = e[off + d];
      const sv = S[d] - V[base + d];
      if (imp !== null) imp[off + d] += Math.abs(x * g * sv);
      const gr = m * sv + l2 * x;
      const acc = opt[off + d] + gr * gr;
      opt[off + d] = acc;
      e[off + d] = x - (lr * gr) / (Math.sqrt(acc) + eps);
    }
  }
};

export const sgdPrefixRow: PrefixRowStep = (e, _opt, imp, off, len, S, V, base, ends, M, g, lr, l2) => {
  let d = 0;
  for (let b = 0; d < len; b++) {
    const end = Math.min(ends[b], len);
    const m = M[b];
    for (; d < end; d++) {
      const x = e[off + d];
      const sv = S[d] - V[base + d];
      if (imp !== null) imp[off + d] += Math.abs(x * g * sv);
      e[off + d] = x - lr * (m * sv + l2 * x);
    }
  }
};

/** Step of a projected row e[off .. off + s) on its gradient grad[at .. at + s) (+ L2 on e). */
export type RowStep = (
  e: Float32Array,
  opt: Float32Array,
  off: number,
  s: number,
  grad: Float32Array | Float64Array,
  at: number,
  lr: number,
  l2: number,
  eps: number,
) => void;

export const adagradRow: RowStep = (e, opt, off, s, grad, at, lr, l2, eps) => {
  for (let i = 0; i < s; i++) {
    const x = e[off + i];
    const gr = grad[at + i] + l2 * x;
    const acc = opt[off + i] + gr * gr;
    opt[off + i] = acc;
    e[off + i] = x - (lr * gr) / (Math.sqrt(acc) + eps);
  }
};

export const sgdRow: RowStep = (e, _opt, off, s, grad, at, lr, l2) => {
  for (let i = 0; i < s; i++) e[off + i] -= lr * (grad[at + i] + l2 * e[off + i]);
};

/**
 * A transfer that keeps a pruned token's scores rather than its vector. In an FM a token t meets
 * the rest of an event only through v_t · S₋t, where S₋t is the sum of the other tokens' vectors,
 * so replacing v_t by v' moves that event's logit by exactly (v' − v_t) · S₋t. Over the events
 * the window's probe holds, the new row e (v' = e·P_s) that moves them least, each weighted by
 * p(1 − p) (the logloss's curvature there), minimises (e·P − v)ᵀ Q (e·P − v) with
 * Q = Σ p(1 − p) S₋t S₋tᵀ + λI. The ridge λ (a share of Q's mean eigenvalue) leads a token seen in
 * few probe events back towards plain least squares on its vector. Truncation (a nested tier's
 * plain least squares) keeps the first s dims and drops the rest, although the partners' first s
 * dims usually say something about what the dropped ones did: here they carry it.
 */
import type { Model, Rows, TokenId } from '../model/model.js';
import { choleskyInPlace, solveCholesky } from './prune.js';

/** The probe events' partner sums, indexed by the tokens about to move. */
export class PartnerMoments {
  readonly D: number;
  /** Σ of every token's vector per probe row (row-major rows × D), following the moves (moved). */
  readonly #sums: Float64Array;
  /** p(1 − p) per probe row. */
  readonly #weights: Float64Array;
  /** Probe rows each moving token is in. */
  readonly #rowsOf = new Map<TokenId, number[]>();
  /** One partner sum less the token's own vector (moment's scratch). */
  readonly #x: Float64Array;

  /** `rows`: the probe events' tokens (Trainer.lookup); `moving`: the tokens the window may move. */
  constructor(
    model: Pick<Model, 'dim' | 'predictRows' | 'vectorOf'>,
    rows: Rows,
    moving: ReadonlySet<TokenId>,
  ) {
    const D = model.dim;
    this.D = D;
    const n = rows.length;
    this.#sums = new Float64Array(n * D);
    this.#weights = new Float64Array(n);
    this.#x = new Float64Array(D);
    const p = new Float64Array(n);
    model.predictRows(rows, 0, n, p);
    const v = new Float64Array(D);
    for (let r = 0; r < n; r++) {
      this.#weights[r] = p[r] * (1 - p[r]);
      const at = r * rows.stride;
      for (let k = 0; k < rows.counts[r]; k++) {
        const id = rows.ids[at + k];
        model.vectorOf(id, v);
        for (let d = 0; d < D; d++) this.#sums[r * D + d] += v[d];
        if (!moving.has(id)) continue;
        const list = this.#rowsOf.get(id);
        if (list === undefined) this.#rowsOf.set(id, [r]);
        else list.push(r);
      }
    }
  }

  /**
   * Token `id` moved from vector `before` to `after` (length D): its probe rows' sums follow, so a
   * token that moves later keeps its scores against what this one became. Against the sums from
   * before any move, two co-occurring tokens both made up for the pair term each of them lost,
   * which counted it twice.
   */
  moved(id: TokenId, before: ArrayLike<number>, after: ArrayLike<number>): void {
    const list = this.#rowsOf.get(id);
    if (list === undefined) return;
    const D = this.D;
    for (const r of list) for (let d = 0; d < D; d++) this.#sums[r * D + d] += after[d] - before[d];
  }

  /**
   * Q = Σ p(1 − p) S₋t S₋tᵀ over the probe rows of token `id` (whose vector is `v`, length D) into
   * `out` (D × D); returns its trace, 0 when the token is in no probe row.
   */
  moment(id: TokenId, v: ArrayLike<number>, out: Float64Array): number {
    const D = this.D;
    out.fill(0);
    const list = this.#rowsOf.get(id);
    if (list === undefined) return 0;
    const x = this.#x;
    let trace = 0;
    for (const r of list) {
      const w = this.#weights[r];
      for (let d = 0; d < D; d++) x[d] = this.#sums[r * D + d] - v[d];
      for (let i = 0; i < D; i++) {
        const wi = w * x[i];
        if (wi === 0) continue;
        for (let j = 0; j <= i; j++) out[i * D + j] += wi * x[j];
        trace += wi * x[i];
      }
    }
    for (let i = 0; i < D; i++) for (let j = 0; j < i; j++) out[j * D + i] = out[i * D + j];
    return trace;
  }
}

/**
 * The s-vector e minimising (e·P − t)ᵀ (Q + λI) (e·P − t), into out[at .. at + s), with
 * λ = ridgeShare × trace(Q) / D; P null means the first s rows of the identity (a nested tier).
 * Returns ||e·P − t||² (the vector's own residual, as the plain transfer reports it).
 */
export function solveKeepingScores(
  target: ArrayLike<number>,
  Q: Float64Array,
  trace: number,
  ridgeShare: number,
  P: Float32Array | null,
  s: number,
  D: number,
  out: Float32Array,
  at = 0,
): number {
  const lambda = (ridgeShare * trace) / D + 1e-12;
  // Qt = (Q + λI) t, and PQ = P (Q + λI) (s × D).
  const PQ = new Float64Array(s * D);
  for (let i = 0; i < s; i++)
    for (let d = 0; d < D; d++) {
      let g = 0;
      if (P === null) g = Q[i * D + d] + (i === d ? lambda : 0);
      else {
        for (let k = 0; k < D; k++) g += P[i * D + k] * Q[k * D + d];
        g += lambda * P[i * D + d];
      }
      PQ[i * D + d] = g;
    }
  const A = new Float64Array(s * s);
  const b = new Float64Array(s);
  for (let i = 0; i < s; i++) {
    let bi = 0;
    for (let d = 0; d < D; d++) bi += PQ[i * D + d] * target[d];
    b[i] = bi;
    for (let j = 0; j <= i; j++) {
      let g = 0;
      if (P === null) g = PQ[i * D + j];
      else for (let d = 0; d < D; d++) g += PQ[i * D + d] * P[j * D + d];
      A[i * s + j] = g;
    }
  }
  choleskyInPlace(A, s);
  solveCholesky(A, s, b);
  let r = 0;
  for (let d = 0; d < D; d++) {
    let v = 0;
    if (P === null) v = d < s ? b[d] : 0;
    else for (let i = 0; i < s; i++) v += b[i] * P[i * D + d];
    r += (v - target[d]) ** 2;
  }
  for (let i = 0; i < s; i++) out[at + i] = b[i];
  return r;
}

/**
 * The s × s terms that let the FM project each tier once per event instead of once per token.
 *
 * P_s is linear, so the tokens of tier s in an event reach the D-space through their sum:
 * Σ v_i = (Σ e_i) P_s, one s × D product per tier (fm.ts runs it with the projector). What is not
 * linear in that sum goes through G_s = P_s P_sᵀ (s × s, rebuilt when P_s changes, so once per
 * mini-batch): ‖v_i‖² = e_i G_s e_iᵀ, and the within-tier part of a row's gradient, (E − e_i) G_s
 * with E = Σ e_i. The projection's gradient has a within-tier part too, C P_s with the event's
 * cross terms C = Σ_{i≠j} e_iᵀ e_j = M + Mᵀ, M = Σ_i e_iᵀ (Σ_{j<i} e_j): M (times the event's g)
 * adds up in M_s over the mini-batch and (M_s + M_sᵀ) P_s joins P_s's gradient once (`settle`),
 * instead of an s × D outer product per token. An s × s term costs s² a token against the s · D
 * of a product through P_s: it pays for small tiers with several tokens in an event (fm.ts'
 * #shares picks). The products are the projector's (fm-kernels.ts, fm-wasm.ts), G_s and M_s in
 * its memory.
 *
 * G_s and M_s stand for the P_s they were made from (a copy, the basis): `prepare` rebuilds G_s
 * when the model's denseVersion moved and P_s differs from its basis, settling M_s on the old
 * basis first. So whoever writes P_s in place bumps denseVersion, as replicas and restores do.
 */
import { gramStride, type Projector } from './fm-kernels.js';

/** G_s, the basis it was made from and whether M_s holds anything, per tier; M_s settled. */
export class TierGrams {
  readonly #sizes: readonly number[];
  readonly #D: number;
  readonly #projector: Projector;
  /** P_s as G_s and M_s know it. */
  readonly #basis: (Float64Array | null)[];
  /** Per tier: whether M_s holds anything. */
  readonly #pending: Uint8Array;
  /** Per tier: the denseVersion G_s was last checked at (NaN: never). */
  readonly #version: Float64Array;

  constructor(sizes: readonly number[], D: number, projector: Projector) {
    this.#sizes = sizes;
    this.#D = D;
    this.#projector = projector;
    this.#basis = projector.projections.map((P) => (P === null ? null : new Float64Array(P.length)));
    this.#pending = new Uint8Array(sizes.length);
    this.#version = new Float64Array(sizes.length).fill(Number.NaN);
  }

  /** Makes G_ti that of P_ti as of `version` (the model's denseVersion), settling M_ti on the
   *  old P_ti first when P_ti changed: rebuilt lazily, for the tiers that share, s² · D / 2. */
  prepare(ti: number, version: number): void {
    if (this.#version[ti] === version) return;
    this.#version[ti] = version;
    const P = this.#projector.projections[ti]!;
    const basis = this.#basis[ti]!;
    let j = 0;
    while (j < P.length && P[j] === basis[j]) j++;
    if (j === P.length) return;
    this.#settleTier(ti);
    basis.set(P);
    const D = this.#D;
    const s = this.#sizes[ti];
    const sp = gramStride(s);
    const G = this.#projector.grams[ti]!;
    for (let a = 0; a < s; a++)
      for (let b = a; b < s; b++) {
        let x = 0;
        for (let d = 0; d < D; d++) x += basis[a * D + d] * basis[b * D + d];
        G[a * sp + b] = x;
        G[b * sp + a] = x;
      }
  }

  /** M_ti += w x yᵀ, x = x[xAt .. xAt + s), y = y[yAt .. yAt + s); M_s + M_sᵀ is what settles. */
  addOuter(
    x: Float64Array,
    xAt: number,
    y: Float64Array,
    yAt: number,
    s: number,
    ti: number,
    w: number,
  ): void {
    this.#pending[ti] = 1;
    this.#projector.addOuter(x, xAt, y, yAt, s, ti, w);
  }

  /** Every pending (M_s + M_sᵀ) P_s into P_s's gradient, M_s cleared: before P_s steps. */
  settle(): void {
    for (let ti = 0; ti < this.#sizes.length; ti++) this.#settleTier(ti);
  }

  #settleTier(ti: number): void {
    if (this.#pending[ti] === 0) return;
    this.#pending[ti] = 0;
    const D = this.#D;
    const s = this.#sizes[ti];
    const sp = gramStride(s);
    const M = this.#projector.crosses[ti]!;
    const basis = this.#basis[ti]!;
    const dP = this.#projector.projectionGrads[ti]!;
    for (let i = 0; i < s; i++) {
      const out = i * D;
      for (let j = 0; j < s; j++) {
        const m = M[i * sp + j] + M[j * sp + i];
        const row = j * D;
        for (let d = 0; d < D; d++) dP[out + d] += m * basis[row + d];
      }
    }
    M.fill(0);
  }
}

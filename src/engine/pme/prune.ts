/**
 * The two pure steps of a PME window: choosing every searched token's size from its importances
 * under a byte budget (one global threshold), and carrying a pruned vector into a smaller tier
 * (least squares through the tier's projection).
 */

export interface SizeChoice {
  /** Importance threshold: a dimension is kept when its importance is >= it (Infinity: none). */
  threshold: number;
  /** Dimensions kept per token. */
  kept: Int32Array;
  /** Ladder size per token: the smallest size >= kept. */
  sizes: Int32Array;
  /** Bytes of the chosen sizes, Σ bytesOf(size). */
  bytes: number;
}

/** Smallest ladder size >= k (ladder ascending); the largest size when none is. */
export function roundUpToLadder(k: number, ladder: readonly number[]): number {
  for (const s of ladder) if (s >= k) return s;
  return ladder[ladder.length - 1];
}

/**
 * One global threshold over the importances of all n searched tokens (row-major n × D), the
 * lowest (so the most dimensions kept) whose sizes fit `available` bytes, where a token of size s
 * costs bytesOf(s). Dimensions of importance 0 are never kept. If even all-zero sizes do not fit,
 * the result is all-zero sizes with their bytes, and the caller decides what to evict.
 *
 * Cost: a sort of the n·D importances and O(n log D) per probe of the binary search.
 */
export function chooseSizes(
  importance: Float32Array,
  n: number,
  D: number,
  ladder: readonly number[],
  bytesOf: (size: number) => number,
  available: number,
): SizeChoice {
  // Per token, its importances in descending order: kept(τ) is then a binary search.
  const sorted = new Float32Array(n * D);
  for (let t = 0; t < n; t++) {
    const row = sorted.subarray(t * D, (t + 1) * D);
    row.set(importance.subarray(t * D, (t + 1) * D));
    row.sort();
    row.reverse();
  }
  const all = Float32Array.from(importance.subarray(0, n * D))
    .sort()
    .reverse();
  const kept = new Int32Array(n);
  const sizes = new Int32Array(n);
  const evaluate = (threshold: number, write: boolean): number => {
    let bytes = 0;
    for (let t = 0; t < n; t++) {
      let lo = 0;
      let hi = D;
      const base = t * D;
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if (sorted[base + mid] >= threshold) lo = mid + 1;
        else hi = mid;
      }
      const size = lo === 0 ? roundUpToLadder(0, ladder) : roundUpToLadder(lo, ladder);
      bytes += bytesOf(size);
      if (write) {
        kept[t] = lo;
        sizes[t] = size;
      }
    }
    return bytes;
  };
  // Candidates: all[m] for m in [0, positives); keeping more as m grows. Find the largest m that fits.
  let positives = 0;
  while (positives < all.length && all[positives] > 0) positives++;
  let lo = -1; // index known to fit (-1: threshold Infinity)
  let hi = positives; // first index known not to fit
  while (hi - lo > 1) {
    const mid = (lo + hi) >>> 1;
    if (evaluate(all[mid], false) <= available) lo = mid;
    else hi = mid;
  }
  const threshold = lo < 0 ? Number.POSITIVE_INFINITY : all[lo];
  const bytes = evaluate(threshold, true);
  return { threshold, kept, sizes, bytes };
}

/**
 * Least squares through one tier's projection P (s × D, row-major): for a D-space target v,
 * the s-vector e minimising ||e·P − v||², from the s × s normal equations (P Pᵀ) e = P v,
 * factored once per window by Cholesky (s ≤ 64, so O(s³) once and O(s·D) per token).
 * A tiny ridge keeps the factorisation defined if P lost rank.
 */
export class TierLeastSquares {
  readonly s: number;
  readonly D: number;
  readonly #P: Float32Array | null;
  readonly #L: Float64Array;
  readonly #rhs: Float64Array;

  /** P null means the identity (s = D). */
  constructor(P: Float32Array | null, s: number, D: number) {
    this.s = s;
    this.D = D;
    this.#P = P;
    this.#L = new Float64Array(s * s);
    this.#rhs = new Float64Array(s);
    if (P === null || s === 0) return;
    const L = this.#L;
    let trace = 0;
    for (let i = 0; i < s; i++) for (let d = 0; d < D; d++) trace += P[i * D + d] ** 2;
    const ridge = 1e-9 * (trace / s) + 1e-12;
    for (let i = 0; i < s; i++) {
      for (let j = 0; j <= i; j++) {
        let g = i === j ? ridge : 0;
        for (let d = 0; d < D; d++) g += P[i * D + d] * P[j * D + d];
        for (let k = 0; k < j; k++) g -= L[i * s + k] * L[j * s + k];
        L[i * s + j] = i === j ? Math.sqrt(Math.max(g, 1e-300)) : g / L[j * s + j];
      }
    }
  }

  /** Writes the best s-vector for target (length D) into out[at..at+s); returns ||e·P − v||². */
  solve(target: ArrayLike<number>, out: Float32Array, at = 0): number {
    const { s, D } = this;
    const P = this.#P;
    if (s === 0) {
      let r = 0;
      for (let d = 0; d < D; d++) r += target[d] * target[d];
      return r;
    }
    if (P === null) {
      let r = 0;
      for (let d = 0; d < D; d++) {
        out[at + d] = target[d];
        const diff = out[at + d] - target[d];
        r += diff * diff;
      }
      return r;
    }
    const L = this.#L;
    const y = this.#rhs;
    for (let i = 0; i < s; i++) {
      let b = 0;
      for (let d = 0; d < D; d++) b += P[i * D + d] * target[d];
      for (let k = 0; k < i; k++) b -= L[i * s + k] * y[k];
      y[i] = b / L[i * s + i];
    }
    for (let i = s - 1; i >= 0; i--) {
      let x = y[i];
      for (let k = i + 1; k < s; k++) x -= L[k * s + i] * y[k];
      y[i] = x / L[i * s + i];
    }
    let r = 0;
    for (let d = 0; d < D; d++) {
      let v = 0;
      for (let i = 0; i < s; i++) v += y[i] * P[i * D + d];
      r += (v - target[d]) ** 2;
    }
    for (let i = 0; i < s; i++) out[at + i] = y[i];
    return r;
  }
}

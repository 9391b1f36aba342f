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
 * costs bytesOf(s) (non-decreasing in s). Dimensions of importance 0 are never kept. If even
 * all-zero sizes do not fit, the result is all-zero sizes with their bytes, and the caller decides
 * what to evict.
 *
 * Cost: linear in n·D, plus a sort of D values per token. Only a token's ladder steps can change
 * the bytes: it reaches size ladder[l] when its (ladder[l−1] + 1)-th largest importance is kept.
 * Those breakpoints, each weighing the bytes its step adds, go through a weighted radix select on
 * their float bits (three passes of histograms), which finds the largest breakpoint c whose
 * inclusion breaks the budget; the threshold is then the smallest importance above c. The result
 * is exactly that of sorting every importance and binary-searching the threshold (the previous
 * method, kept in test/engine/pme-parts.test.ts as the reference).
 */
export function chooseSizes(
  importance: Float32Array,
  n: number,
  D: number,
  ladder: readonly number[],
  bytesOf: (size: number) => number,
  available: number,
): SizeChoice {
  const L = ladder.length;
  const base = bytesOf(roundUpToLadder(0, ladder));
  // Steps l = 1..L-1 whose rank exists (a token of D dims cannot keep more than D).
  const rank: number[] = [];
  const delta: number[] = [];
  for (let l = 1; l < L; l++) {
    if (ladder[l - 1] + 1 > D) break;
    rank.push(ladder[l - 1] + 1);
    delta.push(bytesOf(ladder[l]) - bytesOf(ladder[l - 1]));
  }
  const steps = rank.length;
  let threshold = Number.POSITIVE_INFINITY;
  if (base * n <= available) {
    // Breakpoints with a positive value, as float bits (order-preserving for positive floats).
    const bits = new Uint32Array(n * steps);
    const weight = new Float64Array(n * steps);
    const row = new Float32Array(D);
    let m = 0;
    for (let t = 0; t < n; t++) {
      for (let d = 0; d < D; d++) row[d] = importance[t * D + d];
      row.sort();
      for (let l = 0; l < steps; l++) {
        const v = row[D - rank[l]];
        if (!(v > 0)) break; // ranks go down the row: the rest are 0 too
        weight[m] = delta[l];
        bits[m++] = floatBits(v);
      }
    }
    const c = weightedSelect(bits, weight, m, available - base * n);
    // The smallest importance above c (c = 0 when every breakpoint fits).
    const floor = c < 0 ? 0 : bitsFloat(c);
    let best = Number.POSITIVE_INFINITY;
    for (let j = 0, end = n * D; j < end; j++) {
      const v = importance[j];
      if (v > floor && v < best) best = v;
    }
    threshold = best;
  }
  const kept = new Int32Array(n);
  const sizes = new Int32Array(n);
  let bytes = 0;
  for (let t = 0; t < n; t++) {
    let k = 0;
    if (threshold !== Number.POSITIVE_INFINITY)
      for (let j = t * D, end = j + D; j < end; j++) if (importance[j] >= threshold) k++;
    const size = roundUpToLadder(k, ladder);
    kept[t] = k;
    sizes[t] = size;
    bytes += bytesOf(size);
  }
  return { threshold, kept, sizes, bytes };
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);
function floatBits(v: number): number {
  f32[0] = v;
  return u32[0];
}
function bitsFloat(b: number): number {
  u32[0] = b;
  return f32[0];
}

/**
 * Among keys[0..m) (bits of positive floats) with weights, the largest key c such that the total
 * weight of keys >= c exceeds `room`; -1 when the whole weight fits. Radix select from the top:
 * per pass a histogram of the next bits of the keys still in play, scanned from the high end.
 */
function weightedSelect(keys: Uint32Array, weight: Float64Array, m: number, room: number): number {
  // Positive float bits use the low 31 bits: passes over bits 30..20, 19..10, 9..0.
  const passes = [
    [20, 11],
    [10, 10],
    [0, 10],
  ];
  const hist = new Float64Array(1 << 11);
  let prefix = 0; // the bits fixed so far (above `shift + width`)
  let count = m;
  let cand = keys;
  let candWeight = weight;
  for (let p = 0; p < passes.length; p++) {
    const [shift, width] = passes[p];
    const mask = (1 << width) - 1;
    hist.fill(0, 0, mask + 1);
    for (let j = 0; j < count; j++) hist[(cand[j] >>> shift) & mask] += candWeight[j];
    let b = mask;
    for (; b >= 0; b--) {
      if (hist[b] > room) break;
      room -= hist[b];
    }
    if (b < 0) return -1;
    prefix = prefix | (b << shift);
    // Keep the keys of bucket b for the next pass.
    let k = 0;
    const next = p === 0 ? new Uint32Array(count) : cand;
    const nextWeight = p === 0 ? new Float64Array(count) : candWeight;
    for (let j = 0; j < count; j++)
      if (((cand[j] >>> shift) & mask) === b) {
        next[k] = cand[j];
        nextWeight[k++] = candWeight[j];
      }
    cand = next;
    candWeight = nextWeight;
    count = k;
  }
  return prefix >>> 0;
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

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
 * Cost: a few passes over the n·D importances, no global sort. The bytes change only at a token's
 * ladder steps (size ladder[l] once its (ladder[l−1] + 1)-th largest importance is kept), so:
 * (1) the bytes at up to 32 thresholds near quantiles of a sample, in one pass (per token, a
 * bucket count of its importances), bracket the answer between two of them; (2) the breakpoints of every token inside
 * that bracket (its few importances there, sorted), each weighing the bytes its step adds, go to a
 * weighted radix select, which finds the largest breakpoint c whose inclusion breaks the budget;
 * (3) the threshold is the smallest importance above c. The result is exactly that of sorting all
 * importances and binary-searching the threshold (the previous method, which the test keeps as
 * the reference); about 8x faster than it on 20 000 × 64 importances (timings printed by
 * test/engine/pme-parts.test.ts), and the gap grows with n·D.
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
  const total = n * D;
  // Per kept count k, the ladder index of its size, and the bytes of every ladder size.
  const sizeIndex = new Int32Array(D + 1);
  for (let k = 0; k <= D; k++) sizeIndex[k] = ladder.indexOf(roundUpToLadder(k, ladder));
  const ladderBytes = new Float64Array(L);
  for (let l = 0; l < L; l++) ladderBytes[l] = bytesOf(ladder[l]);
  const zeroBytes = ladderBytes[sizeIndex[0]];

  const kept = new Int32Array(n);
  const sizes = new Int32Array(n);
  let threshold = Number.POSITIVE_INFINITY;
  if (zeroBytes * n <= available) {
    // 1. Candidates q[0] > q[1] > ... > 0 on a grid of float values (the top 13 bits of a float32:
    //    a 1/16 relative step), near quantiles of a sample; the bytes at each, in one pass where a
    //    value finds its bucket by a table look-up on its bits.
    const u = new Uint32Array(importance.buffer, importance.byteOffset, total);
    const grid = gridCandidates(importance, total);
    const K = grid.length;
    const q = new Float64Array(K);
    for (let b = 0; b < K; b++) q[b] = bitsFloat(grid[b] << GRID_SHIFT);
    // bucketOf[top bits] = the first candidate at or below such a value (K: below them all).
    const bucketOf = new Uint8Array(1 << (32 - GRID_SHIFT)).fill(K);
    for (let top = 0, b = K; top < 1 << (31 - GRID_SHIFT); top++) {
      while (b > 0 && grid[b - 1] <= top) b--;
      bucketOf[top] = b;
    }
    const bytesAt = bytesAtCandidates(u, n, D, bucketOf, K, sizeIndex, ladderBytes);
    let fit = -1;
    while (fit + 1 < K && bytesAt[fit + 1] <= available) fit++;
    const upper = fit >= 0 ? q[fit] : Number.POSITIVE_INFINITY;
    const upperBytes = fit >= 0 ? bytesAt[fit] : zeroBytes * n;
    const lower = fit + 1 < K ? q[fit + 1] : 0;

    // 2. Per token: its count at or above `upper` (in kept), and its values strictly between
    //    lower (does not fit) and upper (fits), sorted descending into vals[from[t]..from[t+1]);
    //    each ladder step among them is a breakpoint weighing the bytes it adds.
    const from = new Int32Array(n + 1);
    const { vals, used, minUpper } = bracketScan(importance, n, D, upper, lower, kept, from);
    let keys = new Uint32Array(1024);
    let weights = new Float64Array(1024);
    let m = 0;
    for (let t = 0; t < n; t++) {
      const start = from[t];
      const stop = from[t + 1];
      if (stop === start) continue;
      if (stop - start > 1) sortDescending(vals, start, stop);
      let k = kept[t];
      for (let i = start; i < stop; i++) {
        const before = sizeIndex[k];
        const after = sizeIndex[++k];
        if (after === before) continue;
        if (m === keys.length) {
          keys = growU32(keys);
          weights = growF64(weights);
        }
        keys[m] = floatBits(vals[i]);
        weights[m++] = ladderBytes[after] - ladderBytes[before];
      }
    }
    const c = weightedSelect(keys, weights, m, available - upperBytes);
    // 3. The threshold: the smallest importance above c (above `lower` when every breakpoint fits).
    const floor = c < 0 ? lower : bitsFloat(c);
    threshold = minUpper;
    for (let i = 0; i < used; i++) if (vals[i] > floor && vals[i] < threshold) threshold = vals[i];
    for (let t = 0; t < n; t++) {
      let k = kept[t];
      for (let i = from[t]; i < from[t + 1] && vals[i] >= threshold; i++) k++;
      kept[t] = k;
    }
  }
  let bytes = 0;
  for (let t = 0; t < n; t++) {
    const l = sizeIndex[kept[t]];
    sizes[t] = ladder[l];
    bytes += ladderBytes[l];
  }
  return { threshold, kept, sizes, bytes };
}

/**
 * Bytes of all tokens' sizes at each candidate threshold: per token, a histogram of its values
 * over the candidates' buckets, accumulated from the top. (Its own function: a small one is
 * optimised sooner, which matters for a single call on a cold process: `pme offline`.)
 */
function bytesAtCandidates(
  u: Uint32Array,
  n: number,
  D: number,
  bucketOf: Uint8Array,
  K: number,
  sizeIndex: Int32Array,
  ladderBytes: Float64Array,
): Float64Array {
  const bytesAt = new Float64Array(K);
  const hist = new Int32Array(K + 1);
  for (let t = 0; t < n; t++) {
    for (let j = t * D, end = j + D; j < end; j++) hist[bucketOf[u[j] >>> GRID_SHIFT]]++;
    let kept = 0;
    for (let b = 0; b < K; b++) {
      kept += hist[b];
      hist[b] = 0;
      bytesAt[b] += ladderBytes[sizeIndex[kept]];
    }
    hist[K] = 0;
  }
  return bytesAt;
}

/**
 * Per token t: kept[t] = its count of values >= upper, and its values in (lower, upper) appended
 * to `vals` at [from[t], from[t + 1]). Also the smallest value >= upper.
 */
function bracketScan(
  importance: Float32Array,
  n: number,
  D: number,
  upper: number,
  lower: number,
  kept: Int32Array,
  from: Int32Array,
): { vals: Float32Array; used: number; minUpper: number } {
  let vals = new Float32Array(1024);
  let used = 0;
  let minUpper = Number.POSITIVE_INFINITY;
  for (let t = 0; t < n; t++) {
    from[t] = used;
    let k = 0;
    for (let j = t * D, end = j + D; j < end; j++) {
      const v = importance[j];
      if (v >= upper) {
        k++;
        if (v < minUpper) minUpper = v;
      } else if (v > lower) {
        if (used === vals.length) vals = growF32(vals);
        vals[used++] = v;
      }
    }
    kept[t] = k;
  }
  from[n] = used;
  return { vals, used, minUpper };
}

/** Float bits below this are dropped to place a value on the candidates' grid. */
const GRID_SHIFT = 19;

/**
 * Up to 32 distinct grid keys (float bits >>> GRID_SHIFT, >= 1 so that 0 is never kept),
 * descending, at even ranks of a strided sample of the positive importances.
 */
function gridCandidates(importance: Float32Array, total: number): Int32Array {
  const S = Math.min(total, 4096);
  const sample = new Float32Array(S);
  let p = 0;
  for (let i = 0; i < S; i++) {
    const v = importance[Math.floor((i * total) / S)];
    if (v > 0) sample[p++] = v;
  }
  const sorted = sample.subarray(0, p).sort();
  const out: number[] = [];
  const K = Math.min(32, p);
  for (let b = 1; b <= K; b++) {
    const key = Math.max(1, floatBits(sorted[p - Math.ceil((b * p) / (K + 1))]) >>> GRID_SHIFT);
    if (out.length === 0 || key < out[out.length - 1]) out.push(key);
  }
  return Int32Array.from(out);
}

/** Sorts a[lo..hi) descending: insertion sort (a token has few importances inside the bracket). */
function sortDescending(a: Float32Array, lo: number, hi: number): void {
  if (hi - lo > 16) {
    a.subarray(lo, hi).sort().reverse();
    return;
  }
  for (let i = lo + 1; i < hi; i++) {
    const v = a[i];
    let j = i;
    while (j > lo && a[j - 1] < v) {
      a[j] = a[j - 1];
      j--;
    }
    a[j] = v;
  }
}

function growU32(a: Uint32Array<ArrayBuffer>): Uint32Array<ArrayBuffer> {
  const b = new Uint32Array(a.length * 2);
  b.set(a);
  return b;
}
function growF32(a: Float32Array<ArrayBuffer>): Float32Array<ArrayBuffer> {
  const b = new Float32Array(a.length * 2);
  b.set(a);
  return b;
}
function growF64(a: Float64Array<ArrayBuffer>): Float64Array<ArrayBuffer> {
  const b = new Float64Array(a.length * 2);
  b.set(a);
  return b;
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

  /** P_s (s × D), or null: the first s rows of the identity. */
  get projection(): Float32Array | null {
    return this.#P;
  }

  /** Whether the solution is the target's first s dims (no P, 0 < s < D: a nested tier). */
  get truncates(): boolean {
    return this.#P === null && this.s > 0 && this.s < this.D;
  }

  /** P null means the first s rows of the identity: the identity at s = D, and a nested tier
   *  (FmOptions.projection 'nested') below it, where the least-squares solution is the target's
   *  first s dims. */
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
        L[i * s + j] = g;
      }
    }
    choleskyInPlace(L, s);
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
      // Truncation: the first s dims as they are (rounded to floats), the rest is the residual.
      let r = 0;
      for (let d = 0; d < s; d++) {
        out[at + d] = target[d];
        const diff = out[at + d] - target[d];
        r += diff * diff;
      }
      for (let d = s; d < D; d++) r += target[d] * target[d];
      return r;
    }
    const y = this.#rhs;
    for (let i = 0; i < s; i++) {
      let b = 0;
      for (let d = 0; d < D; d++) b += P[i * D + d] * target[d];
      y[i] = b;
    }
    solveCholesky(this.#L, s, y);
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

/** The lower Cholesky factor of the s × s symmetric matrix whose lower triangle A holds, in place. */
export function choleskyInPlace(A: Float64Array, s: number): void {
  for (let i = 0; i < s; i++)
    for (let j = 0; j <= i; j++) {
      let g = A[i * s + j];
      for (let k = 0; k < j; k++) g -= A[i * s + k] * A[j * s + k];
      A[i * s + j] = i === j ? Math.sqrt(Math.max(g, 1e-300)) : g / A[j * s + j];
    }
}

/** Solves (L Lᵀ) x = b for x in place of b, L from choleskyInPlace. */
export function solveCholesky(L: Float64Array, s: number, b: Float64Array): void {
  for (let i = 0; i < s; i++) {
    let x = b[i];
    for (let k = 0; k < i; k++) x -= L[i * s + k] * b[k];
    b[i] = x / L[i * s + i];
  }
  for (let i = s - 1; i >= 0; i--) {
    let x = b[i];
    for (let k = i + 1; k < s; k++) x -= L[k * s + i] * b[k];
    b[i] = x / L[i * s + i];
  }
}

import t from 'tap';
import { pmeStartSize } from '../../src/engine/pme/options.js';
import { chooseSizes, roundUpToLadder, TierLeastSquares } from '../../src/engine/pme/prune.js';
import { DecayedCountMin } from '../../src/engine/pme/sketch.js';
import { type StreamEvalOptions, streamEval } from '../../src/engine/stream-eval.js';
import { createRandom, ZipfSampler } from '../../src/util/random.js';

const LADDER = [0, 2, 4, 8, 16];
const D = 16;

t.test(
  'count-min: never under the true decayed count, close for hot keys, decays by half-life',
  async (t) => {
    const sketch = new DecayedCountMin({ width: 1024, depth: 4, halfLife: 1e12 });
    const random = createRandom(2);
    const zipf = new ZipfSampler(5000, 1.1);
    const truth = new Map<number, number>();
    for (let i = 0; i < 50000; i++) {
      const k = zipf.sample(random);
      sketch.add(k);
      truth.set(k, (truth.get(k) ?? 0) + 1);
    }
    let under = 0;
    for (const [k, c] of truth) if (sketch.estimate(k) < c * (1 - 1e-6)) under++;
    t.equal(under, 0, 'no underestimate');
    for (const k of [0, 1, 2]) t.ok(sketch.estimate(k) / truth.get(k)! < 1.05, `hot key ${k} within 5%`);

    const decaying = new DecayedCountMin({ width: 256, depth: 2, halfLife: 100 });
    for (let i = 0; i < 100; i++) decaying.add(7);
    const before = decaying.estimate(7);
    for (let i = 0; i < 100; i++) decaying.add(1000 + i);
    t.ok(Math.abs(decaying.estimate(7) / before - 0.5) < 0.01, 'halved after one half-life');
    t.throws(() => new DecayedCountMin({ depth: 0 }), { code: 'PME_ERR_CONFIG_INVALID' });
  },
);

t.test('chooseSizes: one threshold, sizes rounded up to the ladder, budget respected exactly', async (t) => {
  const random = createRandom(5);
  const n = 50;
  const imp = new Float32Array(n * D);
  // Token t has about t/3 important dims, the rest tiny.
  for (let tok = 0; tok < n; tok++)
    for (let d = 0; d < D; d++) imp[tok * D + d] = d < tok / 3 ? 1 + random.next() : random.next() * 1e-3;
  const bytesOf = (s: number) => 16 + 8 * s;
  for (const available of [16 * n, 16 * n + 100, 3000, 6000, 9000, 16 * n + 8 * D * n]) {
    const c = chooseSizes(imp, n, D, LADDER, bytesOf, available);
    let bytes = 0;
    for (let tok = 0; tok < n; tok++) {
      bytes += bytesOf(c.sizes[tok]);
      t.equal(c.sizes[tok], roundUpToLadder(c.kept[tok], LADDER));
      let count = 0;
      for (let d = 0; d < D; d++) if (imp[tok * D + d] >= c.threshold) count++;
      t.equal(c.kept[tok], count, 'kept = dims at or above the global threshold');
    }
    t.equal(bytes, c.bytes);
    t.ok(c.bytes <= available, `${c.bytes} <= ${available}`);
    // Lowering the threshold to the next value would not fit (the choice is the largest that fits).
    const next = Float32Array.from(imp)
      .sort()
      .reverse()
      .find((x) => x < c.threshold && x > 0);
    if (next !== undefined) {
      let more = 0;
      for (let tok = 0; tok < n; tok++) {
        let count = 0;
        for (let d = 0; d < D; d++) if (imp[tok * D + d] >= next) count++;
        more += bytesOf(roundUpToLadder(count, LADDER));
      }
      t.ok(more > available, 'one more dimension would break the budget');
    }
  }
  const important = chooseSizes(imp, n, D, LADDER, bytesOf, 9000);
  t.ok(important.sizes[n - 1] >= important.sizes[0], 'tokens with more important dims get more');
  const none = chooseSizes(imp, n, D, LADDER, bytesOf, 10);
  t.equal(none.threshold, Number.POSITIVE_INFINITY);
  t.ok(none.sizes.every((s) => s === 0));
});

/**
 * The sort-based chooseSizes this project used before the linear-time one: sort every importance,
 * binary-search the lowest threshold that fits. Kept as the reference the new one must equal.
 */
function chooseSizesBySort(
  importance: Float32Array,
  n: number,
  D: number,
  ladder: readonly number[],
  bytesOf: (size: number) => number,
  available: number,
): { threshold: number; kept: Int32Array; sizes: Int32Array; bytes: number } {
  const sorted = new Float32Array(n * D);
  for (let tok = 0; tok < n; tok++) {
    const row = sorted.subarray(tok * D, (tok + 1) * D);
    row.set(importance.subarray(tok * D, (tok + 1) * D));
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
    for (let tok = 0; tok < n; tok++) {
      let lo = 0;
      let hi = D;
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if (sorted[tok * D + mid] >= threshold) lo = mid + 1;
        else hi = mid;
      }
      const size = roundUpToLadder(lo, ladder);
      bytes += bytesOf(size);
      if (write) {
        kept[tok] = lo;
        sizes[tok] = size;
      }
    }
    return bytes;
  };
  let positives = 0;
  while (positives < all.length && all[positives] > 0) positives++;
  let lo = -1;
  let hi = positives;
  while (hi - lo > 1) {
    const mid = (lo + hi) >>> 1;
    if (evaluate(all[mid], false) <= available) lo = mid;
    else hi = mid;
  }
  const threshold = lo < 0 ? Number.POSITIVE_INFINITY : all[lo];
  return { threshold, kept, sizes, bytes: evaluate(threshold, true) };
}

t.test('chooseSizes equals the sort-based reference on a large random input', async (t) => {
  const random = createRandom(11);
  const n = 20_000;
  const D64 = 64;
  const ladder = [0, 2, 4, 8, 16, 32, 64];
  const imp = new Float32Array(n * D64);
  // Heavy-tailed, with exact zeros and ties, like decayed |w·g| sums.
  for (let i = 0; i < imp.length; i++) {
    const u = random.next();
    imp[i] = u < 0.15 ? 0 : u < 0.2 ? 0.5 : Math.exp(2 * random.normal());
  }
  const bytesOf = (s: number) => (s === 0 ? 0 : s * 4 * (s === D64 ? 3 : 2) + 8);
  const full = n * bytesOf(D64);
  for (const share of [0.001, 0.05, 0.2, 0.6, 1.01]) {
    const available = Math.floor(full * share);
    const t0 = performance.now();
    const fast = chooseSizes(imp, n, D64, ladder, bytesOf, available);
    const t1 = performance.now();
    const ref = chooseSizesBySort(imp, n, D64, ladder, bytesOf, available);
    const t2 = performance.now();
    t.equal(fast.threshold, ref.threshold, `threshold at ${share}`);
    t.equal(fast.bytes, ref.bytes, `bytes at ${share}`);
    t.ok(fast.bytes <= available, 'within the budget');
    t.same(fast.sizes, ref.sizes, `sizes at ${share}`);
    t.same(fast.kept, ref.kept, `kept at ${share}`);
    t.comment(
      `${n} × ${D64} at ${share}: linear ${(t1 - t0).toFixed(1)} ms, sort-based ${(t2 - t1).toFixed(1)} ms`,
    );
  }
});

t.test(
  'chooseSizes equals the reference on awkward inputs (ties, zeros, narrow ranges, odd ladders)',
  async (t) => {
    const random = createRandom(12);
    const values: Array<() => number> = [
      () => 1,
      () => 1 + random.next() * 1e-4,
      () => (random.next() < 0.9 ? 0 : random.next()),
      () => random.next() * 1e-40, // subnormal floats
      () => Math.min(3e38, Math.exp(random.normal() * 30)),
      () => Math.floor(random.next() * 3),
    ];
    const shapes: Array<[number, number[]]> = [
      [1, [0, 1]],
      [5, [0, 1, 2, 3, 4, 5]],
      [16, [2, 4, 8]],
      [16, [0, 16]],
      [13, [0, 4, 13]],
    ];
    let cases = 0;
    let same = 0;
    for (const value of values)
      for (const [dim, ladder] of shapes)
        for (const n of [1, 3, 200]) {
          const imp = Float32Array.from({ length: n * dim }, value);
          const bytesOf = (s: number) => 10 + 3 * s;
          for (const share of [0, 0.3, 0.5, 0.9, 2]) {
            const available = Math.floor(share * n * bytesOf(ladder[ladder.length - 1]));
            const a = chooseSizes(imp, n, dim, ladder, bytesOf, available);
            const b = chooseSizesBySort(imp, n, dim, ladder, bytesOf, available);
            cases++;
            if (
              a.threshold === b.threshold &&
              a.bytes === b.bytes &&
              a.sizes.every((x, i) => x === b.sizes[i]) &&
              a.kept.every((x, i) => x === b.kept[i])
            )
              same++;
            else t.fail(`differs: dim ${dim}, ladder ${ladder}, n ${n}, share ${share}`);
          }
        }
    t.equal(same, cases, `${cases} cases agree`);
  },
);

t.test('least squares through a projection: exact in the row space, optimal otherwise', async (t) => {
  const random = createRandom(9);
  const s = 4;
  const P = new Float32Array(s * D);
  for (let i = 0; i < P.length; i++) P[i] = random.normal();
  const ls = new TierLeastSquares(P, s, D);
  // A target inside the row space is recovered exactly.
  const e = Float32Array.from({ length: s }, () => random.normal());
  const v = new Float64Array(D);
  for (let i = 0; i < s; i++) for (let d = 0; d < D; d++) v[d] += e[i] * P[i * D + d];
  const out = new Float32Array(s);
  const r = ls.solve(v, out);
  t.ok(r < 1e-8, `residual ${r}`);
  for (let i = 0; i < s; i++) t.ok(Math.abs(out[i] - e[i]) < 1e-4);
  // A generic target: the residual is orthogonal to every row of P (normal equations hold).
  const w = Float64Array.from({ length: D }, () => random.normal());
  ls.solve(w, out);
  for (let i = 0; i < s; i++) {
    let dot = 0;
    for (let d = 0; d < D; d++) {
      let x = 0;
      for (let k = 0; k < s; k++) x += out[k] * P[k * D + d];
      dot += (x - w[d]) * P[i * D + d];
    }
    t.ok(Math.abs(dot) < 1e-3, `residual ⟂ row ${i}: ${dot}`);
  }
  // Identity tier: copy; size 0: the whole vector is the error.
  const id = new TierLeastSquares(null, D, D);
  const copy = new Float32Array(D);
  t.ok(id.solve(w, copy) < 1e-10);
  const zero = new TierLeastSquares(null, 0, D);
  let norm = 0;
  for (const x of w) norm += x * x;
  t.ok(Math.abs(zero.solve(w, copy) - norm) < 1e-9);
});

t.test("PME starts tokens at the target's share of D, at most 16 and below D", async (t) => {
  const ladder = [0, 2, 4, 8, 16, 32, 64];
  t.equal(pmeStartSize(ladder), 16, 'the default target, 0.25: 16');
  t.equal(pmeStartSize(ladder, 0.1), 8, '6.4 dims: the size at or above it');
  t.equal(pmeStartSize(ladder, 0.05), 4);
  t.equal(pmeStartSize(ladder, 0.5), 16, 'never above 16');
  t.equal(pmeStartSize([0, 2, 4, 8, 16, 32]), 8, 'D = 32 at 0.25: 8');
  t.equal(pmeStartSize([0, 2, 4, 8, 16], 1), 8, 'D = 16: below D whatever the target');
  t.equal(pmeStartSize([0, 4]), 0);
  const replay = (o: Partial<StreamEvalOptions>) =>
    streamEval({
      synthetic: 2000,
      dim: 64,
      seed: 3,
      pme: true,
      windowEvents: 0,
      negatives: 0,
      batch: 64,
      ...o,
    });
  // No window runs: a token is where the store created it, or at D if it turned hot (promotion).
  const sizesOf = (r: Awaited<ReturnType<typeof replay>>) =>
    r.tiers.filter((tier) => tier.tokens > 0).map((tier) => tier.size);
  t.same(sizesOf(await replay({})), [16, 64], 'tokens at 16, the hot ones at 64');
  t.same(sizesOf(await replay({ target: 0.1 })), [8, 64], 'a target of 0.1: at 8');
  t.same(sizesOf(await replay({ startSize: 4 })), [4, 64], 'an explicit start size wins');
});

t.test('only a replay with PME keeps the importance slab: full size is 4·(2D + 1) bytes a row', async (t) => {
  const D = 64;
  const topBytes = async (o: Partial<StreamEvalOptions>) => {
    const r = await streamEval({
      synthetic: 2000,
      dim: D,
      seed: 3,
      startSize: D,
      pme: false,
      windowEvents: 0,
      negatives: 0,
      batch: 64,
      ...o,
    });
    const top = r.tiers.find((tier) => tier.size === D)!;
    t.ok(top.tokens > 0, `tokens at ${D}: ${top.tokens}`);
    return top.bytes;
  };
  const full = await topBytes({ pme: false });
  const pme = await topBytes({ pme: true });
  const popularity = await topBytes({ pme: true, sizing: 'popularity' });
  // The same tokens arrive in the same order, so the tier has the same rows in each replay.
  t.equal(pme / full, (3 * D + 1) / (2 * D + 1), 'params + Adagrad, and the importances with PME');
  t.equal(popularity, full, 'popularity-scaled sizes read no importance either');
});

import t from 'tap';
import { pairedAucBootstrap, weightedAuc } from '../../bench/bootstrap.js';
import { exactAuc } from '../../src/engine/metrics.js';
import { createRandom } from '../../src/util/random.js';

/** n events; a score that knows the label by `skill` plus noise, rounded so that scores tie. */
function stream(n: number, seed: number) {
  const random = createRandom(seed);
  const labels = new Float32Array(n);
  for (let i = 0; i < n; i++) labels[i] = random.next() < 0.3 ? 1 : 0;
  const score = (skill: number, noiseSeed: number) => {
    const r = createRandom(noiseSeed);
    return Float64Array.from(labels, (y) => Math.round((skill * y + r.normal()) * 20) / 20);
  };
  return { labels, score };
}

t.test('weightedAuc with unit weights is exactAuc, ties included', async (t) => {
  const { labels, score } = stream(3000, 1);
  const s = score(0.8, 2);
  t.equal(weightedAuc(s, labels, new Float64Array(s.length).fill(1)), exactAuc(s, labels));
});

t.test('weightedAuc counts an event weight times', async (t) => {
  const { labels, score } = stream(500, 3);
  const s = score(0.5, 4);
  const weights = Float64Array.from(s, (_, i) => i % 3);
  // The same AUC by listing each event as many times as its weight.
  const repeated: number[] = [];
  const repeatedLabels: number[] = [];
  s.forEach((v, i) => {
    for (let k = 0; k < weights[i]; k++) {
      repeated.push(v);
      repeatedLabels.push(labels[i]);
    }
  });
  t.equal(
    weightedAuc(s, labels, weights).toFixed(12),
    exactAuc(Float64Array.from(repeated), Float32Array.from(repeatedLabels)).toFixed(12),
  );
  t.ok(Number.isNaN(weightedAuc(s, labels, Float64Array.from(labels))), 'no negative left: NaN');
});

t.test('pairedAucBootstrap', async (t) => {
  const { labels, score } = stream(4000, 5);
  const strong = [score(1.2, 10), score(1.2, 11)];
  const weak = [score(0.6, 20), score(0.6, 21)];
  const pairs = strong.map((a, i) => ({ labels, a, b: weak[i] }));
  const r = pairedAucBootstrap(pairs, { resamples: 400 });
  const point =
    (exactAuc(strong[0], labels) -
      exactAuc(weak[0], labels) +
      exactAuc(strong[1], labels) -
      exactAuc(weak[1], labels)) /
    2;
  t.equal(r.delta.toFixed(12), point.toFixed(12), 'the point estimate is the mean paired difference');
  t.ok(r.lo > 0, `a clearly better score: the interval excludes 0 (${r.lo.toFixed(4)}, ${r.hi.toFixed(4)})`);
  t.ok(r.lo <= r.delta && r.delta <= r.hi, 'the interval holds the point estimate');
  t.same(pairedAucBootstrap(pairs, { resamples: 400 }), r, 'the same seed draws the same');
  // Two systems of equal skill: an interval around 0.
  const equal = pairedAucBootstrap([{ labels, a: score(0.8, 30), b: score(0.8, 31) }], { resamples: 400 });
  t.ok(
    equal.lo < 0 && equal.hi > 0,
    `equal skill: 0 inside (${equal.lo.toFixed(4)}, ${equal.hi.toFixed(4)})`,
  );
  // The same scores on both sides: exactly 0 on every draw.
  const same = pairedAucBootstrap([{ labels, a: strong[0], b: strong[0] }], { resamples: 50 });
  t.same(same, { delta: 0, lo: 0, hi: 0 });
  t.throws(() => pairedAucBootstrap([{ labels, a: strong[0], b: weak[0].subarray(1) }]), /4000 labels/);
  t.throws(() => pairedAucBootstrap([]), /no pairs/);
});

t.test('pairedAucBootstrap resamples whole blocks', async (t) => {
  // The first half of the stream favours a, the second b: with 2 blocks a draw takes a half twice
  // or each once, so the interval spans both signs widely; with 1 block every draw is the stream.
  const n = 2000;
  const labels = Float32Array.from({ length: n }, (_, i) => (i % 2 === 0 ? 1 : 0));
  const a = Float64Array.from(labels, (y, i) => (i < n / 2 ? y : 1 - y));
  const b = Float64Array.from(labels, (y, i) => (i < n / 2 ? 1 - y : y));
  const one = pairedAucBootstrap([{ labels, a, b }], { blocks: 1, resamples: 100 });
  t.same(one, { delta: 0, lo: 0, hi: 0 });
  const two = pairedAucBootstrap([{ labels, a, b }], { blocks: 2, resamples: 400 });
  t.equal(two.lo, -1, 'a draw of the second half twice: b is perfect, a inverted');
  t.equal(two.hi, 1);
});

t.test('pairedAucBootstrap draws pairs on other streams on their own', async (t) => {
  // Two streams whose halves each favour a different system: drawn together (one labels array)
  // the halves' draws would cancel between the pairs; drawn apart they do not.
  const n = 2000;
  const labels = Float32Array.from({ length: n }, (_, i) => (i % 2 === 0 ? 1 : 0));
  const a = Float64Array.from(labels, (y, i) => (i < n / 2 ? y : 1 - y));
  const b = Float64Array.from(labels, (y, i) => (i < n / 2 ? 1 - y : y));
  const together = pairedAucBootstrap(
    [
      { labels, a, b },
      { labels, a: b, b: a },
    ],
    { blocks: 2, resamples: 200 },
  );
  t.same(together, { delta: 0, lo: 0, hi: 0 }, 'one stream: every draw cancels');
  const other = Float32Array.from(labels);
  const apart = pairedAucBootstrap(
    [
      { labels, a, b },
      { labels: other, a: b, b: a },
    ],
    { blocks: 2, resamples: 400 },
  );
  t.equal(apart.delta, 0);
  t.equal(apart.lo, -1, 'two streams drawn apart: both can draw against a');
  t.equal(apart.hi, 1);
});

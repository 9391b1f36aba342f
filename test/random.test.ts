import t from 'tap';
import { createRandom, ZipfSampler } from '../src/util/random.js';

t.test('same seed, same sequence; other seed, other sequence', async (t) => {
  const a = createRandom(7);
  const b = createRandom(7);
  const c = createRandom(8);
  const sa = Array.from({ length: 5 }, () => a.next());
  t.same(
    Array.from({ length: 5 }, () => b.next()),
    sa,
  );
  t.not(c.next(), sa[0]);
  t.ok(sa.every((x) => x >= 0 && x < 1));
});

t.test('normal draws have mean ~0 and variance ~1', async (t) => {
  const r = createRandom(1);
  let s = 0;
  let s2 = 0;
  const n = 20000;
  for (let i = 0; i < n; i++) {
    const x = r.normal();
    s += x;
    s2 += x * x;
  }
  t.ok(Math.abs(s / n) < 0.03);
  t.ok(Math.abs(s2 / n - 1) < 0.05);
});

t.test('zipf puts rank 0 first and follows the exponent', async (t) => {
  const r = createRandom(3);
  const z = new ZipfSampler(100, 1);
  const counts = new Array(100).fill(0);
  for (let i = 0; i < 50000; i++) counts[z.sample(r)]++;
  t.ok(counts[0] > counts[1] && counts[1] > counts[9]);
  // P(0)/P(1) = 2 for exponent 1
  t.ok(Math.abs(counts[0] / counts[1] - 2) < 0.2);
});

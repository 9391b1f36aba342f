import { fileURLToPath } from 'node:url';
import t from 'tap';
import { PLANTED_RANKS, plantedStream } from '../../bench/planted-stream.js';
import {
  catalogFieldMap,
  chooseEnd,
  chooseRate,
  cleanToken,
  eventTokens,
  exportLine,
  meanInterval,
  meanStd,
  parseExportLine,
  parseProbabilities,
  scoreRun,
  scoreSlice,
} from '../../bench/quality-core.js';
import { readEvents } from '../../src/data/index.js';
import { exactAuc } from '../../src/engine/metrics.js';
import { streamEval } from '../../src/engine/stream-eval.js';

const fixture = (name: string) => fileURLToPath(new URL(`../fixtures/${name}`, import.meta.url));

t.test(
  'the export of the MovieLens fixture: time order, rating >= 4 as label, user, item, genres',
  async (t) => {
    const read = await readEvents({
      path: fixture('ratings.csv'),
      format: 'movielens',
      itemsPath: fixture('movies.csv'),
    });
    const fields = catalogFieldMap(read.catalog);
    const lines = read.events.map((e) => exportLine(e, fields));
    t.equal(lines.length, read.events.length, 'one line per event');
    t.same(lines.slice(0, 3), [
      // 2,10,2.0 at ..050: Comedy and Drama are as rare (3 movies each): the first by name.
      '0\tuser=2\titem=10\tgenre=Comedy genres=Comedy_Drama',
      // 1,20,3.5 at ..100: below 4 is a negative.
      '0\tuser=1\titem=20\tgenre=Animation genres=Animation_Children_Comedy',
      '1\tuser=1\titem=30\tgenre=Drama genres=Drama',
    ]);
    // A movie without genres has no field tokens.
    t.ok(lines.includes('1\tuser=2\titem=40\t'), 'no genre, no field tokens');
    for (const [i, line] of lines.entries()) {
      const p = parseExportLine(line);
      const e = read.events[i];
      t.equal(p.label, e.label);
      t.equal(p.user, `user=${e.user}`);
      t.equal(p.item, `item=${e.item}`);
      for (const token of [p.user, p.item, ...p.fields])
        t.notMatch(token, /[\s|:]/, 'no separator inside a token');
      if (i > 0) t.ok(e.timestamp >= read.events[i - 1].timestamp, 'in time order');
    }
  },
);

t.test('export tokens: the catalog fields belong to the item and win over the event', async (t) => {
  const catalog = catalogFieldMap([{ item: 'm', fields: { genre: 'Drama' }, active: true }]);
  const event = {
    user: 'u 1',
    item: 'm',
    label: 1,
    timestamp: 0,
    fields: { genre: 'Other', device: 'a:b|c' },
  };
  t.same(eventTokens(event, catalog), {
    user: 'user=u 1',
    item: 'item=m',
    fields: ['device=a:b|c', 'genre=Drama'],
  });
  t.equal(exportLine(event, catalog), '1\tuser=u_1\titem=m\tdevice=a_b_c genre=Drama');
  t.equal(cleanToken('a\tb c'), 'a_b_c');
});

t.test(
  'streamEval tells every pre-learning prediction, the same from a file as from given events',
  async (t) => {
    const opts = { dim: 8, pme: false, windowEvents: 1000, negatives: 0, batch: 4, seed: 1 };
    const read = await readEvents({
      path: fixture('ratings.csv'),
      format: 'movielens',
      itemsPath: fixture('movies.csv'),
    });
    const fromFile: number[] = [];
    const labels: number[] = [];
    const r = await streamEval({
      ...opts,
      data: fixture('ratings.csv'),
      format: 'movielens',
      items: fixture('movies.csv'),
      onPrediction: (p, y) => {
        fromFile.push(p);
        labels.push(y);
      },
    });
    t.equal(fromFile.length, r.events);
    t.same(
      labels,
      read.events.map((e) => e.label),
      'in the order of the events',
    );
    const given: number[] = [];
    await streamEval({ ...opts, input: read, onPrediction: (p) => given.push(p) });
    t.same(given, fromFile);
  },
);

t.test('the rate is chosen on the first 20% only; the figure is the rest', async (t) => {
  const n = 100;
  const y = Float32Array.from({ length: n }, (_, i) => i % 2);
  const k = chooseEnd(n, 0.2);
  t.equal(k, 20);
  t.equal(chooseEnd(99, 0.2), 19, 'floored');
  // A: perfect on the first 20, reversed after. B: reversed on the first 20, perfect after.
  const a = Float64Array.from(y, (l, i) => (i < k ? 0.2 + 0.6 * l : 0.8 - 0.6 * l));
  const b = Float64Array.from(y, (l, i) => (i < k ? 0.8 - 0.6 * l : 0.2 + 0.6 * l));
  t.equal(chooseRate([b, a], y, 0.2), 1, 'the best on the first 20% wins, whatever follows');
  const s = scoreRun(a, y, 0.2);
  t.equal(s.choose.auc, 1);
  t.equal(s.rest.auc, 0, 'scored on the events after the choice only');
  t.equal(s.rest.events, 80);
  t.equal(s.last.events, 20);
  t.equal(s.all.events, 100);
  t.equal(s.all.auc, exactAuc(a, y));
  t.ok(Math.abs(s.choose.logloss + Math.log(0.8)) < 1e-12, 'logloss of p = 0.8 on the right side');
  // Ties keep the earlier grid value; a diverged run (NaN) never wins; none at all: -1.
  t.equal(chooseRate([a, a], y, 0.2), 0);
  const nan = new Float64Array(n).fill(Number.NaN);
  t.equal(chooseRate([nan, b], y, 0.2), 1);
  t.equal(chooseRate([nan], y, 0.2), -1);
  t.ok(Number.isNaN(scoreSlice(nan, y, 0, n).auc));
  // Changing everything after the first 20% never changes the choice.
  const a2 = a.slice();
  const b2 = b.slice();
  for (let i = k; i < n; i++) {
    a2[i] = 0.5;
    b2[i] = 0.2 + 0.6 * y[i];
  }
  t.equal(chooseRate([b2, a2], y, 0.2), 1);
  t.throws(() => scoreRun(a.subarray(0, 50), y, 0.2), /50 predictions for 100 labels/);
});

t.test('mean ± std and the peers probability files', async (t) => {
  t.same(meanStd([1]), { mean: 1, std: 0 });
  const m = meanStd([1, 2, 3]);
  t.equal(m.mean, 2);
  t.equal(m.std, 1, 'sample standard deviation');
  // The 95% t-interval of the mean: t(2 df) = 4.303, std 1, n 3.
  const [lo, hi] = meanInterval([1, 2, 3]);
  t.ok(
    Math.abs(lo - (2 - 4.303 / Math.sqrt(3))) < 1e-12 && Math.abs(hi - (2 + 4.303 / Math.sqrt(3))) < 1e-12,
  );
  t.ok(meanInterval([1]).every(Number.isNaN), 'one value: no interval');
  const p = parseProbabilities('0.25\n0.5\nnan\n');
  t.same(Array.from(p.subarray(0, 2)), [0.25, 0.5]);
  t.equal(p.length, 3);
  t.ok(Number.isNaN(p[2]), 'a diverged prediction stays NaN');
});

t.test(
  "the synthetic stream: bench:planted's, the same for a seed, the item's category exported",
  async (t) => {
    const a = plantedStream(1, 2000, 400);
    const b = plantedStream(1, 2000, 400);
    t.same(a.events, b.events, 'the same seed gives the same stream');
    t.notSame(plantedStream(2, 2000, 400).events, a.events, 'another seed, another stream');
    t.equal(a.events.length, 2000);
    const users = new Set(a.events.map((e) => e.user));
    t.ok(users.size < 400, `a heavy tail: ${users.size} of 400 users seen`);
    for (const u of users) t.ok(PLANTED_RANKS.includes(a.workload.rankOf(u)), `user ${u}'s rank is planted`);
    const fields = catalogFieldMap(a.catalog);
    for (const e of a.events.slice(0, 50)) {
      const p = parseExportLine(exportLine(e, fields));
      t.equal(p.item, `item=${e.item}`);
      t.same(
        p.fields,
        [`category=${a.workload.itemFields(e.item).category}`],
        "the item's category, from the catalog",
      );
    }
  },
);

import t from 'tap';
import { SYNTHETIC_DEFAULTS, SyntheticWorkload, splitEvents } from '../../src/data/index.js';

/** Area under the ROC curve of scores against 0/1 labels (ties count half). */
function auc(scores: number[], labels: number[]): number {
  const order = scores.map((_, i) => i).sort((a, b) => scores[a] - scores[b]);
  let rankSum = 0;
  let positives = 0;
  for (let k = 0; k < order.length; ) {
    let end = k;
    while (end + 1 < order.length && scores[order[end + 1]] === scores[order[k]]) end++;
    const rank = (k + end) / 2 + 1;
    for (let j = k; j <= end; j++) {
      if (labels[order[j]] === 1) {
        rankSum += rank;
        positives++;
      }
    }
    k = end + 1;
  }
  const negatives = order.length - positives;
  return (rankSum - (positives * (positives + 1)) / 2) / (positives * negatives);
}

t.test('same seed, same catalog and stream; another seed, another', async (t) => {
  const opts = { seed: 42, users: 200, items: 300, fields: [{ name: 'category', cardinality: 7 }] };
  const a = new SyntheticWorkload(opts);
  const b = new SyntheticWorkload(opts);
  const c = new SyntheticWorkload({ ...opts, seed: 43 });
  const ea = a.take(2000);
  t.same(b.take(2000), ea);
  t.same(b.catalog(), a.catalog());
  // (t.notSame diffs the whole arrays: compare a digest instead, it is much faster.)
  t.not(JSON.stringify(c.take(2000)), JSON.stringify(ea));
  t.equal(a.count, 2000);
  t.same([...new SyntheticWorkload(opts).events(5)], ea.slice(0, 5), 'the generator yields the same stream');
});

t.test('events: ids, timestamps, item fields', async (t) => {
  const w = new SyntheticWorkload({
    seed: 3,
    users: 50,
    items: 80,
    fields: [
      { name: 'category', cardinality: 5 },
      { name: 'brand', cardinality: 11 },
    ],
    startTime: 1000,
    eventIntervalMs: 250,
  });
  const events = w.take(500);
  events.forEach((e, k) => {
    if (e.timestamp !== 1000 + 250 * k) t.fail(`timestamp of event ${k}`);
  });
  t.ok(events.every((e) => /^u\d+$/.test(e.user) && Number(e.user.slice(1)) < 50));
  t.ok(events.every((e) => /^i\d+$/.test(e.item) && Number(e.item.slice(1)) < 80));
  t.ok(events.every((e) => e.label === 0 || e.label === 1));
  t.ok(events.every((e) => Object.keys(e.fields).join() === 'category,brand'));
  t.ok(
    events.every((e) => e.fields.category === w.itemFields(e.item).category && Number(e.fields.brand) < 11),
  );
  events[0].fields.category = 'changed';
  t.not(w.itemFields(events[0].item).category, 'changed', 'an event owns its fields object');
  const catalog = w.catalog();
  t.equal(catalog.length, 80);
  t.same(catalog[7], { item: 'i7', fields: { ...w.itemFields('i7') }, active: true });
  t.ok(new Set(catalog.map((c) => c.fields.brand)).size > 5, 'field values spread over the cardinality');
});

t.test('user and item popularity follow the Zipf exponents', async (t) => {
  const n = 40000;
  const w = new SyntheticWorkload({ seed: 5, users: 100, items: 100, userZipf: 1.2, itemZipf: 0 });
  const users = new Array(100).fill(0);
  const items = new Array(100).fill(0);
  for (const e of w.events(n)) {
    users[Number(e.user.slice(1))]++;
    items[Number(e.item.slice(1))]++;
  }
  let h = 0;
  for (let k = 1; k <= 100; k++) h += 1 / k ** 1.2;
  const p0 = 1 / h;
  t.ok(Math.abs(users[0] / n - p0) < 0.1 * p0, `u0 has its Zipf share (${users[0] / n} vs ${p0})`);
  const p9 = 1 / 10 ** 1.2 / h;
  t.ok(Math.abs(users[9] / n - p9) < 0.2 * p9, `u9 has its Zipf share (${users[9] / n} vs ${p9})`);
  t.ok(users[0] > 10 * users[50], 'strong head-to-tail skew for users');
  t.ok(Math.max(...items) < 2 * Math.min(...items), 'exponent 0: items are uniform');
});

t.test(
  'planted signal: the truth ranks labels well but not perfectly, and hits the positive rate',
  async (t) => {
    const w = new SyntheticWorkload({ seed: 11, users: 500, items: 400, positiveRate: 0.25 });
    const events = w.take(20000);
    const labels = events.map((e) => e.label);
    const truth = events.map((e) => w.trueProbability(e.user, e.item));
    const rate = labels.reduce((a, b) => a + b, 0) / labels.length;
    t.ok(Math.abs(rate - 0.25) < 0.02, `positive rate ${rate} is close to 0.25`);
    const meanTruth = truth.reduce((a, b) => a + b, 0) / truth.length;
    t.ok(Math.abs(meanTruth - rate) < 0.02, `trueProbability is calibrated (${meanTruth} vs ${rate})`);
    const a = auc(truth, labels);
    t.ok(a > 0.75 && a < 0.97, `AUC of the truth is ${a}`);
    const popularity = events.map((e) => -Number(e.item.slice(1)));
    const ap = auc(popularity, labels);
    t.ok(ap < 0.6, `popularity alone predicts little (AUC ${ap})`);

    const noisy = new SyntheticWorkload({ seed: 11, users: 500, items: 400, positiveRate: 0.25, noise: 3 });
    const ne = noisy.take(20000);
    const an = auc(
      ne.map((e) => noisy.trueProbability(e.user, e.item)),
      ne.map((e) => e.label),
    );
    t.ok(an < a - 0.03, `more noise, lower AUC of the truth (${an} < ${a})`);
  },
);

t.test('favourites are the planted top items of a user', async (t) => {
  const w = new SyntheticWorkload({ seed: 17, users: 100, items: 500 });
  let favMean = 0;
  let allMean = 0;
  for (let u = 0; u < 20; u++) {
    const fav = w.favourites(`u${u}`, 10);
    t.equal(fav.length, 10);
    const p = fav.map((i) => w.trueProbability(u, i));
    for (let k = 1; k < p.length; k++) if (p[k] > p[k - 1]) t.fail('favourites are best first');
    favMean += p.reduce((a, b) => a + b, 0) / 10;
    let s = 0;
    for (let i = 0; i < 500; i++) s += w.trueProbability(u, i);
    allMean += s / 500;
    let best = 0;
    for (let i = 0; i < 500; i++) best = Math.max(best, w.trueProbability(u, `i${i}`));
    t.equal(p[0], best, 'the first favourite is the best item');
  }
  t.ok(favMean / 20 > allMean / 20 + 0.3, `favourites ${favMean / 20} vs all ${allMean / 20}`);
  t.not(w.favourites('u0', 5).join(), w.favourites('u1', 5).join(), 'users differ');
  t.throws(() => w.trueProbability('u100', 'i0'), RangeError);
  t.throws(() => w.favourites('x1', 3), RangeError);
});

t.test('item fields carry preference signal, scaled by fieldShare', async (t) => {
  // Spread of a user's mean true probability across categories: fields that explain the item
  // vectors make some categories clearly better for a user than others.
  const spread = (fieldShare: number): number => {
    const w = new SyntheticWorkload({ seed: 23, users: 30, items: 2000, fieldShare });
    const catalog = w.catalog();
    let total = 0;
    for (let u = 0; u < 30; u++) {
      const sum = new Array(20).fill(0);
      const cnt = new Array(20).fill(0);
      for (let i = 0; i < catalog.length; i++) {
        const c = Number(catalog[i].fields.category);
        sum[c] += w.trueProbability(u, i);
        cnt[c]++;
      }
      const means = sum.map((s, c) => s / cnt[c]);
      total += Math.max(...means) - Math.min(...means);
    }
    return total / 30;
  };
  const none = spread(0);
  const strong = spread(0.9);
  t.ok(strong > 2 * none, `category spread ${strong} (share 0.9) vs ${none} (share 0)`);
});

/** Pearson correlation of two equally long lists. */
function pearson(a: number[], b: number[]): number {
  const n = a.length;
  const ma = a.reduce((x, y) => x + y, 0) / n;
  const mb = b.reduce((x, y) => x + y, 0) / n;
  let cov = 0;
  let va = 0;
  let vb = 0;
  for (let i = 0; i < n; i++) {
    cov += (a[i] - ma) * (b[i] - mb);
    va += (a[i] - ma) ** 2;
    vb += (b[i] - mb) ** 2;
  }
  return cov / Math.sqrt(va * vb);
}

t.test('planted user ranks: a user of rank r is described by r axes', async (t) => {
  const logit = (p: number) => Math.log(p / (1 - p));
  // The noiseless logit over the items, of users u0 and u1: a rank-1 user's preferences are one
  // item axis scaled, so any two such users rank the items alike or exactly reversed.
  const prefs = (w: SyntheticWorkload, u: number) =>
    Array.from({ length: w.options.items }, (_, i) => logit(w.trueProbability(u, i)));
  const one = new SyntheticWorkload({ seed: 3, users: 20, items: 200, latentDim: 8, userRanks: [1] });
  t.equal(one.rankOf('u5'), 1);
  t.ok(Math.abs(Math.abs(pearson(prefs(one, 0), prefs(one, 1))) - 1) < 1e-6, 'rank 1: |correlation| 1');
  const full = new SyntheticWorkload({ seed: 3, users: 20, items: 200, latentDim: 8 });
  t.equal(full.rankOf('u5'), 8, 'without userRanks every user has rank latentDim');
  t.ok(Math.abs(pearson(prefs(full, 0), prefs(full, 1))) < 0.9, 'full rank: two users differ');

  // Ranks are drawn from the list, each often; preferences are as strong at every rank.
  const mixed = new SyntheticWorkload({ seed: 4, users: 2000, items: 100, latentDim: 8, userRanks: [2, 8] });
  const spread: Record<number, number[]> = { 2: [], 8: [] };
  for (let u = 0; u < 2000; u++) {
    const p = prefs(mixed, u);
    const m = p.reduce((x, y) => x + y, 0) / p.length;
    spread[mixed.rankOf(u)].push(p.reduce((x, y) => x + (y - m) ** 2, 0) / p.length);
  }
  t.ok(spread[2].length > 800 && spread[8].length > 800, 'both ranks drawn');
  const mean = (a: number[]) => a.reduce((x, y) => x + y, 0) / a.length;
  t.ok(
    Math.abs(mean(spread[2]) / mean(spread[8]) - 1) < 0.25,
    `variance of preferences alike at rank 2 and 8 (${mean(spread[2]).toFixed(3)}, ${mean(spread[8]).toFixed(3)})`,
  );
  t.same(
    new SyntheticWorkload({ seed: 9, users: 50, items: 50 }).take(20),
    new SyntheticWorkload({ seed: 9, users: 50, items: 50, userRanks: [] }).take(20),
    'no ranks, the same stream',
  );
});

t.test('options: defaults, validation, frozen', async (t) => {
  const w = new SyntheticWorkload();
  t.equal(w.options.users, SYNTHETIC_DEFAULTS.users);
  t.ok(Object.isFrozen(w.options) && Object.isFrozen(w.options.fields));
  for (const bad of [
    { users: 0 },
    { items: 1.5 },
    { latentDim: 0 },
    { positiveRate: 1 },
    { noise: -1 },
    { userZipf: Number.NaN },
    { userRanks: [0] },
    { latentDim: 4, userRanks: [2, 8] },
    { userRanks: [1.5] },
    { fields: [{ name: 'user', cardinality: 3 }] },
    { fields: [{ name: 'a', cardinality: 0 }] },
    {
      fields: [
        { name: 'a', cardinality: 2 },
        { name: 'a', cardinality: 3 },
      ],
    },
  ]) {
    t.throws(() => new SyntheticWorkload(bad), { code: 'PME_ERR_CONFIG_INVALID' }, JSON.stringify(bad));
  }
  const bare = new SyntheticWorkload({ fields: [], items: 10, users: 10 });
  t.same(bare.take(3)[0].fields, {}, 'no fields at all');
});

t.test('splitEvents: deterministic, exact sizes, disjoint, order kept', async (t) => {
  const events = new SyntheticWorkload({ seed: 1, users: 50, items: 50 }).take(1001);
  const [train, valid, test] = splitEvents(events, [0.8, 0.1, 0.1], 7);
  t.same([train.length, valid.length, test.length], [801, 100, 100]);
  const all = new Set([...train, ...valid, ...test]);
  t.equal(all.size, events.length, 'every event in exactly one part');
  for (const part of [train, valid, test]) {
    for (let k = 1; k < part.length; k++)
      if (part[k].timestamp <= part[k - 1].timestamp) t.fail('time order kept');
  }
  const again = splitEvents(events, [0.8, 0.1, 0.1], 7);
  t.same(again, [train, valid, test], 'same seed, same split');
  const other = splitEvents(events, [0.8, 0.1, 0.1], 8);
  t.not(
    other[1].map((e) => e.timestamp).join(),
    valid.map((e) => e.timestamp).join(),
    'another seed, another split',
  );
  t.ok(
    valid.some((e) => e.timestamp > train[400].timestamp) &&
      valid.some((e) => e.timestamp < train[400].timestamp),
    'random, not a time cut',
  );
  t.throws(() => splitEvents(events, [0.5, 0.4], 1), RangeError);
  t.throws(() => splitEvents(events, [1.2, -0.2], 1), RangeError);
  t.same(splitEvents([], [0.5, 0.5], 1), [[], []]);
});

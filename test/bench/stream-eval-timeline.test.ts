import t from 'tap';
import { streamEval } from '../../src/engine/stream-eval.js';

const base = {
  synthetic: 5000,
  dim: 16,
  pme: true,
  windowEvents: 2000,
  negatives: 0,
  batch: 256,
  seed: 1,
};

t.test('stream-eval samples a timeline every N events when asked', async (t) => {
  const r = await streamEval({ ...base, timelineEvents: 1000 });
  const timeline = r.timeline!;
  t.ok(Array.isArray(timeline));
  // Samples at batch boundaries past each 1000 events, plus the end.
  t.equal(timeline.length, 5);
  for (let i = 1; i < timeline.length; i++) {
    t.ok(timeline[i].events > timeline[i - 1].events, 'events grow');
    t.ok(timeline[i].seconds >= timeline[i - 1].seconds, 'time grows');
  }
  for (const [i, s] of timeline.slice(0, -1).entries())
    t.ok(
      s.events >= (i + 1) * 1000 && s.events < (i + 1) * 1000 + base.batch,
      `sample ${i} near ${(i + 1) * 1000}`,
    );
  const last = timeline.at(-1)!;
  t.equal(last.events, r.events, 'the last sample is the end of the stream');
  t.equal(last.auc, r.auc);
  t.equal(last.totalBytes, r.totalEmbeddingBytes);
  t.same(last.tiers, r.tiers);
  t.equal(
    last.tiers.reduce((n, x) => n + x.bytes, 0) <= last.totalBytes,
    true,
    'tier bytes fit in the total',
  );
});

t.test('no timeline unless asked', async (t) => {
  const r = await streamEval({ ...base, synthetic: 1000 });
  t.equal(r.timeline, undefined);
  t.notOk('timeline' in r);
});

t.test('stream-eval tells every live token, its size and its vector at the end when asked', async (t) => {
  const sizes = new Map<string, number>();
  let vectors = 0;
  const r = await streamEval({
    ...base,
    onToken: (key, size, vector) => {
      t.notOk(sizes.has(key), `${key} told once`);
      sizes.set(key, size);
      // Nested tiers: D dims, something in the first `size`, zeros past them.
      const v = vector();
      if (
        v.length === base.dim &&
        v.subarray(size).every((x) => x === 0) &&
        (size === 0 || v.subarray(0, size).some((x) => x !== 0))
      )
        vectors++;
    },
  });
  t.equal(vectors, sizes.size, 'every vector in D-space, zero past its size only');
  const perSize = new Map<number, number>();
  for (const s of sizes.values()) perSize.set(s, (perSize.get(s) ?? 0) + 1);
  for (const tier of r.tiers) t.equal(perSize.get(tier.size) ?? 0, tier.tokens, `tier ${tier.size}`);
  t.ok(sizes.has('user=u0') && sizes.has('item=i0'), 'keys as the store holds them');
  t.ok(perSize.size > 1, 'PME left tokens at more than one size');
});

t.test('stream-eval creates preset tokens at their sizes before the replay', async (t) => {
  // Without PME nothing resizes a token: the users given a size keep it, the others take the start size.
  const sizes = new Map<string, number>();
  const presetSizes = new Map([
    ['user=u0', 2],
    ['user=u1', 8],
  ]);
  await streamEval({
    ...base,
    synthetic: 1000,
    pme: false,
    startSize: 16,
    presetSizes,
    onToken: (key, size) => sizes.set(key, size),
  });
  t.equal(sizes.get('user=u0'), 2);
  t.equal(sizes.get('user=u1'), 8);
  t.equal(sizes.get('user=u2'), 16, 'a user not preset: the start size');
});

t.test("a replay's windows score the events it learns next (the lookahead)", async (t) => {
  const r = await streamEval({ ...base, synthetic: 7000 });
  t.ok(r.windows.length >= 3, `${r.windows.length} windows`);
  // A window runs at a batch's end: 2,048 events follow every window but the last, whose
  // lookahead holds the rest of the stream.
  for (const w of r.windows.slice(0, -1)) t.equal(w.lookahead?.events, 2048, `window ${w.id}: 2,048 next`);
  const last = r.windows.at(-1)!;
  t.ok(
    last.lookahead !== null && last.lookahead.events < 2048,
    `the last window: ${last.lookahead?.events} left`,
  );
  for (const w of r.windows) t.not(w.lookahead?.aucBefore, w.probe?.aucBefore, 'other events than the probe');
});

t.test('stream-eval refuses a window size given twice, in pmeOptions too', async (t) => {
  // The replay's own windowEvents sets the windows: a second one in pmeOptions was dropped silently.
  await t.rejects(streamEval({ ...base, pmeOptions: { windowEvents: 500 } }), {
    code: 'PME_ERR_CONFIG_INVALID',
    message: /pmeOptions\.windowEvents .*windowEvents/,
  });
  // Other controller options pass through: a hot threshold no token reaches searches nothing.
  const r = await streamEval({ ...base, pmeOptions: { hotThreshold: 1e9 } });
  t.equal(
    r.windows.reduce((n, w) => n + w.searched, 0),
    0,
    'no window searched a token',
  );
});

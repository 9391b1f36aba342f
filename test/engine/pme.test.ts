import t from 'tap';
import type { Interaction } from '../../src/data/event.js';
import type { TokenId } from '../../src/engine/model/model.js';
import { PmeController, type PmeOptions } from '../../src/engine/pme/controller.js';
import { resolvePmeOptions } from '../../src/engine/pme/options.js';
import { scoreProbe } from '../../src/engine/pme/probe.js';
import { Transfer } from '../../src/engine/pme/transfer.js';
import { Trainer } from '../../src/engine/trainer/index.js';
import { EmbeddingStore } from '../../src/store/index.js';
import { ManualClock } from '../../src/util/clock.js';
import { createRandom } from '../../src/util/random.js';
import { TieredStore } from './fake-store.js';

const D = 16;
const LADDER = [0, 2, 4, 8, 16];
const RICH = 20;
const NOISE = 200;
const ITEMS = 50;

/** Rich users' labels follow sign(u·v) over 8 planted dims; noise users' labels are coin flips. */
function plantedStream(n: number, seed = 3): Interaction[] {
  const random = createRandom(seed);
  const vec = () => Array.from({ length: 8 }, () => random.normal());
  const users = Array.from({ length: RICH }, vec);
  const items = Array.from({ length: ITEMS }, vec);
  const events: Interaction[] = [];
  for (let i = 0; i < n; i++) {
    const u = random.int(RICH + NOISE);
    const it = random.int(ITEMS);
    let label: number;
    if (u < RICH) {
      let dot = 0;
      for (let d = 0; d < 8; d++) dot += users[u][d] * items[it][d];
      label = dot > 0 ? 1 : 0;
    } else label = random.next() < 0.5 ? 1 : 0;
    events.push({ user: `${u < RICH ? 'r' : 'n'}${u}`, item: `i${it}`, label, timestamp: i, fields: {} });
  }
  return events;
}

/** New tokens at `startSize`: 0 by default, so that pruning (which stops at the start size) can
 *  take the noise users' rows away entirely. */
function setup(chunk = 512, startSize = 0, options: Partial<PmeOptions> = {}) {
  const store = new TieredStore(D, LADDER, startSize);
  const clock = new ManualClock(0);
  // The budget alone decides sizes here (target 1: prune only what it needs), unless `options` say.
  const pme = new PmeController(store, {
    windowEvents: 0,
    hotThreshold: 5,
    coldThreshold: 0.5,
    target: 1,
    searchShare: 1,
    headroom: 0,
    chunk,
    clock,
    ...options,
  });
  // The linear weights at the rows' rate, as the planted split was tuned: a faster linear part
  // takes more of the rich users' signal, leaving less importance in their rows. Its events have
  // 2 tokens: rateTokens 2 keeps the rows at the rate itself.
  const trainer = new Trainer(store, {
    clock,
    observer: pme,
    seed: 1,
    metricsWindow: 2000,
    // Learned projections: the transfer tests check least squares through P_s.
    model: { linearLearningRate: 0.05, rateTokens: 2, projection: 'learned' },
  });
  pme.attach(trainer);
  return { store, pme, trainer };
}

t.test('hot tokens are searched at D; the window finds the planted split under the budget', async (t) => {
  const { store, pme, trainer } = setup();
  const events = plantedStream(60000);
  for (let i = 0; i < events.length; i += 200) trainer.learn(events.slice(i, i + 200));
  const searched = store.tiers[LADDER.indexOf(D)].count;
  t.equal(searched, RICH + NOISE + ITEMS, 'every hot token was promoted to D');
  store.budgetBytes = 6000;
  const report = await pme.runWindow('test');
  const acc = store.accounting();
  t.ok(acc.totalBytes <= 6000, `budget respected: ${acc.totalBytes} <= 6000`);
  t.equal(report.totalBytesAfter, acc.totalBytes);
  t.equal(report.searched, searched);
  t.ok(report.moved > 0, `moved ${report.moved} threshold ${report.threshold}`);
  const sizes = (prefix: string, n: number, from = 0) =>
    Array.from({ length: n }, (_, k) => store.sizeOf(store.id(`user=${prefix}${from + k}`)));
  const rich = sizes('r', RICH);
  const noise = sizes('n', NOISE, RICH);
  const mean = (a: number[]) => a.reduce((x, y) => x + y, 0) / a.length;
  t.ok(mean(rich) >= 5 * mean(noise), `rich mean ${mean(rich)} vs noise mean ${mean(noise)}`);
  t.ok(
    noise.filter((s) => s === 0).length > NOISE * 0.8,
    `noise users at size 0: ${noise.filter((s) => s === 0).length}`,
  );
  t.ok(
    rich.filter((s) => s >= 2).length >= RICH * 0.8,
    `rich users at >= 2: ${rich.filter((s) => s >= 2).length}`,
  );
  t.same(pme.reports(), [report]);
  // Learning goes on after the window and the AUC of the rich users' events stays useful.
  const more = plantedStream(10000, 3);
  for (let i = 0; i < more.length; i += 200) trainer.learn(more.slice(i, i + 200));
  t.ok(trainer.stats().windowAuc > 0.5, `windowed AUC after the window ${trainer.stats().windowAuc}`);
});

t.test(
  'pruning stops at the start size: the hot tokens it searched keep at least their old rows',
  async (t) => {
    // As the planted-split test, with new tokens at 2: the noise users it prunes to 0 there end at 2.
    const { store, pme, trainer } = setup(512, 2);
    const events = plantedStream(60000);
    for (let i = 0; i < events.length; i += 200) trainer.learn(events.slice(i, i + 200));
    const searched: number[] = [];
    store.forEachInTier(D, (id) => searched.push(id));
    store.budgetBytes = 6000;
    const report = await pme.runWindow('test');
    t.ok(report.moved > 0, `moved ${report.moved}`);
    const sizes = searched.map((id) => store.sizeOf(id));
    t.equal(
      sizes.filter((s) => s < 2).length,
      0,
      `no searched token below 2: ${sizes.filter((s) => s < 2).length}`,
    );
    t.ok(
      sizes.some((s) => s === 2),
      `pruned to the start size: ${sizes.filter((s) => s === 2).length}`,
    );
  },
);

t.test('a target that pruning cannot reach leaves the searched tokens to the budget', async (t) => {
  // New tokens at 8 of D = 16: the tokens not searched hold about half of what every token would at
  // D, so pruning the searched ones (which stop at 8) cannot bring the rows to a 10% target.
  const { store, pme, trainer } = setup(512, 8, { target: 0.1 });
  const events = plantedStream(20000);
  for (let i = 0; i < events.length; i += 200) trainer.learn(events.slice(i, i + 200));
  const searched: TokenId[] = [];
  store.forEachInTier(D, (id) => void searched.push(id));
  t.ok(searched.length > 0, `tokens searched at D: ${searched.length}`);
  const first = await pme.runWindow('test');
  t.equal(first.moved, 0, 'no budget: nothing pruned for a target out of reach');
  t.same(
    searched.map((id) => store.sizeOf(id)),
    searched.map(() => D),
    'every searched token keeps D',
  );
  // A budget below the rows still prunes them, as far as it needs.
  const budget = store.accounting().totalBytes - searched.length * store.bytesPerRow(8);
  store.budgetBytes = budget;
  const second = await pme.runWindow('test');
  t.ok(second.moved > 0, `the budget prunes: ${second.moved} moved`);
  t.ok(
    store.accounting().totalBytes <= budget,
    `within the budget: ${store.accounting().totalBytes} <= ${budget}`,
  );
  t.ok(
    searched.some((id) => store.alive(id) && store.sizeOf(id) === D),
    'some searched tokens keep D: the budget needed only part of them',
  );
});

// The next two check least squares on the vector (partnerRidge Infinity); the transfer that keeps
// the partners' scores instead is checked further down and in pme-partners.test.ts.
t.test('transfer keeps a moved token close to its pruned D-space vector', async (t) => {
  const { store, pme, trainer } = setup(512, 0, { partnerRidge: Number.POSITIVE_INFINITY });
  const events = plantedStream(30000);
  for (let i = 0; i < events.length; i += 200) trainer.learn(events.slice(i, i + 200));
  const id = store.id('user=r0');
  const before = new Float64Array(D);
  trainer.model.vectorOf(id, before);
  store.budgetBytes = 6000;
  const report = await pme.runWindow('test');
  const after = new Float64Array(D);
  trainer.model.vectorOf(id, after);
  let err = 0;
  let norm = 0;
  for (let d = 0; d < D; d++) {
    err += (after[d] - before[d]) ** 2;
    norm += before[d] ** 2;
  }
  t.ok(store.sizeOf(id) < D, `moved to ${store.sizeOf(id)}`);
  // Least squares never does worse than dropping the vector (relative error <= 1). Measured here:
  // tokens moved to small tiers lose most of their vector, because P_s still spans mostly the first
  // s dims while a searched token's important dims are anywhere (see the report to the lead).
  t.ok(Math.sqrt(err / norm) <= 1 + 1e-3, `relative change of r0's vector ${Math.sqrt(err / norm)}`);
  t.ok(report.transferError.max <= 1 + 1e-6, `transfer error mean ${report.transferError.mean}`);
});

t.test('windows yield: scoring runs between chunks, a second window is refused while one runs', async (t) => {
  const { store, pme, trainer } = setup(8);
  const events = plantedStream(20000);
  for (let i = 0; i < events.length; i += 200) trainer.learn(events.slice(i, i + 200));
  store.budgetBytes = 8000;
  const id = pme.startWindow('api');
  t.equal(id, 1);
  t.throws(() => pme.startWindow('api'), { code: 'PME_ERR_PRUNE_RUNNING' });
  let scoredDuring = 0;
  const running = pme.running!;
  let done = false;
  running.then(() => {
    done = true;
  });
  while (!done) {
    const [p] = trainer.score('r1', ['i1']);
    t.ok(p > 0 && p < 1);
    scoredDuring++;
    await new Promise((resolve) => setImmediate(resolve));
  }
  const report = await running;
  t.ok(scoredDuring > 3, `scored ${scoredDuring} times during the window`);
  t.ok(
    report.longestPauseMs < report.durationMs,
    `longest pause ${report.longestPauseMs} of ${report.durationMs} ms`,
  );
  t.equal(pme.running, null);
});

t.test('transfer: each moved token is the least-squares fit of its pruned vector', async (t) => {
  // Summed importances, so that the report's threshold reads the store's own.
  const { store, pme, trainer } = setup(512, 0, {
    partnerRidge: Number.POSITIVE_INFINITY,
    forecastImportance: false,
  });
  const events = plantedStream(30000);
  for (let i = 0; i < events.length; i += 200) trainer.learn(events.slice(i, i + 200));
  // The pruned targets need the rows and importances before the window.
  const top = store.tiers[LADDER.indexOf(D)];
  const before = new Map<number, { v: Float64Array; imp: Float32Array }>();
  store.forEachInTier(D, (id) => {
    const off = store.slotOf[id] * D;
    before.set(id, {
      v: Float64Array.from(top.params.subarray(off, off + D)),
      imp: top.importance!.slice(off, off + D),
    });
  });
  store.budgetBytes = 9000;
  const report = await pme.runWindow('test');
  t.ok(report.moved > 10, `moved ${report.moved}`);
  let checked = 0;
  let errSum = 0;
  for (const [id, { v, imp }] of before) {
    const s = store.sizeOf(id);
    if (s === D) continue;
    const target = v.map((x, d) => (imp[d] >= report.threshold ? x : 0));
    if (s === 0) {
      // Dropped: the whole pruned vector is the error (relative 1, or 0 when nothing was kept).
      errSum += target.some((x) => x !== 0) ? 1 : 0;
      checked++;
      continue;
    }
    const P = trainer.model.projections[store.tierOf[id]]!;
    const after = new Float64Array(D);
    trainer.model.vectorOf(id, after);
    // Any other s-vector does no better; e = P·v' (exact when P has orthonormal rows) is one.
    const cand = new Float64Array(D);
    for (let i = 0; i < s; i++) {
      let e = 0;
      for (let d = 0; d < D; d++) e += P[i * D + d] * target[d];
      for (let d = 0; d < D; d++) cand[d] += e * P[i * D + d];
    }
    let errLs = 0;
    let errCand = 0;
    let norm = 0;
    for (let d = 0; d < D; d++) {
      errLs += (after[d] - target[d]) ** 2;
      errCand += (cand[d] - target[d]) ** 2;
      norm += target[d] ** 2;
    }
    t.ok(errLs <= errCand * (1 + 1e-3) + 1e-9, `token ${id}: ${errLs} <= ${errCand}`);
    errSum += Math.sqrt(errLs / norm);
    checked++;
  }
  t.ok(checked > 10, `checked ${checked} moved tokens`);
  // Stated bound: the window reports the same mean error that was measured here, and it is < 1
  // (1 = the vector dropped).
  t.ok(
    Math.abs(errSum / checked - report.transferError.mean) < 1e-3,
    `mean ${errSum / checked} vs ${report.transferError.mean}`,
  );
  t.ok(report.transferError.mean < 1, `mean transfer error ${report.transferError.mean}`);
});

t.test(
  'a moved token keeps its optimizer scale; cooling steps the least recently seen down to the start size',
  async (t) => {
    // A target of 1% of full: the rows are over the limit at every window, so cooling has work.
    const clock = new ManualClock(0);
    const store = new EmbeddingStore({ ladder: LADDER, startSize: 2, clock });
    const pme = new PmeController(store, {
      windowEvents: 0,
      hotThreshold: 5,
      target: 0.01,
      headroom: 0,
      clock,
    });
    const trainer = new Trainer(store, { clock, observer: pme, seed: 1 });
    pme.attach(trainer);
    // A token at 8, seen before any token of the stream: the least recently seen of all.
    const id = store.getOrCreate('user=cold', 8);
    clock.advance(1);
    const events = plantedStream(20000);
    for (let i = 0; i < events.length; i += 200) trainer.learn(events.slice(i, i + 200));
    const mean = (x: number) => {
      const tier = store.tiers[store.tierOf[x]];
      const width = tier.size * store.options.optimizerSlots;
      let sum = 0;
      for (let i = 0; i < width; i++) sum += tier.optimizer[store.slotOf[x] * width + i];
      return width === 0 ? 0 : sum / width;
    };
    const width = 8 * store.options.optimizerSlots;
    store.tiers[store.tierOf[id]].optimizer.fill(
      2.5,
      store.slotOf[id] * width,
      (store.slotOf[id] + 1) * width,
    );
    const report = await pme.runWindow('test');
    t.equal(store.sizeOf(id), 2, 'stepped down to the start size (8 -> 4 -> 2)');
    t.ok(report.demoted >= 2, `${report.demoted} steps down`);
    t.ok(Math.abs(mean(id) - 2.5) < 1e-6, `accumulators carried: ${mean(id)}`);
    await pme.runWindow('test');
    t.equal(store.sizeOf(id), 2, 'not below the start size (2)');
  },
);

t.test('cooling frees only what the limit needs, least recently seen first', async (t) => {
  const clock = new ManualClock(0);
  /** Two tokens at 8 (the one created first seen last), 40 at the start size seen after both, a
   *  token at the start size seen before all (with `oldest`), and a limit under the live bytes by
   *  `short` bytes: the target's, or the budget's less its headroom (a budget the store holds
   *  them in, and the target at 1). */
  const setupCooling = (short: (step: number) => number, limit: 'target' | 'budget', oldest = false) => {
    const budgetBytes = limit === 'budget' ? 1.25 * coolingBytes() : Number.POSITIVE_INFINITY;
    const store = new EmbeddingStore({ ladder: LADDER, startSize: 2, clock, budgetBytes, evictedBuckets: 0 });
    if (oldest) store.getOrCreate('user=oldest', 2, 0);
    const lessCold = store.getOrCreate('user=less-cold', 8, 2);
    const colder = store.getOrCreate('user=colder', 8, 1);
    for (let u = 0; u < 40; u++) store.getOrCreate(`user=filler-${u}`, 2, 3);
    const live = new Transfer(store, resolvePmeOptions(), () => null).liveBytes(store.accounting());
    const step = store.bytesPerRow(8) - store.bytesPerRow(4);
    const bytes = live - short(step);
    const pme = new PmeController(store, {
      windowEvents: 0,
      ...(limit === 'target'
        ? { targetBytes: bytes, headroom: 0 }
        : { target: 1, searchShare: 0.05, headroom: 1 - bytes / budgetBytes }),
      fill: false,
      clock,
    });
    return { store, pme, lessCold, colder };
  };
  /** About what the tokens of setupCooling take in a store without a budget (and without the
   *  evicted tokens' table, which a budget sizes): 1.25 times it is a budget that holds them. */
  const coolingBytes = () => {
    const store = new EmbeddingStore({ ladder: LADDER, startSize: 2, clock, evictedBuckets: 0 });
    for (let u = 0; u < 43; u++) store.getOrCreate(`user=filler-${u}`, u < 2 ? 8 : 2, 3);
    return new Transfer(store, resolvePmeOptions(), () => null).liveBytes(store.accounting());
  };
  for (const limit of ['target', 'budget'] as const) {
    {
      // Under the limit: both keep the size they have room for.
      const { store, pme, lessCold, colder } = setupCooling(() => -1, limit);
      await pme.runWindow('test');
      t.equal(store.sizeOf(colder), 8, `${limit}: rows under the limit, not stepped down`);
      t.equal(store.sizeOf(lessCold), 8);
      t.equal(pme.reports().at(-1)!.demoted, 0);
    }
    {
      // Over the limit by half a step: the least recently seen steps down, the other stays.
      const { store, pme, lessCold, colder } = setupCooling((step) => step / 2, limit);
      await pme.runWindow('test');
      t.equal(store.sizeOf(colder), 4, `${limit}: the least recently seen steps down`);
      t.equal(store.sizeOf(lessCold), 8, 'one step was all the limit needed');
      t.equal(pme.reports().at(-1)!.demoted, 1);
    }
  }
  {
    // The budget sets the limit and evictions are cold: a token at the start size seen before
    // both is the store's to evict first, so cooling steps nobody down (relieve's recency guard).
    const { store, pme, lessCold, colder } = setupCooling((step) => step / 2, 'budget', true);
    await pme.runWindow('test');
    t.equal(store.sizeOf(colder), 8, 'budget: an older token at the start size goes first');
    t.equal(store.sizeOf(lessCold), 8);
    t.equal(pme.reports().at(-1)!.demoted, 0);
  }
  {
    // The target sets it: nothing will evict that token, so cooling goes on without it.
    const { store, pme, colder } = setupCooling((step) => step / 2, 'target', true);
    await pme.runWindow('test');
    t.equal(store.sizeOf(colder), 4, 'target: the older token at the start size does not stop cooling');
    t.equal(pme.reports().at(-1)!.demoted, 1);
  }
});

t.test('cooling yields to the event loop between chunks of steps', async (t) => {
  /** Event-loop turns taken while a window of a store with 12 tokens at 8 runs, with a target
   *  under the live bytes by `short` bytes and 2 steps a chunk. */
  const turnsOfWindow = async (short: (step: number) => number) => {
    const clock = new ManualClock(0);
    const store = new EmbeddingStore({ ladder: LADDER, startSize: 2, clock });
    for (let u = 0; u < 12; u++) store.getOrCreate(`user=cooling-${u}`, 8, u);
    const live = new Transfer(store, resolvePmeOptions(), () => null).liveBytes(store.accounting());
    const step = store.bytesPerRow(8) - store.bytesPerRow(4);
    const pme = new PmeController(store, {
      windowEvents: 0,
      target: 1,
      targetBytes: live - short(step),
      headroom: 0,
      fill: false,
      chunk: 2,
      clock,
    });
    let done = false;
    const window = pme.runWindow('test').finally(() => {
      done = true;
    });
    let turns = 0;
    while (!done) {
      await new Promise((resolve) => setImmediate(resolve));
      turns++;
    }
    await window;
    return { turns, demoted: pme.reports().at(-1)!.demoted };
  };
  const idle = await turnsOfWindow(() => -1);
  const busy = await turnsOfWindow((step) => 10 * step);
  t.equal(idle.demoted, 0);
  t.ok(busy.demoted >= 10, `${busy.demoted} steps down`);
  t.ok(
    busy.turns - idle.turns >= Math.floor(busy.demoted / 2) - 1,
    `${busy.turns} turns with ${busy.demoted} steps, ${idle.turns} with none`,
  );
});

t.test("the probe: the window's last events scored just before and just after its moves", async (t) => {
  const { store, pme, trainer } = setup();
  const events = plantedStream(30000);
  for (let i = 0; i < events.length; i += 200) trainer.learn(events.slice(i, i + 200));
  const last = events.slice(-2048);
  const before = scoreProbe(last, (e) => trainer.predict(e));
  store.budgetBytes = 6000;
  const report = await pme.runWindow('test');
  t.ok(report.moved > 0, `the window pruned ${report.moved} tokens`);
  const after = scoreProbe(last, (e) => trainer.predict(e));
  t.same(
    report.probe,
    {
      events: 2048,
      aucBefore: before.auc,
      aucAfter: after.auc,
      loglossBefore: before.logloss,
      loglossAfter: after.logloss,
    },
    'the last 2,048 events learned, before and after',
  );
  t.not(after.logloss, before.logloss, 'the moves changed the scores');
  // Nothing left to move: the step is exactly zero.
  const idle = await pme.runWindow('idle');
  t.equal(idle.moved + idle.demoted + idle.evicted, 0, 'an idle window');
  t.equal(idle.probe?.aucAfter, idle.probe?.aucBefore);
  t.equal(idle.probe?.loglossAfter, idle.probe?.loglossBefore);

  const off = new PmeController(new TieredStore(D, LADDER, 2), { windowEvents: 0, probeEvents: 0 });
  t.equal((await off.runWindow('no probe')).probe, null, 'probeEvents 0: no probe');
});

t.test(
  'the lookahead: events a replay learns next, scored before and after the moves, not learned',
  async (t) => {
    const { store, pme, trainer } = setup();
    const events = plantedStream(32000);
    const learned = events.slice(0, 30000);
    const next = events.slice(30000);
    for (let i = 0; i < learned.length; i += 200) trainer.learn(learned.slice(i, i + 200));
    t.equal((await pme.runWindow('no lookahead')).lookahead, null, 'a live stream: none');
    const asked: number[] = [];
    pme.setLookahead((n) => {
      asked.push(n);
      return next.slice(0, n);
    });
    const before = scoreProbe(next, (e) => trainer.predict(e));
    const events0 = trainer.learned;
    store.budgetBytes = 6000;
    const report = await pme.runWindow('test');
    t.ok(report.moved > 0, `the window pruned ${report.moved} tokens`);
    t.same(asked, [2048], 'asks for probeEvents events');
    const after = scoreProbe(next, (e) => trainer.predict(e));
    t.same(
      report.lookahead,
      {
        events: next.length,
        aucBefore: before.auc,
        aucAfter: after.auc,
        loglossBefore: before.logloss,
        loglossAfter: after.logloss,
      },
      'the next events, before and after',
    );
    t.not(after.logloss, before.logloss, 'the moves changed their scores');
    t.equal(trainer.learned, events0, 'scoring them learned nothing');
  },
);

t.test(
  'tick: a window due by time starts without events; otherwise tokens past the TTL expire',
  async (t) => {
    const clock = new ManualClock(0);
    const store = new EmbeddingStore({ ladder: LADDER, startSize: 2, ttlMs: 5000, clock });
    const pme = new PmeController(store, { windowEvents: 0, windowMs: 10_000, clock });
    const trainer = new Trainer(store, { clock, observer: pme, seed: 1 });
    pme.attach(trainer);
    trainer.learn(plantedStream(200));
    const tokens = store.size;
    clock.advance(3000);
    pme.tick();
    t.equal(pme.running, null, 'no window due yet');
    t.equal(store.size, tokens, 'nothing expired yet');
    clock.advance(3000);
    pme.tick();
    t.equal(pme.running, null, 'still no window due');
    t.equal(store.size, 0, 'every token unseen for 6 s of a 5 s TTL expired');
    t.equal(pme.expired, tokens, 'and was counted');
    clock.advance(5000);
    pme.tick();
    t.not(pme.running, null, 'a window due by time started, no event needed');
    t.equal((await pme.running)?.reason, 'time');
  },
);

t.test('a window reports memory as it found it: the slack it gives back is a fall, not a rise', async (t) => {
  const store = new EmbeddingStore({ ladder: LADDER, startSize: 2, chunkRows: 256 });
  // No fill: raising the base would grow the rows, and the slack's fall is what this checks.
  const pme = new PmeController(store, { windowEvents: 0, target: 1, fill: false });
  const trainer = new Trainer(store, { observer: pme, seed: 1 });
  pme.attach(trainer);
  trainer.learn(plantedStream(300));
  const seen = store.accounting().totalBytes;
  const report = await pme.runWindow('test');
  t.equal(report.totalBytesBefore, seen, 'before: the bytes the store held when the window began');
  t.ok(
    report.totalBytesAfter < seen,
    `after ${report.totalBytesAfter} < before ${seen}: chunk slack given back`,
  );
  t.equal(report.totalBytesAfter, store.accounting().totalBytes);
});

t.test(
  "a pruned token keeps its scores with its probe partners: the window's probe moves less",
  async (t) => {
    // Start size 2: pruning stops there, so every move keeps a row the partners can act through.
    const step = async (partnerRidge: number) => {
      const { store, pme, trainer } = setup(512, 2, { partnerRidge });
      const events = plantedStream(30000);
      for (let i = 0; i < events.length; i += 200) trainer.learn(events.slice(i, i + 200));
      store.budgetBytes = 9000;
      const report = await pme.runWindow('test');
      t.ok(report.moved > 10, `partnerRidge ${partnerRidge}: the window pruned ${report.moved} tokens`);
      return report.probe!.loglossAfter - report.probe!.loglossBefore;
    };
    const vector = await step(Number.POSITIVE_INFINITY);
    const partners = await step(1);
    t.ok(vector > 0, `least squares on the vector: the probe's logloss rose by ${vector.toFixed(5)}`);
    t.ok(partners < 0.9 * vector, `keeping the partners' scores: by ${partners.toFixed(5)}`);
  },
);

t.test(
  'a window sizes its searched tokens by a forecast: a user whose events stopped goes first',
  async (t) => {
    // The even rich users come first and stop; the odd ones come after them and go on. Summed
    // importances favour the even ones, searched longer; the forecast (per update, times the updates
    // to come) keeps the odd ones, still coming.
    const rich = (e: Interaction, parity: number) =>
      e.user.startsWith('r') && Number(e.user.slice(1)) % 2 === parity;
    const sizes = async (forecastImportance: boolean) => {
      const { store, pme, trainer } = setup(512, 0, {
        forecastImportance,
        partnerRidge: Number.POSITIVE_INFINITY,
      });
      const first = plantedStream(30000).filter((e) => !rich(e, 1));
      const then = plantedStream(8000, 5).filter((e) => !rich(e, 0));
      for (const events of [first, then])
        for (let i = 0; i < events.length; i += 200) trainer.learn(events.slice(i, i + 200));
      store.budgetBytes = 12000;
      const report = await pme.runWindow('test');
      t.ok(report.moved > 0, `the window pruned ${report.moved} tokens`);
      const mean = (parity: number) => {
        let sum = 0;
        for (let u = parity; u < RICH; u += 2) sum += store.sizeOf(store.id(`user=r${u}`));
        return sum / (RICH / 2);
      };
      return { stopped: mean(0), going: mean(1) };
    };
    const summed = await sizes(false);
    const forecast = await sizes(true);
    t.ok(summed.stopped > summed.going, `summed: stopped ${summed.stopped}, still coming ${summed.going}`);
    t.ok(
      forecast.going > forecast.stopped,
      `forecast: stopped ${forecast.stopped}, still coming ${forecast.going}`,
    );
  },
);

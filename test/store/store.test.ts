import t from 'tap';
import type { ModelStore } from '../../src/engine/model/model.js';
import { EmbeddingStore, stringBytes } from '../../src/store/index.js';
import { hashKey } from '../../src/store/key-table.js';
import { ManualClock } from '../../src/util/clock.js';
import { createRandom } from '../../src/util/random.js';
import { checkInvariants } from './helpers.js';

const truncate = (src: Float32Array, dst: Float32Array): void => {
  dst.set(src.subarray(0, Math.min(src.length, dst.length)));
};

t.test('the store satisfies the model-facing interface of src/engine', async (t) => {
  const store: ModelStore = new EmbeddingStore({ ladder: [0, 4, 8], startSize: 4 });
  t.equal(store.dim, 8);
  t.equal(store.tiers.length, 3);
});

t.test('create, look up, key, field, size, offset, row', async (t) => {
  const clock = new ManualClock(1000);
  const store = new EmbeddingStore({ clock, chunkRows: 4 });
  t.equal(store.id('user=1'), -1, 'absent before creation');
  t.equal(store.size, 0, 'id() has no side effect');
  const a = store.getOrCreate('user=1');
  const b = store.getOrCreate('genre=Drama', 64);
  const c = store.getOrCreate('plain');
  t.equal(store.getOrCreate('user=1'), a, 'second call returns the same id');
  t.equal(store.getOrCreate('user=1', 64), a, 'an existing token keeps its size');
  t.equal(store.size, 3);
  t.same([store.key(a), store.field(a), store.sizeOf(a)], ['user=1', 'user', 8]);
  t.same([store.field(b), store.sizeOf(b)], ['genre', 64]);
  t.equal(store.field(c), '', 'no "=" means no field');
  t.equal(store.lastSeen[a], 1000, 'created at clock time');
  const row = store.row(a);
  t.equal(row.length, 8);
  t.ok(
    row.some((v) => v !== 0),
    'rows are initialised',
  );
  const tier = store.tiers[store.tierOf[a]];
  t.equal(tier.params[store.offsetOf(a) + 3], row[3], 'offsetOf locates the row in the slab');
  t.equal(store.linear[a], 0, 'linear weight starts at 0');
  t.throws(() => store.getOrCreate('x=1', 5), { code: 'PME_ERR_STORE_SIZE' });
  t.throws(() => store.key(99), { code: 'PME_ERR_NOT_FOUND' });
  t.equal(checkInvariants(store), null);
});

t.test('initialisation is a function of (seed, creation count) with the requested std', async (t) => {
  const rowsOf = (seed: number): number[] => {
    const s = new EmbeddingStore({ seed, startSize: 64, initStd: 0.5 });
    const out: number[] = [];
    for (let i = 0; i < 200; i++) out.push(...s.row(s.getOrCreate(`item=${i}`)));
    return out;
  };
  const x = rowsOf(7);
  t.same(rowsOf(7), x, 'same seed, same rows');
  t.not(rowsOf(8)[0], x[0], 'another seed, other rows');
  const mean = x.reduce((a, v) => a + v, 0) / x.length;
  const std = Math.sqrt(x.reduce((a, v) => a + (v - mean) ** 2, 0) / x.length);
  t.ok(Math.abs(mean) < 0.02, `mean ${mean} near 0`);
  t.ok(Math.abs(std - 0.5) < 0.02, `std ${std} near 0.5`);
});

t.test('touch keeps an LRU order per tier, also when time goes backwards', async (t) => {
  const clock = new ManualClock(0);
  const store = new EmbeddingStore({ clock });
  const ids = ['a=1', 'a=2', 'a=3', 'a=4'].map((k) => store.getOrCreate(k));
  store.touch(ids[0], 10);
  store.touch(ids[2], 20);
  t.same(store.lruOrder(8), [ids[2], ids[0], ids[3], ids[1]]);
  store.touch(ids[2], 5); // older event arriving late
  t.same(store.lruOrder(8), [ids[0], ids[2], ids[3], ids[1]]);
  t.equal(store.frequency[ids[2]], 2);
  store.decayFrequencies(0.5);
  t.equal(store.frequency[ids[2]], 1);
  t.equal(checkInvariants(store), null);
});

t.test(
  'a touch far out of time order walks at most 64 places (the order becomes nearly sorted)',
  async (t) => {
    const clock = new ManualClock(0);
    const store = new EmbeddingStore({ clock, chunkRows: 64 });
    const ids: number[] = [];
    for (let i = 0; i < 1000; i++) ids.push(store.getOrCreate(`item=${i}`, undefined, i));
    t.equal(store.lruOrder(8)[0], ids[999], 'creation time given explicitly');
    store.touch(ids[10], 500.5); // late: belongs in the middle of the list
    const order = store.lruOrder(8);
    t.equal(order.length, 1000, 'still every token once');
    t.equal(order.indexOf(ids[10]), 65, 'placed after 64 steps from the head, not 500');
    store.touch(ids[20], -5); // older than everything: straight to the tail
    t.equal(store.lruOrder(8).at(-1), ids[20]);
  },
);

t.test('the LRU order depends on the order of times, never on their distances', async (t) => {
  // Two stores see the same touches, one at times t and one at t³ (same order, other gaps): a
  // run's evictions, and so what it learns, must not depend on how fast the machine went.
  const run = (scale: (x: number) => number): string[] => {
    const store = new EmbeddingStore({ clock: new ManualClock(0), chunkRows: 64 });
    const random = createRandom(7);
    const ids: number[] = [];
    for (let i = 0; i < 400; i++) ids.push(store.getOrCreate(`item=${i}`, undefined, scale(1 + i)));
    for (let k = 0; k < 300; k++) {
      // Out of time order: somewhere between the oldest and the newest.
      store.touch(ids[random.int(ids.length)], scale(1 + random.int(400) + 0.5));
    }
    return store.lruOrder(8).map((id) => store.key(id));
  };
  const linear = run((x) => x);
  t.equal(linear.length, 400);
  t.same(
    run((x) => x ** 3),
    linear,
    'the same order under t³',
  );
  t.same(
    run((x) => Math.log(x)),
    linear,
    'and under log t',
  );
});

t.test(
  'move: transform sees the old row, state restarts, old slot is reused, throw leaves it intact',
  async (t) => {
    const store = new EmbeddingStore({ chunkRows: 2 });
    const ids = [0, 1, 2, 3].map((i) => store.getOrCreate(`item=${i}`));
    const before = Array.from(store.row(ids[1]));
    const tier8 = store.tiers[store.tierOf[ids[1]]];
    tier8.optimizer[store.slotOf[ids[1]] * 8] = 3;
    const lastRowOwner = tier8.ids[tier8.count - 1];
    const lastRow = Array.from(store.row(lastRowOwner));
    let seen: number[] = [];
    store.move(ids[1], 64, (src, dst) => {
      seen = Array.from(src);
      t.equal(dst.length, 64);
      t.ok(
        dst.every((v) => v === 0),
        'dst is zero-filled',
      );
      dst.set(src);
      dst[63] = 9;
    });
    t.same(seen, before);
    t.equal(store.sizeOf(ids[1]), 64);
    const row = store.row(ids[1]);
    t.same(Array.from(row.subarray(0, 8)), before);
    t.equal(row[63], 9);
    const top = store.tiers[store.tierOf[ids[1]]];
    const slot = store.slotOf[ids[1]];
    t.ok(
      top.optimizer.subarray(slot * 64, slot * 64 + 64).every((v) => v === 0),
      'optimizer state starts at 0',
    );
    t.ok(
      top.importance?.subarray(slot * 64, slot * 64 + 64).every((v) => v === 0),
      'importance starts at 0',
    );
    t.equal(tier8.count, 3, 'old tier lost a row');
    t.same(Array.from(store.row(lastRowOwner)), lastRow, 'the row that filled the hole moved intact');
    t.equal(checkInvariants(store), null);

    const snapshot = Array.from(store.row(ids[2]));
    t.throws(() =>
      store.move(ids[2], 2, () => {
        throw new Error('boom');
      }),
    );
    t.equal(store.sizeOf(ids[2]), 8, 'a failed transform leaves the token in place');
    t.same(Array.from(store.row(ids[2])), snapshot);
    store.move(ids[2], 0, truncate);
    t.equal(store.sizeOf(ids[2]), 0);
    t.equal(store.row(ids[2]).length, 0);
    t.equal(checkInvariants(store), null);
  },
);

t.test('evict frees the id for reuse and calls onEvict first', async (t) => {
  const store = new EmbeddingStore();
  const a = store.getOrCreate('user=a');
  store.getOrCreate('user=b');
  const calls: Array<[number, string, number]> = [];
  store.onEvict((id, key) => calls.push([id, key, store.row(id).length]));
  store.evict(a);
  t.same(calls, [[a, 'user=a', 8]], 'hook sees the token still readable');
  t.equal(store.id('user=a'), -1);
  t.notOk(store.alive(a));
  t.throws(() => store.row(a), { code: 'PME_ERR_NOT_FOUND' });
  t.equal(store.getOrCreate('user=c'), a, 'the freed id is reused');
  t.equal(checkInvariants(store), null);
});

t.test('an evicted token’s linear weight comes back with its key, never to another key', async (t) => {
  const clock = new ManualClock(0);
  const store = new EmbeddingStore({ evictedBuckets: 16, linearOptimizerSlots: 2, ttlMs: 10, clock });
  const learn = (key: string, w: number, z: number, n: number): number => {
    const id = store.getOrCreate(key);
    store.linear[id] = w;
    store.linearOptimizer[id * 2] = z;
    store.linearOptimizer[id * 2 + 1] = n;
    return id;
  };
  const weightOf = (id: number): number[] => [
    store.linear[id],
    store.linearOptimizer[id * 2],
    store.linearOptimizer[id * 2 + 1],
  ];
  store.evict(learn('user=a', 0.5, 3, 4));
  t.same(weightOf(store.getOrCreate('user=a')), [0.5, 3, 4], 'the weight and its FTRL state come back');
  t.equal(store.recalled, 1);
  store.evict(learn('user=a', 0.25, 5, 6));
  t.same(weightOf(store.getOrCreate('user=a')), [0.25, 5, 6], 'the newest eviction wins its bucket');
  store.evict(store.id('user=a'));
  store.getOrCreate('user=a');
  t.same(weightOf(store.id('user=a')), [0.25, 5, 6]);
  t.equal(store.recalled, 3);
  // A recalled token's bucket is empty: a second new token of that key would start from 0.
  const again = store.getOrCreate('user=a');
  t.same(weightOf(again), [0.25, 5, 6], 'still the live token');

  // Two keys of one bucket and different fingerprints: the other key starts from 0, and its own
  // eviction takes the bucket.
  const bucket = (k: string): number => hashKey(k) & 15;
  const fingerprint = (k: string): number => hashKey(k) >>> 24;
  let other = '';
  for (let i = 0; other === ''; i++) {
    const k = `item=${i}`;
    if (bucket(k) === bucket('user=b') && fingerprint(k) % 255 !== fingerprint('user=b') % 255) other = k;
  }
  store.evict(learn('user=b', 0.75, 1, 2));
  t.same(weightOf(store.getOrCreate(other)), [0, 0, 0], `${other} (same bucket) starts from 0`);
  t.equal(store.recalled, 3, 'not counted as recalled');
  store.evict(learn(other, -0.5, 7, 8));
  t.same(weightOf(store.getOrCreate('user=b')), [0, 0, 0], 'user=b lost its bucket to the newer eviction');

  // TTL evictions keep weights too.
  const old = learn('user=old', 1.5, 9, 10);
  clock.advance(100);
  store.touch(store.id('user=b'), clock.now());
  store.touch(again, clock.now());
  t.equal(store.evictExpired(clock.now()), 1);
  t.notOk(store.alive(old));
  t.same(weightOf(store.getOrCreate('user=old')), [1.5, 9, 10], 'a TTL-expired token comes back whole');
  t.equal(store.recalled, 4);
  t.equal(store.accounting().evictedBytes, 16 * (5 + 4 * 2), '13 bytes a bucket, counted');
  t.equal(checkInvariants(store), null);

  // Off: nothing kept, nothing counted.
  const off = new EmbeddingStore({ evictedBuckets: 0 });
  off.linear[off.getOrCreate('user=a')] = 0.5;
  off.evict(off.id('user=a'));
  t.equal(off.linear[off.getOrCreate('user=a')], 0);
  t.equal(off.accounting().evictedBytes, 0);
  // Under a budget the table takes at most 1/16 of it.
  const tight = new EmbeddingStore({ budgetBytes: 100_000 });
  t.equal(tight.accounting().evictedBytes, 512 * 9, '512 buckets of 9 bytes fit in 6,250 bytes');
  t.equal(checkInvariants(tight), null);
});

t.test('forEachInTier tolerates moves and evictions from the callback', async (t) => {
  const store = new EmbeddingStore({ chunkRows: 3 });
  for (let i = 0; i < 10; i++) store.getOrCreate(`item=${i}`);
  const visited: number[] = [];
  store.forEachInTier(8, (id) => {
    visited.push(id);
    if (id % 2 === 0) store.move(id, 16, truncate);
    else if (id % 3 === 0) store.evict(id);
  });
  t.same(
    visited.sort((a, b) => a - b),
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
    'each token visited once',
  );
  t.equal(store.tiers[4].count, 5);
  t.equal(checkInvariants(store), null);
});

t.test('TTL eviction with a manual clock', async (t) => {
  const clock = new ManualClock(0);
  const store = new EmbeddingStore({ clock, ttlMs: 100, chunkRows: 2 });
  store.getOrCreate('user=a');
  clock.advance(50);
  const b = store.getOrCreate('user=b', 64);
  const c = store.getOrCreate('user=c', 0);
  clock.advance(49);
  t.equal(store.evictExpired(clock.now()), 0, 'nothing is 100 ms old yet');
  clock.advance(1);
  const evicted: string[] = [];
  store.onEvict((_id, key) => evicted.push(key));
  t.equal(store.evictExpired(clock.now()), 1);
  t.same(evicted, ['user=a']);
  store.touch(b, clock.now());
  clock.advance(50);
  t.equal(store.evictExpired(clock.now()), 1, 'c expired, b was touched');
  t.same(evicted, ['user=a', 'user=c']);
  t.ok(store.alive(b));
  t.notOk(store.alive(c));
  const off = new EmbeddingStore({ clock });
  off.getOrCreate('x=1');
  clock.advance(1e12);
  t.equal(off.evictExpired(clock.now()), 0, 'TTL off by default');
  t.equal(checkInvariants(store), null);
});

t.test('budget: demote the coldest of the largest tier first, then evict the coldest', async (t) => {
  const clock = new ManualClock(0);
  const ladder = [0, 2, 4, 8];
  const probe = new EmbeddingStore({ ladder, startSize: 2, chunkRows: 1, evictedBuckets: 0 });
  // Room for roughly: 20 tokens at 8 and 40 at 2 (sizes from the store's own accounting).
  for (let i = 0; i < 20; i++) probe.getOrCreate(`hot=${i}`, 8);
  for (let i = 0; i < 40; i++) probe.getOrCreate(`new=${i}`);
  const budget = probe.accounting().totalBytes;
  const store = new EmbeddingStore({
    ladder,
    startSize: 2,
    chunkRows: 1,
    budgetBytes: budget,
    clock,
    evictedBuckets: 0,
  });
  for (let i = 0; i < 20; i++) {
    clock.advance(1);
    store.getOrCreate(`hot=${i}`, 8);
  }
  for (let i = 0; i < 40; i++) {
    clock.advance(1);
    store.getOrCreate(`new=${i}`);
  }
  t.equal(store.size, 60, 'everything fits');
  const evicted: string[] = [];
  store.onEvict((_id, key) => evicted.push(key));
  // New tokens until the first one the budget cannot hold as it is (what slack the tiers keep
  // decides which one that is).
  let next = 40;
  while (store.tiers[3].count === 20 && next < 80) {
    clock.advance(1);
    store.getOrCreate(`new=${next++}`);
  }
  t.ok(store.accounting().totalBytes <= budget, 'the budget holds');
  t.same(evicted, [], 'demotion made room: nothing evicted');
  t.equal(store.sizeOf(store.id('hot=0')), 4, 'the coldest token of the largest tier went one step down');
  t.equal(store.sizeOf(store.id('hot=19')), 8, 'the hottest kept its size');
  // Keep creating: demotion stops at startSize, then the coldest tokens are evicted.
  for (let i = next; i < 400; i++) {
    clock.advance(1);
    store.getOrCreate(`new=${i}`);
    const broken = checkInvariants(store);
    if (broken !== null) t.fail(broken);
  }
  t.ok(evicted.length > 0, 'eviction happened once nothing could be demoted');
  t.equal(store.tiers[3].count, 0, 'no token left above startSize... ');
  t.equal(store.tiers[2].count, 0, '...');
  t.equal(evicted[0], 'hot=0', 'the coldest token was evicted first');
  t.ok(store.alive(store.id('new=399')), 'the newest token is there');
});

t.test('under churn the key index does not grow: the budget keeps its live tokens', async (t) => {
  // A full budget and a stream of new keys: each new token evicts the coldest. A JS Map fills
  // with deleted entries and doubles when they fill it; the budget then evicted most of the live
  // tokens at once to pay for empty slots (613 of 3,506 left). The key table leaves no tombstones.
  const clock = new ManualClock(0);
  const probe = new EmbeddingStore({ ladder: [0, 8], startSize: 8 });
  for (let i = 0; i < 3000; i++) probe.getOrCreate(`user=${i}`);
  const budget = probe.accounting().totalBytes;
  const store = new EmbeddingStore({ ladder: [0, 8], startSize: 8, budgetBytes: budget, clock });
  let evicted = 0;
  store.onEvict(() => evicted++);
  let fewest = Number.POSITIVE_INFINITY;
  let most = 0;
  for (let i = 0; i < 40_000; i++) {
    clock.advance(1);
    store.getOrCreate(`user=${i}`);
    if (evicted === 0) continue;
    fewest = Math.min(fewest, store.size);
    most = Math.max(most, store.size);
  }
  t.ok(evicted > 30_000, `the budget churned: ${evicted} evictions`);
  t.ok(store.accounting().totalBytes <= budget, 'the budget holds');
  t.ok(fewest >= 0.9 * most, `live tokens stay within 10% of their most: ${fewest} to ${most}`);
  t.equal(checkInvariants(store), null, 'the store is consistent');
  t.ok(store.alive(store.id('user=39999')), 'the newest key is found');
  t.equal(store.id('user=0'), -1, 'an evicted key is gone');
});

t.test(
  'getOrCreateMany never evicts a token of its own batch; an impossible budget is a clear error',
  async (t) => {
    const clock = new ManualClock(0);
    const ladder = [0, 4];
    const probe = new EmbeddingStore({ ladder, startSize: 4, chunkRows: 1, evictedBuckets: 0 });
    for (let i = 0; i < 3; i++) probe.getOrCreate(`k=${i}`);
    const store = new EmbeddingStore({
      ladder,
      startSize: 4,
      chunkRows: 1,
      evictedBuckets: 0,
      clock,
      budgetBytes: probe.accounting().totalBytes,
    });
    const old = store.getOrCreate('user=old'); // the coldest token
    clock.advance(10);
    const out = new Int32Array(3);
    store.getOrCreateMany(['user=old', 'item=1', 'item=2'], out);
    t.equal(out[0], old);
    for (const id of out) t.ok(store.alive(id), `id ${id} of the batch is live`);
    t.throws(
      () => store.getOrCreateMany(['user=old', 'item=1', 'item=2', 'item=3'], new Int32Array(4)),
      { code: 'PME_ERR_STORE_BUDGET' },
      'a batch larger than the budget can hold',
    );
    t.equal(checkInvariants(store), null);
    const tiny = new EmbeddingStore({ budgetBytes: 100 });
    t.throws(() => tiny.getOrCreate('user=1'), { code: 'PME_ERR_STORE_BUDGET' });
    t.equal(tiny.size, 0);
  },
);

t.test('accounting charges capacity and key bytes; compact gives slack back', async (t) => {
  const store = new EmbeddingStore({ chunkRows: 100, optimizerSlots: 2 });
  store.getOrCreate('user=1');
  const a = store.accounting();
  const t8 = a.tiers[3];
  t.equal(t8.capacityRows, 100);
  t.equal(t8.paramBytes, 100 * 8 * 4);
  t.equal(t8.optimizerBytes, 100 * 8 * 2 * 4);
  t.equal(a.keyBytes, stringBytes('user=1'));
  t.equal(checkInvariants(store), null);
  const freed = store.compact();
  // A row of tier 8 holds 8 params, 8 × 2 optimizer floats and one slot->id entry, 4 bytes each.
  t.equal(freed, 99 * 4 * (8 + 8 * 2 + 1), 'compact frees the 99 unused rows of tier 8');
  t.equal(store.accounting().tiers[3].capacityRows, 1);
  t.equal(checkInvariants(store), null);
});

t.test('the linear weights’ slots are charged per token apart from the rows’', async (t) => {
  const one = new EmbeddingStore({ chunkRows: 100 });
  const ftrl = new EmbeddingStore({ chunkRows: 100, linearOptimizerSlots: 2 });
  for (const store of [one, ftrl]) store.getOrCreate('user=1');
  const [a, b] = [one.accounting(), ftrl.accounting()];
  t.equal(b.tokenColumnsBytes - a.tokenColumnsBytes, 4 * ftrl.idCapacity, 'one float more per token id');
  t.same(
    b.tiers.map((x) => x.optimizerBytes),
    a.tiers.map((x) => x.optimizerBytes),
    'the rows keep one slot',
  );
  t.equal(ftrl.linearOptimizer.length, 2 * ftrl.idCapacity);
  t.equal(checkInvariants(ftrl), null);
});

t.test('readers never see a half-moved token while moves run (interleaved with setImmediate)', async (t) => {
  // Each row holds its token id in every dimension; a move writes the same marker at the new size.
  const store = new EmbeddingStore({ chunkRows: 8, ladder: [0, 2, 4, 8, 16], startSize: 4 });
  const N = 200;
  for (let i = 0; i < N; i++) store.row(store.getOrCreate(`t=${i}`)).fill(i);
  const sizes = store.options.ladder;
  let done = false;
  let reads = 0;
  let bad = 0;
  const reader = (async () => {
    const random = createRandom(2);
    while (!done) {
      for (let k = 0; k < 50; k++) {
        const id = random.int(N);
        const tier = store.tiers[store.tierOf[id]];
        const off = store.slotOf[id] * tier.size;
        for (let j = 0; j < tier.size; j++) if (tier.params[off + j] !== id) bad++;
        if (tier.ids[store.slotOf[id]] !== id) bad++;
        reads++;
      }
      await new Promise((r) => setImmediate(r));
    }
  })();
  const random = createRandom(3);
  for (let step = 0; step < 300; step++) {
    for (let k = 0; k < 5; k++) {
      const id = random.int(N);
      store.move(id, sizes[random.int(sizes.length)], (_src, dst) => dst.fill(id));
    }
    await new Promise((r) => setImmediate(r));
  }
  done = true;
  await reader;
  t.ok(reads > 1000, `${reads} reads interleaved with 1500 moves`);
  t.equal(bad, 0, 'no read saw a mixed or foreign row');
  t.equal(checkInvariants(store), null);
});

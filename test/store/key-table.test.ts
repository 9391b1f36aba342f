import t from 'tap';
import { EmbeddingStore } from '../../src/store/index.js';
import { hashKey, KeyTable } from '../../src/store/key-table.js';
import { createRandom } from '../../src/util/random.js';

t.test('the key table agrees with a Map through random inserts and removes', async (t) => {
  const random = createRandom(7);
  // Key `k=N` has id N; a removed key's id is free until it comes back.
  const keys = new Array<string>(5000).fill('');
  const table = new KeyTable(keys);
  table.growIds(keys.length);
  const live = new Set<number>();
  const capacities = new Set<number>();
  let most = 0;
  let fewest = Number.POSITIVE_INFINITY;
  for (let step = 0; step < 60_000; step++) {
    // Insert-heavy, then remove-heavy, then insert-heavy again: the table doubles and halves.
    const insertShare = Math.floor(step / 20_000) === 1 ? 0.05 : 0.7;
    const id = Math.floor(random.next() * keys.length);
    if (random.next() < insertShare) {
      if (live.has(id)) continue;
      keys[id] = `k=${id}`;
      table.insert(id, keys[id]);
      live.add(id);
    } else if (live.has(id)) {
      table.remove(id);
      keys[id] = '';
      live.delete(id);
    }
    capacities.add(table.capacity);
    most = Math.max(most, table.capacity);
    if (step >= 20_000 && step < 40_000) fewest = Math.min(fewest, table.capacity);
    if (step % 1000 !== 0) continue;
    for (let k = 0; k < keys.length; k++) {
      const found = table.get(`k=${k}`);
      if (found !== (live.has(k) ? k : -1)) {
        t.fail(`step ${step}: k=${k} found as ${found}`);
        return;
      }
    }
  }
  t.equal(table.size, live.size, 'as many keys as inserted and not removed');
  t.ok(capacities.size >= 4, `it grew through ${[...capacities].join(', ')} slots`);
  t.ok(fewest < most, `and shrank from ${most} to ${fewest} slots`);
  t.ok(table.capacity * 0.6 >= table.size, 'load at most 0.6');
});

t.test('hashes spread keys that differ in one character', async (t) => {
  const low = new Set<number>();
  for (let i = 0; i < 1024; i++) low.add(hashKey(`user=${i}`) & 1023);
  t.ok(low.size > 600, `${low.size} of 1024 distinct low 10 bits`);
});

t.test('a restore can set any capacity the keys fit at load 0.6, and no other', async (t) => {
  const keys = ['a', 'b', 'c'];
  const table = new KeyTable(keys);
  table.growIds(16);
  for (let id = 0; id < 3; id++) table.insert(id, keys[id]);
  table.resize(64);
  t.equal(table.capacity, 64);
  t.equal(table.get('c'), 2, 'keys found after the rebuild');
  t.notOk(table.canHold(48), 'not a power of two');
  t.notOk(table.canHold(8), 'below 16');
  t.throws(() => table.resize(8), RangeError);
});

t.test('the store pays under 20 bytes a token for finding keys, where a Map took ~45', async (t) => {
  const store = new EmbeddingStore({ ladder: [0, 8], startSize: 8 });
  for (let i = 0; i < 20_000; i++) store.getOrCreate(`item=${i}`);
  const acc = store.accounting();
  // Slots (mapBytes) plus the 4-byte hash column counted with the token columns.
  const perToken = (acc.mapBytes + 4 * store.idCapacity) / store.size;
  t.ok(perToken < 20, `${perToken.toFixed(1)} bytes a token`);
  for (let i = 0; i < 20_000; i += 997) t.equal(store.key(store.id(`item=${i}`)), `item=${i}`);
});

t.test('keys beyond Latin-1, and the empty key, are found and forgotten like any other', async (t) => {
  const store = new EmbeddingStore({ ladder: [0, 8], startSize: 8 });
  const keys = ['', 'genre=Comédie', 'user=日本語', 'item=🎬', 'item=\u{1F3AC}x'];
  const ids = keys.map((key) => store.getOrCreate(key));
  t.equal(new Set(ids).size, keys.length, 'one token each');
  for (const [k, key] of keys.entries()) t.equal(store.id(key), ids[k], `found: ${JSON.stringify(key)}`);
  store.evict(ids[0]);
  store.evict(ids[2]);
  t.equal(store.id(''), -1, 'the empty key is forgotten');
  t.equal(store.id('user=日本語'), -1);
  t.equal(store.id('item=🎬'), ids[3], 'the others stay');
  t.equal(store.key(store.getOrCreate('user=日本語')), 'user=日本語', 'and it comes back');
});

/**
 * Store benchmark: `npm run bench:store` (or `npm run build && node dist/bench/store.js`).
 * Prints and writes bench/results/store.json:
 *  - accounted bytes vs process.memoryUsage() growth on a load of 1M tokens (must agree within 20%);
 *  - look-ups/s and row updates/s (Adagrad step on the token's row) with 1M tokens at D = 64;
 *  - bytes per token in each tier against a uniform D = 64 table (params + optimizer + index);
 *  - snapshot write and read MB/s;
 *  - the per-entry cost of the key Map, and of lru-cache as the alternative LRU (measured, not assumed).
 * Sizes of the 1M tokens follow a fixed PME-like mix (MIX below), drawn with a seeded generator.
 */

import { mkdirSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import v8 from 'node:v8';
import vm from 'node:vm';
import { LRUCache } from 'lru-cache';
import { EmbeddingStore, readSnapshot, writeSnapshot } from '../src/store/index.js';
import { hashKey, KeyTable } from '../src/store/key-table.js';
import { createRandom, ZipfSampler } from '../src/util/random.js';

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;
const N = Number(process.env.PME_BENCH_TOKENS ?? 1_000_000);
const QUERIES = 2_000_000;
/** Share of tokens per size (sums to 1). */
const MIX: Array<[number, number]> = [
  [0, 0.2],
  [2, 0.2],
  [4, 0.2],
  [8, 0.25],
  [16, 0.08],
  [32, 0.04],
  [64, 0.03],
];
const FIELDS = ['user', 'item', 'genre', 'device', 'site'];

function settle(): NodeJS.MemoryUsage {
  for (let i = 0; i < 3; i++) gc();
  return process.memoryUsage();
}

function keyOf(i: number): string {
  return `${FIELDS[i % FIELDS.length]}=${(i * 2654435761) % 4294967291}`;
}

function load(store: EmbeddingStore, n: number, seed: number): void {
  const random = createRandom(seed);
  for (let i = 0; i < n; i++) {
    const u = random.next();
    let acc = 0;
    let size = MIX[MIX.length - 1][0];
    for (const [s, p] of MIX) {
      acc += p;
      if (u < acc) {
        size = s;
        break;
      }
    }
    store.getOrCreate(keyOf(i), size);
  }
}

function seconds(t0: bigint): number {
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

const round = (x: number, d = 1): number => Math.round(x * 10 ** d) / 10 ** d;
const results: Record<string, unknown> = { tokens: N, mix: Object.fromEntries(MIX), node: process.version };

let sink = 0;
// 0. Cost of one entry of the store's key table (key-table.ts), of a Map, and of lru-cache as an
//    alternative to the intrusive LRU lists; the table first, before the others load the heap.
{
  const keys: string[] = [];
  for (let i = 0; i < N; i++) keys.push(keyOf(i));
  // Hashing reads every char, which flattens a concatenated key for good: done first, so that the
  // table's bytes below do not net out the strings it would flatten.
  for (const key of keys) sink += hashKey(key);
  const gets = (get: (key: string) => number): number => {
    const t = process.hrtime.bigint();
    for (let i = 0; i < QUERIES; i++) sink += get(keys[(i * 7919) % N]);
    return Math.round(QUERIES / seconds(t));
  };
  const bytesPerEntry = (a: NodeJS.MemoryUsage, b: NodeJS.MemoryUsage) =>
    round((b.heapUsed + b.arrayBuffers - a.heapUsed - a.arrayBuffers) / N);
  const m0 = settle();
  const table = new KeyTable(keys);
  table.growIds(N);
  for (let i = 0; i < N; i++) table.insert(i, keys[i]);
  const m1 = settle();
  const tableGets = gets((key) => table.get(key));
  const map = new Map<string, number>();
  for (let i = 0; i < N; i++) map.set(keys[i], i);
  const m2 = settle();
  const mapGets = gets((key) => map.get(key) ?? 0);
  const lru = new LRUCache<string, number>({ max: N });
  for (let i = 0; i < N; i++) lru.set(keys[i], i);
  const m3 = settle();
  const lruGets = gets((key) => lru.get(key) ?? 0);
  results.index = {
    keyTableBytesPerEntry: bytesPerEntry(m0, m1),
    mapBytesPerEntry: bytesPerEntry(m1, m2),
    lruCacheBytesPerEntry: bytesPerEntry(m2, m3),
    intrusiveLruBytesPerToken: 8, // prev + next Int32 columns (lastSeen is kept either way)
    keyTableGetsPerSecond: tableGets,
    mapGetsPerSecond: mapGets,
    lruCacheGetsPerSecond: lruGets,
    size: table.size + map.size + lru.size,
  };
}

// 1. Memory: accounted total vs process growth, on a fresh load.
const before = settle();
const t0 = process.hrtime.bigint();
let store = new EmbeddingStore({ seed: 1 });
load(store, N, 1);
const loadSeconds = seconds(t0);
const after = settle();
const acc = store.accounting();
const rssGrowth = after.rss - before.rss;
const heapGrowth = after.arrayBuffers + after.heapUsed - (before.arrayBuffers + before.heapUsed);
results.memory = {
  accountedBytes: acc.totalBytes,
  rssGrowthBytes: rssGrowth,
  arrayBuffersPlusHeapUsedGrowthBytes: heapGrowth,
  accountedOverRss: round(acc.totalBytes / rssGrowth, 3),
  accountedOverHeap: round(acc.totalBytes / heapGrowth, 3),
  withinTwentyPercent:
    Math.abs(acc.totalBytes / rssGrowth - 1) <= 0.2 && Math.abs(acc.totalBytes / heapGrowth - 1) <= 0.2,
  loadTokensPerSecond: Math.round(N / loadSeconds),
};

// 2. Look-ups and row updates, Zipf-distributed over the tokens.
const random = createRandom(7);
const zipf = new ZipfSampler(N, 1.05);
const queries: string[] = new Array(QUERIES);
for (let i = 0; i < QUERIES; i++) queries[i] = keyOf(zipf.sample(random));
// Fresh query strings, as decoded from the wire: the first look-up of each string also hashes it.
let t1 = process.hrtime.bigint();
for (let i = 0; i < QUERIES; i++) sink += store.id(queries[i]);
const lookupsPerSecond = QUERIES / seconds(t1);
t1 = process.hrtime.bigint();
for (let i = 0; i < QUERIES; i++) sink += store.id(queries[i]);
const warmLookupsPerSecond = QUERIES / seconds(t1);
const ids = new Int32Array(QUERIES);
store.idMany(queries, ids);
// Touch times continue the clock the tokens were created with (one time base, as the engine must use).
const base = Date.now();
t1 = process.hrtime.bigint();
for (let i = 0; i < QUERIES; i++) store.touch(ids[i], base + i);
const touchesPerSecond = QUERIES / seconds(t1);
// One Adagrad step per row, gradient = 0.01 * w (stands in for the model's gradient).
t1 = process.hrtime.bigint();
let floats = 0;
const tiers = store.tiers;
for (let i = 0; i < QUERIES; i++) {
  const id = ids[i];
  const tier = tiers[store.tierOf[id]];
  const s = tier.size;
  const off = store.slotOf[id] * s;
  const w = tier.params;
  const g2 = tier.optimizer;
  for (let j = off; j < off + s; j++) {
    const g = 0.01 * w[j];
    g2[j] += g * g;
    w[j] -= (0.05 * g) / (Math.sqrt(g2[j]) + 1e-7);
  }
  floats += s;
}
const updateSeconds = seconds(t1);
results.speed = {
  queries: QUERIES,
  zipfExponent: 1.05,
  lookupsPerSecond: Math.round(lookupsPerSecond),
  warmLookupsPerSecond: Math.round(warmLookupsPerSecond),
  touchesPerSecond: Math.round(touchesPerSecond),
  rowUpdatesPerSecond: Math.round(QUERIES / updateSeconds),
  updatedFloatsPerSecond: Math.round(floats / updateSeconds),
  sink: sink % 7,
};

// 3. Bytes per token per tier against a uniform D = 64 table (params + Adagrad state + index).
const perTokenShared = (acc.tokenColumnsBytes + acc.indexBytes) / acc.tokens;
const perTier = acc.tiers.map((t) => ({
  size: t.size,
  tokens: t.tokens,
  bytesPerToken: t.tokens > 0 ? round(t.totalBytes / t.tokens + perTokenShared) : null,
}));
// The uniform table: the same keys, all at 64, no importance slab (a plain table keeps none).
let uniform = new EmbeddingStore({ startSize: 64, importance: false, ladder: [0, 64] });
for (let i = 0; i < N; i++) uniform.getOrCreate(keyOf(i));
const ua = uniform.accounting();
const uniformPerToken = ua.totalBytes / ua.tokens;
results.bytes = {
  perTokenShared: round(perTokenShared),
  perTier,
  pmeBytesPerToken: round(acc.totalBytes / acc.tokens),
  uniformD64BytesPerToken: round(uniformPerToken),
  pmeOverUniform: round(acc.totalBytes / ua.totalBytes, 3),
  accounting: { ...acc, tiers: undefined },
};
uniform = undefined as unknown as EmbeddingStore;
settle();

// 4. Snapshot write and read.
const dir = await mkdtemp(join(tmpdir(), 'pme-bench-store-'));
try {
  let t2 = process.hrtime.bigint();
  const path = await writeSnapshot(store, dir);
  const writeSeconds = seconds(t2);
  const bytes = (await stat(path)).size;
  store = undefined as unknown as EmbeddingStore;
  settle();
  t2 = process.hrtime.bigint();
  const { store: restored } = await readSnapshot(dir);
  const readSeconds = seconds(t2);
  results.snapshot = {
    fileBytes: bytes,
    writeMBps: round(bytes / 1e6 / writeSeconds),
    readMBps: round(bytes / 1e6 / readSeconds),
    writeSeconds: round(writeSeconds, 2),
    readSeconds: round(readSeconds, 2),
    restoredTokens: restored.size,
  };
} finally {
  await rm(dir, { recursive: true, force: true });
}

console.log(JSON.stringify(results, null, 2));
const out = join(dirname(fileURLToPath(import.meta.url)), '../../bench/results/store.json');
mkdirSync(dirname(out), { recursive: true });
writeFileSync(out, `${JSON.stringify(results, null, 2)}\n`);
console.log(`wrote ${out}`);

/**
 * Invariant checks recomputed from scratch, and bit-for-bit state comparison, shared by the store tests.
 */
import {
  type EmbeddingStore,
  type StoreState,
  stringBytes,
  tokenColumnBytes,
} from '../../src/store/index.js';

/** Returns the first broken invariant, or null. */
export function checkInvariants(store: EmbeddingStore): string | null {
  const { tierOf, slotOf } = store;
  const slots = store.options.optimizerSlots;
  if (store.linearOptimizer.length !== store.idCapacity * store.options.linearOptimizerSlots)
    return 'linearOptimizer length';
  const D = store.dim;
  // Every live token owns exactly one (tier, slot); every slot below count is owned by exactly one token.
  const owner = store.tiers.map((t) => new Int32Array(t.count).fill(-1));
  let live = 0;
  let keyBytes = 0;
  const keys = new Set<string>();
  for (let id = 0; id < store.idLimit; id++) {
    if (!store.alive(id)) continue;
    live++;
    const ti = tierOf[id];
    const slot = slotOf[id];
    const t = store.tiers[ti];
    if (t === undefined || slot < 0 || slot >= t.count)
      return `token ${id}: tier ${ti} slot ${slot} out of range`;
    if (owner[ti][slot] !== -1)
      return `slot ${slot} of tier ${t.size} shared by ${owner[ti][slot]} and ${id}`;
    owner[ti][slot] = id;
    if (t.ids[slot] !== id) return `tier ${t.size} slot ${slot} names ${t.ids[slot]}, not ${id}`;
    const key = store.key(id);
    if (keys.has(key)) return `key ${key} twice`;
    keys.add(key);
    if (store.id(key) !== id) return `id(${key}) = ${store.id(key)}, expected ${id}`;
    keyBytes += stringBytes(key);
  }
  if (live !== store.size) return `${live} live ids but size ${store.size}`;
  let rows = 0;
  for (const t of store.tiers) {
    rows += t.count;
    if (t.count > t.capacity) return `tier ${t.size}: count ${t.count} > capacity ${t.capacity}`;
    if (t.params.length !== t.capacity * t.size) return `tier ${t.size}: params length ${t.params.length}`;
    if (t.optimizer.length !== t.capacity * t.size * slots) return `tier ${t.size}: optimizer length`;
    const wantImportance = store.options.importance && t.size === D;
    if ((t.importance !== null) !== wantImportance) return `tier ${t.size}: importance slab presence`;
    // LRU list: every token of the tier exactly once. (Its order is exact only for time-ordered touches,
    // see #linkSorted; the ordering tests in store.test.ts check that case.)
    const order = store.lruOrder(t.size);
    if (order.length !== t.count) return `tier ${t.size}: LRU has ${order.length} of ${t.count}`;
    const inList = new Set(order);
    if (inList.size !== t.count || order.some((id) => store.tierOf[id] !== t.index)) {
      return `tier ${t.size}: LRU list is not the tier's tokens`;
    }
  }
  if (rows !== live) return `${rows} rows for ${live} tokens`;

  // Accounting, recomputed from capacities and live keys.
  const a = store.accounting();
  let total = 0;
  for (let i = 0; i < store.tiers.length; i++) {
    const t = store.tiers[i];
    const ta = a.tiers[i];
    const params = t.capacity * t.size * 4;
    const opt = t.capacity * t.size * slots * 4;
    const imp = t.importance === null ? 0 : t.capacity * D * 4;
    const idx = t.capacity * 4;
    if (
      ta.tokens !== t.count ||
      ta.capacityRows !== t.capacity ||
      ta.paramBytes !== params ||
      ta.optimizerBytes !== opt ||
      ta.importanceBytes !== imp ||
      ta.indexBytes !== idx ||
      ta.totalBytes !== params + opt + imp + idx
    ) {
      return `tier ${t.size}: accounting ${JSON.stringify(ta)} differs from recomputation`;
    }
    total += ta.totalBytes;
  }
  if (a.tokenColumnsBytes !== store.idCapacity * tokenColumnBytes(store.options.linearOptimizerSlots))
    return 'tokenColumnsBytes';
  if (a.keyBytes !== keyBytes) return `keyBytes ${a.keyBytes}, recomputed ${keyBytes}`;
  // 4-byte slots at a load of at most 0.6.
  if (a.mapBytes * 0.6 < store.size * 4) return `mapBytes ${a.mapBytes} too few for ${store.size} entries`;
  if (a.indexBytes !== a.mapBytes + keyBytes) return 'indexBytes';
  // The evicted-weights table: 1 fingerprint byte, the weight and its optimizer floats a bucket.
  const evicted = store.exportState().evicted;
  const buckets = evicted?.fingerprint.length ?? 0;
  if (evicted !== undefined && evicted.optimizer.length !== buckets * store.options.linearOptimizerSlots)
    return 'evicted optimizer length';
  if (buckets > 0 && buckets * (5 + 4 * store.options.linearOptimizerSlots) > store.options.budgetBytes / 16)
    return `${buckets} evicted buckets over 1/16 of the budget`;
  if (a.evictedBytes !== buckets * (5 + 4 * store.options.linearOptimizerSlots)) return 'evictedBytes';
  total += a.tokenColumnsBytes + a.indexBytes + a.evictedBytes;
  if (a.totalBytes !== total) return `totalBytes ${a.totalBytes}, recomputed ${total}`;
  if (a.tokens !== live) return 'accounting tokens';
  if (a.totalBytes > store.options.budgetBytes)
    return `total ${a.totalBytes} over budget ${store.options.budgetBytes}`;

  // Field statistics agree with a recount.
  const perField = new Map<string, Map<number, number>>();
  for (let id = 0; id < store.idLimit; id++) {
    if (!store.alive(id)) continue;
    const f = store.field(id);
    const eq = store.key(id).indexOf('=');
    if (f !== (eq < 0 ? '' : store.key(id).slice(0, eq))) return `field(${id}) = ${f}`;
    const m = perField.get(f) ?? new Map<number, number>();
    m.set(store.sizeOf(id), (m.get(store.sizeOf(id)) ?? 0) + 1);
    perField.set(f, m);
  }
  for (const fs of store.fieldStats()) {
    const m = perField.get(fs.field) ?? new Map<number, number>();
    let n = 0;
    for (const size of store.options.ladder) {
      if ((fs.tiers[size] ?? 0) !== (m.get(size) ?? 0)) return `fieldStats ${fs.field} size ${size}`;
      n += m.get(size) ?? 0;
    }
    if (fs.tokens !== n) return `fieldStats ${fs.field} tokens`;
  }
  return null;
}

function bytesOf(v: ArrayBufferView | null): Buffer {
  return v === null ? Buffer.alloc(0) : Buffer.from(v.buffer, v.byteOffset, v.byteLength);
}

/** First difference between two states, compared byte for byte, or null. */
export function diffStates(a: StoreState, b: StoreState): string | null {
  const scalar = ['created', 'idLimit', 'idCapacity'] as const;
  for (const k of scalar) if (a[k] !== b[k]) return `${k}: ${a[k]} vs ${b[k]}`;
  if (JSON.stringify(a.options) !== JSON.stringify(b.options)) return 'options';
  if (a.keys.length !== b.keys.length || a.keys.some((k, i) => k !== b.keys[i])) return 'keys';
  const cols = [
    'freeIds',
    'tierOf',
    'slotOf',
    'linear',
    'linearOptimizer',
    'lastSeen',
    'frequency',
    'prev',
    'next',
  ] as const;
  for (const c of cols) if (!bytesOf(a[c]).equals(bytesOf(b[c]))) return `column ${c}`;
  for (const k of ['fingerprint', 'linear', 'optimizer'] as const) {
    if (!bytesOf(a.evicted?.[k] ?? null).equals(bytesOf(b.evicted?.[k] ?? null))) return `evicted ${k}`;
  }
  if (a.tiers.length !== b.tiers.length) return 'tier count';
  for (let i = 0; i < a.tiers.length; i++) {
    const x = a.tiers[i];
    const y = b.tiers[i];
    for (const k of ['count', 'capacity', 'head', 'tail'] as const)
      if (x[k] !== y[k]) return `tier ${i} ${k}`;
    for (const k of ['ids', 'params', 'optimizer', 'importance'] as const) {
      if (!bytesOf(x[k]).equals(bytesOf(y[k]))) return `tier ${i} ${k}`;
    }
  }
  return null;
}

/**
 * The store's whole state as plain arrays (what a snapshot holds), and its validated restore: a
 * state that disagrees with itself anywhere is refused with PME_ERR_SNAPSHOT_CORRUPT, never loaded
 * into a store that would corrupt itself later.
 */
import { PmeError } from '../errors.js';
import { FREE, type TokenColumns } from './columns.js';
import type { EvictedWeights } from './evicted-weights.js';
import type { KeyIndex } from './key-index.js';
import type { StoreOptions } from './options.js';
import type { StoreTier } from './tier.js';

/**
 * Everything needed to rebuild a store bit for bit (what a snapshot holds). Arrays are views of the
 * store's own columns and slabs (no copy): use it before the next mutation, or copy.
 */
export interface StoreState {
  options: Omit<StoreOptions, 'clock'>;
  /** Rows created so far (the counter of the row initialisation). */
  created: number;
  /** Ids ever handed out; ids >= idLimit have never been used. */
  idLimit: number;
  /** Free ids (the reuse stack, bottom first). */
  freeIds: Int32Array;
  /** Key of each id < idLimit ('' for a free id). */
  keys: string[];
  tierOf: Uint8Array;
  slotOf: Int32Array;
  linear: Float32Array;
  linearOptimizer: Float32Array;
  lastSeen: Float64Array;
  frequency: Float32Array;
  prev: Int32Array;
  next: Int32Array;
  idCapacity: number;
  /** The key table's capacity (key-table.ts; `deleted` is 0, kept from the JS Map this table
   *  replaced): it depends on the inserts and deletes so far, so a restore that re-inserts the live
   *  keys alone would count other bytes, and a binding budget would decide otherwise than before.
   *  Absent in snapshots written before it was kept, or a Map's capacity the table cannot take:
   *  then derived from the live keys. */
  keyMap?: { capacity: number; deleted: number };
  /** The evicted tokens' linear weights (evicted-weights.ts). Absent in snapshots written before
   *  the table existed, or of another size than the restored store's: the table then starts empty. */
  evicted?: { fingerprint: Uint8Array; linear: Float32Array; optimizer: Float32Array };
  tiers: Array<{
    count: number;
    capacity: number;
    head: number;
    tail: number;
    ids: Int32Array;
    params: Float32Array;
    optimizer: Float32Array;
    importance: Float32Array | null;
  }>;
}

/** The store's internal parts, as the store holds them. */
export interface StoreParts {
  readonly options: Readonly<StoreOptions>;
  readonly tiers: readonly StoreTier[];
  readonly columns: TokenColumns;
  readonly evicted: EvictedWeights;
  readonly index: KeyIndex;
  /** Rows created so far. */
  created: number;
  /** Grows every per-id structure to `capacity` ids. */
  resizeIds(capacity: number): void;
}

/** The parts' state as views (see StoreState). */
export function exportState(p: StoreParts): StoreState {
  const { clock: _clock, ...options } = p.options;
  const c = p.columns;
  const n = c.idLimit;
  const slots = c.slots;
  return {
    options,
    created: p.created,
    idLimit: n,
    freeIds: c.freeIds.subarray(0, c.freeTop),
    keys: p.index.keys.slice(0, n),
    tierOf: c.tierOf.subarray(0, n),
    slotOf: c.slotOf.subarray(0, n),
    linear: c.linear.subarray(0, n),
    linearOptimizer: c.linearOptimizer.subarray(0, n * slots),
    lastSeen: c.lastSeen.subarray(0, n),
    frequency: c.frequency.subarray(0, n),
    prev: c.prev.subarray(0, n),
    next: c.next.subarray(0, n),
    idCapacity: c.capacity,
    keyMap: { capacity: p.index.table.capacity, deleted: 0 },
    evicted: { fingerprint: p.evicted.fingerprint, linear: p.evicted.linear, optimizer: p.evicted.optimizer },
    tiers: p.tiers.map((t) => ({
      count: t.count,
      capacity: t.capacity,
      head: t.head,
      tail: t.tail,
      ids: t.ids.subarray(0, t.count),
      params: t.params.subarray(0, t.count * t.size),
      optimizer: t.optimizer.subarray(0, t.count * t.optFloats),
      importance: t.importance === null ? null : t.importance.subarray(0, t.count * t.impFloats),
    })),
  };
}

/**
 * Fills the parts of a fresh store (built with the state's options) from `state`, checking that it
 * is consistent. Throws PmeError PME_ERR_SNAPSHOT_CORRUPT naming what is inconsistent.
 */
export function importState(p: StoreParts, state: StoreState, source: string): void {
  const bad = (why: string): never => {
    throw new PmeError('PME_ERR_SNAPSHOT_CORRUPT', source, why);
  };
  if (p.options.ladder.join() !== state.options.ladder.join()) bad('the ladder cannot be overridden');
  if (p.options.optimizerSlots !== state.options.optimizerSlots) bad('optimizerSlots cannot be overridden');
  if (p.options.linearOptimizerSlots !== state.options.linearOptimizerSlots)
    bad('linearOptimizerSlots cannot be overridden');
  if (p.options.importance !== state.options.importance) bad('importance cannot be overridden');
  const c = p.columns;
  const n = state.idLimit;
  const slots = c.slots;
  if (!(Number.isInteger(n) && n >= 0 && n <= state.idCapacity && state.idCapacity <= 2 ** 31 - 1)) {
    bad(`idLimit ${n}, idCapacity ${state.idCapacity}`);
  }
  if (!(Number.isInteger(state.created) && state.created >= 0)) bad(`created ${state.created}`);
  const lengths: Array<[string, number, number]> = [
    ['keys', state.keys.length, n],
    ['tierOf', state.tierOf.length, n],
    ['slotOf', state.slotOf.length, n],
    ['linear', state.linear.length, n],
    ['linearOptimizer', state.linearOptimizer.length, n * slots],
    ['lastSeen', state.lastSeen.length, n],
    ['frequency', state.frequency.length, n],
    ['prev', state.prev.length, n],
    ['next', state.next.length, n],
    ['tiers', state.tiers.length, p.tiers.length],
  ];
  for (const [name, got, want] of lengths)
    if (got !== want) bad(`${name} has length ${got}, expected ${want}`);

  p.resizeIds(state.idCapacity);
  c.idLimit = n;
  p.created = state.created;
  c.tierOf.set(state.tierOf);
  c.slotOf.set(state.slotOf);
  c.linear.set(state.linear);
  c.linearOptimizer.set(state.linearOptimizer);
  c.lastSeen.set(state.lastSeen);
  c.frequency.set(state.frequency);
  c.prev.set(state.prev);
  c.next.set(state.next);
  for (let ti = 0; ti < p.tiers.length; ti++) {
    const src = state.tiers[ti];
    const t = p.tiers[ti];
    if (!(Number.isInteger(src.count) && src.count >= 0 && src.count <= src.capacity)) {
      bad(`tier ${t.size}: count ${src.count}, capacity ${src.capacity}`);
    }
    if (
      src.ids.length !== src.count ||
      src.params.length !== src.count * t.size ||
      src.optimizer.length !== src.count * t.optFloats ||
      (src.importance === null) !== (t.importance === null) ||
      (src.importance !== null && src.importance.length !== src.count * t.impFloats)
    ) {
      bad(`tier ${t.size}: slab lengths do not match ${src.count} rows`);
    }
    t.count = 0;
    t.resize(src.capacity);
    t.count = src.count;
    t.ids.set(src.ids);
    t.params.set(src.params);
    t.optimizer.set(src.optimizer);
    if (t.importance !== null && src.importance !== null) t.importance.set(src.importance);
    t.head = src.head;
    t.tail = src.tail;
  }

  // Ids, slots, keys and LRU lists must agree exactly, or the store would corrupt itself later.
  const isFree = new Uint8Array(n);
  for (const id of state.freeIds) {
    if (!(id >= 0 && id < n) || isFree[id] || state.tierOf[id] !== FREE) bad(`free id ${id}`);
    isFree[id] = 1;
  }
  c.freeIds.set(state.freeIds);
  c.freeTop = state.freeIds.length;
  const index = p.index;
  let live = 0;
  for (let id = 0; id < n; id++) {
    const ti = state.tierOf[id];
    if (ti === FREE) {
      if (!isFree[id]) bad(`id ${id} is neither live nor free`);
      index.keys[id] = '';
      continue;
    }
    const t = p.tiers[ti];
    const slot = state.slotOf[id];
    if (t === undefined || !(slot >= 0 && slot < t.count) || t.ids[slot] !== id) {
      bad(`token ${id} has tier ${ti} slot ${slot}`);
    }
    const key = state.keys[id];
    if (typeof key !== 'string' || index.get(key) >= 0) bad(`token ${id} has a duplicate or bad key`);
    index.register(c, id, key, ti);
    live++;
  }
  let listed = 0;
  for (const t of p.tiers) {
    let prev = -1;
    let count = 0;
    for (let id = t.head; id !== -1; id = c.next[id]) {
      if (!(id >= 0 && id < n) || c.tierOf[id] !== t.index || c.prev[id] !== prev || ++count > t.count) {
        bad(`LRU list of tier ${t.size} is broken at ${id}`);
      }
      prev = id;
    }
    if (count !== t.count || t.tail !== prev)
      bad(`LRU list of tier ${t.size} has ${count}/${t.count} tokens`);
    listed += count;
  }
  if (listed !== live) bad(`${live} live tokens but ${listed} in the tiers`);
  const e = state.evicted;
  const table = p.evicted;
  if (
    e !== undefined &&
    e.fingerprint.length === table.buckets &&
    e.linear.length === table.buckets &&
    e.optimizer.length === table.buckets * table.slots
  ) {
    table.fingerprint.set(e.fingerprint);
    table.linear.set(e.linear);
    table.optimizer.set(e.optimizer);
  }
  const capacity = state.keyMap?.capacity;
  if (capacity !== undefined && index.table.canHold(capacity)) index.table.resize(capacity);
}

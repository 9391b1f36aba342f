import { PmeError } from '../errors.js';
import type { Milliseconds } from '../util/clock.js';
import {
  type FieldStats,
  MapCapacityModel,
  type StoreAccounting,
  stringBytes,
  type TierAccounting,
  tokenColumnBytes,
} from './accounting.js';
import { fillNormalRow } from './init.js';
import { resolveStoreOptions, type StoreOptions } from './options.js';
import { StoreTier, type Tier } from './tier.js';

/** Dense small integer naming a live token; reused after eviction. */
export type TokenId = number;

/** `tierOf` value of an id that names no live token. */
const FREE = 255;
/** Longest walk when a token joins an LRU list out of time order (see `#linkSorted`). */
const MAX_WALK = 64;

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

/**
 * Variable-size embedding store: token key -> (tier, slot), one set of contiguous slabs per ladder
 * size, per-token columns, LRU order per tier, a hard memory budget.
 *
 * Consistency rule. Every mutation (getOrCreate, move, evict, touch, growth) is synchronous and
 * complete before it returns, and JavaScript runs one call at a time: a reader that reads a token's
 * `tierOf`/`slotOf` and then its row within one synchronous stretch (no `await` between) always sees
 * the token entirely in its old tier or entirely in its new one. What a reader must NOT do is keep a
 * slot, an offset or a slab array across an `await` or across a store mutation: rows are kept dense
 * (evicting or moving a token moves another token's row into the freed slot) and slabs are replaced
 * when they grow or shrink.
 *
 * Budget policy. `accounting().totalBytes` (allocated slab capacity + per-token columns + key index)
 * never exceeds `budgetBytes` after a public call returns (a reallocation briefly holds the old and
 * the new slab of one tier). When an allocation would cross the budget, the store frees memory in this
 * order, re-checking after each step, and frees a little more than needed (one chunk of the target
 * tier, at most 1/16 of the budget) so the next allocations do not pay again:
 *  1. slack: tiers other than the target give back allocated rows no token uses;
 *  2. demote: the coldest tokens (least recently seen) of the largest tier above `startSize` go one
 *     ladder step down, their rows truncated to the first dimensions (the engine's pruning is the
 *     real size search; this is the safety net, and it never shrinks a token below `startSize`);
 *  3. evict: the coldest tokens over all tiers are evicted (`onEvict` is called for each).
 * Tokens of the call itself are never demoted or evicted (the moved token, the keys of one
 * `getOrCreateMany`). If nothing is left to free, PmeError PME_ERR_STORE_BUDGET is thrown and the
 * store is unchanged apart from what was already freed.
 */
export class EmbeddingStore {
  readonly options: Readonly<StoreOptions>;
  /** D, the largest ladder size. */
  readonly dim: number;
  readonly tiers: readonly Tier[];
  /** Called for each token about to be evicted (TTL, budget or `evict`), while its row is still
   *  readable and before its id can be reused. It must not throw nor mutate the store. */
  onEvict?: (id: TokenId, key: string) => void;

  readonly #tiers: StoreTier[];
  readonly #startIndex: number;
  readonly #slots: number;
  readonly #idBytes: number;
  readonly #budget: number;
  readonly #index = new Map<string, TokenId>();
  readonly #mapModel = new MapCapacityModel();
  #keyBytes = 0;

  #idCapacity = 0;
  #idLimit = 0;
  #size = 0;
  #created = 0;
  #keys: string[] = [];
  #tierOf = new Uint8Array(0);
  #slotOf = new Int32Array(0);
  #fieldOf = new Uint16Array(0);
  #linear = new Float32Array(0);
  #linearOptimizer = new Float32Array(0);
  #lastSeen = new Float64Array(0);
  #frequency = new Float32Array(0);
  #prev = new Int32Array(0);
  #next = new Int32Array(0);
  #freeIds = new Int32Array(0);
  #freeTop = 0;

  readonly #fieldNames: string[] = [];
  readonly #fieldIndex = new Map<string, number>();
  /** tokens per (field, tier): field * ladder.length + tier. */
  #fieldTier = new Int32Array(0);
  #fieldKeyBytes: number[] = [];

  /** Ids the budget policy must not touch during the current call. */
  #protected = new Int32Array(16);
  #protectedCount = 0;

  constructor(options?: Partial<StoreOptions>) {
    this.options = resolveStoreOptions(options);
    const { ladder, optimizerSlots, importance } = this.options;
    this.dim = ladder[ladder.length - 1];
    this.#slots = optimizerSlots;
    this.#idBytes = tokenColumnBytes(optimizerSlots);
    this.#budget = this.options.budgetBytes;
    this.#startIndex = ladder.indexOf(this.options.startSize);
    this.#tiers = ladder.map(
      (size, i) => new StoreTier(size, i, optimizerSlots, importance && size === this.dim ? this.dim : 0),
    );
    this.tiers = Object.freeze([...this.#tiers]);
  }

  // Per-token columns. Replaced when they grow: read them through these getters on each call.
  /** Ladder index of each token's tier (255 for a free id). */
  get tierOf(): Uint8Array {
    return this.#tierOf;
  }
  /** Slot of each token within its tier. */
  get slotOf(): Int32Array {
    return this.#slotOf;
  }
  /** Linear (first-order) weight of each token. */
  get linear(): Float32Array {
    return this.#linear;
  }
  /** `optimizerSlots` floats per token for the linear weight (token id * slots). */
  get linearOptimizer(): Float32Array {
    return this.#linearOptimizer;
  }
  /** Last time each token was touched, in ms. */
  get lastSeen(): Float64Array {
    return this.#lastSeen;
  }
  /** Decayed count of touches (see `touch`, `decayFrequencies`). */
  get frequency(): Float32Array {
    return this.#frequency;
  }
  /** Live tokens. */
  get size(): number {
    return this.#size;
  }
  /** Ids ever handed out: every id below it is live or free, none above is. */
  get idLimit(): number {
    return this.#idLimit;
  }
  /** Allocated length of the per-token columns. */
  get idCapacity(): number {
    return this.#idCapacity;
  }

  /** The id of `key`, or -1 when absent. No side effect. */
  id(key: string): TokenId {
    return this.#index.get(key) ?? -1;
  }

  /** Whether `id` names a live token. */
  alive(id: TokenId): boolean {
    return id >= 0 && id < this.#idLimit && this.#tierOf[id] !== FREE;
  }

  key(id: TokenId): string {
    this.#check(id);
    return this.#keys[id];
  }

  /** The part of the key before the first '=' ('' when there is none). */
  field(id: TokenId): string {
    this.#check(id);
    return this.#fieldNames[this.#fieldOf[id]];
  }

  /** The id of `key`, creating the token at `size` (default `startSize`) when absent, last seen at `now`
   *  (default `clock.now()`; pass the time base you give `touch`). Creation applies the budget policy
   *  first when needed and never exceeds the budget. An existing token keeps its size and last seen. */
  getOrCreate(key: string, size?: number, now?: Milliseconds): TokenId {
    const found = this.#index.get(key);
    if (found !== undefined) return found;
    return this.#create(
      key,
      size === undefined ? this.#startIndex : this.#tierIndex(size),
      now ?? this.options.clock.now(),
    );
  }

  /**
   * Batch look-up: `out[i]` = id of `keys[i]`, created at `startSize` when absent. The budget policy
   * never evicts a token of the batch, so every id in `out` is live when this returns.
   */
  getOrCreateMany(keys: readonly string[], out: Int32Array, now?: Milliseconds): void {
    if (out.length < keys.length) throw new RangeError(`out has ${out.length} slots for ${keys.length} keys`);
    if (this.#protected.length < keys.length) this.#protected = new Int32Array(keys.length);
    const at = now ?? this.options.clock.now();
    try {
      for (let i = 0; i < keys.length; i++) {
        const id = this.#index.get(keys[i]) ?? this.#create(keys[i], this.#startIndex, at);
        out[i] = id;
        this.#protected[this.#protectedCount++] = id;
      }
    } finally {
      this.#protectedCount = 0;
    }
  }

  /** Batch look-up without creation: `out[i]` = id of `keys[i]` or -1. Returns how many were found. */
  idMany(keys: readonly string[], out: Int32Array): number {
    let found = 0;
    for (let i = 0; i < keys.length; i++) {
      const id = this.#index.get(keys[i]) ?? -1;
      out[i] = id;
      if (id >= 0) found++;
    }
    return found;
  }

  /** Marks a token seen at `now`: lastSeen = now, frequency += 1, and it takes its place in its tier's
   *  LRU order: O(1) when time does not go backwards, at most 64 steps otherwise (see `#linkSorted`). */
  touch(id: TokenId, now: Milliseconds): void {
    this.#check(id);
    const lastSeen = this.#lastSeen;
    lastSeen[id] = now;
    this.#frequency[id] += 1;
    const t = this.#tiers[this.#tierOf[id]];
    if (t.head === id) {
      const n = this.#next[id];
      if (n === -1 || lastSeen[n] <= now) return;
    } else if (now >= lastSeen[t.head]) {
      this.#unlink(t, id);
      this.#pushHead(t, id);
      return;
    }
    this.#unlink(t, id);
    this.#linkSorted(t, id);
  }

  /** Multiplies every frequency by `factor` (in [0, 1]). */
  decayFrequencies(factor: number): void {
    if (!(factor >= 0 && factor <= 1)) throw new RangeError(`decay factor must be in [0, 1], got ${factor}`);
    const f = this.#frequency;
    for (let i = 0; i < this.#idLimit; i++) f[i] *= factor;
  }

  /** Current size s of a token. */
  sizeOf(id: TokenId): number {
    this.#check(id);
    return this.#tiers[this.#tierOf[id]].size;
  }

  /** Where the token's row starts in `tiers[tierOf[id]].params` (slot * size). */
  offsetOf(id: TokenId): number {
    this.#check(id);
    return this.#slotOf[id] * this.#tiers[this.#tierOf[id]].size;
  }

  /** A view of the token's params (allocates a view: not for hot paths). */
  row(id: TokenId): Float32Array {
    this.#check(id);
    const t = this.#tiers[this.#tierOf[id]];
    const off = this.#slotOf[id] * t.size;
    return t.params.subarray(off, off + t.size);
  }

  /**
   * Moves a token to the tier of `newSize`. `transform(src, dst)` writes the new row (dst: length
   * newSize, zero-filled) from the old one (src: length old size); it must not mutate the store.
   * The optimizer state of the new row starts at 0, and so does its importance. Synchronous and
   * atomic: if `transform` throws, the token is left as it was. The old slot is freed (the last row of
   * the old tier moves into it). Moving to the token's current size does nothing.
   */
  move(id: TokenId, newSize: number, transform: (src: Float32Array, dst: Float32Array) => void): void {
    this.#check(id);
    const to = this.#tierIndex(newSize);
    if (to === this.#tierOf[id]) return;
    const saved = this.#protectedCount;
    if (this.#protected.length === saved) this.#growProtected();
    this.#protected[this.#protectedCount++] = id;
    try {
      this.#ensureRoom(to, false, 0);
    } finally {
      this.#protectedCount = saved;
    }
    const from = this.#tiers[this.#tierOf[id]];
    const dstTier = this.#tiers[to];
    const slot = dstTier.count;
    const srcOff = this.#slotOf[id] * from.size;
    const dst = dstTier.params.subarray(slot * dstTier.size, (slot + 1) * dstTier.size);
    dst.fill(0);
    transform(from.params.subarray(srcOff, srcOff + from.size), dst);
    this.#relocate(id, dstTier, slot);
  }

  /** Evicts a token now (calls `onEvict` first). */
  evict(id: TokenId): void {
    this.#check(id);
    this.#evict(id);
  }

  /** Evicts every token unseen for at least `ttlMs` at `now`; returns how many. Gives slack back when
   *  a tier keeps more than a quarter of its capacity (and more than one chunk) unused. */
  evictExpired(now: Milliseconds): number {
    const ttl = this.options.ttlMs;
    if (ttl === Number.POSITIVE_INFINITY) return 0;
    let evicted = 0;
    const lastSeen = this.#lastSeen;
    for (const t of this.#tiers) {
      while (t.tail !== -1 && now - lastSeen[t.tail] >= ttl) {
        this.#evict(t.tail);
        evicted++;
      }
    }
    if (evicted > 0) {
      for (const t of this.#tiers) {
        const slack = t.capacity - t.count;
        if (slack > this.options.chunkRows && slack > t.capacity >> 2) t.resize(t.count);
      }
    }
    return evicted;
  }

  /** Gives back every unused row of every tier, or of the tier of `size` alone; returns the bytes freed. */
  compact(size?: number): number {
    const before = this.#totalBytes();
    if (size === undefined) for (const t of this.#tiers) t.resize(t.count);
    else {
      const t = this.#tiers[this.#tierIndex(size)];
      t.resize(t.count);
    }
    return before - this.#totalBytes();
  }

  /** Calls `fn` for each token that is in the tier of `size` when the call starts and still is when its
   *  turn comes; `fn` may move or evict tokens (it iterates over a copy of the tier's ids). */
  forEachInTier(size: number, fn: (id: TokenId) => void): void {
    const ti = this.#tierIndex(size);
    const t = this.#tiers[ti];
    const ids = t.ids.slice(0, t.count);
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i];
      if (this.#tierOf[id] === ti) fn(id);
    }
  }

  /** Token ids of a tier, most recently seen first (allocates; for tests, the API and windows). */
  lruOrder(size: number): TokenId[] {
    const t = this.#tiers[this.#tierIndex(size)];
    const out: TokenId[] = [];
    for (let id = t.head; id !== -1; id = this.#next[id]) out.push(id);
    return out;
  }

  /** Bytes held, from the live counts and capacities (O(ladder length)). */
  accounting(): StoreAccounting {
    const tiers: TierAccounting[] = this.#tiers.map((t) => {
      const cap = t.capacity;
      const paramBytes = cap * t.size * 4;
      const optimizerBytes = cap * t.optFloats * 4;
      const importanceBytes = cap * t.impFloats * 4;
      const indexBytes = cap * 4;
      return {
        size: t.size,
        tokens: t.count,
        capacityRows: cap,
        paramBytes,
        optimizerBytes,
        importanceBytes,
        indexBytes,
        totalBytes: paramBytes + optimizerBytes + importanceBytes + indexBytes,
      };
    });
    const tokenColumnsBytes = this.#idCapacity * this.#idBytes;
    const mapBytes = this.#mapModel.bytes;
    const indexBytes = mapBytes + this.#keyBytes;
    let totalBytes = tokenColumnsBytes + indexBytes;
    for (const t of tiers) totalBytes += t.totalBytes;
    return {
      tiers,
      tokenColumnsBytes,
      indexBytes,
      mapBytes,
      keyBytes: this.#keyBytes,
      totalBytes,
      budgetBytes: this.#budget,
      tokens: this.#size,
    };
  }

  /** Tokens and bytes per field (O(fields × ladder length)). */
  fieldStats(): FieldStats[] {
    const L = this.#tiers.length;
    const mapShare = this.#size > 0 ? this.#mapModel.bytes / this.#size : 0;
    return this.#fieldNames.map((field, f) => {
      let tokens = 0;
      let bytes = this.#fieldKeyBytes[f];
      const tiers: Record<number, number> = {};
      for (let ti = 0; ti < L; ti++) {
        const n = this.#fieldTier[f * L + ti];
        const t = this.#tiers[ti];
        tiers[t.size] = n;
        tokens += n;
        bytes += n * t.bytesPerRow;
      }
      bytes += tokens * (this.#idBytes + mapShare);
      return { field, tokens, bytes: Math.round(bytes), tiers };
    });
  }

  /** The whole state as views (see StoreState). */
  exportState(): StoreState {
    const { clock: _clock, ...options } = this.options;
    const n = this.#idLimit;
    const slots = this.#slots;
    return {
      options,
      created: this.#created,
      idLimit: n,
      freeIds: this.#freeIds.subarray(0, this.#freeTop),
      keys: this.#keys.slice(0, n),
      tierOf: this.#tierOf.subarray(0, n),
      slotOf: this.#slotOf.subarray(0, n),
      linear: this.#linear.subarray(0, n),
      linearOptimizer: this.#linearOptimizer.subarray(0, n * slots),
      lastSeen: this.#lastSeen.subarray(0, n),
      frequency: this.#frequency.subarray(0, n),
      prev: this.#prev.subarray(0, n),
      next: this.#next.subarray(0, n),
      idCapacity: this.#idCapacity,
      tiers: this.#tiers.map((t) => ({
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
   * Rebuilds a store from a state (copying it), checking that it is consistent; `overrides` may set
   * the clock or change the budget and TTL. Throws PmeError PME_ERR_SNAPSHOT_CORRUPT naming what is
   * inconsistent.
   */
  static fromState(
    state: StoreState,
    overrides: Partial<StoreOptions> = {},
    source = 'state',
  ): EmbeddingStore {
    try {
      return EmbeddingStore.#fromState(state, overrides, source);
    } catch (error) {
      if (error instanceof PmeError) throw error;
      // A corrupt state can ask for absurd allocations or hold wrong types: one clear error for all.
      throw new PmeError('PME_ERR_SNAPSHOT_CORRUPT', source, (error as Error).message);
    }
  }

  static #fromState(state: StoreState, overrides: Partial<StoreOptions>, source: string): EmbeddingStore {
    const bad = (why: string): never => {
      throw new PmeError('PME_ERR_SNAPSHOT_CORRUPT', source, why);
    };
    let store: EmbeddingStore;
    try {
      store = new EmbeddingStore({ ...state.options, ...overrides });
    } catch (error) {
      return bad(`options: ${(error as Error).message}`);
    }
    if (store.options.ladder.join() !== state.options.ladder.join()) bad('the ladder cannot be overridden');
    if (store.options.optimizerSlots !== state.options.optimizerSlots)
      bad('optimizerSlots cannot be overridden');
    if (store.options.importance !== state.options.importance) bad('importance cannot be overridden');
    const n = state.idLimit;
    const slots = store.#slots;
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
      ['tiers', state.tiers.length, store.#tiers.length],
    ];
    for (const [name, got, want] of lengths)
      if (got !== want) bad(`${name} has length ${got}, expected ${want}`);

    store.#resizeIds(state.idCapacity);
    store.#idLimit = n;
    store.#created = state.created;
    store.#tierOf.set(state.tierOf);
    store.#slotOf.set(state.slotOf);
    store.#linear.set(state.linear);
    store.#linearOptimizer.set(state.linearOptimizer);
    store.#lastSeen.set(state.lastSeen);
    store.#frequency.set(state.frequency);
    store.#prev.set(state.prev);
    store.#next.set(state.next);
    for (let ti = 0; ti < store.#tiers.length; ti++) {
      const src = state.tiers[ti];
      const t = store.#tiers[ti];
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
    store.#freeIds.set(state.freeIds);
    store.#freeTop = state.freeIds.length;
    let live = 0;
    for (let id = 0; id < n; id++) {
      const ti = state.tierOf[id];
      if (ti === FREE) {
        if (!isFree[id]) bad(`id ${id} is neither live nor free`);
        store.#keys[id] = '';
        continue;
      }
      const t = store.#tiers[ti];
      const slot = state.slotOf[id];
      if (t === undefined || !(slot >= 0 && slot < t.count) || t.ids[slot] !== id) {
        bad(`token ${id} has tier ${ti} slot ${slot}`);
      }
      const key = state.keys[id];
      if (typeof key !== 'string' || store.#index.has(key)) bad(`token ${id} has a duplicate or bad key`);
      store.#register(id, key, ti);
      live++;
    }
    let listed = 0;
    for (const t of store.#tiers) {
      let prev = -1;
      let count = 0;
      for (let id = t.head; id !== -1; id = store.#next[id]) {
        if (
          !(id >= 0 && id < n) ||
          store.#tierOf[id] !== t.index ||
          store.#prev[id] !== prev ||
          ++count > t.count
        ) {
          bad(`LRU list of tier ${t.size} is broken at ${id}`);
        }
        prev = id;
      }
      if (count !== t.count || t.tail !== prev)
        bad(`LRU list of tier ${t.size} has ${count}/${t.count} tokens`);
      listed += count;
    }
    if (listed !== live) bad(`${live} live tokens but ${listed} in the tiers`);
    return store;
  }

  // ---------------------------------------------------------------- internals

  #check(id: TokenId): void {
    if (!(id >= 0 && id < this.#idLimit) || this.#tierOf[id] === FREE) {
      throw new PmeError('PME_ERR_NOT_FOUND', `token id ${id}`);
    }
  }

  #tierIndex(size: number): number {
    const i = this.options.ladder.indexOf(size);
    if (i < 0) throw new PmeError('PME_ERR_STORE_SIZE', size, this.options.ladder.join(', '));
    return i;
  }

  #totalBytes(): number {
    let total = this.#idCapacity * this.#idBytes + this.#mapModel.bytes + this.#keyBytes;
    for (const t of this.#tiers) total += t.capacity * t.bytesPerRow;
    return total;
  }

  #growRows(capacity: number): number {
    return Math.max(this.options.chunkRows, capacity >> 3);
  }

  #create(key: string, ti: number, now: Milliseconds): TokenId {
    if (typeof key !== 'string') throw new PmeError('PME_ERR_BAD_REQUEST', 'token key must be a string');
    const t = this.#tiers[ti];
    this.#ensureRoom(ti, true, stringBytes(key) + this.#mapModel.growthOnInsert(this.#size));
    const id = this.#freeTop > 0 ? this.#freeIds[--this.#freeTop] : this.#idLimit++;
    const slot = t.count++;
    t.ids[slot] = id;
    fillNormalRow(t.params, slot * t.size, t.size, this.options.initStd, this.options.seed, this.#created++);
    t.clearState(slot);
    this.#tierOf[id] = ti;
    this.#slotOf[id] = slot;
    this.#linear[id] = 0;
    this.#linearOptimizer.fill(0, id * this.#slots, (id + 1) * this.#slots);
    this.#lastSeen[id] = now;
    this.#frequency[id] = 0;
    this.#linkSorted(t, id);
    this.#register(id, key, ti);
    return id;
  }

  /** Key index, field and size bookkeeping of a new token. */
  #register(id: TokenId, key: string, ti: number): void {
    const L = this.#tiers.length;
    const eq = key.indexOf('=');
    const field = eq < 0 ? '' : key.slice(0, eq);
    let f = this.#fieldIndex.get(field);
    if (f === undefined) {
      f = this.#fieldNames.length;
      if (f > 0xffff) throw new PmeError('PME_ERR_BAD_REQUEST', 'more than 65536 distinct token fields');
      this.#fieldNames.push(field);
      this.#fieldIndex.set(field, f);
      this.#fieldKeyBytes.push(0);
      if (this.#fieldTier.length < (f + 1) * L) {
        const grown = new Int32Array(Math.max(8, f * 2) * L);
        grown.set(this.#fieldTier);
        this.#fieldTier = grown;
      }
    }
    const bytes = stringBytes(key);
    this.#keys[id] = key;
    this.#fieldOf[id] = f;
    this.#fieldTier[f * L + ti]++;
    this.#fieldKeyBytes[f] += bytes;
    this.#keyBytes += bytes;
    this.#mapModel.inserted(this.#size);
    this.#index.set(key, id);
    this.#size++;
  }

  /** Puts token `id` into `dst` at `slot` (a row already written there) and frees its old row. */
  #relocate(id: TokenId, dst: StoreTier, slot: number): void {
    const from = this.#tiers[this.#tierOf[id]];
    const oldSlot = this.#slotOf[id];
    dst.clearState(slot);
    dst.ids[slot] = id;
    dst.count++;
    this.#unlink(from, id);
    this.#removeRow(from, oldSlot);
    const L = this.#tiers.length;
    const f = this.#fieldOf[id];
    this.#fieldTier[f * L + from.index]--;
    this.#fieldTier[f * L + dst.index]++;
    this.#tierOf[id] = dst.index;
    this.#slotOf[id] = slot;
    this.#linkSorted(dst, id);
  }

  /** Frees a row, keeping the tier dense: the last row moves into the hole. */
  #removeRow(t: StoreTier, slot: number): void {
    const last = t.count - 1;
    if (slot !== last) {
      t.copyRow(last, slot);
      this.#slotOf[t.ids[slot]] = slot;
    }
    t.count = last;
  }

  #evict(id: TokenId): void {
    const key = this.#keys[id];
    this.onEvict?.(id, key);
    const ti = this.#tierOf[id];
    const t = this.#tiers[ti];
    this.#unlink(t, id);
    this.#removeRow(t, this.#slotOf[id]);
    const bytes = stringBytes(key);
    const f = this.#fieldOf[id];
    this.#fieldTier[f * this.#tiers.length + ti]--;
    this.#fieldKeyBytes[f] -= bytes;
    this.#keyBytes -= bytes;
    this.#index.delete(key);
    this.#size--;
    this.#mapModel.removed(this.#size);
    this.#keys[id] = '';
    this.#tierOf[id] = FREE;
    this.#slotOf[id] = -1;
    this.#linear[id] = 0;
    this.#linearOptimizer.fill(0, id * this.#slots, (id + 1) * this.#slots);
    this.#lastSeen[id] = 0;
    this.#frequency[id] = 0;
    this.#prev[id] = -1;
    this.#next[id] = -1;
    this.#freeIds[this.#freeTop++] = id;
  }

  /**
   * Makes sure tier `ti` has a free row (and, with `needId`, that an id is free) with the total plus
   * `extra` bytes within the budget, applying the budget policy when it would not fit.
   */
  #ensureRoom(ti: number, needId: boolean, extra: number): void {
    const t = this.#tiers[ti];
    for (;;) {
      const tierFull = t.count === t.capacity;
      const idFull = needId && this.#freeTop === 0 && this.#idLimit === this.#idCapacity;
      if (this.#budget === Number.POSITIVE_INFINITY) {
        if (tierFull) t.resize(t.capacity + this.#growRows(t.capacity));
        if (idFull) this.#resizeIds(this.#idCapacity + this.#growRows(this.#idCapacity));
        return;
      }
      const minimal =
        this.#totalBytes() + extra + (tierFull ? t.bytesPerRow : 0) + (idFull ? this.#idBytes : 0);
      if (minimal <= this.#budget) {
        // Grow by a chunk, or by what still fits under the budget.
        let room = this.#budget - minimal;
        if (tierFull) {
          const more = Math.min(this.#growRows(t.capacity) - 1, Math.floor(room / t.bytesPerRow));
          room -= more * t.bytesPerRow;
          t.resize(t.capacity + 1 + more);
        }
        if (idFull) {
          const more = Math.min(this.#growRows(this.#idCapacity) - 1, Math.floor(room / this.#idBytes));
          this.#resizeIds(this.#idCapacity + 1 + more);
        }
        return;
      }
      if (!this.#relieve(ti, minimal - this.#budget)) {
        throw new PmeError(
          'PME_ERR_STORE_BUDGET',
          this.#budget,
          `${minimal} bytes (nothing left to demote or evict)`,
        );
      }
    }
  }

  /** One step of the budget policy; returns false when nothing could be freed. */
  #relieve(ti: number, shortfall: number): boolean {
    const target = this.#tiers[ti];
    const goal = shortfall + Math.min(target.bytesPerRow * this.options.chunkRows, this.#budget / 16);
    // 1. Slack of the other tiers.
    let freed = false;
    for (const t of this.#tiers) {
      if (t !== target && t.capacity > t.count) {
        t.resize(t.count);
        freed = true;
      }
    }
    if (freed) return true;
    // 2. Demote the coldest tokens of the largest tier above startSize.
    // Never from the target tier itself: its freed rows would be reused, not returned, while the
    // lower tier grows, so the total would rise.
    for (let L = this.#tiers.length - 1; L > this.#startIndex; L--) {
      const from = this.#tiers[L];
      if (from.count === 0 || from === target) continue;
      const to = this.#tiers[L - 1];
      const n = Math.min(from.count, Math.ceil(goal / (from.bytesPerRow - to.bytesPerRow)));
      if (this.#demoteColdest(from, to, n) === 0) continue;
      from.resize(from.count);
      return true;
    }
    // 3. Evict the coldest tokens of all tiers.
    let evicted = 0;
    let bytes = 0;
    while (bytes < goal) {
      const victim = this.#coldest();
      if (victim === -1) break;
      bytes += this.#tiers[this.#tierOf[victim]].bytesPerRow + stringBytes(this.#keys[victim]);
      this.#evict(victim);
      evicted++;
    }
    for (const t of this.#tiers) if (t !== target && t.capacity > t.count) t.resize(t.count);
    return evicted > 0;
  }

  /** Moves up to n coldest unprotected tokens of `from` one step down (truncating); returns how many. */
  #demoteColdest(from: StoreTier, to: StoreTier, n: number): number {
    const victims = new Int32Array(n);
    let k = 0;
    for (let id = from.tail; id !== -1 && k < n; id = this.#prev[id]) {
      if (!this.#isProtected(id)) victims[k++] = id;
    }
    if (k === 0) return 0;
    // Exact growth: the policy is freeing memory, so the lower tier gets no chunk of slack.
    if (to.capacity - to.count < k) to.resize(to.count + k);
    const s = to.size;
    for (let i = 0; i < k; i++) {
      const id = victims[i];
      const slot = to.count;
      const src = this.#slotOf[id] * from.size;
      if (s > 0) to.params.set(from.params.subarray(src, src + s), slot * s);
      this.#relocate(id, to, slot);
    }
    return k;
  }

  /** Least recently seen unprotected token over all tiers, or -1. */
  #coldest(): TokenId {
    let best = -1;
    let bestSeen = Number.POSITIVE_INFINITY;
    for (const t of this.#tiers) {
      let id = t.tail;
      while (id !== -1 && this.#isProtected(id)) id = this.#prev[id];
      if (id !== -1 && this.#lastSeen[id] < bestSeen) {
        best = id;
        bestSeen = this.#lastSeen[id];
      }
    }
    return best;
  }

  #isProtected(id: TokenId): boolean {
    for (let i = 0; i < this.#protectedCount; i++) if (this.#protected[i] === id) return true;
    return false;
  }

  #growProtected(): void {
    const grown = new Int32Array(this.#protected.length * 2);
    grown.set(this.#protected);
    this.#protected = grown;
  }

  #resizeIds(capacity: number): void {
    const n = this.#idLimit;
    const grow = <T extends Uint8Array | Uint16Array | Int32Array | Float32Array | Float64Array>(
      old: T,
      fresh: T,
      used: number,
    ): T => {
      fresh.set(old.subarray(0, used));
      return fresh;
    };
    this.#tierOf = grow(this.#tierOf, new Uint8Array(capacity).fill(FREE), n);
    this.#slotOf = grow(this.#slotOf, new Int32Array(capacity).fill(-1), n);
    this.#fieldOf = grow(this.#fieldOf, new Uint16Array(capacity), n);
    this.#linear = grow(this.#linear, new Float32Array(capacity), n);
    this.#linearOptimizer = grow(
      this.#linearOptimizer,
      new Float32Array(capacity * this.#slots),
      n * this.#slots,
    );
    this.#lastSeen = grow(this.#lastSeen, new Float64Array(capacity), n);
    this.#frequency = grow(this.#frequency, new Float32Array(capacity), n);
    this.#prev = grow(this.#prev, new Int32Array(capacity).fill(-1), n);
    this.#next = grow(this.#next, new Int32Array(capacity).fill(-1), n);
    this.#freeIds = grow(this.#freeIds, new Int32Array(capacity), this.#freeTop);
    for (let i = this.#keys.length; i < capacity; i++) this.#keys.push('');
    this.#idCapacity = capacity;
  }

  // LRU lists: one per tier over the shared prev/next columns, lastSeen non-increasing from head.

  #unlink(t: StoreTier, id: TokenId): void {
    const p = this.#prev[id];
    const n = this.#next[id];
    if (p === -1) t.head = n;
    else this.#next[p] = n;
    if (n === -1) t.tail = p;
    else this.#prev[n] = p;
    this.#prev[id] = -1;
    this.#next[id] = -1;
  }

  #pushHead(t: StoreTier, id: TokenId): void {
    this.#prev[id] = -1;
    this.#next[id] = t.head;
    if (t.head === -1) t.tail = id;
    else this.#prev[t.head] = id;
    t.head = id;
  }

  /**
   * Inserts by lastSeen, walking from the end nearer in time. The walk is capped at MAX_WALK steps so
   * no touch or move costs O(tier): a token placed out of time order further than that (an event much
   * later than its neighbours, a move of a middle-aged token) stops there, and the list is then only
   * nearly sorted. The effect is bounded and safe: such a token is treated as more recent (or older) than
   * it is by at most the 64 tokens it skipped, i.e. TTL or budget eviction reaches it a little later
   * (or sooner). With time-ordered touches the order is exact.
   */
  #linkSorted(t: StoreTier, id: TokenId): void {
    const seen = this.#lastSeen;
    const x = seen[id];
    if (t.head === -1 || x >= seen[t.head]) {
      this.#pushHead(t, id);
      return;
    }
    const prev = this.#prev;
    const next = this.#next;
    let after: number; // insert after this node
    let steps = 0;
    if (x < seen[t.tail]) {
      after = t.tail;
    } else if (x - seen[t.tail] < seen[t.head] - x) {
      after = t.tail;
      // Stops before the head at the latest: seen[head] > x.
      while (seen[after] <= x && steps++ < MAX_WALK) after = prev[after];
    } else {
      after = t.head;
      while (next[after] !== -1 && seen[next[after]] > x && steps++ < MAX_WALK) after = next[after];
    }
    const n = next[after];
    prev[id] = after;
    next[id] = n;
    next[after] = id;
    if (n === -1) t.tail = id;
    else prev[n] = id;
  }
}

/** The EmbeddingStore: the public face of src/store, composing the columns, key index, LRU lists,
 *  tiers and budget policy of the files beside it. */
import { isPmeError, PmeError } from '../errors.js';
import type { Bytes } from '../util/bytes.js';
import type { Milliseconds } from '../util/clock.js';
import {
  type FieldStats,
  type StoreAccounting,
  type TierAccounting,
  tokenColumnBytes,
} from './accounting.js';
import { BudgetPolicy, type BudgetRelief, type LastResort } from './budget.js';
import { FREE, TokenColumns, type TokenId } from './columns.js';
import { EvictedWeights } from './evicted-weights.js';
import { fillNormalRow } from './init.js';
import { KeyIndex } from './key-index.js';
import { linkSorted, touch, unlink } from './lru.js';
import { resolveStoreOptions, type StoreOptions } from './options.js';
import { exportState, importState, type StoreParts, type StoreState } from './state.js';
import { StoreTier, type Tier } from './tier.js';

export type { BudgetRelief, LastResort } from './budget.js';
export type { TokenId } from './columns.js';
export type { StoreState } from './state.js';

/** Told of each token about to be evicted (TTL, budget or `evict`), while its row is still readable
 *  and before its id can be reused. It must not throw nor mutate the store. */
export type EvictListener = (id: TokenId, key: string) => void;
/** Told of each token just created (its key registered, its row and weights set). It must not
 *  throw nor mutate the store. */
export type CreateListener = (id: TokenId, key: string) => void;
/** Told of each token that changed tier (a `move`, or a demotion by the budget policy), after it. */
export type MoveListener = (id: TokenId, fromSize: number, toSize: number) => void;

/**
 * Variable-size embedding store: token key -> (tier, slot), one set of contiguous slabs per ladder
 * size, per-token columns (columns.ts), LRU order per tier (lru.ts), a hard memory budget
 * (budget.ts), state export and validated restore (state.ts).
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
 *  2. relief: the BudgetRelief set with `setRelief` (PME in the service) steps tokens down with
 *     their vectors carried (`shrink`), coldest first;
 *  3. demote, only without a relief: the coldest tokens (least recently seen) of the largest tier
 *     above `startSize` go one ladder step down, their rows truncated to the first dimensions (the
 *     last resort, counted in `lastResort`; it never shrinks a token below `startSize`). A relief
 *     that gave nothing keeps the tokens above the start size where they are on purpose;
 *  4. evict: the coldest tokens over all tiers are evicted (the evict listeners are told of each).
 * Tokens of the call itself are never demoted or evicted (the moved token, the keys of one
 * `getOrCreateMany`). If nothing is left to free, PmeError PME_ERR_STORE_BUDGET is thrown (or, with
 * getOrCreateMany's `refuse`, the new token is not created and counted in `refused`), and the store
 * is unchanged apart from what was already freed.
 */
export class EmbeddingStore {
  readonly options: Readonly<StoreOptions>;
  /** D, the largest ladder size. */
  readonly dim: number;
  readonly tiers: readonly Tier[];

  readonly #tiers: StoreTier[];
  readonly #startIndex: number;
  /** Ladder index new tokens are created at: `startSize` until PME raises it (setCreateSize). */
  #createIndex: number;
  readonly #idBytes: Bytes;
  readonly #columns: TokenColumns;
  readonly #evicted: EvictedWeights;
  readonly #index: KeyIndex;
  readonly #parts: StoreParts;
  readonly #policy: BudgetPolicy;
  readonly #createListeners: CreateListener[] = [];
  readonly #evictListeners: EvictListener[] = [];
  readonly #moveListeners: MoveListener[] = [];
  /** New tokens not created because the budget could not hold them (getOrCreateMany `refuse`). */
  refused = 0;
  /** New tokens that started from the linear weight their key left when it was evicted. */
  recalled = 0;

  constructor(options?: Partial<StoreOptions>) {
    this.options = resolveStoreOptions(options);
    const { ladder, optimizerSlots, linearOptimizerSlots, importance } = this.options;
    this.dim = ladder[ladder.length - 1];
    this.#idBytes = tokenColumnBytes(linearOptimizerSlots);
    this.#startIndex = ladder.indexOf(this.options.startSize);
    this.#createIndex = this.#startIndex;
    this.#tiers = ladder.map(
      (size, i) => new StoreTier(size, i, optimizerSlots, importance && size === this.dim ? this.dim : 0),
    );
    this.tiers = Object.freeze([...this.#tiers]);
    this.#columns = new TokenColumns(linearOptimizerSlots);
    this.#evicted = new EvictedWeights(
      evictedBucketsWithin(this.options.evictedBuckets, this.options.budgetBytes, linearOptimizerSlots),
      linearOptimizerSlots,
    );
    this.#index = new KeyIndex(ladder.length);
    const columns = this.#columns;
    const index = this.#index;
    this.#parts = {
      options: this.options,
      tiers: this.#tiers,
      columns,
      evicted: this.#evicted,
      index,
      created: 0,
      resizeIds(capacity: number): void {
        columns.resize(capacity);
        index.grow(capacity);
      },
    };
    const parts = this.#parts;
    this.#policy = new BudgetPolicy(
      {
        tiers: this.#tiers,
        columns,
        keys: index.keys,
        startIndex: this.#startIndex,
        chunkRows: this.options.chunkRows,
        idBytes: this.#idBytes,
        totalBytes: () => this.#totalBytes(),
        resizeIds: (capacity) => parts.resizeIds(capacity),
        relocate: (id, dst, slot) => this.#relocate(id, dst, slot),
        evict: (id) => this.#evict(id),
      },
      this.options.budgetBytes,
    );
  }

  /** Asks `relief` for room before the budget policy demotes by truncation or evicts (PME in the
   *  service; see BudgetRelief). One at a time: a new one replaces the one before. */
  setRelief(relief: BudgetRelief | null): void {
    this.#policy.relief = relief;
  }

  /** What the budget policy did as a last resort: truncating demotions and evictions. */
  get lastResort(): Readonly<LastResort> {
    return this.#policy.lastResort;
  }

  /** Tells `listener` of every token created from now on; returns the function that stops it. */
  onCreate(listener: CreateListener): () => void {
    return subscribe(this.#createListeners, listener);
  }

  /** Tells `listener` of every eviction from now on (in the order listeners were added); returns
   *  the function that stops it. */
  onEvict(listener: EvictListener): () => void {
    return subscribe(this.#evictListeners, listener);
  }

  /** Tells `listener` of every change of a token's tier from now on; returns the function that stops it. */
  onMove(listener: MoveListener): () => void {
    return subscribe(this.#moveListeners, listener);
  }

  // Per-token columns. Replaced when they grow: read them through these getters on each call.
  /** Ladder index of each token's tier (255 for a free id). */
  get tierOf(): Uint8Array {
    return this.#columns.tierOf;
  }
  /** Slot of each token within its tier. */
  get slotOf(): Int32Array {
    return this.#columns.slotOf;
  }
  /** Linear (first-order) weight of each token. */
  get linear(): Float32Array {
    return this.#columns.linear;
  }
  /** `linearOptimizerSlots` floats per token for the linear weight (token id * slots). */
  get linearOptimizer(): Float32Array {
    return this.#columns.linearOptimizer;
  }
  /** Last time each token was touched, in ms. */
  get lastSeen(): Float64Array {
    return this.#columns.lastSeen;
  }
  /** Decayed count of touches (see `touch`, `decayFrequencies`). */
  get frequency(): Float32Array {
    return this.#columns.frequency;
  }
  /** Live tokens. */
  get size(): number {
    return this.#index.size;
  }
  /** Ids ever handed out: every id below it is live or free, none above is. */
  get idLimit(): number {
    return this.#columns.idLimit;
  }
  /** Allocated length of the per-token columns. */
  get idCapacity(): number {
    return this.#columns.capacity;
  }

  /** Accounted bytes of one allocated row of the tier of `size`: its params, optimizer state,
   *  importance (top tier) and slot -> id entry. */
  bytesPerRow(size: number): Bytes {
    return this.#tiers[this.#tierIndex(size)].bytesPerRow;
  }

  /** Allocated rows of the tier of `size` (what the accounting charges; >= its tokens). */
  capacityOf(size: number): number {
    return this.#tiers[this.#tierIndex(size)].capacity;
  }

  /** The id of `key`, or -1 when absent. No side effect. */
  id(key: string): TokenId {
    return this.#index.get(key);
  }

  /** Whether `id` names a live token. */
  alive(id: TokenId): boolean {
    return id >= 0 && id < this.#columns.idLimit && this.#columns.tierOf[id] !== FREE;
  }

  key(id: TokenId): string {
    this.#check(id);
    return this.#index.keys[id];
  }

  /** Every field (the part of a key before its first '=') a token has had: the store's field
   *  table, which only grows until a restore rebuilds it from the live tokens. */
  fieldNames(): readonly string[] {
    return this.#index.fieldNames;
  }

  /** The size new tokens are created at: `startSize`, or what PME set (setCreateSize). */
  get createSize(): number {
    return this.#tiers[this.#createIndex].size;
  }

  /** Creates new tokens at `size` (on the ladder, not below `startSize`) from now on. */
  setCreateSize(size: number): void {
    const index = this.#tierIndex(size);
    if (index < this.#startIndex)
      throw new PmeError(
        'PME_ERR_CONFIG_INVALID',
        `create size ${size} is below startSize ${this.options.startSize}`,
      );
    this.#createIndex = index;
  }

  /** The part of the key before the first '=' ('' when there is none). */
  field(id: TokenId): string {
    this.#check(id);
    return this.#index.fieldNames[this.#columns.fieldOf[id]];
  }

  /** The id of `key`, creating the token at `size` (default `createSize`) when absent, last seen at `now`
   *  (default `clock.now()`; pass the time base you give `touch`). Creation applies the budget policy
   *  first when needed and never exceeds the budget. An existing token keeps its size and last seen. */
  getOrCreate(key: string, size?: number, now?: Milliseconds): TokenId {
    const found = this.#index.get(key);
    if (found >= 0) return found;
    return this.#create(
      key,
      size === undefined ? this.#createIndex : this.#tierIndex(size),
      now ?? this.options.clock.now(),
    );
  }

  /**
   * Batch look-up of `n` keys (default all): `out[i]` = id of `keys[i]`, created at `createSize` when
   * absent. A null key means `out[i]` already holds a live id the caller resolved itself (from a
   * cache): it is kept as it is. The budget policy never demotes or evicts a token of the batch
   * (given or resolved), so every id in `out` is live and where it was when this returns. When
   * the budget cannot hold a new token even so, PME_ERR_STORE_BUDGET is thrown, or with
   * `refuse`, that token is not created: `out[i]` = -1, counted in `refused`. Keys from
   * `linearFrom` on are created at size 0 instead (tokens that keep only a linear weight: the
   * trainer's user × item crosses). Returns how many keys were refused.
   */
  getOrCreateMany(
    keys: readonly (string | null)[],
    out: Int32Array,
    now?: Milliseconds,
    n: number = keys.length,
    refuse = false,
    linearFrom: number = n,
  ): number {
    if (out.length < n) throw new RangeError(`out has ${out.length} slots for ${n} keys`);
    const guard = this.#policy.protected;
    const at = now ?? this.options.clock.now();
    const index = this.#index;
    let refused = 0;
    try {
      for (let i = 0; i < n; i++) {
        const key = keys[i];
        if (key === null) {
          this.#check(out[i]);
          guard.push(out[i]);
        }
      }
      for (let i = 0; i < n; i++) {
        const key = keys[i];
        if (key === null) continue;
        let id = index.get(key);
        if (id < 0) {
          try {
            id = this.#create(key, i < linearFrom ? this.#createIndex : this.#tierIndex(0), at);
          } catch (error) {
            if (!refuse || !isPmeError(error, 'PME_ERR_STORE_BUDGET')) throw error;
            out[i] = -1;
            refused++;
            continue;
          }
        }
        out[i] = id;
        guard.push(id);
      }
    } finally {
      guard.count = 0;
    }
    this.refused += refused;
    return refused;
  }

  /** Batch look-up without creation: `out[i]` = id of `keys[i]` or -1. Returns how many were found. */
  idMany(keys: readonly string[], out: Int32Array): number {
    let found = 0;
    const index = this.#index;
    for (let i = 0; i < keys.length; i++) {
      const id = index.get(keys[i]);
      out[i] = id;
      if (id >= 0) found++;
    }
    return found;
  }

  /** Marks a token seen at `now`: lastSeen = now, frequency += 1, and it takes its place in its tier's
   *  LRU order: O(1) when time does not go backwards, at most 64 steps otherwise (see lru.ts). */
  touch(id: TokenId, now: Milliseconds): void {
    this.#check(id);
    touch(this.#tiers[this.#columns.tierOf[id]], this.#columns, id, now);
  }

  /** Multiplies every frequency by `factor` (in [0, 1]). */
  decayFrequencies(factor: number): void {
    if (!(factor >= 0 && factor <= 1)) throw new RangeError(`decay factor must be in [0, 1], got ${factor}`);
    const f = this.#columns.frequency;
    for (let i = 0; i < this.#columns.idLimit; i++) f[i] *= factor;
  }

  /** Current size s of a token. */
  sizeOf(id: TokenId): number {
    this.#check(id);
    return this.#tiers[this.#columns.tierOf[id]].size;
  }

  /** Where the token's row starts in `tiers[tierOf[id]].params` (slot * size). */
  offsetOf(id: TokenId): number {
    this.#check(id);
    return this.#columns.slotOf[id] * this.#tiers[this.#columns.tierOf[id]].size;
  }

  /** A view of the token's params (allocates a view: not for hot paths). */
  row(id: TokenId): Float32Array {
    this.#check(id);
    const t = this.#tiers[this.#columns.tierOf[id]];
    const off = this.#columns.slotOf[id] * t.size;
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
    const cols = this.#columns;
    const to = this.#tierIndex(newSize);
    if (to === cols.tierOf[id]) return;
    const guard = this.#policy.protected;
    const saved = guard.count;
    guard.push(id);
    try {
      this.#policy.ensureRoom(to, false, 0);
    } finally {
      guard.count = saved;
    }
    this.#transfer(id, this.#tiers[to], transform);
  }

  /** Writes `transform` of the token's row into the next row of `dstTier` (zero-filled first; the
   *  tier has room) and moves the token there. */
  #transfer(
    id: TokenId,
    dstTier: StoreTier,
    transform: (src: Float32Array, dst: Float32Array) => void,
  ): void {
    const cols = this.#columns;
    const from = this.#tiers[cols.tierOf[id]];
    const slot = dstTier.count;
    const srcOff = cols.slotOf[id] * from.size;
    const dst = dstTier.params.subarray(slot * dstTier.size, (slot + 1) * dstTier.size);
    dst.fill(0);
    transform(from.params.subarray(srcOff, srcOff + from.size), dst);
    this.#relocate(id, dstTier, slot);
  }

  /**
   * Moves a token to a smaller size, like `move`, without asking the budget for room: the
   * destination tier grows by the row it needs, exactly, and the row left behind is slack the
   * policy gives back. What a BudgetRelief moves tokens with (the budget is making room then).
   */
  shrink(id: TokenId, newSize: number, transform: (src: Float32Array, dst: Float32Array) => void): void {
    this.#check(id);
    const cols = this.#columns;
    const to = this.#tierIndex(newSize);
    const from = this.#tiers[cols.tierOf[id]];
    if (newSize >= from.size)
      throw new PmeError('PME_ERR_STORE_SIZE', newSize, `smaller than ${from.size}, to shrink`);
    const dstTier = this.#tiers[to];
    // An eighth more rows at a time: the relief shrinks tokens one by one, and a row at a time
    // copied the whole tier per token (ml-latest-small at 25%, 9,319 relief moves: 230 ms of a
    // 0.9 s replay). The caller gives the slack back (the budget policy after its relief).
    if (dstTier.count === dstTier.capacity) dstTier.resize(dstTier.count + Math.max(1, dstTier.count >> 3));
    this.#transfer(id, dstTier, transform);
  }

  /** Evicts a token now (the evict listeners are told first). */
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
    const lastSeen = this.#columns.lastSeen;
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
      if (this.#columns.tierOf[id] === ti) fn(id);
    }
  }

  /** The least recently seen token of the tier of `size` that `skip` does not skip, or -1. */
  coldestIn(size: number, skip: (id: TokenId) => boolean): TokenId {
    const t = this.#tiers[this.#tierIndex(size)];
    const prev = this.#columns.prev;
    let id = t.tail;
    while (id !== -1 && skip(id)) id = prev[id];
    return id;
  }

  /** Token ids of a tier, most recently seen first (allocates; for tests, the API and windows). */
  lruOrder(size: number): TokenId[] {
    const t = this.#tiers[this.#tierIndex(size)];
    const out: TokenId[] = [];
    for (let id = t.head; id !== -1; id = this.#columns.next[id]) out.push(id);
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
    const index = this.#index;
    const tokenColumnsBytes = this.#columns.capacity * this.#idBytes;
    const mapBytes = index.table.bytes;
    const indexBytes = mapBytes + index.keyBytes;
    const evictedBytes = this.#evicted.bytes;
    let totalBytes = tokenColumnsBytes + indexBytes + evictedBytes;
    for (const t of tiers) totalBytes += t.totalBytes;
    return {
      tiers,
      tokenColumnsBytes,
      indexBytes,
      mapBytes,
      keyBytes: index.keyBytes,
      evictedBytes,
      totalBytes,
      budgetBytes: this.#policy.budget,
      tokens: index.size,
    };
  }

  /** Live tokens of the field of token `id` (itself included; O(ladder length)). */
  fieldTokensOf(id: TokenId): number {
    return this.#index.fieldTokens(this.#columns.fieldOf[id]);
  }

  /** Tokens and bytes per field (O(fields × ladder length)). */
  fieldStats(): FieldStats[] {
    return this.#index.fieldStats(
      this.#tiers.map((t) => t.size),
      this.#tiers.map((t) => t.bytesPerRow),
      this.#idBytes,
    );
  }

  /** The whole state as views (see StoreState). */
  exportState(): StoreState {
    return exportState(this.#parts);
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
      let store: EmbeddingStore;
      try {
        store = new EmbeddingStore({ ...state.options, ...overrides });
      } catch (error) {
        throw new PmeError('PME_ERR_SNAPSHOT_CORRUPT', source, `options: ${(error as Error).message}`);
      }
      importState(store.#parts, state, source);
      return store;
    } catch (error) {
      if (error instanceof PmeError) throw error;
      // A corrupt state can ask for absurd allocations or hold wrong types: one clear error for all.
      throw new PmeError('PME_ERR_SNAPSHOT_CORRUPT', source, (error as Error).message);
    }
  }

  // ---------------------------------------------------------------- internals

  #check(id: TokenId): void {
    if (!(id >= 0 && id < this.#columns.idLimit) || this.#columns.tierOf[id] === FREE) {
      throw new PmeError('PME_ERR_NOT_FOUND', `token id ${id}`);
    }
  }

  #tierIndex(size: number): number {
    const i = this.options.ladder.indexOf(size);
    if (i < 0) throw new PmeError('PME_ERR_STORE_SIZE', size, this.options.ladder.join(', '));
    return i;
  }

  #totalBytes(): Bytes {
    const index = this.#index;
    let total =
      this.#columns.capacity * this.#idBytes + index.table.bytes + index.keyBytes + this.#evicted.bytes;
    for (const t of this.#tiers) total += t.capacity * t.bytesPerRow;
    return total;
  }

  #create(key: string, ti: number, now: Milliseconds): TokenId {
    if (typeof key !== 'string') throw new PmeError('PME_ERR_BAD_REQUEST', 'token key must be a string');
    const t = this.#tiers[ti];
    const cols = this.#columns;
    this.#policy.ensureRoom(ti, true, this.#index.costOf(key));
    const id = cols.take();
    const slot = t.count++;
    t.ids[slot] = id;
    const parts = this.#parts;
    fillNormalRow(t.params, slot * t.size, t.size, this.options.initStd, this.options.seed, parts.created++);
    t.clearState(slot);
    cols.tierOf[id] = ti;
    cols.slotOf[id] = slot;
    cols.linear[id] = 0;
    cols.linearOptimizer.fill(0, id * cols.slots, (id + 1) * cols.slots);
    cols.lastSeen[id] = now;
    cols.frequency[id] = 0;
    linkSorted(t, cols, id);
    const index = this.#index;
    index.register(cols, id, key, ti);
    if (this.#evicted.recall(index.table.hashOf(id), id, cols.linear, cols.linearOptimizer)) this.recalled++;
    const listeners = this.#createListeners;
    for (let i = 0; i < listeners.length; i++) listeners[i](id, key);
    return id;
  }

  /** Puts token `id` into `dst` at `slot` (a row already written there) and frees its old row. */
  #relocate(id: TokenId, dst: StoreTier, slot: number): void {
    const cols = this.#columns;
    const from = this.#tiers[cols.tierOf[id]];
    const oldSlot = cols.slotOf[id];
    dst.clearState(slot);
    dst.ids[slot] = id;
    dst.count++;
    unlink(from, cols, id);
    this.#removeRow(from, oldSlot);
    this.#index.moved(cols, id, from.index, dst.index);
    cols.tierOf[id] = dst.index;
    cols.slotOf[id] = slot;
    linkSorted(dst, cols, id);
    const listeners = this.#moveListeners;
    for (let i = 0; i < listeners.length; i++) listeners[i](id, from.size, dst.size);
  }

  /** Frees a row, keeping the tier dense: the last row moves into the hole. */
  #removeRow(t: StoreTier, slot: number): void {
    const last = t.count - 1;
    if (slot !== last) {
      t.copyRow(last, slot);
      this.#columns.slotOf[t.ids[slot]] = slot;
    }
    t.count = last;
  }

  #evict(id: TokenId): void {
    const cols = this.#columns;
    const key = this.#index.keys[id];
    const listeners = this.#evictListeners;
    for (let i = 0; i < listeners.length; i++) listeners[i](id, key);
    this.#evicted.remember(
      this.#index.table.hashOf(id),
      cols.linear[id],
      cols.linearOptimizer,
      id * cols.slots,
    );
    const ti = cols.tierOf[id];
    const t = this.#tiers[ti];
    unlink(t, cols, id);
    this.#removeRow(t, cols.slotOf[id]);
    this.#index.remove(cols, id, ti);
    cols.release(id);
  }
}

/** The largest power of two at most `buckets` whose table fits in 1/16 of the budget (0 if none). */
function evictedBucketsWithin(buckets: number, budget: Bytes, slots: number): number {
  let b = buckets;
  while (b > 0 && b * EvictedWeights.bytesPerBucket(slots) > budget / 16) b >>= 1;
  return b;
}

function subscribe<T>(list: T[], listener: T): () => void {
  list.push(listener);
  return () => {
    const i = list.indexOf(listener);
    if (i >= 0) list.splice(i, 1);
  };
}

/**
 * A minimal in-memory ModelStore for the math tests: fixed tokens with fixed sizes, random rows.
 * The real EmbeddingStore is exercised by the trainer tests; this keeps the gradient checks
 * independent of slab growth and eviction.
 */
import type { ModelStore, ModelTier } from '../../src/engine/model/model.js';
import { createRandom } from '../../src/util/random.js';

export function fakeStore(
  dim: number,
  ladder: number[],
  sizes: number[],
  seed = 1,
  std = 0.3,
  linearOptimizerSlots = 1,
): ModelStore {
  const random = createRandom(seed);
  const counts = ladder.map(() => 0);
  const tierOf = new Uint8Array(sizes.length);
  const slotOf = new Int32Array(sizes.length);
  sizes.forEach((s, id) => {
    const ti = ladder.indexOf(s);
    if (ti < 0) throw new Error(`size ${s} not in ladder`);
    tierOf[id] = ti;
    slotOf[id] = counts[ti]++;
  });
  const tiers: ModelTier[] = ladder.map((size, ti) => {
    const params = new Float32Array(Math.max(1, counts[ti]) * size);
    for (let i = 0; i < params.length; i++) params[i] = random.normal() * std;
    return {
      size,
      params,
      optimizer: new Float32Array(params.length),
      importance: size === dim ? new Float32Array(params.length) : null,
      count: counts[ti],
    };
  });
  const linear = new Float32Array(sizes.length);
  for (let i = 0; i < linear.length; i++) linear[i] = random.normal() * std;
  return {
    dim,
    tiers,
    tierOf,
    slotOf,
    linear,
    linearOptimizer: new Float32Array(sizes.length * linearOptimizerSlots),
    options: { linearOptimizerSlots },
  };
}

/**
 * A growing store with the trainer's API (getOrCreate/id/touch), every new token at `size`.
 * Arrays are replaced on growth, like the real store, so code that caches them breaks here too.
 */
export class GrowingStore implements ModelStore {
  readonly dim: number;
  readonly tiers: {
    size: number;
    params: Float32Array;
    optimizer: Float32Array;
    importance: Float32Array | null;
    count: number;
  }[];
  tierOf = new Uint8Array(4);
  slotOf = new Int32Array(4);
  linear = new Float32Array(4);
  linearOptimizer = new Float32Array(4);
  readonly options = { linearOptimizerSlots: 1 };
  readonly keys: string[] = [];
  readonly #ids = new Map<string, number>();
  readonly #tier: number;
  readonly #random;
  touches = 0;

  constructor(dim: number, ladder: number[], size: number, seed = 1) {
    this.dim = dim;
    this.#tier = ladder.indexOf(size);
    this.#random = createRandom(seed);
    this.tiers = ladder.map((s) => ({
      size: s,
      params: new Float32Array(4 * s),
      optimizer: new Float32Array(4 * s),
      importance: s === dim ? new Float32Array(4 * s) : null,
      count: 0,
    }));
  }

  get size(): number {
    return this.keys.length;
  }

  key(id: number): string {
    return this.keys[id];
  }

  /** Never evicts nor moves: listeners are never called. */
  onEvict(): () => void {
    return () => {};
  }
  onMove(): () => void {
    return () => {};
  }

  id(key: string): number {
    return this.#ids.get(key) ?? -1;
  }

  touch(_id: number, _now: number): void {
    this.touches++;
  }

  /** The store's batch look-up: a null key keeps the id the caller put in `out`. */
  getOrCreateMany(keys: readonly (string | null)[], out: Int32Array, _now?: number, n = keys.length): number {
    for (let i = 0; i < n; i++) {
      const key = keys[i];
      if (key !== null) out[i] = this.getOrCreate(key);
    }
    return 0;
  }

  getOrCreate(key: string): number {
    const known = this.#ids.get(key);
    if (known !== undefined) return known;
    const id = this.keys.length;
    if (id === this.linear.length) {
      const grow = <T extends Float32Array | Int32Array | Uint8Array>(a: T): T => {
        const b = new (a.constructor as new (n: number) => T)(a.length * 2);
        b.set(a);
        return b;
      };
      this.tierOf = grow(this.tierOf);
      this.slotOf = grow(this.slotOf);
      this.linear = grow(this.linear);
      this.linearOptimizer = grow(this.linearOptimizer);
      for (const t of this.tiers) {
        t.params = grow(t.params);
        t.optimizer = grow(t.optimizer);
        if (t.importance) t.importance = grow(t.importance);
      }
    }
    this.keys.push(key);
    this.#ids.set(key, id);
    this.tierOf[id] = this.#tier;
    this.slotOf[id] = id;
    const t = this.tiers[this.#tier];
    t.count++;
    for (let i = 0; i < t.size; i++) t.params[id * t.size + i] = this.#random.normal() * 0.01;
    return id;
  }
}

/**
 * A tiered store with dense rows, move and accounting, for the PME tests until (and besides) the
 * real store: bytes are charged per live row (4 × (size + size + importance)), no capacity slack.
 */
export class TieredStore {
  readonly dim: number;
  readonly ladder: number[];
  readonly tiers: {
    size: number;
    params: Float32Array;
    optimizer: Float32Array;
    importance: Float32Array | null;
    count: number;
    ids: number[];
  }[];
  tierOf = new Uint8Array(1 << 16);
  slotOf = new Int32Array(1 << 16);
  linear = new Float32Array(1 << 16);
  linearOptimizer = new Float32Array(1 << 16);
  /** Touches per token, as the store counts them. */
  frequency = new Float32Array(1 << 16);
  readonly keys: string[] = [];
  readonly #ids = new Map<string, number>();
  readonly #start: number;
  readonly #random;
  readonly #moveListeners: ((id: number, from: number, to: number) => void)[] = [];
  readonly options: { optimizerSlots: number; linearOptimizerSlots: number; startSize: number };
  budgetBytes: number;

  constructor(
    dim: number,
    ladder: number[],
    startSize: number,
    budgetBytes = Number.POSITIVE_INFINITY,
    seed = 1,
  ) {
    this.dim = dim;
    this.ladder = ladder;
    this.#start = startSize;
    this.options = { optimizerSlots: 1, linearOptimizerSlots: 1, startSize };
    this.budgetBytes = budgetBytes;
    this.#random = createRandom(seed);
    this.tiers = ladder.map((size) => ({
      size,
      params: new Float32Array((1 << 16) * size),
      optimizer: new Float32Array((1 << 16) * size),
      importance: size === dim ? new Float32Array((1 << 16) * size) : null,
      count: 0,
      ids: [],
    }));
  }

  get size(): number {
    return this.#ids.size;
  }
  id(key: string): number {
    return this.#ids.get(key) ?? -1;
  }
  key(id: number): string {
    return this.keys[id];
  }
  touch(id: number): void {
    this.frequency[id]++;
  }
  alive(id: number): boolean {
    return id >= 0 && id < this.keys.length;
  }
  /** Never evicts: eviction listeners are never called. */
  onEvict(): () => void {
    return () => {};
  }
  onMove(listener: (id: number, from: number, to: number) => void): () => void {
    this.#moveListeners.push(listener);
    return () => this.#moveListeners.splice(this.#moveListeners.indexOf(listener), 1);
  }
  /** Bytes charged per live row: params, one optimizer slot, importance at the top size. */
  bytesPerRow(size: number): number {
    return 4 * (2 * size + (size === this.dim ? size : 0));
  }
  sizeOf(id: number): number {
    return this.ladder[this.tierOf[id]];
  }
  evictExpired(): number {
    return 0;
  }
  forEachInTier(size: number, fn: (id: number) => void): void {
    for (const id of this.tiers[this.ladder.indexOf(size)].ids.slice()) fn(id);
  }

  /** The store's batch look-up: a null key keeps the id the caller put in `out`. */
  getOrCreateMany(keys: readonly (string | null)[], out: Int32Array, _now?: number, n = keys.length): number {
    for (let i = 0; i < n; i++) {
      const key = keys[i];
      if (key !== null) out[i] = this.getOrCreate(key);
    }
    return 0;
  }

  getOrCreate(key: string, size = this.#start): number {
    const known = this.#ids.get(key);
    if (known !== undefined) return known;
    const id = this.keys.length;
    this.keys.push(key);
    this.#ids.set(key, id);
    this.#place(id, this.ladder.indexOf(size));
    const t = this.tiers[this.tierOf[id]];
    for (let i = 0; i < t.size; i++) t.params[this.slotOf[id] * t.size + i] = this.#random.normal() * 0.01;
    return id;
  }

  #place(id: number, ti: number): void {
    const t = this.tiers[ti];
    this.tierOf[id] = ti;
    this.slotOf[id] = t.count++;
    t.ids.push(id);
    const s = t.size;
    t.optimizer.fill(0, this.slotOf[id] * s, (this.slotOf[id] + 1) * s);
    t.importance?.fill(0, this.slotOf[id] * s, (this.slotOf[id] + 1) * s);
  }

  #remove(id: number): void {
    const t = this.tiers[this.tierOf[id]];
    const slot = this.slotOf[id];
    const last = t.count - 1;
    const s = t.size;
    if (slot !== last) {
      const moved = t.ids[last];
      t.params.copyWithin(slot * s, last * s, last * s + s);
      t.optimizer.copyWithin(slot * s, last * s, last * s + s);
      t.importance?.copyWithin(slot * s, last * s, last * s + s);
      t.ids[slot] = moved;
      this.slotOf[moved] = slot;
    }
    t.ids.pop();
    t.count--;
  }

  move(id: number, newSize: number, transform: (src: Float32Array, dst: Float32Array) => void): void {
    const from = this.tiers[this.tierOf[id]];
    const src = from.params.slice(this.slotOf[id] * from.size, (this.slotOf[id] + 1) * from.size);
    this.#remove(id);
    this.#place(id, this.ladder.indexOf(newSize));
    const to = this.tiers[this.tierOf[id]];
    const dst = to.params.subarray(this.slotOf[id] * newSize, (this.slotOf[id] + 1) * newSize);
    dst.fill(0);
    transform(src, dst);
    for (const listener of this.#moveListeners) listener(id, from.size, newSize);
  }

  accounting() {
    const tiers = this.tiers.map((t) => {
      const paramBytes = t.count * t.size * 4;
      const importanceBytes = t.importance ? paramBytes : 0;
      return {
        size: t.size,
        tokens: t.count,
        capacityRows: t.count,
        paramBytes,
        optimizerBytes: paramBytes,
        importanceBytes,
        indexBytes: 0,
        totalBytes: 2 * paramBytes + importanceBytes,
      };
    });
    return {
      tiers,
      totalBytes: tiers.reduce((a, t) => a + t.totalBytes, 0),
      budgetBytes: this.budgetBytes,
      tokens: this.size,
    };
  }
}

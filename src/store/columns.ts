/**
 * The store's per-token columns: one typed array per attribute, indexed by token id, plus the stack
 * of free ids. No object per token: a million tokens are a dozen arrays. The arrays are replaced when
 * they grow, so holders read them through the columns object on every call.
 */
/** Dense small integer naming a live token; reused after eviction. */
export type TokenId = number;

/** `tierOf` value of an id that names no live token. */
export const FREE = 255;

export class TokenColumns {
  /** Floats of optimizer state per linear weight. */
  readonly slots: number;
  /** Allocated length of every column. */
  capacity = 0;
  /** Ids ever handed out: every id below it is live or free, none above is. */
  idLimit = 0;
  /** Ladder index of each token's tier (FREE for a free id). */
  tierOf = new Uint8Array(0);
  /** Slot of each token within its tier (-1 for a free id). */
  slotOf = new Int32Array(0);
  /** Index of each token's field in the key index's field table. */
  fieldOf = new Uint16Array(0);
  linear = new Float32Array(0);
  /** `slots` floats per token (id * slots). */
  linearOptimizer = new Float32Array(0);
  lastSeen = new Float64Array(0);
  frequency = new Float32Array(0);
  /** LRU links within the token's tier (-1: none). */
  prev = new Int32Array(0);
  next = new Int32Array(0);
  /** Free ids, the reuse stack (bottom first), `freeTop` of them. */
  freeIds = new Int32Array(0);
  freeTop = 0;

  constructor(slots: number) {
    this.slots = slots;
  }

  /** Whether a new id needs the columns to grow first. */
  get full(): boolean {
    return this.freeTop === 0 && this.idLimit === this.capacity;
  }

  /** A free id (reused first), its row of every column reset. */
  take(): TokenId {
    return this.freeTop > 0 ? this.freeIds[--this.freeTop] : this.idLimit++;
  }

  /** Marks `id` free and clears its columns. */
  release(id: TokenId): void {
    this.tierOf[id] = FREE;
    this.slotOf[id] = -1;
    this.linear[id] = 0;
    this.linearOptimizer.fill(0, id * this.slots, (id + 1) * this.slots);
    this.lastSeen[id] = 0;
    this.frequency[id] = 0;
    this.prev[id] = -1;
    this.next[id] = -1;
    this.freeIds[this.freeTop++] = id;
  }

  /** Reallocates every column to `capacity` ids (>= idLimit), keeping the used part. */
  resize(capacity: number): void {
    const n = this.idLimit;
    const slots = this.slots;
    const grow = <T extends Uint8Array | Uint16Array | Int32Array | Float32Array | Float64Array>(
      old: T,
      fresh: T,
      used: number,
    ): T => {
      fresh.set(old.subarray(0, used));
      return fresh;
    };
    this.tierOf = grow(this.tierOf, new Uint8Array(capacity).fill(FREE), n);
    this.slotOf = grow(this.slotOf, new Int32Array(capacity).fill(-1), n);
    this.fieldOf = grow(this.fieldOf, new Uint16Array(capacity), n);
    this.linear = grow(this.linear, new Float32Array(capacity), n);
    this.linearOptimizer = grow(this.linearOptimizer, new Float32Array(capacity * slots), n * slots);
    this.lastSeen = grow(this.lastSeen, new Float64Array(capacity), n);
    this.frequency = grow(this.frequency, new Float32Array(capacity), n);
    this.prev = grow(this.prev, new Int32Array(capacity).fill(-1), n);
    this.next = grow(this.next, new Int32Array(capacity).fill(-1), n);
    this.freeIds = grow(this.freeIds, new Int32Array(capacity), this.freeTop);
    this.capacity = capacity;
  }
}

/** One tier of the store: every token of one size, in contiguous slabs. */
export interface Tier {
  /** The row length s (a ladder size). */
  readonly size: number;
  /** Index of `size` in the ladder (the value of `tierOf` for tokens of this tier). */
  readonly index: number;
  /** Rows of length s; the row of slot k is at [k*s, (k+1)*s). Replaced (a new array) when the tier
   *  grows or shrinks: read it from the tier on each call, never keep it across store mutations. */
  params: Float32Array;
  /** Optimizer state, rows of length s*optimizerSlots in the same slot order (slot k at k*s*slots). */
  optimizer: Float32Array;
  /** Per-(token, dimension) importance, rows of length D; only in the top tier when enabled. */
  importance: Float32Array | null;
  /** Token id of each slot (slot -> id), valid for slots < count. Replaced on growth like `params`. */
  ids: Int32Array;
  /** Live rows. Rows are dense: slots 0..count-1 are exactly the tier's tokens. */
  readonly count: number;
  /** Allocated rows (what the accounting charges). */
  readonly capacity: number;
}

/**
 * Internal tier with the store's bookkeeping. Rows are kept dense (a freed slot is filled by the last
 * row, see `removeRow`): the budget charges allocated capacity, and only a dense slab can give rows
 * back by shrinking; a free-slot stack would leave holes that hold bytes forever.
 */
export class StoreTier implements Tier {
  readonly size: number;
  readonly index: number;
  params: Float32Array;
  optimizer: Float32Array;
  importance: Float32Array | null;
  ids: Int32Array;
  count = 0;
  capacity = 0;
  /** LRU list over the store's prev/next columns, most recently seen at `head`. -1 when empty. */
  head = -1;
  tail = -1;
  /** Floats per row of each slab. */
  readonly optFloats: number;
  readonly impFloats: number;
  /** Accounted bytes per allocated row: params + optimizer + importance + the slot->id column. */
  readonly bytesPerRow: number;

  constructor(size: number, index: number, optimizerSlots: number, importanceFloats: number) {
    this.size = size;
    this.index = index;
    this.optFloats = size * optimizerSlots;
    this.impFloats = importanceFloats;
    this.params = new Float32Array(0);
    this.optimizer = new Float32Array(0);
    this.importance = importanceFloats > 0 ? new Float32Array(0) : null;
    this.ids = new Int32Array(0);
    this.bytesPerRow = 4 * (size + this.optFloats + importanceFloats + 1);
  }

  /** Reallocates every slab to `capacity` rows (>= count), keeping the live rows. */
  resize(capacity: number): void {
    if (capacity < this.count)
      throw new RangeError(`tier ${this.size}: capacity ${capacity} < ${this.count}`);
    if (capacity === this.capacity) return;
    const n = this.count;
    this.params = copyPrefix(new Float32Array(capacity * this.size), this.params, n * this.size);
    this.optimizer = copyPrefix(
      new Float32Array(capacity * this.optFloats),
      this.optimizer,
      n * this.optFloats,
    );
    if (this.importance !== null) {
      this.importance = copyPrefix(
        new Float32Array(capacity * this.impFloats),
        this.importance,
        n * this.impFloats,
      );
    }
    this.ids = copyPrefix(new Int32Array(capacity), this.ids, n);
    this.capacity = capacity;
  }

  /** Copies row `from` over row `to` in every slab (used to keep rows dense). */
  copyRow(from: number, to: number): void {
    const s = this.size;
    if (s > 0) this.params.copyWithin(to * s, from * s, from * s + s);
    const o = this.optFloats;
    if (o > 0) this.optimizer.copyWithin(to * o, from * o, from * o + o);
    const imp = this.importance;
    if (imp !== null) imp.copyWithin(to * this.impFloats, from * this.impFloats, (from + 1) * this.impFloats);
    this.ids[to] = this.ids[from];
  }

  /** Zeroes optimizer and importance of a row (a fresh row's state starts at 0). */
  clearState(slot: number): void {
    const o = this.optFloats;
    if (o > 0) this.optimizer.fill(0, slot * o, slot * o + o);
    const imp = this.importance;
    if (imp !== null) imp.fill(0, slot * this.impFloats, (slot + 1) * this.impFloats);
  }
}

function copyPrefix<T extends Float32Array | Int32Array>(dst: T, src: T, n: number): T {
  if (n > 0) dst.set(src.subarray(0, n));
  return dst;
}

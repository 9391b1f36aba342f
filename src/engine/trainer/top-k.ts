/**
 * A partial top-k over (index, score) pairs: a min-heap of the k best so far in two typed arrays,
 * reused across requests (it grows to the largest k asked, and allocates nothing per candidate).
 */
export class TopK {
  #index = new Int32Array(64);
  #score = new Float64Array(64);
  #size = 0;
  #k = 0;

  /** Bytes of the heap's arrays (exact). */
  get bytes(): number {
    return this.#index.byteLength + this.#score.byteLength;
  }

  /** Empties the heap for a request of `k` results. */
  reset(k: number): void {
    if (this.#index.length < k) {
      this.#index = new Int32Array(k);
      this.#score = new Float64Array(k);
    }
    this.#size = 0;
    this.#k = k;
  }

  /** The score a candidate must beat once the heap is full: most items lose to it, and the
   *  caller skips offer() for them (`z <= floor`). NaN until full, since no score is <= NaN. */
  get floor(): number {
    return this.#size === this.#k ? this.#score[0] : Number.NaN;
  }

  /** A candidate replaces the root when it beats it. */
  offer(index: number, score: number): void {
    const hi = this.#index;
    const hs = this.#score;
    if (this.#size < this.#k) {
      let c = this.#size++;
      while (c > 0) {
        const parent = (c - 1) >> 1;
        if (hs[parent] <= score) break;
        hi[c] = hi[parent];
        hs[c] = hs[parent];
        c = parent;
      }
      hi[c] = index;
      hs[c] = score;
      return;
    }
    if (score <= hs[0]) return;
    const size = this.#size;
    let c = 0;
    for (;;) {
      const l = 2 * c + 1;
      if (l >= size) break;
      const r = l + 1;
      const m = r < size && hs[r] < hs[l] ? r : l;
      if (hs[m] >= score) break;
      hi[c] = hi[m];
      hs[c] = hs[m];
      c = m;
    }
    hi[c] = index;
    hs[c] = score;
  }

  /** The entries, best first (ties by index, so results are deterministic). */
  drain(): Array<{ index: number; score: number }> {
    const out: Array<{ index: number; score: number }> = [];
    for (let j = 0; j < this.#size; j++) out.push({ index: this.#index[j], score: this.#score[j] });
    return out.sort((a, b) => b.score - a.score || a.index - b.index);
  }
}

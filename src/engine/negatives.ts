/**
 * Negative sampling for positive-only streams: draws item indexes with probability
 * ∝ (count + 1)^exponent. The +1 lets catalog items never seen yet be drawn; the exponent
 * (0.75, as in word2vec) flattens popularity so the tail gets drawn too.
 *
 * Counts change with every event, so a static alias table would need rebuilding; a Fenwick tree
 * over the weights makes both an update and a draw O(log n) with no allocation.
 */
import type { Random } from '../util/random.js';

export class PopularitySampler {
  readonly exponent: number;
  #tree: Float64Array;
  #weight: Float64Array;
  #count: Float64Array;
  /** 1 for an item out of the draw: its count goes on, its weight stays 0. */
  #inactive: Uint8Array;
  #n = 0;
  #total = 0;

  constructor(exponent = 0.75, capacity = 1024) {
    this.exponent = exponent;
    this.#tree = new Float64Array(capacity + 1);
    this.#weight = new Float64Array(capacity);
    this.#count = new Float64Array(capacity);
    this.#inactive = new Uint8Array(capacity);
  }

  get size(): number {
    return this.#n;
  }

  get total(): number {
    return this.#total;
  }

  /** Bytes of the tree, weights, counts and flags (exact: their byteLength; capacity, not only
   *  the items added). */
  get bytes(): number {
    return (
      this.#tree.byteLength + this.#weight.byteLength + this.#count.byteLength + this.#inactive.byteLength
    );
  }

  count(index: number): number {
    return this.#count[index];
  }

  /** A copy of the counts of items 0..n-1. */
  counts(n: number): Float64Array {
    return this.#count.slice(0, n);
  }

  /** Adds item index `n` (indexes are dense, 0..size-1, added in order). */
  add(): number {
    const index = this.#n;
    if (index === this.#weight.length) this.#grow();
    this.#n++;
    this.#set(index, 1);
    return index;
  }

  /** One more occurrence of item `index`. */
  increment(index: number): void {
    this.#count[index]++;
    // An inactive item may still turn up in events; it stays out of the draw until reactivated.
    if (this.#inactive[index] === 0) this.#set(index, (this.#count[index] + 1) ** this.exponent);
  }

  /** Takes an item out of the draw (an inactive catalog item) or puts it back. */
  setActive(index: number, active: boolean): void {
    this.#inactive[index] = active ? 0 : 1;
    this.#set(index, active ? (this.#count[index] + 1) ** this.exponent : 0);
  }

  /** A seeded draw; -1 when nothing can be drawn. */
  sample(random: Random): number {
    if (this.#total <= 0) return -1;
    let target = random.next() * this.#total;
    const tree = this.#tree;
    let pos = 0;
    let step = 1;
    while (step * 2 <= this.#n) step *= 2;
    for (; step > 0; step >>= 1) {
      const next = pos + step;
      if (next <= this.#n && tree[next] <= target) {
        pos = next;
        target -= tree[next];
      }
    }
    // Float rounding can walk one past the last positive weight.
    return pos < this.#n ? pos : this.#n - 1;
  }

  #set(index: number, weight: number): void {
    const delta = weight - this.#weight[index];
    if (delta === 0) return;
    this.#weight[index] = weight;
    this.#total += delta;
    const tree = this.#tree;
    for (let i = index + 1; i < tree.length; i += i & -i) tree[i] += delta;
  }

  #grow(): void {
    const capacity = this.#weight.length * 2;
    const weight = new Float64Array(capacity);
    weight.set(this.#weight);
    const count = new Float64Array(capacity);
    count.set(this.#count);
    const inactive = new Uint8Array(capacity);
    inactive.set(this.#inactive);
    this.#weight = weight;
    this.#count = count;
    this.#inactive = inactive;
    // Rebuild the tree in O(n) at the new size.
    const tree = new Float64Array(capacity + 1);
    for (let i = 1; i <= capacity; i++) {
      tree[i] += weight[i - 1];
      const parent = i + (i & -i);
      if (parent <= capacity) tree[parent] += tree[i];
    }
    this.#tree = tree;
  }
}

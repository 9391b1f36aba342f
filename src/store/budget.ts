/**
 * The store's budget policy: makes room for one more row (and id) without the accounted total ever
 * crossing the budget, by freeing memory in a stated order (see EmbeddingStore), and never touching
 * the tokens of the call in progress (the protected set).
 */
import { PmeError } from '../errors.js';
import type { Bytes } from '../util/bytes.js';
import { stringBytes } from './accounting.js';
import type { TokenColumns, TokenId } from './columns.js';
import type { StoreTier } from './tier.js';

/** What the policy needs of the store it guards. */
export interface BudgetHost {
  readonly tiers: readonly StoreTier[];
  readonly columns: TokenColumns;
  readonly keys: readonly string[];
  /** Ladder index of `startSize`: the safety net never demotes below it. */
  readonly startIndex: number;
  readonly chunkRows: number;
  /** Bytes per allocated token id. */
  readonly idBytes: Bytes;
  totalBytes(): Bytes;
  resizeIds(capacity: number): void;
  /** Moves `id` into `dst` at `slot` (its row already written there). */
  relocate(id: TokenId, dst: StoreTier, slot: number): void;
  evict(id: TokenId): void;
}

/**
 * Frees memory when the budget needs room, before the policy's own truncation and eviction: in the
 * service, PME, which demotes through its importances and least-squares transfer, coldest first.
 * It moves tokens with EmbeddingStore.shrink (never through the budget again) and must leave
 * `isProtected` tokens (those of the call in progress) where they are. Returns how many tokens it
 * moved; 0 when it has nothing to give.
 */
export interface BudgetRelief {
  relieve(bytes: Bytes, isProtected: (id: TokenId) => boolean): number;
}

/** What the policy did as a last resort (after the relief, if any): truncating demotions and
 *  evictions, counted for /metrics. */
export interface LastResort {
  demoted: number;
  evicted: number;
}

/** Ids the policy must not demote or evict during the current call, as a small stack. */
export class ProtectedIds {
  #ids = new Int32Array(16);
  count = 0;

  push(id: TokenId): void {
    if (this.#ids.length === this.count) {
      const grown = new Int32Array(this.#ids.length * 2);
      grown.set(this.#ids);
      this.#ids = grown;
    }
    this.#ids[this.count++] = id;
  }

  has(id: TokenId): boolean {
    const ids = this.#ids;
    for (let i = 0; i < this.count; i++) if (ids[i] === id) return true;
    return false;
  }
}

export class BudgetPolicy {
  readonly budget: Bytes;
  readonly protected = new ProtectedIds();
  readonly lastResort: LastResort = { demoted: 0, evicted: 0 };
  /** Asked for room before the policy's own demotions and evictions (null: none). */
  relief: BudgetRelief | null = null;
  #relieving = false;
  readonly #host: BudgetHost;

  constructor(host: BudgetHost, budget: Bytes) {
    this.#host = host;
    this.budget = budget;
  }

  #growRows(capacity: number): number {
    return Math.max(this.#host.chunkRows, capacity >> 3);
  }

  /**
   * Makes sure tier `ti` has a free row (and, with `needId`, that an id is free) with the total plus
   * `extra` bytes within the budget, applying the policy when it would not fit.
   */
  ensureRoom(ti: number, needId: boolean, extra: Bytes): void {
    const host = this.#host;
    const t = host.tiers[ti];
    const cols = host.columns;
    for (;;) {
      const tierFull = t.count === t.capacity;
      const idFull = needId && cols.full;
      if (this.budget === Number.POSITIVE_INFINITY) {
        if (tierFull) t.resize(t.capacity + this.#growRows(t.capacity));
        if (idFull) host.resizeIds(cols.capacity + this.#growRows(cols.capacity));
        return;
      }
      const minimal =
        host.totalBytes() + extra + (tierFull ? t.bytesPerRow : 0) + (idFull ? host.idBytes : 0);
      if (minimal <= this.budget) {
        // Grow by a chunk, or by what still fits under the budget, but never more than a 16th of
        // the budget at once, and a 64th (what a step of the policy frees beyond the shortfall)
        // once less than a 16th is free. Slack taken all at once leaves no room for tokens, and the
        // policy would evict the live ones to keep empty rows (a 300 KB budget held 2 tokens and
        // 280 KB of a chunk of 4,096 rows). Near the budget, a tier holding more slack than a step
        // frees gives it to the next tier that asks (step 1 of #relieve), which gives it back:
        // test/store/budget-slack.test.ts reallocated tier 8 7,808 times in 20,000 events at 300 KB
        // with a 16th throughout (597 now). Far from it, a 64th would make a large tier grow, and
        // be copied, four times as often (bench:api's 100,000-item server stalled up to 296 ms).
        const free = this.budget - minimal;
        let room = Math.min(free, free > this.budget / 16 ? this.budget / 16 : this.budget / 64);
        if (tierFull) {
          const more = Math.min(this.#growRows(t.capacity) - 1, Math.floor(room / t.bytesPerRow));
          room -= more * t.bytesPerRow;
          t.resize(t.capacity + 1 + more);
        }
        if (idFull) {
          const more = Math.min(this.#growRows(cols.capacity) - 1, Math.floor(room / host.idBytes));
          host.resizeIds(cols.capacity + 1 + more);
        }
        return;
      }
      if (!this.#relieve(ti, minimal - this.budget)) {
        throw new PmeError(
          'PME_ERR_STORE_BUDGET',
          this.budget,
          `${minimal} bytes (nothing left to demote or evict)`,
        );
      }
    }
  }

  /** One step of the policy; returns false when nothing could be freed. */
  #relieve(ti: number, shortfall: Bytes): boolean {
    const host = this.#host;
    const tiers = host.tiers;
    const target = tiers[ti];
    // Beyond the shortfall, a little room so that the next inserts do not each need a step: at most
    // a chunk of rows or 1/64 of the budget. 1/16 evicted ~16 of 220 live tokens per step at a
    // 28 KB budget (offline, two epochs: 1,778 evictions, test AUC 0.526; 1/64: 225, 0.693);
    // 1/256 made a 13.6 MB PME run of the planted stream collapse (AUC 0.5912 against 0.6254).
    const goal = shortfall + Math.min(target.bytesPerRow * host.chunkRows, this.budget / 64);
    // 1. Slack of the other tiers, when it makes the goal. Less is given back only with what the
    //    later steps free: taken alone, a few rows of slack let the target grow by a few rows, the
    //    next insert into the other tier takes them back, and each step reallocates a whole tier
    //    (ml-latest-small with --cross-user-item at 2.5 MiB: 16,981 reallocations of tier 8).
    let slack = 0;
    for (const t of tiers) if (t !== target) slack += (t.capacity - t.count) * t.bytesPerRow;
    if (slack >= goal) {
      this.#giveBackSlack(target);
      return true;
    }
    // 2. The relief (PME): demotions that keep what a token learned. Not from inside itself.
    if (this.relief !== null && !this.#relieving) {
      this.#relieving = true;
      let moved = 0;
      const capacity = target.capacity;
      try {
        moved = this.relief.relieve(goal, (id) => this.protected.has(id));
      } finally {
        this.#relieving = false;
      }
      if (moved > 0) {
        // The rows moved out are slack now: give it back (the target's own is reused). Tokens the
        // relief moved into the target grew it by an eighth: that growth goes back too, but a row.
        // Kept, it held the total over the budget, and the evictions that followed left their rows
        // in the target as well, freeing only their keys: 1,538 of 3,927 tokens went in one call
        // (ml-latest-small at 10% of full's bytes, PME, seed 2).
        this.#giveBackSlack(target);
        if (target.capacity > capacity) target.resize(Math.max(capacity, target.count + 1));
        return true;
      }
    }
    // 3. Without a relief, demote the coldest tokens of the largest tier above startSize
    //    (truncating: the last resort, counted). A relief that gave nothing keeps the tokens above
    //    the start size where they are on purpose (PME: tokens under search, or ones seen more
    //    recently than the coldest), so the coldest is evicted instead.
    // Never from the target tier itself: its freed rows would be reused, not returned, while the
    // lower tier grows, so the total would rise.
    for (let L = tiers.length - 1; this.relief === null && L > host.startIndex; L--) {
      const from = tiers[L];
      if (from.count === 0 || from === target) continue;
      const to = tiers[L - 1];
      const n = Math.min(from.count, Math.ceil(goal / (from.bytesPerRow - to.bytesPerRow)));
      const demoted = this.#demoteColdest(from, to, n);
      if (demoted === 0) continue;
      this.lastResort.demoted += demoted;
      from.resize(from.count);
      return true;
    }
    // 4. Evict the coldest tokens of all tiers.
    let evicted = 0;
    let bytes = 0;
    while (bytes < goal) {
      const victim = this.#coldest();
      if (victim === -1) break;
      bytes += tiers[host.columns.tierOf[victim]].bytesPerRow + stringBytes(host.keys[victim]);
      host.evict(victim);
      evicted++;
    }
    this.lastResort.evicted += evicted;
    return this.#giveBackSlack(target) || evicted > 0;
  }

  /** Shrinks every tier but `target` to its live rows; returns whether any gave bytes back. */
  #giveBackSlack(target: StoreTier): boolean {
    let gave = false;
    for (const t of this.#host.tiers) {
      if (t !== target && t.capacity > t.count) {
        t.resize(t.count);
        gave = true;
      }
    }
    return gave;
  }

  /** Moves up to n coldest unprotected tokens of `from` one step down (truncating); returns how many. */
  #demoteColdest(from: StoreTier, to: StoreTier, n: number): number {
    const host = this.#host;
    const cols = host.columns;
    const victims = new Int32Array(n);
    let k = 0;
    for (let id = from.tail; id !== -1 && k < n; id = cols.prev[id]) {
      if (!this.protected.has(id)) victims[k++] = id;
    }
    if (k === 0) return 0;
    // Exact growth: the policy is freeing memory, so the lower tier gets no chunk of slack.
    if (to.capacity - to.count < k) to.resize(to.count + k);
    const s = to.size;
    for (let i = 0; i < k; i++) {
      const id = victims[i];
      const slot = to.count;
      const src = cols.slotOf[id] * from.size;
      if (s > 0) to.params.set(from.params.subarray(src, src + s), slot * s);
      host.relocate(id, to, slot);
    }
    return k;
  }

  /** Least recently seen unprotected token over all tiers, or -1. */
  #coldest(): TokenId {
    const cols = this.#host.columns;
    let best = -1;
    let bestSeen = Number.POSITIVE_INFINITY;
    for (const t of this.#host.tiers) {
      let id = t.tail;
      while (id !== -1 && this.protected.has(id)) id = cols.prev[id];
      if (id !== -1 && cols.lastSeen[id] < bestSeen) {
        best = id;
        bestSeen = cols.lastSeen[id];
      }
    }
    return best;
  }
}

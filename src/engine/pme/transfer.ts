/**
 * How PME moves tokens between tiers and prices them: bytes per row and what the live rows hold,
 * the row limit a window prunes to, moves that the budget may refuse, least-squares solvers per
 * tier (rebuilt when the projections step), the optimizer state a moved row carries, and the
 * budget's relief (BudgetRelief): the coldest tokens stepped down with their vectors carried.
 */
import { isPmeError } from '../../errors.js';
import type { BudgetRelief } from '../../store/index.js';
import type { Model, TokenId } from '../model/model.js';
import type { PmeOptions, PmeStore } from './options.js';
import { TierLeastSquares } from './prune.js';

export class Transfer implements BudgetRelief {
  readonly store: PmeStore;
  readonly ladder: readonly number[];
  readonly D: number;
  /** Moves the budget could not make room for (see move). */
  refusedMoves = 0;
  /** Tokens stepped down for the budget's relief (see relieve). */
  reliefMoves = 0;
  readonly options: Readonly<PmeOptions>;
  readonly #model: () => Model | null;
  /** Least-squares solvers per size, with the projections' version they were built on. */
  readonly #solvers = new Map<number, { version: number; ls: TierLeastSquares }>();
  /** Scratch: one D-space vector. */
  readonly #vector: Float64Array;

  constructor(store: PmeStore, options: Readonly<PmeOptions>, model: () => Model | null) {
    this.store = store;
    this.options = options;
    this.#model = model;
    this.ladder = store.tiers.map((t) => t.size);
    this.D = store.dim;
    this.#vector = new Float64Array(this.D);
  }

  /** Accounted bytes of one row at `size`: what a move to or from that size adds or frees. */
  rowBytes(size: number): number {
    return this.store.bytesPerRow(size);
  }

  /** Bytes the live rows hold: the accounted total minus allocated rows no token uses. The store
   *  grows a tier by whole chunks, so its capacity can sit far above what tokens use; sizing a
   *  window on capacity would read that slack as full and prune every searched token to 0. */
  liveBytes(acc: ReturnType<PmeStore['accounting']>): number {
    let slack = 0;
    for (const t of acc.tiers)
      if (t.capacityRows > t.tokens) slack += (t.capacityRows - t.tokens) * (t.totalBytes / t.capacityRows);
    return acc.totalBytes - slack;
  }

  /** Mean optimizer accumulator of a token's row (0 for size 0 or no optimizer state). */
  meanAccumulator(id: TokenId): number {
    const store = this.store;
    const tier = store.tiers[store.tierOf[id]];
    const s = tier.size;
    const opt = tier.optimizer;
    if (s === 0 || opt.length === 0) return 0;
    const width = s * store.options.optimizerSlots;
    const off = store.slotOf[id] * width;
    let sum = 0;
    for (let i = 0; i < width; i++) sum += opt[off + i];
    return sum / width;
  }

  /** After a move: the store zeroes the new row's optimizer state, which would make the next
   *  Adagrad steps of a well-trained token as large as a fresh token's (a jolt to every score it
   *  takes part in). Its accumulators start at the old row's mean instead. */
  carryAccumulator(id: TokenId, mean: number): void {
    if (!(mean > 0)) return;
    const store = this.store;
    const tier = store.tiers[store.tierOf[id]];
    const s = tier.size;
    const opt = tier.optimizer;
    if (s === 0 || opt.length === 0) return;
    const width = s * store.options.optimizerSlots;
    opt.fill(mean, store.slotOf[id] * width, (store.slotOf[id] + 1) * width);
  }

  /** Bytes the live rows hold (no slack): the part of memory that sizes decide. */
  rowsOf(acc: ReturnType<PmeStore['accounting']>): number {
    let rows = 0;
    for (const t of acc.tiers) rows += t.tokens * this.rowBytes(t.size);
    return rows;
  }

  /**
   * What the rows may hold after a window: the target share of the live tokens' rows all at D,
   * the target in bytes, and the budget less its headroom, each less what does not depend on
   * sizes (token columns, the key index), whichever is least.
   */
  rowLimit(acc: ReturnType<PmeStore['accounting']>): number {
    const { target, budget } = this.#limits(acc);
    return Math.min(target, budget);
  }

  /** What the rows may hold under the budget alone (less its headroom and the other bytes), the
   *  target aside. */
  budgetRowLimit(acc: ReturnType<PmeStore['accounting']>): number {
    return this.#limits(acc).budget;
  }

  /** Whether the budget less its headroom, not the target, sets rowLimit: once the rows reach it,
   *  the store has to evict. */
  budgetLimits(acc: ReturnType<PmeStore['accounting']>): boolean {
    const { target, budget } = this.#limits(acc);
    return budget <= target;
  }

  /** rowLimit's terms: the target's (share and bytes) and the budget's, less the other bytes. */
  #limits(acc: ReturnType<PmeStore['accounting']>): { target: number; budget: number } {
    const o = this.options;
    const other = this.liveBytes(acc) - this.rowsOf(acc);
    const budget = Number.isFinite(acc.budgetBytes)
      ? acc.budgetBytes * (1 - o.headroom) - other
      : Number.POSITIVE_INFINITY;
    return { target: Math.min(o.target * acc.tokens * this.rowBytes(this.D), o.targetBytes - other), budget };
  }

  /**
   * The tier index that relief stops at, and cooling and pruning too unless PME raised its base
   * size above it (controller.ts #fill): the start size. A token there is as small as a new one,
   * and one below it could not grow back unless it turned hot again; past that
   * the store evicts the coldest (a size-0 token would still cost its columns and key). Measured
   * on ml-latest-small at 10% of full: relief down to 0 gave a progressive AUC of 0.749, the
   * store's eviction 0.767. A token is only ever below it when it was created there.
   */
  get floor(): number {
    return Math.max(0, this.ladder.indexOf(this.store.options.startSize ?? 0));
  }

  /** Whether a token at the start size or below, not protected, was last seen before `seen`. */
  #colderAtFloor(seen: number, isProtected: (id: TokenId) => boolean): boolean {
    const store = this.store;
    for (let ti = 0; ti <= this.floor; ti++) {
      if (store.tiers[ti].count === 0) continue;
      const id = store.coldestIn!(this.ladder[ti], isProtected);
      if (id >= 0 && store.lastSeen![id] < seen) return true;
    }
    return false;
  }

  /**
   * The budget's relief (BudgetRelief): frees about `bytes` by stepping the coldest tokens above
   * the start size down a size, each carried into its new tier by least squares from its D-space
   * vector, so it keeps what it learned (a truncation would keep only its first dims). Tokens of the
   * call in progress (`isProtected`) stay. With `recency` (PME's evictForSearch), it stops
   * at a token seen more recently than the coldest at the start size or below: that one goes
   * first, evicted by the store. Tiers from index `top` up stay (PME's cooling keeps D's tokens);
   * at most `most` steps are taken (a window's cooling paces itself with it). Synchronous: the
   * store asks while it makes room. Returns the steps taken.
   */
  relieve(
    bytes: number,
    isProtected: (id: TokenId) => boolean,
    { recency = false, top = this.ladder.length, most = Number.POSITIVE_INFINITY } = {},
  ): number {
    const store = this.store;
    const model = this.#model();
    if (store.shrink === undefined || store.coldestIn === undefined || store.lastSeen === undefined) return 0;
    const ladder = this.ladder;
    const v = this.#vector;
    const floor = this.floor;
    let freed = 0;
    let moved = 0;
    while (freed < bytes && moved < most) {
      // The coldest token over every tier that can step down (ties: the smaller tier first).
      const lastSeen = store.lastSeen;
      let best = -1;
      let bestTier = -1;
      for (let ti = floor + 1; ti < top; ti++) {
        if (store.tiers[ti].count === 0) continue;
        const id = store.coldestIn(ladder[ti], isProtected);
        if (id >= 0 && (best < 0 || lastSeen[id] < lastSeen[best])) {
          best = id;
          bestTier = ti;
        }
      }
      if (best < 0) break;
      // With `recency`, the least recently seen token pays: a token at the start size or below
      // that is colder than `best` is the store's to evict first.
      if (recency && this.#colderAtFloor(lastSeen[best], isProtected)) break;
      const to = ladder[bestTier - 1];
      if (model !== null) model.vectorOf(best, v);
      else v.fill(0);
      const ls = this.solverFor(to);
      const acc0 = this.meanAccumulator(best);
      store.shrink(best, to, (_src, dst) => {
        ls.solve(v, dst);
      });
      this.carryAccumulator(best, acc0);
      freed += this.rowBytes(ladder[bestTier]) - this.rowBytes(to);
      moved++;
    }
    this.reliefMoves += moved;
    return moved;
  }

  /** Least squares into the tier of `size`, rebuilt when the projections have stepped. */
  solverFor(size: number): TierLeastSquares {
    const version = this.#model()?.denseVersion ?? 0;
    const cached = this.#solvers.get(size);
    if (cached !== undefined && cached.version === version) return cached.ls;
    const ti = this.ladder.indexOf(size);
    const P = size === this.D || size === 0 ? null : (this.#model()?.projections[ti] ?? null);
    const ls = new TierLeastSquares(P, size, this.D);
    this.#solvers.set(size, { version, ls });
    return ls;
  }

  /** store.move, or false when the budget cannot make room for the new row even by evicting (the
   *  token stays as it is, counted in `refusedMoves`): a tight budget never stops learning. */
  move(id: TokenId, size: number, transform: (src: Float32Array, dst: Float32Array) => void): boolean {
    try {
      this.store.move(id, size, transform);
      return true;
    } catch (error) {
      if (!isPmeError(error, 'PME_ERR_STORE_BUDGET')) throw error;
      this.refusedMoves++;
      return false;
    }
  }
}

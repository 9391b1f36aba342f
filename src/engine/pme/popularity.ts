/**
 * Popularity-scaled sizes (MDE's rule), offline on a vocabulary's counts and online on running
 * counts: the baselines PME is judged against at equal bytes. Online, only the rule that picks
 * sizes differs from PME: the byte limit, the least-squares moves, the optimizer state a moved row
 * carries and the budget's relief are PME's own (transfer.ts).
 */
import { createRandom, type Random } from '../../util/random.js';
import type { Model, TokenId } from '../model/model.js';
import { CROSS_FIELD, type TokenObserver, type Trainer } from '../trainer/index.js';
import { type PmeOptions, type PmeStore, resolvePmeOptions } from './options.js';
import { Transfer } from './transfer.js';

/** Rounds x to the nearest ladder size on a log scale (0 below half the smallest positive size). */
function nearestOnLadder(x: number, ladder: readonly number[]): number {
  if (x < ladder[1] / 2) return 0;
  let best = ladder[1];
  for (const s of ladder)
    if (s > 0 && Math.abs(Math.log(s) - Math.log(x)) < Math.abs(Math.log(best) - Math.log(x))) best = s;
  return best;
}

/**
 * MDE sizes: within each field, the token of popularity rank r (1 = most frequent) gets
 * D · r^-alpha rounded to the ladder; alpha is the smallest (largest sizes) whose total fits.
 * The total is Σ cost(size): parameters by default, or a row's bytes.
 */
export function mdeSizes(
  vocab: { counts: ArrayLike<number>; fields: readonly string[] },
  ladder: readonly number[],
  budget: number,
  cost: (size: number) => number = (size) => size,
): { sizes: Int32Array; alpha: number } {
  const n = vocab.counts.length;
  const D = ladder[ladder.length - 1];
  const rank = new Float64Array(n);
  const byField = new Map<string, number[]>();
  for (let t = 0; t < n; t++) {
    let list = byField.get(vocab.fields[t]);
    if (list === undefined) {
      list = [];
      byField.set(vocab.fields[t], list);
    }
    list.push(t);
  }
  for (const list of byField.values()) {
    list.sort((a, b) => vocab.counts[b] - vocab.counts[a] || a - b);
    list.forEach((t, r) => {
      rank[t] = r + 1;
    });
  }
  const sizes = new Int32Array(n);
  const fill = (alpha: number): number => {
    let total = 0;
    for (let t = 0; t < n; t++) {
      const s = nearestOnLadder(D * rank[t] ** -alpha, ladder);
      sizes[t] = s;
      total += cost(s);
    }
    return total;
  };
  let lo = 0;
  let hi = 1;
  while (fill(hi) > budget && hi < 64) hi *= 2;
  if (fill(lo) <= budget) return { sizes, alpha: 0 };
  if (fill(hi) > budget) {
    // Even the steepest decay leaves every field's top token at D over the budget: scale down.
    let scale = 1;
    const base = Float64Array.from(rank, (r) => D * r ** -hi);
    const fillScaled = (c: number): number => {
      let total = 0;
      for (let t = 0; t < n; t++) {
        sizes[t] = nearestOnLadder(c * base[t], ladder);
        total += cost(sizes[t]);
      }
      return total;
    };
    while (scale > 1e-9 && fillScaled(scale) > budget) scale /= 2;
    return { sizes, alpha: hi };
  }
  for (let k = 0; k < 40; k++) {
    const mid = (lo + hi) / 2;
    if (fill(mid) <= budget) hi = mid;
    else lo = mid;
  }
  fill(hi);
  return { sizes, alpha: hi };
}

/**
 * Moves each token `ids[k]` to `sizes[k]`, carried by least squares from its D-space vector:
 * shrinks first so that grows find room, grows by falling count with PME's promotion noise and
 * accumulator carry. A token evicted meanwhile (a move makes room by evicting the coldest) or a
 * move the budget refuses is skipped.
 */
function resizeTokens(
  transfer: Transfer,
  model: Model | null,
  ids: readonly TokenId[],
  sizes: Int32Array,
  counts: Float64Array,
  random: Random,
): { shrunk: number; grown: number } {
  const store = transfer.store;
  const options = transfer.options;
  const v = new Float64Array(transfer.D);
  const moveTo = (k: number, grow: boolean): boolean => {
    const id = ids[k];
    const to = sizes[k];
    model?.vectorOf(id, v);
    const ls = transfer.solverFor(to);
    const acc0 = transfer.meanAccumulator(id);
    const std = grow ? options.promotionStd : 0;
    if (
      !transfer.move(id, to, (_src, dst) => {
        ls.solve(v, dst);
        for (let i = 0; i < to; i++) dst[i] += std * random.normal();
      })
    )
      return false;
    transfer.carryAccumulator(id, grow ? acc0 * options.promotionCarry : acc0);
    return true;
  };
  let shrunk = 0;
  let grown = 0;
  for (let k = 0; k < ids.length; k++)
    if (store.alive(ids[k]) && sizes[k] < store.sizeOf(ids[k]) && moveTo(k, false)) shrunk++;
  const growing: number[] = [];
  for (let k = 0; k < ids.length; k++)
    if (store.alive(ids[k]) && sizes[k] > store.sizeOf(ids[k])) growing.push(k);
  growing.sort((a, b) => counts[b] - counts[a] || a - b);
  for (const k of growing) if (store.alive(ids[k]) && moveTo(k, true)) grown++;
  return { shrunk, grown };
}

/** The store API the online rule reads on top of PME's: running counts and fields. */
export interface PopularityStore extends PmeStore {
  /** The token's field (its key before the first '='). */
  field(id: TokenId): string;
}

/** What one resize did. */
export interface PopularityReport {
  tokens: number;
  alpha: number;
  shrunk: number;
  grown: number;
}

/**
 * MDE's rule online: every `windowEvents` learned events, every live token is re-sized to
 * D · r^-alpha, r its rank by running count within its field, alpha the smallest whose rows fit the
 * limit a PME window prunes to (Transfer.rowLimit). Shrinks go first so that grows find room; a
 * grown row gets PME's promotion noise and accumulator carry.
 */
export class PopularitySizes implements TokenObserver {
  readonly options: Readonly<PmeOptions>;
  readonly store: PopularityStore;
  readonly #transfer: Transfer;
  readonly #random: Random;
  #trainer: Trainer | null = null;
  #model: Model | null = null;
  #eventsAtLast = 0;
  readonly #reports: PopularityReport[] = [];
  /** Tokens evicted by the TTL (none here: the replay sets none), for memoryActions. */
  readonly expired = 0;

  constructor(store: PopularityStore, options: Partial<PmeOptions> = {}) {
    this.options = resolvePmeOptions(options);
    this.store = store;
    this.#random = createRandom(this.options.seed);
    this.#transfer = new Transfer(store, this.options, () => this.#model);
    store.setRelief?.(this.#transfer);
  }

  attach(trainer: Trainer): void {
    this.#trainer = trainer;
    this.#model = trainer.model;
  }

  observe(_id: TokenId): void {}

  endBatch(): void {
    const trainer = this.#trainer;
    if (trainer === null || this.options.windowEvents === 0) return;
    if (trainer.learned - this.#eventsAtLast < this.options.windowEvents) return;
    this.#eventsAtLast = trainer.learned;
    this.resize();
  }

  get reliefMoves(): number {
    return this.#transfer.reliefMoves;
  }

  get refusedMoves(): number {
    return this.#transfer.refusedMoves;
  }

  reports(): readonly PopularityReport[] {
    return this.#reports;
  }

  /** Re-sizes every live token by its running count's rank (synchronous). */
  resize(): PopularityReport {
    const store = this.store;
    const transfer = this.#transfer;
    const ladder = transfer.ladder;
    const ids: TokenId[] = [];
    const fields: string[] = [];
    // Cross tokens keep only their linear weight (TrainerOptions.crossUserItem): not sized.
    for (const size of ladder)
      store.forEachInTier(size, (id) => {
        const field = store.field(id);
        if (field === CROSS_FIELD) return;
        ids.push(id);
        fields.push(field);
      });
    const counts = Float64Array.from(ids, (id) => store.frequency[id]);
    const acc = store.accounting();
    const { sizes, alpha } = mdeSizes({ counts, fields }, ladder, Math.max(0, transfer.rowLimit(acc)), (s) =>
      transfer.rowBytes(s),
    );
    const { shrunk, grown } = resizeTokens(transfer, this.#model, ids, sizes, counts, this.#random);
    const report = { tokens: ids.length, alpha, shrunk, grown };
    this.#reports.push(report);
    if (this.#reports.length > this.options.keepReports) this.#reports.shift();
    return report;
  }
}

/**
 * The `pme` method of `runOffline` (offline.ts): the live PME controller, the one the service runs
 * (hot-token sketch, search window at size D, one global threshold against the target, capacity
 * transfer, budget relief), driven over epochs of the shuffled training split through the
 * service's Trainer and EmbeddingStore, with the parameter budget as the store's hard byte budget.
 * This module only drives them and measures; all of PME is in pme/controller.ts.
 */
import type { CatalogItem, Interaction } from '../data/event.js';
import { tokenColumnBytes } from '../store/accounting.js';
import { EmbeddingStore } from '../store/index.js';
import { ManualClock } from '../util/clock.js';
import { evaluationMetrics } from './metrics.js';
import { type FmOptions, linearOptimizerSlotsOf } from './model/fm.js';
import { memoryActions, PmeController, type PmeOptions } from './pme/controller.js';
import { Trainer } from './trainer/index.js';

/** Bytes per embedding parameter in the store: the float and its optimizer slots
 *  (StoreTier.bytesPerRow charges 4 · (size + size · slots + importance + 1) per row). */
function bytesPerParam(optimizerSlots: number): number {
  return 4 * (1 + optimizerSlots);
}

/**
 * The store's hard budget that matches `budgetParams` embedding parameters over `keys`: what the
 * store's own accounting charges for these tokens at size 0 without slack (their per-token
 * columns with `linearOptimizerSlots` floats of linear state, the key index, one slot → id entry
 * each), plus `budgetParams` parameters with their
 * optimizer state. A store held to it can give its tokens at most `budgetParams` parameters in
 * all, as uniform and mde have; the importance slab of the tokens PME searches at D, and any
 * capacity slack, come out of that.
 */
export function liveBudgetBytes(
  keys: readonly string[],
  ladder: readonly number[],
  budgetParams: number,
  linearOptimizerSlots: number,
): { budgetBytes: number; fixedBytes: number } {
  const probe = new EmbeddingStore({ ladder, startSize: 0, clock: new ManualClock() });
  for (const k of keys) probe.getOrCreate(k, 0, 0);
  const acc = probe.accounting();
  // Per-token columns by the token, not by capacity: a store at its budget clamps its growth.
  const perToken = tokenColumnBytes(linearOptimizerSlots) + probe.bytesPerRow(0);
  const fixedBytes = acc.indexBytes + keys.length * perToken;
  return { budgetBytes: fixedBytes + budgetParams * bytesPerParam(probe.options.optimizerSlots), fixedBytes };
}

export interface LiveRunOptions {
  ladder: readonly number[];
  /** Size of a token when it is first seen (on the ladder). */
  startSize: number;
  budgetBytes: number;
  seed: number;
  batch: number;
  /** A window every this many learned events. */
  windowEvents: number;
  model: Partial<FmOptions>;
  /** Standard deviation of a new row's normal init. Default the store's. */
  initStd?: number;
  /** Controller options beyond the window (experiments, tests). */
  pme: Partial<PmeOptions>;
}

/** What the controller did over the whole run (all epochs). */
export interface LiveActivity {
  windows: number;
  /** Tokens promoted to D for a search. */
  promoted: number;
  /** Searched tokens the windows' threshold carried into a smaller tier. */
  moved: number;
  /** Steps down by the windows' cooling (counted in `relieved` too). */
  demoted: number;
  /** Steps down by PME's relief: for the budget between windows, and the windows' cooling. */
  relieved: number;
  /** The store's last resort: rows truncated, tokens evicted, tokens refused. */
  truncated: number;
  evicted: number;
  refusedTokens: number;
  /** Mean over windows of the mean relative transfer error of the moved tokens. */
  transferError: number;
  /** Wall time of the windows (pruning and transfer; the search itself is the training). */
  windowSeconds: number;
  /** Most embedding parameters (Σ sizes) held after any batch or window. */
  peakParams: number;
}

/** One live model: store, trainer and controller as stream-eval builds them, on a stopped clock
 *  (what is learned depends on the events and the seed only; windows count events). */
export class LiveRun {
  readonly store: EmbeddingStore;
  readonly trainer: Trainer;
  readonly controller: PmeController;
  readonly #o: LiveRunOptions;
  readonly #train: readonly Interaction[];
  #windows = 0;
  #moved = 0;
  #demoted = 0;
  #promoted = 0;
  #errSum = 0;
  #errWindows = 0;
  #windowMs = 0;
  #peakParams = 0;

  constructor(train: readonly Interaction[], catalog: readonly CatalogItem[], o: LiveRunOptions) {
    this.#o = o;
    this.#train = train;
    const clock = new ManualClock();
    this.store = new EmbeddingStore({
      ladder: o.ladder,
      startSize: o.startSize,
      budgetBytes: o.budgetBytes,
      seed: o.seed,
      initStd: o.initStd,
      linearOptimizerSlots: linearOptimizerSlotsOf(o.model),
      // The budget holds every token at size 0 by construction: an evicted-weights table would be
      // paid from the parameters the methods are compared at.
      evictedBuckets: 0,
      clock,
    });
    this.controller = new PmeController(this.store, {
      seed: o.seed,
      // Every token comes back each epoch: none is evicted for the search.
      evictForSearch: false,
      ...o.pme,
      windowEvents: o.windowEvents,
      clock,
    });
    this.trainer = new Trainer(this.store, {
      seed: o.seed,
      catalog,
      observer: this.controller,
      clock,
      model: o.model,
    });
    this.controller.attach(this.trainer);
  }

  /** Σ sizes of the live tokens. */
  params(): number {
    let p = 0;
    for (const t of this.store.tiers) p += t.count * t.size;
    return p;
  }

  /** One pass over the training split in `order`, mini-batch by mini-batch; a window that a batch
   *  starts runs to its end before the next batch (as stream-eval drives it). */
  async epoch(order: Uint32Array): Promise<void> {
    const { batch } = this.#o;
    const events: Interaction[] = new Array(batch);
    for (let i = 0; i < order.length; i += batch) {
      const n = Math.min(batch, order.length - i);
      events.length = n;
      for (let j = 0; j < n; j++) events[j] = this.#train[order[i + j]];
      this.trainer.learn(events);
      this.#peak();
      const running = this.controller.running;
      if (running !== null) {
        const r = await running;
        this.#windows++;
        this.#moved += r.moved;
        this.#demoted += r.demoted;
        this.#promoted += r.promoted;
        this.#windowMs += r.durationMs;
        if (r.moved > 0) {
          this.#errSum += r.transferError.mean;
          this.#errWindows++;
        }
        this.#peak();
      }
    }
  }

  #peak(): void {
    const p = this.params();
    if (p > this.#peakParams) this.#peakParams = p;
  }

  /** AUC and logloss of the model as it is, on `events` (nothing learned, unknown tokens add nothing). */
  evaluate(events: readonly Interaction[]): { auc: number; logloss: number } {
    const scores = new Float64Array(events.length);
    const labels = new Float32Array(events.length);
    const chunk = 4096;
    for (let i = 0; i < events.length; i += chunk) {
      const part = events.slice(i, i + chunk);
      scores.set(this.trainer.predict(part), i);
    }
    for (let i = 0; i < events.length; i++) labels[i] = events[i].label;
    return evaluationMetrics(scores, labels);
  }

  activity(): LiveActivity {
    const m = memoryActions(this.store, this.controller);
    return {
      windows: this.#windows,
      promoted: this.#promoted,
      moved: this.#moved,
      demoted: this.#demoted,
      relieved: m.relieved,
      truncated: m.truncated,
      evicted: m.evicted,
      refusedTokens: m.refusedTokens,
      transferError: this.#errWindows > 0 ? this.#errSum / this.#errWindows : 0,
      windowSeconds: this.#windowMs / 1000,
      peakParams: this.#peakParams,
    };
  }
}

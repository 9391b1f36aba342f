/**
 * The item-only term c_I of every catalog item (its bias and the interactions among its own
 * tokens), which does not depend on the user, and the sweep that keeps it within itemRefreshMs of
 * the model. The reads add the user-dependent part live; this part may lag by at most the bound.
 *
 * c_I of item i = w_i + Σ w_f + ½(|v_i + F|² − |v_i|² − Σ|v_f|²) = base_g + w_i + v_i · F with
 * F = Σ v_f over its signature g's field tokens. The sweep visits items grouped by signature, so
 * F and base_g are summed once per group, and v_i · F = e_i · (P_s F) costs s per item once P_s F
 * is computed for the group (once per tier met).
 */
import type { Clock, Milliseconds } from '../../util/clock.js';
import type { Model } from '../model/model.js';
import { grownFloat64, grownInt32, type TierLayout } from './arrays.js';
import type { Catalog } from './catalog.js';
import type { TrainerStore } from './options.js';

/** Fewest items a refreshItems() refreshes when itemRefreshMs > 0 (so a stopped clock still sweeps). */
const MIN_SWEEP_CHUNK = 64;
/**
 * Sweeps per itemRefreshMs: the last completed sweep then started at most the bound ago. When a
 * timer fires late, a read past the bound finishes the running sweep itself: only the items that
 * late timer left, since the sweep keeps pace otherwise. Each sweep costs ~0.5 µs per item.
 */
const SWEEPS_PER_BOUND = 2;
/**
 * Most real time one refreshItems() spends, in ms: after an idle gap the time-proportional share
 * would be the whole catalog in one call, a pause every concurrent request would wait for. What
 * it leaves undone, the next calls do.
 */
const MAX_SWEEP_MS = 1.5;
/** Items refreshed between two looks at the clock. */
const SWEEP_CLOCK_EVERY = 256;

export class ItemTerms {
  readonly #store: TrainerStore;
  readonly #model: Model;
  readonly #catalog: Catalog;
  readonly #layout: TierLayout;
  readonly #clock: Clock;
  readonly #bound: Milliseconds;
  /** c_I per item, and at which change count / clock time the sweep that computed it started. */
  #itemConst = new Float64Array(0);
  #changes = 0;
  #sweepCursor = 0;
  #sweepStart = 0;
  #sweepStartChanges = 0;
  #doneStart = Number.NEGATIVE_INFINITY;
  #doneChanges = -1;
  #lastSweepAt = Number.NEGATIVE_INFINITY;
  #sweepOwed = 0;
  // Per-refresh caches of field tokens (stamp #rgen): id, w, v (D), |v|².
  #rgen = 0;
  #rfStamp = new Int32Array(0);
  #rfId = new Int32Array(0);
  #rfW = new Float64Array(0);
  #rfSelf = new Float64Array(0);
  #rfV = new Float64Array(0);
  readonly #rF: Float64Array;
  // The sweep's order (items grouped by signature), the group being refreshed (its signature,
  // base_g and P_s F per tier, valid while a tier's stamp equals #groupSerial).
  #sweepOrder = new Int32Array(0);
  #orderVersion = -1;
  #groupSig = -1;
  #groupSerial = 0;
  #groupBase = 0;
  readonly #groupPF: Float64Array;
  readonly #groupTierStamp: Int32Array;

  constructor(
    store: TrainerStore,
    model: Model,
    catalog: Catalog,
    layout: TierLayout,
    clock: Clock,
    bound: Milliseconds,
  ) {
    this.#store = store;
    this.#model = model;
    this.#catalog = catalog;
    this.#layout = layout;
    this.#clock = clock;
    this.#bound = bound;
    this.#rF = new Float64Array(model.dim);
    this.#groupPF = new Float64Array(layout.block);
    this.#groupTierStamp = new Int32Array(layout.sizes.length);
  }

  /** c_I per item (index as the catalog's). Replaced when it grows: read it on each call. */
  get values(): Float64Array {
    return this.#itemConst;
  }

  /** Bytes of c_I per item, the sweep order, the per-field-token caches and the group buffers:
   *  exact, their typed arrays' byteLength. */
  bytes(): number {
    return (
      this.#itemConst.byteLength +
      this.#sweepOrder.byteLength +
      this.#rfStamp.byteLength +
      this.#rfId.byteLength +
      this.#rfW.byteLength +
      this.#rfSelf.byteLength +
      this.#rfV.byteLength +
      this.#rF.byteLength +
      this.#groupPF.byteLength +
      this.#groupTierStamp.byteLength
    );
  }

  /** The model changed (learned, moved, evicted, restored): no computed c_I passes for current. */
  changed(): void {
    this.#changes++;
  }

  /** c_I of item i alone, from the current model (its fields read again): a new or changed item. */
  refreshItem(i: number): void {
    this.#fit();
    this.#rgen++;
    this.#groupSig = -1;
    this.#refreshInGroup(i);
  }

  /** Grows the per-item and per-field-token arrays to the catalog's size. */
  #fit(): void {
    const n = this.#catalog.size;
    if (this.#itemConst.length < n) this.#itemConst = grownFloat64(this.#itemConst, n);
    const f = this.#catalog.fieldTokenCount;
    if (this.#rfStamp.length < f) {
      this.#rfStamp = grownInt32(this.#rfStamp, f);
      this.#rfId = grownInt32(this.#rfId, f);
      this.#rfW = grownFloat64(this.#rfW, f);
      this.#rfSelf = grownFloat64(this.#rfSelf, f);
      this.#rfV = grownFloat64(this.#rfV, f * this.#model.dim);
    }
  }

  /** One field token for this refresh: id, w, D-space v, |v|². */
  #refreshField(f: number): void {
    const id = this.#store.id(this.#catalog.fieldKey(f));
    this.#rfId[f] = id;
    this.#rfStamp[f] = this.#rgen;
    if (id < 0) return;
    const D = this.#model.dim;
    const at = f * D;
    const V = this.#rfV;
    this.#model.vectorOf(id, V, at);
    let self = 0;
    for (let d = 0; d < D; d++) self += V[at + d] * V[at + d];
    this.#rfW[f] = this.#store.linear[id];
    this.#rfSelf[f] = self;
  }

  /** c_I of item i, with its group's F and base_g computed when the group changes. */
  #refreshInGroup(i: number): void {
    const D = this.#model.dim;
    const F = this.#rF;
    const catalog = this.#catalog;
    const g = catalog.itemSig[i];
    if (g !== this.#groupSig) {
      this.#groupSig = g;
      this.#groupSerial++;
      F.fill(0);
      let base = 0;
      let self = 0;
      const rgen = this.#rgen;
      const V = this.#rfV;
      const list = catalog.sigFields;
      for (let j = catalog.sigStart[g], end = j + catalog.sigLength[g]; j < end; j++) {
        const f = list[j];
        if (this.#rfStamp[f] !== rgen) this.#refreshField(f);
        if (this.#rfId[f] < 0) continue;
        base += this.#rfW[f];
        self += this.#rfSelf[f];
        const at = f * D;
        for (let d = 0; d < D; d++) F[d] += V[at + d];
      }
      let ff = 0;
      for (let d = 0; d < D; d++) ff += F[d] * F[d];
      this.#groupBase = base + 0.5 * (ff - self);
    }
    let c = this.#groupBase;
    const id = catalog.itemToken[i];
    if (id >= 0) {
      const store = this.#store;
      const ti = store.tierOf[id];
      const tier = store.tiers[ti];
      const s = tier.size;
      const e = tier.params;
      const off = store.slotOf[id] * s;
      let vf = 0;
      if (s === D) for (let d = 0; d < D; d++) vf += e[off + d] * F[d];
      else if (s > 0) {
        const PF = this.#groupPF;
        const at = this.#layout.offsets[ti];
        if (this.#groupTierStamp[ti] !== this.#groupSerial) {
          this.#groupTierStamp[ti] = this.#groupSerial;
          const P = this.#model.projections[ti];
          // No projection (a model without vectors): the first s dimensions, as the read path.
          if (P === null) for (let k = 0; k < s; k++) PF[at + k] = F[k];
          else
            for (let k = 0; k < s; k++) {
              let sum = 0;
              for (let d = 0, row = k * D; d < D; d++) sum += P[row + d] * F[d];
              PF[at + k] = sum;
            }
        }
        for (let k = 0; k < s; k++) vf += e[off + k] * PF[at + k];
      }
      c += store.linear[id] + vf;
    }
    this.#itemConst[i] = c;
  }

  /** The sweep order: item indices grouped by signature (counting sort), rebuilt at a sweep start
   *  when items were added or changed signature. */
  #updateSweepOrder(): void {
    const catalog = this.#catalog;
    if (this.#orderVersion === catalog.version) return;
    const n = catalog.size;
    const sigs = catalog.signatureCount;
    const itemSig = catalog.itemSig;
    const count = new Int32Array(sigs + 1);
    for (let i = 0; i < n; i++) count[itemSig[i] + 1]++;
    for (let g = 0; g < sigs; g++) count[g + 1] += count[g];
    const order = new Int32Array(n);
    for (let i = 0; i < n; i++) order[count[itemSig[i]]++] = i;
    this.#sweepOrder = order;
    this.#orderVersion = catalog.version;
  }

  /**
   * Refreshes up to `count` items along the sweep (fewer past `deadline`); returns how many. Field
   * tokens are read once per sweep (at its start, or fresher): every c_I of a completed sweep comes
   * from the model as it was at the sweep's start or later, which is what the bound promises.
   */
  #advanceSweep(count: number, now: Milliseconds, deadline = Number.POSITIVE_INFINITY): number {
    if (this.#catalog.size === 0) return 0;
    let j = 0;
    for (; j < count; j++) {
      if (j % SWEEP_CLOCK_EVERY === SWEEP_CLOCK_EVERY - 1 && performance.now() > deadline) break;
      if (this.#sweepCursor === 0) {
        this.#sweepStart = now;
        this.#sweepStartChanges = this.#changes;
        this.#updateSweepOrder();
        this.#fit();
        this.#rgen++;
        this.#groupSig = -1;
      }
      const order = this.#sweepOrder;
      this.#refreshInGroup(order[this.#sweepCursor]);
      if (++this.#sweepCursor >= order.length) {
        this.#sweepCursor = 0;
        this.#doneStart = this.#sweepStart;
        this.#doneChanges = this.#sweepStartChanges;
      }
    }
    return j;
  }

  /** Before a read: every c_I computed at most itemRefreshMs ago (0: recomputed now). */
  refreshForRead(): void {
    const n = this.#catalog.size;
    const bound = this.#bound;
    const now = this.#clock.now();
    if (bound === 0) {
      this.#sweepCursor = 0;
      this.#advanceSweep(n, now);
      return;
    }
    if (this.#doneChanges === this.#changes || now - this.#doneStart < bound) return;
    // Finish the running sweep; if even that one started too long ago, run a whole new one.
    if (this.#sweepCursor > 0) this.#advanceSweep(this.#sweepOrder.length - this.#sweepCursor, now);
    if (this.#doneChanges !== this.#changes && now - this.#doneStart >= bound) this.#advanceSweep(n, now);
  }

  /**
   * Advances the sweep by the share of the catalog due since the last call, so that a sweep
   * completes every itemRefreshMs / SWEEPS_PER_BOUND (at most MAX_SWEEP_MS a call). Nothing to do
   * when itemRefreshMs is 0.
   */
  advance(): void {
    const bound = this.#bound;
    if (bound === 0) return;
    const now = this.#clock.now();
    const last = this.#lastSweepAt;
    this.#lastSweepAt = now;
    // Nothing changed since the last completed sweep started: its values are current.
    if (this.#doneChanges === this.#changes && this.#sweepCursor === 0) {
      this.#sweepOwed = 0;
      return;
    }
    const n = this.#catalog.size;
    const share = Number.isFinite(last) ? ((now - last) * SWEEPS_PER_BOUND) / bound : 1;
    // What an earlier call left undone for lack of time is still due.
    const count = Math.min(n, Math.max(MIN_SWEEP_CHUNK, Math.ceil(n * share)) + this.#sweepOwed);
    this.#sweepOwed = count - this.#advanceSweep(count, now, performance.now() + MAX_SWEEP_MS);
  }
}

/**
 * PME in the stream: finds hot tokens (decayed count-min), searches them at full size D for one
 * window (their importances gather during the ordinary update), then at the end of the window
 * prunes all searched tokens with one global threshold under the memory budget and carries each
 * into the smallest tier that holds its kept dimensions (least squares through that tier's
 * projection). While the rows are over the limit, the least recently seen tokens below D step down,
 * to the start size at most (cooling); expired tokens are evicted.
 *
 * Windows run in chunks with a yield (setImmediate) between them, so scoring and learning go on
 * during a window; the longest synchronous chunk is measured and reported.
 */
import { setImmediate as nextTurn } from 'node:timers/promises';
import type { Interaction } from '../../data/event.js';
import { PmeError } from '../../errors.js';
import { ARRAY_SLOT_BYTES, mapBytesEstimate, setBytesEstimate } from '../../store/accounting.js';
import type { TierAccounting } from '../../store/index.js';
import type { Milliseconds } from '../../util/clock.js';
import { fnv1a } from '../../util/hash.js';
import { createRandom, type Random } from '../../util/random.js';
import type { Model, Rows, TokenId } from '../model/model.js';
import { isCrossKey, type TokenObserver, type Trainer } from '../trainer/index.js';
import {
  type MemoryActions,
  type PmeOptions,
  type PmeStore,
  resolvePmeOptions,
  type WindowReport,
  type WindowTier,
} from './options.js';
import { PartnerMoments, solveKeepingScores } from './partners.js';
import { type ProbeScore, probeReport, RecentEvents, scoreProbe } from './probe.js';
import { chooseSizes, TierLeastSquares } from './prune.js';
import { DecayedCountMin } from './sketch.js';
import { Transfer } from './transfer.js';

export {
  ladderFor,
  type MemoryActions,
  PME_DEFAULTS,
  type PmeOptions,
  type PmeStore,
  pmeStartSize,
  resolvePmeOptions,
  type WindowReport,
  type WindowTier,
} from './options.js';

const now = (): number => performance.now();
/** Evictions the warm share (#warmEvictions) averages over. */
const WARM_AVERAGE = 128;
/** Decayed count from which an evicted token counts as warm: seen about twice lately. A token seen
 *  once and evicted soon after still counts about 1: the tail a stream never comes back to. */
const WARM_COUNT = 2;

/** Snapshot sections of the controller's state (exportState). */
const PME_PREFIX = 'pme/';

function tierReport(tiers: TierAccounting[]): WindowTier[] {
  return tiers.map((t) => ({
    size: t.size,
    tokens: t.tokens,
    paramBytes: t.paramBytes,
    optimizerBytes: t.optimizerBytes + t.importanceBytes,
    indexBytes: t.indexBytes,
    totalBytes: t.totalBytes,
  }));
}

/** Paces a window: a yield every `chunk` tokens of a loop or `sliceMs` of work, whichever comes
 *  first, and the longest synchronous stretch between yields (what a concurrent read could wait). */
class Pacer {
  readonly #chunk: number;
  readonly #sliceMs: number;
  #longest = 0;
  #sliceStart = now();

  constructor(chunk: number, sliceMs: number) {
    this.#chunk = chunk;
    this.#sliceMs = sliceMs;
  }

  async pause(): Promise<void> {
    const d = now() - this.#sliceStart;
    if (d > this.#longest) this.#longest = d;
    await nextTurn();
    this.#sliceStart = now();
  }

  /** Time to yield: the k-th token of a loop ends a chunk, or the stretch has run sliceMs. */
  due(k: number): boolean {
    return k > 0 && (k % this.#chunk === 0 || now() - this.#sliceStart >= this.#sliceMs);
  }

  /** The longest stretch so far, the one running included. */
  longest(): number {
    return Math.max(this.#longest, now() - this.#sliceStart);
  }
}

export class PmeController implements TokenObserver {
  readonly options: Readonly<PmeOptions>;
  readonly store: PmeStore;
  readonly sketch: DecayedCountMin;
  readonly #random: Random;
  readonly ladder: readonly number[];
  readonly D: number;
  #trainer: Trainer | null = null;
  #model: Model | null = null;
  /** Tokens queued for promotion, in order; an id counts only while it is in #pendingSet (an
   *  evicted token leaves the set, so its entry, and its id if reused, are skipped). */
  #pending: TokenId[] = [];
  readonly #pendingSet = new Set<TokenId>();
  /** Window number after which each pruned token may be searched again. */
  readonly #searchedUntil = new Map<TokenId, number>();
  /** Per token at D, where its importances started summing, as its store frequency (touches) and
   *  the trainer's learned count then (moved on as the importances decay at a window it stays at D). */
  readonly #searchFrom = new Map<TokenId, SearchStart>();
  /** The sketch's key of each token id: a hash of its key string (0: not computed), so that a
   *  token that reuses an evicted one's id does not inherit its count. */
  #keyHash = new Int32Array(0);
  /** Moves, byte figures and the budget's relief (transfer.ts). */
  readonly #transfer: Transfer;
  /** Ids evicted since the running window listed its tokens (null: no window runs). */
  #goneInWindow: Set<TokenId> | null = null;
  #windows = 0;
  #running: Promise<WindowReport> | null = null;
  #eventsAtLast = 0;
  #timeAtLast: Milliseconds;
  #promoted = 0;
  /** Ladder index of the base size: where new tokens start and cooling and pruning stop. The start
   *  size, raised while the target has room for every token below D at a larger size (#fill). */
  #base: number;
  /** Since the last window: promotions the budget had no room for, and relief moves before it. */
  #squeezed = 0;
  #reliefAtLast = 0;
  /** Whether the budget has asked for room, or a window found the rows at the budget less its
   *  headroom: the rows are full from then on, and (evictForSearch) the coldest tokens are evicted
   *  for the search. */
  #budgetBinds = false;
  /** Share of the recent budget evictions whose token was warm (WARM_COUNT): an exponential
   *  average over about 128 evictions (evictForSearch, warmEvictions). */
  #warmEvictions = 0;
  /** Whether the store's evictions now are the TTL's (not the budget's). */
  #expiring = false;
  /** Tokens evicted for being unseen past the store's TTL (in windows and by tick). */
  expired = 0;
  readonly #reports: WindowReport[] = [];
  /** Reports waiting for their aucAfter, with the event count at which to read it. */
  readonly #awaitingAuc: Array<{ report: WindowReport; at: number }> = [];
  /** The last events learned: the window's probe, and what sizes and carries its tokens. */
  readonly #recent: RecentEvents;
  #lookahead: ((n: number) => readonly Interaction[]) | null = null;

  constructor(store: PmeStore, options: Partial<PmeOptions> = {}) {
    this.options = resolvePmeOptions(options);
    this.store = store;
    this.sketch = new DecayedCountMin(this.options.sketch);
    this.#random = createRandom(this.options.seed);
    this.ladder = store.tiers.map((t) => t.size);
    this.D = store.dim;
    this.#transfer = new Transfer(store, this.options, () => this.#model);
    this.#base = this.#transfer.floor;
    this.#timeAtLast = this.options.clock.now();
    this.#recent = new RecentEvents(this.options.probeEvents);
    // Budget pressure between windows is PME's to relieve first. With evictForSearch, tokens
    // under search keep D until their window, and a step down never goes to a token seen more
    // recently than the one the store would evict (transfer.ts relieve).
    store.setRelief?.({
      relieve: (bytes, isProtected) => {
        this.#budgetBinds = true;
        return this.#evictsForSearch()
          ? this.#transfer.relieve(bytes, (id) => isProtected(id) || this.#inSearch(id), { recency: true })
          : this.#transfer.relieve(bytes, isProtected);
      },
    });
    // A token that leaves is forgotten: nothing keeps its id, which the store will reuse.
    store.onEvict((id) => {
      // Read before the id is forgotten below (the store calls this with the key still registered).
      if (!this.#expiring) {
        const warm = this.sketch.estimate(this.#hashOf(id)) >= WARM_COUNT;
        this.#warmEvictions += ((warm ? 1 : 0) - this.#warmEvictions) / WARM_AVERAGE;
      }
      if (id < this.#keyHash.length) this.#keyHash[id] = 0;
      this.#pendingSet.delete(id);
      this.#searchedUntil.delete(id);
      this.#searchFrom.delete(id);
      this.#goneInWindow?.add(id);
    });
  }

  /** Whether the coldest tokens are evicted for the search (option evictForSearch, once the
   *  budget binds, while the tokens the budget evicts have mostly cooled). */
  #evictsForSearch(): boolean {
    return (
      this.#budgetBinds && this.options.evictForSearch && this.#warmEvictions <= this.options.warmEvictions
    );
  }

  /** Whether `id` was promoted since the last window and is still at D: its search runs until then. */
  #inSearch(id: TokenId): boolean {
    return (
      this.store.tierOf[id] === this.ladder.length - 1 &&
      this.#searchedUntil.get(id) === this.#windows + 1 + this.options.researchAfter
    );
  }

  /** The sketch's key of token `id`: FNV-1a of its key string, never 0 (computed once per id). */
  #hashOf(id: TokenId): number {
    if (id >= this.#keyHash.length) {
      const grown = new Int32Array(Math.max(id + 1, 2 * this.#keyHash.length, 1024));
      grown.set(this.#keyHash);
      this.#keyHash = grown;
    }
    let h = this.#keyHash[id];
    if (h !== 0) return h;
    h = fnv1a(this.store.key(id)) | 1;
    this.#keyHash[id] = h;
    return h;
  }

  /** Connects the trainer (whose options must name this controller as `observer`). */
  attach(trainer: Trainer): void {
    if (trainer.options.observer !== this)
      throw new PmeError(
        'PME_ERR_CONFIG_INVALID',
        'pme: the trainer must be created with this controller as observer',
      );
    this.#trainer = trainer;
    this.#model = trainer.model;
  }

  /** Per token resolved by the trainer: count it, queue it for search when it turns hot. */
  observe(id: TokenId): void {
    const estimate = this.sketch.add(this.#hashOf(id));
    if (estimate < this.options.hotThreshold) return;
    const store = this.store;
    if (store.tiers[store.tierOf[id]].size === this.D || this.#pendingSet.has(id)) return;
    if (store.fieldTokensOf !== undefined && store.fieldTokensOf(id) < this.options.searchFieldTokens) return;
    const until = this.#searchedUntil.get(id);
    if (until !== undefined && until > this.#windows) return;
    this.#pending.push(id);
    this.#pendingSet.add(id);
  }

  observeEvent(event: Interaction): void {
    this.#recent.add(event);
  }

  /**
   * Where a replay gives the events it will learn next (`n` of them, or fewer at its end): a window
   * scores them too, just before and just after its moves (WindowReport.lookahead). Unlike the
   * probe's last events, the model has not learned them: what the moves did to events it has not
   * fitted. A live stream does not know its next events (null, the default: no lookahead).
   */
  setLookahead(source: ((n: number) => readonly Interaction[]) | null): void {
    this.#lookahead = source;
  }

  /** After each mini-batch: promote the queued hot tokens, start a window when one is due. */
  endBatch(): void {
    if (this.#running === null && this.#pending.length > 0) this.#promotePending();
    const trainer = this.#trainer;
    if (trainer === null || this.#running !== null) {
      this.#fillAucAfter();
      return;
    }
    this.#fillAucAfter();
    // Counted in learned events across restarts, so a restored service runs its windows where an
    // uninterrupted one would.
    const events = trainer.learned;
    const o = this.options;
    if (o.windowEvents > 0 && events - this.#eventsAtLast >= o.windowEvents) {
      this.startWindow('events');
    } else if (o.clock.now() - this.#timeAtLast >= o.windowMs) {
      this.startWindow('time');
    }
  }

  /**
   * For a timer: starts a window when `windowMs` has passed since the last, or else evicts the
   * tokens unseen past the store's TTL. Without it an idle service would run no window and expire
   * nothing. Call it between mini-batches only (never with a batch half learned: its rows hold
   * tokens that a move or an eviction would pull away).
   */
  tick(): void {
    if (this.#running !== null) return;
    const now = this.options.clock.now();
    if (now - this.#timeAtLast >= this.options.windowMs) this.startWindow('time');
    else this.expired += this.#expire(now);
  }

  /** The store's TTL evictions (not the budget's: #warmEvictions leaves them out). */
  #expire(now: Milliseconds): number {
    this.#expiring = true;
    try {
      return this.store.evictExpired(now);
    } finally {
      this.#expiring = false;
    }
  }

  #fillAucAfter(): void {
    const trainer = this.#trainer;
    if (trainer === null || this.#awaitingAuc.length === 0) return;
    const events = trainer.metrics.events;
    while (this.#awaitingAuc.length > 0 && this.#awaitingAuc[0].at <= events) {
      this.#awaitingAuc.shift()!.report.aucAfter = trainer.metrics.snapshot().windowAuc;
    }
  }

  #promotePending(): void {
    const store = this.store;
    const D = this.D;
    const model = this.#model;
    const acc = store.accounting();
    const budget = acc.budgetBytes;
    const topIndex = this.ladder.indexOf(D);
    const rowLimit = this.#transfer.rowLimit(acc);
    const searchCap = rowLimit * this.options.searchShare;
    let searchBytes = store.tiers[topIndex].count * this.#transfer.rowBytes(D);
    let total = this.#transfer.liveBytes(acc);
    const limit = Number.isFinite(budget) ? budget * (1 - this.options.headroom) : Number.POSITIVE_INFINITY;
    const rowD = this.#transfer.rowBytes(D);
    // At most one chunk of promotions per batch: after a window the pending list can be long, and
    // the rest waits for the next batch rather than stall the reads. A count, not a time, so that
    // what is learned does not depend on the machine's speed.
    let done = 0;
    for (const id of this.#pending) {
      if (done === this.options.chunk) break;
      done++;
      // Evicted since it was queued (and perhaps its id reused): not this entry's token any more.
      if (!this.#pendingSet.delete(id) || !store.alive(id)) continue;
      const size = store.sizeOf(id);
      if (size === D) continue;
      const extra = rowD - this.#transfer.rowBytes(size);
      if (searchBytes + rowD > searchCap) continue;
      // Once the budget binds, a hot token's search comes before the coldest tokens: the store
      // evicts them for it (evictForSearch). Before that, promotions keep to the headroom.
      if (!this.#evictsForSearch() && total + extra > limit) {
        this.#squeezed++;
        continue;
      }
      const ti = store.tierOf[id];
      const P = model?.projections[ti] ?? null;
      // The new full-size row is the old row's D-space vector e·P_s (same scores), plus small noise
      // (no P_s: a nested tier, whose vector is the row zero-padded).
      const random = this.#random;
      const std = this.options.promotionStd;
      const acc0 = this.#transfer.meanAccumulator(id);
      const moved = this.#transfer.move(id, D, (src, dst) => {
        for (let d = 0; d < D; d++) dst[d] = std * random.normal();
        if (size === 0 || model === null) return;
        if (P === null) {
          for (let i = 0; i < size; i++) dst[i] += src[i];
          return;
        }
        for (let i = 0; i < size; i++) {
          const e = src[i];
          for (let d = 0; d < D; d++) dst[d] += e * P[i * D + d];
        }
      });
      if (!moved) continue;
      // Part of the old row's optimizer state: damped first steps, new dims still free to grow.
      this.#transfer.carryAccumulator(id, acc0 * this.options.promotionCarry);

      this.#searchedUntil.set(id, this.#windows + 1 + this.options.researchAfter);
      this.#searchFrom.set(id, { seen: store.frequency[id], learned: this.#trainer?.learned ?? 0 });
      searchBytes += rowD;
      total += extra;
      this.#promoted++;
    }
    this.#pending.splice(0, done);
  }

  /**
   * Bytes PME keeps outside the store's budget. `sketch`: the hot-token sketch's counters, fixed
   * (exact, typed arrays). `tokens`: what grows with token ids: the sketch key of each id (exact,
   * an Int32Array), and the promotion queue, its set of live entries, the re-search marks and the
   * searched tokens' start points (estimated: a word per queue entry, V8 hash-table slots per set
   * or map entry). The importances of searched tokens are the store's
   * own (its top tier's importance slab, in the budget).
   */
  memory(): { sketch: number; tokens: number } {
    return {
      sketch: this.sketch.bytes,
      tokens:
        this.#keyHash.byteLength +
        mapBytesEstimate(this.#searchFrom.size) +
        this.#pending.length * ARRAY_SLOT_BYTES +
        setBytesEstimate(this.#pendingSet.size) +
        mapBytesEstimate(this.#searchedUntil.size),
    };
  }

  /** Tokens stepped down for the budget's relief, and moves it refused (see transfer.ts). */
  get reliefMoves(): number {
    return this.#transfer.reliefMoves;
  }
  /** Share of the budget's recent evictions that took warm tokens (MemoryActions.warmEvictions). */
  get warmEvictions(): number {
    return this.#warmEvictions;
  }
  get refusedMoves(): number {
    return this.#transfer.refusedMoves;
  }

  /** The budget's relief, asked directly (see Transfer.relieve). */
  relieve(bytes: number, isProtected: (id: TokenId) => boolean): number {
    return this.#transfer.relieve(bytes, isProtected);
  }

  /** Starts a window now (API `POST /v1/prune`); throws PME_ERR_PRUNE_RUNNING if one runs. */
  startWindow(reason: string): number {
    if (this.#running !== null) throw new PmeError('PME_ERR_PRUNE_RUNNING');
    const id = this.#windows + 1;
    this.#running = this.runWindow(reason).finally(() => {
      this.#running = null;
    });
    this.#running.catch(() => {});
    return id;
  }

  /** The window in progress, if any. */
  get running(): Promise<WindowReport> | null {
    return this.#running;
  }

  /** Windows started so far (counted before a window changes anything). */
  get windowsStarted(): number {
    return this.#windows;
  }

  /**
   * What the controller has learned besides the store, as snapshot sections: the sketch, the
   * queue of tokens waiting for promotion, when each pruned token may be searched again, the
   * window count and event mark, the promotion noise's generator, and the reports. With these, a
   * restored service promotes, prunes and reports as an uninterrupted one would. Call between
   * batches, with no window running (the service's snapshot waits for one).
   */
  exportState(): Record<string, Uint8Array> {
    const { counts, scale } = this.sketch.state();
    // The queue as it is, stale entries included (they take their turn), and which ids count.
    const state = {
      scale,
      windows: this.#windows,
      eventsAtLast: this.#eventsAtLast,
      timeAtLast: this.#timeAtLast,
      promoted: this.#promoted,
      base: this.#base,
      squeezed: this.#squeezed,
      reliefAtLast: this.#reliefAtLast,
      budgetBinds: this.#budgetBinds,
      warmEvictions: this.#warmEvictions,
      refusedMoves: this.refusedMoves,
      pending: this.#pending,
      queued: [...this.#pendingSet],
      searchedUntil: [...this.#searchedUntil],
      searchFrom: [...this.#searchFrom],
      // The probe's events size the next window's tokens (forecastImportance) and carry them
      // (partnerRidge): a restored service must hold the same ones.
      recent: this.#recent.events(),
      reports: this.#reports,
    };
    return {
      [`${PME_PREFIX}sketch.f64`]: new Uint8Array(counts.buffer, counts.byteOffset, counts.byteLength),
      [`${PME_PREFIX}random.f64`]: new Uint8Array(Float64Array.from(this.#random.state()).buffer),
      [`${PME_PREFIX}state.json`]: new TextEncoder().encode(JSON.stringify(state)),
    };
  }

  /** Restores exportState()'s sections (after construction, before learning); a snapshot
   *  without them (PME off, or written before they existed) leaves the controller fresh. */
  importState(extra: Record<string, Uint8Array | Float32Array>): void {
    const json = extra[`${PME_PREFIX}state.json`];
    if (!(json instanceof Uint8Array)) return;
    const state = JSON.parse(new TextDecoder().decode(json)) as {
      scale: number;
      windows: number;
      eventsAtLast: number;
      timeAtLast: number;
      promoted: number;
      base?: number;
      squeezed?: number;
      reliefAtLast?: number;
      budgetBinds?: boolean;
      warmEvictions?: number;
      refusedMoves: number;
      pending: number[];
      queued: number[];
      searchedUntil: Array<[number, number]>;
      searchFrom?: Array<[number, SearchStart]>;
      recent?: Interaction[];
      reports: WindowReport[];
    };
    const f64 = (name: string): Float64Array | null => {
      const v = extra[`${PME_PREFIX}${name}`];
      return v === undefined
        ? null
        : new Float64Array(v.buffer.slice(v.byteOffset, v.byteOffset + v.byteLength));
    };
    const counts = f64('sketch.f64');
    if (counts !== null) this.sketch.restore(counts, state.scale);
    const random = f64('random.f64');
    if (random !== null) this.#random.restore(Array.from(random));
    for (const [id, from] of state.searchFrom ?? []) if (this.store.alive(id)) this.#searchFrom.set(id, from);
    this.#recent.clear();
    for (const e of state.recent ?? []) this.#recent.add(e);
    this.#windows = state.windows;
    this.#eventsAtLast = state.eventsAtLast;
    this.#timeAtLast = state.timeAtLast;
    this.#promoted = state.promoted;
    this.#base = state.base ?? this.#transfer.floor;
    this.#squeezed = state.squeezed ?? 0;
    this.#reliefAtLast = state.reliefAtLast ?? 0;
    this.#budgetBinds = state.budgetBinds ?? false;
    this.#warmEvictions = state.warmEvictions ?? 0;
    this.store.setCreateSize?.(this.ladder[this.#base]);
    this.#transfer.refusedMoves = state.refusedMoves;
    this.#pending.push(...state.pending);
    for (const id of state.queued) if (this.store.alive(id)) this.#pendingSet.add(id);
    for (const [id, until] of state.searchedUntil)
      if (this.store.alive(id)) this.#searchedUntil.set(id, until);
    this.#reports.push(...state.reports.slice(-this.options.keepReports));
  }

  /** Past windows, oldest first (bounded by keepReports). */
  reports(): WindowReport[] {
    return this.#reports.slice();
  }

  /** How often each token at D comes in `rows` (the probe's events, Trainer.lookup). */
  #occurrencesAtD(rows: Rows): Map<TokenId, number> {
    const top = this.ladder.indexOf(this.D);
    const counts = new Map<TokenId, number>();
    for (let r = 0; r < rows.length; r++)
      for (let k = 0; k < rows.counts[r]; k++) {
        const id = rows.ids[r * rows.stride + k];
        if (this.store.tierOf[id] === top) counts.set(id, (counts.get(id) ?? 0) + 1);
      }
    return counts;
  }

  /** Bytes the tokens between the start size and the base hold above the start size (#fill). */
  #raisedBytes(acc: ReturnType<PmeStore['accounting']>): number {
    const floor = this.#transfer.floor;
    let bytes = 0;
    for (let ti = floor + 1; ti <= this.#base; ti++)
      bytes +=
        acc.tiers[ti].tokens *
        (this.#transfer.rowBytes(this.ladder[ti]) - this.#transfer.rowBytes(this.ladder[floor]));
    return bytes;
  }

  /**
   * Moves the base size to the largest size below D at which every token below D fits what the
   * target leaves beside the tokens at D (at least the search share), and raises the tokens under
   * it there (least squares from their D-space vectors, plus the promotion noise on the new
   * dimensions, so that they can learn). When memory was short since the last window (searched
   * tokens pruned, promotions refused, relief), the base steps down one size instead: new tokens
   * start there and cooling takes the least recently seen down. Otherwise, with fillWarmest, what the target
   * leaves once the base is set goes to the warmest tokens at the base, one size up. Returns the
   * tokens raised.
   */
  async #fill(pruned: number, gone: ReadonlySet<TokenId>, pacer: Pacer): Promise<number> {
    const store = this.store;
    const ladder = this.ladder;
    const D = this.D;
    const transfer = this.#transfer;
    if (store.setCreateSize === undefined) return 0;
    const acc = store.accounting();
    const limit = transfer.rowLimit(acc);
    const top = ladder.indexOf(D);
    const counts = acc.tiers.map((t) => t.tokens);
    // The tokens one size above the base count at the base: fillWarmest raised them there with
    // what the base left, and the base steps down only when the tokens do not fit at the base.
    let below = 0;
    for (let ti = 0; ti < top; ti++)
      below +=
        counts[ti] *
        transfer.rowBytes(ladder[this.options.fillWarmest && ti === this.#base + 1 ? this.#base : ti]);
    // What the tokens at D hold (at least the search share) stays theirs.
    const atD = counts[top] * transfer.rowBytes(D);
    const room = limit - Math.max(atD, this.options.searchShare * limit);
    const floor = transfer.floor;
    const short =
      pruned > 0 || this.#squeezed > 0 || transfer.reliefMoves > this.#reliefAtLast || below > room;
    this.#squeezed = 0;
    let base = this.#base;
    if (short) base = Math.max(floor, base - 1);
    else {
      // The bytes below D with every token from the start size up raised to ladder[b].
      const raisedTo = (b: number) => {
        let bytes = 0;
        for (let ti = 0; ti < top; ti++)
          bytes += counts[ti] * transfer.rowBytes(ladder[ti < floor ? ti : Math.max(ti, b)]);
        return bytes;
      };
      while (base + 1 < top && raisedTo(base + 1) <= room) base++;
    }
    const from = this.#base;
    this.#base = base;
    store.setCreateSize(ladder[base]);
    let raised = 0;
    if (base > from) {
      const ids: TokenId[] = [];
      for (let ti = floor; ti < base; ti++) store.forEachInTier(ladder[ti], (id) => void ids.push(id));
      raised += await this.#raise(ids, ladder[base], Number.POSITIVE_INFINITY, gone, pacer);
    }
    if (!short && this.options.fillWarmest && base + 1 < top) {
      // What the target leaves beside every token as it is goes to the warmest tokens at the base,
      // one size up. The search share is not held back: the next window's threshold prunes the
      // searched tokens to what the others leave, as it would for any token above the base.
      const spare = limit - transfer.rowsOf(store.accounting());
      const step = transfer.rowBytes(ladder[base + 1]) - transfer.rowBytes(ladder[base]);
      if (spare >= step) {
        const ids: TokenId[] = [];
        store.forEachInTier(ladder[base], (id) => void ids.push(id));
        const warmest = await this.#warmestFirst(ids, pacer);
        raised += await this.#raise(warmest, ladder[base + 1], Math.floor(spare / step), gone, pacer);
      }
    }
    this.#reliefAtLast = transfer.reliefMoves;
    return raised;
  }

  /**
   * `ids` that are not cold (decayed count at least coldThreshold: a cold one would be among the
   * first to step back down), warmest first to within 1/256 of a doubling: a counting sort on a log
   * scale, paced, so that a window never sorts a store's worth of tokens in one synchronous go.
   */
  async #warmestFirst(ids: readonly TokenId[], pacer: Pacer): Promise<TokenId[]> {
    const warm: TokenId[] = [];
    const counts: number[] = [];
    for (let k = 0; k < ids.length; k++) {
      if (pacer.due(k)) await pacer.pause();
      const count = this.sketch.estimate(this.#hashOf(ids[k]));
      if (count < this.options.coldThreshold) continue;
      warm.push(ids[k]);
      counts.push(count);
    }
    return Array.from(warmestFirst(counts), (k) => warm[k]);
  }

  /** Raises up to `most` of `ids` to `size` (least squares from their D-space vectors, plus the
   *  promotion noise on the new dimensions, so that they can learn). Returns the tokens raised. */
  async #raise(
    ids: readonly TokenId[],
    size: number,
    most: number,
    gone: ReadonlySet<TokenId>,
    pacer: Pacer,
  ): Promise<number> {
    const store = this.store;
    const transfer = this.#transfer;
    const model = this.#model;
    const v = new Float64Array(this.D);
    const std = this.options.promotionStd;
    const random = this.#random;
    let ls = transfer.solverFor(size);
    let raised = 0;
    for (let k = 0; k < ids.length && raised < most; k++) {
      if (pacer.due(k)) {
        await pacer.pause();
        ls = transfer.solverFor(size);
      }
      const id = ids[k];
      if (gone.has(id) || !store.alive(id) || store.sizeOf(id) >= size || isCrossKey(store.key(id))) continue;
      if (model !== null) model.vectorOf(id, v);
      else v.fill(0);
      const acc0 = transfer.meanAccumulator(id);
      // Into a nested tier the row keeps its dims as they are (its scores too) and only the new
      // ones get the noise: noise on all of them moved every window's AUC when the base rose
      // (window step, worst of 3 seeds: criteo-sample at 25% -0.0004, avazu-sample -0.0004; now
      // -0.0001 and -0.0000).
      const from = ls.truncates ? store.sizeOf(id) : 0;
      const moved = transfer.move(id, size, (_src, dst) => {
        ls.solve(v, dst);
        for (let i = from; i < size; i++) dst[i] += std * random.normal();
      });
      if (!moved) continue;
      transfer.carryAccumulator(id, acc0 * this.options.promotionCarry);
      raised++;
    }
    return raised;
  }

  /** Runs one window to completion, yielding to the event loop between chunks. */
  async runWindow(reason: string): Promise<WindowReport> {
    const startedAt = this.options.clock.now();
    const pacer = new Pacer(this.options.chunk, this.options.sliceMs);
    this.#windows++;
    // Ids evicted from here on are skipped: listed before, they may name another token by now.
    const gone = new Set<TokenId>();
    this.#goneInWindow = gone;
    try {
      return await this.#window(reason, this.#windows, gone, pacer, startedAt);
    } finally {
      this.#goneInWindow = null;
    }
  }

  async #window(
    reason: string,
    windowId: number,
    gone: ReadonlySet<TokenId>,
    pacer: Pacer,
    startedAt: Milliseconds,
  ): Promise<WindowReport> {
    const store = this.store;
    const model = this.#model;
    const trainer = this.#trainer;
    const o = this.options;
    const D = this.D;
    const ladder = this.ladder;
    const t0 = now();
    const pause = () => pacer.pause();
    const due = (k: number) => pacer.due(k);
    // Memory as the window found it, slack included (reported as "before": measured after the
    // compaction below, a window that gave slack back and grew tiers would look like growth).
    const accStart = store.accounting();
    // One tier at a time: each is a copy of its slabs, a pause of its own.
    for (const size of ladder) {
      store.compact?.(size);
      await pause();
    }
    const accBefore = store.accounting();
    const aucBefore = trainer === null ? Number.NaN : trainer.metrics.snapshot().windowAuc;
    const probeEvents = trainer === null ? [] : this.#recent.events();
    const aheadEvents = trainer === null || this.#lookahead === null ? [] : this.#lookahead(o.probeEvents);
    const score = (events: readonly Interaction[]): ProbeScore | null =>
      events.length === 0 ? null : scoreProbe(events, (e) => trainer!.predict(e));
    const probeBefore = score(probeEvents);
    const aheadBefore = score(aheadEvents);

    // 1. The searched tokens and a snapshot of their importances.
    const topIndex = ladder.indexOf(D);
    const ids: TokenId[] = [];
    store.forEachInTier(D, (id) => {
      ids.push(id);
    });
    // A token with no importance yet (promoted after its last event) has shown nothing: it stays
    // at D into the next window instead of being pruned to 0 on no evidence.
    const all = ids.length;
    const importance = new Float32Array(all * D);
    const imp = store.tiers[topIndex].importance;
    let n = 0;
    let waiting = 0;
    const recent =
      o.forecastImportance && trainer !== null && probeEvents.length > 0
        ? this.#occurrencesAtD(trainer.lookup(probeEvents))
        : null;
    const P = probeEvents.length;
    for (let k = 0; k < all; k++) {
      const id = ids[k];
      const off = store.slotOf[id] * D;
      let sum = 0;
      if (imp !== null) for (let d = 0; d < D; d++) sum += imp[off + d];
      if (imp !== null && !(sum > 0)) {
        waiting++;
        continue;
      }
      if (imp !== null) {
        importance.set(imp.subarray(off, off + D), n * D);
        // A forecast, not a sum: importance per update in the search, times the updates to come
        // in the next probe's worth of events, the mean of two guesses: as many as in the probe's
        // events (plus one), or as many as the search's own rate gives. A sum favours the tokens
        // searched longest: a user who turned hot just before the window was pruned in the middle
        // of a burst (ml-100k at 10%, seed 1, window 2: AUC of the next 2,048 events 0.7382 ->
        // 0.7355). The probe's count alone is noisy for a token of middling frequency (the
        // planted split of test/engine/pme.test.ts then kept 14 of 20 rich users, not 19).
        if (recent !== null) {
          const from = this.#searchFrom.get(id) ?? { seen: 0, learned: 0 };
          const updates = Math.max(1, store.frequency[id] - from.seen);
          const span = Math.max(P, trainer!.learned - from.learned);
          const f = ((recent.get(id) ?? 0) + 1) / updates / 2 + P / span / 2;
          for (let d = 0; d < D; d++) importance[n * D + d] *= f;
        }
      }
      ids[n++] = id;
    }
    ids.length = n;
    await pause();

    // 2. One global threshold so the searched tokens' new sizes fit what the rest leaves of the
    //    target (below the budget): whether or not the budget binds.
    const budget = accBefore.budgetBytes;
    const searchedBytes = n * this.#transfer.rowBytes(D);
    // Tokens the base raised (#fill) give their extra bytes back first: hot tokens come before them.
    const rowLimit = this.#transfer.rowLimit(accBefore);
    const others = this.#transfer.rowsOf(accBefore) - searchedBytes - this.#raisedBytes(accBefore);
    let available = rowLimit - others;
    // The budget (less the headroom) limits the rows and the others leave the searched tokens no
    // room: the store is about to evict, so the budget binds from here on. Else this window prunes
    // the searched tokens for tokens the budget evicts soon after (planted stream at 10%, 2M events,
    // seed 1: window 3 moved all 649 searched tokens, probe AUC -0.052).
    if (this.#transfer.budgetLimits(accBefore) && available < searchedBytes) this.#budgetBinds = true;
    // Once the budget binds, the rows are always full: the searched tokens keep up to half the
    // search share and the coldest tokens are evicted for them. Without it a window pruned every
    // searched token back to the start size (the planted stream at 10%, 1M events, seed 1: AUC
    // 0.6453 without, 0.6603 with).
    if (this.#evictsForSearch())
      available = Math.max(
        available,
        (o.searchShare / 2) * rowLimit - (store.tiers[topIndex].count - n) * this.#transfer.rowBytes(D),
      );
    // A searched token ends no smaller than the start size it was promoted from: importances
    // are token-sized more than dimension-sized, so below it a hot token was pruned to 0, and the
    // window cost the AUC of its last events (ml-latest-small at 10%: a step of -0.0027 a window;
    // with the floor -0.0001). Choosing against the floor's bytes keeps the total within the limit.
    const floorSize = ladder[this.#base];
    const bytesOf = (s: number) => this.#transfer.rowBytes(Math.max(s, floorSize));
    // A target that the other tokens and the searched ones at that floor already exceed cannot be
    // reached by pruning: the window prunes only what the budget needs. Else every window pruned
    // all searched tokens to the floor, and they could not be searched again for researchAfter
    // windows (the planted stream, 1M events, seed 1, start size 16 at a 10% target: all 444 at
    // window 1, AUC 0.6535; now 0.6618).
    if (!this.#transfer.budgetLimits(accBefore) && available < n * bytesOf(0))
      available = Math.max(available, this.#transfer.budgetRowLimit(accBefore) - others);
    const choice =
      Number.isFinite(available) && imp !== null
        ? chooseSizes(importance, n, D, ladder, bytesOf, Math.max(0, available))
        : null;
    await pause();

    // 3. Capacity transfer, chunk by chunk. Least-squares factors are rebuilt per chunk because
    //    the projections keep learning while the window yields.
    let moved = 0;
    let errSum = 0;
    let errMax = 0;
    const target = new Float64Array(D);
    // What the tokens about to move did with their partners in the probe's events (partners.ts);
    // only when one moves: it scores every probe event, in one synchronous stretch.
    const partners =
      Number.isFinite(o.partnerRidge) &&
      trainer !== null &&
      model !== null &&
      probeEvents.length > 0 &&
      choice?.sizes.some((size) => size < D)
        ? new PartnerMoments(model, trainer.lookup(probeEvents), new Set(ids))
        : null;
    if (partners !== null) await pause();
    const Q = partners === null ? null : new Float64Array(D * D);
    const prev = new Float64Array(D);
    const after = new Float64Array(D);
    const solvers = new Map<number, TierLeastSquares>();
    const solverFor = (s: number): TierLeastSquares => {
      let ls = solvers.get(s);
      if (ls === undefined) {
        const ti = ladder.indexOf(s);
        ls = new TierLeastSquares(s === D || s === 0 ? null : (model?.projections[ti] ?? null), s, D);
        solvers.set(s, ls);
      }
      return ls;
    };
    for (let k = 0; k < n; k++) {
      if (due(k)) {
        await pause();
        solvers.clear();
      }
      const id = ids[k];
      if (gone.has(id) || store.tierOf[id] !== topIndex) continue; // evicted or moved meanwhile
      const chosen = choice === null ? D : choice.sizes[k];
      const size = Math.max(chosen, floorSize);
      const raised = size > chosen;
      const row = store.slotOf[id] * D;
      if (size === D) {
        if (imp !== null)
          for (let d = 0; d < D; d++) store.tiers[topIndex].importance![row + d] *= o.importanceDecay;
        const from = this.#searchFrom.get(id);
        if (from !== undefined) {
          const seen = store.frequency[id];
          const learned = trainer?.learned ?? 0;
          from.seen = seen - (seen - from.seen) * o.importanceDecay;
          from.learned = learned - (learned - from.learned) * o.importanceDecay;
        }
        continue;
      }
      const threshold = choice!.threshold;
      const ls = solverFor(size);
      const acc0 = this.#transfer.meanAccumulator(id);
      // Raised to the floor, or into a nested tier (which keeps the first dims as they are): the
      // best vector of that size, whatever the importances kept. Zeroing the pruned dims among a
      // nested row's first ones lost what the row has room for (criteo-sample at 10%: window step
      // -0.0006, worst -0.0017; kept: -0.0004, -0.0011).
      const whole = raised || ls.truncates;
      const done = this.#transfer.move(id, size, (src, dst) => {
        let norm = 0;
        for (let d = 0; d < D; d++) {
          prev[d] = src[d];
          target[d] = whole || importance[k * D + d] >= threshold ? src[d] : 0;
          norm += target[d] * target[d];
        }
        const trace = partners === null || size === 0 ? 0 : partners.moment(id, src, Q!);
        const r =
          trace > 0
            ? solveKeepingScores(target, Q!, trace, o.partnerRidge, ls.projection, size, D, dst)
            : ls.solve(target, dst);
        const rel = norm > 0 ? Math.sqrt(r / norm) : 0;
        errSum += rel;
        if (rel > errMax) errMax = rel;
      });
      if (!done) continue;
      if (partners !== null) {
        model!.vectorOf(id, after);
        partners.moved(id, prev, after);
      }
      this.#transfer.carryAccumulator(id, acc0);
      moved++;
    }
    await pause();
    if (this.#base > this.#transfer.floor) {
      // What the searched tokens took from the raised ones: the coldest step down (relief).
      const acc = store.accounting();
      const over = this.#transfer.rowsOf(acc) - this.#transfer.rowLimit(acc);
      if (over > 0) {
        const searched = new Set(ids);
        this.#transfer.relieve(over, (id) => searched.has(id));
        for (const size of ladder) store.compact?.(size);
      }
      await pause();
    }

    // 4. Cooling: while the rows are over the limit, the least recently seen tokens between the
    //    start size and D step down a size at a time, least squares from their D-space vector:
    //    the budget's relief, in chunks of o.chunk steps with a pause between. Where the budget
    //    sets the limit and the store evicts for the search, with the relief's recency guard: a
    //    token at the start size seen before them is the store's to evict first (planted stream,
    //    5M events, 25%, seed 1: 0.6833 with it, 0.6797 without). Where the target sets the limit
    //    nothing evicts that token, and the guard would stop cooling for good.
    //    Stepping every cold token down whether or not the rows needed it left the budget unused
    //    (5M events, 50%, seed 1: one window moved 623,273 tokens from 32 to 16, the next 2,048
    //    events' AUC fell from 0.7105 to 0.7074, 83 of 301 MB stayed free; AUC 0.6834, now
    //    0.6858). Stepping down the coldest by decayed count gave 0.6828 at 25% over 3 seeds,
    //    this 0.6838 (uniform 32: 0.6841).
    let demoted = 0;
    for (;;) {
      const acc = store.accounting();
      const over = this.#transfer.rowsOf(acc) - this.#transfer.rowLimit(acc);
      const steps =
        over > 0
          ? this.#transfer.relieve(over, () => false, {
              recency: this.#evictsForSearch() && this.#transfer.budgetLimits(acc),
              top: topIndex,
              most: o.chunk,
            })
          : 0;
      demoted += steps;
      if (steps < o.chunk) break;
      await pause();
    }
    // A step down can grow the smaller tier (store.shrink): its slack goes back.
    if (demoted > 0) for (const size of ladder) store.compact?.(size);

    // 5. The base size follows the room the target leaves.
    const raised = o.fill ? await this.#fill(moved, gone, pacer) : 0;

    // 6. TTL.
    const evicted = this.#expire(o.clock.now());
    this.expired += evicted;
    const probeAfter = score(probeEvents);
    const aheadAfter = score(aheadEvents);
    const longestPauseMs = pacer.longest();
    const accAfter = store.accounting();
    const report: WindowReport = {
      id: windowId,
      reason,
      startedAt,
      durationMs: now() - t0,
      searched: n + waiting,
      moved,
      demoted,
      raised,
      baseSize: ladder[this.#base],
      promoted: this.#promoted,
      evicted,
      threshold: choice === null ? Number.NaN : choice.threshold,
      transferError: { mean: moved > 0 ? errSum / moved : 0, max: errMax },
      longestPauseMs,
      probe: probeReport(probeEvents.length, probeBefore, probeAfter),
      lookahead: probeReport(aheadEvents.length, aheadBefore, aheadAfter),
      aucBefore,
      aucAfter: null,
      before: tierReport(accStart.tiers),
      after: tierReport(accAfter.tiers),
      totalBytesBefore: accStart.totalBytes,
      totalBytesAfter: accAfter.totalBytes,
      budgetBytes: budget,
    };
    this.#promoted = 0;
    this.#reports.push(report);
    if (this.#reports.length > o.keepReports) this.#reports.shift();
    if (trainer !== null) {
      this.#eventsAtLast = trainer.learned;
      this.#awaitingAuc.push({ report, at: trainer.metrics.events + trainer.metrics.window });
    }
    this.#timeAtLast = o.clock.now();
    return report;
  }
}

/**
 * Indices of `counts` (decayed counts), largest first to within 1/256 of a doubling, ties in index
 * order: a counting sort on a log scale, linear in the number of tokens.
 */
function warmestFirst(counts: readonly number[]): Int32Array {
  const BUCKETS = 1 << 14;
  const bucket = new Int32Array(counts.length);
  const sizes = new Int32Array(BUCKETS);
  for (let k = 0; k < counts.length; k++) {
    const b = Math.min(BUCKETS - 1, Math.max(0, Math.floor(256 * Math.log2(counts[k])) + BUCKETS / 2));
    bucket[k] = BUCKETS - 1 - b;
    sizes[bucket[k]]++;
  }
  const next = new Int32Array(BUCKETS);
  for (let b = 0, n = 0; b < BUCKETS; b++) {
    next[b] = n;
    n += sizes[b];
  }
  const out = new Int32Array(counts.length);
  for (let k = 0; k < counts.length; k++) out[next[bucket[k]]++] = k;
  return out;
}

/** Where a searched token's importances started summing (PmeController #searchFrom). */
interface SearchStart {
  seen: number;
  learned: number;
}

/** What the store's budget policy and PME (when on) did to keep memory within the budget. */
export function memoryActions(
  store: {
    readonly lastResort: { demoted: number; evicted: number };
    readonly refused: number;
    readonly recalled: number;
  },
  pme:
    | (Pick<PmeController, 'reliefMoves' | 'refusedMoves' | 'expired'> & { readonly warmEvictions?: number })
    | null,
): MemoryActions {
  return {
    relieved: pme?.reliefMoves ?? 0,
    truncated: store.lastResort.demoted,
    evicted: store.lastResort.evicted,
    refusedTokens: store.refused,
    refusedMoves: pme?.refusedMoves ?? 0,
    expired: pme?.expired ?? 0,
    recalled: store.recalled,
    warmEvictions: pme?.warmEvictions ?? 0,
  };
}

/**
 * What PME is configured with and reports: the store API it needs, its options with their defaults
 * and validation, and the report of one window.
 */
import { PmeError } from '../../errors.js';
import type { BudgetRelief, StoreAccounting } from '../../store/index.js';
import { type Clock, type Milliseconds, systemClock } from '../../util/clock.js';
import type { ModelTier, TokenId } from '../model/model.js';
import type { TrainerStore } from '../trainer/index.js';
import type { ProbeReport } from './probe.js';
import type { SketchOptions } from './sketch.js';

/** The store API PME needs on top of the trainer's: tiers, moves, and the store's own per-row and
 *  per-tier byte figures (so PME prices a move exactly as the budget will). */
export interface PmeStore extends TrainerStore {
  /** Whether `id` names a live token. */
  alive(id: TokenId): boolean;
  /** Touches per token since it was created (store.ts `touch`): its updates. */
  readonly frequency: Float32Array;
  readonly tiers: readonly ModelTier[];
  readonly options: {
    readonly optimizerSlots: number;
    readonly linearOptimizerSlots: number;
    readonly startSize?: number;
  };
  sizeOf(id: TokenId): number;
  move(id: TokenId, newSize: number, transform: (src: Float32Array, dst: Float32Array) => void): void;
  forEachInTier(size: number, fn: (id: TokenId) => void): void;
  evictExpired(now: Milliseconds): number;
  accounting(): Pick<StoreAccounting, 'tiers' | 'totalBytes' | 'budgetBytes' | 'tokens'>;
  /** Accounted bytes of one allocated row of the tier of `size`. */
  bytesPerRow(size: number): number;
  /** Gives back allocated rows no token uses, of the tier of `size` (optional: a store without
   *  slack needs none). */
  compact?(size: number): number;
  // What the relief needs (optional: a store without a budget policy asks for none).
  /** Registers PME as the budget's relief (EmbeddingStore.setRelief). */
  setRelief?(relief: BudgetRelief | null): void;
  /** Moves a token to a smaller size without asking the budget for room. */
  shrink?(id: TokenId, newSize: number, transform: (src: Float32Array, dst: Float32Array) => void): void;
  /** The least recently seen token of a tier that `skip` does not skip, or -1. */
  coldestIn?(size: number, skip: (id: TokenId) => boolean): TokenId;
  readonly lastSeen?: Float64Array;
  /** Creates new tokens at `size` from now on (optional: without it the base size stays). */
  setCreateSize?(size: number): void;
  /** Live tokens of the field of token `id` (optional: without it every field counts as large). */
  fieldTokensOf?(id: TokenId): number;
}

/** The figures in these docs that give budgets as shares of full's bytes were measured, except
 *  where pmeStartSize says otherwise, against a full-size store that also kept PME's importance
 *  slab (its rows 4·(3D + 1) bytes, not 4·(2D + 1)): each share was about 40% more bytes than the
 *  same share today (stream-eval.ts). */
export interface PmeOptions {
  /** Run a window every this many learned events; 0 = off. Default 100 000. */
  windowEvents: number;
  /** Run a window every this many ms of the clock; Infinity = off. Default Infinity. */
  windowMs: Milliseconds;
  /**
   * Decayed count at which a token is hot and gets searched at size D. Default 5. Measured 20 → 5,
   * progressive AUC at 10 / 25 / 50% of full's bytes, 3 seeds: the planted stream at 5M events
   * over 3M users (`npm run bench -- --only planted-5m`) 0.6739 → 0.6799, 0.6838 → 0.6850, 0.6860
   * → 0.6880 (uniform 32: 0.6808, 0.6841, 0.6845); at 2M events over 400,000 users (`--only
   * planted`) 0.6704 → 0.6707, 0.6793 → 0.6813, 0.6798 → 0.6824. On a long stream many tokens
   * below 20 come back often enough to use the dims a search gives them (5M at 10%, seed 1: 764
   * tokens at D at 20; at 5 about 4,000, and 4,000 more pruned to 16 or 32, the store evicting
   * one-shot tokens for them). On the short streams (the shared
   * ones and ml-100k: `node dist/bench/pme-windows.js --data-dir DIR --pme-options JSON`, 3 seeds)
   * the mean of the 12 cells moved −0.0001, ml-latest-small at 25% the most (0.7808 → 0.7800, still
   * level with uniform 32's 0.7806); ml-100k at 25% 0.7603 → 0.7604. 10 did worse than 5 on both
   * (5M at 10%, seed 1: 0.6752 against 0.6793; the short streams −0.0002). Offline (bench:offline,
   * 5 seeds, test AUC at 10 / 20 / 40% of the parameters) ml-latest-small moved by 0.0002 or less;
   * criteo-sample 0.7394 / 0.7402 / 0.7403 → 0.7366 / 0.7385 / 0.7393 and avazu-sample 0.7040 /
   * 0.7019 / 0.7015 → 0.7012 / 0.6998 / 0.6998 (test sets of 800 and 900 rows, seed spread about
   * 0.01): there criteo-sample's PME falls below uniform and MDE, ties all.
   */
  hotThreshold: number;
  /** Decayed count under which a token has cooled: fillWarmest raises only tokens at or above it
   *  (a cooled one would be among the first to step back down). Default 1. */
  coldThreshold: number;
  /** What every window prunes to, as a share of full size (the bytes the live tokens would take
   *  at size D): PME frees memory before the budget binds. Default 0.25; 1 prunes only what the
   *  budget needs. The budget, less the headroom, caps it. A target that pruning cannot reach
   *  (the other tokens and the searched ones at the base size already exceed it) prunes only what
   *  the budget needs. */
  target: number;
  /** The same target in bytes (the lower of the two counts). Default Infinity: none. */
  targetBytes: number;
  /** Share of the target that tokens being searched may hold at full size. Default 0.3. */
  searchShare: number;
  /**
   * A hot token is searched only while its field holds at least this many live tokens. A field of
   * a few values (device type, banner position, a constant) is in nearly every event, so its
   * tokens turn hot first, yet its few vectors span at most that many dims, and their new dims meet
   * only the other tokens at D: on the short streams those new dims learned noise. 0 = every field.
   * Default 16. Measured (`node dist/bench/pme-windows.js --data-dir ../shared/datasets`, 3 seeds,
   * AUC at 10 / 25 / 50%) 0 → 16: ml-latest-small 0.7791 / 0.7802 / 0.7828 → 0.7790 / 0.7803 /
   * 0.7829, criteo-sample 0.7193 / 0.7206 / 0.7210 → 0.7201 / 0.7208 / 0.7213, avazu-sample
   * 0.6904 / 0.6912 / 0.6912 → 0.6912 / 0.6921 / 0.6923; criteo-sample's worst window step at 10%
   * −0.0011 → −0.0005; the planted stream (users and items only) unchanged. 8 did about as well
   * (mean of the 9 cells 0.73103 against 16's 0.73111); 32 excluded ml-latest-small's 20 genres
   * and cost it 0.0010 / 0.0026 at 25 / 50% (0.73052).
   */
  searchFieldTokens: number;
  /** Share of the budget a window leaves free for tokens created before the next one. Default 0.1. */
  headroom: number;
  /** Windows before a pruned token may be searched again. Default 5. */
  researchAfter: number;
  /** Factor applied to the importances of tokens that stay at size D across a window. Default 0.5. */
  importanceDecay: number;
  /** Most tokens handled per synchronous chunk of a window (the pause scoring may see). Default 512. */
  chunk: number;
  /** Longest synchronous stretch of a window, in ms, before it yields whatever the chunk. Default 1
   *  (as a training slice: a request waits about that long behind a window). */
  sliceMs: number;
  /** The last events learned that a window scores before and after its moves (its probe: what
   *  the window did to the model, apart from drift in the stream). 0 = no probe. Default 2048. */
  probeEvents: number;
  /** Window reports kept in memory. Default 100. */
  keepReports: number;
  /** Std of the noise added to a promoted token's new dimensions. Default 0.01. Without it a token
   *  promoted from the nested low dims has zeros elsewhere, where the gradient is zero too
   *  (a saddle) while every other token is small: it could never use its new capacity. */
  promotionStd: number;
  /**
   * A promoted row's Adagrad accumulators start at this share of its old row's mean, not at 0
   * (then its first steps move every new dimension by about the full rate, whatever the gradient,
   * which costs short streams more than the search brings). Default 0.3. Measured over 3 seeds
   * (`node dist/bench/pme-windows.js --shares 0.1,0.25`: ml-latest-small, criteo-sample and
   * avazu-sample at 10% and 25%; `node dist/bench/planted.js --events 1000000 --users 200000
   * --seeds 1,2 --shares 0.1,0.25`), mean AUC of the 6 real cells and the planted 10% / 25%:
   * 0: 0.7076, 0.6324 / 0.6492; 0.1: 0.7105, 0.6334 / 0.6480; 0.3: 0.7120, 0.6338 / 0.6471;
   * 1: 0.7127, 0.6334 / 0.6456. A larger share slows the search itself: at 1, test/engine/pme.test's
   * planted split keeps fewer rich users (14 of 20 at size >= 2).
   */
  promotionCarry: number;
  /** Whether a window raises the base size (where new tokens start and cooling and pruning stop)
   *  while the target has room for every token below D at a larger size (controller.ts #fill).
   *  Default true; false keeps the start size. */
  fill: boolean;
  /**
   * Whether what the target leaves beside every token as it is, once a window has set the base,
   * goes to the warmest tokens at the base, one size up (#fill), rather than staying empty: the
   * base is one size for every token below D, so up to a size step's worth of the target went
   * unused. The search share is not held back for it: the next window's searched tokens get what
   * the others leave, these included (letting the searched tokens take these bytes back first cost
   * ml-latest-small at 25% 0.0005, and 0.0013 at target 1). Default true. Measured (`node
   * dist/bench/pme-windows.js --data-dir DIR --pme-options '{"fillWarmest":false}'`, 3 seeds) off → on
   * at 25% of full's bytes: ml-latest-small 0.7805 → 0.7807, criteo-sample 0.7205 → 0.7211,
   * avazu-sample 0.6927 → 0.6925, ml-100k (kept out of shared/) 0.7603 → 0.7604, the planted stream
   * (`node dist/bench/planted.js`, 2M events) 0.6751 → 0.6788; every cell at 10% and 50% unchanged.
   */
  fillWarmest: boolean;
  /**
   * Once the budget binds (it has asked for room, or a window found the rows at the budget less its
   * headroom: the rows stay full from then on), whether the search comes before the coldest
   * tokens: promotions go past the headroom, tokens under search keep D until their window, a
   * window keeps up to half the search share for the searched tokens, and the relief steps down no
   * token seen more recently than the coldest at the start size; the store evicts the coldest for
   * them, while they have cooled (warmEvictions). Default true (a stream: a token not seen for long
   * is the cheapest to lose). False keeps every token resident as long as steps down can make room
   * (offline, where every token comes back each epoch). At 10% of full's bytes, 3 seeds, measured at 623dcc5 (before the store's key
   * table) with `node dist/bench/pme-windows.js --shares 0.1`, and --pme-options
   * '{"evictForSearch":false}' for the run without, off → on: ml-latest-small 0.7771 → 0.7757,
   * criteo-sample 0.6869 → 0.6882, avazu-sample 0.6816 → 0.6836; the planted stream (1M events, seeds 1 and 2) 0.6453 →
   * 0.6603 and 0.6318 → 0.6462. Without it, PME at a binding budget ran as its start size.
   */
  evictForSearch: boolean;
  /**
   * evictForSearch holds while at most this share of the budget's recent evictions (an average
   * over about 128) took warm tokens: a decayed count of 2 or more, seen about twice lately (a
   * token seen once and evicted soon after counts about 1: the tail a stream never comes back to).
   * Where the store already evicts warm tokens, the search would take its room from tokens that
   * come back: PME then searches within the headroom only. Default 0.5; 1: always. The sketch's
   * count of each token evicted at 10% of full's bytes, seed 1 (median, 90th percentile): the
   * planted stream 0.11, 0.22; criteo-sample 0.60, 1.19; avazu-sample 0.68, 1.17; ml-latest-small
   * 2.09, 8.78; ml-100k (kept out of shared/) 7.53, 42.98. At 0.5 against 1, 3 seeds (`node
   * dist/bench/pme-windows.js --data-dir DIR`), AUC at 10 / 25 / 50%: ml-100k 0.7575 / 0.7603 /
   * 0.7610 against 0.7560 / 0.7603 / 0.7610 (at 10%: PME − uniform 8 +0.0001 [−0.0002, +0.0005]
   * against −0.0014 [−0.0021, −0.0008]), ml-latest-small 0.7789 / 0.7808 / 0.7814 against
   * 0.7788 / 0.7808 / 0.7814; criteo-sample, avazu-sample and the planted stream (`node
   * dist/bench/planted.js --events 1000000 --users 200000 --seeds 1,2`) identical. A count of 1
   * as the bar (coldThreshold) also switched ml-latest-small at 25% off (0.7804).
   */
  warmEvictions: number;
  /**
   * A window's searched tokens are sized by a forecast of their importances rather than their sum
   * over the search: per update during the search, times the updates to come (the mean of the
   * token's count in the probe's events, plus one, and its rate over the search). Default true.
   * Measured at 10% of full's bytes, the one budget where these windows prune, 3 seeds
   * (`node dist/bench/pme-windows.js --data-dir DIR --shares 0.1 --pme-options JSON`), mean step of
   * a window on the next 2,048 events (not learned yet) for ml-latest-small / criteo-sample /
   * avazu-sample / ml-100k (kept out of shared/), neither → partnerRidge only → forecast only →
   * both: −0.000045 / −0.000022 / −0.000076 / −0.000176 → −0.000011 / −0.000064 / −0.000003 /
   * −0.000194 → −0.000096 / −0.000018 / −0.000048 / +0.000254 → −0.000038 / −0.000046 / −0.000007 /
   * +0.000245 (mean −0.000080 → +0.000039); on the last 2,048 learned the mean goes −0.000091 →
   * −0.000056. Progressive AUC moved by under 0.0001 in every cell.
   */
  forecastImportance: boolean;
  /**
   * A pruned searched token keeps its scores with the other tokens of its probe events rather than
   * its vector (pme/partners.ts); this is the ridge, a share of those partners' mean second moment,
   * that draws a token seen in few probe events back towards its vector. Infinity: least squares on
   * the vector alone. Default 1. Figures: forecastImportance.
   */
  partnerRidge: number;
  /** Seed of that noise. Default 1. */
  seed: number;
  /** The hot-token sketch. */
  sketch: Partial<SketchOptions>;
  clock: Clock;
}

export const PME_DEFAULTS: Readonly<Omit<PmeOptions, 'clock' | 'sketch'>> = Object.freeze({
  windowEvents: 100_000,
  windowMs: Number.POSITIVE_INFINITY,
  hotThreshold: 5,
  coldThreshold: 1,
  target: 0.25,
  targetBytes: Number.POSITIVE_INFINITY,
  searchShare: 0.3,
  searchFieldTokens: 16,
  headroom: 0.1,
  researchAfter: 5,
  importanceDecay: 0.5,
  chunk: 512,
  sliceMs: 1,
  probeEvents: 2048,
  keepReports: 100,
  promotionStd: 0.01,
  promotionCarry: 0.3,
  forecastImportance: true,
  partnerRidge: 1,
  fill: true,
  fillWarmest: true,
  evictForSearch: true,
  warmEvictions: 0.5,
  seed: 1,
});

/** The ladder of the benchmarks and `stream-eval` / `offline` for D = `dim`: 0, the powers of two
 *  below D, and D. */
export function ladderFor(dim: number): number[] {
  const ladder = [0];
  for (let s = 2; s < dim; s *= 2) ladder.push(s);
  ladder.push(dim);
  return ladder;
}

/**
 * The size PME's tokens start at, and the smallest a window prunes or cools them to, when the
 * caller sets none: the smallest size at or above the target's share of D (target × D), at most
 * 16 and below D. The floor is what a token costs at the least, so a floor above the target's
 * share per token leaves the budget fewer tokens than it has room for and the store evicts the
 * coldest: at 10% of full's bytes a floor of 16 left ml-100k 0.0067 below uniform 8 (0.7507
 * against 0.7574), an evicted user coming back with a new vector. Measured with the full-size
 * store a user would run instead as the reference (no importance slab: stream-eval.ts), start 8 against 16 (`node dist/bench/pme-windows.js --data-dir
 * DIR --start-size S`, 3 seeds; the planted stream `node dist/bench/planted.js --events 1000000
 * --users 200000 --seeds 1,2 --start-size S`), progressive AUC for ml-latest-small, criteo-sample,
 * avazu-sample, ml-100k (kept out of shared/) and the planted stream: at 10% of full's bytes
 * 0.7788 / 0.7196 / 0.6907 / 0.7560 / 0.6528 against 0.7790 / 0.7197 / 0.6905 / 0.7507 / 0.6532
 * (mean 0.7196 against 0.7186); at 25% 0.7797 / 0.7214 / 0.6917 / 0.7586 / 0.6584 against 0.7808 /
 * 0.7208 / 0.6922 / 0.7603 / 0.6592 (0.7220 against 0.7227); at 50% a tie (0.72274 / 0.72278).
 */
export function pmeStartSize(ladder: readonly number[], target: number = PME_DEFAULTS.target): number {
  const D = ladder[ladder.length - 1];
  const wanted = Math.min(16, target * D);
  let size = ladder[0];
  for (const s of ladder) {
    if (s >= D || s > 16) break;
    size = s;
    if (s >= wanted) break;
  }
  return size;
}

export function resolvePmeOptions(options: Partial<PmeOptions> = {}): Readonly<PmeOptions> {
  const o: PmeOptions = { ...PME_DEFAULTS, sketch: {}, clock: systemClock, ...options };
  const bad = (m: string) => new PmeError('PME_ERR_CONFIG_INVALID', `pme: ${m}`);
  if (!Number.isInteger(o.windowEvents) || o.windowEvents < 0)
    throw bad(`windowEvents must be an integer >= 0`);
  if (!(o.windowMs > 0)) throw bad(`windowMs must be > 0 (Infinity = off), got ${o.windowMs}`);
  if (!(o.hotThreshold > 0)) throw bad(`hotThreshold must be > 0, got ${o.hotThreshold}`);
  if (!(o.coldThreshold >= 0 && o.coldThreshold < o.hotThreshold))
    throw bad(`coldThreshold must be in [0, hotThreshold), got ${o.coldThreshold}`);
  if (!(o.target > 0 && o.target <= 1)) throw bad(`target must be in (0, 1], got ${o.target}`);
  if (!(o.targetBytes > 0)) throw bad(`targetBytes must be > 0 (Infinity: none), got ${o.targetBytes}`);
  if (!(o.searchShare > 0 && o.searchShare <= 1))
    throw bad(`searchShare must be in (0, 1], got ${o.searchShare}`);
  if (!(o.headroom >= 0 && o.headroom < 1)) throw bad(`headroom must be in [0, 1), got ${o.headroom}`);
  if (!(o.searchShare + o.headroom <= 1)) throw bad('searchShare + headroom must be <= 1');
  if (!Number.isInteger(o.searchFieldTokens) || o.searchFieldTokens < 0)
    throw bad(`searchFieldTokens must be an integer >= 0, got ${o.searchFieldTokens}`);
  if (!Number.isInteger(o.researchAfter) || o.researchAfter < 1)
    throw bad('researchAfter must be an integer >= 1');
  if (!(o.importanceDecay >= 0 && o.importanceDecay <= 1)) throw bad('importanceDecay must be in [0, 1]');
  if (!Number.isInteger(o.chunk) || o.chunk < 1) throw bad('chunk must be an integer >= 1');
  if (!(o.sliceMs > 0)) throw bad(`sliceMs must be > 0, got ${o.sliceMs}`);
  if (!Number.isInteger(o.probeEvents) || o.probeEvents < 0) throw bad('probeEvents must be an integer >= 0');
  if (!Number.isInteger(o.keepReports) || o.keepReports < 1) throw bad('keepReports must be an integer >= 1');
  if (!(o.promotionStd >= 0)) throw bad(`promotionStd must be >= 0, got ${o.promotionStd}`);
  if (!(o.promotionCarry >= 0)) throw bad(`promotionCarry must be >= 0, got ${o.promotionCarry}`);
  if (!(o.partnerRidge > 0)) throw bad(`partnerRidge must be > 0 (Infinity: off), got ${o.partnerRidge}`);
  if (typeof o.fill !== 'boolean') throw bad(`fill must be true or false, got ${o.fill}`);
  if (typeof o.fillWarmest !== 'boolean')
    throw bad(`fillWarmest must be true or false, got ${o.fillWarmest}`);
  if (!(o.warmEvictions >= 0 && o.warmEvictions <= 1))
    throw bad(`warmEvictions must be in [0, 1], got ${o.warmEvictions}`);
  if (typeof o.evictForSearch !== 'boolean')
    throw bad(`evictForSearch must be true or false, got ${o.evictForSearch}`);
  if (!Number.isInteger(o.seed)) throw bad(`seed must be an integer, got ${o.seed}`);
  return Object.freeze(o);
}

export interface WindowTier {
  size: number;
  tokens: number;
  paramBytes: number;
  optimizerBytes: number;
  indexBytes: number;
  totalBytes: number;
}

/** One window, as reported (the shape of src/api/contract.ts PruneWindowReport, plus detail). */
export interface WindowReport {
  id: number;
  reason: string;
  startedAt: Milliseconds;
  durationMs: number;
  searched: number;
  moved: number;
  demoted: number;
  /** Tokens raised to a new base size, and the warmest at the base raised one size up (#fill,
   *  fillWarmest); the base size after the window. */
  raised: number;
  baseSize: number;
  promoted: number;
  evicted: number;
  /** Global importance threshold (Infinity when nothing was kept). */
  threshold: number;
  /** Mean and max of ||e_s·P_s − v'|| / ||v'|| over moved tokens (v' = pruned D-space vector).
   *  Above 1 where a token kept its partners' scores (partnerRidge) rather than its vector. */
  transferError: { mean: number; max: number };
  /** Longest synchronous stretch of the window (what a concurrent score could wait), ms. */
  longestPauseMs: number;
  /** The last events learned, scored before and after the window's moves (null: no probe). */
  probe: ProbeReport | null;
  /** The events a replay learns next, not yet learned, scored the same way (null: no lookahead,
   *  as in a live service; PmeController.setLookahead). */
  lookahead: ProbeReport | null;
  /** Windowed progressive AUC when the window started, and `metricsWindow` events after it ended
   *  (different events: it moves with the stream too; the probe isolates the window). */
  aucBefore: number;
  aucAfter: number | null;
  before: WindowTier[];
  after: WindowTier[];
  totalBytesBefore: number;
  totalBytesAfter: number;
  budgetBytes: number;
}

/** Counts of what keeps memory within the budget, since start, and whether PME's search evicts
 *  (memoryActions in controller.ts). */
export interface MemoryActions {
  /** Steps down by PME, vectors carried (the first resort): for the budget, and a window's cooling
   *  toward the limit. */
  relieved: number;
  /** Tokens the store demoted by truncating their rows (the last resort), and evicted. */
  truncated: number;
  evicted: number;
  /** New tokens not created, and PME moves not made, because the budget could not hold them. */
  refusedTokens: number;
  refusedMoves: number;
  /** Tokens evicted for being unseen past the TTL (not pressure: age). */
  expired: number;
  /** New tokens that started from the linear weight their key left when it was evicted (the
   *  store's evicted-weights table), not from 0. */
  recalled: number;
  /** Share of the budget's recent evictions (about the last 128) that took warm tokens: above
   *  PmeOptions.warmEvictions (0.5) the search no longer evicts for itself. */
  warmEvictions: number;
}

/** The store's options, their defaults, and their validation (once, at construction). */
import { PmeError } from '../errors.js';
import type { Bytes } from '../util/bytes.js';
import { type Clock, type Milliseconds, systemClock } from '../util/clock.js';

/** Store options. Validated once by `resolveStoreOptions`, then frozen. */
export interface StoreOptions {
  /** Allowed embedding sizes, strictly ascending integers; the first must be 0 and the last (D, the
   *  full search size) must be > 0. At most 255 sizes (a token's tier is one byte).
   *  Default [0, 2, 4, 8, 16, 32, 64]. */
  ladder: readonly number[];
  /** Size of a token created without an explicit size; must be on the ladder. Default 8. */
  startSize: number;
  /** Hard budget for the store's accounted bytes (slab capacity + per-token columns + key index).
   *  At the budget the store demotes, then evicts (see `EmbeddingStore`). Default Infinity. */
  budgetBytes: Bytes;
  /** Tokens unseen for at least this long are evicted by `evictExpired()`. Default Infinity (off). */
  ttlMs: Milliseconds;
  /** Standard deviation of the normal initialisation of a new row (`--init-std`). Default 0.01:
   *  `node dist/bench/quality.js --no-peers --init-std S --learner '{"rateTokens":0}'` (mean AUC on the last 80% over the three
   *  datasets) at 0.001 / 0.01 / 0.03 / 0.1: fm full 0.7353 / 0.7366 / 0.7356 / 0.7086, fm pme 25%
   *  0.7373 / 0.7376 / 0.7377 / 0.7159, fm size 8 0.7389 / 0.7390 / 0.7388 / 0.7278. */
  initStd: number;
  /** Seed of the row initialisation (counter-based, so a restored store continues identically). Default 1. */
  seed: number;
  /** Time source for the `lastSeen` of newly created tokens. Default the system clock. */
  clock: Clock;
  /** Optimizer floats stored per parameter beside each row (1 = Adagrad accumulator, 2 = Adam m
   *  and v, 0 = plain SGD). Costs 4 bytes × size × slots per token. Default 1. */
  optimizerSlots: number;
  /** Optimizer floats stored per linear weight (one weight per token): 1 = Adagrad accumulator,
   *  2 = FTRL-Proximal's z and n, 0 = plain SGD. Apart from `optimizerSlots` so that FTRL on the
   *  linear weights does not double every row's state. Costs 4 bytes × slots per token. Default 1. */
  linearOptimizerSlots: number;
  /** Keep a per-(token, dimension) importance slab in the top tier (size D): D × 4 bytes per row of
   *  that tier. Default true. */
  importance: boolean;
  /** Minimum rows added when a slab (or the per-token columns) grows; growth is geometric beyond it
   *  (capacity / 8), so loading n tokens copies O(n) bytes and leaves at most 1/8 slack.
   *  Near the budget growth is clamped to what fits. Default 4096. */
  chunkRows: number;
  /** Buckets of the table that keeps an evicted token's linear weight and its optimizer state for
   *  when its key comes back (evicted-weights.ts): 0 (off) or a power of two up to 2^24, each
   *  5 + 4 × linearOptimizerSlots bytes, counted in the budget. Under a budget the store takes the
   *  largest power of two at most this whose table fits in 1/16 of the budget. Default 4096 (36 KiB). */
  evictedBuckets: number;
}

const DEFAULTS: StoreOptions = {
  ladder: [0, 2, 4, 8, 16, 32, 64],
  startSize: 8,
  budgetBytes: Number.POSITIVE_INFINITY,
  ttlMs: Number.POSITIVE_INFINITY,
  initStd: 0.01,
  seed: 1,
  clock: systemClock,
  optimizerSlots: 1,
  linearOptimizerSlots: 1,
  importance: true,
  chunkRows: 4096,
  evictedBuckets: 4096,
};

const KNOWN = new Set(Object.keys(DEFAULTS));

function invalid(what: string): never {
  throw new PmeError('PME_ERR_CONFIG_INVALID', `store: ${what}`);
}

/** Validates a partial set of store options (each one and the rules across them), fills the defaults
 *  and returns a frozen object. Throws PmeError PME_ERR_CONFIG_INVALID saying what is wrong. */
export function resolveStoreOptions(partial: Partial<StoreOptions> = {}): Readonly<StoreOptions> {
  if (partial === null || typeof partial !== 'object') invalid('options must be an object');
  for (const key of Object.keys(partial)) {
    if (!KNOWN.has(key)) invalid(`unknown option "${key}" (known: ${[...KNOWN].join(', ')})`);
  }
  const o: StoreOptions = { ...DEFAULTS };
  for (const key of Object.keys(partial) as Array<keyof StoreOptions>) {
    if (partial[key] !== undefined) (o as unknown as Record<string, unknown>)[key] = partial[key];
  }

  if (!Array.isArray(o.ladder) || o.ladder.length < 2) invalid('ladder must be an array of at least 2 sizes');
  if (o.ladder.length > 255) invalid(`ladder has ${o.ladder.length} sizes; at most 255`);
  if (o.ladder[0] !== 0) invalid(`ladder must start at 0, got ${o.ladder[0]}`);
  for (let i = 1; i < o.ladder.length; i++) {
    const s = o.ladder[i];
    if (!Number.isInteger(s) || s <= o.ladder[i - 1]) {
      invalid(`ladder must be strictly ascending integers, got [${o.ladder.join(', ')}]`);
    }
  }
  if (o.ladder[o.ladder.length - 1] > 65536) invalid('the largest size must be at most 65536');
  if (!o.ladder.includes(o.startSize)) {
    invalid(`startSize ${o.startSize} is not on the ladder [${o.ladder.join(', ')}]`);
  }
  if (typeof o.budgetBytes !== 'number' || !(o.budgetBytes > 0)) {
    invalid(`budgetBytes must be a positive number of bytes or Infinity, got ${o.budgetBytes}`);
  }
  if (typeof o.ttlMs !== 'number' || !(o.ttlMs > 0)) {
    invalid(`ttlMs must be a positive number of milliseconds or Infinity, got ${o.ttlMs}`);
  }
  if (typeof o.initStd !== 'number' || !Number.isFinite(o.initStd) || o.initStd < 0) {
    invalid(`initStd must be a finite number >= 0, got ${o.initStd}`);
  }
  if (!Number.isInteger(o.seed)) invalid(`seed must be an integer, got ${o.seed}`);
  if (o.clock === null || typeof o.clock !== 'object' || typeof o.clock.now !== 'function') {
    invalid('clock must have a now() method');
  }
  if (!Number.isInteger(o.optimizerSlots) || o.optimizerSlots < 0 || o.optimizerSlots > 4) {
    invalid(`optimizerSlots must be an integer in 0..4, got ${o.optimizerSlots}`);
  }
  if (!Number.isInteger(o.linearOptimizerSlots) || o.linearOptimizerSlots < 0 || o.linearOptimizerSlots > 4) {
    invalid(`linearOptimizerSlots must be an integer in 0..4, got ${o.linearOptimizerSlots}`);
  }
  if (typeof o.importance !== 'boolean') invalid(`importance must be a boolean, got ${o.importance}`);
  if (!Number.isInteger(o.chunkRows) || o.chunkRows < 1 || o.chunkRows > 1 << 24) {
    invalid(`chunkRows must be an integer in 1..16777216, got ${o.chunkRows}`);
  }
  const b = o.evictedBuckets;
  if (!Number.isInteger(b) || b < 0 || b > 1 << 24 || (b & (b - 1)) !== 0) {
    invalid(`evictedBuckets must be 0 or a power of two up to 16777216, got ${b}`);
  }
  o.ladder = Object.freeze([...o.ladder]);
  return Object.freeze(o);
}

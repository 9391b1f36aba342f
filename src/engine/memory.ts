/**
 * What PME and the trainer keep in memory besides the store, by part. The store's budget does not
 * count these (`--budget-bytes` bounds the embedding store alone); the service reports them beside
 * it (`/v1/stats` and `/v1/tiers` `unbudgeted`, `pme_unbudgeted_bytes{part}`), so that what the
 * budget leaves out is measured rather than unknown.
 *
 * Typed arrays are counted exactly (byteLength, capacity included); Maps, Sets, JS arrays, objects
 * and strings are estimates (V8 hash-table slots of Node 20 without pointer compression, flat
 * strings, see src/store/accounting.ts), stated as such where each owner computes them.
 */
import type { PmeController } from './pme/controller.js';
import type { Trainer } from './trainer/index.js';

export interface UnbudgetedMemory {
  /** PME's hot-token sketch: its counters and hash salts, fixed whatever the tokens (exact; 2 MiB
   *  at the defaults). 0 without PME (a replica). */
  pmeSketch: number;
  /** PME per token id: the sketch key of each id (exact), the promotion queue, its set and the
   *  re-search marks (estimated). 0 without PME. */
  pmeTokens: number;
  /** The trainer's raw value → token id caches (two generations, bounded) and its field codes
   *  (estimated: Map slots and strings). */
  keyCaches: number;
  /** The trainer's catalog: per-item and per-signature columns and the negative sampler's
   *  weights (exact), its Maps, entries and strings (estimated). Grows with items; never shrinks. */
  catalog: number;
  /** The read path's and the item-term sweep's caches per item, field token and signature, and
   *  their fixed buffers (exact). */
  itemCaches: number;
}

/** The parts of a trainer and its PME controller (null: none, as on a replica). */
export function unbudgetedMemory(
  trainer: Pick<Trainer, 'memory'>,
  pme: Pick<PmeController, 'memory'> | null,
): UnbudgetedMemory {
  const t = trainer.memory();
  const p = pme?.memory() ?? { sketch: 0, tokens: 0 };
  return {
    pmeSketch: p.sketch,
    pmeTokens: p.tokens,
    keyCaches: t.keyCaches,
    catalog: t.catalog,
    itemCaches: t.itemCaches,
  };
}

/** The sum of the parts. */
export function unbudgetedTotal(parts: UnbudgetedMemory): number {
  return parts.pmeSketch + parts.pmeTokens + parts.keyCaches + parts.catalog + parts.itemCaches;
}

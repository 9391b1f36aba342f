/** What the store's memory is made of, in bytes: the shapes of its accounting and the cost models
 *  (V8 Map slots, strings, per-token columns) the budget charges. */
import type { Bytes } from '../util/bytes.js';

/** Bytes held by one tier; capacity-based (allocated rows), not only live rows. */
export interface TierAccounting {
  size: number;
  tokens: number;
  capacityRows: number;
  paramBytes: Bytes;
  optimizerBytes: Bytes;
  importanceBytes: Bytes;
  /** The tier's slot -> token id column. */
  indexBytes: Bytes;
  totalBytes: Bytes;
}

export interface StoreAccounting {
  tiers: TierAccounting[];
  /** Per-token columns (tier, slot, field, linear weight and its optimizer state, last seen,
   *  frequency, LRU links, free-id stack, key pointer) over the allocated id capacity. */
  tokenColumnsBytes: Bytes;
  /** Key index: `mapBytes + keyBytes`. */
  indexBytes: Bytes;
  /** The key table's slots (key-table.ts; each id's key hash is a token column). */
  mapBytes: Bytes;
  /** The key strings the store keeps alive. */
  keyBytes: Bytes;
  /** The table of evicted tokens' linear weights (evicted-weights.ts). */
  evictedBytes: Bytes;
  totalBytes: Bytes;
  budgetBytes: Bytes;
  tokens: number;
}

export interface FieldStats {
  field: string;
  tokens: number;
  /** Bytes of this field's live tokens: their rows, their per-token columns, their keys and their share
   *  of the Map. Slack capacity belongs to no field, so the fields sum to less than the total. */
  bytes: Bytes;
  /** size -> tokens, one entry per ladder size. */
  tiers: Record<number, number>;
}

/**
 * V8's OrderedHashMap: 3 words per entry slot + 1 bucket word per 2 slots = 28 bytes per slot on a
 * 64-bit build without pointer compression (Node 20). Measured: 29.4 bytes per entry at 1M entries,
 * i.e. 28 × 2^20 slots / 1M entries (scripts in bench/store.ts re-measure it).
 */
export const MAP_BYTES_PER_SLOT = 28;

/** Bytes per allocated token id: tierOf 1, slotOf 4, fieldOf 2, linear 4, lastSeen 8, frequency 4,
 *  prev 4, next 4, free-id stack 4, key pointer 8, key hash 4, plus 4 per linear optimizer slot. */
export function tokenColumnBytes(linearOptimizerSlots: number): Bytes {
  return 1 + 4 + 2 + 4 + 8 + 4 + 4 + 4 + 4 + 8 + 4 + 4 * linearOptimizerSlots;
}

/** Heap bytes of a flat V8 string: 16-byte header (map, hash, length) + chars, 8-byte aligned;
 *  two bytes per char when any char is above U+00FF. */
export function stringBytes(s: string): Bytes {
  let width = 1;
  for (let i = 0; i < s.length; i++) {
    if (s.charCodeAt(i) > 0xff) {
      width = 2;
      break;
    }
  }
  return (16 + s.length * width + 7) & ~7;
}

/**
 * V8's OrderedHashSet: 2 words per entry slot + 1 bucket word per 2 slots = 20 bytes per slot
 * (Node 20, no pointer compression; measured: 26.2 bytes per entry at 200k entries, i.e.
 * 20 × 2^18 slots / 200k).
 */
export const SET_BYTES_PER_SLOT = 20;

/** Bytes of one element of a JS array of pointers or small integers (one word). */
export const ARRAY_SLOT_BYTES = 8;

/** Slots of a V8 hash table holding `size` entries, estimated: the power of two at or above it
 *  (4 at least). What deletes and shrinks left is not modelled: an estimate, not an accounting. */
function slotsFor(size: number): number {
  return size <= 4 ? 4 : 2 ** Math.ceil(Math.log2(size));
}

/** Estimated table bytes of a Map of `size` entries (keys and values not included). */
export function mapBytesEstimate(size: number): Bytes {
  return slotsFor(size) * MAP_BYTES_PER_SLOT;
}

/** Estimated table bytes of a Set of `size` entries (the values not included). */
export function setBytesEstimate(size: number): Bytes {
  return slotsFor(size) * SET_BYTES_PER_SLOT;
}

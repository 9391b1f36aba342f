/**
 * src/store: where PME's memory savings become bytes. Token key -> (tier, slot); one contiguous slab
 * per ladder size with its optimizer state; accounting per tier and field; a hard budget with a stated
 * relieve-then-demote-then-evict policy; LRU/TTL eviction; atomic, checksummed snapshots.
 */
export type { FieldStats, StoreAccounting, TierAccounting } from './accounting.js';
export {
  ARRAY_SLOT_BYTES,
  MAP_BYTES_PER_SLOT,
  mapBytesEstimate,
  SET_BYTES_PER_SLOT,
  setBytesEstimate,
  stringBytes,
  tokenColumnBytes,
} from './accounting.js';
export { resolveStoreOptions, type StoreOptions } from './options.js';
export {
  copyStore,
  copyStoreInSlices,
  listSnapshots,
  type ReadSnapshotResult,
  readSnapshot,
  readSnapshotFile,
  type SnapshotInfo,
  writeSnapshot,
  writeStoreCopy,
} from './snapshot.js';
export {
  type BudgetRelief,
  type CreateListener,
  EmbeddingStore,
  type EvictListener,
  type LastResort,
  type MoveListener,
  type StoreState,
  type TokenId,
} from './store.js';
export type { Tier } from './tier.js';

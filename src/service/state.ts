/**
 * Snapshot contents beyond the store: the model's dense parameters, the trainer's item list
 * and the applied offsets, all in the store's one atomic snapshot file (its `extra` section).
 */
import type { Config } from '../config.js';
import { exportTrainerState, importTrainerState, type Trainer } from '../engine/index.js';
import { isPmeError } from '../errors.js';
import { EmbeddingStore, readSnapshot, type StoreOptions, writeSnapshot } from '../store/index.js';
import type { OffsetMap } from '../stream/index.js';

const OFFSETS = 'offsets.json';

/** What a snapshot gives back: the store, and the rest to apply once the trainer exists. */
export interface RestoredState {
  store: EmbeddingStore;
  extra: Record<string, Uint8Array> | null;
}

export function storeOptions(config: Config): Partial<StoreOptions> {
  return {
    ladder: config.ladder.map(Number),
    startSize: config.startSize,
    budgetBytes: config.budgetBytes,
    ttlMs: config.tokenTtlMs,
    seed: config.seed,
  };
}

/**
 * Writes a snapshot of the store and the trainer. Their state is copied synchronously, before the
 * first await (hold the state lock across the call); encodeCatalogAhead() first keeps that short.
 */
export async function saveState(
  dir: string,
  store: EmbeddingStore,
  trainer: Trainer,
  offsets: OffsetMap,
): Promise<string> {
  const extra = exportTrainerState(trainer);
  extra[OFFSETS] = new TextEncoder().encode(JSON.stringify(offsets));
  return writeSnapshot(store, dir, extra);
}

/** The newest valid snapshot in `config.stateDir`, or a fresh store when there is none. */
export async function restoreState(config: Config): Promise<RestoredState> {
  try {
    return await readSnapshot(config.stateDir);
  } catch (error) {
    if (!isPmeError(error, 'PME_ERR_NOT_FOUND')) throw error;
    return { store: new EmbeddingStore(storeOptions(config)), extra: null };
  }
}

/** Applies the trainer's part of a snapshot and returns the offsets it holds. */
export function applyRestored(trainer: Trainer, extra: Record<string, Uint8Array> | null): OffsetMap {
  if (extra === null) return {};
  importTrainerState(trainer, extra);
  return extra[OFFSETS] ? (JSON.parse(new TextDecoder().decode(extra[OFFSETS])) as OffsetMap) : {};
}

/**
 * Snapshot contents beyond the store: the model's dense parameters, the trainer's item list
 * and the applied offsets, all in the store's one atomic snapshot file (its `extra` section).
 */
import { stat } from 'node:fs/promises';
import { type Config, modelOptionsOf } from '../config.js';
import {
  encodeCatalogAhead,
  exportTrainerState,
  importTrainerState,
  type PmeOptions,
  type Trainer,
  type TrainerOptions,
} from '../engine/index.js';
import { linearOptimizerSlotsOf } from '../engine/model/fm.js';
import { isPmeError } from '../errors.js';
import {
  copyStoreInSlices,
  EmbeddingStore,
  readSnapshot,
  type StoreOptions,
  type StoreState,
  writeStoreCopy,
} from '../store/index.js';
import { removeStaleTemps } from '../store/snapshot.js';
import type { OffsetMap } from '../stream/index.js';
import type { StateLock } from './lock.js';

const OFFSETS = 'offsets.json';

/** What a snapshot gives back: the store, and the rest to apply once the trainer exists. */
export interface RestoredState {
  store: EmbeddingStore;
  extra: Record<string, Uint8Array> | null;
  /** When the snapshot restored was written (its file's mtime, ms since the epoch); null for a
   *  fresh store. */
  writtenAt: number | null;
  /** Temporary files of snapshot writes that died with an earlier process, removed (log them). */
  removedTemps: number;
  /** Newer snapshots that were unusable and passed over for an older one (log them). */
  skipped: Array<{ path: string; reason: string }>;
}

export function storeOptions(config: Config): Partial<StoreOptions> {
  return {
    ladder: config.ladder.map(Number),
    startSize: config.startSize,
    budgetBytes: config.budgetBytes,
    ttlMs: config.tokenTtlMs,
    evictedBuckets: config.evictedBuckets,
    seed: config.seed,
    initStd: config.initStd,
    linearOptimizerSlots: linearOptimizerSlotsOf(modelOptionsOf(config)),
  };
}

/** The PME controller's options from the configuration (0 turns a window trigger off). */
export function pmeOptions(config: Config): Partial<PmeOptions> {
  return {
    target: config.pruneTarget,
    targetBytes: config.pruneTargetBytes > 0 ? config.pruneTargetBytes : Number.POSITIVE_INFINITY,
    windowEvents: config.pruneEveryEvents,
    windowMs: config.pruneEveryMs > 0 ? config.pruneEveryMs : Number.POSITIVE_INFINITY,
    hotThreshold: config.hotThreshold,
  };
}

/** The trainer's options from the configuration (what the service and the library share). */
export function trainerOptions(config: Config): Partial<TrainerOptions> {
  return {
    model: modelOptionsOf(config),
    negatives: config.negatives,
    crossUserItem: config.crossUserItem,
    seed: config.seed,
    maxFieldNames: config.maxFieldNames,
    maxKeyLength: config.maxKeyLength,
  };
}

/** What a snapshot holds, copied: the store's state and the sections of the trainer and offsets. */
export interface StateCopy {
  store: StoreState;
  extra: Record<string, Uint8Array | Float32Array>;
}

/** Prune windows change the store outside the state lock: a copy in slices looks out for them.
 *  The controller's own state (sketch, queue, windows) goes into the snapshot too. */
export interface WindowWatch {
  readonly running: Promise<unknown> | null;
  readonly windowsStarted: number;
  exportState?(): Record<string, Uint8Array>;
}

/**
 * Copies what a snapshot holds, the store in slices (copyStoreInSlices) so that requests served
 * on this thread go on. Hold the state lock across it: training waits, and the copy is of whole
 * batches with exactly `offsets`. A prune window runs outside that lock: a snapshot never holds
 * one half done (the controller's own state is in it, and would not match), so the copy waits for
 * a running window to end, and is taken again when one started meanwhile (`POST /v1/prune`).
 * Write the copy (writeStoreCopy) outside the lock.
 */
export async function copyState(
  store: EmbeddingStore,
  trainer: Trainer,
  offsets: OffsetMap,
  windows: WindowWatch,
): Promise<StateCopy> {
  for (;;) {
    while (windows.running !== null) await windows.running.catch(() => undefined);
    const started = windows.windowsStarted;
    const sliced = await copyStoreInSlices(store);
    if (windows.running !== null || windows.windowsStarted !== started) continue;
    return {
      store: sliced,
      extra: { ...trainerSections(trainer, offsets), ...copies(windows.exportState?.() ?? {}) },
    };
  }
}

/**
 * One snapshot as the service takes it: new catalog names encoded ahead (in steps), a running
 * prune window let finish, the state copied under `lock` with the offsets read there (copyState)
 * and the service's own `sections` (the subscriptions), then written outside it, so training waits for the copy, not for the disk. Returns the file and
 * the offsets it holds.
 */
export async function takeSnapshot(
  dir: string,
  store: EmbeddingStore,
  trainer: Trainer,
  windows: WindowWatch,
  lock: StateLock,
  offsets: () => OffsetMap,
  sections: () => Record<string, Uint8Array> = () => ({}),
): Promise<{ path: string; offsets: OffsetMap; writtenAt: number }> {
  await encodeCatalogAhead(trainer);
  const { copy, held, more } = await lock.run(async () => {
    const held = offsets();
    return { copy: await copyState(store, trainer, held, windows), held, more: sections() };
  });
  const path = await writeStoreCopy(copy.store, dir, { ...copy.extra, ...more });
  return { path, offsets: held, writtenAt: Date.now() };
}

/**
 * What pme_snapshot_age_seconds reports: seconds since the newest durable snapshot (written,
 * fsynced, renamed). That is the restored one's file time at first, then each one taken (`taken`
 * with takeSnapshot's `writtenAt`). With none yet (a fresh state directory) it counts from `since`,
 * the service's start: as far back as a crash would go, and it keeps climbing while snapshots
 * fail, so an alert on `> N` fires from a fresh start too (no gap, no NaN, no sentinel).
 */
export class SnapshotAge {
  #at: number;
  readonly #now: () => number;

  constructor(restoredAt: number | null, since = Date.now(), now: () => number = Date.now) {
    this.#at = restoredAt ?? since;
    this.#now = now;
  }

  taken(writtenAt: number): void {
    this.#at = Math.max(this.#at, writtenAt);
  }

  seconds(): number {
    return Math.max(0, (this.#now() - this.#at) / 1000);
  }
}

/** Copies of sections given as views (the controller's sketch goes on counting after the lock). */
function copies(sections: Record<string, Uint8Array>): Record<string, Uint8Array> {
  const out: Record<string, Uint8Array> = {};
  for (const [name, bytes] of Object.entries(sections)) out[name] = bytes.slice();
  return out;
}

function trainerSections(trainer: Trainer, offsets: OffsetMap): Record<string, Uint8Array | Float32Array> {
  const extra = exportTrainerState(trainer);
  extra[OFFSETS] = new TextEncoder().encode(JSON.stringify(offsets));
  return extra;
}

/**
 * The newest valid snapshot in `config.stateDir`, or a fresh store when there is none. First
 * removes what writes killed mid-way by earlier processes left there (removeStaleTemps).
 */
export async function restoreState(config: Config): Promise<RestoredState> {
  const removedTemps = (await removeStaleTemps(config.stateDir)).length;
  try {
    // The budget and the TTL are the operator's to change on a restart; the rest (ladder, seed,
    // init) is the snapshot's, or it would not continue the same model.
    const { budgetBytes, ttlMs } = storeOptions(config);
    const { store, extra, path, skipped } = await readSnapshot(config.stateDir, { budgetBytes, ttlMs });
    return {
      store,
      extra,
      writtenAt: (await stat(path)).mtimeMs,
      removedTemps,
      skipped: skipped.map((s) => ({ path: s.path, reason: s.error.message })),
    };
  } catch (error) {
    if (!isPmeError(error, 'PME_ERR_NOT_FOUND')) throw error;
    const store = new EmbeddingStore(storeOptions(config));
    return { store, extra: null, writtenAt: null, removedTemps, skipped: [] };
  }
}

/** Applies the trainer's part of a snapshot and returns the offsets it holds. */
export function applyRestored(trainer: Trainer, extra: Record<string, Uint8Array> | null): OffsetMap {
  if (extra === null) return {};
  importTrainerState(trainer, extra);
  return extra[OFFSETS] ? (JSON.parse(new TextDecoder().decode(extra[OFFSETS])) as OffsetMap) : {};
}

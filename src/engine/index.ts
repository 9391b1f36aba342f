/**
 * src/engine: learns from every event and answers reads.
 * - FmModel: factorization machine over the store's multi-size embeddings (hand-written
 *   forward, backward, Adagrad over typed arrays).
 * - Trainer: progressive validation, negatives, score / recommend.
 * - learnInSlices / startItemRefresh: training paced to share the event loop with serving.
 * - PmeController: hot-token search, pruning windows under the budget, capacity transfer.
 * - DeepFm: the FM plus an MLP over the field vectors, run through TensorFlow.js.
 * - initBackend / backendName: the TensorFlow.js backend for dense work.
 */
export { type BackendChoice, backendName, initBackend } from './backend.js';
export { DEEPFM_DEFAULTS, DeepFm, type DeepFmOptions, resolveDeepFmOptions } from './deepfm.js';
export {
  FM_DEFAULTS,
  FmModel,
  type FmOptions,
  logloss,
  type ModelStore,
  resolveFmOptions,
  sigmoid,
  type TokenId,
} from './fm.js';
export { histogramAuc, type MetricsSnapshot, ProgressiveMetrics } from './metrics.js';
export { PopularitySampler } from './negatives.js';
export {
  OFFLINE_METHODS,
  type OfflineOptions,
  type OfflineResult,
  offlineCommand,
  runOffline,
} from './offline.js';
export { ITEM_REFRESH_TICK_MS, learnInSlices, SLICE_MS, startItemRefresh } from './pacing.js';
export {
  PME_DEFAULTS,
  PmeController,
  type PmeOptions,
  type PmeStore,
  resolvePmeOptions,
  type WindowReport,
  type WindowTier,
} from './pme/controller.js';
export { chooseSizes, roundUpToLadder, TierLeastSquares } from './pme/prune.js';
export { DecayedCountMin, type SketchOptions } from './pme/sketch.js';
export {
  ChangeTracker,
  type PackedRecords,
  type ParamRecord,
  type PublishMarker,
  RECORDS_PER_PACK,
  ReplicaApplier,
  unpackRecords,
} from './replication.js';
export { encodeCatalogAhead, exportTrainerState, importTrainerState } from './state.js';
export {
  type Recommendation,
  type RecommendResult,
  resolveTrainerOptions,
  type TokenObserver,
  TRAINER_DEFAULTS,
  Trainer,
  type TrainerOptions,
  type TrainerStats,
  type TrainerStore,
} from './trainer.js';

/**
 * src/engine: learns from every event and answers reads.
 * - Trainer (trainer/): resolves events into tokens, progressive validation, negatives, the
 *   catalog, score / recommend.
 * - Model (model/): what the trainer learns with, picked by name (createModel): FmModel, the
 *   factorization machine over the store's multi-size embeddings (hand-written forward, backward,
 *   Adagrad over typed arrays, FTRL-Proximal for the linear weights if asked); DeepFm, the FM plus
 *   an MLP on TensorFlow.js; LogisticRegression.
 * - learnInSlices / startItemRefresh: training paced to share the event loop with serving.
 * - PmeController (pme/): hot-token search, pruning windows under the budget, capacity transfer.
 * - ChangeTracker / ReplicaApplier: what replicas need, as typed changes.
 * - initBackend / backendName: the TensorFlow.js backend for dense work.
 */
export { type BackendChoice, backendName, initBackend } from './backend.js';
export { type UnbudgetedMemory, unbudgetedMemory, unbudgetedTotal } from './memory.js';
export { histogramAuc, type MetricsSnapshot, ProgressiveMetrics } from './metrics.js';
export { DEEPFM_DEFAULTS, DeepFm, type DeepFmOptions, resolveDeepFmOptions } from './model/deepfm.js';
export {
  FM_DEFAULTS,
  FmModel,
  type FmOptions,
  linearOptimizerSlotsOf,
  resolveFmOptions,
} from './model/fm.js';
export {
  createModel,
  MODEL_KINDS,
  MODELS,
  type ModelKind,
  type ModelOptions,
  modelEntry,
} from './model/index.js';
export { LINEAR_OPTIMIZERS, type LinearOptimizer } from './model/linear-step.js';
export { LogisticRegression, type LrOptions } from './model/lr.js';
export { logloss, sigmoid } from './model/math.js';
export type { DenseParameters, Model, ModelStats, ModelStore, ModelTier, TokenId } from './model/model.js';
export { PopularitySampler } from './negatives.js';
export {
  OFFLINE_METHODS,
  type OfflineOptions,
  type OfflineResult,
  runOffline,
} from './offline.js';
export { ITEM_REFRESH_TICK_MS, learnInSlices, SLICE_MS, startItemRefresh } from './pacing.js';
export {
  type MemoryActions,
  memoryActions,
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
export { ChangeTracker, type ParamChanges, type PublishMarker, ReplicaApplier } from './replication.js';
export { encodeCatalogAhead, exportTrainerState, importTrainerState } from './state.js';
export {
  type Recommendation,
  type RecommendResult,
  resolveTrainerOptions,
  type TokenObserver,
  TRAINER_DEFAULTS,
  Trainer,
  type TrainerMemory,
  type TrainerOptions,
  type TrainerStats,
  type TrainerStore,
} from './trainer/index.js';

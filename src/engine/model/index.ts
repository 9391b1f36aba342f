/**
 * The models a trainer can run, and the one place that picks one by name (`--model`). A model is
 * a file beside this one implementing Model (model.ts); adding one takes that file and an entry
 * in MODELS.
 */
import { PmeError } from '../../errors.js';
import { DeepFm, type DeepFmOptions } from './deepfm.js';
import { FmModel, type FmOptions } from './fm.js';
import { LogisticRegression } from './lr.js';
import type { Model, ModelStore } from './model.js';

/** Options of every model, each taking what applies to it. */
export interface ModelOptions {
  /** Learning rates, L2, optimizer of the sparse part (every model has one). */
  fm: Partial<FmOptions>;
  /** The deep part of `deepfm`. */
  deepfm: Partial<Omit<DeepFmOptions, 'fm'>>;
}

interface ModelEntry {
  readonly summary: string;
  /** Whether tokens have vectors: without, the store need not hold rows (new tokens at size 0). */
  readonly vectors: boolean;
  create(store: ModelStore, options: Partial<ModelOptions>): Model | Promise<Model>;
}

export const MODELS = {
  fm: {
    summary: 'factorization machine over the multi-size embeddings (the default)',
    vectors: true,
    create: (store, o) => new FmModel(store, o.fm),
  },
  deepfm: {
    summary: 'the FM plus an MLP over the field vectors, on TensorFlow.js',
    vectors: true,
    create: (store, o) => DeepFm.create(store, { ...o.deepfm, fm: o.fm ?? {} }),
  },
  lr: {
    summary: 'logistic regression over the same tokens, no interactions (a baseline)',
    vectors: false,
    create: (store, o) => new LogisticRegression(store, o.fm),
  },
} as const satisfies Record<string, ModelEntry>;

export type ModelKind = keyof typeof MODELS;
export const MODEL_KINDS = Object.freeze(Object.keys(MODELS) as ModelKind[]);

/** The entry of `kind`; throws PME_ERR_CONFIG_INVALID naming the kinds there are. */
export function modelEntry(kind: string): ModelEntry {
  if (!Object.hasOwn(MODELS, kind))
    throw new PmeError(
      'PME_ERR_CONFIG_INVALID',
      `model must be one of ${MODEL_KINDS.join(', ')}, got "${kind}"`,
    );
  return MODELS[kind as ModelKind];
}

/** A model of `kind` over `store`. */
export async function createModel(
  kind: string,
  store: ModelStore,
  options: Partial<ModelOptions> = {},
): Promise<Model> {
  return await modelEntry(kind).create(store, options);
}

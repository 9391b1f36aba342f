/**
 * Plain logistic regression over the same tokens: z = b + Σ w_t, the FM without its interactions.
 * A baseline that says what the interactions add (and what hashed linear learners, the usual
 * alternative, reach). It learns only the store's linear weights and the bias, with the FM's
 * learning rate (scaled by the tokens of an event, rateTokens), L2 and optimizer options
 * (linearOptimizer included); its tokens have no vectors (zero vectors, no projections), so the
 * read path's split gives exactly b + Σ w as well.
 */

import { type FmOptions, resolveFmOptions } from './fm.js';
import {
  checkLinearSlots,
  type LinearStep,
  type LinearStepParams,
  linearEventRate,
  linearStepOf,
  linearStepParams,
} from './linear-step.js';
import { sigmoid } from './math.js';
import { type Model, ModelBase, type ModelStore, type Rows, type ScoreSink } from './model.js';

/** The FM options that apply to a linear model. */
export type LrOptions = Pick<
  FmOptions,
  | 'linearLearningRate'
  | 'rateTokens'
  | 'projectionLearningRate'
  | 'l2'
  | 'optimizer'
  | 'linearOptimizer'
  | 'ftrlBeta'
  | 'ftrlL1'
  | 'epsilon'
  | 'initialAccumulator'
  | 'maxTokens'
>;

export class LogisticRegression extends ModelBase implements Model {
  readonly kind = 'lr';
  readonly cadence = 'event';
  /** Its parameters are the store's linear weights (rows are never read). */
  readonly store: ModelStore;
  readonly options: Readonly<LrOptions>;
  /** None: no token has a vector. */
  readonly projections: readonly null[];
  readonly projectionAccumulators: readonly null[];
  readonly #step: LinearStep;
  readonly #linearParams: LinearStepParams;
  readonly #adagrad: boolean;

  constructor(store: ModelStore, options: Partial<LrOptions> = {}) {
    const o = resolveFmOptions(options);
    super(store.dim, o.maxTokens, o.initialAccumulator);
    this.options = o;
    this.store = store;
    this.projections = store.tiers.map(() => null);
    this.projectionAccumulators = this.projections;
    this.#adagrad = this.options.optimizer === 'adagrad';
    checkLinearSlots(store.options.linearOptimizerSlots, o.optimizer, o.linearOptimizer);
    this.#step = linearStepOf(o.optimizer, o.linearOptimizer);
    this.#linearParams = linearStepParams(o);
  }

  /** start + Σ w over ids[at .. at + n) (start: the bias, or 0 for the item side). */
  #logit(ids: Int32Array, n: number, at: number, start = this.bias): number {
    const linear = this.store.linear;
    let z = start;
    for (let k = 0; k < n; k++) z += linear[ids[at + k]];
    return z;
  }

  learn(rows: Rows, from: number, to: number, scores: ScoreSink): void {
    const o = this.options;
    const linear = this.store.linear;
    const acc = this.store.linearOptimizer;
    const step = this.#step;
    const linearParams = this.#linearParams;
    for (let r = from; r < to; r++) {
      const at = r * rows.stride;
      const n = rows.counts[r];
      const label = rows.labels[r];
      const p = sigmoid(this.#logit(rows.ids, n, at));
      scores.add(p, label);
      const g = p - label;
      this.stepBias(g, o.projectionLearningRate, o.epsilon, this.#adagrad);
      const rate = linearEventRate(linearParams.rate, linearParams.rateTokens, n);
      for (let k = 0; k < n; k++) step(linear, acc, rows.ids[at + k], g, linearParams, rate);
    }
  }

  endBatch(): void {}

  predictRows(rows: Rows, from: number, to: number, out: Float64Array): void {
    for (let r = from; r < to; r++) out[r] = sigmoid(this.#logit(rows.ids, rows.counts[r], r * rows.stride));
  }

  predict(ids: Int32Array, n: number, at = 0): number {
    return sigmoid(this.#logit(ids, n, at));
  }

  userSide(ids: Int32Array, n: number, sum: Float64Array): number {
    sum.fill(0);
    return this.#logit(ids, n, 0);
  }

  itemSide(ids: Int32Array, n: number, sum: Float64Array): number {
    sum.fill(0);
    return this.#logit(ids, n, 0, 0);
  }

  vectorOf(_id: number, out: Float32Array | Float64Array, at = 0): void {
    out.fill(0, at, at + this.dim);
  }

  stats(): { kind: string } {
    return { kind: this.kind };
  }
}

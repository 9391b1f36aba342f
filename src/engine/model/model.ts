/**
 * The model behind the trainer: the one interface the trainer, the read path, PME, snapshots and
 * replication talk to, and the rows the trainer hands it. Models live beside this file (fm.ts,
 * deepfm.ts, lr.ts); index.ts picks one by name.
 *
 * A model scores a set of tokens, ids in the EmbeddingStore whose linear weights and rows it reads
 * and learns, and its logit splits into a user side and an item side:
 *   z(U ∪ I) = userSide(U) + itemSide(I) + S_U · F_I
 * where S_U and F_I are sums of the tokens' D-space vectors v_t = e_t P_s (the token's row e_t in its
 * tier of size s, carried into the shared space by the tier's projection P_s: the identity at size
 * D, nothing at size 0). The read path relies on that split to sum a user once per request and
 * cost each item only its own size. A model whose tokens have no vectors (logistic regression) has
 * zero vectors; a model with more than the split (DeepFM's MLP) serves the split part.
 */
import type { TokenId } from '../../store/index.js';

export type { TokenId };

/** One tier of the store, as models read it (arrays are re-read every event: they grow). */
export interface ModelTier {
  readonly size: number;
  readonly params: Float32Array;
  readonly optimizer: Float32Array;
  readonly importance: Float32Array | null;
  /** Tokens in the tier. */
  readonly count: number;
}

/**
 * The part of the EmbeddingStore a model reads and writes. The store in src/store satisfies it;
 * stating it here keeps the math testable on its own and says exactly what a model touches.
 */
export interface ModelStore {
  readonly dim: number;
  readonly tiers: readonly ModelTier[];
  readonly tierOf: Uint8Array;
  readonly slotOf: Int32Array;
  readonly linear: Float32Array;
  /** The linear weights' optimizer state, `options.linearOptimizerSlots` floats per token. */
  readonly linearOptimizer: Float32Array;
  readonly options: { readonly linearOptimizerSlots: number };
}

/** Where a model reports the probability it gave each row before learning from it. */
export interface ScoreSink {
  add(p: number, label: number): void;
}

/**
 * Resolved events, written by the trainer: row r holds counts[r] token ids at ids[r·stride ..),
 * the field code of each token at the same place in `fields` (a name in `fieldNames`; 0 is the
 * user, 1 the item), and its label. Grown, never shrunk: a batch allocates only when it is the
 * largest yet.
 */
export class Rows {
  /** Most tokens a row holds. */
  readonly stride: number;
  /** Field names by code, shared with the trainer (it appends a name when it first meets it). */
  readonly fieldNames: readonly string[];
  ids = new Int32Array(0);
  fields = new Int32Array(0);
  counts = new Int32Array(0);
  labels = new Float64Array(0);
  /** Rows in use. */
  length = 0;

  constructor(stride: number, fieldNames: readonly string[], rows = 1) {
    this.stride = stride;
    this.fieldNames = fieldNames;
    this.reserve(rows);
  }

  /** Room for `rows` rows (kept when growing). */
  reserve(rows: number): void {
    if (this.counts.length >= rows) return;
    const n = Math.max(rows, this.counts.length * 2);
    const grow = <T extends Int32Array | Float64Array>(a: T, make: (n: number) => T, width: number): T => {
      const b = make(n * width);
      b.set(a);
      return b;
    };
    this.ids = grow(this.ids, (k) => new Int32Array(k), this.stride);
    this.fields = grow(this.fields, (k) => new Int32Array(k), this.stride);
    this.counts = grow(this.counts, (k) => new Int32Array(k), 1);
    this.labels = grow(this.labels, (k) => new Float64Array(k), 1);
  }
}

/**
 * The dense parameters every token shares, as snapshots and the parameter topic carry them. A
 * replica or a restore writes them in place and bumps `denseVersion`.
 */
export interface DenseParameters {
  /** Global bias b. */
  bias: number;
  /** Its Adagrad accumulator. */
  biasAccumulator: number;
  /** P_s per tier index, row-major s × D; null where a tier has none (size 0 or D, or a model
   *  without vectors): the read path then takes the first s dimensions. */
  readonly projections: readonly (Float32Array | null)[];
  /** Adagrad accumulators of the projections, same layout. */
  readonly projectionAccumulators: readonly (Float32Array | null)[];
  /** Incremented whenever a dense parameter changes (the item-only terms of reads go stale). */
  denseVersion: number;
}

/**
 * What every model holds besides its own parameters: D, the most tokens a row carries, and the
 * global bias b with its Adagrad accumulator and the version readers watch for dense changes. The
 * bias is dense but one scalar, so it steps per event, at the dense rate.
 */
export abstract class ModelBase {
  readonly dim: number;
  readonly maxTokens: number;
  bias = 0;
  biasAccumulator: number;
  denseVersion = 0;

  constructor(dim: number, maxTokens: number, initialAccumulator: number) {
    this.dim = dim;
    this.maxTokens = maxTokens;
    this.biasAccumulator = initialAccumulator;
  }

  /** One step on the event's gradient g (Adagrad, or plain SGD). */
  protected stepBias(g: number, rate: number, epsilon: number, adagrad: boolean): void {
    if (adagrad) {
      this.biasAccumulator += g * g;
      this.bias -= (rate * g) / (Math.sqrt(this.biasAccumulator) + epsilon);
    } else this.bias -= rate * g;
  }
}

/** What a model says of itself in the trainer's stats and logs. */
export interface ModelStats {
  kind: string;
  [detail: string]: unknown;
}

export interface Model extends DenseParameters {
  /** The name index.ts picks it by. */
  readonly kind: string;
  /** D, the size of the shared space. */
  readonly dim: number;
  /** Most tokens one row may carry. */
  readonly maxTokens: number;
  /**
   * When the trainer hands rows over. 'event': each row as soon as it is resolved, so every event
   * is learned before the next one is resolved. 'batch': all rows of a mini-batch at its end (a
   * model that runs dense work once per batch).
   */
  readonly cadence: 'event' | 'batch';

  /** Scores rows [from, to) one by one, each before learning from it (progressive validation),
   *  reporting each probability to `scores`; steps the per-token parameters. */
  learn(rows: Rows, from: number, to: number, scores: ScoreSink): void;
  /** End of a mini-batch: the dense parameters step. */
  endBatch(): void;
  /** Probabilities of rows [from, to) into out[from ..), without learning. */
  predictRows(rows: Rows, from: number, to: number, out: Float64Array): void;

  /** Probability of tokens ids[at .. at + n) without side effects. */
  predict(ids: Int32Array, n: number, at?: number): number;
  /** b + Σ w + ½(|S|² − Σ|v|²) of tokens ids[0 .. n), with S = Σ v written to `sum` (length D). */
  userSide(ids: Int32Array, n: number, sum: Float64Array): number;
  /** Σ w + ½(|F|² − Σ|v|²) of tokens ids[0 .. n), with F = Σ v written to `sum` (length D). */
  itemSide(ids: Int32Array, n: number, sum: Float64Array): number;
  /** The D-space vector v_t of one token into out[at .. at + D) (zeros for size 0). */
  vectorOf(id: TokenId, out: Float32Array | Float64Array, at?: number): void;

  stats(): ModelStats;
  /** Frees what the model holds outside the JavaScript heap (DeepFM's tensors), if anything. */
  dispose?(): void;
}

/**
 * start + Σ w + ½(|Σv|² − Σ|v|²) of ids[0 .. n) through vectorOf, Σ v into `sum`: either side of
 * a model whose logit is the FM's (start: the bias for the user side; scratch: one D-vector).
 */
export function fmSide(
  model: Pick<Model, 'dim' | 'vectorOf'>,
  linear: Float32Array,
  ids: Int32Array,
  n: number,
  sum: Float64Array,
  scratch: Float64Array,
  start: number,
): number {
  const D = model.dim;
  sum.fill(0);
  let z = start;
  let self = 0;
  for (let k = 0; k < n; k++) {
    const id = ids[k];
    z += linear[id];
    model.vectorOf(id, scratch);
    for (let d = 0; d < D; d++) {
      sum[d] += scratch[d];
      self += scratch[d] * scratch[d];
    }
  }
  let sq = 0;
  for (let d = 0; d < D; d++) sq += sum[d] * sum[d];
  return z + 0.5 * (sq - self);
}

/**
 * DeepFM: the FM of fm.ts (its sparse side, unchanged) plus a deep part, an MLP over the
 * concatenation of the row's field vectors in D-space, run through TensorFlow.js on the backend
 * chosen at start (backend.ts). Prediction = sigmoid(FM logit + MLP logit), one logloss for both.
 *
 * It learns a mini-batch at once (cadence 'batch'): the trainer resolves every event and negative
 * of the batch into rows, then
 * 1. the rows' field vectors v_t = e_t P_s are gathered on the JS side into a dense rows × (F·D)
 *    input, slots in a fixed order (user, item, then the other fields by name; a missing field is
 *    zeros);
 * 2. one tfjs forward of the MLP gives the deep logits, with the weights as before the batch;
 * 3. row by row: FM forward, p = sigmoid(z_fm + z_mlp) goes to the metrics (progressive
 *    validation: scored before learned from), then FM backward on the joint residual p − y;
 * 4. the MLP's backward (tfjs ops, written out), from those residuals, steps it (Adam) and gives the
 *    gradient w.r.t. each field vector, which is carried into the token's row through P_s (and
 *    into P_s) by hand, with the FM's Adagrad state and importance.
 * So the embeddings are shared and trained by both parts, as in DeepFM; the deep share of a row's
 * gradient arrives at the end of the batch, computed from the vectors at its start. Gathering on
 * the JS side keeps tfjs away from gather's gradient (UnsortedSegmentSum, missing on wasm) and
 * from the store's growing slabs.
 *
 * Serving reads (the split forward: userSide, itemSide, vectorOf) are the FM part's alone; `predictRows`
 * gives the exact DeepFM probability.
 */
import { PmeError } from '../../errors.js';
import { createRandom } from '../../util/random.js';
import { type BackendChoice, initBackend, type Tf } from '../backend.js';
import { FmModel, type FmOptions, stepProjection } from './fm.js';
import { sigmoid } from './math.js';
import type { Model, ModelStats, ModelStore, Rows, ScoreSink, TokenId } from './model.js';

/** DeepFM options. Validated once by `resolveDeepFmOptions` and frozen. */
export interface DeepFmOptions {
  /** Widths of the hidden ReLU layers, input side first. Default [64, 32]: with D = 64 and four
   *  fields that is 256·64 + 64·32 + 32 ≈ 18 k weights, about 3·18 k multiply-adds per event. */
  hidden: readonly number[];
  /** Adam step size of the MLP weights. Default 1e-3. */
  learningRate: number;
  /** L2 on the MLP weights (added to their gradient each batch). Default 0. */
  l2: number;
  /** Fields of the deep input after user and item, in this order. Default null: the sorted names
   *  of the fields the trainer knows at the first batch (the catalog's and the first batch's),
   *  fixed from then on (the MLP's input width is fixed). Fields outside the list still reach the FM. */
  fields: readonly string[] | null;
  /** Whether the deep part's gradient w.r.t. each field vector trains the token rows and
   *  projections too (DeepFM proper). Default true; false: the rows are learned by the FM part
   *  alone and the MLP reads them as inputs (saves the scatter, about F·D·s work per event). */
  embeddingGradient: boolean;
  /** Seed of the MLP's initial weights. Default 1. */
  seed: number;
  /** Options of the FM part. */
  fm: Partial<FmOptions>;
}

export const DEEPFM_DEFAULTS: Readonly<Omit<DeepFmOptions, 'fm'>> = Object.freeze({
  hidden: Object.freeze([64, 32]),
  learningRate: 1e-3,
  l2: 0,
  fields: null,
  embeddingGradient: true,
  seed: 1,
});

function invalid(message: string): PmeError {
  return new PmeError('PME_ERR_CONFIG_INVALID', `deepfm: ${message}`);
}

/** Merges defaults, validates and freezes. Throws PME_ERR_CONFIG_INVALID. */
export function resolveDeepFmOptions(options: Partial<DeepFmOptions> = {}): Readonly<DeepFmOptions> {
  const o: DeepFmOptions = { ...DEEPFM_DEFAULTS, fm: {}, ...options };
  if (!Array.isArray(o.hidden) || o.hidden.length > 8)
    throw invalid(`hidden must be a list of at most 8 layer widths, got ${String(o.hidden)}`);
  for (const w of o.hidden)
    if (!Number.isInteger(w) || w < 1 || w > 4096)
      throw invalid(`hidden layer widths must be integers in [1, 4096], got ${w}`);
  if (!(Number.isFinite(o.learningRate) && o.learningRate > 0))
    throw invalid(`learningRate must be a positive number, got ${o.learningRate}`);
  if (!(Number.isFinite(o.l2) && o.l2 >= 0)) throw invalid(`l2 must be a number >= 0, got ${o.l2}`);
  if (o.fields !== null) {
    if (!Array.isArray(o.fields)) throw invalid('fields must be a list of field names or null');
    const seen = new Set<string>();
    for (const f of o.fields) {
      if (typeof f !== 'string' || f === '' || f === 'user' || f === 'item' || seen.has(f))
        throw invalid(`fields must be distinct names other than user and item, got ${JSON.stringify(f)}`);
      seen.add(f);
    }
  }
  if (typeof o.embeddingGradient !== 'boolean') throw invalid('embeddingGradient must be a boolean');
  if (!Number.isInteger(o.seed)) throw invalid(`seed must be an integer, got ${o.seed}`);
  return Object.freeze({
    ...o,
    hidden: Object.freeze([...o.hidden]),
    fields: o.fields === null ? null : Object.freeze([...o.fields]),
  });
}

/** Highest |logit| recovered from an FM probability (float64 sigmoid saturates near 37). */
const MAX_LOGIT = 30;

function logit(p: number): number {
  if (p <= 0) return -MAX_LOGIT;
  if (p >= 1) return MAX_LOGIT;
  const z = Math.log(p / (1 - p));
  return Math.min(MAX_LOGIT, Math.max(-MAX_LOGIT, z));
}

export class DeepFm implements Model {
  readonly kind = 'deepfm';
  readonly cadence = 'batch';
  readonly store: ModelStore;
  readonly options: Readonly<DeepFmOptions>;
  /** The FM part: the sparse side, and what serving reads. */
  readonly fm: FmModel;
  /** The TensorFlow.js backend the MLP runs on. */
  readonly backend: BackendChoice;
  readonly dim: number;
  readonly maxTokens: number;
  readonly #tf: Tf;

  // Deep input layout, fixed by the first batch (or the `fields` option).
  #slotNames: string[] | null = null;
  readonly #slotOf = new Map<string, number>();
  #F = 0;
  /** Deep slot of each field code of the rows (-1: outside the deep input), filled as codes come. */
  #codeSlot = new Int32Array(0);
  #codesKnown = 0;
  // MLP: [W0, b0, W1, b1, ..., Wout, bout] as tfjs variables, and their Adam.
  #weights: Tf[] = [];
  #optimizer: Tf = null;

  // Per-batch buffers (one row per event or negative), grown when a batch needs more.
  #capacity = 0;
  /** Token id in each (row, slot), -1 for none. */
  #slots = new Int32Array(0);
  #x = new Float32Array(0);
  #residual = new Float32Array(0);
  /** Gradients of the projections from the deep part, per tier (null: no projection). */
  readonly #projectionGrads: (Float64Array | null)[];
  readonly #projectionTouched: Uint8Array;

  /** Creates the model after choosing the TensorFlow.js backend (once per process). */
  static async create(store: ModelStore, options: Partial<DeepFmOptions> = {}): Promise<DeepFm> {
    return new DeepFm(store, await initBackend(), options);
  }

  constructor(store: ModelStore, backend: BackendChoice, options: Partial<DeepFmOptions> = {}) {
    const o = resolveDeepFmOptions(options);
    this.options = o;
    this.store = store;
    this.fm = new FmModel(store, o.fm);
    this.backend = backend;
    this.#tf = backend.tf;
    this.dim = store.dim;
    this.maxTokens = this.fm.maxTokens;
    this.#projectionGrads = this.fm.projections.map((P) => (P === null ? null : new Float64Array(P.length)));
    this.#projectionTouched = new Uint8Array(this.#projectionGrads.length);
    if (o.fields !== null) this.#fixSlots(o.fields);
  }

  // The dense parameters are the FM part's (the MLP's are not snapshotted or published).
  get bias(): number {
    return this.fm.bias;
  }
  set bias(value: number) {
    this.fm.bias = value;
  }
  get biasAccumulator(): number {
    return this.fm.biasAccumulator;
  }
  set biasAccumulator(value: number) {
    this.fm.biasAccumulator = value;
  }
  get denseVersion(): number {
    return this.fm.denseVersion;
  }
  set denseVersion(value: number) {
    this.fm.denseVersion = value;
  }
  get projections(): readonly (Float32Array | null)[] {
    return this.fm.projections;
  }
  get projectionAccumulators(): readonly (Float32Array | null)[] {
    return this.fm.projectionAccumulators;
  }

  /** Names of the deep input's slots in order (user, item, fields), null before the first batch. */
  get slots(): readonly string[] | null {
    return this.#slotNames;
  }

  /** Width of the MLP's input (slots × D), 0 before the first batch. */
  get inputWidth(): number {
    return this.#F * this.dim;
  }

  #fixSlots(fields: readonly string[]): void {
    this.#slotNames = ['user', 'item', ...fields];
    this.#slotNames.forEach((name, i) => {
      this.#slotOf.set(name, i);
    });
    this.#F = this.#slotNames.length;
    this.#buildMlp();
  }

  /** The deep fields when none were given: every field the trainer knows so far, by name. */
  #discoverFields(rows: Rows): string[] {
    const names = new Set(rows.fieldNames);
    names.delete('user');
    names.delete('item');
    return [...names].sort();
  }

  /** He-initialised hidden layers from the seed (same weights on every backend); the output
   *  layer starts at zero, so a fresh DeepFM scores exactly as its FM. */
  #buildMlp(): void {
    const tf = this.#tf;
    const random = createRandom(this.options.seed);
    const widths = [this.#F * this.dim, ...this.options.hidden, 1];
    for (let l = 0; l + 1 < widths.length; l++) {
      const fanIn = widths[l];
      const fanOut = widths[l + 1];
      const w = new Float32Array(fanIn * fanOut);
      if (l + 2 < widths.length) {
        const std = Math.sqrt(2 / fanIn);
        for (let i = 0; i < w.length; i++) w[i] = random.normal() * std;
      }
      this.#weights.push(tf.variable(tf.tensor2d(w, [fanIn, fanOut])));
      this.#weights.push(tf.variable(tf.zeros([fanOut])));
    }
    this.#optimizer = tf.train.adam(this.options.learningRate);
  }

  /** The MLP: ReLU hidden layers, linear output; rows × 1 logits. */
  #forward(x: Tf, w: readonly Tf[]): Tf {
    const tf = this.#tf;
    let h = x;
    const last = w.length - 2;
    for (let l = 0; l < last; l += 2) h = tf.relu(h.matMul(w[l]).add(w[l + 1]));
    return h.matMul(w[last]).add(w[last + 1]);
  }

  /** Forward keeping what the backward needs: [x, h1, .., hL, z]. */
  #forwardKeep(x: Tf): Tf[] {
    const tf = this.#tf;
    const w = this.#weights;
    const out = [x];
    let h = x;
    const last = w.length - 2;
    for (let l = 0; l < last; l += 2) {
      h = tf.relu(h.matMul(w[l]).add(w[l + 1]));
      out.push(h);
    }
    out.push(h.matMul(w[last]).add(w[last + 1]));
    return out;
  }

  /**
   * Backward of the MLP by hand from the residuals r = ∂L/∂z: [∂L/∂x or null, ∂W0, ∂b0, ...].
   * Written out rather than taped (tf.grads) because the taped gradient of matMul multiplies by
   * transposed operands, which the wasm backend runs ~10× slower than an explicit transpose
   * followed by a plain matMul (measured: 22 ms against 1.7 ms per 256-row batch, D = 64, 4 fields).
   */
  #backward(acts: readonly Tf[], r: Tf, wantInput: boolean): Tf[] {
    const tf = this.#tf;
    const w = this.#weights;
    const layers = w.length / 2;
    const grads: Tf[] = new Array(w.length + 1).fill(null);
    let d = r;
    for (let l = layers - 1; l >= 0; l--) {
      const input = acts[l];
      grads[1 + 2 * l] = tf.matMul(tf.transpose(input), d);
      grads[2 + 2 * l] = d.sum(0);
      if (l > 0) d = tf.matMul(d, tf.transpose(w[2 * l])).mul(tf.step(input));
      else if (wantInput) grads[0] = tf.matMul(d, tf.transpose(w[0]));
    }
    return grads;
  }

  #ensure(rows: number): void {
    if (rows <= this.#capacity) return;
    const cap = Math.max(rows, this.#capacity * 2, 64);
    this.#capacity = cap;
    this.#slots = new Int32Array(cap * this.#F);
    this.#x = new Float32Array(cap * this.#F * this.dim);
    this.#residual = new Float32Array(cap);
  }

  /** The deep slot of field code `code` (names are appended to rows.fieldNames as met). */
  #slotOfCode(rows: Rows, code: number): number {
    if (code >= this.#codesKnown) {
      const names = rows.fieldNames;
      if (this.#codeSlot.length < names.length) {
        const grown = new Int32Array(Math.max(names.length, 2 * this.#codeSlot.length));
        grown.set(this.#codeSlot);
        this.#codeSlot = grown;
      }
      for (let c = this.#codesKnown; c < names.length; c++)
        this.#codeSlot[c] = this.#slotOf.get(names[c]) ?? -1;
      this.#codesKnown = names.length;
    }
    return this.#codeSlot[code];
  }

  /** Each row's token per deep slot (rows [from, to) at buffer rows 0 ..), -1 where none. */
  #assignSlots(rows: Rows, from: number, to: number): void {
    const F = this.#F;
    const slots = this.#slots;
    const stride = rows.stride;
    slots.fill(-1, 0, (to - from) * F);
    for (let r = from; r < to; r++) {
      const at = r * stride;
      const out = (r - from) * F;
      for (let k = 0, n = rows.counts[r]; k < n; k++) {
        const slot = this.#slotOfCode(rows, rows.fields[at + k]);
        if (slot >= 0) slots[out + slot] = rows.ids[at + k];
      }
    }
  }

  /** The dense deep input of `count` rows: each slot's vector in D-space (zeros for a missing field). */
  #gather(count: number): void {
    const D = this.dim;
    const x = this.#x;
    const slots = this.#slots;
    const fm = this.fm;
    for (let j = 0, end = count * this.#F; j < end; j++) {
      const id = slots[j];
      if (id < 0) x.fill(0, j * D, (j + 1) * D);
      else fm.vectorOf(id, x, j * D);
    }
  }

  /**
   * Learns rows [from, to) (see the file comment): each is scored before it is learned from.
   * Synchronous: the tfjs backends in use all read tensors back synchronously.
   */
  learn(rows: Rows, from: number, to: number, scores: ScoreSink): void {
    const count = to - from;
    if (count <= 0) return;
    if (this.#slotNames === null) this.#fixSlots(this.#discoverFields(rows));
    this.#ensure(count);
    this.#assignSlots(rows, from, to);
    this.#gather(count);
    const tf = this.#tf;
    const width = this.#F * this.dim;
    const wantInput = this.options.embeddingGradient;
    const x = tf.tensor2d(this.#x.subarray(0, count * width), [count, width]);
    const acts: Tf[] = tf.tidy(() => this.#forwardKeep(x));
    this.#stepFm(rows, from, to, acts[acts.length - 1].dataSync() as Float32Array, scores);
    const l2 = this.options.l2;
    const grads: Tf[] = tf.tidy(() => {
      const r = tf.tensor2d(this.#residual.subarray(0, count), [count, 1]);
      const g = this.#backward(acts, r, wantInput);
      if (l2 > 0)
        for (let i = 0; i < this.#weights.length; i++) g[i + 1] = g[i + 1].add(this.#weights[i].mul(l2));
      return g.filter((t) => t !== null);
    });
    if (wantInput) this.#scatter(count, grads[0].dataSync() as Float32Array);
    const named: Record<string, Tf> = {};
    const at = wantInput ? 1 : 0;
    for (let i = 0; i < this.#weights.length; i++) named[this.#weights[i].name] = grads[at + i];
    this.#optimizer.applyGradients(named);
    tf.dispose([...acts, ...grads]);
  }

  endBatch(): void {
    this.fm.flush();
  }

  /**
   * Given the deep logits of every row (MLP as of the batch start): scores each row
   * (FM now + MLP as of the batch start), reports it, and steps the FM on the joint residual.
   * FmModel.backward(label) steps on (p_fm − label); passing y + p_fm − p makes that p − y.
   */
  #stepFm(rows: Rows, from: number, to: number, deep: Float32Array, scores: ScoreSink): void {
    const fm = this.fm;
    const residual = this.#residual;
    for (let r = from; r < to; r++) {
      const pFm = fm.forward(rows.ids, rows.counts[r], r * rows.stride);
      const p = sigmoid(logit(pFm) + deep[r - from]);
      const y = rows.labels[r];
      scores.add(p, y);
      fm.backward(y + pFm - p);
      residual[r - from] = p - y;
    }
  }

  /**
   * Carries the deep part's gradient w.r.t. each slot vector v = e P_s into the row e (P_s g)
   * and into P_s (e ⊗ g), with the FM's optimizer, L2 and importance rules.
   */
  #scatter(count: number, dx: Float32Array): void {
    const store = this.store;
    const fm = this.fm;
    const o = fm.options;
    const D = this.dim;
    const slots = this.#slots;
    const tiers = store.tiers;
    const lr = o.learningRate;
    const l2 = o.l2;
    const eps = o.epsilon;
    const adagrad = o.optimizer === 'adagrad';
    for (let j = 0, end = count * this.#F; j < end; j++) {
      const id = slots[j];
      if (id < 0) continue;
      const ti = store.tierOf[id];
      const tier = tiers[ti];
      const s = tier.size;
      if (s === 0) continue;
      const e = tier.params;
      const opt = tier.optimizer;
      const off = store.slotOf[id] * s;
      const at = j * D;
      // Full size, or a nested tier (the FM's projection 'nested'): the row is its vector's first
      // s dims, stepped as they are. Only the tier at D keeps importances.
      const P = s === D ? null : fm.projections[ti];
      if (P === null) {
        const imp = o.importance ? tier.importance : null;
        for (let d = 0; d < s; d++) {
          const x = e[off + d];
          const g = dx[at + d];
          if (imp !== null) imp[off + d] += Math.abs(x * g);
          const gr = g + l2 * x;
          if (adagrad) {
            const acc = opt[off + d] + gr * gr;
            opt[off + d] = acc;
            e[off + d] = x - (lr * gr) / (Math.sqrt(acc) + eps);
          } else e[off + d] = x - lr * gr;
        }
        continue;
      }
      const dP = this.#projectionGrads[ti]!;
      this.#projectionTouched[ti] = 1;
      for (let i = 0; i < s; i++) {
        const row = i * D;
        const x = e[off + i];
        let gi = 0;
        for (let d = 0; d < D; d++) {
          const g = dx[at + d];
          gi += P[row + d] * g;
          dP[row + d] += x * g;
        }
        const gr = gi + l2 * x;
        if (adagrad) {
          const acc = opt[off + i] + gr * gr;
          opt[off + i] = acc;
          e[off + i] = x - (lr * gr) / (Math.sqrt(acc) + eps);
        } else e[off + i] = x - lr * gr;
      }
    }
    this.#stepProjections();
  }

  /** One Adagrad step of the projections on the deep gradient, as FmModel.flush does for its own. */
  #stepProjections(): void {
    const fm = this.fm;
    let any = false;
    for (let ti = 0; ti < this.#projectionTouched.length; ti++) {
      if (this.#projectionTouched[ti] === 0) continue;
      this.#projectionTouched[ti] = 0;
      any = true;
      stepProjection(
        fm.projections[ti]!,
        fm.projectionAccumulators[ti]!,
        this.#projectionGrads[ti]!,
        fm.options,
      );
    }
    if (any) fm.denseVersion++;
  }

  /** DeepFM probabilities of rows [from, to): one tfjs forward for all of them (FM only before the
   *  deep input is fixed). */
  predictRows(rows: Rows, from: number, to: number, out: Float64Array): void {
    const count = to - from;
    const fm = this.fm;
    for (let r = from; r < to; r++) out[r] = fm.forward(rows.ids, rows.counts[r], r * rows.stride);
    if (count <= 0 || this.#slotNames === null) return;
    this.#ensure(count);
    this.#assignSlots(rows, from, to);
    this.#gather(count);
    const tf = this.#tf;
    const width = this.#F * this.dim;
    // Read back outside the tidy: dataSync inside tf.tidy is ~100× slower on wasm (bench/train.ts).
    const z = tf.tidy(() =>
      this.#forward(tf.tensor2d(this.#x.subarray(0, count * width), [count, width]), this.#weights),
    );
    const deep = z.dataSync() as Float32Array;
    z.dispose();
    for (let r = from; r < to; r++) out[r] = sigmoid(logit(out[r]) + deep[r - from]);
  }

  predict(ids: Int32Array, n: number, at = 0): number {
    return this.fm.predict(ids, n, at);
  }

  userSide(ids: Int32Array, n: number, sum: Float64Array): number {
    return this.fm.userSide(ids, n, sum);
  }

  itemSide(ids: Int32Array, n: number, sum: Float64Array): number {
    return this.fm.itemSide(ids, n, sum);
  }

  vectorOf(id: TokenId, out: Float32Array | Float64Array, at = 0): void {
    this.fm.vectorOf(id, out, at);
  }

  stats(): ModelStats {
    return {
      kind: this.kind,
      backend: this.backend.name,
      slots: this.#slotNames,
      inputWidth: this.inputWidth,
    };
  }

  /** Frees the MLP's tensors (weights, optimizer state). */
  dispose(): void {
    this.#tf.dispose(this.#weights);
    this.#weights = [];
    this.#optimizer?.dispose();
    this.#optimizer = null;
  }
}

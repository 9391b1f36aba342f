/**
 * DeepFM: the FM of fm.ts (sparse side, hand-written, unchanged) plus a deep part, an MLP over the
 * concatenation of the event's field vectors in D-space, run through TensorFlow.js on the backend
 * chosen at start (backend.ts). Prediction = sigmoid(FM logit + MLP logit), one logloss for both.
 *
 * One mini-batch:
 * 1. every event (and its negatives) is resolved in the store;
 * 2. its field vectors v_t = e_t P_s are gathered on the JS side into a dense rows × (F·D) input,
 *    slots in a fixed order (user, item, then the other fields by name; a missing field is zeros);
 * 3. one tfjs forward of the MLP gives the deep logits, with the weights as before the batch;
 * 4. event by event: FM forward, p = sigmoid(z_fm + z_mlp) goes to the metrics (progressive
 *    validation: scored before learned from), then FM backward on the joint residual p − y;
 * 5. the MLP's backward (tfjs ops, written out), from those residuals, steps it (Adam) and gives the
 *    gradient w.r.t. each field vector, which is carried into the token's row through P_s (and
 *    into P_s) by hand, with the FM's Adagrad state and importance.
 * So the embeddings are shared and trained by both parts, as in DeepFM; the deep share of a row's
 * gradient arrives at the end of the batch, computed from the vectors at its start. Gathering on
 * the JS side keeps tfjs away from gather's gradient (UnsortedSegmentSum, missing on wasm) and
 * from the store's growing slabs.
 *
 * Serving reads (Trainer.score / recommend) stay FM-only: `trainer` is the FM trainer whose model,
 * metrics and catalog this class shares, and the PME controller attaches to it as usual.
 */
import type { CatalogItem, Interaction } from '../data/event.js';
import { PmeError } from '../errors.js';
import { type Clock, systemClock } from '../util/clock.js';
import { createRandom, type Random } from '../util/random.js';
import { type BackendChoice, initBackend, type Tf } from './backend.js';
import { type FmModel, sigmoid, stepProjection } from './fm.js';
import type { ProgressiveMetrics } from './metrics.js';
import { PopularitySampler } from './negatives.js';
import { Trainer, type TrainerOptions, type TrainerStats, type TrainerStore } from './trainer.js';

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
   *  of the catalog's and the first batch's fields, fixed from then on (the MLP's input width is
   *  fixed). Fields outside the list still reach the FM. */
  fields: readonly string[] | null;
  /** Whether the deep part's gradient w.r.t. each field vector trains the token rows and
   *  projections too (DeepFM proper). Default true; false: the rows are learned by the FM part
   *  alone and the MLP reads them as inputs (saves the scatter, about F·D·s work per event). */
  embeddingGradient: boolean;
  /** Seed of the MLP's initial weights. Default 1 (negatives use the trainer's seed). */
  seed: number;
  /** Options of the FM trainer (FM model, negatives, metrics, clock, catalog, observer). */
  trainer: Partial<TrainerOptions>;
}

export const DEEPFM_DEFAULTS: Readonly<Omit<DeepFmOptions, 'trainer'>> = Object.freeze({
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
  const o: DeepFmOptions = { ...DEEPFM_DEFAULTS, trainer: {}, ...options };
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

/** An item as the deep trainer sees it: its token key, catalog fields and their deep slots. */
interface DeepItem {
  readonly index: number;
  readonly key: string;
  fieldKeys: string[];
  fieldNames: Set<string>;
  /** Deep slot of each catalog field (parallel to fieldKeys), -1 outside the deep input. */
  fieldSlots: Int32Array;
}

/** Highest |logit| recovered from an FM probability (float64 sigmoid saturates near 37). */
const MAX_LOGIT = 30;

function logit(p: number): number {
  if (p <= 0) return -MAX_LOGIT;
  if (p >= 1) return MAX_LOGIT;
  const z = Math.log(p / (1 - p));
  return Math.min(MAX_LOGIT, Math.max(-MAX_LOGIT, z));
}

export class DeepFm {
  readonly store: TrainerStore;
  readonly options: Readonly<DeepFmOptions>;
  /** The FM trainer whose model, metrics and catalog are shared (serving reads, PME attach). */
  readonly trainer: Trainer;
  readonly model: FmModel;
  readonly metrics: ProgressiveMetrics;
  /** The TensorFlow.js backend the MLP runs on. */
  readonly backend: BackendChoice;
  readonly dim: number;
  readonly #tf: Tf;
  readonly #clock: Clock;
  readonly #random: Random;
  readonly #items = new Map<string, DeepItem>();
  readonly #itemList: DeepItem[] = [];
  readonly #popularity: PopularitySampler;
  readonly #negatives: number;
  /** Most tokens per event (the FM's scratch size). */
  readonly #maxTokens: number;

  // Deep input layout, fixed by the first batch (or the `fields` option).
  #slotNames: string[] | null = null;
  readonly #slotOf = new Map<string, number>();
  #F = 0;
  // MLP: [W0, b0, W1, b1, ..., Wout, bout] as tfjs variables, and their Adam.
  #weights: Tf[] = [];
  #optimizer: Tf = null;

  // Per-batch buffers (rows = events plus negatives), grown when a batch needs more.
  #capacity = 0;
  #ids = new Int32Array(0);
  #rowViews: Int32Array[] = [];
  #counts = new Int32Array(0);
  #slots = new Int32Array(0);
  #labels = new Float32Array(0);
  #x = new Float32Array(0);
  #residual = new Float32Array(0);
  #rows = 0;
  // The current event's user-side deep slots, copied into its negatives' rows.
  readonly #userSlot: Int32Array;
  readonly #userSlotId: Int32Array;
  #userSlots = 0;
  /** Row of the event whose negatives are being resolved. */
  #eventRow = 0;
  /** Gradients of the projections from the deep part, per tier (null: no projection). */
  readonly #projectionGrads: (Float64Array | null)[];
  readonly #projectionTouched: Uint8Array;

  #learned = 0;
  #negativesDrawn = 0;
  #busyMs = 0;

  /** Creates the trainer after choosing the TensorFlow.js backend (once per process). */
  static async create(store: TrainerStore, options: Partial<DeepFmOptions> = {}): Promise<DeepFm> {
    return new DeepFm(store, await initBackend(), options);
  }

  constructor(store: TrainerStore, backend: BackendChoice, options: Partial<DeepFmOptions> = {}) {
    const o = resolveDeepFmOptions(options);
    // The catalog may be a one-shot iterable: both this class and the FM trainer read it.
    const catalog = o.trainer.catalog == null ? [] : [...o.trainer.catalog];
    this.trainer = new Trainer(store, { ...o.trainer, catalog });
    this.options = o;
    this.store = store;
    this.backend = backend;
    this.#tf = backend.tf;
    this.model = this.trainer.model;
    this.metrics = this.trainer.metrics;
    this.dim = store.dim;
    this.#clock = this.trainer.options.clock ?? systemClock;
    this.#random = createRandom(this.trainer.options.seed);
    this.#popularity = new PopularitySampler(this.trainer.options.negativeExponent);
    this.#negatives = this.trainer.options.negatives;
    this.#maxTokens = this.model.options.maxTokens;
    this.#userSlot = new Int32Array(this.#maxTokens);
    this.#userSlotId = new Int32Array(this.#maxTokens);
    this.#projectionGrads = this.model.projections.map((P) =>
      P === null ? null : new Float64Array(P.length),
    );
    this.#projectionTouched = new Uint8Array(this.#projectionGrads.length);
    if (o.fields !== null) this.#fixSlots(o.fields);
    for (const item of catalog) this.#upsert(item);
  }

  /** Names of the deep input's slots in order (user, item, fields), null before the first batch. */
  get slots(): readonly string[] | null {
    return this.#slotNames;
  }

  /** Width of the MLP's input (slots × D), 0 before the first batch. */
  get inputWidth(): number {
    return this.#F * this.dim;
  }

  /** Adds or updates a catalog item, here and in the FM trainer. */
  upsertItem(item: CatalogItem): void {
    this.trainer.upsertItem(item);
    this.#upsert(item);
  }

  #upsert(item: CatalogItem): void {
    let entry = this.#items.get(item.item);
    if (entry === undefined) {
      entry = {
        index: this.#popularity.add(),
        key: `item=${item.item}`,
        fieldKeys: [],
        fieldNames: new Set(),
        fieldSlots: new Int32Array(0),
      };
      this.#items.set(item.item, entry);
      this.#itemList.push(entry);
    }
    entry.fieldKeys = Object.keys(item.fields).map((name) => `${name}=${item.fields[name]}`);
    entry.fieldNames = new Set(Object.keys(item.fields));
    entry.fieldSlots = Int32Array.from(Object.keys(item.fields), (name) => this.#slotOf.get(name) ?? -1);
    this.#popularity.setActive(entry.index, item.active);
  }

  #fixSlots(fields: readonly string[]): void {
    this.#slotNames = ['user', 'item', ...fields];
    this.#slotNames.forEach((name, i) => {
      this.#slotOf.set(name, i);
    });
    this.#F = this.#slotNames.length;
    for (const entry of this.#itemList)
      entry.fieldSlots = Int32Array.from(entry.fieldNames, (name) => this.#slotOf.get(name) ?? -1);
    this.#buildMlp();
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
    const M = this.#maxTokens;
    this.#capacity = cap;
    this.#ids = new Int32Array(cap * M);
    this.#rowViews = Array.from({ length: cap }, (_, r) => this.#ids.subarray(r * M, (r + 1) * M));
    this.#counts = new Int32Array(cap);
    this.#slots = new Int32Array(cap * this.#F);
    this.#labels = new Float32Array(cap);
    this.#x = new Float32Array(cap * this.#F * this.dim);
    this.#residual = new Float32Array(cap);
  }

  /**
   * Learns from a mini-batch (see the file comment): every event is scored before it is learned
   * from; positives are followed by `negatives` drawn items. Synchronous: the tfjs backends in
   * use all read tensors back synchronously.
   */
  learn(batch: readonly Interaction[]): void {
    if (batch.length === 0) return;
    const start = this.#clock.now();
    if (this.#slotNames === null) this.#fixSlots(this.#discoverFields(batch));
    this.#ensure(batch.length * (1 + this.#negatives));
    this.#resolveBatch(batch, start);
    this.#gather();
    const tf = this.#tf;
    const rows = this.#rows;
    const width = this.#F * this.dim;
    const wantInput = this.options.embeddingGradient;
    const x = tf.tensor2d(this.#x.subarray(0, rows * width), [rows, width]);
    const acts: Tf[] = tf.tidy(() => this.#forwardKeep(x));
    this.#stepFm(acts[acts.length - 1].dataSync() as Float32Array);
    const l2 = this.options.l2;
    const grads: Tf[] = tf.tidy(() => {
      const r = tf.tensor2d(this.#residual.subarray(0, rows), [rows, 1]);
      const g = this.#backward(acts, r, wantInput);
      if (l2 > 0)
        for (let i = 0; i < this.#weights.length; i++) g[i + 1] = g[i + 1].add(this.#weights[i].mul(l2));
      return g.filter((t) => t !== null);
    });
    if (wantInput) this.#scatter(grads[0].dataSync() as Float32Array);
    const named: Record<string, Tf> = {};
    const at = wantInput ? 1 : 0;
    for (let i = 0; i < this.#weights.length; i++) named[this.#weights[i].name] = grads[at + i];
    this.#optimizer.applyGradients(named);
    tf.dispose([...acts, ...grads]);
    this.model.flush();
    this.#busyMs += this.#clock.now() - start;
    this.trainer.options.observer?.endBatch();
  }

  /** The deep fields when none were given: every catalog field and the first batch's, by name. */
  #discoverFields(batch: readonly Interaction[]): string[] {
    const names = new Set<string>();
    for (const entry of this.#itemList) for (const name of entry.fieldNames) names.add(name);
    for (const event of batch) for (const name in event.fields) names.add(name);
    names.delete('user');
    names.delete('item');
    return [...names].sort();
  }

  #resolveBatch(batch: readonly Interaction[], now: number): void {
    const negatives = this.#negatives;
    let r = 0;
    for (let b = 0; b < batch.length; b++) {
      const event = batch[b];
      let entry = this.#items.get(event.item);
      if (entry === undefined) {
        this.#upsert({ item: event.item, fields: {}, active: true });
        entry = this.#items.get(event.item)!;
      }
      const n = this.#resolveUser(event, entry, r, now);
      this.#resolveItem(entry, r, n, now);
      this.#labels[r++] = event.label;
      this.#popularity.increment(entry.index);
      if (negatives > 0 && event.label > 0) {
        for (let j = 0; j < negatives; j++) {
          const index = this.#popularity.sample(this.#random);
          const other = index < 0 ? undefined : this.#itemList[index];
          if (other === undefined || other === entry) continue;
          this.#copyUserSide(r, n);
          this.#resolveItem(other, r, n, now);
          this.#labels[r++] = 0;
          this.#negativesDrawn++;
        }
      }
    }
    this.#rows = r;
  }

  /** User side of row r: the user token and the event's fields the item's catalog does not name. */
  #resolveUser(event: Interaction, entry: DeepItem, r: number, now: number): number {
    const store = this.store;
    const observer = this.trainer.options.observer;
    const F = this.#F;
    const slots = this.#slots;
    slots.fill(-1, r * F, (r + 1) * F);
    const ids = this.#rowViews[r];
    const max = this.#maxTokens;
    let n = 0;
    let u = 0;
    const userId = store.getOrCreate(`user=${event.user}`);
    ids[n++] = userId;
    store.touch(userId, now);
    observer?.observe(userId);
    slots[r * F] = userId;
    this.#userSlot[u] = 0;
    this.#userSlotId[u++] = userId;
    const fields = event.fields;
    for (const name in fields) {
      if (entry.fieldNames.has(name)) continue;
      if (n === max) break;
      const id = store.getOrCreate(`${name}=${fields[name]}`);
      ids[n++] = id;
      store.touch(id, now);
      observer?.observe(id);
      const slot = this.#slotOf.get(name);
      if (slot !== undefined && slot > 1) {
        slots[r * F + slot] = id;
        this.#userSlot[u] = slot;
        this.#userSlotId[u++] = id;
      }
    }
    this.#userSlots = u;
    this.#eventRow = r;
    return n;
  }

  /** A negative's row r starts as a copy of its event's user side (n tokens). */
  #copyUserSide(r: number, n: number): void {
    const from = this.#eventRow;
    this.#rowViews[r].set(this.#rowViews[from].subarray(0, n));
    const F = this.#F;
    const slots = this.#slots;
    slots.fill(-1, r * F, (r + 1) * F);
    for (let k = 0; k < this.#userSlots; k++) slots[r * F + this.#userSlot[k]] = this.#userSlotId[k];
  }

  /** Item side of row r after its n user-side tokens: the item token and its catalog fields. */
  #resolveItem(entry: DeepItem, r: number, from: number, now: number): void {
    const store = this.store;
    const observer = this.trainer.options.observer;
    const F = this.#F;
    const slots = this.#slots;
    const ids = this.#rowViews[r];
    const max = this.#maxTokens;
    let n = from;
    if (n < max) {
      const id = store.getOrCreate(entry.key);
      ids[n++] = id;
      store.touch(id, now);
      observer?.observe(id);
      slots[r * F + 1] = id;
    }
    const keys = entry.fieldKeys;
    for (let i = 0; i < keys.length && n < max; i++) {
      const id = store.getOrCreate(keys[i]);
      ids[n++] = id;
      store.touch(id, now);
      observer?.observe(id);
      const slot = entry.fieldSlots[i];
      if (slot > 1) slots[r * F + slot] = id;
    }
    this.#counts[r] = n;
  }

  /** The dense deep input: each row's slot vectors in D-space (zeros for a missing field). */
  #gather(): void {
    const D = this.dim;
    const F = this.#F;
    const x = this.#x;
    const slots = this.#slots;
    const model = this.model;
    for (let j = 0, end = this.#rows * F; j < end; j++) {
      const id = slots[j];
      if (id < 0) x.fill(0, j * D, (j + 1) * D);
      else model.vectorOf(id, x, j * D);
    }
  }

  /**
   * Given the deep logits of every row (MLP as of the batch start): scores each row
   * (FM now + MLP as of the batch start), records it, and steps the FM on the joint residual.
   * FmModel.backward(label) steps on (p_fm − label); passing y + p_fm − p makes that p − y.
   */
  #stepFm(deep: Float32Array): void {
    const model = this.model;
    const metrics = this.metrics;
    const views = this.#rowViews;
    const counts = this.#counts;
    const labels = this.#labels;
    const residual = this.#residual;
    for (let r = 0; r < this.#rows; r++) {
      const pFm = model.forward(views[r], counts[r]);
      const p = sigmoid(logit(pFm) + deep[r]);
      const y = labels[r];
      metrics.add(p, y);
      model.backward(y + pFm - p);
      residual[r] = p - y;
    }
    this.#learned += this.#rows;
  }

  /**
   * Carries the deep part's gradient w.r.t. each slot vector v = e P_s into the row e (P_s g)
   * and into P_s (e ⊗ g), with the FM's optimizer, L2 and importance rules.
   */
  #scatter(dx: Float32Array): void {
    const store = this.store;
    const model = this.model;
    const o = model.options;
    const D = this.dim;
    const F = this.#F;
    const slots = this.#slots;
    const tiers = store.tiers;
    const lr = o.learningRate;
    const l2 = o.l2;
    const eps = o.epsilon;
    const adagrad = o.optimizer === 'adagrad';
    for (let j = 0, end = this.#rows * F; j < end; j++) {
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
      if (s === D) {
        const imp = o.importance ? tier.importance : null;
        for (let d = 0; d < D; d++) {
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
      const P = model.projections[ti]!;
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
    const model = this.model;
    let any = false;
    for (let ti = 0; ti < this.#projectionTouched.length; ti++) {
      if (this.#projectionTouched[ti] === 0) continue;
      this.#projectionTouched[ti] = 0;
      any = true;
      stepProjection(
        model.projections[ti]!,
        model.projectionAccumulators[ti]!,
        this.#projectionGrads[ti]!,
        model.options,
      );
    }
    if (any) model.denseVersion++;
  }

  /**
   * Probabilities of events without learning (nothing is created or touched; unknown tokens
   * contribute nothing). One tfjs forward for all of them.
   */
  predict(events: readonly Interaction[]): Float64Array {
    const out = new Float64Array(events.length);
    if (events.length === 0) return out;
    if (this.#slotNames === null) {
      for (let i = 0; i < events.length; i++) out[i] = this.#predictFm(events[i]);
      return out;
    }
    const tf = this.#tf;
    const D = this.dim;
    const F = this.#F;
    const x = new Float32Array(events.length * F * D);
    const fm = new Float64Array(events.length);
    for (let i = 0; i < events.length; i++) {
      fm[i] = this.#predictFm(events[i], x, i * F * D);
    }
    // Read back outside the tidy: dataSync inside tf.tidy is ~100× slower on wasm (bench/train.ts).
    const z = tf.tidy(() => this.#forward(tf.tensor2d(x, [events.length, F * D]), this.#weights));
    const deep = z.dataSync() as Float32Array;
    z.dispose();
    for (let i = 0; i < events.length; i++) out[i] = sigmoid(logit(fm[i]) + deep[i]);
    return out;
  }

  /** FM probability of one event by lookup only; fills its deep input at x[at..) when given. */
  #predictFm(event: Interaction, x?: Float32Array, at = 0): number {
    const store = this.store;
    const entry = this.#items.get(event.item);
    const ids = new Int32Array(this.#maxTokens);
    let n = 0;
    const put = (key: string, slot: number | undefined): void => {
      const id = store.id(key);
      if (id < 0 || n === ids.length) return;
      ids[n++] = id;
      if (x !== undefined && slot !== undefined) this.model.vectorOf(id, x, at + slot * this.dim);
    };
    put(`user=${event.user}`, 0);
    for (const name in event.fields)
      if (entry === undefined || !entry.fieldNames.has(name))
        put(`${name}=${event.fields[name]}`, this.#slotOf.get(name));
    put(`item=${event.item}`, 1);
    if (entry !== undefined)
      entry.fieldKeys.forEach((key, i) => {
        put(key, entry.fieldSlots[i] > 1 ? entry.fieldSlots[i] : undefined);
      });
    return this.model.predict(ids, n);
  }

  stats(): TrainerStats {
    return {
      ...this.metrics.snapshot(),
      learned: this.#learned,
      negativesDrawn: this.#negativesDrawn,
      eventsPerSecond: this.#busyMs > 0 ? (this.#learned * 1000) / this.#busyMs : 0,
      items: this.#itemList.length,
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

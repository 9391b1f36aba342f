/**
 * The read path: `score` (probabilities for given items) and `recommend` (an exact scan of the
 * catalog with a partial top-k). No side effects: nothing is created, touched or learned; unknown
 * tokens contribute nothing.
 *
 * The logit of user side U and item side I = {item token i, catalog field tokens f} splits as
 *   z = [b + Σw_U + pairs(U)] + [w_i + Σw_f + pairs(I)] + S_U·v_i + Σ_f S_U·v_f
 * with S_U = Σ v over U, v_t = e_t P_s (row e_t of size s, tier projection P_s), and
 * S_U·v_t = e_t · (P_s S_U): once P_s S_U is computed per request and tier (Σ s × D work), each
 * token costs its own size s, read from the live slab. The second bracket c_I does not depend on
 * the user: it comes from ItemTerms (item-terms.ts), within itemRefreshMs of the model. With
 * crossUserItem, the pair's own cross weight (a token at size 0) adds to the logit: score looks
 * each pair's key up, recommend takes the user's pairs from the CrossIndex (cross.ts).
 *
 * Per-request caches are stamped with a read generation, so nothing is cleared between reads.
 */
import { PmeError } from '../../errors.js';
import { sigmoid } from '../model/math.js';
import type { Model, TokenId } from '../model/model.js';
import { dot, grownFloat64, grownInt32, type TierLayout } from './arrays.js';
import { type Catalog, EMPTY_SIGNATURE, type ItemEntry } from './catalog.js';
import { type CrossIndex, crossKey, parseCrossKey } from './cross.js';
import type { ItemTerms } from './item-terms.js';
import type { TrainerStore } from './options.js';
import { TopK } from './top-k.js';

export interface Recommendation {
  item: string;
  score: number;
}

export interface RecommendResult {
  items: Recommendation[];
  /** 'popularity' when the user is unknown (scores are then popularity shares), else null.
   *  Same shape as src/api/contract.ts RecommendResult. */
  fallback: 'popularity' | null;
}

const NO_FIELDS: Readonly<Record<string, string>> = Object.freeze({});

/** Whether a request's fields name any of an item's catalog fields. */
function overlaps(names: ReadonlySet<string>, fields: Readonly<Record<string, string>>): boolean {
  for (const name in fields) if (names.has(name)) return true;
  return false;
}

export class Reads {
  readonly #store: TrainerStore;
  readonly #model: Model;
  readonly #catalog: Catalog;
  readonly #terms: ItemTerms;
  readonly #layout: TierLayout;
  /** itemRefreshMs > 0: known items take c_I from the sweep. */
  readonly #bounded: boolean;
  /** crossUserItem: every user's pairs, whose cross weights join the logits; else null. */
  readonly #cross: CrossIndex | null;
  readonly #top = new TopK();
  // Per-request caches of score, valid when their stamp equals #gen. Field tokens: id, w, v (D),
  // |v|², S_U·v.
  #gen = 0;
  #ftStamp = new Int32Array(0);
  #ftId = new Int32Array(0);
  #ftW = new Float64Array(0);
  #ftSelf = new Float64Array(0);
  #ftSv = new Float64Array(0);
  #ftV = new Float64Array(0);
  // Live parts: S_U · v_f per field token, Σ of them per signature, with the read generation in
  // which score computed them.
  #ftLive = new Float64Array(0);
  #ftLiveStamp = new Int32Array(0);
  #sigLive = new Float64Array(0);
  #sigLiveStamp = new Int32Array(0);
  /** Per item: the read generation that excluded it. */
  #excludeStamp = new Int32Array(0);
  /** Per item: the user's cross weight with it (recommend), valid when its stamp is the generation. */
  #crossStamp = new Int32Array(0);
  #crossWeights = new Float64Array(0);
  // The user side: S_U and P_t S_U per tier.
  readonly #userSum: Float64Array;
  readonly #userP: Float64Array;
  /** The tiers' param slabs, re-read at the start of every read. */
  readonly #slabs: Float32Array[];
  readonly #scoreIds: Int32Array;
  /** The user side's token ids of the current read. */
  #userIds: Int32Array;
  readonly #vec: Float64Array;
  /** F = Σ v_f of one item's field tokens (score). */
  readonly #itemSum: Float64Array;

  constructor(
    store: TrainerStore,
    model: Model,
    catalog: Catalog,
    terms: ItemTerms,
    layout: TierLayout,
    itemRefreshMs: number,
    cross: CrossIndex | null,
  ) {
    this.#store = store;
    this.#model = model;
    this.#catalog = catalog;
    this.#terms = terms;
    this.#layout = layout;
    this.#bounded = itemRefreshMs > 0;
    this.#cross = cross;
    const D = store.dim;
    this.#vec = new Float64Array(D);
    this.#itemSum = new Float64Array(D);
    this.#userSum = new Float64Array(D);
    this.#userP = new Float64Array(layout.block);
    this.#slabs = store.tiers.map((t) => t.params);
    this.#scoreIds = new Int32Array(model.maxTokens);
    this.#userIds = new Int32Array(model.maxTokens);
  }

  /** Bytes of the read path's caches (per field token, signature and item) and its fixed
   *  buffers: exact, their typed arrays' byteLength. */
  bytes(): number {
    return (
      this.#ftStamp.byteLength +
      this.#ftId.byteLength +
      this.#ftW.byteLength +
      this.#ftSelf.byteLength +
      this.#ftSv.byteLength +
      this.#ftV.byteLength +
      this.#ftLive.byteLength +
      this.#ftLiveStamp.byteLength +
      this.#sigLive.byteLength +
      this.#sigLiveStamp.byteLength +
      this.#excludeStamp.byteLength +
      this.#crossStamp.byteLength +
      this.#crossWeights.byteLength +
      this.#userSum.byteLength +
      this.#userP.byteLength +
      this.#scoreIds.byteLength +
      this.#userIds.byteLength +
      this.#vec.byteLength +
      this.#itemSum.byteLength +
      this.#top.bytes
    );
  }

  /** Grows the per-field-token, per-signature and per-item caches to the catalog's size (only
   *  when it grew: a read allocates nothing otherwise). */
  #fit(): void {
    const catalog = this.#catalog;
    const f = catalog.fieldTokenCount;
    if (this.#ftStamp.length < f) {
      this.#ftStamp = grownInt32(this.#ftStamp, f);
      this.#ftId = grownInt32(this.#ftId, f);
      this.#ftW = grownFloat64(this.#ftW, f);
      this.#ftSelf = grownFloat64(this.#ftSelf, f);
      this.#ftSv = grownFloat64(this.#ftSv, f);
      this.#ftV = grownFloat64(this.#ftV, f * this.#model.dim);
      this.#ftLive = grownFloat64(this.#ftLive, f);
      this.#ftLiveStamp = grownInt32(this.#ftLiveStamp, f);
    }
    const g = catalog.signatureCount;
    if (this.#sigLive.length < g) {
      this.#sigLive = grownFloat64(this.#sigLive, g);
      this.#sigLiveStamp = grownInt32(this.#sigLiveStamp, g);
    }
    if (this.#excludeStamp.length < catalog.size)
      this.#excludeStamp = grownInt32(this.#excludeStamp, catalog.size);
    if (this.#cross !== null && this.#crossStamp.length < catalog.size) {
      this.#crossStamp = grownInt32(this.#crossStamp, catalog.size);
      this.#crossWeights = grownFloat64(this.#crossWeights, catalog.size);
    }
  }

  /** Starts a read: a new generation (every per-request cache below goes stale at once). */
  #nextGeneration(): number {
    let gen = this.#gen + 1;
    if (gen > 0x3fffffff) {
      // Wrapped (after ~10⁹ reads): clear the stamps so no old value can pass for current.
      gen = 1;
      this.#ftStamp.fill(0);
      this.#excludeStamp.fill(0);
      this.#crossStamp.fill(0);
    }
    this.#gen = gen;
    this.#fit();
    // Slabs and columns are replaced when they grow: read them once per request (no await follows).
    const tiers = this.#store.tiers;
    for (let ti = 0; ti < tiers.length; ti++) this.#slabs[ti] = tiers[ti].params;
    return gen;
  }

  /**
   * Sums the user side once: S_U = Σ v (in #userSum) and returns b + Σ w + ½(|S_U|² − Σ|v|²), the
   * model's user side. Unknown tokens contribute nothing.
   */
  #prepareUser(user: string, fields: Readonly<Record<string, string>>): number {
    const store = this.#store;
    let ids = this.#userIds;
    let n = 0;
    const userId = store.id(`user=${user}`);
    if (userId >= 0) ids[n++] = userId;
    for (const name in fields) {
      const id = store.id(`${name}=${fields[name]}`);
      if (id < 0) continue;
      // Requests may name more fields than an event holds: grown for the largest one yet.
      if (n === ids.length) {
        const grown = new Int32Array(2 * ids.length);
        grown.set(ids);
        ids = grown;
        this.#userIds = ids;
      }
      ids[n++] = id;
    }
    return this.#model.userSide(ids, n, this.#userSum);
  }

  /** One field token for this request: id, w, v (D-space), |v|² and S_U · v. */
  #prepareField(f: number): void {
    const D = this.#model.dim;
    const id = this.#store.id(this.#catalog.fieldKey(f));
    this.#ftId[f] = id;
    this.#ftStamp[f] = this.#gen;
    if (id < 0) return;
    const V = this.#ftV;
    const at = f * D;
    this.#model.vectorOf(id, V, at);
    const S = this.#userSum;
    let self = 0;
    let sv = 0;
    for (let d = 0; d < D; d++) {
      const x = V[at + d];
      self += x * x;
      sv += S[d] * x;
    }
    this.#ftW[f] = this.#store.linear[id];
    this.#ftSelf[f] = self;
    this.#ftSv[f] = sv;
  }

  /** x · P_tiᵀ into out[at..at+s): a D-space vector carried into tier ti's own space. */
  #project(ti: number, x: Float64Array, xAt: number, out: Float64Array, at: number): void {
    const D = this.#model.dim;
    const s = this.#layout.sizes[ti];
    const P = this.#model.projections[ti];
    if (P === null) {
      for (let d = 0; d < s; d++) out[at + d] = x[xAt + d];
      return;
    }
    for (let j = 0; j < s; j++) {
      const row = j * D;
      let acc = 0;
      for (let d = 0; d < D; d++) acc += P[row + d] * x[xAt + d];
      out[at + j] = acc;
    }
  }

  /**
   * Exact logit of one item without the user-side base (score's path): Σ w_f + S_U·F +
   * ½(|F|² − Σ|v_f|²) + w_i + v_i · (S_U + F), from the live model. Field tokens are prepared
   * once per request; the item token costs s × D. Call after #prepareUser, same synchronous stretch.
   */
  #itemLogit(g: number, id: TokenId): number {
    const D = this.#model.dim;
    const gen = this.#gen;
    const F = this.#itemSum;
    F.fill(0);
    const V = this.#ftV;
    let z = 0;
    let self = 0;
    const list = this.#catalog.sigFields;
    for (let j = this.#catalog.sigStart[g], end = j + this.#catalog.sigLength[g]; j < end; j++) {
      const f = list[j];
      if (this.#ftStamp[f] !== gen) this.#prepareField(f);
      if (this.#ftId[f] < 0) continue;
      z += this.#ftW[f] + this.#ftSv[f];
      self += this.#ftSelf[f];
      const at = f * D;
      for (let d = 0; d < D; d++) F[d] += V[at + d];
    }
    let ff = 0;
    for (let d = 0; d < D; d++) ff += F[d] * F[d];
    z += 0.5 * (ff - self);
    if (id < 0) return z;
    const v = this.#vec;
    this.#model.vectorOf(id, v);
    const S = this.#userSum;
    let vq = 0;
    for (let d = 0; d < D; d++) vq += v[d] * (S[d] + F[d]);
    return z + this.#store.linear[id] + vq;
  }

  /**
   * Probabilities for `items` (same order) for `user`, with optional request fields. No side
   * effects: nothing is created, touched or learned; unknown tokens contribute nothing. The user
   * side is summed once; each item then costs its own token's size × D (see #itemLogit). Request
   * fields that an item's catalog also names belong to that item's side (as in learn()); such
   * items take the slower per-item path.
   */
  score(
    user: string,
    items: readonly string[],
    fields: Readonly<Record<string, string>> = NO_FIELDS,
  ): number[] {
    this.#nextGeneration();
    const base = this.#prepareUser(user, fields);
    let anyField = false;
    for (const _ in fields) {
      anyField = true;
      break;
    }
    // Bounded mode: known items take the item-only term from the sweep, as recommend does, so the
    // two agree and an item costs its own size (plus its fields' cached live terms).
    const bounded = this.#bounded;
    if (bounded) {
      this.#terms.refreshForRead();
      this.#projectUser();
    }
    const out = new Array<number>(items.length);
    for (let i = 0; i < items.length; i++) {
      const entry = this.#catalog.entry(items[i]);
      // #scoreApart reads the pair's weight with the rest of its tokens.
      if (entry !== undefined && anyField && overlaps(entry.fieldNames, fields)) {
        out[i] = this.#scoreApart(user, entry, fields);
        continue;
      }
      const z = base + this.#crossWeight(user, items[i]);
      if (entry === undefined) {
        out[i] = sigmoid(z + this.#itemLogit(EMPTY_SIGNATURE, this.#store.id(`item=${items[i]}`)));
      } else if (bounded) {
        out[i] = sigmoid(z + this.#terms.values[entry.index] + this.#itemLive(entry.index));
      } else {
        const id = this.#catalog.itemToken[entry.index];
        out[i] = sigmoid(z + this.#itemLogit(this.#catalog.itemSig[entry.index], id));
      }
    }
    return out;
  }

  /**
   * The user-dependent part of item i's logit, S_U · v_i + Σ_f S_U · v_f, with P_t S_U already in
   * #userP: e · (P_t S_U) per token, each field token and signature computed once per read.
   */
  #itemLive(i: number): number {
    const gen = this.#gen;
    const g = this.#catalog.itemSig[i];
    if (this.#sigLiveStamp[g] !== gen) {
      let z = 0;
      const list = this.#catalog.sigFields;
      for (let j = this.#catalog.sigStart[g], end = j + this.#catalog.sigLength[g]; j < end; j++) {
        const f = list[j];
        if (this.#ftLiveStamp[f] !== gen) {
          this.#ftLiveStamp[f] = gen;
          this.#ftLive[f] = this.#tokenLive(this.#catalog.fieldToken(f));
        }
        z += this.#ftLive[f];
      }
      this.#sigLive[g] = z;
      this.#sigLiveStamp[g] = gen;
    }
    return this.#sigLive[g] + this.#tokenLive(this.#catalog.itemToken[i]);
  }

  /** The linear weight of the pair's cross token: 0 without crossUserItem or without the token. */
  #crossWeight(user: string, item: string): number {
    if (this.#cross === null) return 0;
    const id = this.#store.id(crossKey(user, item));
    return id < 0 ? 0 : this.#store.linear[id];
  }

  /** P_t S_U for every tier t into #userP (the user side in each tier's own space). */
  #projectUser(): void {
    for (let ti = 0; ti < this.#layout.sizes.length; ti++)
      this.#project(ti, this.#userSum, 0, this.#userP, this.#layout.offsets[ti]);
  }

  /** e_t · (P_s S_U) for token `id` (0 for none or size 0), from #userP. */
  #tokenLive(id: TokenId): number {
    if (id < 0) return 0;
    const ti = this.#store.tierOf[id];
    const s = this.#layout.sizes[ti];
    return s === 0
      ? 0
      : dot(this.#slabs[ti], this.#store.slotOf[id] * s, this.#userP, this.#layout.offsets[ti], s);
  }

  /** An item whose catalog names a request field: its own user side, through the model. */
  #scoreApart(user: string, entry: ItemEntry, fields: Readonly<Record<string, string>>): number {
    const ids = this.#scoreIds;
    let n = 0;
    const put = (key: string): void => {
      const id = this.#store.id(key);
      if (id >= 0 && n < ids.length) ids[n++] = id;
    };
    put(`user=${user}`);
    for (const name in fields) if (!entry.fieldNames.has(name)) put(`${name}=${fields[name]}`);
    put(entry.key);
    for (const key of entry.fieldKeys) put(key);
    if (this.#cross !== null) put(crossKey(user, entry.item));
    return this.#model.predict(ids, n);
  }

  /**
   * Top-k active items for `user` by model score: an exact scan over every item, reading the live
   * parameters (so it sees every batch learned before it: staleness 0 events), with the user side
   * summed once and a partial top-k heap. Per item it costs the item token's own size s in
   * multiply-adds; per request, per field signature and tier, a few s × D products. An unknown
   * user gets the most popular items instead, flagged `fallback: 'popularity'`.
   */
  recommend(
    user: string,
    k: number,
    options: { exclude?: Iterable<string>; fields?: Readonly<Record<string, string>> } = {},
  ): RecommendResult {
    if (!Number.isInteger(k) || k < 1)
      throw new PmeError('PME_ERR_BAD_REQUEST', `k must be an integer >= 1, got ${k}`);
    const gen = this.#nextGeneration();
    const stamp = this.#excludeStamp;
    if (options.exclude !== undefined)
      for (const item of options.exclude) {
        const entry = this.#catalog.entry(item);
        if (entry !== undefined) stamp[entry.index] = gen;
      }
    const catalog = this.#catalog;
    const n = catalog.size;
    const active = catalog.itemActive;
    const top = this.#top;
    top.reset(k);
    if (this.#store.id(`user=${user}`) < 0) {
      const popularity = catalog.popularity;
      const total = Math.max(1, popularity.total);
      for (let i = 0; i < n; i++) {
        if (active[i] === 0 || stamp[i] === gen) continue;
        top.offer(i, popularity.count(i));
      }
      return {
        items: top.drain().map((e) => ({ item: catalog.at(e.index).item, score: e.score / total })),
        fallback: 'popularity',
      };
    }
    this.#terms.refreshForRead();
    const base = this.#prepareUser(user, options.fields ?? NO_FIELDS);
    const store = this.#store;
    const tierOf = store.tierOf;
    const slotOf = store.slotOf;
    const slabs = this.#slabs;
    const sizes = this.#layout.sizes;
    const offsets = this.#layout.offsets;
    const uP = this.#userP;
    // P_t S_U for every tier, then S_U · v_f = e_f · (P_t S_U) per field token, Σ per signature.
    this.#projectUser();
    const live = this.#ftLive;
    const fieldTokens = catalog.fieldTokenCount;
    for (let f = 0; f < fieldTokens; f++) live[f] = this.#tokenLive(catalog.fieldToken(f));
    const sigLive = this.#sigLive;
    const fieldsOf = catalog.sigFields;
    const sigStart = catalog.sigStart;
    const sigLength = catalog.sigLength;
    for (let g = 0; g < catalog.signatureCount; g++) {
      let z = 0;
      for (let j = sigStart[g], end = j + sigLength[g]; j < end; j++) z += live[fieldsOf[j]];
      sigLive[g] = z;
    }
    const sigOf = catalog.itemSig;
    const tokens = catalog.itemToken;
    const constant = this.#terms.values;
    // The user's pairs (crossUserItem): their weights by item, so the scan reads one stamp per item.
    const cross = this.#cross;
    const crossStamp = this.#crossStamp;
    const crossWeights = this.#crossWeights;
    if (cross !== null)
      for (const id of cross.of(user)) {
        const entry = catalog.entry(parseCrossKey(store.key(id))!.item);
        if (entry === undefined) continue;
        crossStamp[entry.index] = gen;
        crossWeights[entry.index] = store.linear[id];
      }
    let floor = top.floor;
    for (let i = 0; i < n; i++) {
      if (active[i] === 0 || stamp[i] === gen) continue;
      let z = constant[i] + sigLive[sigOf[i]];
      if (cross !== null && crossStamp[i] === gen) z += crossWeights[i];
      const id = tokens[i];
      if (id >= 0) {
        const ti = tierOf[id];
        const s = sizes[ti];
        if (s > 0) z += dot(slabs[ti], slotOf[id] * s, uP, offsets[ti], s);
      }
      // Most items lose to the heap's root: skip the call for them.
      if (z <= floor) continue;
      top.offer(i, z);
      floor = top.floor;
    }
    return {
      items: top.drain().map((e) => ({ item: catalog.at(e.index).item, score: sigmoid(base + e.score) })),
      fallback: null,
    };
  }
}

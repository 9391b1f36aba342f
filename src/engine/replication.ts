/**
 * What serving replicas need to follow the trainer, as typed changes: ChangeTracker finds the
 * parameters changed since the last publish and emits them into a ParamChanges sink (token rows,
 * evictions, bias, projections, items, a marker last); ReplicaApplier is the sink on a replica's
 * side, setting them into its store and model (which never learns itself). Keys, encoding and
 * packing are src/stream's (src/stream/param-records.ts); this file knows none of them.
 */
import { setImmediate as nextTurn } from 'node:timers/promises';
import type { EmbeddingStore } from '../store/index.js';
import type { Trainer } from './trainer/index.js';

export interface PublishMarker {
  publishedAt: number;
  learned: number;
  seq: number;
}

/**
 * The changes of one publish, in order, the marker last. A collect calls it once per changed
 * token, item or dense parameter, with no object made per call: an implementation copies what it
 * keeps (arrays passed in are the store's and model's own, valid during the call only).
 * applyRecord() in src/stream replays decoded records into the same interface.
 */
export interface ParamChanges {
  /**
   * A token: its linear weight `linear[at]` and its row, `size` floats of `row` from `rowAt`
   * (none when 0). The weight is passed as its column and index, not as a number: a fractional
   * number passed to a call V8 does not inline is boxed, an object per token (measured: in some
   * runs ~17 bytes per record, 6x the young collections of a full collect).
   */
  token(key: string, size: number, linear: Float32Array, at: number, row: Float32Array, rowAt: number): void;
  /** The token was evicted. */
  evicted(key: string): void;
  bias(value: number): void;
  /** The projection P_s of the tier of size `size` (s × D). */
  projection(size: number, P: Float32Array): void;
  /** An item's state as the trainer's exportItemJson() writes it. */
  item(name: string, json: string): void;
  /** Ends a publish: when and how far the trainer had got. */
  marker(marker: PublishMarker): void;
}

/** Tokens or items scanned between two looks at the clock in collectInSlices(). */
const SCAN_STEP = 512;

const NO_ROW = new Float32Array(0);

/** Tracks what the trainer changed since the last publish. */
export class ChangeTracker {
  readonly #store: EmbeddingStore;
  readonly #trainer: Trainer;
  #publishedTier: Uint8Array = new Uint8Array(0);
  #published: Uint8Array = new Uint8Array(0);
  #since = Number.NEGATIVE_INFINITY;
  #seq = 0;
  readonly #evicted = new Set<string>();
  /** The dense parameters as last published (NaN / none: never). */
  #bias = Number.NaN;
  #projections: Array<Float32Array | undefined> = [];
  /** Event count of each item (by trainer index) when last published; -1: never. */
  #itemCounts = new Float64Array(0);

  constructor(store: EmbeddingStore, trainer: Trainer) {
    this.#store = store;
    this.#trainer = trainer;
    store.onEvict((id, key) => {
      this.#evicted.add(key);
      if (id < this.#published.length) this.#published[id] = 0;
    });
  }

  /** Forgets what was published: the next collect() sends everything again (after a failed send). */
  reset(): void {
    this.#published.fill(0);
    this.#itemCounts.fill(-1);
    this.#bias = Number.NaN;
    this.#projections = [];
  }

  /**
   * Emits every change since the last call (everything on the first call) into `out`, and returns
   * it. Synchronous: call it between training batches (under the service's state lock) so the
   * changes are one state.
   */
  collect<S extends ParamChanges>(now: number, out: S): S {
    const steps = this.#collect(now, out);
    while (!steps.next().done) {}
    return out;
  }

  /**
   * collect() in slices of about `sliceMs` with a macrotask turn between them, so that requests
   * served on the same event loop wait at most a slice (a 100k-item catalog takes ~25 ms in all).
   * Hold the state lock across it (training waits, reads go on): each change is still one row as
   * it was when read; a row a prune window moves meanwhile goes out again next time.
   */
  async collectInSlices<S extends ParamChanges>(now: number, out: S, sliceMs = 1): Promise<S> {
    const steps = this.#collect(now, out);
    let sliceStart = performance.now();
    while (!steps.next().done) {
      if (performance.now() - sliceStart >= sliceMs) {
        await nextTurn();
        sliceStart = performance.now();
      }
    }
    return out;
  }

  /** The work of collect(), pausing (yield) every SCAN_STEP tokens or items. */
  *#collect(now: number, out: ParamChanges): Generator<void, void> {
    const store = this.#store;
    if (this.#published.length < store.idLimit) {
      const grow = (old: Uint8Array): Uint8Array => {
        const next = new Uint8Array(Math.max(store.idLimit, old.length * 2));
        next.set(old);
        return next;
      };
      this.#published = grow(this.#published);
      this.#publishedTier = grow(this.#publishedTier);
    }
    for (const key of this.#evicted) if (store.id(key) < 0) out.evicted(key);
    this.#evicted.clear();
    let lastSeen = store.lastSeen;
    let tierOf = store.tierOf;
    let linear = store.linear;
    // Scanned up to the id limit at the start: tokens created during a sliced collect are new
    // since `now`, so the next collect sends them (and the columns, which may have grown, are
    // read again after every pause).
    const idLimit = Math.min(store.idLimit, this.#published.length);
    for (let id = 0; id < idLimit; id++) {
      if (id % SCAN_STEP === SCAN_STEP - 1) {
        yield;
        lastSeen = store.lastSeen;
        tierOf = store.tierOf;
        linear = store.linear;
      }
      if (!store.alive(id)) continue;
      const changed =
        this.#published[id] === 0 || lastSeen[id] >= this.#since || tierOf[id] !== this.#publishedTier[id];
      if (!changed) continue;
      const size = store.sizeOf(id);
      if (size > 0)
        out.token(store.key(id), size, linear, id, store.tiers[tierOf[id]].params, store.offsetOf(id));
      else out.token(store.key(id), 0, linear, id, NO_ROW, 0);
      this.#published[id] = 1;
      this.#publishedTier[id] = tierOf[id];
    }
    // Dense parameters only when they changed: an idle trainer publishes nothing that would make
    // a follower refresh every item's cached term.
    const model = this.#trainer.model;
    if (this.#bias !== model.bias) {
      this.#bias = model.bias;
      out.bias(model.bias);
    }
    model.projections.forEach((P, ti) => {
      if (P === null) return;
      const last = this.#projections[ti];
      if (last !== undefined && last.length === P.length && last.every((v, j) => v === P[j])) return;
      this.#projections[ti] = Float32Array.from(P);
      out.projection(store.tiers[ti].size, P);
    });
    // Items by index, compared by their event count: only those that changed are exported (an
    // object per item per publish would be 100k objects a second for a 100k catalog).
    const trainer = this.#trainer;
    if (this.#itemCounts.length < trainer.itemCount) {
      const next = new Float64Array(Math.max(trainer.itemCount, this.#itemCounts.length * 2)).fill(-1);
      next.set(this.#itemCounts);
      this.#itemCounts = next;
    }
    for (let i = 0; i < trainer.itemCount; i++) {
      if (i % SCAN_STEP === SCAN_STEP - 1) yield;
      const count = trainer.itemEvents(i);
      if (this.#itemCounts[i] === count) continue;
      this.#itemCounts[i] = count;
      out.item(trainer.itemName(i), trainer.exportItemJson(i));
    }
    out.marker({ publishedAt: now, learned: trainer.stats().learned, seq: ++this.#seq });
    this.#since = now;
  }
}

/**
 * Applies published changes to a replica's store and trainer (which never learns itself); call
 * done() after a batch so reads see it (item table refresh).
 */
export class ReplicaApplier implements ParamChanges {
  readonly #store: EmbeddingStore;
  readonly #trainer: Trainer;
  /** The last marker applied: how current this replica is. */
  lastMarker: PublishMarker | null = null;
  /** Changes applied. */
  applied = 0;
  /** Why this replica cannot follow the trainer (its projection differs), or null. Its scores
   *  would differ from the trainer's: a replica reports itself not ready with this. */
  mismatch: string | null = null;
  /** Tokens created since the last done(): item tokens among them are linked to their items. */
  #created: string[] = [];

  constructor(store: EmbeddingStore, trainer: Trainer) {
    this.#store = store;
    this.#trainer = trainer;
  }

  token(key: string, size: number, linear: Float32Array, at: number, row: Float32Array, rowAt: number): void {
    this.applied++;
    const store = this.#store;
    if (!store.options.ladder.includes(size)) {
      this.mismatch ??=
        `the trainer publishes a row of size ${size}, which this replica's ladder ` +
        `(${store.options.ladder.join(', ')}) lacks: start it with the trainer’s --dim`;
      return;
    }
    let id = store.id(key);
    if (id < 0) {
      id = store.getOrCreate(key, size);
      this.#created.push(key);
    } else if (store.sizeOf(id) !== size) store.move(id, size, () => {});
    store.linear[id] = linear[at];
    if (size > 0)
      store.tiers[store.tierOf[id]].params.set(row.subarray(rowAt, rowAt + size), store.offsetOf(id));
  }

  evicted(key: string): void {
    this.applied++;
    const id = this.#store.id(key);
    if (id >= 0) this.#store.evict(id);
  }

  bias(value: number): void {
    this.applied++;
    this.#trainer.model.bias = value;
    this.#trainer.model.denseVersion++;
  }

  /** Set when this replica has a tier of that size with a projection of P's length; else the
   *  replica runs another projection or ladder than the trainer (`mismatch`). */
  projection(size: number, P: Float32Array): void {
    this.applied++;
    const ti = this.#store.tiers.findIndex((t) => t.size === size);
    const mine = ti < 0 ? null : this.#trainer.model.projections[ti];
    if (mine === null || mine === undefined || mine.length !== P.length) {
      this.mismatch ??=
        `the trainer publishes a learned projection of size ${size} (${P.length} floats) that this ` +
        `replica ${mine === null || mine === undefined ? 'has no tier or learned projection for' : `holds as ${mine.length} floats`}: ` +
        'start it with the trainer’s --projection and --dim';
      return;
    }
    mine.set(P);
    this.#trainer.model.denseVersion++;
  }

  item(_name: string, json: string): void {
    this.applied++;
    this.#trainer.importItems([JSON.parse(json)]);
  }

  marker(marker: PublishMarker): void {
    this.applied++;
    this.lastMarker = marker;
  }

  /** Tells the trainer that its parameters changed outside learn(), so read paths refresh. */
  done(): void {
    this.#trainer.invalidateItems(this.#created);
    this.#created = [];
  }
}

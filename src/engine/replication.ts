/**
 * What serving replicas need to follow the trainer: the parameter changes since the last
 * publish, as keyed binary records for a compacted Kafka topic, and the inverse (apply them
 * to a replica's store and model). The transport lives in src/stream/params.ts.
 *
 * Keys: `t:<token>` → [size, linear, row...] as float32 (null value: evicted);
 *       `d:bias` → [bias]; `d:P<s>` → P_s (s × D); `i:<item>` → JSON {fields, active, count};
 *       `m:clock` → JSON {publishedAt, learned, seq}, written last in every publish.
 * A replica that reads the topic from the beginning rebuilds the whole model: compaction keeps
 * the newest record of every key.
 */
import { setImmediate as nextTurn } from 'node:timers/promises';
import type { EmbeddingStore } from '../store/index.js';
import { ByteWriter } from '../util/bytes.js';
import type { Trainer } from './trainer.js';

export interface ParamRecord {
  key: string;
  /** null is a tombstone: the token was evicted. */
  value: Buffer | null;
}

export interface PublishMarker {
  publishedAt: number;
  learned: number;
  seq: number;
}

/**
 * Records packed: keys and values back to back in two buffers, UTF-8 keys ending at `keyEnds`,
 * each value starting 4-byte aligned (float rows are read in place); a length of -1 is a
 * tombstone (null value). A collect makes packs of at most RECORDS_PER_PACK records: one Kafka
 * request, or one message to the serving thread, with its buffers handed over. A record object,
 * a key string and a Buffer per row, alive until the publish was sent, were what young collections
 * had to copy: at 10,000 events/s over a 100,000-item catalog, publishing every second (no
 * snapshots), 10–11 young collections and ~80 ms of them in 20 s, against 5 and ~8 ms packed.
 */
export interface PackedRecords {
  keys: Uint8Array;
  keyEnds: Int32Array;
  lengths: Int32Array;
  data: Uint8Array;
}

export const RECORDS_PER_PACK = 2048;

const aligned = (n: number): number => (n + 3) & ~3;

/** A pack's records, their values viewing its buffer (no copy). */
export function unpackRecords(pack: PackedRecords): ParamRecord[] {
  const { keyEnds, lengths, data } = pack;
  const keys = Buffer.from(pack.keys.buffer, pack.keys.byteOffset, pack.keys.byteLength);
  const records = new Array<ParamRecord>(keyEnds.length);
  let at = 0;
  for (let i = 0; i < keyEnds.length; i++) {
    const length = lengths[i];
    records[i] = {
      key: keys.toString('utf8', i === 0 ? 0 : keyEnds[i - 1], keyEnds[i]),
      value: length < 0 ? null : Buffer.from(data.buffer, data.byteOffset + at, length),
    };
    if (length > 0) at += aligned(length);
  }
  return records;
}

/** Writes records into packs as a collect makes them. */
class Packer {
  readonly packs: PackedRecords[] = [];
  #count = 0;
  #keys = new ByteWriter(1 << 12);
  #keyEnds = new Int32Array(RECORDS_PER_PACK);
  #lengths = new Int32Array(RECORDS_PER_PACK);
  #data = new ByteWriter(1 << 12);
  #f32: Float32Array = new Float32Array(0);

  /** The pack's values as floats: rows are written through it (valid until the next record). */
  get f32(): Float32Array {
    const b = this.#data.buffer;
    if (this.#f32.buffer !== b.buffer) this.#f32 = new Float32Array(b.buffer, b.byteOffset, b.length / 4);
    return this.#f32;
  }

  /** The key is `prefix` + `name`: two writes, no string made for it. */
  tombstone(prefix: string, name: string): void {
    this.#add(prefix, name, -1);
  }

  /** Room for `n` float32 values: returns their index in `f32`. */
  floats(prefix: string, name: string, n: number): number {
    const at = this.#add(prefix, name, 4 * n);
    this.#data.reserve(4 * n);
    this.#data.used += 4 * n;
    return at / 4;
  }

  text(prefix: string, name: string, text: string): void {
    const at = this.#add(prefix, name, 0);
    this.#data.write(text);
    this.#lengths[this.#count - 1] = this.#data.used - at;
    this.#data.used = aligned(this.#data.used);
  }

  /** The packs, the last one closed. */
  finish(): PackedRecords[] {
    if (this.#count > 0) this.#close();
    return this.packs;
  }

  /** Adds a record of `length` bytes; returns the byte offset its value starts at. */
  #add(prefix: string, name: string, length: number): number {
    if (this.#count === RECORDS_PER_PACK) this.#close();
    this.#keys.write(prefix);
    this.#keys.write(name);
    this.#keyEnds[this.#count] = this.#keys.used;
    this.#lengths[this.#count] = length;
    this.#count++;
    return this.#data.used;
  }

  #close(): void {
    const n = this.#count;
    this.packs.push({
      keys: this.#keys.view(),
      keyEnds: this.#keyEnds.subarray(0, n),
      lengths: this.#lengths.subarray(0, n),
      data: this.#data.view(),
    });
    // Sized like the pack before it, with room to spare (most packs of a collect hold the same
    // kind of record): every buffer grown is external memory, which V8 counts towards a full GC.
    this.#keys = new ByteWriter(Math.max(1 << 12, Math.ceil(1.25 * this.#keys.used)));
    this.#data = new ByteWriter(Math.max(1 << 12, Math.ceil(1.25 * this.#data.used)));
    this.#keyEnds = new Int32Array(RECORDS_PER_PACK);
    this.#lengths = new Int32Array(RECORDS_PER_PACK);
    this.#count = 0;
  }
}

/** Tokens or items scanned between two looks at the clock in collectInSlices(). */
const SCAN_STEP = 512;

/** The float32 values of a record: a view when aligned (no copy), else a copy. */
function floats(value: Buffer): Float32Array {
  return value.byteOffset % 4 === 0
    ? new Float32Array(value.buffer, value.byteOffset, value.byteLength / 4)
    : new Float32Array(value.buffer.slice(value.byteOffset, value.byteOffset + value.byteLength));
}

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
   * Every record changed since the last call (all of them on the first call). Synchronous: call
   * it between training batches (under the service's state lock) so the records are one state.
   */
  collect(now: number): PackedRecords[] {
    const steps = this.#collect(now);
    let step = steps.next();
    while (!step.done) step = steps.next();
    return step.value;
  }

  /**
   * collect() in slices of about `sliceMs` with a macrotask turn between them, so that requests
   * served on the same event loop wait at most a slice (a 100k-item catalog takes ~25 ms in all).
   * Hold the state lock across it (training waits, reads go on): each record is still one row as
   * it was when read; a row a prune window moves meanwhile goes out again next time.
   */
  async collectInSlices(now: number, sliceMs = 1): Promise<PackedRecords[]> {
    const steps = this.#collect(now);
    let sliceStart = performance.now();
    let step = steps.next();
    while (!step.done) {
      if (performance.now() - sliceStart >= sliceMs) {
        await nextTurn();
        sliceStart = performance.now();
      }
      step = steps.next();
    }
    return step.value;
  }

  /** The work of collect(), pausing (yield) every SCAN_STEP tokens or items. */
  *#collect(now: number): Generator<void, PackedRecords[]> {
    const store = this.#store;
    const out = new Packer();
    if (this.#published.length < store.idLimit) {
      const grow = (old: Uint8Array): Uint8Array => {
        const next = new Uint8Array(Math.max(store.idLimit, old.length * 2));
        next.set(old);
        return next;
      };
      this.#published = grow(this.#published);
      this.#publishedTier = grow(this.#publishedTier);
    }
    for (const key of this.#evicted) if (store.id(key) < 0) out.tombstone('t:', key);
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
      const row = out.floats('t:', store.key(id), 2 + size);
      const f32 = out.f32;
      f32[row] = size;
      f32[row + 1] = linear[id];
      if (size > 0) {
        const params = store.tiers[tierOf[id]].params;
        const at = store.offsetOf(id);
        for (let j = 0; j < size; j++) f32[row + 2 + j] = params[at + j];
      }
      this.#published[id] = 1;
      this.#publishedTier[id] = tierOf[id];
    }
    // Dense parameters only when they changed: an idle trainer publishes nothing that would make
    // a follower refresh every item's cached term.
    const model = this.#trainer.model;
    if (this.#bias !== model.bias) {
      this.#bias = model.bias;
      const at = out.floats('d:', 'bias', 1);
      out.f32[at] = model.bias;
    }
    model.projections.forEach((P, ti) => {
      if (P === null) return;
      const last = this.#projections[ti];
      if (last !== undefined && last.length === P.length && last.every((v, j) => v === P[j])) return;
      this.#projections[ti] = Float32Array.from(P);
      const at = out.floats('d:P', String(store.tiers[ti].size), P.length);
      out.f32.set(P, at);
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
      out.text('i:', trainer.itemName(i), trainer.exportItemJson(i));
    }
    const marker: PublishMarker = {
      publishedAt: now,
      learned: this.#trainer.stats().learned,
      seq: ++this.#seq,
    };
    out.text('m:', 'clock', JSON.stringify(marker));
    this.#since = now;
    return out.finish();
  }
}

/** Applies published records to a replica's store and trainer (which never learns itself). */
export class ReplicaApplier {
  readonly #store: EmbeddingStore;
  readonly #trainer: Trainer;
  /** The last marker applied: how current this replica is. */
  marker: PublishMarker | null = null;
  applied = 0;
  /** Tokens created since the last done(): item tokens among them are linked to their items. */
  #created: string[] = [];

  constructor(store: EmbeddingStore, trainer: Trainer) {
    this.#store = store;
    this.#trainer = trainer;
  }

  /** Applies one record; call `done()` after a batch so reads see it (item table refresh). */
  apply(record: ParamRecord): void {
    const { key, value } = record;
    this.applied++;
    if (key.startsWith('t:')) {
      const token = key.slice(2);
      if (value === null) {
        const id = this.#store.id(token);
        if (id >= 0) this.#store.evict(id);
        return;
      }
      this.#applyToken(token, floats(value));
      return;
    }
    if (value === null) return;
    if (key === 'd:bias') {
      this.#trainer.model.bias = value.readFloatLE(0);
      this.#trainer.model.denseVersion++;
    } else if (key.startsWith('d:P')) {
      const size = Number(key.slice(3));
      const ti = this.#store.tiers.findIndex((t) => t.size === size);
      const P = ti < 0 ? null : this.#trainer.model.projections[ti];
      if (P !== null && P !== undefined && P.byteLength === value.byteLength) {
        P.set(floats(value));
        this.#trainer.model.denseVersion++;
      }
    } else if (key.startsWith('i:')) {
      this.#trainer.importItems([JSON.parse(value.toString())]);
    } else if (key === 'm:clock') {
      this.marker = JSON.parse(value.toString()) as PublishMarker;
    }
  }

  /** Tells the trainer that its parameters changed outside learn(), so read paths refresh. */
  done(): void {
    this.#trainer.invalidateItems(this.#created);
    this.#created = [];
  }

  #applyToken(token: string, data: Float32Array): void {
    const store = this.#store;
    const size = data[0];
    let id = store.id(token);
    if (id < 0) {
      id = store.getOrCreate(token, size);
      this.#created.push(token);
    } else if (store.sizeOf(id) !== size) store.move(id, size, () => {});
    store.linear[id] = data[1];
    if (size > 0) store.tiers[store.tierOf[id]].params.set(data.subarray(2, 2 + size), store.offsetOf(id));
  }
}

/**
 * The record format of the compacted parameter topic that serving replicas follow (and of the
 * serving thread's syncs): the engine's typed changes (ParamChanges, src/engine/replication.ts)
 * as keyed binary records, packed into shared buffers on the way out, decoded back into typed
 * calls on the way in. The transport lives in params.ts.
 *
 *   key            value                                       change
 *   t:<token>      float32 [size, linear, row (size floats)]   token(key, size, linear, row)
 *   t:<token>      null (a tombstone)                          evicted(key)
 *   d:bias         float32 [bias]                              bias(value)
 *   d:P<s>         float32 P_s (s × D)                         projection(s, P)
 *   i:<item>       UTF-8 JSON {fields, active, count}          item(name, json)
 *   m:clock        UTF-8 JSON {publishedAt, learned, seq}      marker(m), written last in every publish
 *
 * A replica that reads the topic from the beginning rebuilds the whole model: compaction keeps
 * the newest record of every key.
 */
import type { ParamChanges, PublishMarker } from '../engine/index.js';
import { ByteWriter } from '../util/bytes.js';

export interface ParamRecord {
  key: string;
  /** null is a tombstone: the token was evicted. */
  value: Buffer | null;
}

/** Keys and key prefixes (the table above). */
const TOKEN = 't:';
const BIAS = 'd:bias';
const PROJECTION = 'd:P';
const ITEM = 'i:';
const MARKER = 'm:clock';

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

/**
 * A collect's sink that writes its changes as records straight into packs: no object, key string
 * or Buffer per record. `tracker.collect(now, new ParamPacker()).finish()` gives the packs.
 */
export class ParamPacker implements ParamChanges {
  readonly packs: PackedRecords[] = [];
  #count = 0;
  #keys = new ByteWriter(1 << 12);
  #keyEnds = new Int32Array(RECORDS_PER_PACK);
  #lengths = new Int32Array(RECORDS_PER_PACK);
  #data = new ByteWriter(1 << 12);
  #f32: Float32Array = new Float32Array(0);

  token(key: string, size: number, linear: Float32Array, at: number, row: Float32Array, rowAt: number): void {
    const to = this.#floats(TOKEN, key, 2 + size);
    const f32 = this.#f32;
    f32[to] = size;
    f32[to + 1] = linear[at];
    for (let j = 0; j < size; j++) f32[to + 2 + j] = row[rowAt + j];
  }

  evicted(key: string): void {
    this.#add(TOKEN, key, -1);
  }

  bias(value: number): void {
    const at = this.#floats(BIAS, '', 1);
    this.#f32[at] = value;
  }

  projection(size: number, P: Float32Array): void {
    const at = this.#floats(PROJECTION, String(size), P.length);
    this.#f32.set(P, at);
  }

  item(name: string, json: string): void {
    this.#text(ITEM, name, json);
  }

  marker(marker: PublishMarker): void {
    this.#text(MARKER, '', JSON.stringify(marker));
  }

  /** The packs, the last one closed. */
  finish(): PackedRecords[] {
    if (this.#count > 0) this.#close();
    return this.packs;
  }

  /**
   * Room for `n` float32 values under the key `prefix` + `name`: returns their index in `#f32`
   * (the pack's values as floats, valid until the next record).
   */
  #floats(prefix: string, name: string, n: number): number {
    const at = this.#add(prefix, name, 4 * n);
    this.#data.reserve(4 * n);
    this.#data.used += 4 * n;
    const b = this.#data.buffer;
    if (this.#f32.buffer !== b.buffer) this.#f32 = new Float32Array(b.buffer, b.byteOffset, b.length / 4);
    return at / 4;
  }

  #text(prefix: string, name: string, text: string): void {
    const at = this.#add(prefix, name, 0);
    this.#data.write(text);
    this.#lengths[this.#count - 1] = this.#data.used - at;
    this.#data.used = aligned(this.#data.used);
  }

  /**
   * Adds a record of `length` bytes, its key written as `prefix` then `name` (no string made for
   * it); returns the byte offset its value starts at.
   */
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

/** The float32 values of a record: a view when aligned (no copy), else a copy. */
function floats(value: Buffer): Float32Array {
  return value.byteOffset % 4 === 0
    ? new Float32Array(value.buffer, value.byteOffset, value.byteLength / 4)
    : new Float32Array(value.buffer.slice(value.byteOffset, value.byteOffset + value.byteLength));
}

/**
 * Decodes one record into the change it carries (a key it does not know is skipped). Call the
 * applier's done() after a batch.
 */
export function applyRecord(record: ParamRecord, to: ParamChanges): void {
  const { key, value } = record;
  if (key.startsWith(TOKEN)) {
    const token = key.slice(TOKEN.length);
    if (value === null) {
      to.evicted(token);
      return;
    }
    const v = floats(value);
    to.token(token, v[0], v, 1, v, 2);
    return;
  }
  if (value === null) return;
  if (key.startsWith(PROJECTION)) to.projection(Number(key.slice(PROJECTION.length)), floats(value));
  else if (key === BIAS) to.bias(value.readFloatLE(0));
  else if (key.startsWith(ITEM)) to.item(key.slice(ITEM.length), value.toString('utf8'));
  else if (key === MARKER) to.marker(JSON.parse(value.toString('utf8')) as PublishMarker);
}

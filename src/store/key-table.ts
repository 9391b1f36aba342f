/**
 * Key -> token id as an open-addressing hash table over typed arrays: 4 bytes a slot and 4 bytes
 * an id for its key's hash, about 13 bytes a token, where a V8 Map took 28 bytes a slot (about 45
 * a token, and twice that for a while when deleted entries filled it). At 10% of full's bytes a
 * token at size 8 cost its 68-byte row plus about 130 bytes of columns, key and index: the index was
 * a third of that. Linear probing with backward-shift deletion: no tombstones, so churn never
 * grows the table; it doubles past a load of 0.6 and halves under 1/8.
 */
import type { Bytes } from '../util/bytes.js';
import { fnv1a } from '../util/hash.js';
import type { TokenId } from './columns.js';

const EMPTY = -1;
const MIN_CAPACITY = 16;
/** The table doubles past this load. */
const MAX_LOAD = 0.6;

/** FNV-1a finished with murmur3's mix (linear probing needs the low bits well spread). */
export function hashKey(key: string): number {
  let h = fnv1a(key);
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

export class KeyTable {
  #slots = new Int32Array(MIN_CAPACITY).fill(EMPTY);
  #mask = MIN_CAPACITY - 1;
  /** Hash of each id's key (valid for live ids), as long as the id columns. */
  #hashes = new Uint32Array(0);
  size = 0;
  /** Key of each id: the key index's list, read to tell keys of one hash apart. */
  readonly #keys: readonly string[];

  constructor(keys: readonly string[]) {
    this.#keys = keys;
  }

  get capacity(): number {
    return this.#slots.length;
  }

  /** Bytes of the slots (the per-id hashes are token columns: accounting.ts tokenColumnBytes). */
  get bytes(): Bytes {
    return this.#slots.byteLength;
  }

  /** Extra bytes inserting one more key would allocate. */
  growthOnInsert(): Bytes {
    return this.#fullAt(this.size + 1) ? this.#slots.byteLength : 0;
  }

  /** Grows the per-id hash column with the id columns. */
  growIds(capacity: number): void {
    const grown = new Uint32Array(capacity);
    grown.set(this.#hashes.subarray(0, Math.min(capacity, this.#hashes.length)));
    this.#hashes = grown;
  }

  /** The hash (hashKey) of live id `id`'s key, as inserted. */
  hashOf(id: TokenId): number {
    return this.#hashes[id];
  }

  /** The id of `key`, or -1. */
  get(key: string): TokenId {
    const h = hashKey(key);
    const slots = this.#slots;
    const mask = this.#mask;
    for (let i = h & mask; ; i = (i + 1) & mask) {
      const id = slots[i];
      if (id === EMPTY) return -1;
      if (this.#hashes[id] === h && this.#keys[id] === key) return id;
    }
  }

  /** Adds `id` under `key` (absent, and already in the key list). */
  insert(id: TokenId, key: string): void {
    if (this.#fullAt(this.size + 1)) this.#rehash(this.capacity * 2);
    const h = hashKey(key);
    this.#hashes[id] = h;
    this.#place(id, h);
    this.size++;
  }

  /** Removes `id` (present), shifting back the keys that probed past its slot. */
  remove(id: TokenId): void {
    const slots = this.#slots;
    const mask = this.#mask;
    let hole = this.#hashes[id] & mask;
    while (slots[hole] !== id) hole = (hole + 1) & mask;
    for (let j = (hole + 1) & mask; slots[j] !== EMPTY; j = (j + 1) & mask) {
      const home = this.#hashes[slots[j]] & mask;
      // The key at j may move into the hole unless its home lies cyclically in (hole, j].
      const stays = hole <= j ? hole < home && home <= j : hole < home || home <= j;
      if (!stays) {
        slots[hole] = slots[j];
        hole = j;
      }
    }
    slots[hole] = EMPTY;
    this.size--;
    if (this.capacity > MIN_CAPACITY && this.size < this.capacity / 8) this.#rehash(this.capacity / 2);
  }

  /** Whether the table could have `capacity` slots: a power of two, 16 at least, load <= 0.6. */
  canHold(capacity: number): boolean {
    return (
      capacity >= MIN_CAPACITY && Number.isInteger(Math.log2(capacity)) && this.size <= capacity * MAX_LOAD
    );
  }

  /** Whether `keys` keys would load the table past MAX_LOAD. */
  #fullAt(keys: number): boolean {
    return keys > this.capacity * MAX_LOAD;
  }

  /** Rebuilds at `capacity` slots (a restore sets the capacity the snapshot's table had). */
  resize(capacity: number): void {
    if (!this.canHold(capacity)) throw new RangeError(`key table capacity ${capacity} for ${this.size} keys`);
    this.#rehash(capacity);
  }

  #place(id: TokenId, h: number): void {
    const slots = this.#slots;
    const mask = this.#mask;
    let i = h & mask;
    while (slots[i] !== EMPTY) i = (i + 1) & mask;
    slots[i] = id;
  }

  #rehash(capacity: number): void {
    const old = this.#slots;
    this.#slots = new Int32Array(capacity).fill(EMPTY);
    this.#mask = capacity - 1;
    for (let i = 0; i < old.length; i++) if (old[i] !== EMPTY) this.#place(old[i], this.#hashes[old[i]]);
  }
}

/**
 * Token key -> id, and the per-field bookkeeping that rides on keys: the field table (the part of a
 * key before its first '='), tokens per (field, tier) and the bytes the keys keep alive. Keys are
 * found through a typed-array hash table (key-table.ts) whose bytes are exact.
 */
import { PmeError } from '../errors.js';
import type { Bytes } from '../util/bytes.js';
import { type FieldStats, stringBytes } from './accounting.js';
import type { TokenColumns, TokenId } from './columns.js';
import { KeyTable } from './key-table.js';

/** Most distinct fields (a token's field is a Uint16 in the columns). */
export const MAX_FIELDS = 0x10000;

export class KeyIndex {
  /** Key of each id ('' for a free id), as long as the id columns. */
  readonly keys: string[] = [];
  readonly table = new KeyTable(this.keys);
  /** Bytes of the key strings held. */
  keyBytes: Bytes = 0;
  /** Live tokens. */
  size = 0;
  readonly fieldNames: string[] = [];
  readonly #fieldIndex = new Map<string, number>();
  /** Tokens per (field, tier): field * tierCount + tier. */
  #fieldTier = new Int32Array(0);
  readonly #fieldKeyBytes: number[] = [];
  readonly #tierCount: number;

  constructor(tierCount: number) {
    this.#tierCount = tierCount;
  }

  /** The id of `key`, or -1. */
  get(key: string): TokenId {
    return this.table.get(key);
  }

  /** Extra bytes the key index would take for a new `key` (its string and any table growth). */
  costOf(key: string): Bytes {
    return stringBytes(key) + this.table.growthOnInsert();
  }

  /** The field of `key` ('' when it has no '='). */
  static fieldOf(key: string): string {
    const eq = key.indexOf('=');
    return eq < 0 ? '' : key.slice(0, eq);
  }

  /** Registers a live token: its key, its field and its tier's count. */
  register(c: TokenColumns, id: TokenId, key: string, tier: number): void {
    const L = this.#tierCount;
    const field = KeyIndex.fieldOf(key);
    let f = this.#fieldIndex.get(field);
    if (f === undefined) {
      f = this.fieldNames.length;
      if (f >= MAX_FIELDS) throw new PmeError('PME_ERR_BAD_REQUEST', 'more than 65536 distinct token fields');
      this.fieldNames.push(field);
      this.#fieldIndex.set(field, f);
      this.#fieldKeyBytes.push(0);
      if (this.#fieldTier.length < (f + 1) * L) {
        const grown = new Int32Array(Math.max(8, f * 2) * L);
        grown.set(this.#fieldTier);
        this.#fieldTier = grown;
      }
    }
    const bytes = stringBytes(key);
    this.keys[id] = key;
    c.fieldOf[id] = f;
    this.#fieldTier[f * L + tier]++;
    this.#fieldKeyBytes[f] += bytes;
    this.keyBytes += bytes;
    this.table.insert(id, key);
    this.size++;
  }

  /** Forgets a token that leaves tier `tier`. */
  remove(c: TokenColumns, id: TokenId, tier: number): void {
    const key = this.keys[id];
    const bytes = stringBytes(key);
    const f = c.fieldOf[id];
    this.#fieldTier[f * this.#tierCount + tier]--;
    this.#fieldKeyBytes[f] -= bytes;
    this.keyBytes -= bytes;
    this.table.remove(id);
    this.size--;
    this.keys[id] = '';
  }

  /** A token of field `c.fieldOf[id]` moved from tier `from` to tier `to`. */
  moved(c: TokenColumns, id: TokenId, from: number, to: number): void {
    const f = c.fieldOf[id];
    this.#fieldTier[f * this.#tierCount + from]--;
    this.#fieldTier[f * this.#tierCount + to]++;
  }

  /** Live tokens of field `f` (O(ladder length)). */
  fieldTokens(f: number): number {
    const L = this.#tierCount;
    let n = 0;
    for (let ti = 0; ti < L; ti++) n += this.#fieldTier[f * L + ti];
    return n;
  }

  /** Grows the key list with the id columns. */
  grow(capacity: number): void {
    for (let i = this.keys.length; i < capacity; i++) this.keys.push('');
    this.table.growIds(capacity);
  }

  /** Tokens and bytes per field; `rowBytes[tier]` is a row's cost, `idBytes` a token's columns. */
  fieldStats(sizes: readonly number[], rowBytes: readonly number[], idBytes: number): FieldStats[] {
    const L = this.#tierCount;
    const mapShare = this.size > 0 ? this.table.bytes / this.size : 0;
    return this.fieldNames.map((field, f) => {
      let tokens = 0;
      let bytes = this.#fieldKeyBytes[f];
      const tiers: Record<number, number> = {};
      for (let ti = 0; ti < L; ti++) {
        const n = this.#fieldTier[f * L + ti];
        tiers[sizes[ti]] = n;
        tokens += n;
        bytes += n * rowBytes[ti];
      }
      bytes += tokens * (idBytes + mapShare);
      return { field, tokens, bytes: Math.round(bytes), tiers };
    });
  }
}

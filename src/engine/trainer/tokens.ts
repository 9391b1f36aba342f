/**
 * From an event to its tokens: the field codes rows carry, the key caches that spare building a
 * `field=value` key per token, and the resolution of an event's user and item sides into a row,
 * through the store's getOrCreateMany (the tokens of one event are created together, so the budget
 * never evicts one of them to make room for another).
 */
import { ARRAY_SLOT_BYTES, mapBytesEstimate, stringBytes } from '../../store/accounting.js';
import type { Milliseconds } from '../../util/clock.js';
import type { Rows, TokenId } from '../model/model.js';
import type { Catalog, ItemEntry } from './catalog.js';
import { CROSS_FIELD, crossKey } from './cross.js';
import type { TokenObserver, TrainerStore } from './options.js';

/** Field names by small code, in the order first met: 'user' 0, 'item' 1, then the others. */
export class FieldCodes {
  /** Code → name; grows in place (Rows share it). */
  readonly names: string[] = ['user', 'item'];
  readonly #codes = new Map<string, number>([
    ['user', 0],
    ['item', 1],
  ]);
  /** Heap bytes of the names (stringBytes), kept as they are added. */
  #nameBytes = stringBytes('user') + stringBytes('item');

  /** The code of `name`, registered when new. */
  code(name: string): number {
    let code = this.#codes.get(name);
    if (code === undefined) {
      code = this.names.length;
      this.names.push(name);
      this.#codes.set(name, code);
      this.#nameBytes += stringBytes(name);
    }
    return code;
  }

  /** Bytes of the names, their array and their Map: an estimate (V8 slots, flat strings). */
  bytes(): number {
    return this.#nameBytes + this.names.length * ARRAY_SLOT_BYTES + mapBytesEstimate(this.#codes.size);
  }

  /** The code of `name`, -1 when it was never met (no side effect). */
  peek(name: string): number {
    return this.#codes.get(name) ?? -1;
  }
}

/**
 * Raw values of the resolved tokens seen lately, summed over every field: a bound on the key
 * caches. Two generations of at most this many entries each are kept: ≈ 55 bytes an entry with a
 * short value (heap delta of such a Map, Node 20), so under 4 MB. The store's budget does not count
 * them: they are reported beside it (`keyCaches`, TokenResolver.bytes). Trainer.learn with these
 * caches: bench/train.ts, "Trainer.learn (string keys)".
 */
const KEY_CACHE_ENTRIES = 1 << 15;

/**
 * Raw value → token id for one field, so that learning resolves a token without building its
 * `field=value` key (a concatenation, then flattening and hashing the new string in the store's
 * index). Two generations, young and old: a hit in old moves to young; when the young entries of
 * all caches reach KEY_CACHE_ENTRIES every cache drops its old generation (LRU-ish, no per-entry
 * list). Entries are removed when the store evicts their token (its id may be reused).
 */
class KeyCache {
  readonly prefix: string;
  /** The field's code (FieldCodes). */
  readonly code: number;
  young = new Map<string, TokenId>();
  old = new Map<string, TokenId>();
  /** Heap bytes of the value strings each generation keeps (stringBytes: flat strings assumed). */
  #youngStrings = 0;
  #oldStrings = 0;

  constructor(field: string, code: number) {
    this.prefix = `${field}=`;
    this.code = code;
  }

  /** The id of `value` in the old generation, or -1; a hit leaves old (the caller adds it to young). */
  takeOld(value: string): TokenId {
    const id = this.old.get(value);
    if (id === undefined) return -1;
    this.old.delete(value);
    this.#oldStrings -= stringBytes(value);
    return id;
  }

  /** Remembers `value` → `id` in the young generation. */
  remember(value: string, id: TokenId): void {
    const before = this.young.size;
    this.young.set(value, id);
    if (this.young.size > before) this.#youngStrings += stringBytes(value);
  }

  /** Forgets `key` if this cache holds it for `id`. */
  forget(id: TokenId, key: string): void {
    if (!key.startsWith(this.prefix)) return;
    const value = key.slice(this.prefix.length);
    if (this.young.get(value) === id) {
      this.young.delete(value);
      this.#youngStrings -= stringBytes(value);
    }
    if (this.old.get(value) === id) {
      this.old.delete(value);
      this.#oldStrings -= stringBytes(value);
    }
  }

  rotate(): void {
    this.old = this.young;
    this.#oldStrings = this.#youngStrings;
    this.young = new Map();
    this.#youngStrings = 0;
  }

  /** Bytes of both generations: their Map tables (estimated from their sizes, see
   *  mapBytesEstimate) and the value strings they keep (tracked as they come and go). */
  bytes(): number {
    return (
      mapBytesEstimate(this.young.size) +
      mapBytesEstimate(this.old.size) +
      this.#youngStrings +
      this.#oldStrings +
      stringBytes(this.prefix)
    );
  }
}

/** Tells nobody: the observer when none is given, so resolution never asks. */
export const NO_OBSERVER: TokenObserver = Object.freeze({ observe() {}, endBatch() {} });

/** Resolves events into rows (ids and field codes), creating their tokens, touching and observing them. */
export class TokenResolver {
  readonly #store: TrainerStore;
  readonly #catalog: Catalog;
  readonly #codes: FieldCodes;
  readonly #observer: TokenObserver;
  /** Key caches: the user's, and one per event field name. */
  readonly #userKeys: KeyCache;
  readonly #fieldKeys = new Map<string, KeyCache>();
  /** Entries added to the young generations since the last rotation. */
  #youngKeys = 0;
  // One event's tokens before they reach its row: key (null: id already known), id, field code,
  // and the cache and value a new id is remembered under (null: not cached).
  readonly #keys: (string | null)[];
  readonly #ids: Int32Array;
  readonly #fields: Int32Array;
  readonly #missCache: (KeyCache | null)[];
  readonly #missValue: (string | null)[];
  /** Where the item token is among them, -1 when the row had no room for it. */
  #itemAt = -1;
  /** The cross field's code, -1 when events carry no user × item cross token. */
  readonly #crossCode: number;
  /** How many of them have a key to create, and how many an id to remember in a cache. */
  #toCreate = 0;
  #toRemember = 0;

  constructor(
    store: TrainerStore,
    catalog: Catalog,
    codes: FieldCodes,
    observer: TokenObserver,
    maxTokens: number,
    cross: boolean,
  ) {
    this.#store = store;
    this.#catalog = catalog;
    this.#codes = codes;
    this.#observer = observer;
    this.#crossCode = cross ? codes.code(CROSS_FIELD) : -1;
    this.#userKeys = new KeyCache('user', codes.code('user'));
    this.#keys = new Array<string | null>(maxTokens).fill(null);
    this.#ids = new Int32Array(maxTokens);
    this.#fields = new Int32Array(maxTokens);
    this.#missCache = new Array<KeyCache | null>(maxTokens).fill(null);
    this.#missValue = new Array<string | null>(maxTokens).fill(null);
  }

  /**
   * Resolves an event into row r: the user, then its fields that the item's catalog does not name
   * (those belong to the item side), then the item and its catalog fields, then the pair's cross
   * token (crossUserItem, created at size 0). Returns how many tokens the user side has (a
   * negative of this event keeps them).
   */
  event(
    user: string,
    fields: Readonly<Record<string, string>>,
    entry: ItemEntry,
    rows: Rows,
    r: number,
    now: Milliseconds,
  ): number {
    const max = this.#keys.length;
    const itemFields = entry.fieldNames.size > 0 ? entry.fieldNames : null;
    let n = this.#cached(this.#userKeys, user, 0);
    for (const name in fields) {
      if (itemFields?.has(name)) continue;
      if (n === max) break;
      n = this.#cached(this.#fieldCache(name), fields[name], n);
    }
    let userCount = n;
    n = this.#itemSide(entry, n);
    const linearFrom = n;
    // Limits keeps a place for it in every admitted event's row.
    if (this.#crossCode >= 0 && n < max) {
      this.#put(n++, crossKey(user, entry.item), -1, this.#crossCode);
      this.#toCreate++;
    }
    const made = this.#create(entry, n, now, linearFrom);
    // Tokens the budget could not hold are left out of the row (and counted by the store).
    if (made < n) userCount -= this.#compact(n, 0, userCount);
    this.#write(rows, r, 0, made, now);
    return userCount;
  }

  /**
   * Resolves a negative into row r, whose first `userCount` tokens are already its event's user
   * side. The pair's cross token joins only if it exists: a drawn pair never creates one.
   */
  negative(
    user: string,
    entry: ItemEntry,
    rows: Rows,
    r: number,
    userCount: number,
    now: Milliseconds,
  ): void {
    const keys = this.#keys;
    const ids = this.#ids;
    const at = r * rows.stride;
    for (let k = 0; k < userCount; k++) {
      keys[k] = null;
      ids[k] = rows.ids[at + k];
    }
    let n = this.#itemSide(entry, userCount);
    if (this.#crossCode >= 0 && n < keys.length) {
      const id = this.#store.id(crossKey(user, entry.item));
      if (id >= 0) this.#put(n++, null, id, this.#crossCode);
    }
    const made = this.#create(entry, n, now);
    if (made < n) this.#compact(n, userCount, userCount);
    this.#write(rows, r, userCount, made, now);
  }

  /**
   * Looks an event up into row r without creating or touching anything: unknown tokens are left
   * out (they contribute nothing). `entry` is undefined for an item the catalog does not know.
   */
  lookup(
    user: string,
    fields: Readonly<Record<string, string>>,
    item: string,
    entry: ItemEntry | undefined,
    rows: Rows,
    r: number,
  ): void {
    const store = this.#store;
    const codes = this.#codes;
    const at = r * rows.stride;
    const max = rows.stride;
    let n = 0;
    const put = (id: TokenId, code: number): void => {
      if (id < 0 || n === max) return;
      rows.ids[at + n] = id;
      rows.fields[at + n++] = code;
    };
    put(store.id(`user=${user}`), 0);
    for (const name in fields)
      if (entry === undefined || !entry.fieldNames.has(name))
        put(store.id(`${name}=${fields[name]}`), codes.peek(name));
    put(store.id(`item=${item}`), 1);
    if (entry !== undefined) {
      const catalog = this.#catalog;
      const g = catalog.itemSig[entry.index];
      for (let j = catalog.sigStart[g], end = j + catalog.sigLength[g]; j < end; j++) {
        const f = catalog.sigFields[j];
        put(store.id(catalog.fieldKey(f)), catalog.fieldCode(f));
      }
    }
    if (this.#crossCode >= 0) put(store.id(crossKey(user, item)), this.#crossCode);
    rows.counts[r] = n;
  }

  /**
   * Bytes of the key caches (both generations of every field's, see KeyCache.bytes), the Map of
   * them by field, and one event's scratch arrays. An estimate: V8 hash-table slots and flat
   * strings, not a measurement of the heap.
   */
  bytes(): number {
    let bytes = this.#userKeys.bytes() + mapBytesEstimate(this.#fieldKeys.size);
    for (const cache of this.#fieldKeys.values()) bytes += cache.bytes();
    return (
      bytes + this.#ids.byteLength + this.#fields.byteLength + 3 * this.#keys.length * ARRAY_SLOT_BYTES // #keys, #missCache, #missValue
    );
  }

  /** An evicted token: caches holding its id forget it (the store will reuse the id). */
  forget(id: TokenId, key: string): void {
    this.#userKeys.forget(id, key);
    for (const cache of this.#fieldKeys.values()) cache.forget(id, key);
  }

  #fieldCache(name: string): KeyCache {
    let cache = this.#fieldKeys.get(name);
    if (cache === undefined) {
      cache = new KeyCache(name, this.#codes.code(name));
      this.#fieldKeys.set(name, cache);
    }
    return cache;
  }

  /** Token k of the event from a key cache: its id when cached, else its key to create. */
  #cached(cache: KeyCache, value: string, k: number): number {
    const young = cache.young.get(value);
    this.#fields[k] = cache.code;
    if (young !== undefined) {
      this.#keys[k] = null;
      this.#ids[k] = young;
      this.#missCache[k] = null;
      return k + 1;
    }
    // Found in the old generation (it moves to young) or not at all: remembered after creation.
    const old = cache.takeOld(value);
    if (old < 0) {
      this.#keys[k] = cache.prefix + value;
      this.#toCreate++;
    } else this.#keys[k] = null;
    this.#ids[k] = old;
    this.#missCache[k] = cache;
    this.#missValue[k] = value;
    this.#toRemember++;
    return k + 1;
  }

  /** Token k of the event: its key to create (null: `id` is live already) and field code. */
  #put(k: number, key: string | null, id: TokenId, code: number): void {
    this.#keys[k] = key;
    this.#ids[k] = id;
    this.#fields[k] = code;
    this.#missCache[k] = null;
  }

  /** The item token and its catalog fields from token `n` on; returns the new count. */
  #itemSide(entry: ItemEntry, n: number): number {
    const max = this.#keys.length;
    const catalog = this.#catalog;
    this.#itemAt = -1;
    if (n < max) {
      // The item's token id is kept per item and forgotten when the store evicts it.
      const id = catalog.itemToken[entry.index];
      this.#itemAt = n;
      if (id < 0) this.#toCreate++;
      this.#put(n++, id < 0 ? entry.key : null, id, 1);
    }
    const g = catalog.itemSig[entry.index];
    for (let j = catalog.sigStart[g], end = j + catalog.sigLength[g]; j < end && n < max; j++) {
      const f = catalog.sigFields[j];
      // The field token's id as the catalog last found it (forgotten when the store evicts it).
      const id = catalog.fieldToken(f);
      if (id < 0) this.#toCreate++;
      this.#put(n++, id < 0 ? catalog.fieldKey(f) : null, id, catalog.fieldCode(f));
    }
    return n;
  }

  /**
   * Creates the tokens [0, n) that are new, together (those from `linearFrom` on at size 0);
   * remembers new ids in the caches and the item's token in the catalog. A token the budget cannot
   * hold is not created (its id is -1); returns how many tokens the row keeps (n less those).
   */
  #create(entry: ItemEntry, n: number, now: Milliseconds, linearFrom = n): number {
    const ids = this.#ids;
    let refused = 0;
    // Every id known (the usual case): nothing is created, so nothing can be evicted either.
    if (this.#toCreate > 0) {
      this.#toCreate = 0;
      refused = this.#store.getOrCreateMany(this.#keys, ids, now, n, true, linearFrom);
      const itemAt = this.#itemAt;
      if (itemAt >= 0 && this.#keys[itemAt] !== null && ids[itemAt] >= 0)
        this.#catalog.setItemToken(entry.index, ids[itemAt]);
    }
    if (this.#toRemember > 0) this.#remember(n);
    return n - refused;
  }

  /** Moves the ids kept among [from, n) down over the refused ones (-1); returns how many of
   *  [from, before) were refused. */
  #compact(n: number, from: number, before: number): number {
    const ids = this.#ids;
    const fields = this.#fields;
    let w = from;
    let dropped = 0;
    for (let k = from; k < n; k++) {
      if (ids[k] < 0) {
        if (k < before) dropped++;
        continue;
      }
      ids[w] = ids[k];
      fields[w++] = fields[k];
    }
    return dropped;
  }

  /** New ids (and old-generation hits) into the young generation of their caches. */
  #remember(n: number): void {
    const ids = this.#ids;
    this.#toRemember = 0;
    for (let k = 0; k < n; k++) {
      const cache = this.#missCache[k];
      if (cache === null) continue;
      this.#missCache[k] = null;
      if (ids[k] < 0) continue;
      cache.remember(this.#missValue[k]!, ids[k]);
      if (++this.#youngKeys >= KEY_CACHE_ENTRIES) {
        this.#youngKeys = 0;
        this.#userKeys.rotate();
        for (const c of this.#fieldKeys.values()) c.rotate();
      }
    }
  }

  /** Tokens [from, n) into row r (ids and codes), touched at `now` and shown to the observer
   *  (but cross tokens: they stay at size 0, so PME has nothing to size). */
  #write(rows: Rows, r: number, from: number, n: number, now: Milliseconds): void {
    const store = this.#store;
    const observer = this.#observer;
    const at = r * rows.stride;
    const ids = this.#ids;
    for (let k = from; k < n; k++) {
      const id = ids[k];
      const code = this.#fields[k];
      rows.ids[at + k] = id;
      rows.fields[at + k] = code;
      store.touch(id, now);
      if (code !== this.#crossCode) observer.observe(id);
    }
    rows.counts[r] = n;
  }
}

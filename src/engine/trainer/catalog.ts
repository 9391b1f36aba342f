/**
 * The items the trainer knows (from the catalog topic, or first seen in the stream): their token
 * ids, their field signatures (distinct sets of `field=value` keys, stored once and shared, as CSR
 * lists of field-token indexes), their active flags and popularity, and their export / import for
 * snapshots and the parameter topic. Token ids are cached here and forgotten when the store evicts
 * them (their ids are reused).
 */
import type { CatalogItem } from '../../data/event.js';
import { ARRAY_SLOT_BYTES, mapBytesEstimate, setBytesEstimate, stringBytes } from '../../store/accounting.js';
import type { TokenId } from '../model/model.js';
import { PopularitySampler } from '../negatives.js';
import { grownInt32, grownUint8 } from './arrays.js';
import type { TrainerStore } from './options.js';
import type { FieldCodes } from './tokens.js';

/** An item as snapshots and the parameter topic carry it. */
export interface ExportedItem {
  item: string;
  fields: Record<string, string>;
  active: boolean;
  count: number;
}

/** The catalog as snapshots hold it (names and signatures, then exportColumns). */
export interface ExportedCatalog {
  names: string[];
  /** Sorted `field=value` keys of each signature. */
  signatures: string[][];
  /** Per item: index into signatures, active (1/0), event count. */
  signature: Int32Array;
  active: Uint8Array;
  count: Float64Array;
}

/** One item known to the trainer. */
export interface ItemEntry {
  readonly index: number;
  readonly item: string;
  readonly key: string;
  /** `field=value` keys of its catalog fields, sorted (shared by the items of one signature). */
  fieldKeys: readonly string[];
  /** Names of its catalog fields: those event fields belong to the item side. */
  fieldNames: ReadonlySet<string>;
  active: boolean;
}

/** Signature of items without catalog fields (and of items unknown to the trainer). */
export const EMPTY_SIGNATURE = 0;

/** Heap bytes of one ItemEntry object: 3 header words and 6 in-object fields (Node 20, no pointer
 *  compression; measured: 72 bytes an entry). An estimate. */
const ITEM_ENTRY_BYTES = 72;
/** Heap bytes of an empty JS array or Set object besides its elements or table (map, properties,
 *  elements or table, length): an estimate. */
const OBJECT_BYTES = 32;
/** The FixedArray header of an array's elements. */
const ELEMENTS_HEADER_BYTES = 16;

/** Whether an item already has exactly these catalog fields. */
function sameFields(entry: ItemEntry, fields: Readonly<Record<string, string>>): boolean {
  let n = 0;
  for (const name in fields) {
    if (!entry.fieldKeys.includes(`${name}=${fields[name]}`)) return false;
    n++;
  }
  return n === entry.fieldKeys.length;
}

/** Field keys (`name=value`) as the `fields` object of a catalog item. */
export function fieldsOf(keys: readonly string[]): Record<string, string> {
  return Object.fromEntries(keys.map((k) => [k.slice(0, k.indexOf('=')), k.slice(k.indexOf('=') + 1)]));
}

export class Catalog {
  readonly popularity: PopularitySampler;
  readonly #store: TrainerStore;
  readonly #items = new Map<string, ItemEntry>();
  readonly #list: ItemEntry[] = [];
  /** Bumped when an item is added or its signature changes. */
  #version = 0;
  // Per item (by ItemEntry.index): its token id as last resolved (-1 none), signature, active.
  #itemToken = new Int32Array(0);
  #itemSig = new Int32Array(0);
  #itemActive = new Uint8Array(0);
  // Field tokens (by key) and signatures (distinct sets of them, CSR lists).
  readonly #ftIndex = new Map<string, number>();
  readonly #ftKeys: string[] = [];
  /** Field code (FieldCodes) of each field token. */
  #ftCode = new Int32Array(0);
  /** Field token ids as last resolved (-1: absent then, resolved again on the next read). */
  #ftTok = new Int32Array(0);
  readonly #sigIndex = new Map<string, number>();
  /** Per signature: its sorted `field=value` keys, its field names, its fields as JSON. */
  readonly #sigKeys: string[][] = [];
  readonly #sigNames: Set<string>[] = [];
  readonly #sigFieldsJson: string[] = [];
  #sigStart = new Int32Array(0);
  #sigLength = new Int32Array(0);
  #sigFields = new Int32Array(0);
  #sigFieldsUsed = 0;
  /** Estimated heap bytes of what the catalog adds per item and signature besides its typed
   *  columns and Map tables: entries, strings, per-signature arrays and sets (see bytes()). */
  #heapBytes = 0;

  readonly #codes: FieldCodes;

  constructor(store: TrainerStore, codes: FieldCodes, negativeExponent: number) {
    this.#store = store;
    this.#codes = codes;
    this.popularity = new PopularitySampler(negativeExponent);
    this.#signature([]);
  }

  get size(): number {
    return this.#list.length;
  }
  get version(): number {
    return this.#version;
  }
  get signatureCount(): number {
    return this.#sigKeys.length;
  }
  get fieldTokenCount(): number {
    return this.#ftKeys.length;
  }
  // The per-item and per-signature columns. Replaced when they grow: read them on each call.
  get itemToken(): Int32Array {
    return this.#itemToken;
  }
  get itemSig(): Int32Array {
    return this.#itemSig;
  }
  get itemActive(): Uint8Array {
    return this.#itemActive;
  }
  get sigStart(): Int32Array {
    return this.#sigStart;
  }
  get sigLength(): Int32Array {
    return this.#sigLength;
  }
  /** Field-token indexes of every signature, at sigStart[g] .. + sigLength[g]. */
  get sigFields(): Int32Array {
    return this.#sigFields;
  }

  entry(item: string): ItemEntry | undefined {
    return this.#items.get(item);
  }
  at(index: number): ItemEntry {
    return this.#list[index];
  }
  fieldKey(f: number): string {
    return this.#ftKeys[f];
  }
  /** The field code of field token f. */
  fieldCode(f: number): number {
    return this.#ftCode[f];
  }
  /** The field keys (`name=value`, sorted) of signature `g`. */
  signatureKeys(g: number): readonly string[] {
    return this.#sigKeys[g];
  }

  /** The token id of field token f, cached until the store evicts it (-1: absent). */
  fieldToken(f: number): TokenId {
    let id = this.#ftTok[f];
    if (id < 0) {
      id = this.#store.id(this.#ftKeys[f]);
      this.#ftTok[f] = id;
    }
    return id;
  }

  /** The item's token, created (or found) by the trainer: kept until the store evicts it. */
  setItemToken(index: number, id: TokenId): void {
    this.#itemToken[index] = id;
  }

  /** Adds an item without catalog fields (first seen in the stream, or before its fields). */
  add(item: string): ItemEntry {
    const entry: ItemEntry = {
      index: this.popularity.add(),
      item,
      key: `item=${item}`,
      fieldKeys: this.#sigKeys[EMPTY_SIGNATURE],
      fieldNames: this.#sigNames[EMPTY_SIGNATURE],
      active: true,
    };
    this.#items.set(item, entry);
    this.#list.push(entry);
    this.#heapBytes += ITEM_ENTRY_BYTES + stringBytes(item) + stringBytes(entry.key);
    const n = entry.index + 1;
    this.#itemToken = grownInt32(this.#itemToken, n, -1);
    this.#itemSig = grownInt32(this.#itemSig, n);
    this.#itemActive = grownUint8(this.#itemActive, n);
    this.#itemToken[entry.index] = this.#store.id(entry.key);
    this.#itemSig[entry.index] = EMPTY_SIGNATURE;
    this.#itemActive[entry.index] = 1;
    this.#version++;
    return entry;
  }

  /** Sets an item's fields and activity; the caller adds the item first when new. */
  update(entry: ItemEntry, item: CatalogItem): void {
    const fieldKeys: string[] = [];
    for (const name in item.fields) fieldKeys.push(`${name}=${item.fields[name]}`);
    const sig = this.#signature(fieldKeys);
    // One keys array and one name set per signature, not per item: a large catalog holds far
    // fewer heap objects (less memory, shorter full garbage collections).
    entry.fieldKeys = this.#sigKeys[sig];
    entry.fieldNames = this.#sigNames[sig];
    entry.active = item.active;
    if (this.#itemSig[entry.index] !== sig) this.#version++;
    this.#itemSig[entry.index] = sig;
    this.#itemActive[entry.index] = item.active ? 1 : 0;
    this.popularity.setActive(entry.index, item.active);
  }

  /** The signature of a set of field keys, registered when new. */
  #signature(fieldKeys: readonly string[]): number {
    const sorted = [...fieldKeys].sort();
    const name = sorted.join('\u0001');
    const known = this.#sigIndex.get(name);
    if (known !== undefined) return known;
    const g = this.#sigIndex.size;
    this.#sigIndex.set(name, g);
    this.#sigKeys.push(sorted);
    const names = new Set(sorted.map((key) => key.slice(0, key.indexOf('='))));
    this.#sigNames.push(names);
    const json = JSON.stringify(fieldsOf(sorted));
    this.#sigFieldsJson.push(json);
    // The name and JSON strings, the keys array, the names Set (its name strings are field names,
    // counted with the field codes) and the three per-signature list slots.
    this.#heapBytes +=
      stringBytes(name) +
      stringBytes(json) +
      OBJECT_BYTES +
      ELEMENTS_HEADER_BYTES +
      sorted.length * ARRAY_SLOT_BYTES +
      OBJECT_BYTES +
      setBytesEstimate(names.size) +
      3 * ARRAY_SLOT_BYTES;
    for (const key of sorted) {
      if (this.#ftIndex.has(key)) continue;
      const f = this.#ftKeys.length;
      this.#heapBytes += stringBytes(key) + ARRAY_SLOT_BYTES;
      this.#ftIndex.set(key, f);
      this.#ftKeys.push(key);
      this.#ftCode = grownInt32(this.#ftCode, f + 1);
      this.#ftCode[f] = this.#codes.code(key.slice(0, key.indexOf('=')));
      this.#ftTok = grownInt32(this.#ftTok, f + 1, -1);
      this.#ftTok[f] = -1;
    }
    const n = g + 1;
    this.#sigStart = grownInt32(this.#sigStart, n);
    this.#sigLength = grownInt32(this.#sigLength, n);
    this.#sigFields = grownInt32(this.#sigFields, this.#sigFieldsUsed + fieldKeys.length);
    this.#sigStart[g] = this.#sigFieldsUsed;
    this.#sigLength[g] = fieldKeys.length;
    for (const key of sorted) this.#sigFields[this.#sigFieldsUsed++] = this.#ftIndex.get(key)!;
    return g;
  }

  /**
   * Bytes the catalog holds: its typed columns per item, field token and signature, and the
   * popularity sampler's (exact: their byteLength); its Maps by item, field key and signature
   * (estimated from their sizes, see mapBytesEstimate); and the entries, strings, arrays and sets
   * it keeps per item and signature (estimated as they are added: flat strings, V8 object sizes
   * of Node 20). Items and signatures are never removed, so the estimate only grows.
   */
  bytes(): number {
    const columns =
      this.#itemToken.byteLength +
      this.#itemSig.byteLength +
      this.#itemActive.byteLength +
      this.#ftCode.byteLength +
      this.#ftTok.byteLength +
      this.#sigStart.byteLength +
      this.#sigLength.byteLength +
      this.#sigFields.byteLength;
    const tables =
      mapBytesEstimate(this.#items.size) +
      mapBytesEstimate(this.#ftIndex.size) +
      mapBytesEstimate(this.#sigIndex.size) +
      this.#list.length * ARRAY_SLOT_BYTES;
    return columns + this.popularity.bytes + tables + this.#heapBytes;
  }

  /** Links item tokens created outside learn() (a replica's applied rows): the keys named when
   *  the caller knows them, else every item still without a token. */
  link(created?: Iterable<string>): void {
    if (created !== undefined) {
      for (const key of created) {
        const entry = key.startsWith('item=') ? this.#items.get(key.slice(5)) : undefined;
        if (entry !== undefined) this.#itemToken[entry.index] = this.#store.id(key);
      }
      return;
    }
    const list = this.#list;
    for (let i = 0; i < list.length; i++)
      if (this.#itemToken[i] < 0) this.#itemToken[i] = this.#store.id(list[i].key);
  }

  /** An evicted token: its id will be reused, so an item or field token caching it has none. */
  forget(id: TokenId, key: string): void {
    const f = this.#ftIndex.get(key);
    if (f !== undefined && this.#ftTok[f] === id) this.#ftTok[f] = -1;
    if (!key.startsWith('item=')) return;
    const entry = this.#items.get(key.slice(5));
    if (entry !== undefined && this.#itemToken[entry.index] === id) this.#itemToken[entry.index] = -1;
  }

  /** One item as exportItems writes it, by index. */
  exportItem(index: number): ExportedItem {
    const e = this.#list[index];
    return {
      item: e.item,
      fields: fieldsOf(e.fieldKeys),
      active: e.active,
      count: this.popularity.count(e.index),
    };
  }

  /** exportItem(index) as JSON text, its fields encoded once per signature: the change tracker
   *  sends thousands of items a second, and an object per item was garbage for every one. */
  exportItemJson(index: number): string {
    const e = this.#list[index];
    const fields = this.#sigFieldsJson[this.#itemSig[index]];
    return `{"item":${JSON.stringify(e.item)},"fields":${fields},"active":${e.active},"count":${this.popularity.count(index)}}`;
  }

  /** Per item (by index): signature, active flag, event count. */
  exportColumns(): Omit<ExportedCatalog, 'names' | 'signatures'> {
    const n = this.#list.length;
    return {
      signature: this.#itemSig.slice(0, n),
      active: this.#itemActive.slice(0, n),
      count: this.popularity.counts(n),
    };
  }

  /** Whether restoring `it` needs an upsert (new item, or changed fields or activity): a follower
   *  gets an item again whenever its count changes, and mostly only the count did. */
  differs(it: ExportedItem): boolean {
    const known = this.#items.get(it.item);
    return known === undefined || known.active !== it.active || !sameFields(known, it.fields);
  }

  /** Raises an item's popularity count to `count` (a restore; counts only grow). */
  restoreCount(index: number, count: number, active: boolean): void {
    for (let c = this.popularity.count(index); c < count; c++) this.popularity.increment(index);
    this.popularity.setActive(index, active);
  }
}

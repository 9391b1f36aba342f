/**
 * The user × item cross tokens (TrainerOptions.crossUserItem): the key of a pair's token, and the
 * index of every user's live pairs, which lets recommend add each pair's weight without building
 * a key per catalog item. The index follows the store (its creations and evictions), so it holds
 * whatever made the tokens: learning, a replica applying the trainer's, a restored snapshot.
 */
import { mapBytesEstimate, stringBytes } from '../../store/accounting.js';
import type { TokenId } from '../model/model.js';
import type { TrainerStore } from './options.js';

/** The field of the cross tokens. */
export const CROSS_FIELD = 'user:item';
const PREFIX = `${CROSS_FIELD}=`;

/** The key of the pair's cross token; the user's length first, so that no two pairs share one. */
export function crossKey(user: string, item: string): string {
  return `${PREFIX}${user.length}:${user}|${item}`;
}

/** Whether `key` is a cross token's. */
export function isCrossKey(key: string): boolean {
  return key.startsWith(PREFIX);
}

/** The user and item of a cross key (crossKey's inverse), or null for another key. */
export function parseCrossKey(key: string): { user: string; item: string } | null {
  if (!isCrossKey(key)) return null;
  const colon = key.indexOf(':', PREFIX.length);
  const length = Number(key.slice(PREFIX.length, colon));
  const from = colon + 1;
  if (!(colon > 0 && Number.isInteger(length) && key[from + length] === '|')) return null;
  return { user: key.slice(from, from + length), item: key.slice(from + length + 1) };
}

const NONE: readonly TokenId[] = Object.freeze([]);

/** Bytes of a JS array of n small integers: its object and its backing store (8-byte slots, no
 *  pointer compression, Node 20), an estimate. */
const arrayBytes = (n: number): number => 48 + 8 * n;

/** User → the ids of the user's live cross tokens (about 8 bytes a pair, ~100 a user). */
export class CrossIndex {
  readonly #byUser = new Map<string, TokenId[]>();
  /** Heap bytes of the user strings held (stringBytes), kept as they come and go. */
  #userBytes = 0;
  #pairs = 0;

  constructor(store: TrainerStore) {
    if (store.onCreate === undefined || store.forEachInTier === undefined)
      throw new TypeError('a cross index needs a store that tells of creations and lists its tiers');
    // Live already (a restored snapshot): cross tokens have no row, so they are all at size 0.
    store.forEachInTier(0, (id) => this.#add(id, store.key(id)));
    store.onCreate((id, key) => this.#add(id, key));
    store.onEvict((id, key) => this.#remove(id, key));
  }

  /** The ids of `user`'s live cross tokens (their keys name the items), in no order. */
  of(user: string): readonly TokenId[] {
    return this.#byUser.get(user) ?? NONE;
  }

  /** Live pairs held. */
  get size(): number {
    return this.#pairs;
  }

  /** Bytes of the Map, the user strings and the id arrays: an estimate. */
  bytes(): number {
    return (
      mapBytesEstimate(this.#byUser.size) +
      this.#userBytes +
      this.#byUser.size * arrayBytes(0) +
      8 * this.#pairs
    );
  }

  #add(id: TokenId, key: string): void {
    const pair = parseCrossKey(key);
    if (pair === null) return;
    const ids = this.#byUser.get(pair.user);
    if (ids === undefined) {
      this.#byUser.set(pair.user, [id]);
      this.#userBytes += stringBytes(pair.user);
    } else ids.push(id);
    this.#pairs++;
  }

  #remove(id: TokenId, key: string): void {
    const pair = parseCrossKey(key);
    const ids = pair === null ? undefined : this.#byUser.get(pair.user);
    const at = ids === undefined ? -1 : ids.indexOf(id);
    if (pair === null || ids === undefined || at < 0) return;
    ids[at] = ids[ids.length - 1];
    ids.pop();
    this.#pairs--;
    if (ids.length === 0) {
      this.#byUser.delete(pair.user);
      this.#userBytes -= stringBytes(pair.user);
    }
  }
}

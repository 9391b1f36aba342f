/**
 * What producers may send, and the policy beyond it. Every per-event resource that grows with what
 * producers send has a bound here: the tokens of one event (a row holds the model's maxTokens:
 * the user, the event's fields, the item and the item's catalog fields), distinct field names
 * (each costs a key cache, a code and an entry of the store's field table, and is never forgotten),
 * and the length of a key's parts. An event or item past a bound is refused whole, with a reason
 * (the service sends it to the DLQ with it): nothing of it is learned or kept, and nothing is cut
 * short. Labels must be in [0, 1]; the field names `user`, `item` and `user:item` are reserved.
 * Distinct values are bounded elsewhere: the store's budget evicts tokens, the key caches rotate.
 */
import type { CatalogItem, Interaction } from '../../data/event.js';
import type { ItemEntry } from './catalog.js';
import { CROSS_FIELD } from './cross.js';
import type { FieldCodes } from './tokens.js';

/** Why an event or item cannot be learned; the service's DLQ reason. */
export type RejectionReason =
  | 'bad-label'
  | 'too-many-fields'
  | 'field-limit'
  | 'oversized-key'
  | 'reserved-field';

export interface Rejection {
  reason: RejectionReason;
  detail: string;
}

export interface LimitOptions {
  /** Most tokens of one event: user, fields, item and the item's catalog fields (a model row). */
  maxTokens: number;
  /** Most distinct field names (`user` and `item` aside), over events and catalog together. */
  maxFieldNames: number;
  /** Longest user, item, field name or field value, in UTF-16 code units. */
  maxKeyLength: number;
  /** Every event carries the user × item pair's token too (TrainerOptions.crossUserItem): it
   *  takes one of the row's maxTokens. Default false. */
  crossUserItem?: boolean;
}

/** Nothing is wrong. */
const ADMITTED = null;

/** Field names whose tokens (`name=value`) would be the users', the items' or the user × item
 *  pairs' own (`user=u2` is user u2's token): a producer could write into another user's vector. */
const RESERVED = new Map([
  ['user', "the users' own"],
  ['item', "the items' own"],
  [CROSS_FIELD, "the user × item pairs' (--cross-user-item)"],
]);

export class Limits {
  readonly #codes: FieldCodes;
  readonly #o: Readonly<LimitOptions>;
  /** New field names of the event being checked. */
  readonly #fresh: string[] = [];

  constructor(codes: FieldCodes, options: Readonly<LimitOptions>) {
    this.#codes = codes;
    this.#o = options;
  }

  /**
   * Why `event` cannot be learned, or null; an admitted event's new field names are registered.
   * `entry`: its item as the catalog knows it (its catalog fields join the row, and event fields
   * of the same names give way to them), undefined for an item not seen yet.
   */
  event(event: Interaction, entry: ItemEntry | undefined): Rejection | null {
    const label = event.label;
    if (!(label >= 0 && label <= 1))
      return { reason: 'bad-label', detail: `label ${label} is outside [0, 1]` };
    return this.#keys(event.user, event.item) ?? this.#fields(event.fields, entry);
  }

  /** Why a catalog item cannot be kept, or null; its new field names are registered when admitted. */
  item(item: CatalogItem): Rejection | null {
    return this.#keys('', item.item) ?? this.#fields(item.fields, undefined);
  }

  #keys(user: string, item: string): Rejection | null {
    const max = this.#o.maxKeyLength;
    if (user.length > max) return tooLong('user', user, max);
    if (item.length > max) return tooLong('item', item, max);
    return ADMITTED;
  }

  #fields(fields: Readonly<Record<string, string>>, entry: ItemEntry | undefined): Rejection | null {
    const o = this.#o;
    const codes = this.#codes;
    const fresh = this.#fresh;
    fresh.length = 0;
    // The user and item tokens (and the pair's), the item's catalog fields, then the event's own.
    const cross = o.crossUserItem === true;
    let n = (cross ? 3 : 2) + (entry === undefined ? 0 : entry.fieldKeys.length);
    for (const name in fields) {
      if (entry === undefined || !entry.fieldNames.has(name)) n++;
      if (n > o.maxTokens)
        return {
          reason: 'too-many-fields',
          detail: `more than ${o.maxTokens} tokens with the item's own fields${cross ? ' and the user × item pair' : ''}`,
        };
      if (name.length > o.maxKeyLength) return tooLong('field name', name, o.maxKeyLength);
      const owner = RESERVED.get(name);
      if (owner !== undefined)
        return {
          reason: 'reserved-field',
          detail: `field name ${JSON.stringify(name)} is reserved: its tokens would be ${owner}`,
        };
      const value = fields[name];
      if (value.length > o.maxKeyLength) return tooLong(`field ${name}`, value, o.maxKeyLength);
      if (codes.peek(name) < 0) fresh.push(name);
    }
    if (fresh.length === 0) return ADMITTED;
    // 'user' and 'item' hold codes of their own without being event fields.
    const known = codes.names.length - 2;
    if (known + fresh.length > o.maxFieldNames)
      return {
        reason: 'field-limit',
        detail: `new field ${JSON.stringify(fresh[0].slice(0, 64))}: ${known} of ${o.maxFieldNames} field names are taken`,
      };
    for (const name of fresh) codes.code(name);
    return ADMITTED;
  }
}

function tooLong(what: string, text: string, max: number): Rejection {
  return { reason: 'oversized-key', detail: `${what} of ${text.length} characters (at most ${max})` };
}

import { LRUCache } from 'lru-cache';

/**
 * The last few items each user interacted with, for `recommend?excludeRecent=true`.
 * Bounded: at most `maxUsers` users (least recently active dropped) × `perUser` items.
 */
export class RecentItems {
  readonly #users: LRUCache<string, string[]>;
  readonly #perUser: number;

  constructor(maxUsers = 100_000, perUser = 20) {
    this.#users = new LRUCache({ max: maxUsers });
    this.#perUser = perUser;
  }

  record(events: ReadonlyArray<{ user: string; item: string }>): void {
    for (const event of events) {
      let items = this.#users.get(event.user);
      if (items === undefined) {
        items = [];
        this.#users.set(event.user, items);
      }
      if (items.includes(event.item)) continue;
      if (items.length >= this.#perUser) items.shift();
      items.push(event.item);
    }
  }

  of(user: string): readonly string[] {
    return this.#users.peek(user) ?? [];
  }
}
